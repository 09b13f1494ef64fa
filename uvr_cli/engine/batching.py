"""Network windows of several songs in one call: songs separated at once in threads share a `WindowBatcher`.

A short clip has one or two windows, too few to fill a GPU's batch. When several songs are separated at once, each
thread hands its windows to the batcher and waits; a batch runs as soon as it is full, or as soon as every song in
flight is waiting (nothing more can arrive), so no thread waits on a timer. The waiting thread whose windows come
first runs the batch, and the others go on with their analysis and synthesis meanwhile.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np


class Stopped(BaseException):
    """Raised in the songs still in flight when the run that batches them stops (Ctrl-C, SIGTERM, an error)."""


@dataclass
class _Request:
    windows: list[np.ndarray]
    outputs: list[np.ndarray] = field(default_factory=list)
    taken: int = 0  # windows handed to a batch so far
    computed: int = 0  # windows whose outputs are in `outputs`
    error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.error is not None or self.computed == len(self.windows)


class WindowBatcher:
    """Runs `predict` (a list of same-shape windows -> their outputs) over windows from many threads, in batches of
    up to `batch_size`. Each separating thread is a `client` while it runs."""

    def __init__(self, predict: Callable[[list[np.ndarray]], list[np.ndarray]], batch_size: int) -> None:
        self._predict, self.batch_size = predict, batch_size
        self._changed = threading.Condition()
        self._queue: list[_Request] = []  # requests with windows not yet taken, in arrival order
        self._clients = self._waiting = 0
        self._busy = self._stopped = False
        self.calls = 0  # network calls made, for tests and reports

    def stop(self) -> None:
        """Make every waiting and later `outputs` call raise Stopped: songs in flight end at their next window."""
        with self._changed:
            self._stopped = True
            self._changed.notify_all()

    @contextlib.contextmanager
    def client(self) -> Iterator[None]:
        """Count the calling thread among the songs in flight while it separates one."""
        with self._changed:
            self._clients += 1
        try:
            yield
        finally:
            with self._changed:
                self._clients -= 1
                self._changed.notify_all()  # the others may now be all that is left, and all waiting

    def outputs(self, windows: list[np.ndarray]) -> list[np.ndarray]:
        """The outputs of `windows`, computed in batches with other threads' windows."""
        if not windows:
            return []
        request = _Request(windows, list(windows))  # each entry is replaced by its output
        with self._changed:
            self._queue.append(request)
            self._waiting += 1
            try:
                while not request.done:
                    if self._stopped:
                        raise Stopped

                    pending = sum(len(r.windows) - r.taken for r in self._queue)
                    full_or_last = pending >= self.batch_size or self._waiting >= self._clients
                    if pending and not self._busy and full_or_last:
                        self._run_batch()
                    else:
                        self._changed.wait()
            finally:
                self._waiting -= 1
        if request.error is not None:
            raise request.error
        return request.outputs

    def _run_batch(self) -> None:
        """Take up to batch_size windows of the first queued shape, run them without the lock, hand out the outputs."""
        shape = self._queue[0].windows[self._queue[0].taken].shape
        parts: list[tuple[_Request, int, int]] = []  # request, first window, count
        room = self.batch_size
        for request in self._queue:
            start = request.taken
            count = 0
            while room and start + count < len(request.windows) and request.windows[start + count].shape == shape:
                count += 1
                room -= 1
            if count:
                parts.append((request, start, count))
                request.taken += count
        self._queue = [r for r in self._queue if r.taken < len(r.windows)]
        self._busy = True
        self._changed.release()
        error: BaseException | None = None
        try:
            batch = [w for request, start, count in parts for w in request.windows[start : start + count]]
            outputs = self._predict(batch)
            self.calls += 1
        except BaseException as exc:  # every song in this batch fails with it
            error = exc
        finally:
            self._changed.acquire()
        self._busy = False
        done = 0
        for request, start, count in parts:
            if error is not None:
                request.error = error
            else:
                request.outputs[start : start + count] = outputs[done : done + count]
                request.computed += count
            done += count
        self._queue = [r for r in self._queue if r.error is None]  # a failed song's other windows are not run
        self._changed.notify_all()
