"""uvr train: a seconds-long run on tiny generated stems, resuming, stopping on a signal, and loading the result."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import run_uvr
from uvr_cli.training.train import TrainConfig, loss_fn, train

RATE = 44100


def _stems(seconds: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A chord 'instrumental' and a gliding harmonic 'voice', (n, 2) each."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    inst = sum(0.1 * np.sin(2 * np.pi * f * t) for f in rng.uniform(100, 600, 3))
    f0 = rng.uniform(200, 400) * (1 + 0.05 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voice = sum(0.1 / k * np.sin(k * phase) for k in range(1, 6))
    stereo = lambda x: np.stack([x, 0.9 * x], axis=1).astype(np.float32)  # noqa: E731
    return stereo(inst), stereo(voice)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    for split, count, seconds in (("train", 2, 1.5), ("validation", 1, 1.0)):
        for i in range(count):
            inst, voc = _stems(seconds, seed=i + 10 * (split == "validation"))
            for kind, wave in (("instruments", inst), ("vocals", voc), ("mixtures", inst + voc)):
                (root / split / kind).mkdir(parents=True, exist_ok=True)
                sf.write(root / split / kind / f"{i:04d}.flac", wave, RATE, subtype="PCM_24")
    return root


def _config(dataset: Path, out: Path, **changes) -> TrainConfig:
    base = dict(dataset=str(dataset), out=str(out), cropsize=32, batch=2, epoch_steps=2, save_every=1, seed=3)
    return TrainConfig(**{**base, **changes})


def test_loss_weights_main_and_aux_outputs() -> None:
    y = torch.zeros(1, 2, 4, 4)
    outputs = (torch.ones_like(y), torch.full_like(y, 2.0), torch.full_like(y, 4.0))
    assert loss_fn(outputs, y).item() == pytest.approx(0.8 + 0.1 * 2 + 0.1 * 4)


def test_the_same_seed_trains_the_same_weights(dataset: Path, tmp_path: Path) -> None:
    """--seed fixes the starting weights too, not only the patches: two runs end with equal tensors."""
    torch.set_num_threads(1)
    states = []
    for name in ("a", "b", "c"):
        seed = 4 if name == "c" else 3
        train(
            _config(dataset, tmp_path / name, max_steps=1, validate=False, seed=seed),
            log=lambda _: None,
            progress=False,
        )
        states.append(torch.load(tmp_path / name / "state.pt", weights_only=False)["model"])
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_train_resume_and_load_with_separate(dataset: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    run = tmp_path / "run"
    logs: list[str] = []
    first = train(_config(dataset, run, max_steps=2), log=logs.append, progress=False)
    assert first["step"] == 2 and "val_si_sdr" in first
    assert {"state.pt", "best.pth", "last.pth", "log.jsonl"} <= {p.name for p in run.iterdir()}
    before = torch.load(run / "state.pt", weights_only=False)["model"]["out.weight"].clone()
    second = train(_config(dataset, run, max_steps=3, validate=False), log=logs.append, progress=False)
    assert second["step"] == 3 and any("resuming" in line for line in logs)
    after = torch.load(run / "state.pt", weights_only=False)
    assert after["step"] == 3 and not torch.equal(after["model"]["out.weight"], before)
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert records[0]["epoch"] == 1

    state = torch.load(run / "best.pth", weights_only=True)
    assert state["out.weight"].dtype == torch.float16 and state["out.weight"].shape == (2, 32, 1, 1)
    song = tmp_path / "song.wav"
    inst, voc = _stems(1.0, seed=7)
    sf.write(song, inst + voc, RATE)
    done = run_uvr(
        "separate", str(song), "-m", str(run / "best.pth"), "--params", "4band_v2", "-o", str(tmp_path), "--json", "-q"
    )
    assert done.returncode == 0, done.stderr.decode()
    outputs = json.loads(done.stdout)["outputs"]
    for path in outputs.values():
        audio, rate = sf.read(path)
        assert rate == RATE and audio.shape == (RATE, 2)


def test_signal_saves_state_and_stops(dataset: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    run = tmp_path / "run"

    def interrupt(line: str) -> None:  # the first epoch's log line: as if Ctrl-C came during step 2
        os.kill(os.getpid(), signal.SIGINT)

    result = train(
        _config(dataset, run, max_steps=10, epoch_steps=1, save_every=100, validate=False),
        log=interrupt,
        progress=False,
    )
    assert result["stopped_by_signal"] == signal.SIGINT and result["step"] == 1
    assert torch.load(run / "state.pt", weights_only=False)["step"] == 1


def test_init_fine_tunes_the_given_weights_whatever_ch_says(dataset: Path, tmp_path: Path) -> None:
    """--init starts from a UVR5 file (here the bundled ch8 model, with --ch 16 given): one step moves its weights
    a little, and a resumed run keeps the file's architecture."""
    from conftest import ROOT
    from uvr_cli.engine.families.vr.checkpoint import read_state_dict

    torch.set_num_threads(1)
    original = read_state_dict(ROOT / "models" / "default.pth")
    logs: list[str] = []
    cfg = _config(
        dataset, tmp_path / "tuned", max_steps=1, validate=False, ch=16, init=str(ROOT / "models/default.pth")
    )
    train(cfg, log=logs.append, progress=False)
    assert any("starting from" in line and "ch=8" in line for line in logs)
    tuned = torch.load(tmp_path / "tuned" / "state.pt", weights_only=False)
    assert tuned["config"]["ch"] == 8
    moved = [k for k in original if not torch.equal(tuned["model"][k].half(), original[k].half())]
    assert moved, "the step changed nothing"
    relative = float(
        (tuned["model"]["out.weight"] - original["out.weight"].float()).norm() / original["out.weight"].float().norm()
    )
    assert relative < 0.2, "it did not start from the file's weights"
    resumed = train(_config(dataset, tmp_path / "tuned", max_steps=2, validate=False), log=logs.append, progress=False)
    assert resumed["step"] == 2


def test_init_refuses_an_architecture_training_cannot_build(dataset: Path, tmp_path: Path) -> None:
    from conftest import save_random_checkpoint
    from uvr_cli.engine.families.vr.nets import AsppNetSpec
    from uvr_cli.errors import UsageError

    seven = save_random_checkpoint(tmp_path / "seven.pth", AsppNetSpec(16, 7), 672, seed=1)
    with pytest.raises(UsageError, match="branches=7"):
        train(_config(dataset, tmp_path / "bad", max_steps=1, init=str(seven)), log=lambda _: None, progress=False)
