"""Signals known over a range of sample indices, and resampling of a range, for block-wise processing.

Band waves are FIR-resampled (resample_poly, resampy, libsamplerate): a segment that starts at a multiple of the
resampler's input period and carries `FIR_MARGIN` samples of context each side gives the whole signal's samples.
FFT resampling (RVC's 'scipy' between middle bands at synthesis) is periodic over the whole signal, so a segment
is emulated with `FFT_CONTEXT_S` of context each side, the outer `FFT_TAPER_S` of it faded out, and the signal's
other end standing in beyond each end. Whenever a span holds the whole signal, it is resampled whole: exact.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

from uvr_cli.engine.frontend import NUMPY, FrontEnd
from uvr_cli.engine.resample import rate_ratio
from uvr_cli.engine.span import Span

FIR_MARGIN = 1024  # source samples of context per FIR resampler, times the decimation factor (sinc_best needs ~150)
FFT_CONTEXT_S = 1.0  # seconds of context each side when emulating a whole-signal FFT resample
FFT_TAPER_S = 0.5  # the outer part of that context is faded out, so the segment's wrap-around is silent
FFT_TYPES = ("scipy", "fft")


def source_range(d0: int, d1: int, sr_src: int, sr_dst: int, res_type: str, n_src: int) -> tuple[int, int]:
    """Source samples whose resampling gives destination samples [d0, d1) exactly (or, for FFT, closely).

    The start is a multiple of the source period, so the destination grid of the segment is the signal's.
    """
    if sr_src == sr_dst:
        return d0, d1
    up, down = rate_ratio(sr_src, sr_dst)
    fft = res_type in FFT_TYPES
    margin = math.ceil(FFT_CONTEXT_S * sr_src) if fft else FIR_MARGIN * max(1, -(-down // up))
    s = ((d0 * down) // up - margin) // down * down
    e = -(-(-(-(d1 * down) // up) + margin) // down) * down
    if fft:
        return s, e  # beyond the ends, the other end stands in for the whole-signal FFT's wrap-around
    return max(s, 0), (n_src if e >= n_src else e)


def _taper(x: np.ndarray, width: int) -> np.ndarray:
    if width <= 0:
        return x
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(width) + 0.5) / width)
    x = x.copy()
    x[..., :width] *= ramp
    x[..., -width:] *= ramp[::-1]
    return x


def _fft_segment(
    x: np.ndarray,
    s: int,
    e: int,
    ratio: tuple[int, int],
    sr_src: int,
    n: int,
    wrap: tuple[Span, Span] | None,
    front_end: FrontEnd,
) -> np.ndarray:
    """FFT-resample source samples [s, e), emulating the whole-signal resample (see the module docstring)."""
    up, down = ratio
    if wrap is not None:
        if s < 0:
            x[..., : min(-s, e - s)] = wrap[1].get(n + s, n + min(0, e))
        if e > n:
            x[..., max(n, s) - s :] = wrap[0].get(max(n, s) - n, e - n)
    x = _taper(x, min(math.ceil(FFT_TAPER_S * sr_src), (e - s) // 2))
    size = scipy.fft.next_fast_len(e - s, real=True)
    while size % down:
        size = scipy.fft.next_fast_len(size + 1, real=True)
    x = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, size - (e - s))])
    return front_end.fft_resample(x, size * up // down).astype(x.dtype, copy=False)


def resample_range(
    src: Span,
    d0: int,
    d1: int,
    sr_src: int,
    sr_dst: int,
    res_type: str,
    n_dst: int,
    wrap: tuple[Span, Span] | None = None,
    front_end: FrontEnd = NUMPY,
) -> np.ndarray:
    """Destination samples [d0, d1) of resample(whole source), zero outside [0, n_dst).

    For FFT resampling of a part, `wrap` = (head, tail) of the source: what the whole-signal FFT sees beyond its ends.
    """
    if sr_src == sr_dst:
        return src.get(d0, d1)
    out = np.zeros(src.data.shape[:-1] + (d1 - d0,), dtype=src.data.dtype)
    if src.whole:
        y, o = front_end.resample(src.get(0, src.length), sr_src, sr_dst, res_type), 0
    else:
        up, down = rate_ratio(sr_src, sr_dst)
        s, e = source_range(d0, d1, sr_src, sr_dst, res_type, src.length)
        if e <= s:
            return out
        x = src.get(s, e)
        if res_type in FFT_TYPES:
            y = _fft_segment(x, s, e, (up, down), sr_src, src.length, wrap, front_end)
        else:
            y = front_end.resample(x, sr_src, sr_dst, res_type)
        o = s * up // down
    lo, hi = max(d0, o, 0), min(d1, o + y.shape[-1], n_dst)
    if lo < hi:
        out[..., lo - d0 : hi - d0] = y[..., lo - o : hi - o]
    return out
