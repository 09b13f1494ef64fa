"""Decoding and encoding in background threads, so that they overlap the separation instead of waiting for it.

libsndfile's reads and writes run in C without the GIL, so a thread decodes the next blocks and another writes the
finished ones while the device computes. Blocks keep their order and their bytes: the output is the same file.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Protocol

import numpy as np

from uvr_cli.errors import UvrError

AHEAD_FRAMES = 1 << 16  # frames per block read ahead
AHEAD_BLOCKS = 4  # blocks decoded ahead at most (about 6 s of 44.1 kHz audio)


class _Reader(Protocol):
    frames: int
    sample_rate: int
    channels: int
    nonfinite_replaced: int

    def read(self, n: int) -> np.ndarray: ...

    def close(self) -> None: ...


class ReadAhead:
    """A reader (decode.BlockReader) whose next blocks a thread decodes ahead; the same blocks, the same errors."""

    def __init__(self, reader: _Reader) -> None:
        self._reader = reader
        self.frames, self.sample_rate, self.channels = reader.frames, reader.sample_rate, reader.channels
        self._blocks: queue.Queue[np.ndarray | BaseException] = queue.Queue(AHEAD_BLOCKS)
        self._stop = threading.Event()
        self._pending = np.zeros((0, reader.channels), dtype=np.float32)
        self._thread = threading.Thread(target=self._decode, name="uvr-read-ahead", daemon=True)
        self._thread.start()

    @property
    def nonfinite_replaced(self) -> int:
        return self._reader.nonfinite_replaced

    def _put(self, item: np.ndarray | BaseException) -> bool:
        while not self._stop.is_set():
            try:
                self._blocks.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _decode(self) -> None:
        left = self.frames
        while left > 0 and not self._stop.is_set():
            try:
                block = self._reader.read(min(AHEAD_FRAMES, left))
            except BaseException as exc:  # handed to the reading thread, which raises it
                self._put(exc)
                return
            if block.shape[0] == 0 or not self._put(block):
                break
            left -= block.shape[0]
        self._put(np.zeros((0, self.channels), dtype=np.float32))

    def read(self, n: int) -> np.ndarray:
        """The next `n` frames (fewer at the end), as the wrapped reader would give them."""
        parts, have = [self._pending], self._pending.shape[0]
        while have < n:
            item = self._blocks.get()
            if isinstance(item, BaseException):
                raise item
            if item.shape[0] == 0:
                self._blocks.put(item)  # the end stays the end for later calls
                break
            parts.append(item)
            have += item.shape[0]
        data = np.concatenate(parts) if len(parts) > 1 else parts[0]
        self._pending = data[n:]
        return np.ascontiguousarray(data[:n])

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._reader.close()

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class BackgroundSinks:
    """Sinks whose writes a thread performs in order; `finish` waits for them and raises the first failure."""

    def __init__(self, sinks: dict[str, Callable[[np.ndarray], None]]) -> None:
        self._targets = sinks
        self._jobs: queue.Queue[tuple[str, np.ndarray] | None] = queue.Queue(AHEAD_BLOCKS * len(sinks))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write, name="uvr-write-behind", daemon=True)
        self._thread.start()
        self.sinks = {stem: self._sink(stem) for stem in sinks}

    def _sink(self, stem: str) -> Callable[[np.ndarray], None]:
        def write(block: np.ndarray) -> None:
            if self._error is not None:
                raise self._error
            self._jobs.put((stem, block))

        return write

    def _write(self) -> None:
        while (job := self._jobs.get()) is not None:
            if self._error is None:
                try:
                    self._targets[job[0]](job[1])
                except BaseException as exc:  # raised in the separating thread by the next write or finish
                    self._error = exc

    def finish(self) -> None:
        """Wait for every queued write; raise what a write raised (a UvrError names the file)."""
        self._jobs.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abandon(self) -> None:
        """Stop after an error elsewhere: drop what is queued, wait for the thread."""
        self._error = self._error or UvrError("abandoned")
        self._jobs.put(None)
        self._thread.join()
