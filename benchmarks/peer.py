"""Side by side with python-audio-separator, the closest peer: the same random-weight model file and the same song
through both tools, one run each: wall time, peak RSS, and how far their stems agree.

The peer is installed into its own venv (`.venv-peer` in the project root, made on first use: torch 2.13.0 and
torchvision 0.28.0 pinned with it, so pip keeps the CPU build) and runs offline: the data files it would download
(its model lists and UVR's model data, keyed by the model file's hash) are written into its model folder. It is
run by benchmarks/peer_job.py with that venv's Python; uvr never imports it.

Settings are matched as far as the peer allows. MDX-Net: its defaults (segment 256, overlap 0.25, no denoise), the
model's compensation 1.0 (the peer leaves it off the primary stem, UVR and uvr put it on), a full-scale song (the
peer divides by the input's peak and multiplies the primary stem back by it: the same at peak 1.0), its
normalisation threshold at 1.0 (the highest it takes) and soundfile output, so that it writes float stems unscaled.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

if __package__ in (None, ""):  # run as a script (python benchmarks/peer.py): the project root holds the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import mdx_net  # noqa: E402
from benchmarks.measure import ROOT, SONG, UVR, Row, run_child, snr, table  # noqa: E402
from uvr_cli.catalog.registry import uvr_model_hash  # noqa: E402

PEER = "audio-separator[cpu]==0.47.1"
PINS = ("torch==2.13.0", "torchvision==0.28.0")
PEER_VENV = ROOT / ".venv-peer"
JOB = ROOT / "benchmarks" / "peer_job.py"
# what the peer reads instead of downloading: its model lists (every key must be there) and UVR's model data
DOWNLOAD_LISTS = (
    "vr_download_list",
    "mdx_download_list",
    "mdx_download_vip_list",
    "demucs_download_list",
    "mdx23c_download_list",
    "mdx23c_download_vip_list",
    "roformer_download_list",
)


# torchvision's wheels on PyPI are CUDA builds, whose operators cannot load beside the CPU build of torch; the
# peer's MDX path imports torchvision (through onnx2torch's NMS and RoIAlign converters) without calling it, so
# where it cannot load, this stand-in takes its place.
TORCHVISION_STAND_IN = {
    "torchvision/__init__.py": '"""A stand-in: the real torchvision cannot load here (see benchmarks/peer.py)."""\n',
    "torchvision/ops/__init__.py": (
        "def _missing(*args, **kwargs):\n"
        "    raise NotImplementedError('torchvision stand-in (benchmarks/peer.py)')\n\n\n"
        "box_convert = nms = roi_align = _missing\n"
    ),
}


def peer_python() -> Path:
    """The peer venv's Python, making the venv first if it is missing (a few minutes, from PyPI)."""
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        print(f"making {PEER_VENV} with {PEER} (once)", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        pins = PEER_VENV / "pins.txt"
        pins.write_text("\n".join(PINS) + "\n")
        pip = [str(python), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, PINS[0]], check=True)
        subprocess.run([*pip, "-c", str(pins), PEER], check=True)
    if subprocess.run([str(python), "-c", "import torchvision"], capture_output=True).returncode != 0:
        subprocess.run([str(python), "-m", "pip", "uninstall", "-q", "-y", "torchvision"], check=True)
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        for name, text in TORCHVISION_STAND_IN.items():
            (Path(site) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(site) / name).write_text(text)
    return python


def model_folder(folder: Path, model: Path, list_key: str, data_file: str, record: dict) -> Path:
    """The peer's model folder for `model`: the file, its download lists and `record` under the model's hash."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / model.name
    if not target.exists():
        shutil.copyfile(model, target)
    lists = {key: {} for key in DOWNLOAD_LISTS}
    lists[list_key] = {f"benchmark: {model.stem}": model.name}
    (folder / "download_checks.json").write_text(json.dumps(lists))
    data = {"vr_model_data.json": {}, "mdx_model_data.json": {}}
    data[data_file] = {uvr_model_hash(model): record}
    for name, content in data.items():
        (folder / name).write_text(json.dumps(content))
    return folder


def full_scale_song(cache: Path, seconds: float, source: Path = SONG) -> Path:
    """The first `seconds` of `source` as 32-bit float, scaled so that its peak is exactly 1.0."""
    path = cache / f"{source.stem}_{seconds:g}s_full_scale.wav"
    if not path.exists():
        audio, rate = sf.read(source, dtype="float64", frames=int(seconds * 44100))
        sf.write(path, (audio / np.abs(audio).max()).astype(np.float32), rate, subtype="FLOAT")
    return path


def peer_stem(folder: Path, label: str) -> Path:
    """The peer's output file of a stem, named `<input>_(<Label>)_<model>.wav`."""
    return next(folder.glob(f"*_({label})_*.wav"))


def agreement(ours: Path, theirs: Path) -> float:
    """SNR (dB) of the peer's stem against ours as the peer writes stems: one peaking above full scale is scaled
    down to it (its normalisation threshold, at most 1.0)."""
    mine, _ = sf.read(ours, dtype="float64")
    peak = np.abs(mine).max()
    scaled = ours.with_name(ours.stem + ".as-peer-writes.wav")
    sf.write(scaled, (mine / peak if peak > 1.0 else mine).astype(np.float32), 44100, subtype="FLOAT")
    return snr(scaled, theirs)


def mdx_side_by_side(cache: Path, song: Path, model: Path, params: Path, tag: str) -> tuple[Row, Row, dict]:
    """The peer and uvr on one MDX-Net file and song: their rows, and each stem's agreement in dB."""
    seconds = sf.info(song).duration
    record = json.loads(params.read_text())
    folder = model_folder(cache / f"peer_models_{tag}", model, "mdx_download_list", "mdx_model_data.json", record)
    peer_out = cache / f"out_peer_{tag}"
    shutil.rmtree(peer_out, ignore_errors=True)
    settings = {"output_format": "WAV", "use_soundfile": True, "normalization_threshold": 1.0}
    peer_wall, peer_peak = run_child(
        [str(peer_python()), str(JOB), str(folder), model.name, str(peer_out), str(song), json.dumps(settings)]
    )
    ours = cache / f"out_uvr_{tag}"
    wall, peak = run_child(
        [*UVR, "separate", str(song), "-m", str(model), "--params", str(params), "-o", str(ours), "--overwrite"]
        + ["-q", "--format", "wav", "--bit-depth", "32f", "--name", "{stem}.{ext}"]
    )
    agreed = {
        stem: agreement(ours / f"{stem}.wav", peer_stem(peer_out, label))
        for stem, label in (("vocals", "Vocals"), ("instrumental", "Instrumental"))
    }
    shown = ", ".join(f"{stem} {value:.1f} dB" for stem, value in agreed.items())
    return (
        Row(f"python-audio-separator 0.47.1, MDX-Net, {tag}", seconds, peer_wall, peer_peak, None, peer_wall),
        Row(
            f"uvr, MDX-Net ({tag}); stems vs the peer's: {shown}", seconds, wall, peak, min(agreed.values()), peer_wall
        ),
        agreed,
    )


def mdx_rows(cache: Path, seconds: float) -> list[Row]:
    """MDX-Net: a network of Inst_HQ_3's shapes (benchmarks/mdx_net.py) on a full-scale song."""
    model = mdx_net.make_model(cache / "bench_mdx_inst_hq3.onnx")
    params = mdx_net.params_file(cache / "bench_mdx_inst_hq3.json")
    peer_row, uvr_row, _ = mdx_side_by_side(cache, full_scale_song(cache, seconds), model, params, "Inst_HQ_3-shaped")
    return [peer_row, uvr_row]


def check(cache: Path) -> int:
    """CI's check that the peer and uvr agree where their code agrees (>= 80 dB per stem): a small MDX-Net on the
    example song at full scale (11 s, three chunks); 0 when they do, 1 otherwise."""
    small = {"mdx_dim_f_set": 512, "mdx_n_fft_scale_set": 2048}
    model = mdx_net.make_model(cache / "check_mdx.onnx", dim_f=512, g=8, levels=2)
    params = mdx_net.params_file(cache / "check_mdx.json", **small)
    song = full_scale_song(cache, 12.0, ROOT / "examples" / "slow_motion_dream.mp3")
    *_, agreed = mdx_side_by_side(cache, song, model, params, "check")
    print(f"python-audio-separator 0.47.1 against uvr, MDX-Net: {agreed}")
    return 0 if min(agreed.values()) >= 80 else 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="the agreement check CI runs (see `check`)")
    ap.add_argument("--cache", default=None, help="folder for models, inputs and outputs (default: a temp dir)")
    args = ap.parse_args()
    cache = Path(args.cache or tempfile.mkdtemp(prefix="uvr-peer-"))
    cache.mkdir(parents=True, exist_ok=True)
    if args.check:
        raise SystemExit(check(cache))
    rows = mdx_rows(cache, 60.0)
    print(table(rows))


if __name__ == "__main__":
    main()
