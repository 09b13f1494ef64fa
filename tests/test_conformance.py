"""The shared conformance check: our CLI against the reference UVR5 pipeline's stems (>= 50 dB SNR per stem)."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest

from conftest import uvr_command

pytestmark = pytest.mark.slow


def test_conformance_vectors_pass(shared, tmp_path):
    check = shared / "conformance" / "check.py"
    env = dict(os.environ, UVR_CMD=shlex.join(uvr_command()))
    proc = subprocess.run([sys.executable, str(check), "--keep", str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=900)
    print(proc.stdout, proc.stderr)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert lines, proc.stdout + proc.stderr
    assert all(line.startswith("PASS") for line in lines), proc.stdout
    assert proc.returncode == 0
