"""Several files at once with their network windows in shared batches (engine/batching.py, --batch-files)."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, uvr_command
from uvr_cli.cli.common import EXIT_SOME_FAILED
from uvr_cli.engine import pipeline
from uvr_cli.engine.batching import WindowBatcher
from uvr_cli.errors import AudioError
from uvr_cli.separator import Separator

SONG = ROOT / "examples" / "slow_motion_dream.mp3"


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Five 3 s clips of the example song (one network window each at the default window)."""
    folder = tmp_path_factory.mktemp("clips")
    audio, rate = sf.read(SONG, dtype="float32")
    paths = []
    for i in range(5):
        path = folder / f"clip{i}.wav"
        sf.write(path, audio[int(i * 1.5 * rate) : int((i * 1.5 + 3) * rate)], rate, subtype="FLOAT")
        paths.append(path)
    return paths


def test_files_at_once_batch_their_windows_and_write_what_one_at_a_time_writes(
    clips: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sep = Separator(device="cpu", batch_size=8)
    calls: list[int] = []
    run_windows = pipeline.run_windows

    def counted(run, windows):
        calls.append(len(windows))
        return run_windows(run, windows)

    monkeypatch.setattr(pipeline, "run_windows", counted)

    def task(s: Separator, i: int) -> list[bytes]:
        outputs = {stem: str(tmp_path / f"{tag}{i}_{stem}.wav") for stem in ("vocals", "instrumental")}
        s.separate_file(str(clips[i]), outputs)
        return [Path(p).read_bytes() for p in outputs.values()]

    tag = "one"
    alone = [task(sep, i) for i in range(len(clips))]
    calls.clear()
    tag = "together"
    together = list(sep.map_together(task, range(len(clips)), 5))
    assert together == alone  # in input order, and the same bytes: a window's mask does not depend on its batch
    assert sum(calls) == 2 * len(clips), calls  # each clip's two windows (first pass's edge, then its blocks)
    assert max(calls) > 2, f"no batch held more than one file's windows: {calls}"
    assert not [t for t in threading.enumerate() if t.name.startswith("uvr-file")]


def test_a_failing_batch_fails_its_songs_and_the_others_go_on() -> None:
    def predict(windows: list[np.ndarray]) -> list[np.ndarray]:
        if any(w[0] < 0 for w in windows):
            raise RuntimeError("CUDA out of memory")
        return [w * 2 for w in windows]

    batcher = WindowBatcher(predict, batch_size=2)
    results: dict[int, object] = {}

    def song(i: int) -> None:
        with batcher.client():
            try:
                results[i] = batcher.outputs([np.array([-1.0 if i == 0 else float(i)])])
            except RuntimeError as exc:
                results[i] = str(exc)

    threads = [threading.Thread(target=song, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a song waited forever"
    assert results[0] == "CUDA out of memory"
    for i in range(1, 5):  # batched with song 0 they fail with it; the rest are computed
        assert results[i] == "CUDA out of memory" or float(results[i][0][0]) == 2 * i  # type: ignore[index]
    assert batcher.calls >= 1


def test_the_cli_separates_a_folder_files_at_once_with_one_record_per_input(clips: list[Path], tmp_path: Path) -> None:
    folder = clips[0].parent
    broken = folder / "clip9_broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    try:
        proc = subprocess.run(
            [*uvr_command(), "separate", str(folder), "-o", str(tmp_path), "--batch-files", "3", "--json"],
            capture_output=True,
            text=True,
        )
    finally:
        broken.unlink()
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [Path(r["input"]).name for r in records] == [p.name for p in clips] + ["clip9_broken.wav"]
    assert [r["status"] for r in records] == ["ok"] * 5 + ["error"]
    assert proc.returncode == EXIT_SOME_FAILED, proc.stderr
    assert "clip9_broken.wav" in proc.stderr and "Traceback" not in proc.stderr
    assert len(list(tmp_path.glob("clip*_vocals.wav"))) == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-files", "0"], "--batch-files must be at least 1"),
        (["--batch-files", "2", "-j", "2"], "use one of them"),
    ],
)
def test_batch_files_refusals_are_one_line(clips: list[Path], tmp_path: Path, args: list[str], message: str) -> None:
    proc = subprocess.run(
        [*uvr_command(), "separate", str(clips[0]), "-o", str(tmp_path), *args], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_an_error_in_one_file_reaches_the_caller_as_it_was(clips: list[Path], tmp_path: Path) -> None:
    sep = Separator(device="cpu")

    def task(s: Separator, path: Path):
        return s.separate_file(str(path), {"vocals": str(tmp_path / f"{path.stem}_v.wav")})

    with pytest.raises(AudioError, match="missing.wav"):
        list(sep.map_together(task, [clips[0], tmp_path / "missing.wav"], 2))


def test_stopping_early_ends_the_files_in_flight_at_their_next_window() -> None:
    """Ctrl-C, SIGTERM or an error while files are in flight: the run does not wait for them to finish."""
    from uvr_cli.engine.batching import Stopped

    sep = Separator(device="cpu")
    long_song = np.random.default_rng(0).standard_normal((120 * 44100, 2)).astype(np.float32) * 0.1
    ended: dict[int, str] = {}
    started = threading.Event()

    def task(s: Separator, i: int) -> int:
        if i == 0:
            started.wait(30)  # the other file is under way before this one returns
            return 0
        started.set()
        try:
            s.separate(long_song, 44100)  # about 40 windows: far from done when the run stops
            ended[i] = "finished"
        except Stopped:
            ended[i] = "stopped"
            raise
        return i

    results = sep.map_together(task, [0, 1], 2)
    assert next(results) == 0
    results.close()  # what an exception in the consumer does: the generator's finally runs
    assert ended == {1: "stopped"}
    assert not [t for t in threading.enumerate() if t.name.startswith("uvr-file")]
