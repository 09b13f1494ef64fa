"""RVC's optional post-processing of the primary stem's magnitudes (--post-process); it needs the whole song."""

from __future__ import annotations

import numpy as np


def mask_silence(
    mag: np.ndarray, ref: np.ndarray, thres: float = 0.2, min_range: int = 64, fade_size: int = 32
) -> np.ndarray:
    """RVC's post-processing: where the vocal residual `ref` stays quiet over min_range frames, return it to `mag`."""
    mag = mag.copy()
    idx = np.where(ref.mean(axis=(0, 1)) < thres)[0]
    if len(idx) == 0:
        return mag
    breaks = np.where(np.diff(idx) != 1)[0]
    starts = np.insert(idx[breaks + 1], 0, idx[0])
    ends = np.append(idx[breaks], idx[-1])
    long_runs = np.where(ends - starts > min_range)[0]
    old_e = None
    for s, e in zip(starts[long_runs], ends[long_runs]):
        if old_e is not None and s - old_e < fade_size:
            s = old_e - fade_size * 2
        if s != 0:
            mag[:, :, s : s + fade_size] += np.linspace(0, 1, fade_size) * ref[:, :, s : s + fade_size]
        else:
            s -= fade_size
        if e != mag.shape[2]:
            mag[:, :, e - fade_size : e] += np.linspace(1, 0, fade_size) * ref[:, :, e - fade_size : e]
        else:
            e += fade_size
        mag[:, :, s + fade_size : e - fade_size] += ref[:, :, s + fade_size : e - fade_size]
        old_e = e
    return mag
