"""A VR network run by ONNX Runtime behind the interface of nets.MaskNetwork (``offset``, ``predict_mask``).

The ONNX file is exported once per weight file, preset and precision (export.py; seconds) and kept in the
model cache's ``onnx/`` folder, so later runs only load it.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from uvr_cli.atomic import atomic_file
from uvr_cli.catalog.models import cache_dir
from uvr_cli.engine.families.vr.export import check_window, export_network, mask_graph, write_graph
from uvr_cli.engine.families.vr.fast import CALIBRATION_VERSION, calibration_windows, quantize_graph
from uvr_cli.engine.families.vr.loading import Model
from uvr_cli.engine.families.vr.nets import Aggressiveness
from uvr_cli.engine.malloc import heap_for_one_off_work
from uvr_cli.engine.onnx import providers, session
from uvr_cli.errors import UsageError, UvrError


class OnnxMaskModel:
    """An exported network (export.MaskGraph as ONNX) in an ONNX Runtime session; numpy at the boundary."""

    def __init__(
        self, path: Path, offset: int, depth: int, split_bin: int, provider_names: list[str], precision: str
    ) -> None:
        self.session = session(path, provider_names, path)
        self.offset, self.depth, self.split_bin = offset, depth, split_bin
        self.precision = precision  # fp32, fp16 or int8: what -v reports
        self.input_dtype = np.float16 if self.session.get_inputs()[0].type == "tensor(float16)" else np.float32

    def predict_mask(self, x: torch.Tensor, aggressiveness: Aggressiveness | None = None) -> torch.Tensor:
        """The mask with ``offset`` frames trimmed, as nets.MaskNetwork.predict_mask gives it."""
        if aggressiveness is not None and aggressiveness.split_bin != self.split_bin:
            raise ValueError(f"this export has split_bin {self.split_bin}, not {aggressiveness.split_bin}")
        value = np.array(aggressiveness.value if aggressiveness is not None else 0.0, dtype=np.float32)
        batch = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=self.input_dtype)
        (mask,) = self.session.run(["mask"], {"x": batch, "agg": value})
        return torch.from_numpy(mask.astype(np.float32, copy=False))


def cached_export(model: Model, precision: str, window: int, note: Callable[[str], None] | None = None) -> Path:
    """The ONNX file of `model` at `precision` (fp32, fp16, or int8: see fast.py), made in the cache on first use;
    `note` hears a line as that first-use preparation starts, one per stage of it, and one when it is done."""
    recipe = f"{precision}|calibration{CALIBRATION_VERSION}" if precision == "int8" else precision
    key = hashlib.sha256(
        f"{model.loaded.md5}|{model.preset.bins}|{model.preset.split_bin}|{recipe}|{torch.__version__}".encode()
    ).hexdigest()[:16]
    folder = cache_dir() / "onnx"
    path = folder / f"{model.path.stem}-{model.preset.name}-{precision}-{key}.onnx"
    if path.is_file():
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UvrError(f"cannot create the ONNX cache {folder}: {exc.strerror or exc}") from None
    say = note or (lambda line: None)
    started = time.perf_counter()
    what = "its int8 network for --fast" if precision == "int8" else f"its {precision} ONNX network"
    say(f"{model.path.name}: preparing {what}, once per model, into {folder}")
    if precision != "int8":
        export_network(model, path, precision=precision, window=window)
    else:
        with heap_for_one_off_work():
            _prepare_int8(model, path, window, say)
    say(f"{model.path.name}: {what} is ready ({time.perf_counter() - started:.0f} s)")
    return path


def _prepare_int8(model: Model, path: Path, window: int, say: Callable[[str], None]) -> None:
    """Trace the float network, calibrate its int8 ranges on the shipped song and quantise it into `path`."""
    network = model.loaded.module
    check_window(window, network.offset, network.depth)
    with tempfile.TemporaryDirectory(prefix=".uvr-int8-", dir=path.parent) as scratch:
        float_path = Path(scratch) / "fp32.onnx"
        say("int8 preparation 1/2: tracing the float network")
        write_graph(mask_graph(network, model.preset.split_bin), float_path)
        windows = calibration_windows(model.preset, network.depth)
        say(f"int8 preparation 2/2: calibrating on {len(windows)} windows of the shipped song, then quantising")
        try:
            with atomic_file(path) as tmp:
                quantize_graph(float_path, tmp, windows)
        except Exception as exc:  # the quantiser's failure: one line naming the model
            first = (str(exc).strip().splitlines() or [""])[0]
            raise UvrError(f"{model.path}: the int8 quantisation failed: {type(exc).__name__}: {first}") from None


def onnx_mask_model(
    model: Model,
    *,
    device: str = "auto",
    precision: str = "auto",
    window: int = 512,
    fast: bool = False,
    note: Callable[[str], None] | None = None,
) -> OnnxMaskModel:
    """`model`'s network as an ONNX Runtime session (exported and cached on first use); `fast`: int8 on the CPU."""
    provider_names = providers(device)
    precision = onnx_precision(precision, provider_names, fast)
    path = cached_export(model, precision, window, note)
    network = model.loaded.module
    return OnnxMaskModel(path, network.offset, network.depth, model.preset.split_bin, provider_names, precision)


def onnx_precision(precision: str, provider_names: list[str], fast: bool = False) -> str:
    """'auto' is fp32 on the CPU and fp16 with CUDA, as for torch, and int8 on the CPU when `fast`; bf16 has no
    ONNX Runtime kernels here."""
    cuda = "CUDAExecutionProvider" in provider_names
    if precision == "auto":
        return "fp16" if cuda else "int8" if fast else "fp32"
    if precision == "int8" and cuda:
        raise UsageError("--precision int8 runs on the CPU only; with CUDA use fp16 or auto")
    if precision not in ("fp32", "fp16", "int8"):
        raise UsageError(f"--precision {precision!r} with --backend onnxruntime: use auto, fp32, fp16 or int8")
    if precision == "fp16" and not cuda:
        raise UsageError("--precision fp16 with --backend onnxruntime needs its CUDA provider; on the CPU use fp32")
    return precision
