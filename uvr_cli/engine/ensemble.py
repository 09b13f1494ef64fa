"""Combining several models' stems, as the UVR GUI's ensemble modes do (lib_v5/spec_utils.py `ensembling`).

'avg' is the average of the stems' waves; synthesis is linear, so it is the average of their spectrograms, taken
before the one synthesis. 'max' and 'min' keep, bin by bin, the stem spectrogram of largest or smallest magnitude
(on a tie the later model's, as the GUI's `>=`/`<=` comparisons do). uvr compares the models' own combined band
spectrograms, where the GUI re-analyses the written stems with a 2048-point STFT.
"""

from __future__ import annotations

import numpy as np

from uvr_cli.errors import UsageError

ALGORITHMS = ("avg", "max", "min")
STEM_ORDER = ("vocals", "instrumental")


def parse(text: str) -> dict[str, str]:
    """'avg', 'max', 'min', or 'VOCALS/INSTRUMENTAL' such as 'max/min' -> the algorithm for each stem."""
    parts = text.split("/")
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or any(p not in ALGORITHMS for p in parts):
        raise UsageError(f"--ensemble {text!r}: use avg, max, min, or VOCALS/INSTRUMENTAL such as max/min")
    return dict(zip(STEM_ORDER, parts))


def combine(algorithm: str, specs: list[np.ndarray]) -> np.ndarray:
    """One spectrogram from the members' spectrograms of the same stem."""
    if len(specs) == 1:
        return specs[0]
    if algorithm == "avg":
        return (sum(specs[1:], specs[0]) / len(specs)).astype(specs[0].dtype, copy=False)
    out = specs[0]
    for spec in specs[1:]:
        keep_new = np.abs(spec) >= np.abs(out) if algorithm == "max" else np.abs(spec) <= np.abs(out)
        out = np.where(keep_new, spec, out)
    return out
