"""The process's standard error, shared by uvr's own lines and native libraries that print there.

mpg123 (inside libsndfile) prints warnings such as "Warning: Xing stream size off by more than 1%..." straight to
file descriptor 2 when it opens some MP3s; uvr says what matters about the file itself, in one line. So opening a
file runs with descriptor 2 pointed at /dev/null, and uvr's own lines take the same lock, so that none of them is
written while it is silenced.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

LOCK = threading.RLock()


@contextlib.contextmanager
def native_output_silenced() -> Iterator[None]:
    """Descriptor 2 goes to /dev/null inside (Python's sys.stderr is flushed first and written after)."""
    with LOCK:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
