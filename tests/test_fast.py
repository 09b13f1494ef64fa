"""`--fast`: int8 convolutions in ONNX Runtime and wider windows, on the bundled model and the example song.

The quantised network keeps the convolutions that read the normalised magnitudes in float and quantises all the
others; its stems stay close to exact mode's without being them; it is prepared once per model and reused; and
the settings record tells fast outputs from exact ones.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, run_uvr, uvr_command
from uvr_cli.engine.onnx import MISSING_ORT
from uvr_cli.errors import UsageError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

SONG = ROOT / "examples" / "slow_motion_dream.mp3"


def snr_db(ref: np.ndarray, est: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref**2) / np.sum((ref - est) ** 2)))


@pytest.fixture(autouse=True)
def model_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private model cache: the quantised network is made there."""
    monkeypatch.setenv("UVR_MODEL_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _separate(out: Path, *extra: str) -> tuple[dict[str, np.ndarray], str]:
    done = run_uvr("separate", str(SONG), "-o", str(out), "--bit-depth", "32f", *extra, timeout=900)
    assert done.returncode == 0, done.stderr.decode()
    stems = {stem: sf.read(out / f"slow_motion_dream_{stem}.wav")[0] for stem in ("vocals", "instrumental")}
    return stems, done.stderr.decode()


def _weight_sources(model) -> dict[str, str]:  # model: onnx.ModelProto
    """Each Conv node's name -> the op that makes its weight ('initializer' when it is stored as is)."""
    made_by = {out: node for node in model.graph.node for out in node.output}
    return {
        node.name: made_by[node.input[1]].op_type if node.input[1] in made_by else "initializer"
        for node in model.graph.node
        if node.op_type == "Conv"
    }


@pytest.mark.slow
def test_fast_mode_quantises_all_but_the_input_convolutions_and_stays_close_to_exact(
    tmp_path: Path, model_cache: Path
) -> None:
    from uvr_cli.engine.families.vr.fast import input_convolutions

    cache = model_cache
    exact, _ = _separate(tmp_path / "exact")
    fast, said = _separate(tmp_path / "fast", "--fast")
    assert "default.pth: preparing its int8 network for --fast, once per model" in said  # not a silent minute
    for stem, want in exact.items():
        assert fast[stem].shape == want.shape, stem
        # int8 and wider windows change the samples (measured 21-29 dB here), but not the separation
        assert 15 <= snr_db(want, fast[stem]) < 60, stem

    (quantised,) = (cache / "onnx").glob("*-int8-*.onnx")
    model = onnx.load(str(quantised))
    sources = _weight_sources(model)
    kept_float = input_convolutions(model.graph)
    assert len(kept_float) == 4  # stage-1 low and high bands, the stage-2 and stage-3 bridges
    assert all(sources[name] == "initializer" for name in kept_float)
    others = [name for name in sources if name not in kept_float]
    assert others and all(sources[name] == "DequantizeLinear" for name in others)

    stamp = quantised.stat().st_mtime_ns
    again, said = _separate(tmp_path / "again", "--fast", "-v")
    assert "preparing" not in said
    # -v names the precision the network runs in, not torch's float32 which does not run it
    assert "band preset 4band_v2, network in ONNX Runtime int8" in said, said
    assert "backend onnxruntime, --fast, device cpu, front end" in said, said
    assert quantised.stat().st_mtime_ns == stamp and len(list((cache / "onnx").glob("*.onnx"))) == 1
    for stem, want in fast.items():
        assert np.array_equal(again[stem], want), stem


@pytest.mark.slow
def test_fast_outputs_are_not_taken_for_exact_ones(tmp_path: Path) -> None:
    _separate(tmp_path / "out")
    _, said = _separate(tmp_path / "out", "--fast")
    assert "separating again" in said and "--fast off, not --fast on" in said, said
    record = json.loads((tmp_path / "out" / ".slow_motion_dream_vocals.wav.uvr.json").read_text())
    assert record["settings"]["fast"] is True and record["settings"]["window"] == 1536


@pytest.mark.parametrize(
    "args, words",
    [
        (["--fast", "--backend", "torch"], ["--fast", "--backend torch"]),
        (["--backend", "onnxruntime", "--precision", "bf16"], ["--precision", "int8"]),
    ],
)
def test_fast_refusals_are_one_line(tmp_path: Path, args: list[str], words: list[str]) -> None:
    done = run_uvr("separate", str(SONG), "-o", str(tmp_path / "out"), *args)
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and all(w in lines[0] for w in words), lines
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_separator_refuses_fast_with_torch() -> None:
    from uvr_cli.separator import Separator

    with pytest.raises(UsageError, match="--fast"):
        Separator(fast=True, backend="torch")


def test_fast_without_onnxruntime_names_the_extra(tmp_path: Path) -> None:
    blocker = tmp_path / "blocked"
    blocker.mkdir()
    (blocker / "onnxruntime.py").write_text("raise ImportError('not installed')\n")
    env = {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(
        [*uvr_command(), "separate", str(SONG), "--fast", "-o", str(tmp_path / "out")], capture_output=True, env=env
    )
    assert done.returncode == 2
    assert done.stderr.decode().strip().splitlines() == [f"uvr: {MISSING_ORT}"]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
