"""`uvr eval` on multi-stem test sets: every stem a model gives that the set has the truth of, scored per clip.

Layouts (stem names are the file or folder names, lower case):

* DIR/mixtures/X (or DIR/mixture/X) with DIR/<stem>/X for every other folder (e.g. vocals/, drums/, bass/, other/);
* one sub-folder per song holding mixture.* and <stem>.* (MUSDB18's layout).

Each stem gets SDR (MSST's: total error, over all samples and channels), SI-SDR, and bleedless and fullness
(evaluate.py); means are weighted by duration.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uvr_cli.errors import UsageError
from uvr_cli.io.decode import read_audio
from uvr_cli.training.evaluate import audio_by_stem, bleed_fullness, sdr, si_sdr, weighted_mean

STEM_METRICS = ("sdr", "si_sdr", "bleedless", "fullness")
MIXTURE_NAMES = ("mixture", "mixtures")


@dataclass(frozen=True)
class StemClip:
    """One test song: its mixture and the truth of each stem the set has."""

    name: str
    mixture: Path
    references: dict[str, Path]


@dataclass(frozen=True)
class StemScore:
    clip: str
    stem: str
    duration_s: float
    sdr: float
    si_sdr: float
    bleedless: float
    fullness: float


def find_stem_clips(folder: str | os.PathLike) -> list[StemClip]:
    """The songs of a multi-stem test folder; [] when the folder is not one (see evaluate.find_clips)."""
    root = Path(folder)
    mixtures = next((root / name for name in MIXTURE_NAMES if (root / name).is_dir()), None)
    if mixtures is not None:
        stems = {p.name.lower(): audio_by_stem(p) for p in sorted(root.iterdir()) if p.is_dir() and p != mixtures}
        return [
            StemClip(f"{root.name}/{key}", path, {stem: files[key] for stem, files in stems.items() if key in files})
            for key, path in sorted(audio_by_stem(mixtures).items())
        ]
    songs = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        files = {name.lower(): path for name, path in audio_by_stem(sub).items()}
        mixture = files.pop("mixture", None)
        if mixture is not None and files:
            songs.append(StemClip(sub.name, mixture, files))
    return songs


def is_multi_stem(clips: Sequence[StemClip]) -> bool:
    """Whether the set has the truth of a stem other than vocals (else evaluate.py's vocal scores apply)."""
    return any(set(clip.references) - {"vocals"} for clip in clips)


Separate = Callable[[np.ndarray, int, Sequence[str]], dict[str, np.ndarray]]
"""(mixture, rate, stems) -> each stem's estimate, (frames, channels) like the mixture."""


def evaluate_stems(
    clips: Iterable[StemClip], separate: Separate, stems: Sequence[str], on_score: Callable[[StemScore], None]
) -> list[StemScore]:
    """Score each clip's `stems` that it has the truth of."""
    scores = []
    for clip in clips:
        mix = read_audio(clip.mixture)
        wanted = [stem for stem in stems if stem in clip.references]
        if not wanted:
            continue
        estimates = separate(mix.samples, mix.sample_rate, wanted)
        for stem in wanted:
            truth = read_audio(clip.references[stem])
            if truth.sample_rate != mix.sample_rate:
                raise UsageError(
                    f"{clip.references[stem]}: {truth.sample_rate} Hz, but its mixture is {mix.sample_rate} Hz"
                )
            n = min(len(truth.samples), len(estimates[stem]))
            est, ref = estimates[stem][:n], truth.samples[:n]
            bleedless, fullness = bleed_fullness(est, ref, mix.sample_rate)
            score = StemScore(
                clip.name, stem, n / mix.sample_rate, sdr(est, ref), si_sdr(est, ref), bleedless, fullness
            )
            scores.append(score)
            on_score(score)
    return scores


def stem_means(scores: Sequence[StemScore]) -> dict[str, dict]:
    """Per stem: the duration-weighted mean of each metric, the clips and their duration."""
    means = {}
    for stem in dict.fromkeys(s.stem for s in scores):
        mine = [s for s in scores if s.stem == stem]
        means[stem] = {
            **{metric: weighted_mean(mine, metric) for metric in STEM_METRICS},
            "clips": len(mine),
            "duration_s": sum(s.duration_s for s in mine),
        }
    return means


def stem_row(label: str, values: dict) -> str:
    cells = " ".join(
        f"{v:>9.2f}" if isinstance(v, float) else f"{'-':>9}" for v in (values.get(m) for m in STEM_METRICS)
    )
    return f"{label:<40} {cells}"


STEM_HEADER = f"{'clip / stem':<40} " + " ".join(f"{h:>9}" for h in ("SDR", "SI-SDR", "bleedless", "fullness"))
