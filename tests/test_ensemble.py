"""Ensembles: several models' stems combined as the UVR GUI's ensemble modes do: over one analysis where the models
share a band preset, else as waves (avg) or on the GUI's common STFT (max, min), across families too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, run_uvr, tone_mix
from mdx_models import mdx_onnx, params_file
from uvr_cli.engine import ensemble
from uvr_cli.engine.ensemble import combine
from uvr_cli.engine.resample import resampled_length
from uvr_cli.errors import UsageError
from uvr_cli.separator import Separator
from uvr_cli.settings import algorithm_for
from uvr_cli.settings import parse_ensemble as parse

DEFAULT = ROOT / "models" / "default.pth"  # ch8, 4band_v2


def test_parse_gives_an_algorithm_per_stem():
    assert parse("avg") == {"*": "avg"} and parse("max") == {"*": "max"}
    assert parse("max/min") == {"*": "avg", "vocals": "max", "instrumental": "min"}
    assert parse("drums=max,Bass=min") == {"*": "avg", "drums": "max", "bass": "min"}
    for bad in ("mean", "max/", "max/min/avg", "", "drums=mean", "=max"):
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


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    error = np.sum((reference.astype(np.float64) - test.astype(np.float64)) ** 2)
    return float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / max(error, 1e-300)))


@pytest.fixture(scope="module")
def mdx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("mdx-ensemble")
    return mdx_onnx(folder / "net.onnx", frames=None), params_file(folder / "p.json")


def _gui_spectral_ensemble(algorithm: str, waves: list[np.ndarray]) -> np.ndarray:
    """The GUI's max/min ensemble of (frames, channels) waves, written with librosa as the GUI does, on stems padded
    with silence so that its iSTFT reaches their last sample (the GUI pads the last partial hop with silence)."""
    import librosa

    n = waves[0].shape[0]
    specs = [
        librosa.stft(np.pad(w.T, ((0, 0), (0, 2048))), n_fft=2048, hop_length=1024, pad_mode="constant") for w in waves
    ]
    out = specs[0]
    for spec in specs[1:]:
        keep = np.abs(spec) >= np.abs(out) if algorithm == "max" else np.abs(spec) <= np.abs(out)
        out = np.where(keep, spec, out)
    return librosa.istft(out, n_fft=2048, hop_length=1024)[:, :n].T


@pytest.mark.parametrize("algorithm", ["avg", "max/min"])
def test_an_ensemble_across_families_combines_the_waves(
    mdx: tuple[Path, Path], clip: np.ndarray, monkeypatch, algorithm: str
):
    """A VR and an MDX-Net model: each separates alone; avg is the mean wave, max/min the GUI's per-bin choice on
    a 2048-point STFT, to the last sample, in blocks (a block of 10000 samples here: a 2 s clip spans nine)."""
    model, params = mdx
    vr = Separator(DEFAULT, device="cpu").separate(clip, 44100)
    net = Separator(model, params=str(params), segment=16, device="cpu").separate(clip, 44100)
    monkeypatch.setattr(ensemble, "BLOCK", 10000)
    both = Separator([DEFAULT, model], params=str(params), segment=16, ensemble=algorithm, device="cpu")
    assert "agg" in both.applied and "segment" in both.applied
    got = both.separate(clip, 44100)
    for stem in ("vocals", "instrumental"):
        how = algorithm_for(parse(algorithm), stem)
        assert got[stem].shape == clip.shape
        if how == "avg":
            want = (vr[stem].astype(np.float64) + net[stem]) / 2
        else:
            want = _gui_spectral_ensemble(how, [vr[stem], net[stem]])
        assert snr_db(want, got[stem]) > 100, stem


def test_an_ensemble_across_families_at_another_output_rate(mdx: tuple[Path, Path], clip: np.ndarray):
    model, params = mdx
    both = Separator([DEFAULT, model], params=str(params), segment=16, device="cpu")
    single = Separator(model, params=str(params), segment=16, device="cpu").separate(clip, 44100, output_rate=48000)
    got = both.separate(clip, 44100, output_rate=48000)
    assert got["vocals"].shape == single["vocals"].shape == (resampled_length(len(clip), 44100, 48000), 2)


def test_cli_runs_an_ensemble_across_presets(ch16_weights: Path, tmp_path: Path, clip: np.ndarray):
    """VR models of other band presets cannot share one analysis: they combine as waves, as the GUI does."""
    song = tmp_path / "song.wav"
    sf.write(song, clip, 44100)
    other = tmp_path / "net_1band_sr44100_hl512.pth"  # recognised by the preset name in its file name
    other.write_bytes(ch16_weights.read_bytes())
    proc = run_uvr(
        "separate", str(song), "-m", str(DEFAULT), "-m", str(other), "-o", str(tmp_path / "out"), "--device", "cpu"
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == [
        "song_instrumental.wav",
        "song_vocals.wav",
    ]
