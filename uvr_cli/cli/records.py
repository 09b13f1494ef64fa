"""What `uvr separate` reports: one record per input (a JSON line or its output paths), in input order."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from uvr_cli.cli.common import emit, say, stdout_closed
from uvr_cli.errors import UvrError

if TYPE_CHECKING:
    from uvr_cli.engine.device import Runtime
    from uvr_cli.engine.family import ModelInfo
    from uvr_cli.io.jobs import Job
    from uvr_cli.separator import FileResult
    from uvr_cli.settings import OutputOptions, SeparationSettings


class Runner(Protocol):
    """What a run needs of its model: a Separator, or a Chain of them (--then)."""

    @property
    def members_info(self) -> Sequence[ModelInfo]: ...

    @property
    def model_sample_rate(self) -> int: ...

    @property
    def applied(self) -> set[str]: ...

    @property
    def runtime(self) -> Runtime: ...

    def separate_file(
        self,
        source: str,
        outputs: dict[str, str],
        *,
        output: OutputOptions | None = ...,
        on_progress: Callable[[int, int], None] | None = ...,
    ) -> FileResult: ...


RECORD_FIELDS = (
    "input",
    "status",
    "outputs",
    "duration_s",
    "wall_s",
    "realtime_factor",
    "clipped_samples",
    "rescaled_by",
    "error",
    "redone_because",
    "agg_applied",
    "models",
    "ensemble",
)


def new_record(job: Job, **fields: object) -> dict:
    record: dict = {**dict.fromkeys(RECORD_FIELDS), "input": job.display, "outputs": {}, "clipped_samples": {}}
    record.update(fields)
    return record


def separate_one(
    separator: Runner, job: Job, output: OutputOptions, settings: dict, show_progress: bool, verbose: bool, quiet: bool
) -> dict:
    """Run one input; any failure becomes an error record (one stderr line naming the input), never an exception.
    Its settings are recorded beside its outputs only once all of them are written."""
    from uvr_cli import __version__
    from uvr_cli.io.outputs import write_records

    record = new_record(
        job,
        status="error",
        redone_because=job.redo,
        models=[info.path.name for info in separator.members_info],
        ensemble=settings["ensemble"],
    )
    file_bar = None
    try:
        if job.redo and not quiet:
            say(f"{job.display}: separating again: {job.redo}")
        if show_progress:
            from tqdm import tqdm

            file_bar = tqdm(unit="window", position=1, leave=False, desc=Path(job.display).name, file=sys.stderr)

        def progress(done: int, total: int) -> None:
            if file_bar is not None:
                file_bar.total = total
                file_bar.n = done
                file_bar.refresh()

        result = separator.separate_file(job.source, job.outputs, output=output, on_progress=progress)
        write_records(job.source, result.outputs, settings, __version__)
        if not quiet:
            for warning in result.warnings:
                say(f"{job.display}: {warning}")
        record.update(
            status="redone" if job.redo else result.status,
            outputs=result.outputs,
            duration_s=None if result.duration_s is None else round(result.duration_s, 6),  # whole microseconds
            wall_s=round(result.wall_s, 3),
            realtime_factor=None if result.realtime_factor is None else round(result.realtime_factor, 3),
            agg_applied=settings["agg"] is not None,  # only where something was separated
            clipped_samples=result.clipped_samples,
            rescaled_by=result.rescaled_by,
        )
        if verbose:
            say(f"{job.display}: {record['status']} in {result.wall_s:.1f} s")
    except (UvrError, MemoryError, RuntimeError, ValueError, OSError) as exc:
        if stdout_closed(exc):
            raise BrokenPipeError from exc  # the reader went away: the run ends quietly with 141
        # Errors of torch, numpy or the OS that no check foresaw are still one line, and the batch goes on.
        first = str(exc).splitlines()[0] if str(exc) else "failed"
        message = first if isinstance(exc, UvrError) else f"{type(exc).__name__}: {first}"
        message = message if job.display in message else f"{job.display}: {message}"
        say(message)
        if verbose and not isinstance(exc, UvrError):
            traceback.print_exc(file=sys.stderr)
        record["error"] = message
    finally:
        if file_bar is not None:
            file_bar.close()
    return record


def report(jobs: list[Job], results: Iterator[dict]) -> Iterator[dict]:
    """One record per input, in input order: answered ones at once, the others as `results` yields them."""
    for job in jobs:
        if job.error:
            say(job.error)
            yield new_record(job, status="error", error=job.error)
        elif job.done:
            yield new_record(job, status="skipped", outputs=dict(job.outputs))
        else:
            yield next(results)


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
