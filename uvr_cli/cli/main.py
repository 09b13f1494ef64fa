"""The `uvr` command: the typer app, its commands (each in the module of its job), and the entry point that turns
every error into one line on stderr and an exit status. No signal processing lives here."""

from __future__ import annotations

import difflib
import re
import sys
from typing import Any

import typer
import typer.core
from typer._click import exceptions as click_errors

from uvr_cli import __version__
from uvr_cli.cli.common import EXIT_BROKEN_PIPE, EXIT_CODES_HELP, EXIT_INTERRUPTED, EXIT_USAGE, say, silence_stdout
from uvr_cli.cli.export import export
from uvr_cli.cli.models import info, models_app, presets
from uvr_cli.cli.separate import separate
from uvr_cli.cli.training import register as register_training
from uvr_cli.errors import UvrError

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Separate music into vocals and instrumental (or a model's own stems) with UVR5's model families: VR "
    "(HP2, HP5, DeEcho, 1_HP-UVR ... 17), MDX-Net, MDX23C, BS-RoFormer and Mel-Band RoFormer.",
    epilog=EXIT_CODES_HELP,
)
app.command()(separate)
app.command()(presets)
app.add_typer(models_app, name="models")
app.command()(info)
app.command()(export)
register_training(app)  # `uvr eval`, `uvr train` and `uvr dataset ...`; their modules load lazily


def version_callback(value: bool) -> None:
    if value:
        print(f"uvr {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=version_callback, is_eager=True, help="Show the version."
    ),
) -> None:
    """uvr: vocal/instrument separation with UVR5's model families."""


def _option_value(option: str, argv: list[str]) -> str | None:
    """The value given to `option` on the command line (the last one), for messages."""
    value = None
    for i, token in enumerate(argv):
        if token == option and i + 1 < len(argv):
            value = argv[i + 1]
        elif token.startswith(option + "="):
            value = token[len(option) + 1 :]
    return value


def _bad_value(exc: click_errors.BadParameter, argv: list[str]) -> str:
    """'--agg: 'abc' is not a number', '--stem: 'vocal' is not one of ...; did you mean 'vocals'?'"""
    opts = list(getattr(exc.param, "opts", None) or [])
    name = max(opts, key=len) if opts else (exc.param.name if exc.param is not None else "value")
    message = re.sub(r"^Value error, ", "", exc.message).rstrip(".")
    given = _option_value(name, argv) if opts else None
    if message.startswith("Input should be a valid"):
        kind = "a whole number" if "integer" in message else "a number" if "number" in message else "valid"
        message = f"{given!r} is not {kind}" if given is not None else f"not {kind}"
    quoted = re.findall(r"'([^']*)'", message)
    if " is not one of " in message and len(quoted) > 1:
        close = difflib.get_close_matches(quoted[0], quoted[1:], n=1, cutoff=0.5)
        message += f"; did you mean {close[0]!r}?" if close else ""
    return f"{name}: {message}"


def _no_such_option(exc: click_errors.NoSuchOption) -> str:
    """'no such option --aggressiveness; did you mean --agg?' (click's own guess, else a known prefix of it)."""
    known = [
        opt
        for param in (exc.ctx.command.params if exc.ctx else [])
        for opt in (*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ()))
        if opt.startswith("--")
    ]
    guesses = list(exc.possibilities or [])
    guesses = guesses or difflib.get_close_matches(exc.option_name, known, n=1)
    guesses = guesses or sorted((opt for opt in known if exc.option_name.startswith(opt)), key=len)[-1:]
    hint = f"; did you mean {' or '.join(sorted(guesses))}?" if guesses else ""
    return f"no such option {exc.option_name}{hint}"


def usage_line(exc: click_errors.UsageError, argv: list[str]) -> str:
    """Any of click's usage errors as one line, naming the command."""
    if isinstance(exc, click_errors.NoSuchOption):
        message = _no_such_option(exc)
    elif isinstance(exc, click_errors.BadParameter) and not isinstance(exc, click_errors.MissingParameter):
        message = _bad_value(exc, argv)
    else:
        message = exc.format_message().strip().splitlines()[0].rstrip(".")
        message = message[:1].lower() + message[1:]
    path = exc.ctx.command_path if exc.ctx is not None else "uvr"
    return f"{path.removeprefix('uvr').strip() or 'uvr'}: {message}" if path != "uvr" else message


# Option values named in --help by what they are (the rest by the option's name: --agg AGG, --window WINDOW)
METAVARS = {"model": "MODEL", "then": "MODEL[:STEM]", "out": "DIR", "name": "TEMPLATE", "params": "PRESET|JSON",
            "config": "YAML", "shard": "K/N", "ray_address": "ADDRESS", "jobs_count": "N", "batch_files": "N",
            "ensemble": "HOW", "agg": "0-100", "window": "FRAMES", "segment": "FRAMES", "overlap": "SHARE",
            "num_overlap": "N", "batch_size": "N", "sample_rate": "RATE", "bitrate": "KBPS", "primary": "STEM"}  # fmt: skip


def _name_metavars(command: Any) -> None:
    """Plain metavars in --help (MODEL, DIR) instead of Python types (<list[str]>), through every subcommand;
    choices keep their <a|b> lists and flags take none."""
    for param in command.params:
        choice = getattr(getattr(param, "type_descriptor", None), "is_choice", False)
        if choice or getattr(param, "is_flag", False) or param.name is None:
            continue
        argument = isinstance(param, typer.core.TyperArgument)
        if param.metavar is None:  # an argument's usage line adds '...' where it takes several
            param.metavar = param.name.upper() if argument else METAVARS.get(param.name, param.name.upper())
        if argument:  # typer would show its Python type beside the metavar
            setattr(param, "display_type_rich", lambda ctx: None)  # noqa: B010 (an instance's method)
    for sub in getattr(command, "commands", {}).values():
        _name_metavars(sub)


def main() -> None:
    """Console entry point: one line per error, never a traceback; the exit statuses of EXIT_CODES_HELP."""
    argv = sys.argv[1:]
    command = typer.main.get_command(app)
    _name_metavars(command)
    try:
        status = command.main(args=argv, prog_name="uvr", standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:
        print(exc.format_message(), file=sys.stderr)
        status = EXIT_USAGE
    except click_errors.UsageError as exc:
        say(usage_line(exc, argv))
        status = EXIT_USAGE
    except click_errors.ClickException as exc:
        say(exc.format_message())
        status = exc.exit_code
    except UvrError as exc:
        say(str(exc))
        status = exc.exit_code
    except (KeyboardInterrupt, typer.Abort):
        say("interrupted")
        status = EXIT_INTERRUPTED
    except BrokenPipeError:
        silence_stdout()
        status = EXIT_BROKEN_PIPE
    except Exception as exc:  # a bug of ours: still one line, never a traceback
        say(f"internal error: {type(exc).__name__}: {exc}".splitlines()[0])
        status = 1
    sys.exit(status if isinstance(status, int) else 0)
