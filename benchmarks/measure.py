"""What every benchmark row shares: running a command in a child of its own, timing it and reading its peak RSS,
the rows and their table, the song excerpts, the random-weight VR files, and the SNR between two outputs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("UVR_SHARED", ROOT.parent / "shared"))
SONG = SHARED / "audio" / "Karissa_Hobbs_-_Lets_Go_Fishin.hq.ogg"
UVR = [sys.executable, "-m", "uvr_cli"]


@dataclass
class Row:
    name: str
    audio_s: float
    wall_s: float
    peak_mb: float
    snr_db: float | None = None
    baseline_wall_s: float | None = None
    exact_wall_s: float | None = None  # uvr's exact mode on the same input, for the "vs exact" column

    @property
    def rtf(self) -> float:
        return self.wall_s / self.audio_s

    @property
    def speedup(self) -> str:
        return f"{self.baseline_wall_s / self.wall_s:.2f}x" if self.baseline_wall_s else "-"

    @property
    def vs_exact(self) -> str:
        return f"{self.exact_wall_s / self.wall_s:.2f}x" if self.exact_wall_s else "-"


# Spawns the command and prints its ru_maxrss (KiB) and exit code; its own few MB are all the command inherits.
_LAUNCHER = """import os, sys
stdin = os.environ.pop("UVR_BENCH_STDIN", os.devnull)
pid = os.posix_spawnp(sys.argv[1], sys.argv[1:], os.environ,
                      file_actions=[(os.POSIX_SPAWN_OPEN, 0, stdin, os.O_RDONLY, 0),
                                    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def run_child(argv: list[str], stdin: Path | None = None) -> tuple[float, float]:
    """Run a command to completion, reading `stdin` if given; (wall seconds, peak RSS in MB of that command).

    Through `_LAUNCHER`: Linux folds the peak RSS of the memory a process execs from into its ru_maxrss, and
    subprocess spawns with vfork, which execs from ours, so a command spawned from here directly would report this
    process's own peak (such as a long input it has just built) as its own.
    """
    start = time.perf_counter()
    env = {**os.environ, **({"UVR_BENCH_STDIN": str(stdin)} if stdin else {})}
    proc = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT
    )  # from the project root, where `-m benchmarks.reference_job` is found
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    peak_kib, code = map(int, out.split()) if proc.returncode == 0 else (0, proc.returncode)
    if code != 0:
        raise SystemExit(f"benchmark step failed: {' '.join(argv)}\n{err.decode(errors='replace')[-2000:]}")
    peak = peak_kib / 1024
    print(f"[{wall:7.1f} s {peak:6.0f} MB] {' '.join(argv[1:])}", file=sys.stderr, flush=True)
    return wall, peak


def song_excerpt(cache: Path, seconds: float) -> Path:
    path = cache / f"song_{seconds:g}s.wav"
    if not path.exists():
        audio, rate = sf.read(SONG, dtype="float32", frames=int(seconds * 44100))
        if len(audio) < seconds * rate:  # tile the song for lengths beyond it
            audio = np.tile(audio, (int(np.ceil(seconds * rate / len(audio))), 1))[: int(seconds * rate)]
        sf.write(path, audio, rate, subtype="PCM_16")
    return path


def make_checkpoint(cache: Path, kind: str, dtype: torch.dtype = torch.float16) -> tuple[Path, str]:
    """A random-weight VR checkpoint in the real layout, in `dtype`, and its preset. float32 is the size of UVR's
    own files of the class (python-audio-separator picks the network by the file's size)."""
    from uvr_cli.engine.families.vr.nets import AsppNetSpec, CascadedNetSpec, NetworkSpec, build_network

    specs: dict[str, tuple[NetworkSpec, str, int]] = {
        "ch32": (AsppNetSpec(ch=32, branches=5), "4band_v2", 672),
        "ch16": (AsppNetSpec(ch=16, branches=5), "4band_44100", 768),
        "ch4": (AsppNetSpec(ch=4, branches=5), "4band_v2", 672),  # the pipeline's costs, not the network's
        "nout48": (CascadedNetSpec(nout=48, nout_lstm=128, bins=672), "4band_v3", 672),
    }
    spec, preset, bins = specs[kind]
    suffix = "" if dtype == torch.float16 else "_" + str(dtype).removeprefix("torch.")
    path = cache / f"bench_{kind}{suffix}.pth"
    if not path.exists():
        torch.manual_seed(0)  # the same weights in every dtype
        net = build_network(spec, bins)
        torch.save({k: v.to(dtype) for k, v in net.state_dict().items()}, path)
    return path, preset


def snr(ref: Path, est: Path) -> float:
    a, _ = sf.read(ref, dtype="float64")
    b, _ = sf.read(est, dtype="float64")
    n = min(len(a), len(b))
    noise = np.sum((a[:n] - b[:n]) ** 2)
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(a[:n] ** 2) / noise))


def stem_snr(ref_dir: Path, est_dir: Path) -> float:
    """The worse stem's SNR of est against ref (same file names)."""
    return min(snr(p, est_dir / p.name) for p in sorted(ref_dir.glob("*.wav")))


def table(rows: list[Row]) -> str:
    lines = [
        "| run | audio s | wall s | realtime factor | speed vs reference | speed vs exact | peak RSS MB | SNR dB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        snr_text = "-" if r.snr_db is None else ("exact" if r.snr_db == float("inf") else f"{r.snr_db:.1f}")
        lines.append(
            f"| {r.name} | {r.audio_s:g} | {r.wall_s:.1f} | {r.rtf:.3f} | {r.speedup} | {r.vs_exact} | {r.peak_mb:.0f} "
            f"| {snr_text} |"
        )
    return "\n".join(lines)
