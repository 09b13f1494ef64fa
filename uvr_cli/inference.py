"""The window loop: normalised magnitudes -> the network's mask over the whole song (reference §5.1 step 5).

Windows of `window` frames advance by roi = window - 2*offset, so each frame is predicted exactly once from
a window that sees `offset` frames of context on either side; TTA repeats this shifted by half a roi and averages.
Windows are independent, so they are run in batches.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from uvr_cli.nets import Aggressiveness, Conv2DBNActiv, DecoderV4, DecoderV51


class MaskModel(Protocol):
    offset: int

    def predict_mask(self, x: torch.Tensor, aggressiveness: Aggressiveness | None = None) -> torch.Tensor: ...


def fold_batchnorm(model: nn.Module) -> nn.Module:
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
            scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
            weight = layer.weight.double() * scale.view(-1, *([1] * (layer.weight.dim() - 1)))
            bias = bn.bias.double() - bn.running_mean.double() * scale
            if layer.bias is not None:
                bias = bias + layer.bias.double() * scale
            layer.weight = nn.Parameter(weight.float(), requires_grad=False)
            layer.bias = nn.Parameter(bias.float(), requires_grad=False)
            seq[i + 1] = nn.Identity()
    return model


class ConcatFreeConv(nn.Module):
    """conv(cat(a, b)) computed as conv_a(a) + conv_b(b), then the activation in place.

    The decoders concatenate a large upsampled map with a skip before a 3x3 conv; at 672 bins x 512 frames that
    concatenation alone is ~260 MB per window. Splitting the kernel along its input channels gives the same sums
    (up to float32 rounding order) without it.
    """

    def __init__(self, block: Conv2DBNActiv) -> None:
        super().__init__()
        conv, activation = block.conv[0], block.conv[-1]
        self.template = conv
        self.activation = activation
        self.bias = conv.bias

    def forward(self, *inputs: Tensor) -> Tensor:
        weight = self.template.weight
        out: Tensor | None = None
        first = 0
        for part in inputs:
            w = weight[:, first : first + part.size(1)]
            first += part.size(1)
            y = F.conv2d(part, w, None, self.template.stride, self.template.padding, self.template.dilation)
            out = y if out is None else out.add_(y)
        assert out is not None and first == weight.size(1)
        if self.bias is not None:
            out.add_(self.bias.view(1, -1, 1, 1))
        return self.activation(out)


def _use_inplace_activations(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, (nn.ReLU, nn.LeakyReLU)):
            module.inplace = True


def prepare_for_inference(model: nn.Module, device: torch.device) -> nn.Module:
    """Eval mode, BatchNorm folded, decoders without concatenation, in-place activations, channels-last.

    Each step only changes float32 rounding (conformance stays far above its bar); together they made one ch32
    window about 1.5-1.9x faster on this CPU and cut its peak activation memory (see benchmarks/run.py).
    """
    model = fold_batchnorm(model.eval())
    for decoder in [m for m in model.modules() if isinstance(m, (DecoderV4, DecoderV51))]:
        name = "conv" if isinstance(decoder, DecoderV4) else "conv1"
        setattr(decoder, name, ConcatFreeConv(getattr(decoder, name)))
    _use_inplace_activations(model)
    return model.to(device=device, memory_format=torch.channels_last)


def window_layout(n_frames: int, window: int, offset: int) -> tuple[int, int, int]:
    """make_padding: (left pad, right pad, roi) so that ceil(T/roi) windows cover every frame."""
    roi = window - 2 * offset
    if roi <= 0:
        roi = window
    return offset, roi - n_frames % roi + offset, roi


def _precision_context(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _run_pass(
    model: MaskModel,
    magnitude: np.ndarray,
    pad_left: int,
    pad_right: int,
    n_windows: int,
    roi: int,
    window: int,
    aggressiveness: Aggressiveness | None,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype,
    on_window: Callable[[int], None] | None,
) -> np.ndarray:
    padded = torch.from_numpy(np.pad(magnitude, ((0, 0), (0, 0), (pad_left, pad_right))))
    out = np.empty(magnitude.shape[:2] + (n_windows * roi,), dtype=np.float32)
    with torch.inference_mode(), _precision_context(device, dtype):
        for first in range(0, n_windows, batch_size):
            count = min(batch_size, n_windows - first)
            batch = torch.stack([padded[:, :, (first + i) * roi : (first + i) * roi + window] for i in range(count)])
            batch = batch.to(device).contiguous(memory_format=torch.channels_last)
            mask = model.predict_mask(batch, aggressiveness).float().cpu().numpy()
            for i in range(count):
                out[:, :, (first + i) * roi : (first + i + 1) * roi] = mask[i]
            if on_window:
                on_window(count)
    return out


def count_windows(n_frames: int, window: int, offset: int, tta: bool) -> int:
    """How many network windows `predict_mask` will run (for progress bars)."""
    roi = window_layout(n_frames, window, offset)[2]
    n = math.ceil(n_frames / roi)
    return 2 * n + 1 if tta else n


def predict_mask(
    model: MaskModel,
    magnitude: np.ndarray,
    *,
    window: int = 512,
    aggressiveness: Aggressiveness | None = None,
    tta: bool = False,
    batch_size: int = 1,
    device: torch.device = torch.device("cpu"),
    dtype: torch.dtype = torch.float32,
    on_window: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Mask (2, bins+1, T) for normalised magnitudes (2, bins+1, T) in [0, 1]."""
    n_frames = magnitude.shape[-1]
    pad_left, pad_right, roi = window_layout(n_frames, window, model.offset)
    n_windows = math.ceil(n_frames / roi)
    common = dict(roi=roi, window=window, aggressiveness=aggressiveness, batch_size=batch_size, device=device,
                  dtype=dtype, on_window=on_window)
    mask = _run_pass(model, magnitude, pad_left, pad_right, n_windows, **common)[:, :, :n_frames]
    if not tta:
        return mask
    half = roi // 2
    shifted = _run_pass(model, magnitude, pad_left + half, pad_right + half, n_windows + 1, **common)
    return (mask + shifted[:, :, half:][:, :, :n_frames]) * 0.5


def mask_silence(mag: np.ndarray, ref: np.ndarray, thres: float = 0.2, min_range: int = 64, fade_size: int = 32
                 ) -> np.ndarray:
    """RVC's post-processing: where the vocal residual `ref` stays quiet for > min_range frames, give it back to `mag`."""
    mag = mag.copy()
    idx = np.where(ref.mean(axis=(0, 1)) < thres)[0]
    if len(idx) == 0:
        return mag
    breaks = np.where(np.diff(idx) != 1)[0]
    starts = np.insert(idx[breaks + 1], 0, idx[0])
    ends = np.append(idx[breaks], idx[-1])
    long_runs = np.where(ends - starts > min_range)[0]
    old_e = None
    for s, e in zip(starts[long_runs], ends[long_runs]):
        if old_e is not None and s - old_e < fade_size:
            s = old_e - fade_size * 2
        if s != 0:
            mag[:, :, s : s + fade_size] += np.linspace(0, 1, fade_size) * ref[:, :, s : s + fade_size]
        else:
            s -= fade_size
        if e != mag.shape[2]:
            mag[:, :, e - fade_size : e] += np.linspace(1, 0, fade_size) * ref[:, :, e - fade_size : e]
        else:
            e += fade_size
        mag[:, :, s + fade_size : e - fade_size] += ref[:, :, s + fade_size : e - fade_size]
        old_e = e
    return mag
