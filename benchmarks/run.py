"""Speed, memory and fidelity of uvr against the reference pipeline, side by side on this machine.

usage: python benchmarks/run.py [--seconds 60] [--long-minutes 10] [--clips 200] [--reference-clips 20]
                                [--rows main,fast,bf16,families,batch,long,ensemble,clips,frontend,peer,scale,gpu]
                                [--device cuda]
                                [--markdown FILE]

Every row runs in its own child process (the real `uvr` CLI, or benchmarks/reference_job.py for the reference),
so its wall time includes start-up and model loading and its peak RSS is the child's own (os.wait4, through a
small launcher: see `run_child`). Fidelity is the SNR of each row's stems against uvr's exact fp32 output.
Weights are random (speed and memory do not depend on their values) in the real layouts: ch32 5-branch at
4band_v2 is the HP-class (HP2/HP5, 1_HP..4_HP) network, ch16 the SP class, CascadedNet nout48 the De-Echo class.
In the ensemble rows the speed column compares the one ensemble run with the two single-model runs it replaces.
The frontend rows run the transforms in numpy and in torch on the CPU; the gpu rows add the GPU with its front end
in numpy, ten songs in one run, and a folder of short clips. The peer rows (peer.py) run python-audio-separator and
uvr on the same model file and song; their speed column is against the peer, their SNR the two tools' agreement.
Runs worth keeping go into benchmarks/RESULTS.md with their date, machine and command.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path

import soundfile as sf
import torch

if __package__ in (None, ""):  # run as a script (python benchmarks/run.py): the project root holds the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import peer, scale  # noqa: E402
from benchmarks.measure import (  # noqa: E402
    ROOT,
    SONG,
    UVR,
    Row,
    make_checkpoint,
    run_child,
    song_excerpt,
    stem_snr,
    table,
)
from uvr_cli.engine.device import cpu_bf16_supported  # noqa: E402

PRESETS = ROOT / "models" / "presets"


def uvr_separate(inputs: list[Path], weights: Path, preset: str, out: Path, *extra: str) -> list[str]:
    return [
        *UVR,
        "separate",
        *map(str, inputs),
        "-m",
        str(weights),
        "--params",
        preset,
        "--agg",
        "10",
        "-o",
        str(out),
        "--overwrite",
        "-q",
        "--format",
        "wav",
        "--bit-depth",
        "32f",
        *extra,
    ]


def reference_job(inputs: list[Path], weights: Path, preset: str, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "benchmarks.reference_job",
        *extra,
        str(weights),
        str(PRESETS / f"{preset}.json"),
        "10",
        str(out),
        *map(str, inputs),
    ]


def main_rows(cache: Path, seconds: float, rows: set[str]) -> list[Row]:
    song = song_excerpt(cache, seconds)
    result: list[Row] = []
    weights, preset = make_checkpoint(cache, "ch32")
    exact = cache / "out_fp32"
    wall, peak = run_child(uvr_separate([song], weights, preset, exact))
    fp32 = Row(f"uvr fp32 exact, ch32 {preset}", seconds, wall, peak)
    ref_wall = None
    if "main" in rows:
        ref_out = cache / "out_ref"
        ref_wall, ref_peak = run_child(reference_job([song], weights, preset, ref_out))
        result.append(Row(f"reference (RVC path), ch32 {preset}", seconds, ref_wall, ref_peak, None, ref_wall))
        fp32.baseline_wall_s = ref_wall
        fp32.snr_db = float("inf")
        result.append(fp32)
    if "fast" in rows:
        # a private model cache, so that the first run prepares (exports and quantises) the network, as a user's does
        os.environ["UVR_MODEL_DIR"] = str(cache / "models")
        for label in ("uvr --fast, first use (prepares the int8 network)", "uvr --fast"):
            out = cache / "out_fast"
            wall, peak = run_child(uvr_separate([song], weights, preset, out, "--fast"))
            result.append(
                Row(f"{label}, ch32 {preset}", seconds, wall, peak, stem_snr(exact, out), ref_wall, fp32.wall_s)
            )
    if "bf16" in rows and cpu_bf16_supported():  # uvr refuses bf16 on CPUs without oneDNN bf16 kernels
        out = cache / "out_bf16"
        wall, peak = run_child(uvr_separate([song], weights, preset, out, "--precision", "bf16"))
        result.append(Row(f"uvr bf16, ch32 {preset}", seconds, wall, peak, stem_snr(exact, out), ref_wall))
    if "batch" in rows:
        for batch in (2, 4):
            out = cache / f"out_b{batch}"
            wall, peak = run_child(uvr_separate([song], weights, preset, out, "--batch-size", str(batch)))
            result.append(
                Row(f"uvr fp32 batch {batch}, ch32", seconds, wall, peak, stem_snr(exact, out), fp32.baseline_wall_s)
            )
    if "families" in rows:
        for kind in ("ch16", "nout48"):
            w, p = make_checkpoint(cache, kind)
            ref_dir = cache / f"out_{kind}_fp32"
            wall, peak = run_child(uvr_separate([song], w, p, ref_dir))
            result.append(Row(f"uvr fp32, {kind} {p}", seconds, wall, peak, float("inf")))
            if cpu_bf16_supported():
                out = cache / f"out_{kind}_bf16"
                wall, peak = run_child(uvr_separate([song], w, p, out, "--precision", "bf16"))
                result.append(Row(f"uvr bf16, {kind} {p}", seconds, wall, peak, stem_snr(ref_dir, out)))
    return result


def long_rows(cache: Path, minutes: float, model: str) -> list[Row]:
    """Peak memory must not grow with the length, whatever the input: a 1-minute WAV against `minutes` minutes as
    WAV, as WAV on standard input, and as MP3, OGG and M4A (AAC, decoded by ffmpeg), with one model: the bundled
    one, or "ch4", a random-weight network so small that the decoding, analysis and synthesis dominate the time."""
    weights, preset = (
        (ROOT / "models" / "default.pth", "4band_v2") if model == "default" else make_checkpoint(cache, model)
    )
    short = song_excerpt(cache, 60.0)
    wall, peak = run_child(uvr_separate([short], weights, preset, cache / "out_long"))
    label = "bundled model" if model == "default" else model
    rows = [Row(f"uvr fp32, {label}, 1 min WAV", 60.0, wall, peak)]
    length = minutes * 60
    wav = song_excerpt(cache, length)
    wall, peak = run_child(uvr_separate([wav], weights, preset, cache / "out_long"))
    rows.append(Row(f"uvr fp32, {label}, {minutes:g} min WAV", length, wall, peak))
    wall, peak = run_child(
        [*uvr_separate([Path("-")], weights, preset, cache / "out_long"), "--name", "stdin_{stem}.{ext}"], stdin=wav
    )
    rows.append(Row(f"uvr fp32, {label}, {minutes:g} min WAV on standard input", length, wall, peak))
    for fmt, codec in (
        ("mp3", ["-c:a", "libmp3lame", "-b:a", "192k"]),
        ("ogg", ["-c:a", "libvorbis", "-q:a", "5"]),
        ("m4a", ["-c:a", "aac", "-b:a", "192k"]),
    ):
        encoded = wav.with_suffix(f".{fmt}")
        if not encoded.exists():
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), *codec, str(encoded)], check=True)
        wall, peak = run_child(uvr_separate([encoded], weights, preset, cache / "out_long"))
        rows.append(Row(f"uvr fp32, {label}, {minutes:g} min {fmt.upper()}", length, wall, peak))
    return rows


def front_end_rows(cache: Path, seconds: float) -> list[Row]:
    """The front end's cost on the CPU: a network so small (ch4) that analysis, synthesis and I/O are the time,
    with the transforms in numpy (the CPU's default) and in torch (the GPU's default, here on the CPU)."""
    weights, preset = make_checkpoint(cache, "ch4")
    song = song_excerpt(cache, seconds)
    numpy_out = cache / "out_front_numpy"
    wall, peak = run_child(uvr_separate([song], weights, preset, numpy_out, "--front-end", "numpy"))
    rows = [Row(f"uvr fp32, ch4 {preset}, front end numpy", seconds, wall, peak, float("inf"))]
    torch_out = cache / "out_front_torch"
    wall, peak = run_child(uvr_separate([song], weights, preset, torch_out, "--front-end", "torch"))
    rows.append(
        Row(f"uvr fp32, ch4 {preset}, front end torch (cpu)", seconds, wall, peak, stem_snr(numpy_out, torch_out))
    )
    return rows


def ensemble_rows(cache: Path, seconds: float) -> list[Row]:
    """Two models in one run against two runs: the ensemble pays for both networks but one decode and analysis.
    SNR: the average ensemble against the mean of the two single-model outputs."""
    song = song_excerpt(cache, seconds)
    models = [make_checkpoint(cache, "ch32")[0], ROOT / "models" / "default.pth"]
    rows, singles = [], []
    for weights in models:
        out = cache / f"out_single_{weights.stem}"
        wall, peak = run_child(uvr_separate([song], weights, "4band_v2", out))
        rows.append(Row(f"uvr fp32, {weights.stem} alone", seconds, wall, peak))
        singles.append(out)
    out = cache / "out_ensemble"
    wall, peak = run_child(
        [*uvr_separate([song], models[0], "4band_v2", out), "-m", str(models[1]), "--ensemble", "avg"]
    )
    mean_dir = cache / "out_single_mean"
    mean_dir.mkdir(exist_ok=True)
    for path in sorted(singles[0].glob("*.wav")):
        a, rate = sf.read(path, dtype="float64")
        b, _ = sf.read(singles[1] / path.name, dtype="float64")
        sf.write(mean_dir / path.name, (a + b) / 2, rate, subtype="FLOAT")
    rows.append(
        Row(
            "uvr fp32, both as one --ensemble avg run",
            seconds,
            wall,
            peak,
            stem_snr(mean_dir, out),
            rows[0].wall_s + rows[1].wall_s,
        )
    )
    return rows


def clip_folder(cache: Path, clips: int) -> Path:
    """`clips` 3 s excerpts of the song, 16-bit WAV."""
    folder = cache / f"clips_{clips}"
    if not folder.exists():
        folder.mkdir()
        audio, rate = sf.read(SONG, dtype="float32")
        for i in range(clips):
            start = (i * 3 * rate) % (len(audio) - 3 * rate)
            sf.write(folder / f"clip{i:04d}.wav", audio[start : start + 3 * rate], rate, subtype="PCM_16")
    return folder


def clip_rows(cache: Path, clips: int, reference_clips: int) -> list[Row]:
    """The dataset-building case: many 3 s clips. The reference runs once per file (a process each)."""
    weights, preset = make_checkpoint(cache, "ch16")
    folder = clip_folder(cache, clips)
    files = sorted(folder.glob("*.wav"))
    ref_wall = 0.0
    ref_peak = 0.0
    for path in files[:reference_clips]:
        wall, peak = run_child(reference_job([path], weights, preset, cache / "out_clips_ref"))
        ref_wall += wall
        ref_peak = max(ref_peak, peak)
    per_clip = ref_wall / len(files[:reference_clips])
    rows = [
        Row(
            f"reference once per file, {clips} x 3 s (timed {reference_clips})",
            3.0 * clips,
            per_clip * clips,
            ref_peak,
            None,
            per_clip * clips,
        )
    ]
    wall, peak = run_child(uvr_separate([folder], weights, preset, cache / "out_clips"))
    rows.append(Row(f"uvr one run over the folder, {clips} x 3 s", 3.0 * clips, wall, peak, None, per_clip * clips))
    # two workers with one thread each; the peak is the largest single process (os.wait4 counts reaped children)
    wall, peak = run_child([*uvr_separate([folder], weights, preset, cache / "out_clips_j2"), "--jobs", "2"])
    rows.append(Row(f"uvr --jobs 2 over the folder, {clips} x 3 s", 3.0 * clips, wall, peak, None, per_clip * clips))
    return rows


def scale_rows(cache: Path, clips: int) -> list[Row]:
    """The clips of clip_rows through one run, Ray's two workers and two Slurm tasks (benchmarks/scale.py)."""
    weights, preset = make_checkpoint(cache, "ch16")
    folder = clip_folder(cache, clips)
    return scale.scale_rows(cache, clips, lambda out: uvr_separate([folder], weights, preset, out))


def gpu_rows(
    cache: Path, seconds: float, long_minutes: float, clips: int, reference_clips: int, device: str
) -> list[Row]:
    """A CUDA GPU: the reference as RVC runs it there (fp16 model, one window per call) against uvr's batched
    windows in each precision. Fidelity is against uvr's exact fp32 output on the CPU."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("the gpu rows need a CUDA GPU (or --device cpu for a dry run of the code path)")
    song = song_excerpt(cache, seconds)
    weights, preset = make_checkpoint(cache, "ch32")
    exact = cache / "out_fp32"
    wall, peak = run_child(uvr_separate([song], weights, preset, exact, "--device", "cpu"))
    cpu_row = Row(f"uvr cpu fp32 exact, ch32 {preset}", seconds, wall, peak, float("inf"))
    ref_wall, ref_peak = run_child(
        reference_job([song], weights, preset, cache / "out_ref_gpu", "--device", device, "--half")
    )
    rows = [
        Row(f"reference (RVC path) {device} fp16, ch32 {preset}", seconds, ref_wall, ref_peak, None, ref_wall),
        cpu_row,
    ]
    for precision, batch in (("fp32", 8), ("fp16", 1), ("fp16", 8), ("fp16", 16), ("bf16", 8)):
        out = cache / f"out_gpu_{precision}_b{batch}"
        wall, peak = run_child(
            uvr_separate(
                [song], weights, preset, out, "--device", device, "--precision", precision, "--batch-size", str(batch)
            )
        )
        rows.append(
            Row(
                f"uvr {device} {precision} batch {batch}, ch32 {preset}",
                seconds,
                wall,
                peak,
                stem_snr(exact, out),
                ref_wall,
            )
        )
    out = cache / "out_gpu_fp16_host_front"
    wall, peak = run_child(
        uvr_separate([song], weights, preset, out, "--device", device, "--precision", "fp16", "--front-end", "numpy")
    )
    rows.append(
        Row(
            f"uvr {device} fp16 batch 8, front end numpy, ch32 {preset}",
            seconds,
            wall,
            peak,
            stem_snr(exact, out),
            ref_wall,
        )
    )
    songs = []
    for i in range(10):  # ten different files of the song's length, one run
        path = cache / f"song_{seconds:g}s_{i}.wav"
        if not path.exists():
            path.write_bytes(song.read_bytes())
        songs.append(path)
    wall, peak = run_child(uvr_separate(songs, weights, preset, cache / "out_gpu_ten", "--device", device))
    rows.append(
        Row(f"uvr {device} fp16 batch 8, ch32 {preset}, 10 x {seconds:g} s in one run", 10 * seconds, wall, peak)
    )
    long_song = song_excerpt(cache, long_minutes * 60)
    wall, peak = run_child(
        uvr_separate([long_song], weights, preset, cache / "out_gpu_long", "--device", device, "--precision", "fp16")
    )
    rows.append(Row(f"uvr {device} fp16 batch 8, ch32, {long_minutes:g} min input", long_minutes * 60, wall, peak))
    folder = clip_folder(cache, clips)
    files = sorted(folder.glob("*.wav"))[:reference_clips]
    timed = [
        run_child(reference_job([path], weights, preset, cache / "out_clips_ref_gpu", "--device", device, "--half"))
        for path in files
    ]
    per_file = sum(wall for wall, _ in timed) / len(files) * clips
    rows.append(
        Row(
            f"reference once per file, {device} fp16, ch32, {clips} x 3 s (timed {len(files)})",
            3.0 * clips,
            per_file,
            max(peak for _, peak in timed),
            None,
            per_file,
        )
    )
    wall, peak = run_child(
        uvr_separate([folder], weights, preset, cache / "out_clips_gpu", "--device", device, "--precision", "fp16")
    )
    rows.append(
        Row(f"uvr {device} fp16 one run over the folder, ch32, {clips} x 3 s", 3.0 * clips, wall, peak, None, per_file)
    )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--long-minutes", type=float, default=10)
    ap.add_argument(
        "--long-model",
        default="default",
        choices=("default", "ch4"),
        help="network of the long rows: the bundled model, or a tiny random one (pipeline costs only)",
    )
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--reference-clips", type=int, default=20, help="clips the reference is timed on (extrapolated)")
    ap.add_argument(
        "--rows",
        default="main,fast,families,batch,long,clips,frontend",
        help="comma-separated; 'peer' (or peer-mdx, peer-roformer, peer-vr) adds python-audio-separator side by side "
        "(its venv is made on first use), 'scale' one run against Ray and Slurm workers (the ray extra; Slurm where "
        "a cluster answers), 'gpu' the GPU rows (it needs a CUDA GPU); none of these is in the default",
    )
    ap.add_argument("--scale-clips", type=int, default=40, help="3 s clips of the scale rows")
    ap.add_argument("--device", default="cuda", help="device of the gpu rows")
    ap.add_argument("--cache", default=None, help="folder for weights, inputs and outputs (default: a temp dir)")
    ap.add_argument("--markdown", default=None, help="also write the table to this file")
    args = ap.parse_args()
    rows_wanted = set(args.rows.split(","))
    cache = Path(args.cache or tempfile.mkdtemp(prefix="uvr-bench-"))
    cache.mkdir(parents=True, exist_ok=True)
    groups: list[Callable[[], list[Row]]] = []
    if rows_wanted & {"main", "fast", "bf16", "families", "batch"}:
        groups.append(lambda: main_rows(cache, args.seconds, rows_wanted))
    if "long" in rows_wanted:
        groups.append(lambda: long_rows(cache, args.long_minutes, args.long_model))
    if "ensemble" in rows_wanted:
        groups.append(lambda: ensemble_rows(cache, args.seconds))
    if "frontend" in rows_wanted:
        groups.append(lambda: front_end_rows(cache, args.seconds))
    if "clips" in rows_wanted:
        groups.append(lambda: clip_rows(cache, args.clips, args.reference_clips))
    if rows_wanted & {"peer", "peer-mdx"}:
        groups.append(lambda: peer.mdx_rows(cache, args.seconds))
    if rows_wanted & {"peer", "peer-roformer"}:
        groups.append(lambda: peer.roformer_rows(cache, args.seconds))
    if rows_wanted & {"peer", "peer-vr"}:
        groups.append(lambda: peer.vr_rows(cache, args.seconds))
    if "scale" in rows_wanted:
        groups.append(lambda: scale_rows(cache, args.scale_clips))
    if "gpu" in rows_wanted:
        groups.append(
            lambda: gpu_rows(cache, args.seconds, args.long_minutes, args.clips, args.reference_clips, args.device)
        )
    header = (
        f"{date.today()} on {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    if "gpu" in rows_wanted and torch.cuda.is_available():
        header += f", GPU {torch.cuda.get_device_name()}"
    rows: list[Row] = []
    text = f"{header}\n\n{table(rows)}\n"
    for group in groups:
        rows += group()
        text = f"{header}\n\n{table(rows)}\n"
        if args.markdown:  # after each group, so a run cut short keeps what it measured
            Path(args.markdown).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
