"""The UVR5 "VR architecture" mask networks, one parametrised implementation per family.

Two families exist (vr-reference.md §1-§2):

* ``CascadedASPPNet`` (v4/v5, tsurumeso v4.0.0): every UVR "HP"/"SP" size class is the same code with
  another channel width, ASPP branch count and, for the GUI's 129605 variant, a fifth encoder level.
  Those choices are the data in :class:`AsppNetSpec`.
* ``CascadedNet`` ("VR 5.1", tsurumeso v5): capacities ``nout``/``nout_lstm``, with the LSTM input size
  tying the weights to one band count; see :class:`CascadedNetSpec`.

Module and attribute names mirror the original layout so that ``state_dict`` keys are exactly those of
real UVR5 ``.pth`` files and ``load_state_dict(strict=True)`` works on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from uvr_cli.engine.families.vr.layers import (
    ASPPModuleV4,
    ASPPModuleV51,
    Conv2DBNActiv,
    DecoderV4,
    DecoderV51,
    EncoderV4,
    EncoderV51,
    LSTMModule,
    thread_invariant,
)
from uvr_cli.errors import ModelError


@dataclass(frozen=True)
class Aggressiveness:
    """RVC's aggressiveness: mask exponent ``1+value/3`` below ``split_bin`` and ``1+value`` from it up."""

    value: float
    split_bin: int

    def __post_init__(self) -> None:
        if self.split_bin < 0:
            raise ValueError(f"split_bin must be >= 0, got {self.split_bin}")


@dataclass(frozen=True)
class AsppNetSpec:
    """Capacity of a CascadedASPPNet: base width ``ch`` (16/32/64), ASPP ``branches`` (5-7), and ``enc5``."""

    ch: int
    branches: int
    enc5: bool = False

    def __post_init__(self) -> None:
        if self.ch <= 0 or self.ch % 2:
            raise ValueError(f"ch must be a positive even number, got {self.ch}")
        if self.branches not in (5, 6, 7):
            raise ValueError(f"branches must be 5, 6 or 7, got {self.branches}")


@dataclass(frozen=True)
class CascadedNetSpec:
    """Capacity of a v5.1 CascadedNet; ``bins`` is the band count the LSTM weights fix (None: not known yet)."""

    nout: int
    nout_lstm: int = 128
    bins: int | None = None

    def __post_init__(self) -> None:
        if self.nout <= 0 or self.nout % 4:
            raise ValueError(f"nout must be a positive multiple of 4, got {self.nout}")
        if self.nout_lstm <= 0 or self.nout_lstm % 4:
            raise ValueError(f"nout_lstm must be a positive multiple of 4, got {self.nout_lstm}")


NetworkSpec = AsppNetSpec | CascadedNetSpec


# --- building blocks shared by both families -------------------------------------------------------


class BaseASPPNet(nn.Module):
    """U-Net with 4 (5 with ``enc5``) stride-2 levels and an ASPP bottleneck; ``ch`` output channels."""

    def __init__(
        self,
        nin: int,
        ch: int,
        dilations: tuple[int, int, int] = (4, 8, 16),
        enc5: bool = False,
        branches: int = 5,
    ) -> None:
        super().__init__()
        self.enc1 = EncoderV4(nin, ch)
        self.enc2 = EncoderV4(ch, ch * 2)
        self.enc3 = EncoderV4(ch * 2, ch * 4)
        self.enc4 = EncoderV4(ch * 4, ch * 8)
        self.has_enc5 = enc5
        if enc5:
            self.enc5 = EncoderV4(ch * 8, ch * 16)
            self.aspp = ASPPModuleV4(ch * 16, ch * 32, dilations, branches)
            self.dec5 = DecoderV4(ch * (16 + 32), ch * 16)
        else:
            self.aspp = ASPPModuleV4(ch * 8, ch * 16, dilations, branches)
        self.dec4 = DecoderV4(ch * (8 + 16), ch * 8)
        self.dec3 = DecoderV4(ch * (4 + 8), ch * 4)
        self.dec2 = DecoderV4(ch * (2 + 4), ch * 2)
        self.dec1 = DecoderV4(ch * (1 + 2), ch)

    def forward(self, x: Tensor) -> Tensor:
        h, e1 = self.enc1(x)
        h, e2 = self.enc2(h)
        h, e3 = self.enc3(h)
        h, e4 = self.enc4(h)
        if self.has_enc5:
            h, e5 = self.enc5(h)
            h = self.dec5(self.aspp(h), e5)
        else:
            h = self.aspp(h)
        h = self.dec4(h, e4)
        del e4  # each skip is dropped once used: the last decoder then runs beside only its own
        h = self.dec3(h, e3)
        del e3
        h = self.dec2(h, e2)
        del e2
        return self.dec1(h, e1)


# --- v5.1 CascadedNet family (lib_v5/layers_new.py, nets_new.py) ------------------------------------


class BaseNet(nn.Module):
    """v5.1 U-Net: stride-1 stem, 4 stride-2 encoders (widths n, 2n, 4n, 6n, 8n), ASPP, LSTM before dec1."""

    def __init__(
        self,
        nin: int,
        nout: int,
        nin_lstm: int,
        nout_lstm: int,
        dilations: tuple[tuple[int, int], ...] = ((4, 2), (8, 4), (12, 6)),
    ) -> None:
        super().__init__()
        self.enc1 = Conv2DBNActiv(nin, nout, 3, 1, 1)
        self.enc2 = EncoderV51(nout, nout * 2)
        self.enc3 = EncoderV51(nout * 2, nout * 4)
        self.enc4 = EncoderV51(nout * 4, nout * 6)
        self.enc5 = EncoderV51(nout * 6, nout * 8)
        self.aspp = ASPPModuleV51(nout * 8, nout * 8, dilations, dropout=True)
        self.dec4 = DecoderV51(nout * (6 + 8), nout * 6)
        self.dec3 = DecoderV51(nout * (4 + 6), nout * 4)
        self.dec2 = DecoderV51(nout * (2 + 4), nout * 2)
        self.lstm_dec2 = LSTMModule(nout * 2, nin_lstm, nout_lstm)
        self.dec1 = DecoderV51(nout * (1 + 2) + 1, nout)

    def forward(self, x: Tensor) -> Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        e4 = self.enc4(e3)
        h = self.aspp(self.enc5(e4))
        h = self.dec4(h, e4)
        del e4  # each skip is dropped once used
        h = self.dec3(h, e3)
        del e3
        h = self.dec2(h, e2)
        del e2
        h = torch.cat([h, self.lstm_dec2(h)], dim=1)
        return self.dec1(h, e1)


# --- the cascades and their common inference interface ----------------------------------------------


class MaskNetwork(nn.Module):
    """What every cascade offers: ``offset``, ``forward``, ``predict`` and ``predict_mask``.

    Input ``x`` is a normalised magnitude spectrogram ``(N, 2, bins+1, T)``; ``T`` must be a multiple of
    ``2**depth`` (the number of stride-2 levels) as in the reference, which would fail on a crop otherwise.
    """

    offset: int
    depth: int

    def __init__(self, n_fft: int) -> None:
        super().__init__()
        self.max_bin = n_fft // 2
        self.output_bin = self.max_bin + 1

    def _masks(self, x: Tensor, with_aux: bool) -> list[Tensor]:
        """Sigmoid masks over ``max_bin`` rows: the final one first, then the auxiliary ones if asked."""
        raise NotImplementedError

    def _adjust(self, mask: Tensor, aggressiveness: Aggressiveness | None) -> Tensor:
        """Hook for aggressiveness in eval mode; the default (v5.1, RVC semantics) ignores it."""
        return mask

    def _padded_masks(self, x: Tensor, with_aux: bool) -> list[Tensor]:
        if x.dim() != 4 or x.size(1) != 2 or x.size(2) != self.output_bin:
            raise ValueError(f"expected input of shape (N, 2, {self.output_bin}, T), got {tuple(x.shape)}")
        if x.size(3) % 2**self.depth:
            raise ValueError(f"the number of frames ({x.size(3)}) must be a multiple of {2**self.depth}")
        # Replicate padding copies row bins-1 into the top row bins (the network never sees that row).
        return [F.pad(m, (0, 0, 0, self.output_bin - m.size(2)), mode="replicate") for m in self._masks(x, with_aux)]

    def _eval_mask(self, x: Tensor, aggressiveness: Aggressiveness | None) -> Tensor:
        return self._adjust(self._padded_masks(x, with_aux=False)[0], aggressiveness)

    def _trim(self, t: Tensor) -> Tensor:
        if t.size(3) <= 2 * self.offset:
            raise ValueError(f"need more than {2 * self.offset} frames to trim the offset, got {t.size(3)}")
        return t[:, :, :, self.offset : -self.offset]

    def forward(self, x: Tensor, aggressiveness: Aggressiveness | None = None) -> Tensor | tuple[Tensor, ...]:
        """Masked magnitudes: ``mask * x`` in eval mode, ``(mask * x, *aux_masks * x)`` in training mode.

        Aggressiveness is applied only in eval mode and only by the ASPP family.
        """
        mix = x.detach()
        if self.training:
            return tuple(m * mix for m in self._padded_masks(x, with_aux=True))
        return self._eval_mask(x, aggressiveness) * mix

    def predict_mask(self, x: Tensor, aggressiveness: Aggressiveness | None = None) -> Tensor:
        """The (aggressiveness-adjusted) mask with ``offset`` frames trimmed from each side."""
        return self._trim(self._eval_mask(x, aggressiveness))

    def predict(self, x: Tensor, aggressiveness: Aggressiveness | None = None) -> Tensor:
        """The reference ``predict``: ``mask * x`` trimmed, equal to ``predict_mask(x) * x[..., off:-off]``."""
        return self.predict_mask(x, aggressiveness) * self._trim(x)


class CascadedASPPNet(MaskNetwork):
    """The three-stage v4/v5 network (lib_v5 nets*.py), offset 128, RVC's in-network aggressiveness."""

    offset = 128

    def __init__(self, n_fft: int, spec: AsppNetSpec) -> None:
        super().__init__(n_fft)
        ch, enc5, branches = spec.ch, spec.enc5, spec.branches
        self.depth = 5 if enc5 else 4
        self.stg1_low_band_net = BaseASPPNet(2, ch, enc5=enc5, branches=branches)
        self.stg1_high_band_net = BaseASPPNet(2, ch, enc5=enc5, branches=branches)
        self.stg2_bridge = Conv2DBNActiv(ch + 2, ch // 2, 1, 1, 0)
        self.stg2_full_band_net = BaseASPPNet(ch // 2, ch, enc5=enc5, branches=branches)
        self.stg3_bridge = Conv2DBNActiv(ch * 2 + 2, ch, 1, 1, 0)
        self.stg3_full_band_net = BaseASPPNet(ch, ch * 2, enc5=enc5, branches=branches)
        self.out = nn.Conv2d(ch * 2, 2, 1, bias=False)
        self.aux1_out = nn.Conv2d(ch, 2, 1, bias=False)
        self.aux2_out = nn.Conv2d(ch, 2, 1, bias=False)

    def _masks(self, x: Tensor, with_aux: bool) -> list[Tensor]:
        x = x[:, :, : self.max_bin]
        bandw = x.size(2) // 2
        aux1 = torch.cat([self.stg1_low_band_net(x[:, :, :bandw]), self.stg1_high_band_net(x[:, :, bandw:])], dim=2)
        aux2 = self.stg2_full_band_net(self.stg2_bridge(x, aux1))
        h = self.stg3_bridge(x, aux1, aux2)
        aux = [torch.sigmoid(self.aux1_out(aux1)), torch.sigmoid(self.aux2_out(aux2))] if with_aux else []
        del aux1, aux2  # full-resolution maps: not held through the last stage (~90 MB per ch32 window)
        return [thread_invariant(torch.sigmoid, self.out(self.stg3_full_band_net(h))), *aux]

    def _adjust(self, mask: Tensor, aggressiveness: Aggressiveness | None) -> Tensor:
        if aggressiveness is None:
            return mask
        split, value = aggressiveness.split_bin, aggressiveness.value
        low = thread_invariant(lambda m: torch.pow(m, 1 + value / 3), mask[:, :, :split])
        high = thread_invariant(lambda m: torch.pow(m, 1 + value), mask[:, :, split:])
        return torch.cat([low, high], dim=2)


class CascadedNet(MaskNetwork):
    """The v5.1 network (nets_new.py): half-band stages 1-2 with LSTMs, offset 64, no aggressiveness."""

    offset = 64
    depth = 4

    def __init__(self, n_fft: int, nout: int = 32, nout_lstm: int = 128) -> None:
        super().__init__(n_fft)
        nin_lstm = self.max_bin // 2
        self.stg1_low_band_net = nn.Sequential(
            BaseNet(2, nout // 2, nin_lstm // 2, nout_lstm), Conv2DBNActiv(nout // 2, nout // 4, 1, 1, 0)
        )
        self.stg1_high_band_net = BaseNet(2, nout // 4, nin_lstm // 2, nout_lstm // 2)
        self.stg2_low_band_net = nn.Sequential(
            BaseNet(nout // 4 + 2, nout, nin_lstm // 2, nout_lstm), Conv2DBNActiv(nout, nout // 2, 1, 1, 0)
        )
        self.stg2_high_band_net = BaseNet(nout // 4 + 2, nout // 2, nin_lstm // 2, nout_lstm // 2)
        self.stg3_full_band_net = BaseNet(3 * nout // 4 + 2, nout, nin_lstm, nout_lstm)
        self.out = nn.Conv2d(nout, 2, 1, bias=False)
        self.aux_out = nn.Conv2d(3 * nout // 4, 2, 1, bias=False)

    def _masks(self, x: Tensor, with_aux: bool) -> list[Tensor]:
        x = x[:, :, : self.max_bin]
        bandw = x.size(2) // 2
        l1_in, h1_in = x[:, :, :bandw], x[:, :, bandw:]
        l1 = self.stg1_low_band_net(l1_in)
        h1 = self.stg1_high_band_net(h1_in)
        aux1 = torch.cat([l1, h1], dim=2)
        l2 = self.stg2_low_band_net(torch.cat([l1_in, l1], dim=1))
        h2 = self.stg2_high_band_net(torch.cat([h1_in, h1], dim=1))
        aux2 = torch.cat([l2, h2], dim=2)
        del l1, h1, l2, h2
        f3_in = torch.cat([x, aux1, aux2], dim=1)
        aux = [torch.sigmoid(self.aux_out(torch.cat([aux1, aux2], dim=1)))] if with_aux else []
        del aux1, aux2  # not held through the last stage
        return [thread_invariant(torch.sigmoid, self.out(self.stg3_full_band_net(f3_in))), *aux]


def build_network(spec: NetworkSpec, bins: int) -> MaskNetwork:
    """Build the network for ``spec`` on a band preset of ``bins`` bins (n_fft = 2*bins), in training mode.

    Raises ModelError when ``bins`` cannot run this network: each half band must halve evenly through
    every stride-2 level, and a CascadedNet's LSTM weights fix ``bins``.
    """
    if isinstance(spec, AsppNetSpec):
        depth = 5 if spec.enc5 else 4
    elif isinstance(spec, CascadedNetSpec):
        depth = 4
        if spec.bins is not None and spec.bins != bins:
            raise ModelError(f"these CascadedNet weights are for {spec.bins} frequency bins, not {bins}")
    else:
        raise TypeError(f"not a network spec: {spec!r}")
    step = 2 ** (depth + 1)
    if bins <= 0 or bins % step:
        raise ModelError(f"{bins} frequency bins cannot run this network: bins must be a multiple of {step}")
    if isinstance(spec, AsppNetSpec):
        return CascadedASPPNet(2 * bins, spec)
    return CascadedNet(2 * bins, spec.nout, spec.nout_lstm)
