"""The MDX23C network: the original's state-dict layout for every listed config, its STFT front and back, the
subband layout, the chunk-length rule, per-chunk InstanceNorm, and outputs the original computed."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from conftest import DATA
from uvr_cli.engine.families.mdx23c.network import TfcTdfNet, merge_subbands, split_subbands
from uvr_cli.errors import ModelError

LISTINGS = DATA / "mdx23c-statedicts"  # MSST's own key/shape/dtype listings (see its README.md)
CONFIGS = json.loads((LISTINGS / "configs.json").read_text())

TINY_AUDIO = {"n_fft": 256, "hop_length": 64, "dim_f": 128, "num_channels": 2, "chunk_size": 960, "sample_rate": 44100}
TINY_MODEL = {
    "act": "gelu",
    "norm": "InstanceNorm",
    "num_subbands": 2,
    "num_scales": 2,
    "scale": [2, 2],
    "num_blocks_per_scale": 1,
    "num_channels": 16,
    "growth": 8,
    "bottleneck_factor": 4,
}
SAMPLES = 64 * 15  # 16 frames: a multiple of 2**2


def _tiny(targets: int = 2, **model: Any) -> TfcTdfNet:
    return TfcTdfNet(TINY_AUDIO, {**TINY_MODEL, **model}, targets).eval()


def _listing(path: Path) -> list[tuple[str, str, str]]:
    return [tuple(line.split("\t")) for line in path.read_text().splitlines()[1:]]  # type: ignore[misc]


def _hash_noise(count: int, salt: int) -> Tensor:
    """`count` values in [-1, 1) from a fixed formula (no RNG), so that the original's outputs below stay valid."""
    k = torch.arange(count, dtype=torch.float64)
    return (torch.frac(torch.sin(k * 12.9898 + salt * 78.233).abs() * 43758.5453) * 2 - 1).float()


def formula_state(net: torch.nn.Module) -> dict[str, Tensor]:
    """Weights for every key from `_hash_noise`: norms near identity, convolutions and linears scaled by fan-in."""
    state = {}
    for salt, (key, value) in enumerate(net.state_dict().items()):
        if value.dtype != torch.float32:  # num_batches_tracked
            state[key] = torch.zeros_like(value)
            continue
        noise = _hash_noise(value.numel(), salt).reshape(value.shape)
        if key.endswith("running_var"):
            state[key] = 1 + 0.5 * noise
        elif value.dim() == 1:
            state[key] = (1.0 if key.endswith("weight") else 0.0) + 0.2 * noise
        else:
            state[key] = noise * math.sqrt(3 / value[0].numel())
    return state


def formula_input(batch: int, samples: int) -> Tensor:
    return 0.3 * _hash_noise(batch * 2 * samples, 999).reshape(batch, 2, samples)


# --- the original's layout ------------------------------------------------------------------------------------


def test_every_listing_has_a_config() -> None:
    assert sorted(p.stem for p in LISTINGS.glob("*.tsv")) == sorted(CONFIGS) and len(CONFIGS) == 7


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_layout_is_the_originals(name: str) -> None:
    config = CONFIGS[name]
    with torch.device("meta"):
        net = TfcTdfNet(config["audio"], config["model"], config["targets"])
    ours = [
        (key, "x".join(map(str, v.shape)) if v.dim() else "scalar", str(v.dtype).removeprefix("torch."))
        for key, v in net.state_dict().items()
    ]
    listed = _listing(LISTINGS / f"{name}.tsv")
    assert ours == listed
    state = {key: torch.empty(v.shape, dtype=v.dtype, device="meta") for key, v in net.state_dict().items()}
    net.load_state_dict(state, strict=True, assign=True)  # what a checkpoint with exactly these keys goes through


def test_the_8k_network_is_the_published_size() -> None:
    """MDX23C-8KFFT-InstVoc_HQ: 319 tensors, 111,990,272 numbers."""
    config = CONFIGS["model_2_stem_full_band_8k"]
    with torch.device("meta"):
        net = TfcTdfNet(config["audio"], config["model"], config["targets"])
    state = net.state_dict()
    assert len(state) == 319 and sum(v.numel() for v in state.values()) == 111_990_272


# --- the signal path --------------------------------------------------------------------------------------------


def test_subbands_split_and_merge() -> None:
    spec = torch.randn(2, 4, 12, 5)
    split = split_subbands(spec, 3)
    assert split.shape == (2, 12, 4, 5)
    for row in range(4):
        for band in range(3):
            assert torch.equal(split[:, row * 3 + band], spec[:, row, band * 4 : band * 4 + 4])
    assert torch.equal(merge_subbands(split, 3), spec)


def test_spectrum_rows_are_each_channels_real_then_imaginary_part() -> None:
    net = _tiny()
    x = torch.randn(3, 2, SAMPLES)
    spec = net.spectrum(x)
    assert spec.shape == (3, 4, 128, 16)
    window = torch.hann_window(256, periodic=True)
    for channel in range(2):
        full = torch.stft(x[:, channel], 256, 64, window=window, center=True, return_complex=True)
        assert torch.equal(spec[:, 2 * channel], full.real[:, :128])
        assert torch.equal(spec[:, 2 * channel + 1], full.imag[:, :128])


def _pass_through(net: TfcTdfNet) -> None:
    """Zero weights except the final 1x1 convolutions, set so that target 0 is the input spectrogram and target 1 its
    negative: relu(a) - relu(-a) = a."""
    state = {key: torch.zeros_like(value) for key, value in net.state_dict().items()}
    rows = 2 * net.channels * net.subbands
    first, last = state["final_conv.0.weight"], state["final_conv.2.weight"]
    for row in range(rows):
        first[row, row] = 1  # the mix's bands come first in the final convolution's input
        first[rows + row, row] = -1
        for target, sign in enumerate((1, -1)):
            last[target * rows + row, row] = sign
            last[target * rows + row, rows + row] = -sign
    net.load_state_dict(state, strict=True)


def test_a_network_that_passes_its_input_returns_the_input() -> None:
    """STFT, crop, subbands, their merge, zero padding and inverse STFT: with the network passing the spectrogram
    through, a signal below dim_f comes back where no frame reaches a reflected end."""
    net = _tiny(act="relu")
    _pass_through(net)
    n = torch.arange(SAMPLES, dtype=torch.float64)
    left = torch.cos(2 * math.pi * 5 * n / 256) + 0.5 * torch.cos(2 * math.pi * 90 * n / 256 + 1)
    right = 0.7 * torch.sin(2 * math.pi * 17 * n / 256) - 0.2 * torch.cos(2 * math.pi * 120 * n / 256)
    x = torch.stack([left, right]).float()[None]  # bins 5, 17, 90, 120: both subbands; the crop keeps 0-127
    with torch.inference_mode():
        out = net(x)
    assert out.shape == (1, 2, 2, SAMPLES) and out.dtype == torch.float32
    inner = slice(256, SAMPLES - 256)
    torch.testing.assert_close(out[0, 0, :, inner], x[0, :, inner], atol=2e-6, rtol=0)
    torch.testing.assert_close(out[0, 1, :, inner], -x[0, :, inner], atol=2e-6, rtol=0)


def test_output_keeps_the_target_axis() -> None:
    net = _tiny(targets=1)
    with torch.inference_mode():
        assert net(torch.randn(3, 2, SAMPLES)).shape == (3, 1, 2, SAMPLES)


@pytest.mark.parametrize(
    ("shape", "words"),
    [
        ((1, 2, SAMPLES - 64), "frames a multiple of 4"),  # 15 frames
        ((1, 2, SAMPLES + 1), "hop * (frames - 1)"),
        ((1, 1, SAMPLES), "(batch, 2, samples)"),
        ((2, SAMPLES), "(batch, 2, samples)"),
    ],
)
def test_chunk_lengths_the_network_cannot_take(shape: tuple[int, ...], words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        _tiny()(torch.zeros(shape))


def test_instance_norm_uses_each_chunks_statistics_in_eval() -> None:
    net = _tiny()
    net.load_state_dict(formula_state(net))
    seen = []
    norm = net.encoder_blocks[0].tfc_tdf.blocks[0].tfc1[0]
    norm.weight.data.fill_(1), norm.bias.data.zero_()
    norm.register_forward_hook(lambda module, args, out: seen.append(out))
    x = torch.randn(2, 2, SAMPLES)
    x[1] *= 50  # another level: only per-chunk statistics leave it alone
    with torch.inference_mode():
        both = net(x)
        first, second = net(x[:1]), net(x[1:])
    normed = seen[0]
    torch.testing.assert_close(normed.mean(dim=(2, 3)), torch.zeros(2, 16), atol=1e-5, rtol=0)
    torch.testing.assert_close(normed.var(dim=(2, 3), unbiased=False), torch.ones(2, 16), atol=1e-3, rtol=0)
    for alone, together in zip((first, second), both):  # the same up to rounding: convolutions batch differently
        torch.testing.assert_close(together, alone[0], atol=1e-5 * alone.abs().max().item(), rtol=0)


# --- outputs of the original (MSST's TFC_TDF_net at ccc011a, formula weights and input, torch 2.13 CPU) ----------

ORIGINAL = {  # name: (changes to TINY_MODEL, targets, batch, RMS per (target, channel), {(b, t, c, sample): value})
    "InstanceNorm": (
        {},
        2,
        2,
        [[0.0681883, 0.063148], [0.0542362, 0.0708778]],
        {
            (0, 0, 0, 300): 0.0815621,
            (0, 0, 1, 480): -0.009347851,
            (0, -1, 0, 611): -0.04381241,
            (0, -1, 1, 0): -0.04861896,
            (-1, 0, 1, 959): -0.07094592,
            (-1, -1, 0, 100): -0.04364815,
        },
    ),
    "BatchNorm": (
        {"norm": "BatchNorm", "act": "elu0.5", "num_blocks_per_scale": 2},
        1,
        1,
        [[0.1501523, 0.1134415]],
        {
            (0, 0, 0, 300): 0.2012536,
            (0, 0, 1, 480): -0.00110305,
            (0, -1, 0, 611): -0.1447531,
            (0, -1, 1, 0): -0.0966745,
            (-1, 0, 1, 959): -0.03887361,
            (-1, -1, 0, 100): 0.09573837,
        },
    ),
    "GroupNorm4": (
        {"norm": "GroupNorm4", "act": "relu", "num_subbands": 4, "scale": [4, 2]},
        3,
        1,
        [[0.0626283, 0.0677057], [0.0722222, 0.0704108], [0.0691969, 0.0704284]],
        {
            (0, 0, 0, 300): 0.1327807,
            (0, 0, 1, 480): 0.006253553,
            (0, -1, 0, 611): -0.02835003,
            (0, -1, 1, 0): -0.09184448,
            (-1, 0, 1, 959): -0.02006006,
            (-1, -1, 0, 100): 0.02709407,
        },
    ),
}


@pytest.mark.parametrize("name", sorted(ORIGINAL))
def test_outputs_are_the_originals(name: str) -> None:
    changes, targets, batch, rms, points = ORIGINAL[name]
    net = _tiny(targets, **changes)
    net.load_state_dict(formula_state(net), strict=True)
    with torch.inference_mode():
        out = net(formula_input(batch, SAMPLES))
    assert out.shape == (batch, targets, 2, SAMPLES)
    torch.testing.assert_close(out.pow(2).mean(dim=(0, 3)).sqrt(), torch.tensor(rms), atol=0, rtol=1e-5)
    for point, value in points.items():
        assert out[point].item() == pytest.approx(value, abs=2e-6), point


# --- configs it refuses -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ({"act": "swish"}, "model.act 'swish'"),
        ({"act": "elu"}, "names no alpha"),
        ({"norm": "GroupNormX"}, "names no group count"),
        ({"norm": "GroupNorm3"}, "16 channels do not split"),
        ({"norm": None}, "model.norm must be a name"),
        ({"num_scales": 0}, "model.num_scales must be a positive"),
        ({"scale": [2]}, "model.scale must be two"),
        ({"num_subbands": 3}, "multiple of num_subbands"),
        ({"num_scales": 7}, "multiple of num_subbands"),
    ],
)
def test_configs_it_cannot_build(model: dict[str, Any], words: str) -> None:
    with pytest.raises(ModelError, match=words.replace("[", r"\[").replace("*", r"\*")):
        TfcTdfNet(TINY_AUDIO, {**TINY_MODEL, **model}, 2)


def test_config_keys_that_do_not_change_inference_are_accepted() -> None:
    net = TfcTdfNet({**TINY_AUDIO, "min_mean_abs": 0.001}, {**TINY_MODEL, "name": "epoch_10.ckpt"}, 2)
    assert net.state_dict().keys() == _tiny().state_dict().keys()


def test_missing_config_key_and_bad_target_count() -> None:
    with pytest.raises(ModelError, match="audio.hop_length"):
        TfcTdfNet({k: v for k, v in TINY_AUDIO.items() if k != "hop_length"}, TINY_MODEL, 2)
    with pytest.raises(ModelError, match="number of targets"):
        TfcTdfNet(TINY_AUDIO, TINY_MODEL, 0)


def test_unknown_norm_name_is_no_normalisation() -> None:
    net = _tiny(norm="LayerNorm")
    assert not [key for key in net.state_dict() if ".tfc1.0." in key or ".conv.0." in key]
