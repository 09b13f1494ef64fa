"""`--jobs N` gives the bytes of one process; `--clip-mode rescale` scales both stems by one factor instead of clipping.

Both run the real `uvr separate` on 1 s inputs with the bundled model (one network window per file).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import tone_mix, uvr_command


def uvr(*args: str, cwd: Path, threads: int = 1) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    return subprocess.run([*uvr_command(), *args], cwd=cwd, capture_output=True, env=env, timeout=300)


@pytest.mark.parametrize("mode", [[], ["--fast"]], ids=["exact", "fast"])
def test_jobs_write_the_bytes_of_one_process(tmp_path, mode, monkeypatch):
    """One process with 3 torch threads and `-j 2` workers with a share of the cores each: the same files, bit for
    bit (32-bit float output, where a 1 ulp difference in a mask would show). Before the network's results were
    made independent of the thread count, 1x1 convolutions (PyTorch's own code on one thread, oneDNN on more) and
    the mask's sigmoid and pow (the split of the elements among threads) made them differ. --fast's ONNX Runtime
    threads follow torch's, and its results do not depend on them either."""
    if mode:
        pytest.importorskip("onnxruntime")
        monkeypatch.setenv("UVR_MODEL_DIR", str(tmp_path / "cache"))  # the int8 network is prepared there once
    for i in range(2):
        sf.write(tmp_path / f"s{i}.wav", tone_mix(1.0, seed=i), 44100, subtype="FLOAT")
    for jobs in ("1", "2"):
        proc = uvr(
            "separate",
            "s0.wav",
            "s1.wav",
            "-j",
            jobs,
            "-o",
            f"out{jobs}",
            "--device",
            "cpu",
            *mode,
            cwd=tmp_path,
            threads=3,
        )
        assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in (tmp_path / "out1").glob("*.wav"))
    assert names == ["s0_instrumental.wav", "s0_vocals.wav", "s1_instrumental.wav", "s1_vocals.wav"]
    assert sf.info(tmp_path / "out1" / names[0]).subtype == "FLOAT"
    for name in names:
        assert (tmp_path / "out1" / name).read_bytes() == (tmp_path / "out2" / name).read_bytes(), name


def test_clip_mode_rescale_scales_both_stems_by_one_factor(tmp_path):
    """A mixture at 3x full scale: clipped and counted by default; with --clip-mode rescale both 16-bit stems are
    the float stems times one factor (< 1, on stderr and in --json, recorded beside the outputs), nothing clips and
    the louder stem reaches full scale; 32-bit float keeps the samples as they are (factor 1.0)."""
    sf.write(tmp_path / "loud.wav", 3 * tone_mix(1.0, seed=3), 44100, subtype="FLOAT")
    runs = {}
    for mode, depth in (("clip", "16"), ("rescale", "16"), ("rescale", "32f")):
        out = f"{mode}{depth}"
        proc = uvr("separate", "loud.wav", "--clip-mode", mode, "--bit-depth", depth, "-o", out, "--json", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        record = json.loads(proc.stdout)
        stems = {stem: sf.read(tmp_path / path, dtype="float64")[0] for stem, path in record["outputs"].items()}
        runs[out] = (record, stems, proc.stderr.decode())
    record, _, stderr = runs["clip16"]
    assert record["rescaled_by"] == 1.0 and sum(record["clipped_samples"].values()) > 0
    assert "clipped" in stderr and "scaled by" not in stderr
    record, float_stems, stderr = runs["rescale32f"]
    assert record["rescaled_by"] == 1.0 and record["clipped_samples"] == {} and "scaled by" not in stderr
    peak = max(np.abs(x).max() for x in float_stems.values())
    assert peak > 1.5
    record, stems, stderr = runs["rescale16"]
    factor = record["rescaled_by"]
    assert record["clipped_samples"] == {} and abs(factor - 1 / peak) < 1e-6
    assert [line for line in stderr.splitlines() if "scaled by" in line] == [
        f"uvr: loud.wav: scaled by {factor:.4f} ({20 * np.log10(factor):.2f} dB) so that no sample clips "
        "(--clip-mode rescale)"
    ]
    for stem, samples in stems.items():
        assert np.abs(samples - float_stems[stem] * factor).max() <= 2**-15, stem
    assert max(np.abs(x).max() for x in stems.values()) >= 1 - 2**-14
    recorded = json.loads((tmp_path / "rescale16" / ".loud_vocals.wav.uvr.json").read_text())
    assert recorded["settings"]["clip_mode"] == "rescale"
