"""The network as a file for other runtimes: ONNX or TorchScript, with a JSON description written beside it.

What is exported is the plain network, BatchNorm folded into the convolutions, with aggressiveness and the offset
trim inside the graph: ``(x, agg) -> mask``. The inference rewrites of optimize.py (banded decoders, split-input
bridges) are not exported: their band loops depend on the map sizes, so they would freeze the frame count, and
ONNX Runtime and TorchScript fuse the plain graph themselves. Both formats are traced on one window of the fewest
frames the network takes (the trace runs it, so a small window keeps this to seconds), with the batch and frame
axes left free. ONNX uses torch's TorchScript-based exporter: the dynamo one spent ~20 s reasoning about the
symbolic frame count of a ch32 network, and needs onnxscript.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from uvr_cli import __version__
from uvr_cli.atomic import atomic_file
from uvr_cli.engine.families.vr.loading import Model
from uvr_cli.engine.families.vr.nets import CascadedASPPNet, MaskNetwork
from uvr_cli.engine.families.vr.optimize import fold_batchnorm
from uvr_cli.engine.family import sidecar_path
from uvr_cli.errors import UsageError, UvrError

OPSET = 18
FORMATS = {".onnx": "onnx", ".pt": "torchscript"}
EXPORT_PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}
INPUT_NAMES, OUTPUT_NAMES = ("x", "agg"), ("mask",)


class RowMean(nn.Module):
    """``AdaptiveAvgPool2d((1, None))`` as a mean over the rows: the same values, in a form the TorchScript-based
    ONNX exporter can leave the frame axis free in (it sizes adaptive pooling from the traced shape)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=2, keepdim=True)


def _with_row_means(network: MaskNetwork) -> MaskNetwork:
    """`network` with its ASPP pooling branches' ``AdaptiveAvgPool2d((1, None))`` replaced by RowMean, in place."""
    for module in list(network.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.AdaptiveAvgPool2d) and child.output_size == (1, None):
                setattr(module, name, RowMean())
    return network


class MaskGraph(nn.Module):
    """``(x, agg) -> mask``: the network's mask, aggressiveness applied, ``offset`` frames trimmed from each side.

    ``agg`` is RVC's aggressiveness value (``--agg / 100``) as a float32 scalar tensor; for the ASPP family the
    mask is raised to ``1 + agg/3`` below the preset's ``split_bin`` (baked in) and ``1 + agg`` from it up, as
    nets.CascadedASPPNet does. CascadedNet ignores it (RVC semantics) but keeps the input, so every export has
    the same interface.
    """

    agg_scale: Tensor  # a buffer, registered in __init__

    def __init__(self, network: MaskNetwork, split_bin: int) -> None:
        super().__init__()
        self.network = network
        self.offset, self.depth = network.offset, network.depth
        self.uses_agg = isinstance(network, CascadedASPPNet)
        scale = torch.ones(1, 1, network.output_bin, 1)
        scale[:, :, : max(0, split_bin)] = 1 / 3
        self.register_buffer("agg_scale", scale)

    def forward(self, x: Tensor, agg: Tensor) -> Tensor:
        mask = self.network.predict_mask(x)
        if not self.uses_agg:
            return mask + 0 * agg  # the exact mask; it keeps `agg` in the graph, which the exporter drops if unused
        return mask.pow(1 + agg * self.agg_scale)


def mask_graph(network: MaskNetwork, split_bin: int, precision: str = "fp32") -> MaskGraph:
    """`network` as exported: eval mode, BatchNorm folded, in `precision` (a copy; `network` is untouched)."""
    if precision not in EXPORT_PRECISIONS:
        raise UsageError(f"--precision {precision!r}: use fp32 or fp16")
    graph = MaskGraph(_with_row_means(fold_batchnorm(copy.deepcopy(network).eval())), split_bin).eval()
    return graph.requires_grad_(False).to(EXPORT_PRECISIONS[precision])


def min_frames(offset: int, depth: int) -> int:
    """The fewest frames a window can have: more than twice the offset, a multiple of 2**depth."""
    step = 2**depth
    return (2 * offset // step + 1) * step


def check_window(window: int, offset: int, depth: int) -> None:
    """A window the network can run: more than twice its offset, a multiple of 2**depth frames."""
    if window <= 2 * offset:
        raise UsageError(f"--window {window} must exceed twice the model's context ({2 * offset})")
    if window % 2**depth:
        raise UsageError(f"--window {window} must be a multiple of {2**depth} for this network")


def _example(graph: MaskGraph) -> tuple[Tensor, Tensor]:
    """Inputs to trace with: an empty batch of windows of the fewest frames the network takes (min_frames).

    The trace records operations and sizes, not values, so an empty batch gives the same graph as a real window
    without paying for the network's convolutions (half of a ch32 trace); the exporters keep the batch and frame
    axes free by name, whatever the example's sizes."""
    rows, frames = graph.network.output_bin, min_frames(graph.offset, graph.depth)
    x = torch.zeros(0, 2, rows, frames, dtype=graph.agg_scale.dtype)
    return x, torch.tensor(0.1, dtype=torch.float32)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters print progress on stdout and warnings on stderr: keep both off the user's terminal."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _save_onnx(graph: MaskGraph, example: tuple[Tensor, Tensor], path: Path) -> None:
    """ONNX (opset OPSET) with dynamic batch and frame axes; frames stay a multiple of 2**depth above 2*offset."""
    axes = {"x": {0: "batch", 3: "frames"}, "mask": {0: "batch", 3: "frames_out"}}
    with _quiet(), torch.no_grad():
        torch.onnx.export(
            graph,
            example,
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=axes,
        )


def _save_torchscript(graph: MaskGraph, example: tuple[Tensor, Tensor], path: Path) -> None:
    """A traced TorchScript module; the traced size arithmetic keeps the batch and frame axes free."""
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(graph, example, check_trace=False)
        torch.jit.save(traced, str(path))


def export_format(path: Path) -> str:
    """'onnx' or 'torchscript', from the output file's extension."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(f"{path}: the output must end in .onnx (ONNX) or .pt (TorchScript)")
    return fmt


def export_network(
    model: Model,
    path: Path,
    *,
    precision: str = "fp32",
    window: int = 512,
    primary: str = "instrumental",
    note: Callable[[str], None] | None = None,
) -> dict:
    """Write `model`'s network to `path` (.onnx or .pt) and its description to sidecar_path(path); returns it.

    Both files are written under temporary names and renamed when complete; a failure leaves neither. `note`
    hears one line before the network is traced (the slow part), once the checks have passed.
    """
    fmt = export_format(path)
    network = model.loaded.module
    check_window(window, network.offset, network.depth)
    description = describe(model, fmt, precision, window, primary)
    sidecar = sidecar_path(path)
    with exported_file(sidecar) as tmp_json:
        tmp_json.write_text(json.dumps(description, indent=2) + "\n")
        if note is not None:
            note(f"tracing {model.path.name}'s network into {path.name} ...")
        write_graph(mask_graph(network, model.preset.split_bin, precision), path)
    return description


def write_graph(graph: MaskGraph, path: Path) -> None:
    """`graph` as ONNX or TorchScript (by `path`'s extension), traced on _example's empty batch of windows.

    Any failure is one UvrError line naming the file, and leaves no file behind.
    """
    fmt = export_format(path)
    save = _save_onnx if fmt == "onnx" else _save_torchscript
    try:
        with exported_file(path) as tmp:
            save(graph, _example(graph), tmp)
    except UvrError:
        raise
    except Exception as exc:  # an exporter failure: one line naming the file, never a traceback
        first = (str(exc).strip().splitlines() or [""])[0]
        raise UvrError(f"{path}: the {fmt} export failed: {type(exc).__name__}: {first}") from None


@contextlib.contextmanager
def exported_file(path: Path) -> Iterator[Path]:
    """uvr_cli.atomic.atomic_file, with its failures as one line naming the export."""
    if not path.parent.is_dir():
        raise UsageError(f"{path}: the folder {path.parent} does not exist")
    try:
        with atomic_file(path) as tmp:
            yield tmp
    except OSError as exc:
        raise UvrError(f"{path}: cannot write the export: {exc.strerror or exc}") from None


def describe(model: Model, fmt: str, precision: str, window: int, primary: str) -> dict:
    """What another runtime needs to drive the exported network (written beside it as JSON)."""
    network, preset = model.loaded.module, model.preset
    rows, offset, step = network.output_bin, network.offset, 2**network.depth
    dtype = "float16" if precision == "fp16" else "float32"
    return {
        "format": fmt,
        **({"opset": OPSET} if fmt == "onnx" else {}),
        "exported_by": f"uvr {__version__}, torch {torch.__version__}",
        "model": {
            "file": model.path.name,
            "md5": model.loaded.md5,
            "uvr_hash": model.identity.uvr_hash,
            "architecture": type(network).__name__,
            "spec": dataclasses.asdict(model.loaded.spec),
        },
        "primary_stem": primary,
        "precision": precision,
        "preset": dataclasses.asdict(preset),
        "split_bin": preset.split_bin,
        "offset": offset,
        "window": window,
        "roi": window - 2 * offset,
        "frames_multiple": step,
        "min_frames": min_frames(offset, network.depth),
        "inputs": [
            {
                "name": "x",
                "dtype": dtype,
                "shape": ["batch", 2, rows, "frames"],
                "meaning": "magnitudes of the preset's combined spectrogram (channels, bins+1 rows, frames) divided "
                "by the song's largest magnitude, so in [0, 1]; frames a multiple of frames_multiple and "
                "at least min_frames",
            },
            {
                "name": "agg",
                "dtype": "float32",
                "shape": [],
                "meaning": "aggressiveness value = uvr's --agg / 100 (RVC's default 0.1): mask ** (1 + agg/3) below "
                "split_bin, ** (1 + agg) from it up; "
                + ("used" if isinstance(network, CascadedASPPNet) else "ignored by CascadedNet (RVC semantics)"),
            },
        ],
        "outputs": [
            {
                "name": "mask",
                "dtype": dtype,
                "shape": ["batch", 2, rows, "frames - 2*offset"],
                "meaning": f"mask in [0, 1] of the primary stem ({primary}) for input frames [offset, frames - "
                "offset): offset frames are trimmed from each side",
            },
        ],
        "conventions": (
            "The song's frames are zero-padded at both ends; window i covers frames [i*roi - offset, i*roi - offset "
            "+ window) and gives the mask of frames [i*roi, (i+1)*roi), roi = window - 2*offset, so each frame is "
            "predicted once with offset frames of context each side. "
            f"{primary} = mask * complex spectrogram; the other stem = mix - {primary}. Row {rows - 1} (the top "
            f"bin) is a copy of row {rows - 2}; high-end rebuilding and band synthesis are the caller's."
        ),
    }
