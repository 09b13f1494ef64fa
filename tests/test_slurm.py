"""`uvr separate --shard` under a real Slurm cluster (one node on localhost; CI starts it with .ci/slurm-up): an array
job of four tasks over a corpus of short clips, one task cancelled mid-run and resubmitted, and two tasks wrongly
given the same inputs in one output folder. Skipped, saying why, where no cluster answers."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import soundfile as sf

from conftest import tone_mix, uvr_command
from uvr_cli.atomic import TEMP_SUFFIX
from uvr_cli.io.outputs import record_path

pytestmark = pytest.mark.slow

TOOLS = ("sbatch", "squeue", "scancel", "sinfo", "scontrol")
# Node states that will run a job; not down or drained ones, nor any with "*" (not responding)
USABLE = ("idle", "mixed", "allocated", "completing")
TASKS = 4
CLIPS = 16  # 1.5 s each, eight per folder: enough that the largest share holds several inputs to cancel among
NAME = "{dir}/{name}_{stem}.{ext}"
# Every run here, local or in a task, separates with these (on the CPU, so that all runs give the same bytes)
OPTIONS = ["--name", NAME, "--json", "--device", "cpu"]


@pytest.fixture(scope="module", autouse=True)
def cluster() -> None:
    """Skip unless Slurm's commands are installed and a controller answers with a node that can run jobs."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"Slurm's {', '.join(missing)} not installed (run .ci/slurm-up)")
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.skip("no Slurm cluster answers (run .ci/slurm-up): sinfo timed out")
    states = proc.stdout.split()
    if proc.returncode != 0 or not any(state.rstrip("~#!%$@^-") in USABLE for state in states):
        pytest.skip(f"no Slurm cluster answers (run .ci/slurm-up): sinfo says {proc.stderr.strip() or states}")


@dataclass
class Corpus:
    """A folder holding `corpus/` (the clips), `local/` (one plain run's outputs) and `logs/` (the tasks')."""

    root: Path
    local: dict[str, list[str]]  # input -> its files in local/ (stems and settings records), relative to it

    def expected(self, inputs: set[str]) -> dict[str, bytes]:
        """The files one plain run made for `inputs`, by path relative to the output folder."""
        return {name: (self.root / "local" / name).read_bytes() for i in inputs for name in self.local[i]}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """Sixteen clips in two folders, and what one plain run of `uvr separate` makes of them."""
    root = tmp_path_factory.mktemp("slurm")
    for i in range(CLIPS):
        folder = root / "corpus" / "ab"[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"clip{i:02d}.wav", tone_mix(1.5, seed=i), 44100, subtype="PCM_16")
    (root / "logs").mkdir()
    # Relative input paths, as a job script run in this folder gives them: the shares hash the path as given.
    proc = subprocess.run(
        [*uvr_command(), "separate", "corpus", "-o", "local", *OPTIONS],
        cwd=root,
        capture_output=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),  # one thread, as each task of one CPU runs
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    local = {}
    for record in map(json.loads, proc.stdout.splitlines()):
        assert record["status"] == "ok", record
        stems = [Path(path).relative_to(root / "local") for path in record["outputs"].values()]
        local[record["input"]] = [p.as_posix() for stem in stems for p in (stem, record_path(stem))]
    assert len(local) == CLIPS
    return Corpus(root, local)


def submit(corpus: Corpus, tag: str, array: str, shard: str, out: str) -> str:
    """sbatch a job array whose tasks run `uvr separate corpus -o OUT --shard SHARD` (a shell word, expanded in the
    task), each writing its --json records to logs/TAG.TASK.jsonl and its stderr to logs/TAG.TASK.err; the job id."""
    uvr, log = shlex.join(uvr_command()), f"logs/{tag}.$SLURM_ARRAY_TASK_ID"
    script = corpus.root / f"{tag}.sh"
    script.write_text(
        "#!/bin/bash\n"
        f"#SBATCH --job-name=uvr-{tag}\n"
        "#SBATCH --cpus-per-task=1\n"
        f"#SBATCH --output=logs/{tag}.%a.err\n"
        "export OMP_NUM_THREADS=1\n"
        # scancel signals this shell and uvr alike: with a trap the shell outlives uvr, to log its exit status
        "trap : TERM\n"
        f"{uvr} separate corpus -o {out} {shlex.join(OPTIONS)} --shard {shard} > {log}.jsonl\n"
        f"echo $? > {log}.rc\n",
        encoding="utf-8",
    )
    proc = subprocess.run(
        ["sbatch", "--parsable", f"--array={array}", f"--chdir={corpus.root}", "--export=ALL", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(";")[0]


def queued(job: str) -> list[str]:
    """The states of the job's tasks that Slurm still holds as pending, running or completing."""
    proc = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 and "Invalid job id" in proc.stderr:
        return []  # ended so long ago that the controller forgot it
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def wait(job: str, timeout: float = 300) -> None:
    """Poll squeue until every task of `job` has ended (sbatch --wait polls only every few seconds)."""
    deadline = time.monotonic() + timeout
    while queued(job):
        if time.monotonic() > deadline:
            subprocess.run(["scancel", job], timeout=60)
            pytest.fail(f"Slurm job {job} still queued after {timeout:.0f} s")
        time.sleep(0.2)


def finished(corpus: Corpus, tag: str, task: int) -> list[dict]:
    """The --json records of an ended task, which must have exited 0."""
    logs = corpus.root / "logs"
    err = (logs / f"{tag}.{task}.err").read_text(encoding="utf-8")
    assert (logs / f"{tag}.{task}.rc").read_text().strip() == "0", err
    return [json.loads(line) for line in (logs / f"{tag}.{task}.jsonl").read_text(encoding="utf-8").splitlines()]


def tree(folder: Path) -> dict[str, bytes]:
    """Every file below `folder`, hidden ones included, by path relative to it."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    """Temporary files: a write not renamed into place (uvr_cli/atomic.py), a writability probe not removed."""
    return [
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.name.endswith(TEMP_SUFFIX) or p.name.startswith(".uvr-probe-")
    ]


def assert_same_files(made: dict[str, bytes], expected: dict[str, bytes]) -> None:
    assert sorted(made) == sorted(expected)
    assert [name for name in expected if made[name] != expected[name]] == [], "differ from the local run's"


@pytest.fixture(scope="module")
def array_run(corpus: Corpus) -> dict[int, list[dict]]:
    """`--array=1-4` with `--shard auto`, all into one output folder: each task's records."""
    wait(submit(corpus, "array", f"1-{TASKS}", "auto", "sharded"))
    return {task: finished(corpus, "array", task) for task in range(1, TASKS + 1)}


def test_array_tasks_separate_each_input_once_as_one_run_does(corpus: Corpus, array_run: dict[int, list[dict]]) -> None:
    for task in array_run:
        first = (corpus.root / "logs" / f"array.{task}.err").read_text(encoding="utf-8").splitlines()[0]
        assert first == f"uvr: shard {task}/{TASKS} (Slurm array task {task} of 1-{TASKS})"
    records = [record for task in array_run.values() for record in task]
    assert Counter(r["input"] for r in records if r["status"] == "ok") == Counter(dict.fromkeys(corpus.local, 1))
    assert len(records) == CLIPS  # a task reports only its own share
    assert all(array_run.values()), "a task was given no inputs: too few clips to tell the shares apart"
    out = corpus.root / "sharded"
    assert leftovers(out) == []
    assert_same_files(tree(out), corpus.expected(set(corpus.local)))


def test_a_cancelled_task_resubmitted_separates_only_what_it_left(
    corpus: Corpus, array_run: dict[int, list[dict]]
) -> None:
    # A resubmitted index is an array of one (SLURM_ARRAY_TASK_MIN = MAX = K, COUNT = 1): the array's spec, given as
    # auto/FIRST-LAST, keeps the task's share of the whole array.
    shard = f"auto/1-{TASKS}"
    task = max(array_run, key=lambda k: len(array_run[k]))  # the most inputs: the most room to cancel mid-run
    share = {record["input"] for record in array_run[task]}
    out = corpus.root / "resumed"

    def complete() -> set[str]:
        """The inputs of the share whose stems and settings records are all in place."""
        return {i for i in share if all((out / name).is_file() for name in corpus.local[i])}

    job = submit(corpus, "cancel", str(task), shard, "resumed")
    deadline = time.monotonic() + 300
    while not complete():
        assert queued(job), "the task ended before it had separated anything"
        assert time.monotonic() < deadline, "no input separated in 300 s"
        time.sleep(0.05)
    cancel = subprocess.run(["scancel", f"{job}_{task}"], capture_output=True, text=True, timeout=60)
    assert cancel.returncode == 0, cancel.stderr
    wait(job, timeout=120)
    shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, timeout=60).stdout
    assert "JobState=CANCELLED" in shown, shown
    # 143: uvr unwound on SIGTERM (removing what it was writing), not killed outright, and said so
    assert (corpus.root / "logs" / f"cancel.{task}.rc").read_text().strip() == "143"
    said = (corpus.root / "logs" / f"cancel.{task}.err").read_text(encoding="utf-8")
    assert "uvr: terminated; finished outputs are kept, none is left half-written" in said, said
    assert leftovers(out) == []
    before = complete()
    assert 0 < len(before) < len(share), f"the cancel came after the task had finished its {len(share)} inputs"

    wait(submit(corpus, "resubmit", str(task), shard, "resumed"))
    records = finished(corpus, "resubmit", task)
    said = (corpus.root / "logs" / f"resubmit.{task}.err").read_text(encoding="utf-8").splitlines()
    assert said[0] == f"uvr: shard {task}/{TASKS} (Slurm array task {task} of 1-{TASKS})"
    assert {r["input"] for r in records} == share and len(records) == len(share)
    assert {r["input"] for r in records if r["status"] == "skipped"} == before
    # "redone" where the cancel fell between an input's stems and their settings records
    assert {r["input"] for r in records if r["status"] in ("ok", "redone")} == share - before
    assert leftovers(out) == []
    assert_same_files(tree(out), corpus.expected(share))


def test_two_tasks_given_the_same_inputs_leave_one_complete_set(corpus: Corpus) -> None:
    # A wrong shard spec: both tasks of the array take the whole corpus, at once, into one folder.
    wait(submit(corpus, "twice", "1-2", "1/1", "twice"))
    runs = [finished(corpus, "twice", task) for task in (1, 2)]
    for records in runs:
        assert sorted(r["input"] for r in records) == sorted(corpus.local)
        assert {r["status"] for r in records} <= {"ok", "redone", "skipped"}
    both = [i for i in corpus.local if all(r["status"] != "skipped" for run in runs for r in run if r["input"] == i)]
    assert both, "the two tasks never separated one input at the same time: no collision was tried"
    out = corpus.root / "twice"
    assert leftovers(out) == []
    assert_same_files(tree(out), corpus.expected(set(corpus.local)))
