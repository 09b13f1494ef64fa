"""The building blocks of the VR networks: conv/BN/activation units, U-Net encoders and decoders, ASPP, the LSTM.

Attribute names mirror the original lib_v5 layers so that state-dict keys match real UVR5 weight files.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Size2 = int | tuple[int, int]
SERIAL_ELEMENTS = 1 << 14  # below ATen's grain size (32768): one thread computes a run; a multiple of SIMD widths


def thread_invariant(op: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """op(x) for an elementwise op (sigmoid, pow) whose CPU result does not depend on the thread count.

    ATen splits a large tensor among its threads, and the leftover elements of each share take the op's scalar
    code, which rounds differently from the vectorised one (1 ulp): the thread count would show in the masks, and
    `-j N` workers with 1/N of the cores would write other bits than one process. Run by run of SERIAL_ELEMENTS
    (in memory order), every element takes the same code whatever the thread count. Autograd, GPUs and exporters
    (whose graphs must not hold the loop) get op(x).
    """
    if x.device.type != "cpu" or x.requires_grad or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return op(x)
    if not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)):
        x = x.contiguous()
    out = torch.empty_like(x)  # the same dense layout
    flat_in = x.as_strided((x.numel(),), (1,), x.storage_offset())
    flat_out = out.as_strided((out.numel(),), (1,), out.storage_offset())
    for start in range(0, x.numel(), SERIAL_ELEMENTS):
        flat_out[start : start + SERIAL_ELEMENTS] = op(flat_in[start : start + SERIAL_ELEMENTS])
    return out


class Conv2DBNActiv(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> activation; keys ``conv.0.weight``, ``conv.1.*``."""

    def __init__(
        self,
        nin: int,
        nout: int,
        ksize: int = 3,
        stride: int = 1,
        pad: Size2 = 1,
        dilation: Size2 = 1,
        activ: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(nin, nout, ksize, stride=stride, padding=pad, dilation=dilation, bias=False),
            nn.BatchNorm2d(nout),
            activ(),
        )

    def forward(self, *inputs: Tensor) -> Tensor:
        """Several inputs are concatenated on channels first (the decoders pass the upsampled map and the skip)."""
        return self.conv(inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=1))


class SeparableConv2DBNActiv(nn.Module):
    """Depthwise conv -> pointwise 1x1 conv -> BatchNorm2d -> activation (UVR's ``SeperableConv2DBNActiv``)."""

    def __init__(
        self,
        nin: int,
        nout: int,
        ksize: int = 3,
        stride: int = 1,
        pad: int = 1,
        dilation: int = 1,
        activ: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(nin, nin, ksize, stride=stride, padding=pad, dilation=dilation, groups=nin, bias=False),
            nn.Conv2d(nin, nout, 1, bias=False),
            nn.BatchNorm2d(nout),
            activ(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


def crop_center(h: Tensor, width: int) -> Tensor:
    """Crop the time axis (dim 3) of ``h`` to ``width`` frames, centred; frequency is left alone."""
    if h.size(3) < width:
        raise ValueError(f"cannot crop a skip of width {h.size(3)} to {width}")
    start = (h.size(3) - width) // 2
    return h[:, :, :, start : start + width]


def _upsample_with_skip(x: Tensor, skip: Tensor | None) -> tuple[Tensor, ...]:
    """The decoders' common first half: bilinear x2 upsampling and the centre-cropped skip, to be concatenated
    on channels by the conv block (kept apart so that inference can skip materialising the concatenation)."""
    x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
    if skip is None:
        return (x,)
    return x, crop_center(skip, x.size(3))


def _pooled_branch(conv: nn.Module, x: Tensor) -> Tensor:
    """ASPP image-pooling branch: frequency-averaged features, stretched back to the input size."""
    return F.interpolate(conv(x), size=x.shape[2:], mode="bilinear", align_corners=True)


# --- v4/v5 CascadedASPPNet family (lib_v5/layers*.py, nets*.py) -------------------------------------


class EncoderV4(nn.Module):
    """Two LeakyReLU convs, the stride on the second; returns ``(h, skip)`` with the skip at full resolution."""

    def __init__(self, nin: int, nout: int, ksize: int = 3, stride: int = 2, pad: int = 1) -> None:
        super().__init__()
        self.conv1 = Conv2DBNActiv(nin, nout, ksize, 1, pad, activ=nn.LeakyReLU)
        self.conv2 = Conv2DBNActiv(nout, nout, ksize, stride, pad, activ=nn.LeakyReLU)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        skip = self.conv1(x)
        return self.conv2(skip), skip


class DecoderV4(nn.Module):
    """Upsample x2, concatenate the skip, one ReLU conv (key ``conv``)."""

    def __init__(self, nin: int, nout: int, ksize: int = 3, pad: int = 1) -> None:
        super().__init__()
        self.conv = Conv2DBNActiv(nin, nout, ksize, 1, pad)

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        return self.conv(*_upsample_with_skip(x, skip))


class ASPPModuleV4(nn.Module):
    """ASPP with a pooled branch, a 1x1 branch and ``branches - 2`` separable dilated branches.

    conv3..conv5 use ``dilations[0..2]``; the extra conv6/conv7 (6- and 7-branch variants) reuse
    ``dilations[2]`` as lib_v5 does, each with its OWN weights (the UVR GUI shares one module; we do not).
    """

    def __init__(self, nin: int, nout: int, dilations: tuple[int, int, int] = (4, 8, 16), branches: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.AdaptiveAvgPool2d((1, None)), Conv2DBNActiv(nin, nin, 1, 1, 0))
        self.conv2 = Conv2DBNActiv(nin, nin, 1, 1, 0)
        branch_dilations = (*dilations, *[dilations[2]] * (branches - 5))
        self._dilated = [f"conv{i}" for i in range(3, branches + 1)]
        for name, d in zip(self._dilated, branch_dilations):
            self.add_module(name, SeparableConv2DBNActiv(nin, nin, 3, 1, d, d))
        self.bottleneck = nn.Sequential(Conv2DBNActiv(nin * branches, nout, 1, 1, 0), nn.Dropout2d(0.1))

    def forward(self, x: Tensor) -> Tensor:
        feats = [_pooled_branch(self.conv1, x), self.conv2(x)]
        feats += [getattr(self, name)(x) for name in self._dilated]
        return self.bottleneck(torch.cat(feats, dim=1))


class EncoderV51(nn.Module):
    """Two LeakyReLU convs, the stride on the FIRST; returns only ``h`` (no skip tuple)."""

    def __init__(self, nin: int, nout: int, ksize: int = 3, stride: int = 2, pad: int = 1) -> None:
        super().__init__()
        self.conv1 = Conv2DBNActiv(nin, nout, ksize, stride, pad, activ=nn.LeakyReLU)
        self.conv2 = Conv2DBNActiv(nout, nout, ksize, 1, pad, activ=nn.LeakyReLU)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.conv1(x))


class DecoderV51(nn.Module):
    """Upsample x2, concatenate the skip, one ReLU conv (key ``conv1``)."""

    def __init__(self, nin: int, nout: int, ksize: int = 3, pad: int = 1) -> None:
        super().__init__()
        self.conv1 = Conv2DBNActiv(nin, nout, ksize, 1, pad)

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        return self.conv1(*_upsample_with_skip(x, skip))


class ASPPModuleV51(nn.Module):
    """ASPP with full 3x3 convs and anisotropic (frequency, time) dilations; every branch is nin -> nout."""

    def __init__(
        self,
        nin: int,
        nout: int,
        dilations: tuple[tuple[int, int], ...] = ((4, 2), (8, 4), (12, 6)),
        dropout: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.AdaptiveAvgPool2d((1, None)), Conv2DBNActiv(nin, nout, 1, 1, 0))
        self.conv2 = Conv2DBNActiv(nin, nout, 1, 1, 0)
        self.conv3 = Conv2DBNActiv(nin, nout, 3, 1, dilations[0], dilations[0])
        self.conv4 = Conv2DBNActiv(nin, nout, 3, 1, dilations[1], dilations[1])
        self.conv5 = Conv2DBNActiv(nin, nout, 3, 1, dilations[2], dilations[2])
        self.bottleneck = Conv2DBNActiv(nout * 5, nout, 1, 1, 0)
        self.dropout = nn.Dropout2d(0.1) if dropout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        feats = [_pooled_branch(self.conv1, x), self.conv2(x), self.conv3(x), self.conv4(x), self.conv5(x)]
        return self.dropout(self.bottleneck(torch.cat(feats, dim=1)))


class LSTMModule(nn.Module):
    """Squeeze channels to 1, run a bidirectional LSTM over time with the bins as features, map back."""

    def __init__(self, nin_conv: int, nin_lstm: int, nout_lstm: int) -> None:
        super().__init__()
        self.conv = Conv2DBNActiv(nin_conv, 1, 1, 1, 0)
        self.lstm = nn.LSTM(input_size=nin_lstm, hidden_size=nout_lstm // 2, bidirectional=True)
        self.dense = nn.Sequential(nn.Linear(nout_lstm, nin_lstm), nn.BatchNorm1d(nin_lstm), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        n, _, nbins, nframes = x.size()
        h = self.conv(x)[:, 0].permute(2, 0, 1)  # (T, N, bins): the LSTM runs over time
        h, _ = self.lstm(h)
        h = self.dense(h.reshape(-1, h.size(-1)))
        return h.reshape(nframes, n, 1, nbins).permute(1, 2, 3, 0)
