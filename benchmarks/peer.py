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
BS-RoFormer: the config's chunk (the peer takes it from inference.dim_t) and step (the peer's `overlap`, windows
per chunk, set to the config's num_overlap), one chunk per run as the config says, the same song. By design the
stems still differ: the peer weighs every chunk by a Hamming window where MSST and uvr fade linearly at chunk
edges only, it ends on a chunk aligned to the song's end instead of reflect-padding the ends, and its network
skips MSST's zeroing of the DC bin; the agreement column shows by how much.
VR: a CascadedASPPNet file in float32 as UVR's own are (the peer picks the network by the file's size: ch32 with
5 ASPP branches at 4band_v2 is 123787 KB, nearest its 123812, the HP class), UVR's model data giving 4band_v2 and
an instrumental primary stem; window 512, batch 1, no TTA, no post-processing, high-end mirroring, and uvr's
--agg 10 as the peer's aggression 5 (it takes a hundredth and doubles it where RVC and uvr take a hundredth; for a
vocal primary stem it would take one minus that, which no --agg matches). The song goes in as 32-bit integers: the
peer writes a VR stem in its input's integer width, and in 16 bits for a float input. The stems still differ: the
peer brings the band waves up (7350, 14700, 44100 Hz) with libsamplerate's sinc_fastest, whose pass band ends at
80 % of Nyquist, where RVC and uvr use an FFT resampler, so nearly all the difference lies at 5-7 kHz, the top of
the 14700 Hz band; and its stems end at the top band's last hop, floor(n / 480) * 480 samples (up to 479 short),
so the comparison lines up their starts.

`--check` (CI) also compares the networks alone where the two codes agree by design: a tiny BS-RoFormer, Mel-Band
RoFormer and MDX23C (benchmarks/msst_check.py; the RoFormers with zero_dc off) loaded by each tool's own loader
(the peer's by benchmarks/peer_network_job.py), one chunk each, each output's SNR.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf
import torch

if __package__ in (None, ""):  # run as a script (python benchmarks/peer.py): the project root holds the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import mdx_net, msst_check, roformer_net  # noqa: E402
from benchmarks.measure import ROOT, SONG, UVR, Row, make_checkpoint, run_child, snr, table  # noqa: E402
from uvr_cli.catalog.model_config import read_config  # noqa: E402
from uvr_cli.catalog.registry import uvr_model_hash  # noqa: E402
from uvr_cli.engine.families.msst.family import NAMES as MSST_NAMES  # noqa: E402

PEER = "audio-separator[cpu]==0.47.1"
PINS = ("torch==2.13.0", "torchvision==0.28.0")
PEER_VENV = ROOT / ".venv-peer"
JOB = ROOT / "benchmarks" / "peer_job.py"
NETWORK_JOB = ROOT / "benchmarks" / "peer_network_job.py"
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


# the Separator settings of every family: soundfile output, and only a stem that peaks above full scale scaled down
# to it (1.0 is the highest threshold the peer takes; `agreement` scales ours alike)
OUTPUT = {"output_format": "WAV", "use_soundfile": True, "normalization_threshold": 1.0}
STEMS = (("vocals", "Vocals"), ("instrumental", "Instrumental"))  # uvr's file name and the peer's label of each stem


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


def model_folder(folder: Path, model: Path, list_key: str, listed: object, data: dict[str, dict]) -> Path:
    """The peer's model folder for `model`: the file (and its .yaml config, if it has one), download lists where
    `list_key` lists it as `listed`, and UVR's model data files as `data` gives them."""
    folder.mkdir(parents=True, exist_ok=True)
    for source in (model, model.with_suffix(".yaml")):
        if source.exists() and not (folder / source.name).exists():
            shutil.copyfile(source, folder / source.name)
    lists: dict[str, dict] = {key: {} for key in DOWNLOAD_LISTS}
    lists[list_key] = {f"benchmark: {model.stem}": listed}
    (folder / "download_checks.json").write_text(json.dumps(lists))
    for name in ("vr_model_data.json", "mdx_model_data.json"):
        (folder / name).write_text(json.dumps(data.get(name, {})))
    return folder


def full_scale_song(cache: Path, seconds: float, source: Path = SONG, subtype: str = "FLOAT") -> Path:
    """The first `seconds` of `source` as a WAV of `subtype` (32-bit float unless told), scaled so that its peak
    is exactly 1.0."""
    kind = "" if subtype == "FLOAT" else f"_{subtype.lower()}"
    path = cache / f"{source.stem}_{seconds:g}s_full_scale{kind}.wav"
    if not path.exists():
        audio, rate = sf.read(source, dtype="float64", frames=int(seconds * 44100))
        sf.write(path, (audio / np.abs(audio).max()).astype(np.float32), rate, subtype=subtype)
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


class Outcome(NamedTuple):
    """Both tools' runs on one model file and song."""

    seconds: float  # the song's
    peer_wall: float
    peer_peak: float
    wall: float  # uvr's
    peak: float
    agreed: dict[str, float]  # each stem's agreement in dB, by uvr's stem name
    peer_out: Path
    ours: Path

    @property
    def shown(self) -> str:
        return ", ".join(f"{stem} {value:.1f} dB" for stem, value in self.agreed.items())

    def rows(self, peer_name: str, uvr_name: str, snr_db: float | None) -> tuple[Row, Row]:
        """The peer's row and uvr's, both timed against the peer."""
        return (
            Row(peer_name, self.seconds, self.peer_wall, self.peer_peak, None, self.peer_wall),
            Row(uvr_name, self.seconds, self.wall, self.peak, snr_db, self.peer_wall),
        )


def run_both(
    cache: Path, tag: str, song: Path, model: Path, folder: Path, settings: dict, options: list[str]
) -> Outcome:
    """The peer (its model folder `folder`, the Separator's `settings`) and uvr (`options` besides float WAV out)
    on `song` with `model`, each in a child of its own, and how far their stems agree."""
    peer_out = cache / f"out_peer_{tag}"
    shutil.rmtree(peer_out, ignore_errors=True)
    peer_wall, peer_peak = run_child(
        [str(peer_python()), str(JOB), str(folder), model.name, str(peer_out), str(song), json.dumps(settings)]
    )
    ours = cache / f"out_uvr_{tag}"
    wall, peak = run_child(
        [*UVR, "separate", str(song), "-m", str(model), "-o", str(ours), "--overwrite", "-q", "--format", "wav"]
        + ["--bit-depth", "32f", "--name", "{stem}.{ext}", *options]
    )
    agreed = {stem: agreement(ours / f"{stem}.wav", peer_stem(peer_out, label)) for stem, label in STEMS}
    return Outcome(sf.info(song).duration, peer_wall, peer_peak, wall, peak, agreed, peer_out, ours)


def mdx_side_by_side(cache: Path, song: Path, model: Path, params: Path, tag: str) -> tuple[Row, Row, dict]:
    """The peer and uvr on one MDX-Net file and song: their rows, and each stem's agreement in dB."""
    data = {"mdx_model_data.json": {uvr_model_hash(model): json.loads(params.read_text())}}
    folder = model_folder(cache / f"peer_models_{tag}", model, "mdx_download_list", model.name, data)
    both = run_both(cache, tag, song, model, folder, OUTPUT, ["--params", str(params)])
    peer_row, uvr_row = both.rows(
        f"python-audio-separator 0.47.1, MDX-Net, {tag}",
        f"uvr, MDX-Net ({tag}); stems vs the peer's: {both.shown}",
        min(both.agreed.values()),
    )
    return peer_row, uvr_row, both.agreed


def roformer_side_by_side(cache: Path, song: Path, model: Path, tag: str, label: str) -> tuple[Row, Row, dict]:
    """The peer and uvr on one RoFormer checkpoint (its .yaml beside it) and song: their rows and each stem's
    agreement in dB. The peer's chunk step is set to the config's (its `overlap`, windows per chunk, to the
    config's num_overlap); what still differs is in the module docstring."""
    config = read_config(model.with_suffix(".yaml"))
    listed = {model.name: model.with_suffix(".yaml").name}
    folder = model_folder(cache / f"peer_models_{tag}", model, "roformer_download_list", listed, {})
    settings = {
        **OUTPUT,
        "mdxc_params": {"segment_size": 256, "override_model_segment_size": False, "batch_size": 1,
                        "overlap": config.num_overlap, "pitch_shift": 0},
    }  # fmt: skip
    both = run_both(cache, tag, song, model, folder, settings, ["--device", "cpu"])
    peer_row, uvr_row = both.rows(
        f"python-audio-separator 0.47.1, BS-RoFormer, {label}",
        f"uvr, BS-RoFormer ({label}); stems vs the peer's: {both.shown}",
        None,
    )
    return peer_row, uvr_row, both.agreed


def vr_side_by_side(cache: Path, song: Path, model: Path, preset: str, tag: str) -> tuple[Row, Row, dict]:
    """The peer and uvr on one CascadedASPPNet file (the instrumental its primary stem) and song, settings matched
    as the module docstring says: their rows and each stem's agreement in dB."""
    data = {"vr_model_data.json": {uvr_model_hash(model): {"vr_model_param": preset, "primary_stem": "Instrumental"}}}
    folder = model_folder(cache / f"peer_models_{tag}", model, "vr_download_list", model.name, data)
    # the peer's aggression is a hundredth of the value RVC and uvr take a hundredth of, doubled in its adjust_aggr
    # (and taken from 1 for a vocal primary stem): 5 there is uvr's --agg 10 for an instrumental one
    vr_params = {"batch_size": 1, "window_size": 512, "aggression": 5, "enable_tta": False,
                 "enable_post_process": False, "post_process_threshold": 0.2, "high_end_process": True}  # fmt: skip
    options = ["--params", preset, "--primary", "instrumental", "--agg", "10", "--window", "512"]
    both = run_both(
        cache, tag, song, model, folder, {**OUTPUT, "vr_params": vr_params}, [*options, "--high-end", "mirroring"]
    )
    short = sf.info(both.ours / "vocals.wav").frames - sf.info(peer_stem(both.peer_out, "Vocals")).frames
    peer_row, uvr_row = both.rows(
        f"python-audio-separator 0.47.1, VR, {tag}",
        f"uvr, VR ({tag}); stems vs the peer's: {both.shown}; the peer's are {short} samples shorter",
        min(both.agreed.values()),
    )
    return peer_row, uvr_row, both.agreed


def roformer_rows(cache: Path, seconds: float) -> list[Row]:
    """BS-RoFormer: the 317 model's bands, STFT, chunking and width, 2 of its 12 layers (benchmarks/roformer_net.py;
    all 12 take over a minute a chunk on 2 CPU cores, an hour and a half for the two tools on 60 s), on a full-scale
    song. Each layer costs the same, so the ratio is the full model's but for the STFT and masks around them."""
    model = roformer_net.make_model(cache / "bench_bs_roformer_317_depth2.ckpt", roformer_net.narrower(512, 2))
    song = full_scale_song(cache, seconds)
    peer_row, uvr_row, _ = roformer_side_by_side(cache, song, model, "roformer", "317 shapes, depth 2 of 12")
    return [peer_row, uvr_row]


def mdx_rows(cache: Path, seconds: float) -> list[Row]:
    """MDX-Net: a network of Inst_HQ_3's shapes (benchmarks/mdx_net.py) on a full-scale song."""
    model = mdx_net.make_model(cache / "bench_mdx_inst_hq3.onnx")
    params = mdx_net.params_file(cache / "bench_mdx_inst_hq3.json")
    peer_row, uvr_row, _ = mdx_side_by_side(cache, full_scale_song(cache, seconds), model, params, "Inst_HQ_3-shaped")
    return [peer_row, uvr_row]


def vr_rows(cache: Path, seconds: float) -> list[Row]:
    """VR: a CascadedASPPNet ch32 of 5 ASPP branches at 4band_v2, the HP class (1_HP-UVR, 2_HP-UVR), in float32
    like UVR's files (the peer takes the network's class from the file's size), on a full-scale song as 32-bit
    integers (the peer writes a VR stem in the input's integer width, and 16 bits for a float input)."""
    model, preset = make_checkpoint(cache, "ch32", torch.float32)
    song = full_scale_song(cache, seconds, subtype="PCM_32")
    peer_row, uvr_row, _ = vr_side_by_side(cache, song, model, preset, "HP-class")
    return [peer_row, uvr_row]


def network_job(cache: Path, name: str, song: Path) -> dict[str, str]:
    """Write msst_check's tiny `name` model, the peer's model folder for it and its input chunk from `song`: the
    peer_network_job.py job of it."""
    config = msst_check.CONFIGS[name]
    model = roformer_net.make_model(cache / f"check_{name}.ckpt", config)
    folder = cache / f"peer_models_check_{name}"
    shutil.rmtree(folder, ignore_errors=True)  # model_folder keeps files already there
    list_key = "mdx23c_download_list" if name == "mdx23c" else "roformer_download_list"
    model_folder(folder, model, list_key, {model.name: model.with_suffix(".yaml").name}, {})
    chunk = cache / f"check_{name}_chunk.npy"
    np.save(chunk, msst_check.chunk_of(song, config))
    return {"folder": str(folder), "model": model.name, "input": str(chunk), "output": str(chunk) + ".peer.npy"}


def network_agreement(cache: Path, song: Path) -> dict[str, dict[str, float]]:
    """The peer's and uvr's network output on one chunk of `song` for each of msst_check's tiny models: each
    output's agreement in dB, by model."""
    jobs = {name: network_job(cache, name, song) for name in msst_check.CONFIGS}
    run_child([str(peer_python()), str(NETWORK_JOB), json.dumps(list(jobs.values()))])
    return {
        name: msst_check.agreement(
            msst_check.uvr_outputs(cache / job["model"], np.load(job["input"])), np.load(job["output"])
        )
        for name, job in jobs.items()
    }


def check(cache: Path) -> int:
    """CI's check that the peer and uvr agree where their code agrees (>= 80 dB per stem): a small MDX-Net on the
    example song at full scale (11 s, three chunks), and the tiny MSST networks on one chunk of it; 0 when they
    do, 1 otherwise."""
    model = mdx_net.make_model(cache / "check_mdx.onnx", dim_f=512, g=8, levels=2)
    params = mdx_net.params_file(cache / "check_mdx.json", mdx_dim_f_set=512, mdx_n_fft_scale_set=2048)
    song = full_scale_song(cache, 12.0, ROOT / "examples" / "slow_motion_dream.mp3")
    *_, agreed = mdx_side_by_side(cache, song, model, params, "check")
    print(f"python-audio-separator 0.47.1 against uvr, MDX-Net: {agreed}")
    networks = network_agreement(cache, song)
    for name, outputs in networks.items():
        shown = ", ".join(f"{output} {value:.1f} dB" for output, value in outputs.items())
        print(f"python-audio-separator 0.47.1 against uvr, {MSST_NAMES[name]} network on one chunk: {shown}")
    worst = min([*agreed.values(), *(value for outputs in networks.values() for value in outputs.values())])
    return 0 if worst >= 80 else 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="the agreement check CI runs (see `check`)")
    ap.add_argument("--cache", default=None, help="folder for models, inputs and outputs (default: a temp dir)")
    ap.add_argument("--families", default="mdx,roformer,vr", help="comma-separated: mdx, roformer, vr")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the song excerpt")
    args = ap.parse_args()
    cache = Path(args.cache or tempfile.mkdtemp(prefix="uvr-peer-"))
    cache.mkdir(parents=True, exist_ok=True)
    if args.check:
        raise SystemExit(check(cache))
    rows = {"mdx": mdx_rows, "roformer": roformer_rows, "vr": vr_rows}
    print(table([row for family in args.families.split(",") for row in rows[family](cache, args.seconds)]))


if __name__ == "__main__":
    main()
