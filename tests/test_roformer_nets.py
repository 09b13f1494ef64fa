"""The RoFormer networks: MSST's state-dict layouts key for key, the building blocks against their formulas, the mel
bands against librosa, and the signal path (band order, mask averaging, DC, lengths) on tiny networks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from uvr_cli.engine.families.roformer.bs_roformer import BSRoformer
from uvr_cli.engine.families.roformer.layers import (
    Attention,
    BandRoformer,
    LinearAttention,
    RMSNorm,
    RotaryEmbedding,
    mask_mlp,
)
from uvr_cli.engine.families.roformer.mel_band_roformer import MelBandRoformer
from uvr_cli.engine.families.roformer.mel_bands import mel_band_bins
from uvr_cli.engine.mel import mel_filter_bank
from uvr_cli.errors import ModelError

LISTINGS = sorted((Path(__file__).parent / "data" / "roformer-statedicts").glob("*.tsv"))
NETWORKS: dict[str, type[BandRoformer]] = {"BSRoformer": BSRoformer, "MelBandRoformer": MelBandRoformer}

# The Mel-Band RoFormer bands of sr 44100, n_fft 2048, 60 bands (MSST with librosa 0.11): bins per band
KJ_BAND_BINS = [
    7, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 9, 9, 9, 10, 10, 11, 13, 13, 13, 15, 16, 17,
    19, 20, 20, 22, 24, 26, 28, 29, 31, 33, 36, 39, 41, 44, 47, 50, 54, 57, 61, 66, 71, 76, 80, 86, 93, 99, 105, 113,
    122, 130,
]  # fmt: skip

TINY_BANDS = (4,) * 8 + (8,) * 8 + (33,)  # 129 bins of n_fft 256
TINY_BS = dict(
    dim=16, depth=2, stereo=True, time_transformer_depth=1, freq_transformer_depth=1, freqs_per_bands=TINY_BANDS,
    dim_head=8, heads=2, stft_n_fft=256, stft_hop_length=64, stft_win_length=256,
)  # fmt: skip
TINY_MEL = dict(
    dim=16, depth=1, stereo=True, time_transformer_depth=1, freq_transformer_depth=1, num_bands=60, dim_head=8,
    heads=2, sample_rate=44100, stft_n_fft=2048, stft_hop_length=441, stft_win_length=2048,
)  # fmt: skip


def _listing(path: Path) -> tuple[str, dict, dict[str, tuple[tuple[int, ...], str]]]:
    """(class name, config, {key: (shape, dtype)}) of a listing file."""
    lines = path.read_text().splitlines()
    model = json.loads(next(line for line in lines if line.startswith("# model: ")).removeprefix("# model: "))
    rows = [line.split("\t") for line in lines if not line.startswith("#")][1:]
    tensors = {key: (tuple(int(n) for n in shape.split("x")), dtype) for key, shape, dtype in rows}
    return model["class"], model["config"], tensors


def _layout(network: torch.nn.Module) -> dict[str, tuple[tuple[int, ...], str]]:
    return {
        key: (tuple(value.shape), str(value.dtype).removeprefix("torch."))
        for key, value in network.state_dict().items()
    }


def _randomise(network: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in network.named_parameters():
            if not name.endswith("freqs"):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3 + (1 if name.endswith("gamma") else 0))
    return network.eval()


def _all_pass(network: BandRoformer) -> BandRoformer:
    """Weights whose masks are exactly 1 + 0j: each band MLP's last Linear outputs a constant (real 1, imaginary 0)
    and a GLU gate of sigmoid(40), which is 1.0 in float32."""
    with torch.no_grad():
        for estimator in network.mask_estimators:
            for mlp in estimator.to_freqs:  # type: ignore[union-attr]
                last = mlp[0][-1]
                width = last.out_features // 2
                last.weight.zero_()
                last.bias.copy_(torch.cat([torch.tensor([1.0, 0.0]).repeat(width // 2), torch.full((width,), 40.0)]))
    return network.eval()


def _noise(*shape: int, seed: int = 1) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 0.3


# --- state-dict layouts -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("listing", LISTINGS, ids=lambda path: path.stem)
def test_state_dict_is_msst_key_for_key(listing: Path) -> None:
    """Built from the same config (training-only keys included), the network has exactly MSST's tensors."""
    name, config, tensors = _listing(listing)
    with torch.device("meta"):
        network = NETWORKS[name](**config)
    assert _layout(network) == tensors


def test_the_listings_cover_both_networks_and_their_variants() -> None:
    names = {path.stem for path in LISTINGS}
    assert {"bs_roformer_viperx_317", "mel_band_roformer_kj"} <= names and len(names) == 8


def test_shared_bias_adds_one_bias_pair_shared_by_every_softmax_attention() -> None:
    _, config, tensors = _listing(next(path for path in LISTINGS if path.stem == "bs_roformer_317_depth2_linear1"))
    with torch.device("meta"):
        network = BSRoformer(**{**config, "use_shared_bias": True})
    layout = _layout(network)
    inner = config["heads"] * config["dim_head"]
    attentions = {key.removesuffix(".to_qkv.weight") for key in tensors if key.endswith(".0.to_qkv.weight")}
    expected = dict(tensors, linear_62_bias_0=((3 * inner,), "float32"), linear_64_bias_0=((config["dim"],), "float32"))
    for prefix in attentions:
        expected[f"{prefix}.to_qkv.bias"] = ((3 * inner,), "float32")
        expected[f"{prefix}.to_out.0.bias"] = ((config["dim"],), "float32")
    assert layout == expected
    assert len(attentions) == 2 * 2  # time and band attentions of 2 blocks; linear attentions get no bias
    first = network.layers[0][1].layers[0][0]  # type: ignore[index]
    assert first.to_qkv.bias is network.linear_62_bias_0 and first.to_out[0].bias is network.linear_64_bias_0


def test_rotary_frequencies_are_one_module_per_axis() -> None:
    network = BSRoformer(**TINY_BS)
    blocks = network.layers
    assert blocks[0][0].layers[0][0].rotary_embed is blocks[1][0].layers[0][0].rotary_embed  # type: ignore[index]
    assert blocks[0][0].layers[0][0].rotary_embed is not blocks[0][1].layers[0][0].rotary_embed  # type: ignore[index]


def test_training_only_settings_are_accepted_and_unknown_ones_named() -> None:
    training = dict(attn_dropout=0.1, ff_dropout=0.1, flash_attn=False, sage_attention=True, dim_freqs_in=1025)
    BSRoformer(**TINY_BS, **training, use_torch_checkpoint=True, multi_stft_hop_size=147)
    with pytest.raises(ModelError, match="unknown model setting rotary_dim") as info:
        MelBandRoformer(**TINY_MEL, rotary_dim=32)
    assert "\n" not in str(info.value)
    with pytest.raises(ModelError, match="use_pope"):
        BSRoformer(**TINY_BS, use_pope=True)
    with pytest.raises(ModelError, match="129 bins"):
        BSRoformer(**{**TINY_BS, "freqs_per_bands": (64, 64)})


# --- building blocks against their formulas -----------------------------------------------------------------------


def test_rms_norm_divides_by_the_root_mean_square() -> None:
    norm = _randomise(RMSNorm(8))
    x = _noise(3, 8)
    expected = x / x.pow(2).mean(-1, keepdim=True).sqrt() * norm.gamma
    torch.testing.assert_close(norm(x), expected)


def test_rotary_turns_interleaved_pairs_by_position_times_frequency() -> None:
    rotary = RotaryEmbedding(8)
    torch.testing.assert_close(rotary.freqs, torch.tensor([10000.0 ** (-i / 8) for i in (0, 2, 4, 6)]))
    t = _noise(1, 2, 5, 8).double()
    out = rotary(t)
    for p in range(5):
        for i in range(4):
            angle = p * rotary.freqs[i].item()
            cos, sin = math.cos(angle), math.sin(angle)
            even, odd = t[..., p, 2 * i], t[..., p, 2 * i + 1]
            torch.testing.assert_close(out[..., p, 2 * i], even * cos - odd * sin, atol=1e-6, rtol=1e-6)
            torch.testing.assert_close(out[..., p, 2 * i + 1], odd * cos + even * sin, atol=1e-6, rtol=1e-6)
    assert out.dtype == torch.float64


def test_rotary_is_rotary_embedding_torchs_formula_to_the_bit() -> None:
    """t cos + rotate_half(t) sin as the package writes it (uvr computes it with fewer temporaries)."""
    rotary = RotaryEmbedding(8)
    t = _noise(2, 3, 7, 8)
    angles = (torch.arange(7.0)[:, None] * rotary.freqs).repeat_interleave(2, dim=-1)
    first, second = t.unflatten(-1, (-1, 2)).unbind(-1)
    rotate_half = torch.stack((-second, first), dim=-1).flatten(-2)
    assert torch.equal(rotary(t), t * angles.cos() + rotate_half * angles.sin())


def test_mask_mlp_layers_and_glu() -> None:
    """BS-RoFormer's depth 2 is one hidden layer: Linear, Tanh, Linear, then value * sigmoid(gate)."""
    mlp = _randomise(mask_mlp(dim=4, width=3, hidden=16, hidden_layers=1))
    assert [type(layer).__name__ for layer in mlp[0]] == ["Linear", "Tanh", "Linear"]
    x = _noise(2, 4)
    hidden = torch.tanh(x @ mlp[0][0].weight.T + mlp[0][0].bias) @ mlp[0][2].weight.T + mlp[0][2].bias
    torch.testing.assert_close(mlp(x), hidden[:, :3] * torch.sigmoid(hidden[:, 3:]))


def test_attention_is_gated_softmax_attention_over_rotated_queries_and_keys() -> None:
    rotary = RotaryEmbedding(4)
    attention = _randomise(Attention(dim=6, heads=2, dim_head=4, rotary_embed=rotary, shared_biases=None))
    x = _noise(1, 5, 6)
    xn = attention.norm(x)
    q, k, v = (xn @ attention.to_qkv.weight.T).split(8, dim=-1)
    heads = [slice(0, 4), slice(4, 8)]
    outs = []
    for h, cols in enumerate(heads):
        qh, kh = rotary(q[..., cols]), rotary(k[..., cols])
        weights = torch.softmax(qh @ kh.transpose(-1, -2) / 2.0, dim=-1)
        gate = torch.sigmoid(xn @ attention.to_gates.weight[h] + attention.to_gates.bias[h])
        outs.append((weights @ v[..., cols]) * gate[..., None])
    torch.testing.assert_close(attention(x), torch.cat(outs, dim=-1) @ attention.to_out[0].weight.T)


def test_linear_attention_attends_between_features() -> None:
    attention = _randomise(LinearAttention(dim=6, heads=2, dim_head=4))
    x = _noise(1, 7, 6)
    xn = attention.norm(x)
    q, k, v = (xn @ attention.to_qkv[0].weight.T).split(8, dim=-1)
    outs = []
    for h, cols in enumerate([slice(0, 4), slice(4, 8)]):
        qh = F.normalize(q[..., cols], dim=-2) * attention.temperature[h].exp()  # unit length over positions
        kh = F.normalize(k[..., cols], dim=-2)
        weights = torch.softmax(qh.transpose(-1, -2) @ kh * 8.0, dim=-1)  # (features, features)
        outs.append((weights @ v[..., cols].transpose(-1, -2)).transpose(-1, -2))
    torch.testing.assert_close(attention(x), torch.cat(outs, dim=-1) @ attention.to_out[1].weight.T)


# --- mel bands ----------------------------------------------------------------------------------------------------


def test_mel_bands_of_the_common_models() -> None:
    member = mel_band_bins(44100, 2048, 60)
    assert member.sum(axis=1).tolist() == KJ_BAND_BINS
    first, last = np.argmax(member, axis=1), member.shape[1] - 1 - np.argmax(member[:, ::-1], axis=1)
    assert (last - first + 1).tolist() == KJ_BAND_BINS  # each band is one run of bins
    assert first[0] == 0 and last[-1] == 1024 and (first[1:] <= last[:-1]).all()  # neighbours overlap
    assert (member.sum(axis=0) == 1).sum() == 71 and (member.sum(axis=0) == 2).sum() == 954


@pytest.mark.parametrize(
    ("sample_rate", "n_fft", "bands"),
    [(44100, 2048, 60), (48000, 2048, 60), (44100, 4096, 64), (44100, 1024, 40), (22050, 512, 32), (32000, 2048, 96)],
)
def test_mel_filter_bank_is_librosas(sample_rate: int, n_fft: int, bands: int) -> None:
    librosa = pytest.importorskip("librosa")
    expected = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=bands)
    assert np.array_equal(mel_filter_bank(sample_rate, n_fft, bands), expected)


def test_a_bin_in_no_band_is_a_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slaney triangles leave no gaps, so only a broken filter bank gets here (MSST asserts the same)."""
    gapped = mel_filter_bank(44100, 2048, 60)
    gapped[:, 500] = 0
    monkeypatch.setattr("uvr_cli.engine.families.roformer.mel_bands.mel_filter_bank", lambda *_: gapped)
    with pytest.raises(ModelError, match="uncovered"):
        MelBandRoformer(**TINY_MEL)


# --- the signal path -----------------------------------------------------------------------------------------------


def _band_split_input(network: BandRoformer, raw: Tensor) -> Tensor:
    seen: list[Tensor] = []
    handle = network.band_split.register_forward_pre_hook(lambda _module, args: seen.append(args[0]))
    with torch.inference_mode():
        network(raw)
    handle.remove()
    return seen[0]


def test_band_split_sees_bins_then_channels_then_real_and_imaginary() -> None:
    network = _randomise(BSRoformer(**TINY_BS))
    raw = _noise(2, 2, 1000)
    spec = torch.stft(raw.reshape(4, -1), 256, 64, window=torch.hann_window(256), return_complex=True)
    spec = torch.view_as_real(spec).reshape(2, 2, 129, -1, 2)  # (batch, channel, bin, frame, re/im)
    expected = spec.permute(0, 3, 2, 1, 4).reshape(2, spec.shape[3], -1)  # frame vectors ordered (bin, channel, re/im)
    torch.testing.assert_close(_band_split_input(network, raw), expected)


def test_mel_bands_gather_each_bands_bins_with_both_channels() -> None:
    network = _randomise(MelBandRoformer(**TINY_MEL))
    member = mel_band_bins(44100, 2048, 60)
    rows = [2 * f + c for band in member for f in np.flatnonzero(band) for c in (0, 1)]
    assert network.freq_indices.tolist() == rows
    raw = _noise(1, 2, 4410)
    spec = torch.view_as_real(torch.stft(raw[0], 2048, 441, window=torch.hann_window(2048), return_complex=True))
    by_row = spec.permute(1, 0, 2, 3).reshape(1025 * 2, -1, 2)  # row 2f + c
    expected = by_row[rows].permute(1, 0, 2).reshape(1, spec.shape[2], -1)
    torch.testing.assert_close(_band_split_input(network, raw), expected)


def test_mel_masks_of_a_bin_in_two_bands_are_averaged() -> None:
    network = MelBandRoformer(**TINY_MEL)
    rows = network.freq_indices.tolist()
    masks = torch.complex(_noise(1, 2, len(rows), 3, seed=2), _noise(1, 2, len(rows), 3, seed=3))
    out = network.row_masks(masks)
    for row in (0, 1, 20, 21, 2049):
        where = [i for i, r in enumerate(rows) if r == row]
        torch.testing.assert_close(out[:, :, row], masks[:, :, where].mean(dim=2))
    assert sorted(set(rows)) == list(range(2050))


@pytest.mark.parametrize("stereo", [True, False])
def test_all_pass_masks_give_the_input_back(stereo: bool) -> None:
    channels = 2 if stereo else 1
    raw = _noise(2, channels, 3000)
    bs = _all_pass(_randomise(BSRoformer(**{**TINY_BS, "stereo": stereo, "zero_dc": False, "num_stems": 2})))
    with torch.inference_mode():
        out = bs(raw)
    assert out.shape == (2, 2, channels, 3000)
    torch.testing.assert_close(out, raw[:, None].expand_as(out), atol=1e-5, rtol=0)
    mel = _all_pass(_randomise(MelBandRoformer(**{**TINY_MEL, "stereo": stereo, "zero_dc": False})))
    raw = _noise(1, channels, 5000)
    with torch.inference_mode():
        out = mel(raw)
    assert out.shape == (1, 1, channels, 441 * (5000 // 441))
    torch.testing.assert_close(out[:, 0], raw[..., : out.shape[-1]], atol=1e-5, rtol=0)


def test_zero_dc_removes_the_dc_bin_of_every_frame() -> None:
    raw = _noise(1, 2, 3000) + 0.5
    network = _all_pass(_randomise(BSRoformer(**TINY_BS)))  # zero_dc is MSST's default
    with torch.inference_mode():
        out = network(raw)
    window = torch.hann_window(256)
    spec = torch.stft(raw[0], 256, 64, window=window, return_complex=True)
    spec[:, 0] = 0
    torch.testing.assert_close(out[0, 0], torch.istft(spec, 256, 64, window=window, length=3000), atol=1e-5, rtol=0)


def test_output_lengths() -> None:
    """BS-RoFormer keeps the input's length; Mel-Band RoFormer ends at the last whole hop unless told otherwise."""
    mel = _randomise(MelBandRoformer(**{**TINY_MEL, "num_stems": 2}))
    matched = _randomise(MelBandRoformer(**{**TINY_MEL, "match_input_audio_length": True}))
    raw = _noise(1, 2, 2000)
    with torch.inference_mode():
        assert mel(raw).shape == (1, 2, 2, 441 * 4)
        assert matched(raw).shape == (1, 1, 2, 2000)
        assert _randomise(BSRoformer(**TINY_BS))(raw[..., :1999]).shape == (1, 1, 2, 1999)
    with pytest.raises(ValueError, match="2 channel"):
        mel(raw[:, :1])
