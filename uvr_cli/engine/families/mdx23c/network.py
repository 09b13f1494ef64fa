"""The MDX23C network: TFC-TDF v3 (ZFTurbo's `TFC_TDF_net`, Music-Source-Separation-Training, which UVR and
python-audio-separator copy) with its STFT in front and behind, computing what the original computes in eval mode.

A chunk of hop * (frames - 1) samples goes through a centred STFT (periodic Hann of n_fft, reflected ends,
unscaled); each channel gives its real then its imaginary part, cut to the lowest dim_f bins, and each of these
maps is cut along frequency into `num_subbands` bands that become channels of their own. A 1x1 convolution widens
them to num_channels, and a U-Net runs over (time, frequency) maps: `num_scales` levels of TFC-TDF blocks (3x3
convolutions around a bottlenecked linear layer across frequency), strided convolutions of kernel `scale`
(time, frequency) down and transposed ones up, `growth` more channels per level. Its output times the first
convolution's, next to the input bands, gives through two 1x1 convolutions each target's spectrogram (not a mask),
which the inverse STFT, the bins above dim_f at zero, turns back into samples.

The norm is the config's: InstanceNorm (affine; the statistics of each chunk, in eval too), BatchNorm, GroupNorm<N>,
any other name none. Module and attribute names are the original's, so that checkpoints load strictly by key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from uvr_cli.errors import ModelError

Layer = Callable[[int], nn.Module]  # a norm for that many channels
Activation = Callable[[], nn.Module]


def norm_layer(name: object) -> Layer:
    """The config's `model.norm` as the original reads it: 'BatchNorm', 'InstanceNorm', a name holding 'GroupNorm'
    with the group count in the rest ('GroupNorm8'); any other name is no normalisation."""
    if not isinstance(name, str):
        raise ModelError(f"MDX23C config: model.norm must be a name, got {name!r}")
    if name == "BatchNorm":
        return nn.BatchNorm2d
    if name == "InstanceNorm":
        return lambda channels: nn.InstanceNorm2d(channels, affine=True)
    if "GroupNorm" in name:
        try:
            groups = int(name.replace("GroupNorm", ""))
        except ValueError:
            groups = 0
        if groups <= 0:
            raise ModelError(f"MDX23C config: model.norm {name!r} names no group count (GroupNorm<N>)")

        def group_norm(channels: int) -> nn.Module:
            if channels % groups:
                raise ModelError(f"MDX23C config: model.norm {name!r}: {channels} channels do not split into groups")
            return nn.GroupNorm(groups, channels)

        return group_norm
    return lambda channels: nn.Identity()


def activation(name: object) -> Activation:
    """The config's `model.act` as the original reads it: 'gelu' (exact), 'relu', 'elu<alpha>' ('elu1.0')."""
    if name == "gelu":
        return nn.GELU
    if name == "relu":
        return nn.ReLU
    if isinstance(name, str) and name[:3] == "elu":
        try:
            alpha = float(name.replace("elu", ""))
        except ValueError:
            raise ModelError(f"MDX23C config: model.act {name!r} names no alpha (elu<alpha>, e.g. elu1.0)") from None
        return lambda: nn.ELU(alpha)
    raise ModelError(f"MDX23C config: model.act {name!r} is not one the network has (gelu, relu, elu<alpha>)")


def split_subbands(spec: Tensor, count: int) -> Tensor:
    """(batch, rows, bins, frames) -> (batch, rows * count, bins / count, frames): band j of row r (its bins
    j * bins/count onwards) becomes row r * count + j (the original's `cac2cws`)."""
    batch, rows, bins, frames = spec.shape
    return spec.reshape(batch, rows * count, bins // count, frames)


def merge_subbands(spec: Tensor, count: int) -> Tensor:
    """The inverse of `split_subbands` (the original's `cws2cac`)."""
    batch, rows, bins, frames = spec.shape
    return spec.reshape(batch, rows // count, bins * count, frames)


@dataclass(frozen=True)
class Design:
    """What every level shares: TFC-TDF blocks per level, the TDF bottleneck factor, the (time, frequency) factor
    of each level's down- and upscaling, the norm and the activation."""

    blocks: int
    bottleneck: int
    scale: tuple[int, int]
    norm: Layer
    act: Activation


class TfcTdfBlock(nn.Module):
    """3x3 convolution, plus a residual two-layer linear map across frequency (bins -> bins/bottleneck -> bins),
    3x3 convolution, plus a 1x1 shortcut of the input; each layer but the shortcut after a norm and the activation."""

    def __init__(self, in_channels: int, channels: int, bins: int, design: Design) -> None:
        super().__init__()
        norm, act, narrow = design.norm, design.act, bins // design.bottleneck
        self.tfc1 = nn.Sequential(norm(in_channels), act(), nn.Conv2d(in_channels, channels, 3, padding=1, bias=False))
        self.tdf = nn.Sequential(
            norm(channels),
            act(),
            nn.Linear(bins, narrow, bias=False),
            norm(channels),
            act(),
            nn.Linear(narrow, bins, bias=False),
        )
        self.tfc2 = nn.Sequential(norm(channels), act(), nn.Conv2d(channels, channels, 3, padding=1, bias=False))
        self.shortcut = nn.Conv2d(in_channels, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """(batch, in_channels, frames, bins) -> (batch, channels, frames, bins)."""
        skip = self.shortcut(x)
        x = self.tfc1(x)
        x = x + self.tdf(x)
        return self.tfc2(x) + skip


class TfcTdf(nn.Module):
    """The level's TFC-TDF blocks in a row; the first takes `in_channels`, the others `channels`."""

    def __init__(self, in_channels: int, channels: int, bins: int, design: Design) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TfcTdfBlock(channels if i else in_channels, channels, bins, design) for i in range(design.blocks)
        )

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class Rescale(nn.Module):
    """Norm, activation, then `conv`: the strided (or transposed) convolution that takes the map a level down or up."""

    def __init__(self, conv: nn.Module, in_channels: int, design: Design) -> None:
        super().__init__()
        self.conv = nn.Sequential(design.norm(in_channels), design.act(), conv)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class EncoderStage(nn.Module):
    """TFC-TDF blocks at one level, then down a level with `growth` more channels; the blocks' output is the skip."""

    def __init__(self, channels: int, growth: int, bins: int, design: Design) -> None:
        super().__init__()
        self.tfc_tdf = TfcTdf(channels, channels, bins, design)
        down = nn.Conv2d(channels, channels + growth, design.scale, stride=design.scale, bias=False)
        self.downscale = Rescale(down, channels, design)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x -> (the map a level down, the skip)."""
        skip = self.tfc_tdf(x)
        return self.downscale(skip), skip


class DecoderStage(nn.Module):
    """Up a level with `growth` fewer channels, the encoder's skip alongside, then TFC-TDF blocks at that level."""

    def __init__(self, channels: int, growth: int, bins: int, design: Design) -> None:
        super().__init__()
        out_channels = channels - growth
        up = nn.ConvTranspose2d(channels, out_channels, design.scale, stride=design.scale, bias=False)
        self.upscale = Rescale(up, channels, design)
        self.tfc_tdf = TfcTdf(2 * out_channels, out_channels, bins, design)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.tfc_tdf(torch.cat([self.upscale(x), skip], 1))


def _positive(section: Mapping[str, Any], where: str, key: str) -> int:
    """A positive whole number from the config, or a one-line ModelError naming it."""
    value = section.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ModelError(f"MDX23C config: {where}.{key} must be a positive whole number, got {value!r}")
    return value


class TfcTdfNet(nn.Module):
    """MSST's `TFC_TDF_net` from the YAML config's `audio` and `model` sections and the number of targets
    (1 when training.target_instrument is set, else the number of training.instruments)."""

    def __init__(self, audio: Mapping[str, Any], model: Mapping[str, Any], targets: int) -> None:
        super().__init__()
        self.n_fft = _positive(audio, "audio", "n_fft")
        self.hop = _positive(audio, "audio", "hop_length")
        self.dim_f = _positive(audio, "audio", "dim_f")
        self.channels = _positive(audio, "audio", "num_channels")
        self.subbands = _positive(model, "model", "num_subbands")
        levels = _positive(model, "model", "num_scales")
        width = _positive(model, "model", "num_channels")
        growth = _positive(model, "model", "growth")
        scale = model.get("scale")
        if not (isinstance(scale, list | tuple) and len(scale) == 2 and all(type(s) is int and s > 0 for s in scale)):
            raise ModelError(f"MDX23C config: model.scale must be two positive whole numbers, got {scale!r}")
        if isinstance(targets, bool) or not isinstance(targets, int) or targets <= 0:
            raise ModelError(f"MDX23C: the number of targets must be a positive whole number, got {targets!r}")
        multiple = self.subbands * scale[1] ** levels
        if self.dim_f > self.n_fft // 2 + 1 or self.dim_f % multiple:
            raise ModelError(
                f"MDX23C config: audio.dim_f {self.dim_f} must be at most n_fft/2 + 1 and a multiple of "
                f"num_subbands * scale[1]**num_scales = {multiple}"
            )
        design = Design(
            blocks=_positive(model, "model", "num_blocks_per_scale"),
            bottleneck=_positive(model, "model", "bottleneck_factor"),
            scale=(scale[0], scale[1]),
            norm=norm_layer(model.get("norm")),
            act=activation(model.get("act")),
        )
        self.targets = targets
        self.frame_multiple = scale[0] ** levels  # frames per chunk must be a multiple of it, for the skips to fit
        # not a buffer: checkpoints hold no window, and it is made on the CPU whatever the device (as the original)
        self.window = torch.hann_window(self.n_fft, periodic=True, dtype=torch.float32, device="cpu")

        rows = 2 * self.channels * self.subbands  # the original's dim_c
        bins = self.dim_f // self.subbands
        self.first_conv = nn.Conv2d(rows, width, 1, bias=False)
        self.encoder_blocks = nn.ModuleList()
        for _ in range(levels):
            self.encoder_blocks.append(EncoderStage(width, growth, bins, design))
            width, bins = width + growth, bins // scale[1]
        self.bottleneck_block = TfcTdf(width, width, bins, design)
        self.decoder_blocks = nn.ModuleList()
        for _ in range(levels):
            bins = bins * scale[1]
            self.decoder_blocks.append(DecoderStage(width, growth, bins, design))
            width -= growth
        self.final_conv = nn.Sequential(
            nn.Conv2d(width + rows, width, 1, bias=False), design.act(), nn.Conv2d(width, targets * rows, 1, bias=False)
        )

    def spectrum(self, x: Tensor) -> Tensor:
        """(batch, channels, samples) -> (batch, 2 * channels, dim_f, frames): each channel's real then imaginary
        part, the lowest dim_f bins."""
        batch, channels, samples = x.shape
        spec = torch.stft(
            x.reshape(-1, samples),
            self.n_fft,
            self.hop,
            window=self.window.to(x.device),
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        spec = torch.view_as_real(spec).permute(0, 3, 1, 2)  # (batch * channels, re/im, bins, frames)
        return spec.reshape(batch, 2 * channels, spec.shape[-2], spec.shape[-1])[:, :, : self.dim_f]

    def waveform(self, spec: Tensor) -> Tensor:
        """(batch, targets, 2 * channels, dim_f, frames) -> (batch, targets, channels, hop * (frames - 1)), the bins
        above dim_f zero. In float32 whatever autocast made of the spectrogram, as the original's float32 padding
        promotes it."""
        *lead, rows, dim_f, frames = spec.shape
        spec = spec.float()
        full = torch.cat([spec, spec.new_zeros(*lead, rows, self.n_fft // 2 + 1 - dim_f, frames)], dim=-2)
        full = full.reshape(-1, 2, full.shape[-2], frames)
        complex_spec = torch.complex(full[:, 0], full[:, 1])
        wave = torch.istft(complex_spec, self.n_fft, self.hop, window=self.window.to(spec.device), center=True)
        return wave.reshape(*lead, rows // 2, wave.shape[-1])

    def check_input(self, x: Tensor) -> None:
        """A ValueError unless x is (batch, channels, hop * (frames - 1)) with frames a multiple of `frame_multiple`
        (the original fails in the skips' concatenation, or returns another length, otherwise)."""
        if x.dim() != 3 or x.shape[1] != self.channels:
            raise ValueError(f"MDX23C input must be (batch, {self.channels}, samples), got {tuple(x.shape)}")
        samples = x.shape[-1]
        if samples % self.hop or (samples // self.hop + 1) % self.frame_multiple:
            raise ValueError(
                f"MDX23C chunk of {samples} samples: it must be hop * (frames - 1) samples (hop {self.hop}) with "
                f"frames a multiple of {self.frame_multiple}"
            )

    def forward(self, x: Tensor) -> Tensor:
        """(batch, channels, samples) -> (batch, targets, channels, samples); see `check_input` for the length."""
        self.check_input(x)
        mix = split_subbands(self.spectrum(x), self.subbands)
        first = self.first_conv(mix)
        h = first.transpose(-1, -2)  # (batch, width, frames, bins): the TDF layers act on frequency
        skips = []
        for stage in self.encoder_blocks:
            h, skip = stage(h)
            skips.append(skip)
        h = self.bottleneck_block(h)
        for stage in self.decoder_blocks:
            h = stage(h, skips.pop())
        h = h.transpose(-1, -2) * first  # the original's "reduce artifacts"
        out = merge_subbands(self.final_conv(torch.cat([mix, h], 1)), self.subbands)
        batch, rows, dim_f, frames = out.shape
        return self.waveform(out.reshape(batch, self.targets, rows // self.targets, dim_f, frames))
