"""A batch of inputs, whoever drives it (the command line, -j workers, Ray): which inputs need the model, and
each one separated into a record, the same dict that `uvr separate --json` prints."""

from __future__ import annotations

import difflib
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from uvr_cli.errors import UsageError, UvrError

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
    separator: Runner,
    job: Job,
    output: OutputOptions,
    settings: dict,
    show_progress: bool,
    verbose: bool,
    quiet: bool,
    say: Callable[[str], None],
) -> dict:
    """Run one input; any failure becomes an error record (one line to `say`, naming the input), never an
    exception. Its settings are recorded beside its outputs only once all of them are written."""
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
        from uvr_cli.io.encode import StdoutClosed

        if isinstance(exc, (StdoutClosed, BrokenPipeError)):
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


def in_input_order(jobs: list[Job], results: Iterator[dict], say: Callable[[str], None]) -> Iterator[dict]:
    """One record per input, in input order: failed and finished inputs answered at once (a failed one's line to
    `say`), the others as `results` yields them."""
    for job in jobs:
        if job.error:
            say(job.error)
            yield new_record(job, status="error", error=job.error)
        elif job.done:
            yield new_record(job, status="skipped", outputs=dict(job.outputs))
        else:
            yield next(results)


def wanted_stems(settings: SeparationSettings, asked: list[str] | None) -> list[str]:
    """The stems to write: those asked for (--stem, checked against what the models give), else all of them;
    known without loading the models."""
    from uvr_cli.catalog.model_config import common_stems, stems_of

    given = common_stems([stems_of(path, settings.options.config) for path in settings.model_paths()])
    if not asked or "all" in asked:
        return list(given)
    unknown = [stem for stem in asked if stem not in given]
    if unknown:
        close = difflib.get_close_matches(unknown[0], given, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"--stem {unknown[0]}: the model gives {', '.join(given)}{hint}")
    return list(dict.fromkeys(asked))


def name_outputs(jobs: list[Job], settings: SeparationSettings, out_dir: str, template: str, stems: list[str]) -> None:
    """Fill each job's outputs from `template` (io/jobs.plan_outputs), where two inputs would write one file,
    failing one that cannot be decoded as the run would decode it rather than refusing the batch."""
    from uvr_cli.io.decode import why_unreadable
    from uvr_cli.io.jobs import model_label, plan_outputs

    plan_outputs(
        jobs,
        out_dir=out_dir,
        template=template,
        stems=stems,
        model=model_label(list(settings.models) or [None]),
        agg=settings.options.agg,
        ext=settings.output.fmt,
        unreadable=lambda source: why_unreadable(source, settings.output.allow_truncated),
    )


def plan_work(jobs: list[Job], record: dict, skip_existing: bool) -> list[Job]:
    """Mark each input whose outputs are complete and match `record` as done, and note why others are redone.
    Returns the inputs that need the model."""
    from uvr_cli.io.outputs import check_existing

    work = []
    for job in jobs:
        if job.error:
            continue
        existing = check_existing(job.source, job.outputs, record)
        if skip_existing and existing.complete:
            job.done = True
            continue
        job.redo = existing.reason if skip_existing else None
        work.append(job)
    return work
