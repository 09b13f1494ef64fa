"""Shared fixtures: test weights made from seeds, test data, and how to run the real `uvr` command."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from uvr_cli.engine.families.vr.nets import AsppNetSpec, CascadedNetSpec, NetworkSpec, build_network

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"  # reference data copied from UVR5 (see data/CREDITS.md)


def uvr_command() -> list[str]:
    """The installed console script next to this Python, else `python -m uvr_cli`."""
    script = Path(sys.executable).with_name("uvr")
    return [str(script)] if script.exists() else [sys.executable, "-m", "uvr_cli"]


def run_uvr(
    *args: str, input: bytes | None = None, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run the real CLI as a user would, capturing bytes."""
    return subprocess.run([*uvr_command(), *args], input=input, capture_output=True, cwd=cwd, timeout=timeout)


def on_terminal(
    *args: str, columns: int, stream: str = "stdout", cwd: Path | None = None, env: dict | None = None
) -> tuple[int, bytes, bytes]:
    """Run the real CLI with `stream` ('stdout', 'stderr' or 'both') on a pseudo-terminal `columns` wide and the
    other stream on a pipe: (exit status, what the terminal received, what the pipe received)."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))  # a new pty is 0 wide
    env = {k: v for k, v in (env or os.environ).items() if k not in ("COLUMNS", "LINES")}  # the pty's size counts
    streams = {
        "stdout": {"stdout": secondary, "stderr": subprocess.PIPE},
        "stderr": {"stdout": subprocess.PIPE, "stderr": secondary},
        "both": {"stdout": secondary, "stderr": secondary},
    }[stream]
    proc = subprocess.Popen([*uvr_command(), *args], cwd=cwd, env=env, **streams)
    os.close(secondary)
    shown = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # EIO: the terminal's last writer has gone
            break
        if not chunk:
            break
        shown += chunk
    os.close(primary)
    other = {"stdout": proc.stderr, "stderr": proc.stdout}.get(stream)
    piped = other.read() if other is not None else b""
    return proc.wait(timeout=300), shown, piped


def random_uvr_state(spec: NetworkSpec, bins: int, seed: int) -> dict[str, torch.Tensor]:
    """Random float16 weights with the keys and shapes of uvr_cli's network for ``spec`` (the real UVR5 layout,
    test_checkpoint checks it against UVR5's listings), valued as trained weights look: He-scaled normal
    convolution/linear/LSTM weights, BatchNorm gains near 1, small biases and means, running_var in [0.5, 1.5),
    num_batches_tracked 0."""
    with torch.device("meta"):  # shapes only: the ch64 nets would otherwise allocate and initialise 0.5 GB
        layout = build_network(spec, bins).state_dict()
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, like in layout.items():
        leaf, shape = key.rsplit(".", 1)[1], like.shape
        if leaf == "num_batches_tracked":
            state[key] = torch.tensor(0, dtype=torch.int64)
            continue
        if leaf == "running_var":
            t = torch.rand(shape, generator=gen) + 0.5
        elif leaf == "weight" and len(shape) == 1:  # BatchNorm gain
            t = 1 + 0.1 * torch.randn(shape, generator=gen)
        elif len(shape) == 1:  # biases (LSTM ones included) and running means
            t = 0.1 * torch.randn(shape, generator=gen)
        else:
            t = torch.randn(shape, generator=gen) * (2.0 / int(np.prod(shape[1:]))) ** 0.5
        state[key] = t.half()
    return state


def save_random_checkpoint(path: Path, spec: NetworkSpec, bins: int, seed: int) -> Path:
    """A .pth file as UVR5 ships them: a bare fp16 state dict."""
    torch.save(random_uvr_state(spec, bins, seed), path)
    return path


@pytest.fixture(scope="session")
def ch16_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight CascadedASPPNet ch16 5-branch checkpoint (UVR's "31191KB" layout) in fp16."""
    folder = tmp_path_factory.mktemp("weights-ch16")
    return save_random_checkpoint(folder / "cascaded_aspp_ch16_fp16.pth", AsppNetSpec(16, 5), 1024, seed=16)


@pytest.fixture(scope="session")
def cascadednet_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight CascadedNet nout 16 checkpoint for 1024 bins (UVR-DeNoise-Lite's layout) in fp16."""
    folder = tmp_path_factory.mktemp("weights-cascadednet")
    return save_random_checkpoint(
        folder / "cascadednet_nout16_bins1024_fp16.pth", CascadedNetSpec(16, 128, 1024), 1024, seed=1016
    )


def tone_mix(seconds: float = 2.0, rate: int = 44100, channels: int = 2, seed: int = 0) -> np.ndarray:
    """A small stereo test signal: two tones and a little noise, (frames, channels) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    base = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1375 * t + 1.0)
    data = np.stack([base + 0.02 * rng.standard_normal(t.size) for _ in range(channels)], axis=1)
    return data.astype(np.float32)


def has_ffmpeg() -> bool:
    return shutil.which("ffmpeg") is not None
