"""The window loop: normalised magnitudes -> the network's mask, for any range of frames (reference §5.1 step 5).

Windows of `window` frames advance by roi = window - 2*offset, so each frame is predicted exactly once from a window
that sees `offset` frames of context on either side; TTA repeats this shifted by half a roi and averages. Windows
are independent, so they run in batches; a block of frames needs only its own windows and their context.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from uvr_cli.engine.batching import WindowBatcher
from uvr_cli.engine.device import precision_context
from uvr_cli.engine.families.vr.fast import fit_window
from uvr_cli.engine.families.vr.nets import Aggressiveness


class MaskModel(Protocol):
    offset: int

    def predict_mask(self, x: torch.Tensor, aggressiveness: Aggressiveness | None = None) -> torch.Tensor: ...


@dataclass(frozen=True)
class NetworkRun:
    """How the network is run: the model, its window, aggressiveness, TTA, batching, device and precision.

    With `fit`, `window` is the widest allowed and each song gets its own (`for_song`).
    """

    model: MaskModel
    window: int = 512
    aggressiveness: Aggressiveness | None = None
    tta: bool = False
    batch_size: int = 1
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    fit: bool = False
    step: int = 1  # windows must be a multiple of this (2**depth of the network)
    batcher: WindowBatcher | None = None  # shared with songs separated at the same time (batching.py)

    def for_song(self, n_frames: int) -> NetworkRun:
        """This run with the window a song of `n_frames` frames gets."""
        if not self.fit:
            return self
        return dataclasses.replace(
            self, window=fit_window(n_frames, self.window, 2 * self.model.offset, self.step), fit=False
        )

    @property
    def roi(self) -> int:
        roi = self.window - 2 * self.model.offset
        return roi if roi > 0 else self.window

    @property
    def context(self) -> int:
        """Frames of input each side of a block that its windows read."""
        return self.model.offset + self.roi

    def count_windows(self, n_frames: int) -> int:
        """How many network windows a song of `n_frames` frames takes (for progress bars)."""
        plain = math.ceil(n_frames / self.roi)
        shifted = (n_frames - 1 + self.roi // 2) // self.roi + 1 if self.tta and n_frames > 0 else 0
        return plain + shifted


class WindowRunner:
    """The mask of frames [a, b) of a song, from normalised magnitudes with `context` frames each side.

    Each window's mask is kept until no later block needs it: with TTA, the shifted window that straddles two
    consecutive blocks runs once; and the windows the first pass runs for the song's last frames (the synthesis
    needs them early, pipeline.py) are not run again when the second pass gets there.
    """

    def __init__(self, run: NetworkRun) -> None:
        self.run = run
        self.offset, self.roi = run.model.offset, run.roi
        self.context = run.context
        self._known: dict[tuple[bool, int], np.ndarray] = {}  # (shifted, first frame) -> roi-wide mask
        self._counted_shifted: int | None = None  # the last shifted window reported to on_window

    def _masks(self, windows: list[np.ndarray]) -> list[np.ndarray]:
        if self.run.batcher is not None:
            return self.run.batcher.masks(windows)
        return run_windows(self.run, windows)

    def mask(
        self,
        magnitude: np.ndarray,
        first: int,
        a: int,
        b: int,
        on_window: Callable[[int], None],
        ahead: bool = False,
    ) -> np.ndarray:
        """Mask for frames [a, b); `magnitude` holds normalised frames from `first` (zeros outside the song).

        Calls go in song order; an `ahead` call (frames needed before their turn) keeps all its windows for then.
        """
        roi, offset, window = self.roi, self.offset, self.run.window
        wanted = [(False, i * roi) for i in range(a // roi, -(-b // roi))]
        if self.run.tta:
            half = roi // 2
            wanted += [(True, j * roi - half) for j in range((a + half) // roi, (b - 1 + half) // roi + 1)]
        todo = [key for key in wanted if key not in self._known]
        masks = self._masks([magnitude[:, :, o - offset - first : o - offset - first + window] for _, o in todo])
        self._known.update(zip(todo, masks))
        shape = magnitude.shape[:2]
        plain = _place(((o, self._known[(s, o)]) for s, o in wanted if not s), a, b, roi, shape)
        if self.run.tta:
            shifted = _place(((o, self._known[(s, o)]) for s, o in wanted if s), a, b, roi, shape)
            plain = (plain + shifted) * 0.5
        if not ahead:
            last = self._counted_shifted
            on_window(sum(1 for shifted, o in wanted if not shifted or last is None or o > last))
            self._counted_shifted = wanted[-1][1] if self.run.tta else None
            self._known = {key: m for key, m in self._known.items() if key[1] + roi > b}  # what later blocks use
        return plain


def run_windows(run: NetworkRun, windows: list[np.ndarray]) -> list[np.ndarray]:
    """The network's masks of same-shape windows, `run.batch_size` per call."""
    out: list[np.ndarray] = []
    with torch.inference_mode(), precision_context(run.device, run.dtype):
        for i in range(0, len(windows), run.batch_size):
            batch = torch.from_numpy(np.stack(windows[i : i + run.batch_size])).to(run.device)
            batch = batch.contiguous(memory_format=torch.channels_last)
            out.extend(run.model.predict_mask(batch, run.aggressiveness).float().cpu().numpy())
    return out


def _place(masks, a: int, b: int, roi: int, shape: tuple[int, ...]) -> np.ndarray:
    """Frames [a, b) assembled from (first frame, roi-wide mask) pairs that tile them."""
    out = np.empty(tuple(shape) + (b - a,), dtype=np.float32)
    for o, m in masks:
        lo, hi = max(o, a), min(o + roi, b)
        out[:, :, lo - a : hi - a] = m[:, :, lo - o : hi - o]
    return out


def predict_mask(run: NetworkRun, magnitude: np.ndarray, on_window: Callable[[int], None] | None = None) -> np.ndarray:
    """Mask (2, bins+1, T) for a whole song's normalised magnitudes (2, bins+1, T) in [0, 1]."""
    runner = WindowRunner(run)
    n_frames, ctx = magnitude.shape[-1], runner.context
    padded = np.pad(magnitude, ((0, 0), (0, 0), (ctx, ctx + runner.roi)))
    return runner.mask(padded, -ctx, 0, n_frames, on_window or (lambda n: None))
