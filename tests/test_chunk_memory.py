"""The chunk path streams like every input: 10 minutes of MP3, OGG, M4A and standard input peak within 10 % of 1
minute, and the stems come out exactly as long as the input (the real `uvr` command, a small MDX-Net model and a
small BS-RoFormer)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from conftest import uvr_command
from mdx_models import mdx_onnx, params_file
from msst_models import BS, msst_model
from uvr_cli.io.decode import open_source

RATE = 44100  # the model's rate, so that the time goes to the chunks and not to resampling

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("ffmpeg") is None or not sys.platform.startswith("linux"),
        reason="needs ffmpeg (to make the inputs) and Linux's ru_maxrss",
    ),
]

# Runs argv[1:] (reading the file in UVR_STDIN, if set, on standard input); prints its peak RSS in KiB and status.
LAUNCHER = """import os, sys
stdin = os.environ.pop("UVR_STDIN", os.devnull)
pid = os.posix_spawnp(sys.argv[1], sys.argv[1:], os.environ,
                      file_actions=[(os.POSIX_SPAWN_OPEN, 0, stdin, os.O_RDONLY, 0),
                                    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""
KINDS = {  # name: (suffix, ffmpeg codec options, read from standard input)
    "mp3": (".mp3", ["-c:a", "libmp3lame", "-b:a", "64k"], False),
    "ogg": (".ogg", ["-c:a", "libvorbis"], False),
    "m4a": (".m4a", ["-c:a", "aac", "-b:a", "64k"], False),
    "wav-on-stdin": (".wav", ["-c:a", "pcm_s16le"], True),
}


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, timeout=300)


def run(args: list[str], stdin: Path | None) -> float:
    """The peak RSS in MB of the uvr command `args`."""
    env = {"UVR_STDIN": str(stdin)} if stdin else {}
    done = subprocess.run(
        [sys.executable, "-c", LAUNCHER, *uvr_command(), *args],
        capture_output=True,
        timeout=900,
        env={**os.environ, **env},
    )
    peak_kib, status = map(int, done.stdout.split())
    assert status == 0, done.stderr.decode()
    return peak_kib / 1024


def model_args(family: str, folder: Path) -> list[str]:
    """-m and the options of a small model of `family`."""
    if family == "mdx":
        model = mdx_onnx(folder / "net.onnx", frames=None)
        return ["-m", str(model), "--params", str(params_file(folder / "p.json")), "--segment", "64"]
    return ["-m", str(msst_model(folder, "bs", BS))]


@pytest.mark.parametrize("family", ["mdx", "roformer"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_ten_minutes_peak_within_ten_percent_of_one(tmp_path: Path, kind: str, family: str) -> None:
    suffix, codec, piped = KINDS[kind]
    model = model_args(family, tmp_path)
    one = tmp_path / f"one{suffix}"
    ffmpeg("-f", "lavfi", "-i", f"anoisesrc=d=60:r={RATE}:a=0.3:seed=1", "-ac", "2", *codec, str(one))
    ten = tmp_path / f"ten{suffix}"
    ffmpeg("-stream_loop", "9", "-i", str(one), "-c", "copy", str(ten))
    peaks = {}
    for name, song in (("one", one), ("ten", ten)):
        out = tmp_path / f"out-{name}"
        args = ["separate", "-" if piped else str(song), *model]
        peaks[name] = run([*args, "--stem", "vocals", "-q", "-o", str(out)], song if piped else None)
        written = out / f"{'stdin' if piped else song.stem}_vocals.wav"
        with open_source(str(song)) as decoded:
            assert sf.info(written).frames == decoded.frames  # exactly as long as the input
    report = f"{family}, {kind}: peak RSS {peaks['one']:.0f} MB for 1 minute, {peaks['ten']:.0f} MB for 10"
    print(report)
    assert peaks["ten"] <= 1.10 * peaks["one"], report
