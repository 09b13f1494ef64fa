"""Chains: `--then MODEL:STEM` gives what running MODEL on the step before's 32-bit float, model-rate stem gives."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, run_uvr, tone_mix
from mdx_models import mdx_onnx, params_file

DEFAULT = ROOT / "models" / "default.pth"  # ch8, 4band_v2
EXACT = ("--format", "wav", "--bit-depth", "32f", "--sample-rate", "model", "--device", "cpu", "--params", "4band_v2")


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("chain") / "song.wav"
    sf.write(path, tone_mix(2.5, 44100, seed=11), 44100, subtype="PCM_16")
    return path


def test_a_chain_equals_the_two_step_run(song: Path, ch16_weights: Path, tmp_path: Path):
    proc = run_uvr(
        "separate",
        str(song),
        "-m",
        str(DEFAULT),
        "--then",
        f"{ch16_weights}:vocals",
        *EXACT,
        "-o",
        str(tmp_path / "chain"),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr.decode()
    outputs = json.loads(proc.stdout)["outputs"]
    assert sorted(outputs) == ["instrumental", "vocals-instrumental", "vocals-vocals"]
    first = run_uvr("separate", str(song), "-m", str(DEFAULT), *EXACT, "-o", str(tmp_path / "one"))
    assert first.returncode == 0, first.stderr.decode()
    second = run_uvr(
        "separate",
        str(tmp_path / "one" / "song_vocals.wav"),
        "-m",
        str(ch16_weights),
        *EXACT,
        "-o",
        str(tmp_path / "two"),
    )
    assert second.returncode == 0, second.stderr.decode()
    expected = {
        "instrumental": tmp_path / "one" / "song_instrumental.wav",
        "vocals-vocals": tmp_path / "two" / "song_vocals_vocals.wav",
        "vocals-instrumental": tmp_path / "two" / "song_vocals_instrumental.wav",
    }
    for stem, path in expected.items():
        got, rate = sf.read(outputs[stem], dtype="float32")
        want, _ = sf.read(path, dtype="float32")
        assert rate == 44100 and got.shape == want.shape
        np.testing.assert_array_equal(got, want, err_msg=stem)
    assert not list(Path("/tmp").glob("uvr-chain-*"))  # the intermediate files are gone


def test_a_chain_reads_standard_input_like_a_file(song: Path, ch16_weights: Path, tmp_path: Path):
    args = ("-m", str(DEFAULT), "--then", f"{ch16_weights}:instrumental", "--device", "cpu", "--params", "4band_v2")
    from_file = run_uvr("separate", str(song), *args, "-o", str(tmp_path / "file"), "--json")
    from_stdin = run_uvr("separate", "-", *args, "-o", str(tmp_path / "stdin"), "--json", input=song.read_bytes())
    assert from_file.returncode == 0 and from_stdin.returncode == 0, from_stdin.stderr.decode()
    files, piped = json.loads(from_file.stdout)["outputs"], json.loads(from_stdin.stdout)["outputs"]
    assert sorted(files) == sorted(piped) == ["instrumental-instrumental", "instrumental-vocals", "vocals"]
    for stem in files:
        assert Path(files[stem]).read_bytes() == Path(piped[stem]).read_bytes(), stem


def test_then_names_a_stem_that_exists(song: Path, tmp_path: Path):
    proc = run_uvr("separate", str(song), "--then", "default:drums", "-o", str(tmp_path / "out"), "--device", "cpu")
    lines = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "drums" in lines[0] and "vocals, instrumental" in lines[0]


def test_a_chain_across_families_equals_the_two_step_run(song: Path, tmp_path: Path):
    """An MDX-Net model first, then a VR model on its vocals (the dry-lead recipe), as two separate runs give."""
    model = mdx_onnx(tmp_path / "mdx.onnx", frames=None)
    mdx = ("-m", str(model), "--params", str(params_file(tmp_path / "p.json")), "--segment", "16")
    exact = ("--format", "wav", "--bit-depth", "32f", "--sample-rate", "model", "--device", "cpu")
    chain = run_uvr(
        "separate", str(song), *mdx, "--then", "default:vocals", *exact, "-o", str(tmp_path / "c"), "--json"
    )
    assert chain.returncode == 0, chain.stderr.decode()
    outputs = json.loads(chain.stdout)["outputs"]
    assert sorted(outputs) == ["instrumental", "vocals-instrumental", "vocals-vocals"]
    first = run_uvr("separate", str(song), *mdx, *exact, "-o", str(tmp_path / "one"))
    second = run_uvr("separate", str(tmp_path / "one" / "song_vocals.wav"), *exact, "-o", str(tmp_path / "two"))
    assert first.returncode == second.returncode == 0, (first.stderr, second.stderr)
    expected = {
        "instrumental": tmp_path / "one" / "song_instrumental.wav",
        "vocals-vocals": tmp_path / "two" / "song_vocals_vocals.wav",
        "vocals-instrumental": tmp_path / "two" / "song_vocals_instrumental.wav",
    }
    for stem, path in expected.items():
        np.testing.assert_array_equal(sf.read(outputs[stem])[0], sf.read(path)[0], err_msg=stem)


def test_a_chain_checks_the_output_format_before_its_first_step(tmp_path: Path, ch16_weights: Path):
    """mp3 cannot store 96 kHz: refused in one line naming the input, before any model runs (no temporary files)."""
    song = tmp_path / "hi.wav"
    sf.write(song, tone_mix(0.5, 96000), 96000)
    proc = run_uvr(
        "separate", str(song), "--then", f"{ch16_weights}:vocals", "--params", "4band_v2", "-f", "mp3",
        "-o", str(tmp_path / "out"), "--device", "cpu",
    )  # fmt: skip
    lines = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "hi.wav" in lines[0] and "mp3 cannot store 96000 Hz" in lines[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_chain_warns_of_what_it_changed_in_the_input_as_a_single_run_does(tmp_path: Path, ch16_weights: Path):
    song = tmp_path / "nan.wav"
    audio = tone_mix(1.0, 44100)
    audio[1000:1010] = np.nan
    sf.write(song, audio, 44100, subtype="FLOAT")
    common = ("--params", "4band_v2", "-o", str(tmp_path / "out"), "--device", "cpu")
    single = run_uvr("separate", str(song), *common)
    chain = run_uvr("separate", str(song), "--then", f"{ch16_weights}:vocals", *common, "--overwrite")
    assert "20 NaN/Inf input samples were replaced by silence" in single.stderr.decode()
    assert "20 NaN/Inf input samples were replaced by silence" in chain.stderr.decode()
