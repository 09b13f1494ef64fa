"""Shared fixtures: where ../shared is, and how to run the real `uvr` command."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("UVR_SHARED", ROOT.parent / "shared"))


def uvr_command() -> list[str]:
    """The installed console script next to this Python, else `python -m uvr_cli`."""
    script = Path(sys.executable).with_name("uvr")
    return [str(script)] if script.exists() else [sys.executable, "-m", "uvr_cli"]


def run_uvr(*args: str, input: bytes | None = None, cwd: Path | None = None, timeout: float = 300
            ) -> subprocess.CompletedProcess:
    """Run the real CLI as a user would, capturing bytes."""
    return subprocess.run([*uvr_command(), *args], input=input, capture_output=True, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data folder {SHARED} is absent (set UVR_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def ch16_weights(shared: Path) -> Path:
    """A random-weight CascadedASPPNet ch16 checkpoint in the real UVR5 fp16 layout."""
    return shared / "conformance" / "weights" / "cascaded_aspp_ch16_fp16.pth"


@pytest.fixture(scope="session")
def cascadednet_weights(shared: Path) -> Path:
    return shared / "conformance" / "weights" / "cascadednet_nout16_bins1024_fp16.pth"


def tone_mix(seconds: float = 2.0, rate: int = 44100, channels: int = 2, seed: int = 0) -> np.ndarray:
    """A small stereo test signal: two tones and a little noise, (frames, channels) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    base = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1375 * t + 1.0)
    data = np.stack([base + 0.02 * rng.standard_normal(t.size) for _ in range(channels)], axis=1)
    return data.astype(np.float32)


def has_ffmpeg() -> bool:
    return shutil.which("ffmpeg") is not None
