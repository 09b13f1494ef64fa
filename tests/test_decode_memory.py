"""Decoding through open_source in blocks keeps memory flat, whatever the input's length and way in.

Each decoding runs in a child started by a small launcher process, whose peak RSS is the child's own: Linux copies
the peak RSS of the process that spawns (with vfork, as subprocess does) into the child's ru_maxrss, so a child of
this test process would report at least the test's own peak. A 30-minute input must peak within a few tens of MB
of a 1-minute one; decoded whole, 30 minutes of 16 kHz mono is 115 MB of float32 more. Inputs are 1 minute of
noise, encoded once and repeated by ffmpeg without re-encoding, so making them is quick.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000
LONG_MINUTES = 30
ALLOWED_GROWTH_MB = 30

# Runs argv[1:] with standard output discarded; prints its peak RSS in KiB and its exit status.
LAUNCHER = """import os, sys
pid = os.posix_spawnp(sys.argv[1], sys.argv[1:], os.environ,
                      file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""
# Decodes argv[1] ("-" = standard input) in blocks, as the engine does, and checks that every frame came.
DECODE = """import sys
from uvr_cli.io.decode import open_source
with open_source(sys.argv[1]) as source, source.open() as reader:
    delivered = 0
    while len(block := reader.read(1 << 16)):
        delivered += len(block)
assert delivered == source.frames > 0, (delivered, source.frames)
"""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("ffmpeg") is None or not sys.platform.startswith("linux"),
        reason="needs ffmpeg (to make the inputs) and Linux's ru_maxrss",
    ),
]

KINDS = {  # name: (file suffix, ffmpeg codec options, command line with {path})
    "ogg": (".ogg", ["-c:a", "libvorbis"], [sys.executable, "-c", DECODE, "{path}"]),
    "mp3": (".mp3", ["-c:a", "libmp3lame", "-b:a", "64k"], [sys.executable, "-c", DECODE, "{path}"]),
    "m4a-through-ffmpeg": (".m4a", ["-c:a", "aac", "-b:a", "64k"], [sys.executable, "-c", DECODE, "{path}"]),
    "wav-on-stdin": (
        ".wav",
        ["-c:a", "pcm_s16le"],
        ["bash", "-c", f"cat \"$0\" | '{sys.executable}' -c '{DECODE}' -", "{path}"],
    ),
}


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, timeout=120)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """(1-minute, 30-minute) files of each kind."""
    folder = tmp_path_factory.mktemp("long-inputs")
    made = {}
    for name, (suffix, codec, _) in KINDS.items():
        short, long = folder / f"{name}-1min{suffix}", folder / f"{name}-{LONG_MINUTES}min{suffix}"
        ffmpeg("-f", "lavfi", "-i", f"anoisesrc=d=60:r={RATE}:a=0.3:seed=1", "-ac", "1", *codec, str(short))
        ffmpeg("-stream_loop", str(LONG_MINUTES - 1), "-i", str(short), "-c", "copy", str(long))
        made[name] = (short, long)
    return made


def peak_mb(command: list[str]) -> float:
    done = subprocess.run(
        [sys.executable, "-c", LAUNCHER, *command], capture_output=True, cwd=ROOT, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    peak_kib, status = map(int, done.stdout.split())
    assert status == 0, f"{command}: exit status {status}"
    return peak_kib / 1024


@pytest.mark.parametrize("name", list(KINDS))
def test_a_long_input_decodes_in_the_memory_of_a_short_one(inputs, name):
    command = KINDS[name][2]
    short, long = (peak_mb([arg.replace("{path}", str(path)) for arg in command]) for path in inputs[name])
    print(f"{name}: peak RSS {short:.0f} MB for 1 minute, {long:.0f} MB for {LONG_MINUTES}")
    assert long - short < ALLOWED_GROWTH_MB, f"{name}: {short:.0f} MB for 1 minute, {long:.0f} MB for {LONG_MINUTES}"
