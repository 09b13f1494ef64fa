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
    from uvr_cli.io.jobs import Job
    from uvr_cli.separator import FileResult, ModelInfo, Separator


class Runner(Protocol):
    """What a run needs of its model: a Separator, or a Chain of them (--then)."""

    @property
    def members_info(self) -> Sequence[ModelInfo]: ...

    @property
    def model_sample_rate(self) -> int: ...

    def separate_file(
        self,
        source: str,
        outputs: dict[str, str],
        *,
        fmt: str = ...,
        bit_depth: str | None = ...,
        sample_rate: str | int = ...,
        bitrate: str | None = ...,
        clip_mode: str = ...,
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
    separator: Runner, job: Job, options: dict, settings: dict, show_progress: bool, verbose: bool, quiet: bool
) -> dict:
    """Run one input; any failure becomes an error record (one stderr line naming the input), never an exception.
    Its settings are recorded beside its outputs only once all of them are written."""
    from uvr_cli import __version__
    from uvr_cli.io.outputs import write_records

    record = new_record(
        job,
        status="error",
        redone_because=job.redo,
        agg_applied=settings["agg"] is not None,
        models=[info.path.name for info in separator.members_info],
        ensemble=settings["ensemble"],
    )
    file_bar = None
    try:
        if job.redo and not quiet:
            say(f"{job.display}: separating again: {job.redo}")
        if show_progress:
            from tqdm import tqdm

            file_bar = tqdm(unit="win", position=1, leave=False, desc=Path(job.display).name, file=sys.stderr)

        def progress(done: int, total: int) -> None:
            if file_bar is not None:
                file_bar.total = total
                file_bar.n = done
                file_bar.refresh()

        result = separator.separate_file(job.source, job.outputs, on_progress=progress, **options)
        write_records(job.source, result.outputs, settings, __version__)
        if not quiet:
            for warning in result.warnings:
                say(f"{job.display}: {warning}")
        record.update(
            status="redone" if job.redo else result.status,
            outputs=result.outputs,
            duration_s=result.duration_s,
            wall_s=round(result.wall_s, 3),
            realtime_factor=result.realtime_factor,
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


def print_records(records: Iterable[dict], as_json: bool, to_stdout: bool, progress: bool, total: int) -> int:
    """Print each record (a JSON line, or its output paths); returns how many inputs failed."""
    import json

    overall = None
    if progress:
        from tqdm import tqdm

        overall = tqdm(total=total, unit="file", position=0, desc="all files", file=sys.stderr)
    failed = 0
    try:
        for record in records:
            failed += record["status"] == "error"
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


def report_model(separator: Separator, settings: dict, agg_given: bool, verbose: bool, quiet: bool) -> dict:
    """Say what was loaded (-v) and whether --agg applies; returns the settings to record beside the outputs."""
    applies = separator.info.uses_aggressiveness
    if agg_given and not applies and not quiet:
        say(
            f"--agg {separator.agg:g} has no effect: {separator.info.path.name} is a CascadedNet model, which "
            "ignores aggressiveness (as in RVC)"
        )
    if verbose:
        info = separator.info
        say(
            f"model {info.path}: {info.spec}, preset {info.preset}, primary stem {info.primary} "
            f"({info.identity.how}); backend {separator.backend}{', --fast' if separator.fast else ''}, "
            f"device {separator.device}, {separator.dtype}, front end {separator.front_end.name}"
        )
        say(
            f"agg {separator.agg:g}{'' if applies else ' (ignored by this model)'}, tta "
            f"{'on' if separator.tta else 'off'}, post-process {'on' if separator.post_process else 'off'}, "
            f"high end {separator.high_end}, window {separator.window}, batch size {separator.batch_size}"
        )
    return {**settings, "agg": settings["agg"] if applies else None}
