"""Ray, on a real local cluster: `uvr separate --ray`, `uvr_cli.ray.separate` and `SeparateBatch` in Ray Data make
the files one local run makes, byte for byte, keep its records and skip what is already done."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf

from conftest import tone_mix, uvr_command

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from uvr_cli.ray import SeparateBatch, separate  # noqa: E402  (after the skip: it needs ray installed)

ENV = dict(os.environ, OMP_NUM_THREADS="1")
CLIPS = ("a.wav", "b.flac", "live/c.wav")


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """A local Ray cluster of two CPUs for this module's tests."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three short clips in a folder tree, and the stems one plain local run makes of them (in `local/`)."""
    root = tmp_path_factory.mktemp("ray")
    for seed, name in enumerate(CLIPS):
        (root / "corpus" / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / "corpus" / name, tone_mix(0.5, seed=seed), 44100)
    local = subprocess.run(
        [*uvr_command(), "separate", "corpus", "-o", "local", "--name", "{dir}/{name}_{stem}.{ext}", "-q"],
        cwd=root,
        capture_output=True,
        env=ENV,
        timeout=300,
    )
    assert local.returncode == 0, local.stderr
    return root


def stems(folder: Path) -> dict[str, bytes]:
    """Every stem below `folder` (not the settings records), by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.wav"))}


def same_as_local(corpus: Path, folder: str) -> None:
    made, want = stems(corpus / folder), stems(corpus / "local")
    assert len(want) == 2 * len(CLIPS) and made.keys() == want.keys(), sorted(made)
    assert all(made[name] == want[name] for name in want), [n for n in want if made[n] != want[n]]
    leftovers = [p.name for p in (corpus / folder).rglob("*") if p.is_file() and not p.name.endswith((".wav", ".json"))]
    assert not leftovers, leftovers  # no temporary files


def test_separate_on_a_cluster_equals_a_local_run_and_skips_what_is_done(
    cluster: None, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(corpus)
    inputs = ["corpus", "missing.wav"]
    records = separate(inputs, "api", name="{dir}/{name}_{stem}.{ext}")
    assert [(r["input"], r["status"]) for r in records] == [
        ("corpus/a.wav", "ok"),
        ("corpus/b.flac", "ok"),
        ("corpus/live/c.wav", "ok"),
        ("missing.wav", "error"),
    ]
    assert records[0]["outputs"] == {s: str(corpus / "api" / f"a_{s}.wav") for s in ("vocals", "instrumental")}
    same_as_local(corpus, "api")
    again = separate(inputs, "api", name="{dir}/{name}_{stem}.{ext}")
    assert [r["status"] for r in again] == ["skipped", "skipped", "skipped", "error"]
    changed = separate(["corpus/a.wav"], "api", name="{dir}/{name}_{stem}.{ext}", agg=5)
    assert changed[0]["status"] == "redone" and "agg" in changed[0]["redone_because"]


def test_separate_batch_in_ray_data_equals_a_local_run(cluster: None, corpus: Path) -> None:
    paths = [str(corpus / "corpus" / name) for name in CLIPS]  # a worker's folder is not ours
    dataset = ray.data.from_items([{"path": path} for path in [*paths, "gone.wav"]])

    def run() -> dict[str, dict]:
        rows = dataset.map_batches(
            SeparateBatch,
            fn_constructor_kwargs={"output": str(corpus / "data"), "name": "{name}_{stem}.{ext}"},
            compute=ray.data.ActorPoolStrategy(size=2),
            batch_size=2,
        ).take_all()
        return {row["input"]: row for row in rows}

    rows = run()
    assert {path: row["status"] for path, row in rows.items()} == {
        **dict.fromkeys(paths, "ok"),
        "gone.wav": "error",
    }
    assert json.loads(rows[paths[2]]["outputs"])["vocals"] == str(corpus / "data" / "c_vocals.wav")
    assert rows["gone.wav"]["error"].startswith("gone.wav: no such file (a relative path, read from the worker's")
    made, want = stems(corpus / "data"), stems(corpus / "local")
    assert {Path(name).name: data for name, data in want.items()} == made
    assert {row["status"] for path, row in run().items() if path != "gone.wav"} == {"skipped"}


def test_uvr_separate_ray_local(corpus: Path) -> None:
    """The command line starts its own local cluster; records in input order, and stderr only uvr's own lines."""
    command = [*uvr_command(), "separate", "corpus", "-o", "cli", "--name", "{dir}/{name}_{stem}.{ext}", "--json"]
    done = subprocess.run([*command, "--ray", "local"], cwd=corpus, capture_output=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["input"], r["status"]) for r in records] == [(f"corpus/{name}", "ok") for name in CLIPS]
    assert all(line.startswith("uvr: ") for line in done.stderr.decode().splitlines()), done.stderr
    same_as_local(corpus, "cli")
    refused = subprocess.run([*command, "--ray", "local", "--then", "default"], cwd=corpus, capture_output=True)
    assert refused.returncode == 2 and b"--ray separates files" in refused.stderr
