"""`uvr export` and `--backend onnxruntime`: every family's exported network (ONNX run by ONNX Runtime, and
TorchScript) gives the torch network's masks, on other batch sizes and frame counts than it was traced with and
at any aggressiveness; the ONNX Runtime backend separates as torch does; failures are one line and leave no file."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import random_uvr_state, run_uvr, tone_mix, uvr_command
from uvr_cli.catalog.presets import load_preset
from uvr_cli.engine.families.vr.export import mask_graph, write_graph
from uvr_cli.engine.families.vr.loading import load_model
from uvr_cli.engine.families.vr.nets import (
    Aggressiveness,
    AsppNetSpec,
    CascadedNetSpec,
    MaskNetwork,
    NetworkSpec,
    build_network,
)
from uvr_cli.engine.onnx import MISSING_ORT

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

BINS, SPLIT, TRACE_WINDOW = 128, 40, 384
FAMILIES: dict[str, NetworkSpec] = {
    "aspp-ch16-5": AsppNetSpec(16, 5),
    "aspp-ch16-7": AsppNetSpec(16, 7),
    "aspp-ch16-enc5": AsppNetSpec(16, 5, enc5=True),
    "cascadednet-nout16": CascadedNetSpec(16, 128, BINS),
}
PRESET_1024 = "1band_sr44100_hl512"  # the shared conformance vector's preset for these 1024-bin weights


def snr_db(ref: np.ndarray, est: np.ndarray) -> float:
    noise = float(np.sum((ref.astype(np.float64) - est) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(ref.astype(np.float64) ** 2)) / noise)


def _network(spec: NetworkSpec, seed: int) -> MaskNetwork:
    net = build_network(spec, BINS)
    net.load_state_dict({k: v.float() for k, v in random_uvr_state(spec, BINS, seed).items()})
    return net.eval()


def _windows(rows: int) -> list[np.ndarray]:
    """Normalised magnitudes in [0, 1] (mostly small, as spectra are): batch 1 and 3, two frame counts."""
    rng = np.random.default_rng(7)
    return [(rng.random((n, 2, rows, t)) ** 3).astype(np.float32) for n, t in ((1, 512), (3, TRACE_WINDOW))]


def _torch_mask(net: MaskNetwork, x: np.ndarray, agg: float) -> np.ndarray:
    with torch.no_grad():
        return net.predict_mask(torch.from_numpy(x), Aggressiveness(agg, SPLIT)).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_exported_networks_give_the_torch_masks(family: str, tmp_path: Path) -> None:
    net = _network(FAMILIES[family], seed=len(family))
    graph = mask_graph(net, SPLIT)
    onnx_path, ts_path = tmp_path / "net.onnx", tmp_path / "net.pt"
    write_graph(graph, onnx_path)
    write_graph(graph, ts_path)
    model = onnx.load(str(onnx_path))
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) >= 17
    batch, _, _, frames = model.graph.input[0].type.tensor_type.shape.dim
    assert batch.dim_param and frames.dim_param  # dynamic, not the traced 2 x 384
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    scripted = torch.jit.load(str(ts_path))
    for x in _windows(BINS + 1):
        for agg in (0.1, 0.6):
            want = _torch_mask(net, x, agg)
            (got_onnx,) = session.run(["mask"], {"x": x, "agg": np.array(agg, np.float32)})
            with torch.no_grad():
                got_ts = scripted(torch.from_numpy(x), torch.tensor(agg)).numpy()
            assert got_onnx.shape == got_ts.shape == want.shape == x.shape[:3] + (x.shape[3] - 2 * net.offset,)
            assert snr_db(want, got_onnx) >= 80 and snr_db(want, got_ts) >= 80, (family, x.shape, agg)
    if isinstance(FAMILIES[family], AsppNetSpec):  # agg is an input, not baked in
        x = _windows(BINS + 1)[0]
        low, high = (session.run(["mask"], {"x": x, "agg": np.array(a, np.float32)})[0] for a in (0.0, 0.6))
        assert np.abs(low - high).max() > 0.01


def test_uvr_export_torchscript_and_its_description(ch16_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "net.pt"
    done = run_uvr("export", str(ch16_weights), "--params", PRESET_1024, "-o", str(out), "--window", "384")
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().split() == [str(out), str(out) + ".json"]
    said = done.stderr.decode().splitlines()  # a line before the slow tracing and one when it is done
    assert said[0] == f"uvr: tracing {ch16_weights.name}'s network into net.pt ..."
    assert said[1].startswith("uvr: exported in ") and len(said) == 2
    info = json.loads((tmp_path / "net.pt.json").read_text())
    preset = load_preset(PRESET_1024)
    assert info["format"] == "torchscript" and info["model"]["architecture"] == "CascadedASPPNet"
    assert (info["offset"], info["window"], info["roi"], info["split_bin"]) == (128, 384, 128, preset.split_bin)
    assert info["primary_stem"] == "instrumental" and info["preset"]["name"] == PRESET_1024
    assert [i["name"] for i in info["inputs"]] == ["x", "agg"] and info["outputs"][0]["name"] == "mask"
    assert info["inputs"][0]["shape"] == ["batch", 2, 1025, "frames"]
    model = load_model(ch16_weights, PRESET_1024)
    x = _windows(1025)[0]
    want = model.loaded.module.predict_mask(torch.from_numpy(x), Aggressiveness(0.3, preset.split_bin))
    with torch.no_grad():
        got = torch.jit.load(str(out))(torch.from_numpy(x), torch.tensor(0.3))
    assert snr_db(want.detach().numpy(), got.numpy()) >= 80


@pytest.mark.parametrize(
    "args, words",
    [
        (["-o", "{tmp}/net.txt"], ["net.txt", ".onnx"]),
        (["-o", "{tmp}/net.pt", "--window", "300"], ["--window 300"]),
        (["-o", "{tmp}/net.pt", "--precision", "bf16"], ["--precision"]),
        (["-o", "{tmp}/absent/net.pt"], ["absent", "does not exist"]),
    ],
)
def test_uvr_export_refusals_are_one_line_and_leave_no_file(
    ch16_weights: Path, tmp_path: Path, args: list[str], words: list[str]
) -> None:
    done = run_uvr("export", str(ch16_weights), "--params", PRESET_1024, *[a.format(tmp=tmp_path) for a in args])
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and all(w in lines[0] for w in words), lines
    assert not any(tmp_path.rglob("*")) and done.stdout == b""


def _separate(inp: Path, weights: Path, out: Path, *extra: str) -> dict[str, np.ndarray]:
    done = run_uvr(
        "separate",
        str(inp),
        "-m",
        str(weights),
        "--params",
        PRESET_1024,
        "--agg",
        "30",
        "-o",
        str(out),
        "--bit-depth",
        "32f",
        "-q",
        *extra,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr.decode()
    return {stem: sf.read(out / f"song_{stem}.wav", dtype="float64")[0] for stem in ("vocals", "instrumental")}


@pytest.mark.slow
def test_onnxruntime_backend_separates_as_torch_does(
    ch16_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UVR_MODEL_DIR", str(tmp_path / "cache"))  # the exported network is cached there
    song = tmp_path / "song.wav"
    sf.write(song, tone_mix(3.0), 44100, subtype="FLOAT")
    by_torch = _separate(song, ch16_weights, tmp_path / "torch")
    by_ort = _separate(song, ch16_weights, tmp_path / "ort", "--backend", "onnxruntime")
    for stem, want in by_torch.items():
        assert by_ort[stem].shape == want.shape and snr_db(want, by_ort[stem]) >= 80, stem
    assert len(list((tmp_path / "cache" / "onnx").glob("*.onnx"))) == 1


def test_onnxruntime_backend_without_the_package_names_the_extra(ch16_weights: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "blocked"
    blocker.mkdir()
    (blocker / "onnxruntime.py").write_text("raise ImportError('not installed')\n")
    song = tmp_path / "song.wav"
    sf.write(song, tone_mix(1.0), 44100)
    env = {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(
        [
            *uvr_command(),
            "separate",
            str(song),
            "-m",
            str(ch16_weights),
            "--params",
            PRESET_1024,
            "-o",
            str(tmp_path / "out"),
            "--backend",
            "onnxruntime",
        ],
        capture_output=True,
        env=env,
    )
    assert done.returncode == 2
    assert done.stderr.decode().strip().splitlines() == [f"uvr: {MISSING_ORT}"]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
