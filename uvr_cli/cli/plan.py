"""What `uvr separate` will do, decided before torch is imported: the inputs expanded, their outputs named,
those already made found, and every check that needs no model passed (a chain's models are loaded to name its
outputs)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

import typer

from uvr_cli.batch import Runner, name_outputs, plan_work, wanted_stems
from uvr_cli.cli.common import EXIT_INTERRUPTED, fail, say
from uvr_cli.errors import UsageError, UvrError
from uvr_cli.io.jobs import STDIN
from uvr_cli.settings import OutputOptions, SeparationSettings

if TYPE_CHECKING:
    from uvr_cli.chain import Chain
    from uvr_cli.io.jobs import Job
    from uvr_cli.separator import Separator


def _check_streams(out: str, as_json: bool) -> None:
    """-o - writes audio to standard output: not with --json, not to a terminal."""
    if out == STDIN:
        if as_json:
            raise UsageError("--json and -o - both write to standard output; choose one")
        if sys.stdout.isatty():
            raise UsageError("-o - writes audio to standard output, which is a terminal; pipe it or redirect it")


def _model_rate_guess(params: str | None) -> int:
    """The model's rate for size estimates before it is loaded: the named preset's, else 44100 (most models')."""
    from uvr_cli.catalog.presets import load_preset

    try:
        return load_preset(params).sr if params else 44100
    except UvrError:
        return 44100  # loading the model reports the bad preset, or reads --params as MDX-Net data


def _check_room(work: list[Job], output: OutputOptions, params: str | None) -> None:
    """Before any separation: every output folder can be made and written and has room (else one line, exit 1)."""
    from uvr_cli.io.outputs import check_room, estimate_bytes

    model_rate = _model_rate_guess(params)
    planned = []
    for job in work:
        size = (
            estimate_bytes(
                job.source,
                stems=1,
                fmt=output.fmt,
                bit_depth=output.bit_depth,
                rate=output.sample_rate,
                model_rate=model_rate,
            )
            if job.source != STDIN
            else 0
        )
        planned += [(path, size) for path in job.outputs.values()]
    check_room(planned)


@dataclass
class Plan:
    """What a run will do, decided before torch is imported (unless a chain needs its models to name outputs)."""

    jobs: list[Job]
    work: list[Job]
    settings: SeparationSettings
    separator: Runner | None


def check_workers(o: SimpleNamespace) -> None:
    """-j, --batch-files and --ray: each valid, and not two ways of running files side by side at once."""
    if o.jobs_count < 1:
        raise UsageError("--jobs must be at least 1")
    if o.batch_files is not None and o.batch_files < 1:
        raise UsageError("--batch-files must be at least 1")
    if o.jobs_count > 1 and (o.batch_files or 1) > 1:
        raise UsageError("-j runs files in worker processes, --batch-files in threads of one: use one of them")
    if o.ray_address is not None and ((o.batch_files or 1) > 1 or o.then or o.out == STDIN or STDIN in o.inputs):
        raise UsageError(
            "--ray separates files into an output folder, one per worker: leave out --batch-files, "
            "--then, and - for standard input or output"
        )


def make_plan(o: SimpleNamespace, settings: SeparationSettings) -> Plan:
    """Expand the inputs, name the outputs, find what is already done, and check everything that can be checked."""
    from uvr_cli.io.jobs import expand_inputs, parse_shard, select_shard

    _check_streams(o.out, o.as_json)
    if STDIN in o.inputs and sys.stdin.isatty():
        raise UsageError("- reads audio from standard input, which is a terminal; pipe audio into uvr")
    jobs = expand_inputs(o.inputs)
    stems = wanted_stems(settings, o.stem)
    separator = None
    if settings.then:  # a chain's stem names come from its models: load them before planning
        if o.jobs_count > 1 or (o.batch_files or 1) > 1 or o.stem:
            raise UsageError(
                "--then runs one file at a time and writes every stem of the chain: leave out -j, --batch-files "
                "and --stem"
            )
        settings.step_paths()  # a missing step model is a usage error before any loading
        chain = load_runner(settings, o.quiet)
        separator, stems = chain, list(cast("Chain", chain).stems)  # load_runner gives a Chain whenever there are steps
    name_outputs(jobs, settings, o.out, o.name, stems)
    if o.shard is not None:  # after planning, so that name collisions are found across the whole corpus
        k, n, found = parse_shard(o.shard, os.environ)
        if found and not o.quiet:
            say(found)
        jobs = select_shard(jobs, k, n)
    work = plan_work(jobs, settings.record(), o.skip_existing)
    if work:
        _check_room(work, settings.output, o.params)
    return Plan(jobs, work, settings, separator)


def load_runner(settings: SeparationSettings, quiet: bool) -> Separator | Chain:
    """Import torch and load the model (and a chain's further models), once every check that needs neither passed."""
    note = None if quiet else say
    try:
        from uvr_cli.chain import Chain, Step
        from uvr_cli.separator import Separator

        separator = Separator(settings=settings, on_note=note)
        settings.output.check_model_rate(separator.model_sample_rate)
        if settings.then:
            further = [
                Step(Separator(settings=settings.replace(models=(str(path),), ensemble="avg"), on_note=note), split)
                for path, split in settings.step_paths()
            ]
            return Chain(separator, further)
        return separator
    except UvrError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:  # e.g. while torch is imported or the model loads: not click's bare "Aborted!"
        say("interrupted before any input was separated; nothing was written")
        raise typer.Exit(EXIT_INTERRUPTED) from None
