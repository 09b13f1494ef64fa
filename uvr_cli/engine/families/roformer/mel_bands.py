"""The bands of a Mel-Band RoFormer: which STFT bins each mel band covers.

MSST takes librosa's mel filter bank with its defaults (engine/mel.py computes it as librosa does), forces the
first bin of the first band and the last bin of the last band on, and keeps the bins where a filter is positive.
Neighbouring bands overlap.
"""

from __future__ import annotations

import numpy as np

from uvr_cli.engine.mel import mel_filter_bank
from uvr_cli.errors import ModelError


def mel_band_bins(sample_rate: float, n_fft: int, num_bands: int) -> np.ndarray:
    """Bool (num_bands, n_fft // 2 + 1): bin f belongs to band b; every bin belongs to one band at least."""
    weights = mel_filter_bank(sample_rate, n_fft, num_bands)
    weights[0, 0] = 1.0
    weights[-1, -1] = 1.0
    member = weights > 0
    if not member.any(axis=0).all():
        raise ModelError(
            f"Mel-Band RoFormer: {num_bands} mel bands at {sample_rate} Hz leave STFT bins of n_fft {n_fft} uncovered"
        )
    return member
