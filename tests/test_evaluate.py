"""uvr eval: the metrics on known signals, the folder layouts, and the CLI's half-mixture baseline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import run_uvr
from uvr_cli.errors import UsageError
from uvr_cli.training import evaluate as ev

RATE = 16000


def _voice_and_backing(seconds: float = 2.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two independent noise-like signals of equal energy, (n, 1) each."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    voice, backing = rng.standard_normal((2, n, 1)) * 0.1
    return voice.astype(np.float32), backing.astype(np.float32)


def test_half_mixture_scores_zero_si_sdr_and_three_db_sdr() -> None:
    voice, backing = _voice_and_backing()
    mix = voice + backing
    score = ev.score_clip("x", ev.half_mixture(mix, RATE), voice, mix, RATE)
    assert score.si_sdr == pytest.approx(0.0, abs=0.1)
    assert score.sdr == pytest.approx(3.0, abs=0.1)
    assert score.si_sdr_improvement == pytest.approx(0.0, abs=1e-9)
    assert score.energy_ratio == pytest.approx(-3.0, abs=0.1)


def test_si_sdr_ignores_scale_but_sdr_does_not() -> None:
    voice, backing = _voice_and_backing()
    estimate = voice + 0.1 * backing
    assert ev.si_sdr(0.3 * estimate, voice) == pytest.approx(ev.si_sdr(estimate, voice), abs=1e-6)
    assert ev.si_sdr(estimate, voice) == pytest.approx(20.0, abs=0.3)
    assert ev.sdr(0.3 * estimate, voice) < ev.sdr(estimate, voice) - 2
    assert ev.si_sdr(voice, voice) > 80


def test_weighted_means_weigh_by_duration() -> None:
    a = ev.ClipScore("a", 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 50.0, 20.0)
    b = ev.ClipScore("b", 3.0, 4.0, 8.0, 0.0, 0.0, 0.0, 90.0, 40.0)
    means = ev.weighted_means([a, b])
    assert means["si_sdr"] == pytest.approx(3.0)
    assert means["bleedless"] == pytest.approx(80.0) and means["fullness"] == pytest.approx(35.0)
    assert means["sdr"] == pytest.approx(6.0)
    assert means["clips"] == 2 and means["duration_s"] == pytest.approx(4.0)


def _librosa_bleed_fullness(estimate: np.ndarray, reference: np.ndarray, rate: int) -> tuple[float, float]:
    """MSST's bleed_full (utils/metrics.py) written with librosa and numpy: mel spectrograms of a 4096/1024 Hann
    STFT in dB (floor 1e-10, then at most 80 dB under the loudest bin), then the mean excess and the mean shortfall."""
    import librosa

    bank = librosa.filters.mel(sr=rate, n_fft=4096, n_mels=512)

    def mel_db(x: np.ndarray) -> np.ndarray:
        spec = np.abs(librosa.stft(x.T.astype(np.float32), n_fft=4096, hop_length=1024, pad_mode="constant"))
        db = 20 * np.log10(np.maximum(bank @ spec, 1e-10))
        return np.maximum(db, db.max() - 80)

    diff = mel_db(estimate).astype(np.float64) - mel_db(reference)
    return 100 / (1 + diff[diff > 0].mean()), 100 / (1 - diff[diff < 0].mean())


@pytest.mark.parametrize("rate", [44100, RATE])
def test_bleedless_and_fullness_are_msst_bleed_full(rate: int) -> None:
    voice, backing = _voice_and_backing(1.5, seed=3)
    voice = np.repeat(voice, 2, axis=1)
    voice[:, 1] *= 0.5
    estimate = 0.8 * voice + np.repeat(0.2 * backing, 2, axis=1)  # thinner than the voice, with some backing in it
    bleedless, fullness = ev.bleed_fullness(estimate, voice, rate)
    want_bleedless, want_fullness = _librosa_bleed_fullness(estimate, voice, rate)
    assert bleedless == pytest.approx(want_bleedless, rel=1e-4)
    assert fullness == pytest.approx(want_fullness, rel=1e-4)
    assert ev.bleed_fullness(voice, voice, rate) == (100.0, 100.0)
    louder_bleed, _ = ev.bleed_fullness(voice + np.repeat(0.5 * backing, 2, axis=1), voice, rate)
    assert louder_bleed < bleedless < 100


def _mir1k_folder(root: Path, count: int = 3) -> Path:
    folder = root / "mir"
    folder.mkdir()
    for i in range(count):
        voice, backing = _voice_and_backing(1.0 + i, seed=i)
        sf.write(folder / f"clip_{i}.flac", np.concatenate([backing, voice], axis=1), RATE)
    return folder


def test_layouts(tmp_path: Path) -> None:
    mir = _mir1k_folder(tmp_path)
    clips = ev.find_clips(mir)
    assert [c.vocals for c in clips] == [None, None, None]
    mixture, vocals, rate = ev.load_clip(clips[0])
    assert rate == RATE and mixture.shape == vocals.shape == (RATE, 1)
    pairs = tmp_path / "pairs"
    for kind in ("mixtures", "vocals"):
        (pairs / kind).mkdir(parents=True)
        sf.write(pairs / kind / "0001.flac", np.zeros((RATE, 2), np.float32), RATE)
    assert [c.name for c in ev.find_clips(pairs)] == ["pairs/0001"]
    song = tmp_path / "songs" / "song a"
    song.mkdir(parents=True)
    for stem in ("mixture", "vocals"):
        sf.write(song / f"{stem}.wav", np.zeros((RATE, 2), np.float32), RATE)
    assert [c.name for c in ev.find_clips(tmp_path / "songs")] == ["song a"]
    with pytest.raises(UsageError):
        ev.find_clips(tmp_path / "nothing")
    assert [c.name for c in ev.pick_evenly(clips, 2)] == ["clip_0", "clip_2"]


def test_silent_vocals_are_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "mir"
    folder.mkdir()
    sf.write(folder / "silent.flac", np.stack([np.ones(RATE) * 0.1, np.zeros(RATE)], axis=1), RATE)
    assert ev.evaluate(ev.find_clips(folder), ev.half_mixture) == []


def test_cli_half_baseline(tmp_path: Path) -> None:
    mir = _mir1k_folder(tmp_path)
    done = run_uvr("eval", "--baseline", "half", "--json", str(mir))
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)
    means = report["folders"][str(mir)]["means"]
    assert means["clips"] == 3 and means["duration_s"] == pytest.approx(6.0)
    assert means["si_sdr"] == pytest.approx(0.0, abs=0.1) and means["sdr"] == pytest.approx(3.0, abs=0.1)
    table = run_uvr("eval", "--baseline", "half", str(mir))
    assert b"MEAN (3 clips" in table.stdout
    neither = run_uvr("eval", str(mir))
    assert neither.returncode == 2 and b"--baseline" in neither.stderr
