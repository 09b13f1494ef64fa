"""The settings record beside each output of `uvr separate`: everything that changes the samples written."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

from uvr_cli.cli.common import LOSSY_FORMATS


def _params_key(params: str | None) -> str:
    """--params as recorded beside the outputs: 'auto', a shipped name, or a preset file by its contents."""
    if params is None:
        return "auto"
    path = Path(params)
    if path.is_file() and (len(path.parts) > 1 or path.suffix == ".json"):
        return f"{path.name} (md5 {hashlib.md5(path.read_bytes()).hexdigest()})"
    return params


def settings_record(
    o: SimpleNamespace, model_paths: list[Path], steps: list[tuple[Path, str]], rate: str | int, depth: str | None
) -> dict:
    """What the settings record beside each output holds: everything that changes the samples written."""
    from uvr_cli.catalog.registry import uvr_model_hash
    from uvr_cli.engine.families.vr.fast import mode_defaults

    backend, window = mode_defaults(o.fast, o.backend.value if o.backend else None, o.window)
    return {
        "model": "+".join(uvr_model_hash(p) for p in model_paths),
        "ensemble": o.ensemble if len(model_paths) > 1 else None,
        "then": [f"{uvr_model_hash(path)}:{split}" for path, split in steps] or None,
        "fast": o.fast,
        "backend": backend,
        "params": _params_key(o.params),
        "primary": o.primary or "auto",
        "agg": o.agg,
        "tta": o.tta,
        "post_process": o.post_process,
        "high_end": o.high_end.value,
        "window": window,
        "precision": o.precision,
        "front_end": o.front_end.value,
        "format": o.fmt.value,
        "bit_depth": depth or "input",
        "sample_rate": rate,
        "bitrate": (o.bitrate or "default") if o.fmt.value in LOSSY_FORMATS else None,
        "clip_mode": o.clip_mode.value,
    }
