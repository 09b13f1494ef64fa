"""The one way uvr writes a file: under a hidden temporary name beside it, renamed onto it once complete.

A reader (or a crash) therefore sees the old file or the new one, never half of one; the temporary name holds the
process id and a random part, so concurrent writers never share one, and it ends in `.uvr-tmp` so that a leftover
is recognisable. Every writer uses it: stems, settings records, exports, the ONNX cache, added models, training
checkpoints.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

TEMP_SUFFIX = ".uvr-tmp"


class AtomicFile:
    """A file to be created at `path`: written at `temp`, then `commit` renames it into place or `discard` drops it."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.temp = self.path.with_name(f".{self.path.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}")

    def open(self) -> IO[bytes]:
        """The temporary file, new (never an existing file), with the permissions the umask gives."""
        return open(self.temp, "xb")

    def commit(self) -> None:
        os.replace(self.temp, self.path)

    def discard(self) -> None:
        """Remove the temporary file, if it was made; never raises (it may be gone, or its folder may be)."""
        with contextlib.suppress(OSError):
            os.unlink(self.temp)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` to write; renamed onto `path` when the block succeeds, removed otherwise.
    OSErrors reach the caller, who names the file in its own words."""
    target = AtomicFile(path)
    try:
        yield target.temp
        target.commit()
    except BaseException:
        target.discard()
        raise


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_file(path) as temp, open(temp, "xb") as handle:
        handle.write(data)
