"""`uvr eval`: score a model's vocal estimate against true vocals, clip by clip and on average.

Two layouts of test data are read (see `find_clips`):

* pairs: ``DIR/mixtures/X`` with ``DIR/vocals/X`` (the layout `uvr dataset synth` writes), or one sub-folder per song
  holding ``mixture.*`` and ``vocals.*`` (MUSDB style);
* MIR-1K style: every audio file in ``DIR`` is a stereo clip, left = accompaniment, right = voice, and the mixture is
  their sum.

The primary metric is the vocal SI-SDR: plain SDR rewards any estimate at the right level, so that half the mixture
scores 3.0 dB SDR on an equal-level mixture but 0.0 dB SI-SDR. Bleedless and fullness are the measures the
community now ranks models by (MVSEP's leaderboards; MSST utils/metrics.py `bleed_full`): in mel-spectrogram dB,
where the estimate is louder than the truth it bleeds (bleedless = 100 / (1 + the mean excess), 100 for none),
where it is quieter it is thin (fullness = 100 / (1 + the mean shortfall)). With the eval extra installed, `uvr
eval` also scores wide-band PESQ and STOI (perceptual.py). stems.py scores every stem of multi-stem test sets.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from uvr_cli.errors import UsageError
from uvr_cli.io.decode import AUDIO_EXTENSIONS, read_audio
from uvr_cli.training.perceptual import pesq_wb, stoi

EPS = 1e-10
Item = TypeVar("Item")
# Clips whose true vocals are quieter than this (RMS) have no vocal to score and are skipped.
SILENT_RMS = 1e-5


@dataclass(frozen=True)
class Clip:
    """One test item: where its mixture and vocals come from."""

    name: str
    mixture: Path
    vocals: Path | None  # None: MIR-1K style stereo clip (left = accompaniment, right = voice)


@dataclass(frozen=True)
class ClipScore:
    """Scores of one clip, in dB."""

    name: str
    duration_s: float
    si_sdr: float
    sdr: float
    si_sdr_mix: float  # the mixture's own scores, for the improvements
    sdr_mix: float
    energy_ratio: float  # estimated over true vocal energy
    bleedless: float  # 0-100, see the module docstring
    fullness: float
    pesq: float | None = None  # wide-band PESQ at 16 kHz (MOS-LQO); None when not scored, NaN when unscorable
    stoi: float | None = None  # STOI, 0-1

    @property
    def si_sdr_improvement(self) -> float:
        return self.si_sdr - self.si_sdr_mix

    @property
    def sdr_improvement(self) -> float:
        return self.sdr - self.sdr_mix

    def as_dict(self) -> dict[str, float | str | None]:
        """The scores for JSON: an unscorable PESQ/STOI (NaN) is null."""
        plain = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in asdict(self).items()}
        return {**plain, "si_sdr_improvement": self.si_sdr_improvement, "sdr_improvement": self.sdr_improvement}


METRICS = (
    "si_sdr",
    "sdr",
    "si_sdr_improvement",
    "sdr_improvement",
    "energy_ratio",
    "bleedless",
    "fullness",
    "pesq",
    "stoi",
)
# MSST's bleed_full: a 4096-point STFT, hop 1024, 512 mel bands (librosa's defaults), dB of magnitudes with an 80 dB
# floor under the loudest (torchaudio's AmplitudeToDB)
BLEED_N_FFT, BLEED_HOP, BLEED_MELS, BLEED_TOP_DB = 4096, 1024, 512, 80.0


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant SDR in dB over all samples and channels (Le Roux et al. 2019, no mean removal)."""
    est, ref = estimate.astype(np.float64).ravel(), reference.astype(np.float64).ravel()
    alpha = np.dot(est, ref) / (np.dot(ref, ref) + EPS)
    target = alpha * ref
    return 10 * math.log10((np.dot(target, target) + EPS) / (np.sum((est - target) ** 2) + EPS))


def sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Plain SDR (signal to total error) in dB over all samples and channels."""
    est, ref = estimate.astype(np.float64).ravel(), reference.astype(np.float64).ravel()
    return 10 * math.log10((np.dot(ref, ref) + EPS) / (np.sum((est - ref) ** 2) + EPS))


def energy_ratio(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Estimated-to-true energy in dB (0 dB: the right level; negative: vocals left in the instrumental)."""
    return 10 * math.log10(
        (np.sum(estimate.astype(np.float64) ** 2) + EPS) / (np.sum(reference.astype(np.float64) ** 2) + EPS)
    )


def bleed_fullness(estimate: np.ndarray, reference: np.ndarray, rate: int) -> tuple[float, float]:
    """(bleedless, fullness) of (frames, channels) arrays, as MSST's bleed_full computes them (at the clip's own
    rate; MSST assumes 44.1 kHz)."""
    import torch

    from uvr_cli.engine.mel import mel_filter_bank

    window = torch.hann_window(BLEED_N_FFT, dtype=torch.float32)
    bank = torch.from_numpy(mel_filter_bank(rate, BLEED_N_FFT, BLEED_MELS))

    def mel_db(x: np.ndarray) -> torch.Tensor:
        wave = torch.from_numpy(np.ascontiguousarray(x.T, dtype=np.float32))
        spec = torch.stft(wave, BLEED_N_FFT, BLEED_HOP, window=window, return_complex=True, pad_mode="constant")
        db = 20 * torch.log10(torch.clamp(bank @ spec.abs(), min=1e-10))
        return torch.maximum(db, db.max() - BLEED_TOP_DB)

    diff = mel_db(estimate) - mel_db(reference)
    louder, quieter = diff[diff > 0], diff[diff < 0]
    excess = float(louder.mean()) if louder.numel() else 0.0
    shortfall = float(-quieter.mean()) if quieter.numel() else 0.0
    return 100 / (excess + 1), 100 / (shortfall + 1)


def score_clip(
    name: str, estimate: np.ndarray, vocals: np.ndarray, mixture: np.ndarray, rate: int, perceptual: bool = False
) -> ClipScore:
    """All scores of one clip (PESQ and STOI too when `perceptual`); the arrays are (frames, channels) and are
    cut to the shortest."""
    n = min(len(estimate), len(vocals), len(mixture))
    est, ref, mix = estimate[:n], vocals[:n], mixture[:n]
    extra = {"pesq": pesq_wb(est, ref, rate), "stoi": stoi(est, ref, rate)} if perceptual else {}
    bleedless, fullness = bleed_fullness(est, ref, rate)
    return ClipScore(
        name=name,
        duration_s=n / rate,
        si_sdr=si_sdr(est, ref),
        sdr=sdr(est, ref),
        si_sdr_mix=si_sdr(mix, ref),
        sdr_mix=sdr(mix, ref),
        energy_ratio=energy_ratio(est, ref),
        bleedless=bleedless,
        fullness=fullness,
        **extra,
    )


def weighted_means(scores: Sequence[ClipScore]) -> dict[str, Any]:
    """Duration-weighted mean of each metric, plus the total duration.

    Values: a float per metric (None for one no clip has a value for, e.g. PESQ and STOI when not scored),
    "clips" an int, "duration_s" a float.
    """
    if not scores:
        return {}
    weights = np.array([s.duration_s for s in scores])
    means = {m: weighted_mean(scores, m) for m in METRICS}
    return {**means, "clips": len(scores), "duration_s": float(weights.sum())}


def weighted_mean(scores: Sequence, metric: str) -> float | None:
    """Duration-weighted mean of `metric` over the clips that have a value for it (None if none has)."""
    pairs = [(v, s.duration_s) for s in scores if (v := getattr(s, metric)) is not None and math.isfinite(v)]
    return float(np.average([v for v, _ in pairs], weights=[w for _, w in pairs])) if pairs else None


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower().lstrip(".") in AUDIO_EXTENSIONS)


def audio_by_stem(folder: Path) -> dict[str, Path]:
    """The audio files of `folder` by file name without extension (how stems of one song are paired)."""
    return {p.stem: p for p in _audio_files(folder)}


def find_clips(folder: str | os.PathLike) -> list[Clip]:
    """The clips of one test folder in any of the supported layouts (module docstring); UsageError if none."""
    root = Path(folder)
    if not root.is_dir():
        raise UsageError(f"{root}: not a folder")
    if (root / "mixtures").is_dir() and (root / "vocals").is_dir():
        mixtures, vocals = audio_by_stem(root / "mixtures"), audio_by_stem(root / "vocals")
        missing = sorted(set(mixtures) - set(vocals))
        if missing:
            raise UsageError(f"{root}: no vocals/ file for mixture(s) {', '.join(missing[:3])}")
        return [Clip(f"{root.name}/{k}", mixtures[k], vocals[k]) for k in sorted(mixtures)]
    songs = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        files = audio_by_stem(sub)
        if "mixture" in files and "vocals" in files:
            songs.append(Clip(sub.name, files["mixture"], files["vocals"]))
    if songs:
        return songs
    clips = [Clip(p.stem, p, None) for p in _audio_files(root)]
    if not clips:
        raise UsageError(f"{root}: no audio, no mixtures/+vocals/ folders and no song folders with mixture and vocals")
    return clips


def load_clip(clip: Clip) -> tuple[np.ndarray, np.ndarray, int]:
    """(mixture, vocals, rate) as float32 (frames, channels)."""
    mix = read_audio(clip.mixture)
    if clip.vocals is None:
        if mix.samples.shape[1] != 2:
            raise UsageError(f"{clip.mixture}: a MIR-1K style clip must be stereo (left accompaniment, right voice)")
        accompaniment, voice = mix.samples[:, :1], mix.samples[:, 1:]
        return accompaniment + voice, voice, mix.sample_rate
    voc = read_audio(clip.vocals)
    if voc.sample_rate != mix.sample_rate:
        raise UsageError(f"{clip.vocals}: {voc.sample_rate} Hz, but its mixture is {mix.sample_rate} Hz")
    return mix.samples, voc.samples, mix.sample_rate


def pick_evenly(clips: Sequence[Item], count: int | None) -> list[Item]:
    """At most `count` clips spread evenly over the sorted list (all of them when count is None)."""
    if count is None or count >= len(clips):
        return list(clips)
    idx = np.linspace(0, len(clips) - 1, count).round().astype(int)
    return [clips[i] for i in sorted(set(idx))]


Estimator = Callable[[np.ndarray, int], np.ndarray]


def half_mixture(mixture: np.ndarray, rate: int) -> np.ndarray:
    """The honest floor: half the mixture as the vocal estimate (0.0 dB SI-SDR on an equal-level mix)."""
    return mixture * 0.5


def separator_estimator(separator) -> Estimator:
    """Vocal estimates from a `Separator` (only the vocal stem is synthesised)."""

    def estimate(mixture: np.ndarray, rate: int) -> np.ndarray:
        return separator.separate(mixture, rate, stems=["vocals"])["vocals"]

    return estimate


def evaluate(
    clips: Iterable[Clip],
    estimator: Estimator,
    on_clip: Callable[[ClipScore], None] | None = None,
    perceptual: bool = False,
) -> list[ClipScore]:
    """Score every clip that has audible vocals with `estimator(mixture, rate) -> vocals` (PESQ and STOI too
    when `perceptual`: they need the eval extra, see perceptual.py)."""
    scores = []
    for clip in clips:
        mixture, vocals, rate = load_clip(clip)
        if np.sqrt(np.mean(vocals.astype(np.float64) ** 2)) < SILENT_RMS:
            continue
        score = score_clip(clip.name, estimator(mixture, rate), vocals, mixture, rate, perceptual)
        scores.append(score)
        if on_clip:
            on_clip(score)
    return scores


def format_row(label: str, values: dict) -> str:
    """One aligned text row: name, the five metrics in dB, bleedless, fullness, PESQ and STOI ('-' where not
    scored)."""
    return f"{label:<32} " + " ".join(_cell(values.get(m)) for m in METRICS)


def _cell(value: float | None) -> str:
    return f"{value:>9.2f}" if value is not None and math.isfinite(value) else f"{'-':>9}"


HEADER = f"{'clip':<32} " + " ".join(
    f"{h:>9}" for h in ("SI-SDR", "SDR", "SI-SDRi", "SDRi", "energy", "bleedless", "fullness", "PESQ", "STOI")
)
