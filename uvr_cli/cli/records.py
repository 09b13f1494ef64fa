"""What `uvr separate` reports: one record per input (a JSON line or its output paths), in input order."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

from uvr_cli.batch import Runner
from uvr_cli.cli.common import emit, say

if TYPE_CHECKING:
    from uvr_cli.settings import SeparationSettings


CLIP_REMEDY = (
    "clipped samples: --clip-mode rescale scales an input's stems so that none clips, --format wav --bit-depth 32f "
    "keeps them as they are"
)


def print_records(
    records: Iterable[dict], as_json: bool, to_stdout: bool, progress: bool, total: int, quiet: bool
) -> int:
    """Print each record (a JSON line, or its output paths), and the remedy for clipping after the first input that
    clipped (once a run: each input's warning says how much); returns how many inputs failed."""
    import json

    overall = None
    if progress:
        from tqdm import tqdm

        overall = tqdm(total=total, unit="file", position=0, desc="all files", file=sys.stderr)
    failed = 0
    remedy_due = not quiet
    try:
        for record in records:
            failed += record["status"] == "error"
            if remedy_due and record["clipped_samples"]:
                say(CLIP_REMEDY)
                remedy_due = False
            if as_json:
                emit(json.dumps(record))
            elif not to_stdout:
                for path in record["outputs"].values():
                    emit(path)
            if overall is not None:
                overall.update(1)
    finally:
        if overall is not None:
            overall.close()
    return failed


def report_model(runner: Runner, settings: SeparationSettings, verbose: bool, quiet: bool) -> dict:
    """Say what was loaded (-v) and which given options shape no model; returns the settings record to write beside
    the outputs, with those options recorded as not applying."""
    applied = runner.applied
    first = runner.members_info[0]
    if not quiet:
        for name in sorted(settings.given - applied):
            value = getattr(settings.options, name)
            text = f"{value:g}" if isinstance(value, float) else "" if isinstance(value, bool) else f"{value}"
            option = f"--{name.replace('_', '-')}{' ' + text if text else ''}"
            say(f"{option} has no effect: {first.no_effect(name)}")
    if verbose:
        for info in runner.members_info:
            say(
                f"model {info.path}: {info.family}, {info.architecture}, {info.setup}, primary stem {info.primary} "
                f"({info.identity.how})"
            )
        runtime = runner.runtime
        # ONNX Runtime's precision is each model's (named in its line above); torch's is the run's.
        dtype = f", {str(runtime.dtype).removeprefix('torch.')}" if runtime.backend == "torch" else ""
        say(
            f"backend {runtime.backend}{', --fast' if runtime.fast else ''}, device {runtime.device}{dtype}, "
            f"front end {runtime.front_end.name}, batch size {runtime.batch_size}"
        )
        o = settings.options
        shown = {
            "agg": f"agg {o.agg:g}",
            "tta": f"tta {'on' if o.tta else 'off'}",
            "post_process": f"post-process {'on' if o.post_process else 'off'}",
            "high_end": f"high end {o.high_end}",
            "window": f"window {o.window_for(settings.runtime.fast)}",
            "segment": f"segment {o.segment}",
            "overlap": f"overlap {o.overlap:g}",
            "denoise": f"denoise {'on' if o.denoise else 'off'}",
        }
        say(", ".join(text for name, text in shown.items() if name in applied))
    return settings.record(applied)
