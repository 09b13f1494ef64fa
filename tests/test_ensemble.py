"""Ensembles: several models over one analysis, their stems combined as the UVR GUI's ensemble modes do."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, run_uvr, tone_mix
from uvr_cli.engine.ensemble import combine, parse
from uvr_cli.errors import UsageError
from uvr_cli.separator import Separator

DEFAULT = ROOT / "models" / "default.pth"  # ch8, 4band_v2


def test_parse_gives_an_algorithm_per_stem():
    assert parse("avg") == {"vocals": "avg", "instrumental": "avg"}
    assert parse("max/min") == {"vocals": "max", "instrumental": "min"}
    for bad in ("mean", "max/", "max/min/avg", ""):
        with pytest.raises(UsageError):
            parse(bad)


def test_combine_keeps_the_larger_or_smaller_bin_and_the_later_model_on_a_tie():
    a = np.array([[1 + 0j, -3j, 2 + 0j]])
    b = np.array([[2j, 1 + 0j, -2 + 0j]])  # magnitudes 2, 1, 2 against 1, 3, 2
    np.testing.assert_array_equal(combine("max", [a, b]), [[2j, -3j, -2 + 0j]])
    np.testing.assert_array_equal(combine("min", [a, b]), [[1 + 0j, 1 + 0j, -2 + 0j]])
    np.testing.assert_array_equal(combine("avg", [a, b]), (a + b) / 2)
    np.testing.assert_array_equal(combine("max", [a]), a)


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return tone_mix(2.0, 44100, seed=7)


def test_average_ensemble_is_the_mean_of_the_single_models(ch16_weights: Path, clip: np.ndarray):
    """The average of the waves, as the GUI's Average; here computed once, before the one synthesis."""
    single = [Separator(m, params="4band_v2", device="cpu").separate(clip, 44100) for m in (DEFAULT, ch16_weights)]
    both = Separator([DEFAULT, ch16_weights], params="4band_v2", ensemble="avg", device="cpu").separate(clip, 44100)
    for stem in both:
        mean = (single[0][stem] + single[1][stem]) / 2
        error = np.sum((both[stem] - mean) ** 2)
        assert 10 * np.log10(np.sum(mean**2) / error) > 100, stem


def test_max_ensemble_is_as_loud_as_its_loudest_member(ch16_weights: Path, clip: np.ndarray):
    single = [Separator(m, params="4band_v2", device="cpu").separate(clip, 44100) for m in (DEFAULT, ch16_weights)]
    both = Separator([DEFAULT, ch16_weights], params="4band_v2", ensemble="max/min", device="cpu").separate(clip, 44100)
    energy = {stem: [float(np.sum(s[stem] ** 2)) for s in single] for stem in both}
    assert np.sum(both["vocals"] ** 2) >= 0.9 * max(energy["vocals"])
    assert np.sum(both["instrumental"] ** 2) <= 1.1 * min(energy["instrumental"])


def test_cli_ensemble_names_its_outputs_and_lists_its_models(ch16_weights: Path, tmp_path: Path, clip: np.ndarray):
    song = tmp_path / "song.wav"
    sf.write(song, clip, 44100, subtype="FLOAT")
    proc = run_uvr(
        "separate",
        str(song),
        "-m",
        str(DEFAULT),
        "-m",
        str(ch16_weights),
        "--params",
        "4band_v2",
        "--ensemble",
        "max/min",
        "--name",
        "{name}_{model}_{stem}.{ext}",
        "-o",
        str(tmp_path / "out"),
        "--json",
        "--device",
        "cpu",
    )
    assert proc.returncode == 0, proc.stderr.decode()
    record = json.loads(proc.stdout)
    assert record["models"] == [DEFAULT.name, ch16_weights.name] and record["ensemble"] == "max/min"
    label = f"ensemble-default+{ch16_weights.stem}"
    assert sorted(Path(p).name for p in record["outputs"].values()) == [
        f"song_{label}_instrumental.wav",
        f"song_{label}_vocals.wav",
    ]


def test_cli_refuses_an_ensemble_across_presets(ch16_weights: Path, tmp_path: Path, clip: np.ndarray):
    """They could not share one analysis; the refusal comes before any input is read."""
    song = tmp_path / "song.wav"
    sf.write(song, clip, 44100)
    other = tmp_path / "net_1band_sr44100_hl512.pth"  # recognised by the preset name in its file name
    other.write_bytes(ch16_weights.read_bytes())
    proc = run_uvr(
        "separate", str(song), "-m", str(DEFAULT), "-m", str(other), "-o", str(tmp_path / "out"), "--device", "cpu"
    )
    lines = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "share one band preset" in lines[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
