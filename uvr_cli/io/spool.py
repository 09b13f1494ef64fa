"""`--clip-mode rescale`: a stem's samples kept until the separation ends, when one factor for all its stems is known.

The engine hands each stem over block by block, so the loudest sample is known only at the end. Each stem's
float32 samples go to an anonymous temporary file (beside the output, or in TMPDIR for standard output; the
system removes it however the run ends), its peak is tracked, and `blocks` reads the samples back in blocks of
bounded size for encoding.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import numpy as np

CLIP_MODES = ("clip", "rescale")


class SampleSpool:
    """The float32 samples of one stem in an anonymous temporary file, and their largest finite magnitude."""

    def __init__(self, folder: str | None, channels: int) -> None:
        self.channels = channels
        self.peak = 0.0
        self._file = tempfile.TemporaryFile(dir=folder)

    def write(self, samples: np.ndarray) -> None:
        """Keep (frames, channels) samples; NaN/Inf are kept too (the encoder replaces and counts them)."""
        block = np.ascontiguousarray(samples, dtype=np.float32)
        magnitude = np.abs(block[np.isfinite(block)])
        if magnitude.size:
            self.peak = max(self.peak, float(magnitude.max()))
        self._file.write(block.tobytes())

    def blocks(self, frames: int) -> Iterator[np.ndarray]:
        """The kept samples in order, `frames` at a time, as (frames, channels) float32."""
        self._file.seek(0)
        size = frames * self.channels * 4
        while data := self._file.read(size):
            yield np.frombuffer(data, dtype=np.float32).reshape(-1, self.channels)

    def close(self) -> None:
        self._file.close()


def headroom_factor(peak: float) -> float:
    """The largest factor that brings `peak` to full scale or below: 1.0 when nothing exceeds it.

    Samples are scaled in float64, where rounding is monotonic: no scaled sample exceeds peak * factor <= 1.
    """
    if not peak > 1.0:
        return 1.0
    factor = 1.0 / peak
    while peak * factor > 1.0:
        factor = float(np.nextafter(factor, 0.0))
    return factor
