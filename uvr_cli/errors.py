"""Exceptions that carry a user-facing, one-line message; the CLI maps them to exit codes."""

from __future__ import annotations

import sys
from pathlib import Path


class UvrError(Exception):
    """Base class: the message is shown to the user as it is, on one line."""

    exit_code = 1


class UsageError(UvrError):
    """Options or arguments that cannot work together (exit status 2)."""

    exit_code = 2


class ModelError(UvrError):
    """A checkpoint or preset that cannot be loaded (exit status 3)."""

    exit_code = 3


class AudioError(UvrError):
    """An input that cannot be decoded or an output that cannot be written."""

    exit_code = 1


def install_command(extra: str) -> str:
    """The command that adds an optional extra to this installation: pip beside the running Python, and the
    checkout uvr runs from where it is an editable install (uvr is not on PyPI)."""
    pip = Path(sys.executable).with_name("pip")
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file():
        return f"{pip} install -e '{checkout}[{extra}]'"
    return f"{pip} install 'uvr-cli[{extra}]'"
