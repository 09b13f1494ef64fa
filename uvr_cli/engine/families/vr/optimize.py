"""The network made ready for inference: BatchNorm folded, decoders and bridges without their big intermediates,
results independent of the thread count.

Each step only changes float32 rounding; together they make a window faster and cut its peak activation memory
(benchmarks/RESULTS.md).
"""

from __future__ import annotations

import sys
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from uvr_cli.engine.families.vr.layers import Conv2DBNActiv, DecoderV4, DecoderV51, crop_center

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, stride=1, padding=0, dilation=1) -> Tensor:
    """F.conv2d whose float32 CPU result does not depend on the thread count (so `-j N` = one process, bit for bit).

    PyTorch runs a 1x1 convolution with its own code on one thread and with oneDNN on more, and the two round
    differently (1 LSB in the stems); here every float32 CPU convolution goes to oneDNN, whose results matched
    across thread counts where measured (benchmarks/RESULTS.md).
    """
    exact_cpu = x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32
    if not exact_cpu or torch.is_autocast_enabled("cpu"):
        return F.conv2d(x, weight, bias, stride, padding, dilation)
    return torch.mkldnn_convolution(x, weight, bias, _pair(padding), _pair(stride), _pair(dilation), 1)


def _pair(value: int | tuple[int, ...]) -> list[int]:
    return list(value) if isinstance(value, (tuple, list)) else [value, value]


class OneDnnConv(nn.Module):
    """An (ungrouped) nn.Conv2d computed by `conv2d`."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: Tensor) -> Tensor:
        conv = self.conv
        return conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation)


def fold_batchnorm(model: ModuleT) -> ModuleT:
    """Fold every eval-mode BatchNorm into the conv/linear layer before it, in place.

    y = gamma * (Wx + b - mean) / sqrt(var + eps) + beta is again a single affine layer; computed in float64, the
    folded weights differ from the two-step result by float32 rounding only (far below the conformance bar).
    The state-dict keys change, so this is for inference only, after the weights are loaded.
    """
    for seq in model.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            layer, bn = seq[i], seq[i + 1]
            if not (isinstance(layer, (nn.Conv2d, nn.Linear)) and isinstance(bn, (nn.BatchNorm2d, nn.BatchNorm1d))):
                continue
            assert bn.running_mean is not None and bn.running_var is not None  # eval mode uses them: tracked
            scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
            weight = layer.weight.double() * scale.view(-1, *([1] * (layer.weight.dim() - 1)))
            bias = bn.bias.double() - bn.running_mean.double() * scale
            if layer.bias is not None:
                bias = bias + layer.bias.double() * scale
            layer.weight = nn.Parameter(weight.float(), requires_grad=False)
            layer.bias = nn.Parameter(bias.float(), requires_grad=False)
            seq[i + 1] = nn.Identity()
    return model


class SplitInputConv(nn.Module):
    """A (BatchNorm-folded) conv block given several inputs: conv(cat(a, b, ...)) as conv_a(a) + conv_b(b) + ...

    The stage-3 bridge of a ch32 network would otherwise concatenate 66 full-resolution channels (91 MB per
    window) only to reduce them to 32; splitting the kernel along its input channels gives the same sums up to
    float32 rounding order.
    """

    def __init__(self, block: Conv2DBNActiv) -> None:
        super().__init__()
        conv = block.conv[0]
        assert isinstance(conv, nn.Conv2d)  # Conv2DBNActiv: Conv2d, BatchNorm2d (folded), activation
        self.conv = conv
        self.activation = block.conv[-1]

    def forward(self, *inputs: Tensor) -> Tensor:
        if len(inputs) == 1:
            conv = self.conv
            return self.activation(conv2d(inputs[0], conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation))
        conv, out, first = self.conv, None, 0
        for part in inputs:
            weight = conv.weight[:, first : first + part.size(1)]
            first += part.size(1)
            y = conv2d(part, weight, None, conv.stride, conv.padding, conv.dilation)
            out = y if out is None else out.add_(y)
        if first != conv.weight.size(1):
            raise ValueError(f"inputs with {first} channels for a conv over {conv.weight.size(1)}")
        assert out is not None  # the channels matched, so there was an input
        if conv.bias is not None:
            out.add_(conv.bias.view(1, -1, 1, 1))
        return self.activation(out)


class BandedDecoder(nn.Module):
    """A decoder (x2 bilinear upsampling, skip concatenation, one conv) computed without its big intermediates.

    conv(cat(up(x), skip)) is split along the kernel's input channels into conv(skip) + conv(up(x)), so the
    concatenation never exists, and the second term is computed in bands of output rows: each band upsamples
    only the rows it needs (+1 halo row each side for the 3x3 kernel) and adds its conv into the result. The
    upsampled map, 176 MB in a ch32 network's last decoder (128 channels x 672 bins x 512 frames), never exists
    whole; a band is ~4 MB and is reused from the heap (see malloc.py). align_corners upsampling is separable:
    rows are interpolated by the same formula (source row r * (H-1)/(2H-1)) and F.interpolate widens the band,
    so the sums differ only in float32 rounding order.
    """

    band_bytes = 4 << 20  # upsampled rows per band: about this much (below malloc's mmap threshold)

    def __init__(self, decoder: DecoderV4 | DecoderV51) -> None:
        super().__init__()
        block = decoder.conv if isinstance(decoder, DecoderV4) else decoder.conv1
        conv = block.conv[0]
        assert isinstance(conv, nn.Conv2d)  # Conv2DBNActiv: Conv2d, BatchNorm2d, activation
        padding = conv.padding
        if (
            isinstance(padding, str)  # "same"/"valid": its padding[0] is a letter, refused below as before
            or conv.stride != (1, 1)
            or conv.dilation != (1, 1)
            or padding[0] != (conv.kernel_size[0] - 1) // 2
        ):
            raise ValueError("a banded decoder needs a stride-1, undilated, 'same' padded conv")
        self.conv = conv
        self.padding = padding  # conv.padding as a tuple
        self.activation = block.conv[-1]

    def _upsampled_rows(self, x: Tensor, first: int, last: int, height: int, width: int) -> Tensor:
        """Rows [first, last) of F.interpolate(x, size=(height, width), bilinear, align_corners=True)."""
        rows = torch.arange(first, last, dtype=torch.float64)
        src = rows * ((x.size(2) - 1) / (height - 1))
        lower = src.floor().long().clamp_(max=x.size(2) - 1)
        upper = (lower + 1).clamp_(max=x.size(2) - 1)
        frac = (src - lower).to(x.device, x.dtype).view(1, 1, -1, 1)
        lower, upper = lower.to(x.device), upper.to(x.device)
        nhwc = x.permute(0, 2, 3, 1)  # channels-last storage: a row is one contiguous slab
        below = nhwc.index_select(1, lower).permute(0, 3, 1, 2)
        above = nhwc.index_select(1, upper).permute(0, 3, 1, 2)
        band = torch.lerp(below, above, frac)
        return F.interpolate(band, size=(last - first, width), mode="bilinear", align_corners=True)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        height, width = 2 * x.size(2), 2 * x.size(3)
        weight, halo = self.conv.weight, self.padding[0]
        up_weight = weight[:, : x.size(1)]
        out = conv2d(crop_center(skip, width), weight[:, x.size(1) :], None, 1, self.padding)
        if self.conv.bias is not None:
            out.add_(self.conv.bias.view(1, -1, 1, 1))
        band_rows = max(1, self.band_bytes // (x.size(0) * x.size(1) * width * x.element_size()))
        for first in range(0, height, band_rows):
            last = min(first + band_rows, height)
            lo, hi = max(first - halo, 0), min(last + halo, height)
            band = self._upsampled_rows(x, lo, hi, height, width)
            if lo > first - halo or hi < last + halo:  # the map's top/bottom edge: the conv's zero padding
                band = F.pad(band, (0, 0, lo - (first - halo), (last + halo) - hi))
            out[:, :, first:last] += conv2d(band, up_weight, None, 1, (0, self.padding[1]))
        return self.activation(out)


def _use_inplace_activations(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, (nn.ReLU, nn.LeakyReLU)):
            module.inplace = True


def prepare_for_inference(model: ModuleT, device: torch.device) -> ModuleT:
    """Eval mode, BatchNorm folded, banded decoders, split-input bridges, in-place activations, channels-last,
    and every convolution computed the same way whatever the thread count (`conv2d`).

    Each step only changes float32 rounding (conformance stays far above its bar).
    """
    model = fold_batchnorm(model.eval())
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (DecoderV4, DecoderV51)):
                banded = BandedDecoder(child)
                if device.type != "cpu":  # GPU memory is not the limit; one band is one kernel launch, not dozens
                    banded.band_bytes = sys.maxsize
                setattr(parent, name, banded)
            elif isinstance(child, Conv2DBNActiv):
                setattr(parent, name, SplitInputConv(child))
            elif isinstance(child, nn.Conv2d) and child.groups == 1:
                setattr(parent, name, OneDnnConv(child))
    _use_inplace_activations(model)
    # torch's stubs lack Module.to's memory_format keyword, which it accepts at run time
    return model.to(device=device, memory_format=torch.channels_last)  # type: ignore[call-overload]
