"""Resampling with the exact semantics of librosa 0.9's `resample`, which the reference pipeline uses.

Each `res_type` maps to the same backend librosa used, and the output length is always fixed to
ceil(n * target / orig), so band waves line up the way the trained models expect.
"""
from __future__ import annotations

import math

import numpy as np

from uvr_cli.errors import ModelError

SINC_TYPES = ("sinc_best", "sinc_medium", "sinc_fastest", "linear", "zero_order_hold")


def resampled_length(n: int, orig_sr: int, target_sr: int) -> int:
    """Length librosa gives a resampled signal: ceil(n * target / orig)."""
    return int(math.ceil(n * (float(target_sr) / orig_sr)))


def _fix_length(y: np.ndarray, size: int) -> np.ndarray:
    n = y.shape[-1]
    if n > size:
        return y[..., :size]
    if n < size:
        pad = [(0, 0)] * (y.ndim - 1) + [(0, size - n)]
        return np.pad(y, pad, mode="constant")
    return y


def resample(y: np.ndarray, orig_sr: int, target_sr: int, res_type: str) -> np.ndarray:
    """Resample along the last axis; returns the input unchanged when the rates are equal."""
    if orig_sr == target_sr:
        return y
    if y.shape[-1] == 0:
        return np.zeros(y.shape[:-1] + (0,), dtype=y.dtype)
    size = resampled_length(y.shape[-1], orig_sr, target_sr)
    if res_type in ("scipy", "fft"):
        import scipy.signal

        out = scipy.signal.resample(y, size, axis=-1)
    elif res_type == "polyphase":
        import scipy.signal

        gcd = math.gcd(int(orig_sr), int(target_sr))
        out = scipy.signal.resample_poly(y, int(target_sr) // gcd, int(orig_sr) // gcd, axis=-1)
    elif res_type in SINC_TYPES:
        import samplerate

        # All channels in one libsamplerate call, as librosa 0.9 does (`samplerate.resample(y.T, ...).T`): per
        # channel, libsamplerate can return one sample fewer, which would zero the last sample after fixing.
        flat = y.reshape(-1, y.shape[-1])
        out = np.asarray(samplerate.resample(flat.T, float(target_sr) / orig_sr, converter_type=res_type)).T
        out = out.reshape(y.shape[:-1] + out.shape[-1:])
    elif res_type in ("kaiser_best", "kaiser_fast"):
        import resampy

        out = resampy.resample(y, orig_sr, target_sr, filter=res_type, axis=-1)
    else:
        raise ModelError(f"unknown resampler {res_type!r}")
    return np.asarray(_fix_length(out, size), dtype=y.dtype)
