"""Reruns and checks before work, as users meet them with the real `uvr separate` and the bundled model.

Outputs carry a record of the settings that made them; a rerun skips an input only when that record matches, says
why when it separates again, and answers a finished batch without torch. An output folder that cannot take the
outputs is refused before anything is separated or written.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import soundfile as sf
from test_robustness import unprivileged_prefix

from conftest import ROOT, tone_mix, uvr_command
from uvr_cli.catalog.registry import uvr_model_hash

MODEL = ["-m", "default", "--device", "cpu"]  # the bundled model, by the name `uvr models` shows
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def uvr(*args: str, cwd: Path, env: dict | None = None, prefix: list[str] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, *uvr_command(), *args], cwd=cwd, capture_output=True, env=env or ENV, timeout=300)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """a.wav and b.wav (0.5 s) separated into out/ with the default settings."""
    root = tmp_path_factory.mktemp("finished")
    sf.write(root / "a.wav", tone_mix(0.5), 44100, subtype="PCM_16")
    sf.write(root / "b.wav", tone_mix(0.5, seed=1), 44100, subtype="PCM_16")
    proc = uvr("separate", "a.wav", "b.wav", "-o", "out", *MODEL, cwd=root)
    assert proc.returncode == 0, proc.stderr
    return SimpleNamespace(root=root)


def copy_of(finished: SimpleNamespace, tmp_path: Path) -> Path:
    """A private copy of the finished folder (times kept, so the records still match)."""
    shutil.copytree(finished.root, tmp_path / "run", copy_function=shutil.copy2)
    return tmp_path / "run"


def run_json(root: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    proc = uvr("separate", "a.wav", "b.wav", "-o", "out", "--json", *MODEL, *args, cwd=root)
    return proc, [json.loads(line) for line in proc.stdout.decode().splitlines()]


def test_each_output_records_the_settings_that_made_it(finished):
    record = json.loads((finished.root / "out/.a_vocals.wav.uvr.json").read_text())
    assert record["settings"] == {
        "model": uvr_model_hash(ROOT / "models/default.pth"),
        "ensemble": None,
        "then": None,
        "fast": False,
        "backend": "torch",
        "params": "auto",
        "primary": "auto",
        "agg": 10,
        "tta": False,
        "post_process": False,
        "high_end": "mirroring",
        "window": 512,
        "segment": None,  # MDX-Net's options: recorded as shaping nothing here
        "overlap": None,
        "denoise": None,
        "config": None,
        "num_overlap": None,
        "precision": "auto",
        "front_end": "auto",
        "format": "wav",
        "bit_depth": "input",
        "sample_rate": "input",
        "bitrate": None,
        "clip_mode": "clip",
    }
    song = (finished.root / "a.wav").stat()
    assert record["input"] == {"size": song.st_size, "mtime_ns": song.st_mtime_ns}
    assert record["output_size"] == (finished.root / "out/a_vocals.wav").stat().st_size


def test_the_same_settings_skip_and_other_settings_separate_again_saying_why(finished, tmp_path):
    root = copy_of(finished, tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in (root / "out").iterdir()}
    proc, records = run_json(root)
    assert (
        proc.returncode == 0
        and proc.stderr
        == b"uvr: skipping every input: outputs already made with these settings (--overwrite makes them again)\n"
    ), proc.stderr
    assert [r["status"] for r in records] == ["skipped", "skipped"]
    assert {p.name: p.stat().st_mtime_ns for p in (root / "out").iterdir()} == before

    proc, records = run_json(root, "--agg", "30")
    assert proc.returncode == 0, proc.stderr
    why = "its outputs were made with --agg 10, not --agg 30"
    assert proc.stderr.decode().splitlines() == [
        f"uvr: a.wav: separating again: {why}",
        f"uvr: b.wav: separating again: {why}",
    ]
    assert [(r["status"], r["redone_because"]) for r in records] == [("redone", why), ("redone", why)]
    assert (root / "out/a_vocals.wav").stat().st_mtime_ns > before["a_vocals.wav"]
    assert json.loads((root / "out/.a_vocals.wav.uvr.json").read_text())["settings"]["agg"] == 30

    proc, records = run_json(root, "--agg", "30")  # now they match again
    assert (
        [r["status"] for r in records] == ["skipped", "skipped"]
        and proc.stderr
        == b"uvr: skipping every input: outputs already made with these settings (--overwrite makes them again)\n"
    )
    assert run_json(root, "--agg", "30", "-q")[0].stderr == b""  # -q: not even that line


def test_a_missing_record_or_a_changed_input_is_separated_again(finished, tmp_path):
    root = copy_of(finished, tmp_path)
    (root / "out/.a_instrumental.wav.uvr.json").unlink()
    sf.write(root / "b.wav", tone_mix(0.5, seed=7), 44100, subtype="PCM_16")
    proc, records = run_json(root)
    assert proc.returncode == 0, proc.stderr
    assert [(r["status"], r["redone_because"]) for r in records] == [
        ("redone", "a_instrumental.wav has no record of the settings that made it"),
        ("redone", "the input changed since its outputs were made"),
    ]
    assert (root / "out/.a_instrumental.wav.uvr.json").is_file()


def test_a_thousand_finished_inputs_are_answered_quickly_without_torch(finished, tmp_path):
    """1000 inputs whose outputs and records exist (copies of a real run's): under 2 s of CPU, torch never
    imported. CPU time, not wall time, is bounded: the test machine is shared and may be busy."""
    root = tmp_path / "many"
    (root / "songs").mkdir(parents=True)
    (root / "out").mkdir()
    for i in range(1000):
        shutil.copy2(finished.root / "a.wav", root / f"songs/s{i:04d}.wav")
        for stem in ("vocals", "instrumental"):
            for made in (f"a_{stem}.wav", f".a_{stem}.wav.uvr.json"):
                shutil.copy2(finished.root / "out" / made, root / "out" / made.replace("a_", f"s{i:04d}_"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = uvr("separate", "songs", "-o", "out", *MODEL, cwd=root)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert proc.returncode == 0, proc.stderr
    assert (
        len(proc.stdout.split()) == 2000
        and proc.stderr
        == b"uvr: skipping every input: outputs already made with these settings (--overwrite makes them again)\n"
    )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu < 2.0, f"{cpu:.2f} s of CPU ({wall:.2f} s wall)"

    traced = uvr("separate", "songs", "-o", "out", *MODEL, cwd=root, env=dict(ENV, PYTHONPROFILEIMPORTTIME="1"))
    assert traced.returncode == 0
    modules = [
        line.rsplit("|", 1)[-1].strip()
        for line in traced.stderr.decode().splitlines()
        if line.startswith("import time:")
    ]
    assert "uvr_cli.cli.separate" in modules  # the trace is real...
    assert not [m for m in modules if m == "torch" or m.startswith("torch.")]  # ...and holds no torch


def _refused_before_work(proc: subprocess.CompletedProcess, output: Path, reason: str) -> None:
    lines = proc.stderr.decode().splitlines()
    assert proc.returncode == 1, lines
    assert len(lines) == 1 and lines[0].startswith(f"uvr: {output}: cannot write into ") and reason in lines[0], lines
    assert proc.stdout == b""


def test_an_output_folder_that_cannot_be_written_is_refused_before_any_separation(tmp_path):
    """Below a regular file (nobody can make that folder), and read-only where permissions can be made to bind
    for root (setpriv); -v would print the model line had the model been loaded."""
    sf.write(tmp_path / "a.wav", tone_mix(0.5), 44100)
    (tmp_path / "file").write_bytes(b"not a folder")
    cases = [([], tmp_path / "file/out", "Not a directory")]
    prefix = unprivileged_prefix(tmp_path)
    if prefix is not None:
        (tmp_path / "locked").mkdir(mode=0o555)
        cases.append((prefix, tmp_path / "locked/out", "Permission denied"))
    before = sorted(tmp_path.rglob("*"))
    for run_prefix, out, reason in cases:
        proc = uvr("separate", "a.wav", "-o", str(out), "-v", *MODEL, cwd=tmp_path, prefix=run_prefix)
        _refused_before_work(proc, out / "a_vocals.wav", reason)
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, not even the probe
    if prefix is None:
        pytest.skip("only the not-a-folder case ran: file permissions do not bind for root without setpriv")


def test_a_file_system_without_room_for_the_outputs_is_refused_before_any_separation(tmp_path):
    """A 64 KiB tmpfs over the output folder, in a mount namespace of uvr's own; 2 s of 16-bit stereo needs
    about 705 kB for its two stems."""
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o size=16k uvr-probe "$0"', str(tmp_path)], capture_output=True
    )
    if shutil.which("unshare") is None or probe.returncode != 0:
        pytest.skip("no private tmpfs can be mounted here (needs unshare -m and mount rights)")
    sf.write(tmp_path / "a.wav", tone_mix(2.0), 44100, subtype="PCM_16")
    out = tmp_path / "out"
    out.mkdir()
    script = 'mount -t tmpfs -o size=64k uvr-full "$0" && "$@"; status=$?; ls -A "$0" >&2; exit $status'
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, str(out), *uvr_command(), "separate", "a.wav", "-o", str(out), *MODEL],
        cwd=tmp_path,
        capture_output=True,
        env=ENV,
        timeout=300,
    )
    _refused_before_work(
        proc, out / "a_vocals.wav", "No space left on device (the outputs need about 706 kB, 66 kB is free)"
    )
