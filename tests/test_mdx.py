"""The MDX-Net family (engine/families/mdx/) on the chunk path (engine/chunks.py), against reference/uvr_mdx.py:
UVR's `demix` written out plainly, whole song in memory, on the same ONNX network."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import run_uvr, tone_mix
from mdx_models import SMALL, mdx_onnx, onnx_network, params_file
from reference import uvr_mdx
from uvr_cli.engine import chunks
from uvr_cli.engine.families.mdx import params as mdx_params
from uvr_cli.errors import ModelError, UsageError
from uvr_cli.separator import Separator


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    error = np.sum((reference.astype(np.float64) - test.astype(np.float64)) ** 2)
    return float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / max(error, 1e-300)))


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mdx_onnx(tmp_path_factory.mktemp("mdx") / "net.onnx")


def reference_stems(model: Path, mix: np.ndarray, **options) -> tuple[np.ndarray, np.ndarray]:
    """UVR's primary and secondary of (frames, channels) `mix` at 44.1 kHz, as (frames, 2)."""
    stereo = np.ascontiguousarray(np.repeat(mix, 2, axis=1) if mix.shape[1] == 1 else mix).T
    settings = {"n_fft": SMALL["mdx_n_fft_scale_set"], "dim_f": SMALL["mdx_dim_f_set"], "segment_size": 16, **options}
    primary, secondary = uvr_mdx.separate(stereo, onnx_network(model), **settings)
    return primary.T, secondary.T


@pytest.mark.parametrize(
    "overlap, denoise, compensate",
    [(0.25, False, 1.0), (0.0, False, 1.0), (0.5, True, 1.035), (0.75, False, 1.022)],
)
def test_stems_are_uvrs(model: Path, tmp_path: Path, overlap: float, denoise: bool, compensate: float) -> None:
    """Primary = UVR's demix * compensate, secondary = mix - primary, to the last sample, over many chunks."""
    mix = tone_mix(3.3, 44100, seed=1)
    sep = Separator(
        model,
        params=str(params_file(tmp_path / "p.json", compensate=compensate)),
        segment=16,
        overlap=overlap,
        denoise=denoise,
        device="cpu",
    )
    assert sep.info.primary == "vocals" and sep.info.family == "MDX-Net"
    stems = sep.separate(mix, 44100)
    primary, secondary = reference_stems(model, mix, overlap=overlap, compensate=compensate, denoise=denoise)
    assert stems["vocals"].shape == stems["instrumental"].shape == mix.shape
    assert snr_db(primary, stems["vocals"]) > 130
    assert snr_db(secondary, stems["instrumental"]) > 130


def test_compensation_scales_the_primary_and_the_rest_is_the_mix_minus_it(model: Path, tmp_path: Path) -> None:
    mix = tone_mix(2.0, 44100, seed=2)
    plain = Separator(model, params=str(params_file(tmp_path / "a.json")), segment=16, device="cpu")
    louder = Separator(model, params=str(params_file(tmp_path / "b.json", compensate=1.5)), segment=16, device="cpu")
    a, b = plain.separate(mix, 44100), louder.separate(mix, 44100)
    np.testing.assert_allclose(b["vocals"], 1.5 * a["vocals"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(a["vocals"] + a["instrumental"], mix, atol=1e-6)
    np.testing.assert_allclose(b["vocals"] + b["instrumental"], mix, atol=1e-6)


def test_primary_stem_decides_which_stem_the_network_gives(model: Path, tmp_path: Path) -> None:
    mix = tone_mix(1.0, 44100, seed=3)
    vocal = Separator(model, params=str(params_file(tmp_path / "v.json")), segment=16, device="cpu")
    inst = Separator(model, params=str(params_file(tmp_path / "i.json", primary_stem="Instrumental")), segment=16)
    forced = Separator(model, params=str(params_file(tmp_path / "f.json")), segment=16, primary="instrumental")
    assert inst.info.primary == forced.info.primary == "instrumental"
    np.testing.assert_array_equal(vocal.separate(mix, 44100)["vocals"], inst.separate(mix, 44100)["instrumental"])
    np.testing.assert_array_equal(inst.separate(mix, 44100)["vocals"], forced.separate(mix, 44100)["vocals"])


@pytest.mark.parametrize("frames", [1, 100, 511, 512, 513, 15360, 15361, 44100])
def test_any_length_gives_stems_exactly_as_long(model: Path, tmp_path: Path, frames: int) -> None:
    """Shorter than the STFT's half window, than one chunk, at and around the chunk's length."""
    mix = tone_mix(frames / 44100, 44100, seed=4)[:frames]
    sep = Separator(model, params=str(params_file(tmp_path / "p.json")), segment=16, device="cpu")
    stems = sep.separate(mix, 44100)
    primary, secondary = reference_stems(model, mix)
    assert stems["vocals"].shape == mix.shape
    np.testing.assert_allclose(stems["vocals"], primary, atol=1e-6)
    np.testing.assert_allclose(stems["instrumental"], secondary, atol=1e-6)


def test_the_result_does_not_depend_on_how_the_input_is_read(model: Path, tmp_path: Path, monkeypatch) -> None:
    mix = tone_mix(2.5, 44100, seed=6)
    sep = Separator(model, params=str(params_file(tmp_path / "p.json")), segment=16, device="cpu")
    whole = sep.separate(mix, 44100)
    monkeypatch.setattr(chunks, "READ_SAMPLES", 997)
    small_reads = sep.separate(mix, 44100)
    for stem in whole:
        np.testing.assert_array_equal(whole[stem], small_reads[stem])


def test_batches_of_chunks_give_the_same_stems(model: Path, tmp_path: Path) -> None:
    mix = tone_mix(2.5, 44100, seed=7)
    one = Separator(model, params=str(params_file(tmp_path / "p.json")), segment=16, device="cpu")
    four = Separator(model, params=str(params_file(tmp_path / "p.json")), segment=16, batch_size=4, device="cpu")
    a, b = one.separate(mix, 44100), four.separate(mix, 44100)
    for stem in a:
        assert snr_db(a[stem], b[stem]) > 120


@pytest.mark.parametrize("rate", [22050, 48000])
def test_other_input_rates_are_resampled_to_the_models(model: Path, tmp_path: Path, rate: int) -> None:
    """UVR loads at 44.1 kHz with resampy's kaiser_best (librosa 0.9); the stems come back at the input's rate."""
    import resampy

    mix = tone_mix(1.5, rate, seed=8)
    sep = Separator(model, params=str(params_file(tmp_path / "p.json")), segment=16, device="cpu")
    at_model_rate = sep.separate(mix, rate, output_rate=44100)
    resampled = resampy.resample(mix.T, rate, 44100, filter="kaiser_best", axis=-1).T.astype(np.float32)
    primary, secondary = reference_stems(model, resampled)
    assert at_model_rate["vocals"].shape == primary.shape
    assert snr_db(primary, at_model_rate["vocals"]) > 100
    assert snr_db(secondary, at_model_rate["instrumental"]) > 100
    assert sep.separate(mix, rate)["vocals"].shape == mix.shape


def test_parameters_come_from_uvrs_table_by_hash(model: Path, monkeypatch) -> None:
    from uvr_cli.catalog.registry import uvr_model_hash

    table = {uvr_model_hash(model): {**SMALL, "primary_stem": "Instrumental", "compensate": 1.02}}
    monkeypatch.setattr(mdx_params, "table", lambda: table)
    sep = Separator(model, segment=16, device="cpu")
    assert sep.info.primary == "instrumental" and "compensate 1.02" in sep.info.setup
    assert sep.info.identity.how == f"UVR hash {uvr_model_hash(model)}"


def test_an_unknown_file_needs_params(model: Path) -> None:
    with pytest.raises(ModelError, match=r"net\.onnx: an MDX-Net model whose UVR hash \w+ is not in UVR's table"):
        Separator(model, segment=16, device="cpu")


@pytest.mark.parametrize(
    "record, message",
    [
        ({"compensate": 1.0}, "lack mdx_dim_f_set"),
        ({**SMALL, "mdx_dim_t_set": "8"}, "mdx_dim_t_set must be a positive whole number"),
        ({**SMALL, "mdx_dim_f_set": 4000}, "more than the 1025 bins"),
        ({**SMALL, "compensate": -1}, "compensate must be a positive number"),
    ],
)
def test_bad_params_files_are_one_line(model: Path, tmp_path: Path, record: dict, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(record))
    with pytest.raises(ModelError, match=message):
        Separator(model, params=str(path), segment=16, device="cpu")


def test_a_network_for_other_bins_than_its_parameters_say_is_refused(model: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="takes 256 frequency bins, but its parameters .* say dim_f 128"):
        Separator(model, params=str(params_file(tmp_path / "p.json", mdx_dim_f_set=128)), segment=16)


def test_segment_other_than_the_export_runs_where_the_network_allows(tmp_path: Path) -> None:
    """UVR runs such models through a torch conversion; here the graph's frame axis is freed for ONNX Runtime."""
    fixed = mdx_onnx(tmp_path / "fixed16.onnx", frames=16)
    free = mdx_onnx(tmp_path / "free.onnx", frames=None)  # the same weights: what UVR's conversion runs
    mix = tone_mix(2.0, 44100, seed=9)
    sep = Separator(fixed, params=str(params_file(tmp_path / "p.json")), segment=32, device="cpu")
    primary, _ = reference_stems(free, mix, segment_size=32)
    assert snr_db(primary, sep.separate(mix, 44100)["vocals"]) > 130
    with pytest.raises(UsageError, match="--segment 2: a chunk of 2 frames is too short"):
        Separator(fixed, params=str(params_file(tmp_path / "p.json")), segment=2)
    rigid = mdx_onnx(tmp_path / "rigid.onnx", frames=16, rigid=True)
    with pytest.raises(UsageError, match="exported for 16 frames and does not run with 32; use --segment 16"):
        Separator(rigid, params=str(params_file(tmp_path / "p.json")), segment=32, device="cpu")
    assert Separator(rigid, params=str(params_file(tmp_path / "p.json")), segment=16).info.family == "MDX-Net"


def test_a_vr_network_exported_by_uvr_is_not_taken_for_an_mdx_model(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "agg"], ["mask"])],
        "exported_vr",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2, 1025, "frames"]),
            helper.make_tensor_value_info("agg", TensorProto.FLOAT, []),
        ],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", 2, 1025, "frames"])],
    )
    path = tmp_path / "hp.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ModelError, match=r"hp\.onnx: a VR network exported by `uvr export`, not an MDX-Net model"):
        Separator(path, device="cpu")


@pytest.mark.slow
def test_cli_reports_records_and_redoes_on_changed_options(model: Path, tmp_path: Path) -> None:
    song = tmp_path / "song.flac"
    sf.write(song, tone_mix(3.0, 44100, seed=10), 44100, subtype="PCM_24")
    params = params_file(tmp_path / "p.json")
    argv = ["separate", str(song), "-m", str(model), "--params", str(params), "--segment", "16", "-o", str(tmp_path)]
    first = run_uvr(*argv, "--json")
    assert first.returncode == 0, first.stderr
    record = json.loads(first.stdout)
    assert record["status"] == "ok" and record["models"] == ["net.onnx"] and record["agg_applied"] is False
    settings = json.loads((tmp_path / ".song_vocals.wav.uvr.json").read_text())["settings"]
    assert settings["segment"] == 16 and settings["overlap"] == 0.25 and settings["agg"] is None
    again = run_uvr(*argv, "--json")
    assert json.loads(again.stdout)["status"] == "skipped"
    changed = run_uvr(*argv, "--overlap", "0.5", "--json")
    assert json.loads(changed.stdout)["status"] == "redone"
    assert "made with --overlap 0.25, not --overlap 0.5" in changed.stderr.decode()
    agg = run_uvr(*argv, "--agg", "20", "--overwrite")
    assert agg.returncode == 0
    assert agg.stderr.decode().strip() == "uvr: --agg 20 has no effect: net.onnx is an MDX-Net model"


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncated", "not a readable ONNX model"),
        ("garbage", "not a readable ONNX model"),
        ("unknown", "is not in UVR's table; pass --params FILE.json"),
    ],
)
def test_cli_refuses_broken_or_unknown_files_in_one_line(model: Path, tmp_path: Path, damage: str, message: str):
    song = tmp_path / "song.wav"
    sf.write(song, tone_mix(1.0, 44100), 44100)
    path = tmp_path / "broken.onnx"
    data = model.read_bytes()
    path.write_bytes(
        data[: len(data) // 2]
        if damage == "truncated"
        else np.random.default_rng(0).bytes(5000)
        if damage == "garbage"
        else data
    )
    done = run_uvr("separate", str(song), "-m", str(path), "-o", str(tmp_path / "out"))
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == 3 and len(lines) == 1 and message in lines[0] and str(path.name) in lines[0], lines
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_info_describes_and_export_refuses_an_mdx_model(model: Path, tmp_path: Path) -> None:
    params = params_file(tmp_path / "p.json")
    described = run_uvr("info", str(model), "--params", str(params), "--json")
    assert described.returncode == 0, described.stderr
    data = json.loads(described.stdout)
    assert data["family"] == "MDX-Net" and data["input"] == {"name": "input", "shape": [None, 4, 256, 16]}
    assert data["params"]["n_fft"] == 2048 and data["stems"] == ["vocals", "instrumental"]
    text = run_uvr("info", str(model)).stdout.decode()
    assert "family:       MDX-Net" in text and "parameters:   unknown (pass --params FILE.json)" in text
    exported = run_uvr("export", str(model), "-o", str(tmp_path / "x.onnx"))
    lines = exported.stderr.decode().strip().splitlines()
    assert exported.returncode == 2 and len(lines) == 1 and "already an ONNX file" in lines[0]
