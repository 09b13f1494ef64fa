"""Exceptions that carry a user-facing, one-line message; the CLI maps them to exit codes."""

from __future__ import annotations


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
