"""Scale-out rows: one folder of short clips through one `uvr separate` run, through two Slurm array tasks
(`--shard auto/1-2`) and through Ray with two workers (`--ray local -j 2`), all on this machine's cores, so that
each engine's overhead is known. The speed column is against the one run; the peak is the largest single worker's
(its VmHWM, polled from /proc while it runs), with the Ray driver's own peak named beside it.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.measure import ROOT, Row, run_child


class PeakSampler(threading.Thread):
    """Polls /proc while it runs, keeping the peak RSS (VmHWM, MB) of every process whose command line `matches`."""

    def __init__(self, matches: Callable[[str], bool], every_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.matches, self.every_s = matches, every_s
        self.peaks: dict[int, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every_s):
            for proc in Path("/proc").iterdir():
                if proc.name.isdigit():
                    self._sample(proc)

    def _sample(self, proc: Path) -> None:
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if not self.matches(command):
                return
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) / 1024
                    self.peaks[int(proc.name)] = max(peak, self.peaks.get(int(proc.name), 0.0))
        except OSError:
            pass  # the process ended between listing and reading

    def __enter__(self) -> PeakSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.join()


def slurm_ready() -> str | None:
    """Why no Slurm row can run here (None when a cluster answers with an idle node)."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "Slurm is not installed (.ci/slurm-up installs and starts a one-node cluster)"
    states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30).stdout.split()
    return None if "idle" in states else f"no idle Slurm node (sinfo: {states or 'nothing'}; run .ci/slurm-up)"


def slurm_wall(command: list[str], folder: Path, tasks: int) -> float:
    """Seconds from sbatch to the end of an array of `tasks` one-CPU tasks running `command --shard auto/1-N`."""
    script = folder / "scale.sh"
    script.write_text(
        "#!/bin/bash\n#SBATCH --cpus-per-task=1\n#SBATCH --output=/dev/null\nexport OMP_NUM_THREADS=1\n"
        f"exec {shlex.join(command)} --shard auto/1-{tasks}\n"
    )
    start = time.perf_counter()
    job = subprocess.run(
        ["sbatch", "--parsable", f"--array=1-{tasks}", f"--chdir={ROOT}", str(script)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    while subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True).stdout.strip():
        time.sleep(0.2)
    return time.perf_counter() - start


def scale_rows(cache: Path, clips: int, separate: Callable[[Path], list[str]]) -> list[Row]:
    """`separate(out)`: the `uvr separate` command over the clips into `out`, the same for every row."""
    audio_s = 3.0 * clips
    wall, peak = run_child(separate(cache / "scale_one"))
    one = Row(f"uvr one run, {clips} x 3 s (2 threads)", audio_s, wall, peak, None, wall)
    rows = [one]
    with PeakSampler(lambda command: command.startswith("ray::Worker")) as workers:
        wall, driver_peak = run_child([*separate(cache / "scale_ray"), "--ray", "local", "-j", "2"])
    worker_peak = max(workers.peaks.values(), default=0.0)
    rows.append(
        Row(
            f"uvr --ray local -j 2, {clips} x 3 s (peak of a worker; driver {driver_peak:.0f} MB)",
            audio_s,
            wall,
            worker_peak,
            None,
            one.wall_s,
        )
    )
    why_not = slurm_ready()
    if why_not is not None:
        print(f"scale rows: no Slurm row: {why_not}")
        return rows
    out = cache / "scale_slurm"
    with PeakSampler(lambda command: "separate" in command and "--shard auto/1-2" in command) as tasks:
        wall = slurm_wall(separate(out), cache, 2)
    peak = max(tasks.peaks.values(), default=0.0)
    rows.append(Row(f"Slurm array of 2 tasks, {clips} x 3 s (peak of a task)", audio_s, wall, peak, None, one.wall_s))
    return rows
