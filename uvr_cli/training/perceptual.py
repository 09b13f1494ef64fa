"""Perceptual scores of a vocal estimate: wide-band PESQ (ITU-T P.862.2, at 16 kHz) and STOI.

Both come from optional packages, `pesq` and `pystoi` (the `eval` extra); without them `uvr eval` says so in
one line and reports SI-SDR and SDR only. Both are scored on the channel mean, as the metrics are defined for
one channel. PESQ is a MOS-LQO from about 1.0 (bad) to 4.64; STOI an intelligibility index from 0 to 1.
"""

from __future__ import annotations

import math
from math import gcd

import numpy as np
from scipy.signal import resample_poly

from uvr_cli.errors import install_command

PESQ_RATE = 16000  # wide-band PESQ is defined at 16 kHz only
MISSING = f"PESQ and STOI need the eval extra ({install_command('eval')}); scoring SI-SDR and SDR only"


def available() -> bool:
    """Whether both packages can be imported."""
    try:
        import pesq  # noqa: F401
        import pystoi  # noqa: F401
    except ImportError:
        return False
    return True


def _mono(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x.mean(axis=1) if x.ndim == 2 else x


def _resampled(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return x
    g = gcd(rate, target)
    return resample_poly(x, target // g, rate // g)


def pesq_wb(estimate: np.ndarray, reference: np.ndarray, rate: int) -> float:
    """Wide-band PESQ of `estimate` against `reference` (frames[, channels]) at `rate`, resampled to 16 kHz.

    NaN when PESQ finds nothing to score: a silent reference, one without any utterance, or one shorter than a
    quarter second.
    """
    from pesq import PesqError, pesq

    ref = _resampled(_mono(reference), rate, PESQ_RATE)
    est = _resampled(_mono(estimate), rate, PESQ_RATE)
    n = min(len(ref), len(est))
    if n < PESQ_RATE // 4 or not np.any(ref[:n]):
        return math.nan
    value = pesq(PESQ_RATE, ref[:n], est[:n], "wb", on_error=PesqError.RETURN_VALUES)
    return float(value) if value >= 0 else math.nan  # the package's error codes are negative


def stoi(estimate: np.ndarray, reference: np.ndarray, rate: int) -> float:
    """STOI (Taal et al. 2011; pystoi resamples to its 10 kHz itself) of `estimate` against `reference`."""
    from pystoi import stoi as pystoi_stoi

    ref, est = _mono(reference), _mono(estimate)
    n = min(len(ref), len(est))
    return float(pystoi_stoi(ref[:n], est[:n], rate, extended=False))
