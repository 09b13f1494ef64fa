"""The family seam (engine/family.py): a family written against it alone runs through the engine unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import tone_mix
from toy_family import install, toy_file
from uvr_cli.separator import Separator


def tones(seconds: float, rate: int, channels: int) -> np.ndarray:
    """Tones well below Nyquist, faded in and out: the band crop drops nothing of them, so an STFT round trip
    gives them back exactly."""
    t = np.arange(int(seconds * rate)) / rate
    wave = sum(
        a * np.sin(2 * np.pi * f * t + p) for a, f, p in ((0.3, 220.0, 0.0), (0.2, 1375.0, 1.0), (0.1, 6000.0, 2.0))
    )
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.1)
    return np.repeat((wave * fade)[:, None], channels, axis=1).astype(np.float32)


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    error = np.sum((reference.astype(np.float64) - test) ** 2)
    return float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / max(error, 1e-300)))


@pytest.mark.parametrize("channels", [1, 2])
def test_a_family_with_complex_output_runs_through_the_engine(tmp_path: Path, monkeypatch, channels: int) -> None:
    """The toy family's network gives each stem's complex spectrogram; its stems are its own names. A magnitude
    mask could not give 'negated'; the one-band STFT round trip gives the mix back (> 80 dB, as tests/test_fuzz
    asks of it), in blocks (a 40 s song spans several), to the last sample."""
    install(monkeypatch)
    separator = Separator(toy_file(tmp_path, "1band_sr44100_hl512", "complex"), device="cpu")
    assert separator.info.family == "Toy" and separator.stems == ("same", "negated", "half")
    mix = tones(40.0, 44100, channels)
    stems = separator.separate(mix, 44100)
    assert set(stems) == {"same", "negated", "half"}
    for stem, factor in (("same", 1.0), ("negated", -1.0), ("half", 0.5)):
        assert stems[stem].shape == mix.shape
        assert snr_db(factor * mix, stems[stem]) > 80, stem


def test_a_family_decides_which_stems_it_gives(tmp_path: Path, monkeypatch) -> None:
    install(monkeypatch)
    separator = Separator(toy_file(tmp_path, "1band_sr44100_hl512", "complex"), device="cpu")
    half = separator.separate(tone_mix(3.0, 44100), 44100, stems=["half"])
    assert list(half) == ["half"]
    with pytest.raises(Exception, match="stems must be among same, negated, half"):
        separator.separate(tone_mix(3.0, 44100), 44100, stems=["vocals"])
