"""Our real CLI against an independent re-implementation of the reference pipeline (tests/rvc_reference.py).

The shared conformance check covers two vectors (ch16, 1band_sr44100_hl512 and 4band_v2+TTA, 44.1 kHz
stereo). The acceptance check elsewhere also uses every network family and capacity, other presets,
TTA, mono and non-44.1 kHz input. This file runs `uvr separate` exactly as check.py does over a matrix
that covers those, on random-weight fp16 checkpoints built from shared/reference/uvr-statedicts, and
compares each stem with the reference by check.py's SNR (>= 50 dB) and its length rule.

Cost is one network window per run and side wherever possible: clips are short enough that the
frame count stays within one window's roi, every dimension is covered by some case rather than by
the cross product, and the CLI runs while the reference computes. The default matrix costs about
460 CPU-seconds (about 4 minutes on two otherwise idle cores; 16-18 minutes on a machine loaded 4x). The network code is shared with
the reference (it is checked against the shared network vectors); what differs between the two sides
is everything around it: loading, resampling, STFT, band combine, window loop, aggressiveness, TTA,
mirroring, synthesis, channel handling and output.
"""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import torch

import rvc_reference as ref
from conftest import uvr_command

pytestmark = pytest.mark.slow

MIN_SNR_DB = 50.0

# Random-weight checkpoints, one per listing in shared/reference/uvr-statedicts.
NETS = {
    "aspp16": "CascadedASPPNet_ch16_5branch__31191KB",
    "aspp16_7br": "CascadedASPPNet_ch16_7branch__33966KB",
    "aspp16_enc5": "CascadedASPPNet_ch16_6branch_enc5__129605KB",
    "aspp32": "CascadedASPPNet_ch32_5branch__123821KB_123812KB_61968KB",
    "aspp64_7br": "CascadedASPPNet_ch64_7branch__537238KB_537227KB",
    "cn16_1024": "CascadedNet_nout16_lstm128_bins1024__1band_sr44100_hl1024",
    "cn32_896": "CascadedNet_nout32_lstm128_bins896__4band_v4_ms_fullband",
    "cn48_672": "CascadedNet_nout48_lstm128_bins672__4band_v3",
    "cn64_672": "CascadedNet_nout64_lstm128_bins672__4band_v3",
    "cn64_896": "CascadedNet_nout64_lstm128_bins896__4band_v4_ms_fullband",
}

SOURCES = {"karissa": "conformance/audio/karissa_8s.wav", "spleeter": "conformance/audio/spleeter_8s.wav"}


@dataclass(frozen=True)
class Case:
    id: str
    net: str
    params: str
    agg: int = 10
    tta: bool = False
    source: str = "karissa"
    seconds: float = 2.0
    rate: int = 44100  # the input file's rate
    mono: bool = False
    window: int | None = None  # None: the CLI's default, 512 (the reference's)
    subtype: str = "PCM_16"


# Each case adds at least one dimension; together they cover every preset asked for, every network
# family and capacity, agg 0/5/10/20, TTA with both offsets, mono, and 22.05/32/44.1/48 kHz input.
# 1band_sr44100_hl512 and 4band_v2+TTA on 44.1 kHz stereo are the shared conformance vectors
# (test_conformance.py), so they are not repeated here.
CASES = [
    # presets, on the cheap ch16 5-branch net
    Case("1band_sr16000-mono-agg5", "aspp16", "1band_sr16000_hl512", agg=5, source="spleeter", mono=True),
    Case("1band_sr32000-in48k-agg20", "aspp16", "1band_sr32000_hl512", agg=20, rate=48000),
    Case("1band_hl256-tta-agg0-in48k-float", "aspp16", "1band_sr44100_hl256", agg=0, tta=True, rate=48000,
         seconds=1.45, subtype="FLOAT"),
    Case("1band_hl512_cut-in22k", "aspp16", "1band_sr44100_hl512_cut", rate=22050),
    Case("2band_32000", "aspp16", "2band_32000", source="spleeter"),
    Case("2band_48000-in48k-agg5", "aspp16", "2band_48000", agg=5, rate=48000),
    Case("4band_44100_reverse-agg20", "aspp16", "4band_44100_reverse", agg=20, source="spleeter"),
    Case("ensemble", "aspp16", "ensemble"),
    # the other CascadedASPPNet variants
    Case("aspp16_7br-3band_msb2-mono", "aspp16_7br", "3band_44100_msb2", mono=True),
    Case("aspp16_enc5-3band_mid-in32k", "aspp16_enc5", "3band_44100_mid", source="spleeter", rate=32000),
    Case("aspp32-4band_v2-in22k-agg5", "aspp32", "4band_v2", agg=5, rate=22050),  # RVC's HP2/HP5 setting
    Case("aspp64_7br-1band_hl256", "aspp64_7br", "1band_sr44100_hl256", source="spleeter", seconds=1.45),
    # CascadedNet (offset 64, aggressiveness ignored), each capacity with its preset; the costly
    # capacities run a 256-frame window (roi 128, one window) instead of the default 512 (roi 384)
    Case("cn16-1band_hl1024-tta", "cn16_1024", "1band_sr44100_hl1024", tta=True, source="spleeter"),
    Case("cn32-4band_v4_ms_fullband", "cn32_896", "4band_v4_ms_fullband", source="spleeter"),
    Case("cn48-4band_v3-w256", "cn48_672", "4band_v3", seconds=1.35, window=256),
    Case("cn64_672-4band_v3-agg0-mono-in48k-w256", "cn64_672", "4band_v3", agg=0, mono=True, rate=48000,
         seconds=1.35, window=256),
    Case("cn64_896-4band_v4_ms_fullband-in32k-w256", "cn64_896", "4band_v4_ms_fullband", rate=32000,
         seconds=1.6, window=256),
]


# The remaining presets and the default-window CascadedNet TTA: opt-in (UVR_REF_EXTENDED=1), as they
# would double the file's run time.
EXTENDED_CASES = [
    Case("x-1band_sr33075_hl384", "aspp16", "1band_sr33075_hl384"),
    Case("x-1band_hl512_nf1024-in22k-mono", "aspp16", "1band_sr44100_hl512_nf1024", rate=22050, mono=True),
    Case("x-2band_44100_lofi-agg20", "aspp16", "2band_44100_lofi", agg=20, source="spleeter"),
    Case("x-3band_44100", "aspp16", "3band_44100"),
    Case("x-4band_44100-in32k", "aspp16", "4band_44100", rate=32000),
    Case("x-4band_44100_mid", "aspp16", "4band_44100_mid", source="spleeter"),
    Case("x-4band_44100_msb-mono", "aspp16", "4band_44100_msb", mono=True),
    Case("x-4band_44100_msb2", "aspp16", "4band_44100_msb2", source="spleeter"),
    Case("x-4band_44100_sw", "aspp16", "4band_44100_sw"),
    Case("x-4band_v2_sn-in48k", "aspp16", "4band_v2_sn", rate=48000),
    Case("x-4band_v3_sn-agg20", "aspp16", "4band_v3_sn", agg=20, source="spleeter"),
    Case("x-cn48-4band_v3-tta", "cn48_672", "4band_v3", tta=True),
]
if os.environ.get("UVR_REF_EXTENDED"):
    CASES += EXTENDED_CASES


def _random_checkpoint(tsv: Path, out: Path, seed: int) -> None:
    """A float16 state dict with the listing's keys and shapes: He-scaled normal weights, BatchNorm
    gains near 1, small biases and means, running_var in [0.5, 1.5), num_batches_tracked 0."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for line in tsv.read_text().splitlines()[1:]:
        key, shape_text, _dtype = line.split("\t")
        shape = () if shape_text in ("", "scalar") else tuple(int(s) for s in shape_text.split("x"))
        leaf = key.rsplit(".", 1)[1]
        if leaf == "num_batches_tracked":
            state[key] = torch.tensor(0, dtype=torch.int64)
            continue
        if leaf == "running_var":
            t = torch.rand(shape, generator=g) + 0.5
        elif len(shape) == 1 and leaf == "weight":  # BatchNorm gain
            t = 1 + 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:  # biases, running means
            t = 0.1 * torch.randn(shape, generator=g)
        else:
            t = torch.randn(shape, generator=g) * (2.0 / int(np.prod(shape[1:]))) ** 0.5
        state[key] = t.half()
    torch.save(state, out)


@pytest.fixture(scope="session")
def checkpoints(shared, tmp_path_factory):
    """name -> path of a random fp16 checkpoint, built on first use."""
    folder = tmp_path_factory.mktemp("ref-weights")
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            stem = NETS[name]
            path = folder / f"{stem}.pth"
            _random_checkpoint(shared / "reference" / "uvr-statedicts" / f"{stem}.tsv", path,
                               seed=list(NETS).index(name))
            built[name] = path
        return built[name]

    return get


@pytest.fixture(scope="session")
def clips(shared, tmp_path_factory):
    """Case -> a WAV cut from real music at the case's rate, channel count and subtype."""
    folder = tmp_path_factory.mktemp("ref-audio")

    def get(case: Case) -> Path:
        data, sr = sf.read(shared / SOURCES[case.source], dtype="float64", always_2d=True)
        start = sr  # skip the first second
        data = data[start:start + int(round(case.seconds * sr))]
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
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(r ** 2) / noise))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cli_matches_reference_pipeline(case: Case, checkpoints, clips, shared, tmp_path):
    weights = checkpoints(case.net)
    wav = clips(case)
    params = shared / "reference" / "modelparams" / f"{case.params}.json"
    out = tmp_path / "out"
    argv = [*uvr_command(), "separate", str(wav), "-m", str(weights), "--params", case.params,
            "--agg", str(case.agg), "--high-end", "mirroring", "--format", "wav", "--bit-depth", "32f",
            "--sample-rate", "model", "-o", str(out), "--name", "{stem}.{ext}"]
    argv += ["--tta"] if case.tta else []
    argv += ["--window", str(case.window)] if case.window else []
    # The CLI runs while the reference computes in this process.
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        pipeline = ref.AudioPre(weights, params, case.agg, case.tta, window_size=case.window or 512)
        expected = pipeline.separate(wav)
    finally:
        stdout, stderr = proc.communicate(timeout=600)
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


@pytest.mark.skipif(not os.environ.get("UVR_REF_SELFCHECK"), reason="set UVR_REF_SELFCHECK=1 (about 2 CPU-minutes)")
@pytest.mark.parametrize("index", [0, 1])
def test_reference_reproduces_conformance_vectors(index, shared):
    """The reference itself against the shared reference outputs (it must reach >= 100 dB)."""
    root = shared / "conformance"
    vec = json.loads((root / "manifest.json").read_text())["vectors"][index]
    pipeline = ref.AudioPre(root / vec["weights"], shared / "reference" / "modelparams" / f"{vec['params']}.json",
                            vec["agg"], vec["tta"])
    got = pipeline.separate(root / vec["input"])
    for stem, key in (("instrumental", "primary"), ("vocals", "other")):
        want = np.load(root / vec["expect"][stem])
        n = min(len(want), len(got[key]))
        assert snr_db(want[:n], got[key][:n]) >= 100, stem
