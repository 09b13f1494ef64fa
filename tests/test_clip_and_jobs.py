"""`--jobs N` gives the bytes of one process; `--clip-mode rescale` scales both stems by one factor instead of clipping.

Both run the real `uvr separate` on 1 s inputs with the bundled model (one network window per file).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import soundfile as sf

from conftest import tone_mix, uvr_command


def uvr(*args: str, cwd: Path, threads: int = 1) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    return subprocess.run([*uvr_command(), *args], cwd=cwd, capture_output=True, env=env, timeout=300)


def test_jobs_write_the_bytes_of_one_process(tmp_path):
    """One process with 3 torch threads and `-j 2` workers with a share of the cores each: the same files, bit for
    bit (32-bit float output, where a 1 ulp difference in a mask would show). Before the network's results were
    made independent of the thread count, 1x1 convolutions (PyTorch's own code on one thread, oneDNN on more) and
    the mask's sigmoid and pow (the split of the elements among threads) made them differ."""
    for i in range(2):
        sf.write(tmp_path / f"s{i}.wav", tone_mix(1.0, seed=i), 44100, subtype="FLOAT")
    for jobs in ("1", "2"):
        proc = uvr(
            "separate", "s0.wav", "s1.wav", "-j", jobs, "-o", f"out{jobs}", "--device", "cpu", cwd=tmp_path, threads=3
        )
        assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in (tmp_path / "out1").glob("*.wav"))
    assert names == ["s0_instrumental.wav", "s0_vocals.wav", "s1_instrumental.wav", "s1_vocals.wav"]
    assert sf.info(tmp_path / "out1" / names[0]).subtype == "FLOAT"
    for name in names:
        assert (tmp_path / "out1" / name).read_bytes() == (tmp_path / "out2" / name).read_bytes(), name
