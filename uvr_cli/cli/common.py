"""What every `uvr` command shares: one-line messages, result lines on stdout, exit codes, option choices."""

from __future__ import annotations

import os
import sys
from enum import Enum

import typer

from uvr_cli.errors import UvrError

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_MODEL = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE, EXIT_TERMINATED = 130, 141, 143  # 128 + SIGINT, SIGPIPE, SIGTERM
EXIT_CODES_HELP = (
    "Exit status: 0 done (every input separated or skipped); 1 some inputs failed, or the output folder cannot be "
    "written or is too small (nothing was separated then); 2 usage error; 3 the model cannot be loaded; "
    "130/143 interrupted by Ctrl-C/SIGTERM; 141 standard output was closed by its reader."
)


# The one list of each option's choices: typer shows them in --help and refuses anything else.
class StemChoice(str, Enum):
    all = "all"
    vocals = "vocals"
    instrumental = "instrumental"


class Format(str, Enum):
    wav = "wav"
    flac = "flac"
    ogg = "ogg"
    mp3 = "mp3"


class BitDepth(str, Enum):
    b16 = "16"
    b24 = "24"
    b32f = "32f"


class HighEnd(str, Enum):
    mirroring = "mirroring"
    mirroring2 = "mirroring2"
    none = "none"


class Backend(str, Enum):
    torch = "torch"
    onnxruntime = "onnxruntime"


class FrontEndChoice(str, Enum):
    auto = "auto"
    numpy = "numpy"
    torch = "torch"


class ClipMode(str, Enum):
    clip = "clip"
    rescale = "rescale"


STEMS = tuple(choice.value for choice in StemChoice if choice is not StemChoice.all)
LOSSY_FORMATS = ("ogg", "mp3")


def say(message: str) -> None:
    """One line on stderr, even when a file name in it holds a line break."""
    print("uvr: " + message.replace("\r", "\\r").replace("\n", "\\n"), file=sys.stderr, flush=True)


def fail(exc: UvrError) -> typer.Exit:
    """Report a UvrError in one line; raise the result to exit with its status."""
    say(str(exc))
    return typer.Exit(exc.exit_code)


def silence_stdout() -> None:
    """Point stdout at /dev/null, so that the flush at interpreter exit does not fail (and print) again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def stdout_closed(exc: BaseException) -> bool:
    """Whether `exc` is a write to standard output after its reader went away."""
    from uvr_cli.io.encode import StdoutClosed

    return isinstance(exc, (StdoutClosed, BrokenPipeError))


def closed_pipe_exit() -> typer.Exit:
    """The reader of stdout went away (`| head -1`): end quietly with 141, as a tool killed by SIGPIPE does."""
    silence_stdout()
    return typer.Exit(EXIT_BROKEN_PIPE)


def emit(line: str) -> None:
    """One result line on stdout; a reader that went away ends the run quietly with 141."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        raise closed_pipe_exit() from None


def size_text(n: int | None) -> str:
    """A file size for tables: '?' when unknown."""
    return "?" if n is None else f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"
