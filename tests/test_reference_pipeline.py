"""Our real CLI against an independent re-implementation of the reference pipeline (reference/rvc.py).

This file runs `uvr separate` exactly as shared/conformance/check.py does, over a matrix that covers every
network family and capacity, the band presets, aggressiveness, TTA, mono and non-44.1 kHz input, on
random-weight fp16 checkpoints made from seeds in UVR5's layout, on cuts of the bundled example song, and
compares each stem with the reference by check.py's SNR (>= 50 dB) and its length rule. The reference shares
no code with uvr (networks included), and test_conformance.py holds it to the original code's outputs.

Cost is one network window per run and side wherever possible: clips are short enough that the
frame count stays within one window's roi, every dimension is covered by some case rather than by
the cross product, and the CLI runs while the reference computes.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from conftest import DATA, ROOT, save_random_checkpoint, uvr_command
from reference import rvc as ref
from uvr_cli.engine.families.vr.nets import AsppNetSpec, CascadedNetSpec

pytestmark = pytest.mark.slow

MIN_SNR_DB = 50.0

# Random-weight checkpoints, one per network layout UVR5 ships (tests/data/uvr-statedicts lists them): spec, bins.
NETS = {
    "aspp16": (AsppNetSpec(16, 5), 1024),
    "aspp16_7br": (AsppNetSpec(16, 7), 1024),
    "aspp16_enc5": (AsppNetSpec(16, 6, enc5=True), 1024),
    "aspp32": (AsppNetSpec(32, 5), 1024),
    "aspp64_7br": (AsppNetSpec(64, 7), 1024),
    "cn16_1024": (CascadedNetSpec(16, 128, 1024), 1024),
    "cn32_896": (CascadedNetSpec(32, 128, 896), 896),
    "cn48_672": (CascadedNetSpec(48, 128, 672), 672),
    "cn64_672": (CascadedNetSpec(64, 128, 672), 672),
    "cn64_896": (CascadedNetSpec(64, 128, 896), 896),
}

SONG = ROOT / "examples" / "slow_motion_dream.mp3"  # 10.9 s, 44.1 kHz stereo (examples/CREDITS.md)
SOURCES = {"early": 1.0, "late": 6.0}  # where in the song a clip starts, in seconds


@dataclass(frozen=True)
class Case:
    id: str
    net: str
    params: str
    agg: int = 10
    tta: bool = False
    source: str = "early"
    seconds: float = 2.0
    rate: int = 44100  # the input file's rate
    mono: bool = False
    window: int | None = None  # None: the CLI's default, 512 (the reference's)
    subtype: str = "PCM_16"


# Each case adds at least one dimension; together they cover every preset asked for, every network
# family and capacity, agg 0/5/10/20, TTA with both offsets, mono, and 22.05/32/44.1/48 kHz input. The first two
# are the settings of shared/conformance's vectors.
CASES = [
    Case("1band_hl512-agg10", "aspp16", "1band_sr44100_hl512"),
    Case("4band_v2-tta-agg5", "aspp16", "4band_v2", agg=5, tta=True, source="late"),
    # presets, on the cheap ch16 5-branch net
    Case("1band_sr16000-mono-agg5", "aspp16", "1band_sr16000_hl512", agg=5, source="late", mono=True),
    Case("1band_sr32000-in48k-agg20", "aspp16", "1band_sr32000_hl512", agg=20, rate=48000),
    Case(
        "1band_hl256-tta-agg0-in48k-float",
        "aspp16",
        "1band_sr44100_hl256",
        agg=0,
        tta=True,
        rate=48000,
        seconds=1.45,
        subtype="FLOAT",
    ),
    Case("1band_hl512_cut-in22k", "aspp16", "1band_sr44100_hl512_cut", rate=22050),
    Case("2band_32000", "aspp16", "2band_32000", source="late"),
    Case("2band_48000-in48k-agg5", "aspp16", "2band_48000", agg=5, rate=48000),
    Case("4band_44100_reverse-agg20", "aspp16", "4band_44100_reverse", agg=20, source="late"),
    Case("ensemble", "aspp16", "ensemble"),
    # the other CascadedASPPNet variants
    Case("aspp16_7br-3band_msb2-mono", "aspp16_7br", "3band_44100_msb2", mono=True),
    Case("aspp16_enc5-3band_mid-in32k", "aspp16_enc5", "3band_44100_mid", source="late", rate=32000),
    Case("aspp32-4band_v2-in22k-agg5", "aspp32", "4band_v2", agg=5, rate=22050),  # RVC's HP2/HP5 setting
    Case("aspp64_7br-1band_hl256", "aspp64_7br", "1band_sr44100_hl256", source="late", seconds=1.45),
    # CascadedNet (offset 64, aggressiveness ignored), each capacity with its preset; the costly
    # capacities run a 256-frame window (roi 128, one window) instead of the default 512 (roi 384)
    Case("cn16-1band_hl1024-tta", "cn16_1024", "1band_sr44100_hl1024", tta=True, source="late"),
    Case("cn32-4band_v4_ms_fullband", "cn32_896", "4band_v4_ms_fullband", source="late"),
    Case("cn48-4band_v3-w256", "cn48_672", "4band_v3", seconds=1.35, window=256),
    Case(
        "cn64_672-4band_v3-agg0-mono-in48k-w256",
        "cn64_672",
        "4band_v3",
        agg=0,
        mono=True,
        rate=48000,
        seconds=1.35,
        window=256,
    ),
    Case(
        "cn64_896-4band_v4_ms_fullband-in32k-w256",
        "cn64_896",
        "4band_v4_ms_fullband",
        rate=32000,
        seconds=1.6,
        window=256,
    ),
]


# The remaining presets and the default-window CascadedNet TTA: opt-in (UVR_REF_EXTENDED=1), as they
# would double the file's run time.
EXTENDED_CASES = [
    Case("x-1band_sr33075_hl384", "aspp16", "1band_sr33075_hl384"),
    Case("x-1band_hl512_nf1024-in22k-mono", "aspp16", "1band_sr44100_hl512_nf1024", rate=22050, mono=True),
    Case("x-2band_44100_lofi-agg20", "aspp16", "2band_44100_lofi", agg=20, source="late"),
    Case("x-3band_44100", "aspp16", "3band_44100"),
    Case("x-4band_44100-in32k", "aspp16", "4band_44100", rate=32000),
    Case("x-4band_44100_mid", "aspp16", "4band_44100_mid", source="late"),
    Case("x-4band_44100_msb-mono", "aspp16", "4band_44100_msb", mono=True),
    Case("x-4band_44100_msb2", "aspp16", "4band_44100_msb2", source="late"),
    Case("x-4band_44100_sw", "aspp16", "4band_44100_sw"),
    Case("x-4band_v2_sn-in48k", "aspp16", "4band_v2_sn", rate=48000),
    Case("x-4band_v3_sn-agg20", "aspp16", "4band_v3_sn", agg=20, source="late"),
    Case("x-cn48-4band_v3-tta", "cn48_672", "4band_v3", tta=True),
]
if os.environ.get("UVR_REF_EXTENDED"):
    CASES += EXTENDED_CASES


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """name -> path of a random fp16 checkpoint, built on first use."""
    folder = tmp_path_factory.mktemp("ref-weights")
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            spec, bins = NETS[name]
            built[name] = save_random_checkpoint(folder / f"{name}.pth", spec, bins, seed=list(NETS).index(name))
        return built[name]

    return get


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    """Case -> a WAV cut from the example song at the case's rate, channel count and subtype."""
    folder = tmp_path_factory.mktemp("ref-audio")
    song, sr = sf.read(SONG, dtype="float64", always_2d=True)

    def get(case: Case) -> Path:
        start = int(SOURCES[case.source] * sr)
        data = song[start : start + int(round(case.seconds * sr))]
        if case.rate != sr:
            g = np.gcd(case.rate, sr)
            data = scipy.signal.resample_poly(data, case.rate // g, sr // g, axis=0)
        if case.mono:
            data = data.mean(axis=1)
        data = np.clip(data * 0.9, -1, 1)
        path = folder / f"{case.id}.wav"
        sf.write(path, data, case.rate, subtype=case.subtype)
        return path

    return get


def snr_db(r: np.ndarray, e: np.ndarray) -> float:
    noise = np.sum((r - e) ** 2)
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(r**2) / noise))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cli_matches_reference_pipeline(case: Case, checkpoints, clips, tmp_path):
    weights = checkpoints(case.net)
    wav = clips(case)
    params = DATA / "modelparams" / f"{case.params}.json"
    out = tmp_path / "out"
    argv = [
        *uvr_command(),
        "separate",
        str(wav),
        "-m",
        str(weights),
        "--params",
        case.params,
        "--agg",
        str(case.agg),
        "--high-end",
        "mirroring",
        "--format",
        "wav",
        "--bit-depth",
        "32f",
        "--sample-rate",
        "model",
        "-o",
        str(out),
        "--name",
        "{stem}.{ext}",
    ]
    argv += ["--tta"] if case.tta else []
    argv += ["--window", str(case.window)] if case.window else []
    # The CLI runs while the reference computes in this process.
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        pipeline = ref.AudioPre(weights, params, case.agg, case.tta, window_size=case.window or 512)
        expected = pipeline.separate(wav)
    finally:
        _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr.decode(errors="replace")[-2000:]

    mp = pipeline.mp
    n_in = sf.info(str(wav)).frames
    want_len = int(np.ceil(n_in * mp["sr"] / case.rate))
    hop = mp["band"][len(mp["band"])]["hl"]
    report = []
    for stem, key in (("instrumental", "primary"), ("vocals", "other")):
        est, sr = sf.read(out / f"{stem}.wav", dtype="float64", always_2d=True)
        r = expected[key]  # it stops at its last frame's centre; uvr also separates the rest of the last hop
        assert 0 <= want_len - r.shape[0] <= hop, f"the reference made {r.shape[0]} of {want_len} samples"
        assert len(est) == want_len, f"{stem}: {len(est)} samples, the input has {want_len} at the preset's rate"
        assert sr == mp["sr"], f"{stem}: written at {sr} Hz, the preset's rate is {mp['sr']}"
        if est.shape[1] == 1 and r.shape[1] == 2:
            r = r[:, :1]  # as check.py: a mono output is compared with the reference's first channel
        assert est.shape[1] == r.shape[1], f"{stem}: {est.shape[1]} channels, reference {r.shape[1]}"
        n = len(r)
        snr = snr_db(r, est[:n])
        report.append(f"{stem} {snr:.1f} dB over the reference's {n} of {len(est)} samples")
        assert snr >= MIN_SNR_DB, f"{case.id}: " + "; ".join(report)
    print(f"{case.id}: " + "; ".join(report))
