"""The window loop of the frame path: what a family's network reads per frame -> its output, for any range of frames.

Windows of `window` frames advance by roi = window - 2*offset, so each frame is predicted exactly once from a window
that sees `offset` frames of context on either side (RVC's inference, reference §5.1 step 5); TTA repeats this
shifted by half a roi and averages. Windows are independent, so they run in batches; a block of frames needs only its
own windows and their context. What the network reads and gives is the family's: the loop only cuts the frame axis
(the last) and tiles the outputs back, whatever their rows, channels or dtype.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from uvr_cli.engine.batching import WindowBatcher

Predict = Callable[[np.ndarray], np.ndarray]
"""The network over a batch of windows: (batch, ..., window) inputs -> (batch, ..., window - 2*offset) outputs."""


@dataclass(frozen=True)
class NetworkRun:
    """How a frame family's network runs over a song: the network, its context, the window, TTA and batching.

    With `fit`, `window` is the widest allowed and each song gets its own (`for_song`).
    """

    predict: Predict
    offset: int  # frames of context each side that the network trims from its output
    window: int = 512
    tta: bool = False
    batch_size: int = 1
    fit: bool = False
    step: int = 1  # windows must be a multiple of this (2**depth of the network)
    batcher: WindowBatcher | None = None  # shared with songs separated at the same time (batching.py)

    def for_song(self, n_frames: int) -> NetworkRun:
        """This run with the window a song of `n_frames` frames gets."""
        if not self.fit:
            return self
        return dataclasses.replace(
            self, window=fit_window(n_frames, self.window, 2 * self.offset, self.step), fit=False
        )

    @property
    def roi(self) -> int:
        roi = self.window - 2 * self.offset
        return roi if roi > 0 else self.window

    @property
    def context(self) -> int:
        """Frames of input each side of a block that its windows read."""
        return self.offset + self.roi

    def count_windows(self, n_frames: int) -> int:
        """How many network windows a song of `n_frames` frames takes (for progress bars)."""
        plain = math.ceil(n_frames / self.roi)
        shifted = (n_frames - 1 + self.roi // 2) // self.roi + 1 if self.tta and n_frames > 0 else 0
        return plain + shifted


class WindowRunner:
    """The network's output for frames [a, b) of a song, from its input frames with `context` frames each side.

    Each window's output is kept until no later block needs it: with TTA, the shifted window that straddles two
    consecutive blocks runs once; and the windows the first pass runs for the song's last frames (the synthesis
    needs them early, frames.py) are not run again when the second pass gets there.
    """

    def __init__(self, run: NetworkRun) -> None:
        self.run = run
        self.offset, self.roi = run.offset, run.roi
        self.context = run.context
        self._known: dict[tuple[bool, int], np.ndarray] = {}  # (shifted, first frame) -> roi-wide output
        self._counted_shifted: int | None = None  # the last shifted window reported to on_window

    def _run(self, windows: list[np.ndarray]) -> list[np.ndarray]:
        if self.run.batcher is not None:
            return self.run.batcher.outputs(windows)
        return run_windows(self.run, windows)

    def outputs(
        self,
        inputs: np.ndarray,
        first: int,
        a: int,
        b: int,
        on_window: Callable[[int], None],
        ahead: bool = False,
    ) -> np.ndarray:
        """The network's output for frames [a, b); `inputs` holds its input frames from `first` (zeros outside the
        song).

        Calls go in song order; an `ahead` call (frames needed before their turn) keeps all its windows for then.
        """
        roi, offset, window = self.roi, self.offset, self.run.window
        wanted = [(False, i * roi) for i in range(a // roi, -(-b // roi))]
        if self.run.tta:
            half = roi // 2
            wanted += [(True, j * roi - half) for j in range((a + half) // roi, (b - 1 + half) // roi + 1)]
        todo = [key for key in wanted if key not in self._known]
        found = self._run([inputs[..., o - offset - first : o - offset - first + window] for _, o in todo])
        self._known.update(zip(todo, found))
        like = self._known[wanted[0]]
        plain = _place(((o, self._known[(s, o)]) for s, o in wanted if not s), a, b, roi, like)
        if self.run.tta:
            shifted = _place(((o, self._known[(s, o)]) for s, o in wanted if s), a, b, roi, like)
            plain = (plain + shifted) * 0.5
        if not ahead:
            last = self._counted_shifted
            on_window(sum(1 for shifted, o in wanted if not shifted or last is None or o > last))
            self._counted_shifted = wanted[-1][1] if self.run.tta else None
            self._known = {key: m for key, m in self._known.items() if key[1] + roi > b}  # what later blocks use
        return plain


def run_windows(run: NetworkRun, windows: list[np.ndarray]) -> list[np.ndarray]:
    """The network's outputs of same-shape windows, `run.batch_size` per call."""
    out: list[np.ndarray] = []
    for i in range(0, len(windows), run.batch_size):
        out.extend(run.predict(np.stack(windows[i : i + run.batch_size])))
    return out


def _place(outputs, a: int, b: int, roi: int, like: np.ndarray) -> np.ndarray:
    """Frames [a, b) assembled from (first frame, roi-wide output) pairs that tile them."""
    out = np.empty(like.shape[:-1] + (b - a,), dtype=like.dtype)
    for o, m in outputs:
        lo, hi = max(o, a), min(o + roi, b)
        out[..., lo - a : hi - a] = m[..., lo - o : hi - o]
    return out


def predict_song(run: NetworkRun, inputs: np.ndarray, on_window: Callable[[int], None] | None = None) -> np.ndarray:
    """The network's output for a whole song's input frames (..., T), with zeros beyond both ends."""
    runner = WindowRunner(run)
    n_frames, ctx = inputs.shape[-1], runner.context
    padded = np.pad(inputs, [(0, 0)] * (inputs.ndim - 1) + [(ctx, ctx + runner.roi)])
    return runner.outputs(padded, -ctx, 0, n_frames, on_window or (lambda n: None))


def fit_window(n_frames: int, widest: int, context: int, step: int) -> int:
    """The window, at most `widest` frames, that covers `n_frames` with as few windows as the widest does and the
    fewest frames computed: each window's roi (its width less `context`) is just wide enough; a multiple of `step`."""
    count = max(1, -(-n_frames // (widest - context)))
    roi = max(1, -(-n_frames // count))
    return min(widest, -(-(roi + context) // step) * step)
