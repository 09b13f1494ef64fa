"""PESQ and STOI in `uvr eval`: they order estimates as they should, reach the per-clip scores and the means, and
without the packages `uvr eval` says which extra to install and still scores SI-SDR and SDR."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import uvr_command
from uvr_cli.training import evaluate as ev
from uvr_cli.training import perceptual

pytest.importorskip("pesq")
pytest.importorskip("pystoi")

RATE = 44100


def _voice(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """A voice-like test signal: a gliding harmonic tone in syllables of 0.2 s with pauses, (n, 1)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 180 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    tone = sum(np.sin(k * phase) / k for k in range(1, 12))
    syllables = (np.sin(2 * np.pi * 2.5 * t) > -0.2).astype(float)
    return (0.2 * tone * syllables + 0.001 * rng.standard_normal(t.size))[:, None].astype(np.float32)


def _noisy(voice: np.ndarray, snr_db: float, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(voice.shape).astype(np.float32)
    noise *= np.sqrt(np.mean(voice**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return voice + noise


def test_pesq_and_stoi_rank_cleaner_estimates_higher() -> None:
    voice = _voice()
    clean = perceptual.pesq_wb(voice, voice, RATE), perceptual.stoi(voice, voice, RATE)
    mild = perceptual.pesq_wb(_noisy(voice, 20), voice, RATE), perceptual.stoi(_noisy(voice, 20), voice, RATE)
    harsh = perceptual.pesq_wb(_noisy(voice, -5), voice, RATE), perceptual.stoi(_noisy(voice, -5), voice, RATE)
    assert clean[0] > 4.5 and clean[1] > 0.99  # PESQ's wide-band ceiling is 4.64
    assert clean[0] > mild[0] > harsh[0] and harsh[0] < 2.0
    assert clean[1] > mild[1] > harsh[1]


def test_pesq_of_a_silent_reference_is_nan_not_an_error() -> None:
    silence = np.zeros((RATE, 1), np.float32)
    assert math.isnan(perceptual.pesq_wb(silence, silence, RATE))


def test_clip_scores_and_means_carry_them() -> None:
    voice = _voice()
    mix = _noisy(voice, 0)
    plain = ev.score_clip("a", voice, voice, mix, RATE)
    assert plain.pesq is None and plain.stoi is None
    good = ev.score_clip("a", _noisy(voice, 20), voice, mix, RATE, perceptual=True)
    bad = ev.score_clip("b", mix, voice, mix, RATE, perceptual=True)
    assert good.pesq > bad.pesq and good.stoi > bad.stoi
    unscored = ev.ClipScore("c", 10.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, pesq=math.nan, stoi=math.nan)
    means = ev.weighted_means([good, bad, unscored])  # equal durations; the NaN clip does not count
    assert means["pesq"] == pytest.approx((good.pesq + bad.pesq) / 2)
    assert means["stoi"] == pytest.approx((good.stoi + bad.stoi) / 2)
    assert unscored.as_dict()["pesq"] is None
    assert "PESQ" in ev.HEADER and ev.format_row("c", unscored.as_dict()).split()[-2:] == ["-", "-"]


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mir"
    folder.mkdir()
    for i in range(2):
        voice = _voice(2.0, seed=i)
        backing = _noisy(voice, 0, seed=10 + i) - voice
        sf.write(folder / f"clip_{i}.wav", np.concatenate([backing, voice], axis=1), RATE)
    return folder


def test_cli_eval_reports_pesq_and_stoi(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    done = subprocess.run([*uvr_command(), "eval", "--baseline", "half", "--json", str(folder)], capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)["folders"][str(folder)]
    assert all(1.0 <= clip["pesq"] <= 4.64 and 0 < clip["stoi"] <= 1 for clip in report["clips"])
    assert report["means"]["pesq"] == pytest.approx(np.mean([c["pesq"] for c in report["clips"]]))


def test_cli_eval_without_the_packages_names_the_extra(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    blocker = tmp_path / "blocked"
    blocker.mkdir()
    for name in ("pesq", "pystoi"):  # modules that fail to import, standing in for absent packages
        (blocker / f"{name}.py").write_text("raise ImportError('not installed')\n")
    env = {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(
        [*uvr_command(), "eval", "--baseline", "half", "--json", str(folder)], capture_output=True, env=env
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr.decode().strip().splitlines() == [f"uvr: {perceptual.MISSING}"]
    means = json.loads(done.stdout)["folders"][str(folder)]["means"]
    assert means["pesq"] is None and means["stoi"] is None and means["si_sdr"] == pytest.approx(0.0, abs=0.2)
