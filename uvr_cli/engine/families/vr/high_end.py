"""VR's high-end processing: the top band's rows above the network's bins, rebuilt per stem (reference §3.6).

The network does not model the top band's highest rows (from the preset's pre-filter up to Nyquist); the analysis
keeps the mix's own rows there, and each stem gets them back scaled from its own spectrum mirrored below the
pre-filter, never louder than the mix.
"""

from __future__ import annotations

import numpy as np

from uvr_cli.catalog.presets import BandPreset


def _mirrored_magnitudes(spec: np.ndarray, height: int, preset: BandPreset) -> np.ndarray:
    start = preset.pre_filter_start - 10
    return np.flip(np.abs(spec[:, start - height : start, :]), 1)


def mirror_high_end(spec: np.ndarray, high_end: np.ndarray, preset: BandPreset) -> np.ndarray:
    """'mirroring': rebuild the top rows from the mirrored magnitudes below the pre-filter, keeping the smaller."""
    mirror = _mirrored_magnitudes(spec, high_end.shape[1], preset) * np.exp(1.0j * np.angle(high_end))
    return np.where(np.abs(high_end) <= np.abs(mirror), high_end, mirror)


def mirror_high_end_2(spec: np.ndarray, high_end: np.ndarray, preset: BandPreset) -> np.ndarray:
    """'mirroring2': as 'mirroring', but the candidate is mirror * input * 1.7 (a complex product)."""
    candidate = _mirrored_magnitudes(spec, high_end.shape[1], preset) * (high_end * 1.7)
    return np.where(np.abs(high_end) <= np.abs(candidate), high_end, candidate)


def mirror(mode: str, spec: np.ndarray, high_end: np.ndarray, preset: BandPreset) -> np.ndarray:
    """High-end processing of one stem's spectrogram: 'mirroring' or 'mirroring2' (reference §3.6)."""
    if mode == "mirroring":
        return mirror_high_end(spec, high_end, preset)
    return mirror_high_end_2(spec, high_end, preset)
