"""A random-weight BS-RoFormer for benchmarks, of the shapes of viperx's model_bs_roformer_ep_317_sdr_12.9755 (the
RoFormer UVR and python-audio-separator list first): dim 512, depth 12, 62 bands over a 2048-point STFT at hop 441,
8 s chunks, num_overlap 4; its config written as MSST writes one, beside the checkpoint.

Only the shapes and the amount of arithmetic matter to a speed comparison: the same files go to every tool.
`make_model` writes the network of any MSST config this way (benchmarks/msst_check.py's tiny ones too).
"""

from __future__ import annotations

from pathlib import Path

import torch

from uvr_cli.catalog.model_config import dump_config, read_config
from uvr_cli.engine.families.msst.family import build_network

# bins per band of the 317 model: 24 x 2, 12 x 4, 8 x 12, 8 x 24, 8 x 48, then 128 and 129 (1025 bins in all)
BANDS_317 = (2,) * 24 + (4,) * 12 + (12,) * 8 + (24,) * 8 + (48,) * 8 + (128, 129)
CONFIG_317 = {
    "audio": {"chunk_size": 352800, "dim_f": 1024, "dim_t": 801, "hop_length": 441, "n_fft": 2048,
              "num_channels": 2, "sample_rate": 44100, "min_mean_abs": 0.001},
    "model": {"dim": 512, "depth": 12, "stereo": True, "num_stems": 1, "time_transformer_depth": 1,
              "freq_transformer_depth": 1, "freqs_per_bands": BANDS_317, "dim_head": 64, "heads": 8,
              "attn_dropout": 0.1, "ff_dropout": 0.1, "flash_attn": True, "dim_freqs_in": 1025, "stft_n_fft": 2048,
              "stft_hop_length": 441, "stft_win_length": 2048, "stft_normalized": False, "mask_estimator_depth": 2},
    "training": {"instruments": ["Vocals", "Instrumental"], "target_instrument": "Vocals"},
    "inference": {"batch_size": 1, "dim_t": 801, "num_overlap": 4},
}  # fmt: skip


def narrower(dim: int, depth: int, config: dict = CONFIG_317) -> dict:
    """`config` with another width and depth: the same bands, STFT and chunking, less arithmetic per chunk."""
    return {**config, "model": {**config["model"], "dim": dim, "depth": depth}}


def make_model(path: Path, config: dict = CONFIG_317, seed: int = 0) -> Path:
    """Write `path` (a .ckpt of the config's network with random weights) and `config` beside it as `path`.yaml;
    returns `path`. Files already there for the same config are kept (the 317 network takes seconds to build)."""
    yaml_path, text = path.with_suffix(".yaml"), dump_config(config)
    if path.exists() and yaml_path.exists() and yaml_path.read_text() == text:
        return path
    yaml_path.write_text(text)
    torch.manual_seed(seed)
    network = build_network(read_config(yaml_path))
    tmp = path.with_name(path.name + ".part")
    torch.save(network.state_dict(), tmp)
    tmp.replace(path)
    return path
