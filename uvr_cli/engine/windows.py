"""The window loop: normalised magnitudes -> the network's mask, for any range of frames (reference §5.1 step 5).

Windows of `window` frames advance by roi = window - 2*offset, so each frame is predicted exactly once from a window
that sees `offset` frames of context on either side; TTA repeats this shifted by half a roi and averages. Windows
are independent, so they run in batches; a block of frames needs only its own windows and their context.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from uvr_cli.engine.device import precision_context
from uvr_cli.engine.nets import Aggressiveness


class MaskModel(Protocol):
    offset: int

    def predict_mask(self, x: torch.Tensor, aggressiveness: Aggressiveness | None = None) -> torch.Tensor: ...


@dataclass(frozen=True)
class NetworkRun:
    """How the network is run: the model, its window, aggressiveness, TTA, batching, device and precision."""

    model: MaskModel
    window: int = 512
    aggressiveness: Aggressiveness | None = None
    tta: bool = False
    batch_size: int = 1
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32

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

    With TTA, the shifted window that straddles two consecutive blocks is run once and kept for the next block.
    """

    def __init__(self, run: NetworkRun) -> None:
        self.run = run
        self.offset, self.roi = run.model.offset, run.roi
        self.context = run.context
        self._tta_cache: tuple[int, np.ndarray] | None = None

    def _masks(self, windows: list[np.ndarray]) -> list[np.ndarray]:
        run = self.run
        out: list[np.ndarray] = []
        with torch.inference_mode(), precision_context(run.device, run.dtype):
            for i in range(0, len(windows), run.batch_size):
                batch = torch.from_numpy(np.stack(windows[i : i + run.batch_size])).to(run.device)
                batch = batch.contiguous(memory_format=torch.channels_last)
                out.extend(run.model.predict_mask(batch, run.aggressiveness).float().cpu().numpy())
        return out

    def mask(self, magnitude: np.ndarray, first: int, a: int, b: int, on_window: Callable[[int], None]) -> np.ndarray:
        """Mask for frames [a, b); `magnitude` holds normalised frames from `first` (zeros outside the song)."""
        roi, offset, window = self.roi, self.offset, self.run.window
        starts = [(i * roi - offset, i * roi) for i in range(a // roi, -(-b // roi))]
        tta_starts: list[tuple[int, int]] = []
        if self.run.tta:
            half = roi // 2
            tta_starts = [
                (j * roi - half - offset, j * roi - half) for j in range((a + half) // roi, (b - 1 + half) // roi + 1)
            ]
        cached = self._tta_cache
        todo = starts + [s for s in tta_starts if not (cached and cached[0] == s[1])]
        masks = self._masks([magnitude[:, :, s - first : s - first + window] for s, _ in todo])
        on_window(len(todo))
        plain = _place(zip([o for _, o in starts], masks[: len(starts)]), a, b, roi, magnitude.shape[:2])
        if not self.run.tta:
            return plain
        tta_masks = dict(zip([o for _, o in todo[len(starts) :]], masks[len(starts) :]))
        if cached:
            tta_masks.setdefault(cached[0], cached[1])
        shifted = _place(((o, tta_masks[o]) for _, o in tta_starts), a, b, roi, magnitude.shape[:2])
        last = tta_starts[-1][1]
        self._tta_cache = (last, tta_masks[last])
        return (plain + shifted) * 0.5


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
