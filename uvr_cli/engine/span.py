"""A signal known over a range of sample indices: what block-wise analysis, synthesis and resampling pass around."""

from __future__ import annotations

import numpy as np


class Span:
    """Samples [start, start + n) of a signal of `length` samples; zero outside [0, length)."""

    def __init__(self, start: int, data: np.ndarray, length: int) -> None:
        self.start, self.data, self.length = start, data, length

    @property
    def stop(self) -> int:
        return self.start + self.data.shape[-1]

    @property
    def whole(self) -> bool:
        """True when the span holds every sample of the signal."""
        return self.start <= 0 and self.stop >= self.length

    def get(self, i0: int, i1: int) -> np.ndarray:
        """Samples [i0, i1) as a new array; the span must hold every in-signal sample of that range."""
        out = np.zeros(self.data.shape[:-1] + (i1 - i0,), dtype=self.data.dtype)
        lo, hi = max(i0, 0, self.start), min(i1, self.length, self.stop)
        if lo < hi:
            out[..., lo - i0 : hi - i0] = self.data[..., lo - self.start : hi - self.start]
        need_lo, need_hi = max(i0, 0), min(i1, self.length)
        assert need_lo >= hi or (lo <= need_lo and hi >= need_hi), "span does not cover the request"
        return out
