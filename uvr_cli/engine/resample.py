"""Resampling with the exact semantics of librosa 0.9's `resample`, which the reference pipeline uses.

Each `res_type` maps to the same backend librosa used, and the output length is always fixed to
ceil(n * target / orig), so band waves line up the way the trained models expect. The two scipy.signal methods
(`resample` for "fft"/"scipy", `resample_poly` for "polyphase") are written out here on scipy.fft: importing
scipy.signal pulls in scipy.stats and most of scipy (~65 MB resident and ~2 s per process), a tenth of the memory
budget of a run and most of a short clip's start-up.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import scipy.fft

from uvr_cli.errors import ModelError

SINC_TYPES = ("sinc_best", "sinc_medium", "sinc_fastest", "linear", "zero_order_hold")
FIR_TYPES = ("polyphase", "kaiser_best", "kaiser_fast", *SINC_TYPES)  # fixed taps per output phase


def rate_ratio(orig_sr: int, target_sr: int) -> tuple[int, int]:
    """(up, down): target/orig in lowest terms."""
    g = math.gcd(orig_sr, target_sr)
    return target_sr // g, orig_sr // g


def resampled_length(n: int, orig_sr: int, target_sr: int) -> int:
    """Length librosa gives a resampled signal: ceil(n * target / orig)."""
    return int(math.ceil(n * (float(target_sr) / orig_sr)))


def fix_length(y: np.ndarray, size: int) -> np.ndarray:
    """Cut or zero-pad the last axis to `size` samples."""
    n = y.shape[-1]
    if n > size:
        return y[..., :size]
    if n < size:
        pad = [(0, 0)] * (y.ndim - 1) + [(0, size - n)]
        return np.pad(y, pad, mode="constant")
    return y


def fft_resample(y: np.ndarray, num: int) -> np.ndarray:
    """scipy.signal.resample(y, num, axis=-1) for real y: the spectrum cut or zero-padded to `num` samples."""
    n_x = y.shape[-1]
    m = min(num, n_x)
    spectrum = scipy.fft.rfft(y, axis=-1)[..., : m // 2 + 1]
    if m % 2 == 0 and num != n_x:  # the unpaired bin at m/2: folded when cutting, split when padding
        spectrum[..., m // 2] *= 2 if num < n_x else 0.5
    return scipy.fft.irfft(spectrum / (n_x / num), n=num, axis=-1, overwrite_x=True)


@lru_cache(maxsize=32)
def _kaiser_lowpass(up: int, down: int) -> tuple[np.ndarray, int]:
    """resample_poly's filter: firwin(20*max+1, 1/max, window=('kaiser', 5.0)) * up, and its half length."""
    max_rate = max(up, down)
    half_len = 10 * max_rate
    taps = 2 * half_len + 1
    cutoff = 1.0 / max_rate
    m = np.arange(taps, dtype=np.float64) - half_len
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(taps, 5.0)
    return h / h.sum() * up, half_len


def poly_resample(y: np.ndarray, up: int, down: int) -> np.ndarray:
    """scipy.signal.resample_poly(y, up, down, axis=-1) with its default Kaiser filter and zero padding.

    Zero-stuffing by `up`, low-passing and keeping every `down`-th sample is computed per phase: output k uses
    the taps p + q*up (p = k*down mod up) against the inputs floor(k*down/up) - q. Outputs k, k+up, k+2*up... share
    a phase and step through the input by `down`, so each such class is one strided matrix-vector product.
    """
    g = math.gcd(up, down)
    up, down = up // g, down // g
    if up == down == 1:
        return y.copy()
    n_in = y.shape[-1]
    n_out = -(-n_in * up // down)
    h, half_len = _kaiser_lowpass(up, down)
    # scipy pads the filter in front so that an output sample sits on the filter's centre, then drops the lead-in.
    n_pre_pad = down - half_len % down
    first = (half_len + n_pre_pad) // down
    taps = -(-(n_pre_pad + len(h)) // up)
    padded_h = np.zeros(up * taps)
    padded_h[n_pre_pad : n_pre_pad + len(h)] = h
    reversed_phases = padded_h.reshape(taps, up).T[:, ::-1]  # [p, j]: tap p + (taps-1-j)*up
    last_base = ((first + n_out - 1) * down) // up
    signal = np.zeros(y.shape[:-1] + (taps + max(n_in, last_base + 1),))
    signal[..., taps : taps + n_in] = y  # `taps` zeros in front: inputs before the signal
    windows = np.lib.stride_tricks.sliding_window_view(signal, taps, axis=-1)  # [..., i, j] = signal[i + j]
    out = np.empty(y.shape[:-1] + (n_out,))
    rows_per_chunk = max(1, (1 << 21) // taps)
    for r in range(min(up, n_out)):
        k = first + r
        start = (k * down) // up + 1  # window row whose last column is input floor(k*down/up)
        count = len(range(r, n_out, up))
        for c in range(0, count, rows_per_chunk):
            n = min(rows_per_chunk, count - c)
            rows = windows[..., start + c * down : start + (c + n - 1) * down + 1 : down, :]
            out[..., r + c * up : r + (c + n - 1) * up + 1 : up] = rows @ reversed_phases[(k * down) % up]
    return out


def resample(y: np.ndarray, orig_sr: int, target_sr: int, res_type: str) -> np.ndarray:
    """Resample along the last axis; returns the input unchanged when the rates are equal."""
    if orig_sr == target_sr:
        return y
    if y.shape[-1] == 0:
        return np.zeros(y.shape[:-1] + (0,), dtype=y.dtype)
    size = resampled_length(y.shape[-1], orig_sr, target_sr)
    if res_type in ("scipy", "fft"):
        out = fft_resample(y, size)
    elif res_type == "polyphase":
        out = poly_resample(y, int(target_sr), int(orig_sr))
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
    return np.asarray(fix_length(out, size), dtype=y.dtype)
