"""What every `uvr` command shares: one-line messages, result lines on stdout, exit codes, option choices."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from enum import Enum
from typing import Any, TextIO

import typer

from uvr_cli.errors import UvrError
from uvr_cli.io.formats import BIT_DEPTHS, FORMATS
from uvr_cli.io.spool import CLIP_MODES
from uvr_cli.io.stderr import LOCK as STDERR_LOCK
from uvr_cli.settings import BACKENDS, FRONT_ENDS, HIGH_END_MODES

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_MODEL = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE, EXIT_TERMINATED = 130, 141, 143  # 128 + SIGINT, SIGPIPE, SIGTERM
EXIT_CODES_HELP = (
    "Exit status: 0 done (every input separated or skipped); 1 some inputs failed, or the output folder cannot be "
    "written or is too small (nothing was separated then); 2 usage error; 3 the model cannot be loaded; "
    "130/143 interrupted by Ctrl-C/SIGTERM; 141 standard output was closed by its reader."
)


def choices(name: str, values: Iterable[str]) -> Any:
    """An Enum of `values` for typer, which shows them in --help and refuses anything else; made from the tables
    that own them (settings.py, io/formats.py), so that no list of choices is written twice."""
    return Enum(name, {value: value for value in values}, type=str)


Format = choices("Format", FORMATS)
BitDepth = choices("BitDepth", BIT_DEPTHS)
HighEnd = choices("HighEnd", HIGH_END_MODES)
Backend = choices("Backend", BACKENDS)
FrontEndChoice = choices("FrontEndChoice", FRONT_ENDS)
ClipMode = choices("ClipMode", CLIP_MODES)


def _print_line(line: str, stream: TextIO) -> None:
    """Print one line; while progress bars are on the screen, through tqdm, which clears them first and draws them
    again below, so that the line starts in the first column and no bar is left half-drawn above it."""
    tqdm_module = sys.modules.get("tqdm")
    if tqdm_module is not None and getattr(tqdm_module.tqdm, "_instances", None):
        tqdm_module.tqdm.write(line, file=stream)
        stream.flush()
    else:
        print(line, file=stream, flush=True)


def say(message: str) -> None:
    """One line on stderr, even when a file name in it holds a line break."""
    with STDERR_LOCK:  # not while a decoder's own chatter is being silenced (io/stderr.py)
        _print_line("uvr: " + message.replace("\r", "\\r").replace("\n", "\\n"), sys.stderr)


def fail(exc: UvrError) -> typer.Exit:
    """Report a UvrError in one line; raise the result to exit with its status."""
    say(str(exc))
    return typer.Exit(exc.exit_code)


def silence_stdout() -> None:
    """Point stdout at /dev/null, so that the flush at interpreter exit does not fail (and print) again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def closed_pipe_exit() -> typer.Exit:
    """The reader of stdout went away (`| head -1`): end quietly with 141, as a tool killed by SIGPIPE does."""
    silence_stdout()
    return typer.Exit(EXIT_BROKEN_PIPE)


def emit(line: str) -> None:
    """One result line on stdout; a reader that went away ends the run quietly with 141."""
    try:
        _print_line(line, sys.stdout)
    except BrokenPipeError:
        raise closed_pipe_exit() from None


def size_text(n: int | None) -> str:
    """A file size for tables: '?' when unknown."""
    return "?" if n is None else f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"
