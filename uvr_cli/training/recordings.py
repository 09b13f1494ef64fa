"""Real instrumental recordings as accompaniment: for training songs and for the real-music check.

A folder of recordings (for example Debian's `singularity-music`, CC BY-SA 3.0) is split once and for all: every
fourth file in sorted order is held out for the real-music check (`uvr dataset realcheck`) and never used for
training (`uvr dataset synth --recordings`), so the check measures music the model has not heard.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

from uvr_cli.engine.resample import resample
from uvr_cli.errors import UsageError
from uvr_cli.training.accompaniment import RATE

SUFFIXES = (".ogg", ".flac", ".wav", ".mp3", ".oga")
HELD_OUT_EVERY = 4  # files 3, 7, 11, ... of the sorted list are the check's


def split_recordings(folder: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """(training files, held-out files) of the audio files under `folder`, in sorted order."""
    root = Path(folder)
    if not root.is_dir():
        raise UsageError(f"{root}: not a folder of recordings (e.g. apt-get install singularity-music)")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if len(files) < HELD_OUT_EVERY:
        raise UsageError(f"{root}: {len(files)} recordings; at least {HELD_OUT_EVERY} are needed (one is held out)")
    held = [p for i, p in enumerate(files) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1]
    return [p for p in files if p not in held], held


def load_recording(path: Path) -> np.ndarray:
    """A recording as (2, n) float32 at RATE (mono doubled)."""
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, OSError) as exc:
        raise UsageError(f"{path}: cannot read it as audio ({exc})") from None
    stereo = np.repeat(audio, 2, axis=1) if audio.shape[1] == 1 else audio[:, :2]
    return np.ascontiguousarray(resample(stereo.T, rate, RATE, "polyphase"), dtype=np.float32)


def excerpt(recording: np.ndarray, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A random `seconds` stretch of a (2, n) recording, faded in and out over 50 ms; looped if it is shorter.
    Of a few draws, the first whose level is above -40 dBFS RMS (not an intro's silence)."""
    for _ in range(5):
        out = _stretch(recording, seconds, rng)
        if np.sqrt(np.mean(out.astype(np.float64) ** 2)) > 0.01:
            break
    return out


def _stretch(recording: np.ndarray, seconds: float, rng: np.random.Generator) -> np.ndarray:
    n = int(seconds * RATE)
    if recording.shape[1] < n:
        recording = np.tile(recording, (1, -(-n // recording.shape[1])))
    start = int(rng.integers(0, recording.shape[1] - n + 1))
    out = recording[:, start : start + n].copy()
    fade = min(n // 2, int(0.05 * RATE))
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    out[:, :fade] *= ramp
    out[:, n - fade :] *= ramp[::-1]
    return out


def random_excerpt(files: list[Path], seconds: float, rng: np.random.Generator) -> tuple[Path, np.ndarray]:
    """A random file of `files` and a random excerpt of it at a random level (-6 to 0 dB)."""
    path = files[int(rng.integers(len(files)))]
    gain = np.float32(10 ** (rng.uniform(-6, 0) / 20))
    return path, excerpt(load_recording(path), seconds, rng) * gain
