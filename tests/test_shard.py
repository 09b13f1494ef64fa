"""Spreading a corpus over job array tasks: `--shard auto` through the real `uvr` command, as Slurm starts it, and
the README's Kubernetes Indexed Job manifest."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import soundfile as sf
import yaml

from conftest import ROOT, tone_mix, uvr_command

ENV = dict(os.environ, OMP_NUM_THREADS="1")


def uvr(*args: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([*uvr_command(), *args], cwd=cwd, capture_output=True, env=env, timeout=300)


def test_slurm_array_tasks_separate_each_input_once_as_one_run_does(tmp_path: Path) -> None:
    """Four tasks of `--array=1-4` (run one after another, with the variables Slurm sets) over six clips: every
    input is separated by exactly one task, into the files one plain run makes, byte for byte."""
    (tmp_path / "corpus").mkdir()
    for i in range(6):
        sf.write(tmp_path / "corpus" / f"clip{i}.wav", tone_mix(0.3, seed=i), 44100, subtype="PCM_16")
    args = ["separate", "corpus", "-o", "sharded", "--json", "--device", "cpu"]
    separated = []
    for task in range(1, 5):
        slurm = {"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "4",
                 "SLURM_ARRAY_TASK_COUNT": "4"}  # fmt: skip
        proc = uvr(*args, "--shard", "auto", cwd=tmp_path, env={**ENV, **slurm})
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.decode().splitlines()[0] == f"uvr: shard {task}/4 (Slurm array task {task} of 1-4)"
        separated += [json.loads(line)["input"] for line in proc.stdout.splitlines()]
    assert sorted(separated) == [f"corpus/clip{i}.wav" for i in range(6)]
    whole = uvr("separate", "corpus", "-o", "whole", "-q", "--device", "cpu", cwd=tmp_path, env=ENV)
    assert whole.returncode == 0, whole.stderr
    made = sorted(p.name for p in (tmp_path / "whole").iterdir())
    assert made == sorted(p.name for p in (tmp_path / "sharded").iterdir()) and len(made) == 6 * 4  # stems, records
    for name in made:
        if name.endswith(".wav"):
            assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "sharded" / name).read_bytes(), name


def test_the_readmes_indexed_job_is_a_batch_v1_job_whose_tasks_cover_the_corpus() -> None:
    """The fields a batch/v1 Indexed Job needs, with the types the schema gives them, and --shard auto/N with N
    the Job's completions."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```yaml\n(.*?)```", readme, flags=re.S)
    job = yaml.safe_load(block)
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert isinstance(job["metadata"]["name"], str) and re.fullmatch(
        r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", job["metadata"]["name"]
    )
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and isinstance(spec["completions"], int)
    assert isinstance(spec["parallelism"], int) and isinstance(spec["backoffLimit"], int)
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] in ("OnFailure", "Never")  # what a Job's pods may use
    (container,) = pod["containers"]
    assert {"name", "image", "command"} <= set(container) and all(isinstance(a, str) for a in container["command"])
    command = container["command"]
    assert command[:2] == ["uvr", "separate"]
    assert command[command.index("--shard") + 1] == f"auto/{spec['completions']}"
    mounts = {m["name"] for m in container["volumeMounts"]}
    assert mounts == {v["name"] for v in pod["volumes"]}
