"""`uvr export`: a model's network as ONNX or TorchScript, with a JSON description beside it (engine/export.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from uvr_cli.cli.common import emit, fail, say
from uvr_cli.errors import UsageError, UvrError

if TYPE_CHECKING:
    from uvr_cli.settings import ModelOptions


def export(
    model: str = typer.Argument(
        ..., help="Weight file (.pth), the name of a downloaded model (see `uvr models`), or default."
    ),
    out: str = typer.Option(
        ...,
        "-o",
        "--out",
        help="Output file: FILE.onnx (ONNX, opset 18) or FILE.pt (TorchScript); FILE.onnx.json / FILE.pt.json describes it.",
    ),
    params: str | None = typer.Option(
        None,
        "--params",
        help="Band preset name or JSON path; needed only for unrecognised files (its split_bin is baked into the aggressiveness).",
    ),
    precision: str = typer.Option(
        "fp32", "--precision", help="fp32 or fp16 (weights, input and mask in half precision: for GPU runtimes)."
    ),
    window: int = typer.Option(
        512,
        "--window",
        help="Window in frames recorded as the one to use and traced with (batch and frame axes stay dynamic).",
    ),
    primary: str | None = typer.Option(
        None, "--primary", help="What the mask keeps, for unknown files: instrumental (default) or vocals."
    ),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress lines on stderr."),
) -> None:
    """Export a model's network for other runtimes (ONNX Runtime, TensorRT, LibTorch...).

    The exported network maps normalised magnitudes x (batch, 2, bins+1, frames) and the aggressiveness agg
    (--agg / 100) to the mask of the primary stem with the model's offset frames trimmed from each side; the
    JSON beside it names the preset, offset, window, primary stem and the tensors. Prints the written paths.
    """
    path = Path(out)
    try:
        from uvr_cli.settings import ModelOptions

        options = ModelOptions(params=params, primary=primary, window=window)
        if precision not in ("fp32", "fp16"):
            raise UsageError(f"--precision {precision!r}: use fp32 or fp16")
        if path.suffix.lower() not in (".onnx", ".pt"):
            raise UsageError(f"{path}: the output must end in .onnx (ONNX) or .pt (TorchScript)")
        written = _export(model, path, options, precision, quiet)
    except UvrError as exc:
        raise fail(exc) from None
    for line in written:
        emit(line)


def _export(model: str, path: Path, options: ModelOptions, precision: str, quiet: bool) -> list[str]:
    """Export with a line before the slow part (tracing takes seconds) and one after it."""
    import time

    from uvr_cli.catalog.models import resolve_model
    from uvr_cli.engine.families import family_of

    source = resolve_model(model)
    start = time.perf_counter()
    written = family_of(source).export(source, path, options, precision, note=None if quiet else say)
    if not quiet:
        say(f"exported in {time.perf_counter() - start:.0f} s")
    return written
