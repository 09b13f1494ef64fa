"""librosa's mel filter bank with its defaults (Slaney's mel scale, Slaney area normalisation, 0 Hz to Nyquist,
float32), computed with numpy in librosa's order of operations: Mel-Band RoFormer's bands and the bleed/fullness
measures of `uvr eval` are defined on it, and uvr does not depend on librosa."""

from __future__ import annotations

import numpy as np

# Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above (a factor 6.4 per 27 mels)
LINEAR_HZ_PER_MEL = 200.0 / 3
LOG_START_HZ = 1000.0
LOG_START_MEL = LOG_START_HZ / LINEAR_HZ_PER_MEL
LOG_STEP = np.log(6.4) / 27.0


def hz_to_mel(hz: float) -> float:
    if hz >= LOG_START_HZ:
        return float(LOG_START_MEL + np.log(hz / LOG_START_HZ) / LOG_STEP)
    return hz / LINEAR_HZ_PER_MEL


def mel_to_hz(mels: np.ndarray) -> np.ndarray:
    hz = LINEAR_HZ_PER_MEL * mels
    log_part = mels >= LOG_START_MEL
    hz[log_part] = LOG_START_HZ * np.exp(LOG_STEP * (mels[log_part] - LOG_START_MEL))
    return hz


def mel_filter_bank(sample_rate: float, n_fft: int, num_bands: int) -> np.ndarray:
    """librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=num_bands): float32 (num_bands, n_fft // 2 + 1),
    triangles between consecutive mel points, each scaled to unit area over its Hz span."""
    bin_hz = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    points = mel_to_hz(np.linspace(0.0, hz_to_mel(float(sample_rate) / 2), num_bands + 2))
    spans = np.diff(points)
    ramps = np.subtract.outer(points, bin_hz)
    rising = -ramps[:-2] / spans[:-1, None]
    falling = ramps[2:] / spans[1:, None]
    weights = np.maximum(0, np.minimum(rising, falling)).astype(np.float32)
    weights *= (2.0 / (points[2:] - points[:-2]))[:, None]
    return weights
