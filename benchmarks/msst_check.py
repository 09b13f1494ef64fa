"""Tiny MSST-format models (a BS-RoFormer, a Mel-Band RoFormer and an MDX23C of random weights) and uvr's network
output on one chunk of audio, for benchmarks/peer.py's check that python-audio-separator's networks compute what
uvr's do, chunk for chunk, where the two codes agree by design.

The configs are the real models' shrunk (few channels, a 256-point STFT, chunks of 8192 or 4032 samples), so that a
forward pass takes milliseconds on a CPU; they cover one stem with a target (BS-RoFormer), two stems without one
(Mel-Band RoFormer and MDX23C). The RoFormers set `zero_dc: false`: MSST's networks, and uvr's, zero the STFT's DC
bin unless told not to, the peer's never do (it keeps the option and ignores it), so only with it off do the two
compute the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from uvr_cli.engine.device import Runtime
from uvr_cli.engine.families.msst.family import MsstFamily
from uvr_cli.settings import ModelOptions, RuntimeOptions

RATE = 44100
STFT = {"stft_n_fft": 256, "stft_hop_length": 64, "stft_win_length": 256}
ROFORMER = {"dim": 16, "depth": 1, "stereo": True, "time_transformer_depth": 1, "freq_transformer_depth": 1,
            "dim_head": 8, "heads": 2, "attn_dropout": 0.1, "ff_dropout": 0.1, "flash_attn": True, "zero_dc": False,
            **STFT}  # fmt: skip
ONE_TARGET = {"instruments": ["vocals", "other"], "target_instrument": "vocals"}
TWO_STEMS = {"instruments": ["vocals", "other"], "target_instrument": None}
INFERENCE = {"batch_size": 1, "num_overlap": 2}
CONFIGS = {
    "bs_roformer": {
        "audio": {"chunk_size": 8192, "num_channels": 2, "sample_rate": RATE},
        "model": {**ROFORMER, "num_stems": 1, "freqs_per_bands": (16, 16, 32, 32, 33), "mask_estimator_depth": 2},
        "training": ONE_TARGET,
        "inference": INFERENCE,
    },
    "mel_band_roformer": {
        "audio": {"chunk_size": 8192, "num_channels": 2, "sample_rate": RATE},
        "model": {**ROFORMER, "num_stems": 2, "num_bands": 8, "sample_rate": RATE, "mask_estimator_depth": 1},
        "training": TWO_STEMS,
        "inference": INFERENCE,
    },
    "mdx23c": {
        "audio": {"chunk_size": 64 * 63, "n_fft": 256, "hop_length": 64, "dim_f": 128, "num_channels": 2,
                  "sample_rate": RATE},
        "model": {"act": "gelu", "norm": "InstanceNorm", "num_subbands": 2, "num_scales": 2, "scale": [2, 2],
                  "num_blocks_per_scale": 1, "num_channels": 8, "growth": 4, "bottleneck_factor": 2},
        "training": TWO_STEMS,
        "inference": {**INFERENCE, "dim_t": 64},
    },
}  # fmt: skip


def chunk_of(song: Path, config: dict, start_s: float = 2.0) -> np.ndarray:
    """The network input (1, 2, C) float32: C = the config's chunk of `song` from `start_s` seconds on."""
    audio, _ = sf.read(song, dtype="float32", start=int(start_s * RATE), frames=config["audio"]["chunk_size"])
    return np.ascontiguousarray(audio.T[None])


def uvr_outputs(checkpoint: Path, chunk: np.ndarray) -> dict[str, np.ndarray]:
    """uvr's network output on `chunk` (1, 2, C), per output (2, C): the checkpoint loaded by uvr's MSST family on
    the CPU in fp32, its ChunkNetwork's `predict`."""
    runtime = Runtime.resolve(RuntimeOptions(device="cpu", precision="fp32"))
    model = MsstFamily().load(checkpoint, ModelOptions(), runtime)
    return dict(zip(model.config.outputs, model.network.predict(chunk)[0]))


def agreement(ours: dict[str, np.ndarray], theirs: np.ndarray) -> dict[str, float]:
    """SNR (dB) of the peer's output (1, [outputs,] 2, C') against ours per output, over the samples both have (the
    peer squeezes the stem axis of a one-stem network; its BS-RoFormer may give a few samples fewer)."""
    theirs = theirs.reshape(len(ours), 2, -1)
    agreed = {}
    for (name, mine), other in zip(ours.items(), theirs):
        n = min(mine.shape[-1], other.shape[-1])
        a, b = mine[:, :n].astype(np.float64), other[:, :n].astype(np.float64)
        noise = np.sum((a - b) ** 2)
        agreed[name] = float("inf") if noise == 0 else float(10 * np.log10(np.sum(a**2) / noise))
    return agreed
