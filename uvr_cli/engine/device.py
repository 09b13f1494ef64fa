"""Where and in what precision the networks run: device and precision choices, GPU math settings, autocast, and
the runtime options resolved for this machine."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from uvr_cli.engine.frontend import FrontEnd, resolve_front_end
from uvr_cli.errors import UsageError
from uvr_cli.settings import RuntimeOptions

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DEVICE_HELP = "use auto, cpu, cuda, cuda:N or mps"


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA, then Apple's MPS, then the CPU; anything else is passed to torch, checked."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise UsageError(f"--device {device!r} is not a device ({DEVICE_HELP})") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: this machine has no usable CUDA GPU")
    if resolved.type == "mps" and not _mps_available():
        raise UsageError(f"--device {device}: Apple MPS is not available here")
    return resolved


def cpu_bf16_supported() -> bool:
    """Whether PyTorch's oneDNN has bf16 kernels on this CPU; without them bf16 convolutions fall back to PyTorch's
    slow reference code (a ch32 window: 36 s against 4 s in fp32 on an AVX-512 AMD EPYC, benchmarks/RESULTS.md)."""
    return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


NO_CPU_BF16 = "this CPU has no oneDNN bf16 kernels, so bf16 would run about 9x slower than fp32; use fp32"


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """'auto' is exact fp32 on the CPU and fp16 on a GPU (as RVC runs its models there)."""
    if precision == "auto":
        return torch.float32 if device.type == "cpu" else torch.float16
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r}: use auto, fp32, fp16 or bf16")
    if device.type == "cpu" and precision == "fp16":
        raise UsageError(
            f"--precision fp16 needs a GPU; on the CPU use fp32{' or bf16' if cpu_bf16_supported() else ''}"
        )
    if device.type == "cpu" and precision == "bf16" and not cpu_bf16_supported():
        raise UsageError(f"--precision bf16: {NO_CPU_BF16}")
    return PRECISIONS[precision]


def configure_gpu_math(device: torch.device, dtype: torch.dtype) -> None:
    """fp32 on CUDA stays true fp32, and cuDNN's autotuner stays off.

    PyTorch lets cuDNN convolutions run in TF32 (10-bit mantissa) by default, which would make `--precision fp32`
    on a GPU no more exact than fp16; the fast GPU modes are fp16 and bf16, asked for by name. The autotuner
    (cudnn.benchmark) times every algorithm for each new input shape, and a song has few shapes and few batches,
    so tuning costs far more than it saves (timings: benchmarks/RESULTS.md). PyTorch leaves it off, and so do we.
    """
    if device.type != "cuda":
        return
    exact = dtype == torch.float32
    torch.backends.cudnn.allow_tf32 = not exact
    torch.backends.cuda.matmul.allow_tf32 = not exact


def precision_context(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` on `device`, or nothing for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass(frozen=True)
class Runtime:
    """RuntimeOptions resolved for this machine: where torch runs and in what precision, the batch size, the front
    end; `options` keeps them as given (ONNX Runtime reads its own device and precision from them)."""

    options: RuntimeOptions
    device: torch.device
    dtype: torch.dtype
    batch_size: int
    front_end: FrontEnd
    note: Callable[[str], None] | None = None  # hears one line before a slow first-use preparation

    @property
    def backend(self) -> str:
        return self.options.backend_name

    @property
    def fast(self) -> bool:
        return self.options.fast

    @classmethod
    def resolve(cls, options: RuntimeOptions, note: Callable[[str], None] | None = None) -> Runtime:
        front_end = resolve_front_end(options.front_end, resolve_device(options.device))  # even with ORT
        device, precision = options.device, options.precision
        if options.backend_name == "onnxruntime":  # the window loop hands ORT host arrays; ORT picks its own
            device, precision = "cpu", "fp32"
        resolved = resolve_device(device)
        dtype = resolve_precision(precision, resolved)
        configure_gpu_math(resolved, dtype)
        # One window at a time on the CPU: batching gains nothing there and multiplies the activation memory
        # (a ch32 net at 672 bins holds ~0.5 GB per window); GPUs want batches.
        batch = options.batch_size or (1 if resolved.type == "cpu" else 8)
        return cls(options, resolved, dtype, batch, front_end, note)
