"""ONNX Runtime for any family: the import, the execution providers a device allows, and sessions made quiet and
lean. MDX-Net models are ONNX files; VR networks run in it with --backend onnxruntime and --fast."""

from __future__ import annotations

from pathlib import Path

import torch

from uvr_cli.errors import UsageError, UvrError

MISSING_ORT = "ONNX Runtime is not installed: pip install onnxruntime (it comes with uvr's own requirements)"


def onnxruntime():
    """The onnxruntime module, or a one-line UsageError saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise UsageError(MISSING_ORT) from None
    return onnxruntime


def providers(device: str) -> list[str]:
    """CUDA when ONNX Runtime has it and the device allows ('auto', 'cuda', 'cuda:N'), always the CPU after it."""
    available = onnxruntime().get_available_providers()
    use_cuda = device == "auto" or device.startswith("cuda")
    if device.startswith("cuda") and "CUDAExecutionProvider" not in available:
        raise UsageError(f"--device {device}: this ONNX Runtime has no CUDA provider (pip install onnxruntime-gpu)")
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise UsageError(f"--device {device!r}: ONNX Runtime runs on auto, cpu, cuda or cuda:N")
    return (["CUDAExecutionProvider"] if use_cuda and "CUDAExecutionProvider" in available else []) + [
        "CPUExecutionProvider"
    ]


def session(model: Path | bytes, provider_names: list[str], name: Path, arena: bool = False):
    """An InferenceSession of `model` (a file, or its serialised bytes); a failure is one line naming `name`.

    ORT's CPU arena keeps every buffer it ever held: a VR ch32 run in 2048-frame windows (one shape per song)
    peaked at 6.9 GB with it and 3.7 GB without, at the same speed; for MDX-Net, whose chunks all have one shape,
    it is about 7 % faster and costs little memory (benchmarks/RESULTS.md). `arena` turns it on.
    """
    ort = onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: ORT's warnings would reach the user's terminal
    options.enable_cpu_mem_arena = arena
    options.intra_op_num_threads = torch.get_num_threads()  # as torch: `-j N` gives each worker its share
    try:
        return ort.InferenceSession(
            model if isinstance(model, bytes) else str(model), options, providers=provider_names
        )
    except Exception as exc:  # a damaged file or a foreign one: one line naming it
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UvrError(f"{name}: ONNX Runtime cannot load it: {first}") from None
