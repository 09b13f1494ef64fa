"""Small MSST-format models for tests: a `.ckpt` of random weights and its YAML config, for each architecture.

The configs are those of the real models shrunk (few channels, short chunks) so that a forward pass takes
milliseconds; the YAML is written as MSST writes it (freqs_per_bands as a !!python/tuple).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from uvr_cli.catalog.model_config import dump_config, read_config
from uvr_cli.engine.families.msst.family import build_network

RATE = 44100
BS = {
    "dim": 16,
    "depth": 1,
    "stereo": True,
    "num_stems": 1,
    "time_transformer_depth": 1,
    "freq_transformer_depth": 1,
    "freqs_per_bands": (16, 16, 32, 32, 33),
    "dim_head": 8,
    "heads": 2,
    "stft_n_fft": 256,
    "stft_hop_length": 64,
    "stft_win_length": 256,
    "mask_estimator_depth": 2,
    "attn_dropout": 0.1,
    "flash_attn": True,
}
MEL = {
    "dim": 16,
    "depth": 1,
    "stereo": True,
    "num_stems": 1,
    "time_transformer_depth": 1,
    "freq_transformer_depth": 1,
    "num_bands": 8,
    "dim_head": 8,
    "heads": 2,
    "sample_rate": RATE,
    "stft_n_fft": 256,
    "stft_hop_length": 64,
    "stft_win_length": 256,
    "mask_estimator_depth": 1,
}
MDX23C = {
    "act": "gelu",
    "norm": "InstanceNorm",
    "num_subbands": 2,
    "num_scales": 2,
    "scale": [2, 2],
    "num_blocks_per_scale": 1,
    "num_channels": 8,
    "growth": 4,
    "bottleneck_factor": 2,
}
MDX23C_AUDIO = {
    "n_fft": 256,
    "hop_length": 64,
    "dim_f": 128,
    "num_channels": 2,
    "sample_rate": RATE,
    "chunk_size": 64 * 63,
}


def msst_config_text(
    model: dict,
    *,
    audio: dict | None = None,
    instruments: list[str] | None = None,
    target: str | None = "vocals",
    chunk_size: int = 8192,
    num_overlap: int = 2,
    batch_size: int = 2,
) -> str:
    """The YAML of a config around `model` (MSST's `model` section), as MSST writes configs."""
    config = {
        "audio": audio or {"chunk_size": chunk_size, "num_channels": 2, "sample_rate": RATE},
        "model": model,
        "training": {"instruments": instruments or ["vocals", "other"], "target_instrument": target},
        "inference": {"batch_size": batch_size, "num_overlap": num_overlap},
    }
    return dump_config(config)


def msst_model(folder: Path, name: str, model: dict, *, seed: int = 0, **config: Any) -> Path:
    """Write `name`.ckpt (random weights of the config's network) and `name`.yaml beside it (msst_config_text's
    `config` arguments); returns the ckpt."""
    yaml_path = folder / f"{name}.yaml"
    yaml_path.write_text(msst_config_text(model, **config))
    torch.manual_seed(seed)
    network = build_network(read_config(yaml_path))
    with torch.no_grad():  # trained-looking statistics, so that activations neither vanish nor explode
        for key, value in network.state_dict().items():
            if key.endswith(("running_var",)):
                value.uniform_(0.5, 1.5)
    checkpoint = folder / f"{name}.ckpt"
    torch.save(network.state_dict(), checkpoint)
    return checkpoint


def load_network(checkpoint: Path) -> torch.nn.Module:
    """The checkpoint's network, built from its config and loaded, in eval mode: the reference demix's model."""
    network = build_network(read_config(checkpoint.with_suffix(".yaml")))
    network.load_state_dict(torch.load(checkpoint, weights_only=True))
    return network.eval()
