"""Training data for `uvr train`: the songs of DATASET/train and random magnitude patches drawn from them.

An instrumental segment and a vocal segment (from the same song or, half of the time, from another one) are mixed at
random relative levels in the waveform domain, with channel swap, mono and instrumental-only patches, and mixup, and
taken through the band pyramid of the chosen preset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from uvr_cli.catalog.presets import BandPreset
from uvr_cli.engine.analysis import analyse
from uvr_cli.engine.resample import fix_length
from uvr_cli.errors import UsageError
from uvr_cli.training.config import TrainConfig
from uvr_cli.training.evaluate import audio_by_stem


@dataclass(frozen=True)
class Song:
    """One training song: its stem files and length in samples."""

    instruments: Path
    vocals: Path | None  # None: vocals = mixture - instruments
    mixture: Path
    frames: int


def find_songs(folder: Path) -> list[Song]:
    """Pairs in ``folder/{mixtures,instruments}`` (and ``vocals``) matched by file name stem."""
    if not (folder / "mixtures").is_dir() or not (folder / "instruments").is_dir():
        raise UsageError(f"{folder}: needs mixtures/ and instruments/ folders (uvr dataset synth writes them)")
    mix, inst = audio_by_stem(folder / "mixtures"), audio_by_stem(folder / "instruments")
    voc = audio_by_stem(folder / "vocals") if (folder / "vocals").is_dir() else {}
    songs = []
    for name in sorted(set(mix) & set(inst)):
        info = sf.info(str(inst[name]))
        if info.samplerate != sf.info(str(mix[name])).samplerate:
            raise UsageError(f"{mix[name]}: its rate differs from {inst[name]}")
        songs.append(Song(inst[name], voc.get(name), mix[name], info.frames))
    if not songs:
        raise UsageError(f"{folder}: no mixture/instrumental pairs")
    return songs


class PatchSampler:
    """Random (mixture, instrumental) magnitude patches, built from the stems at random levels."""

    def __init__(self, songs: list[Song], preset: BandPreset, cfg: TrainConfig, rng: np.random.Generator) -> None:
        self.songs, self.preset, self.cfg, self.rng = songs, preset, cfg, rng
        self.samples = (cfg.cropsize - 1) * preset.top.hl
        self._rate_checked = False

    def _read(self, path: Path, start: int) -> np.ndarray:
        data, rate = sf.read(str(path), start=start, frames=self.samples, dtype="float32", always_2d=True)
        if rate != self.preset.sr:
            raise UsageError(f"{path}: {rate} Hz, but preset {self.preset.name} runs at {self.preset.sr} Hz")
        data = np.repeat(data, 2, axis=1) if data.shape[1] == 1 else data[:, :2]
        return fix_length(data.T, self.samples)

    def _segment(self, song: Song, vocals: bool) -> np.ndarray:
        start = int(self.rng.integers(0, max(1, song.frames - self.samples)))
        if not vocals:
            return self._read(song.instruments, start)
        if song.vocals is not None:
            return self._read(song.vocals, start)
        return self._read(song.mixture, start) - self._read(song.instruments, start)

    def pair(self) -> tuple[np.ndarray, np.ndarray]:
        """One normalised (X, y) magnitude pair, each (2, bins+1, cropsize)."""
        cfg, rng = self.cfg, self.rng
        i = int(rng.integers(len(self.songs)))
        inst = self._segment(self.songs[i], vocals=False)
        j = int(rng.integers(len(self.songs))) if rng.random() < cfg.other_vocal_rate else i
        voc = self._segment(self.songs[j], vocals=True) * 10 ** (rng.uniform(*cfg.vocal_gain_db) / 20)
        if rng.random() < cfg.inst_only_rate:
            voc[:] = 0
        if rng.random() < 0.5:
            inst, voc = inst[::-1], voc[::-1]
        if rng.random() < 0.02:
            inst, voc = np.repeat(inst.mean(0, keepdims=True), 2, 0), np.repeat(voc.mean(0, keepdims=True), 2, 0)
        y_spec = analyse(inst.T, self.preset.sr, self.preset).spec  # the separation's own analysis
        x_spec = y_spec + analyse(voc.T, self.preset.sr, self.preset).spec
        x, y = np.abs(x_spec), np.abs(y_spec)
        coef = max(float(x.max()), float(y.max()), 1e-8)
        return x / coef, y / coef

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [self.pair() for _ in range(self.cfg.batch)]
        x = np.stack([p[0] for p in pairs])
        y = np.stack([p[1] for p in pairs])
        if self.cfg.mixup_rate > 0:
            for k in range(len(x)):
                if self.rng.random() < self.cfg.mixup_rate:
                    lam = self.rng.beta(1.0, 1.0)
                    other = (k + 1) % len(x)
                    x[k] = lam * x[k] + (1 - lam) * x[other]
                    y[k] = lam * y[k] + (1 - lam) * y[other]
        return torch.from_numpy(x), torch.from_numpy(y)
