"""`uvr separate`: check the options, plan which inputs need work, drive `Separator` for those, report each input.

The order matters to users: every refusal that needs no model (options, names, an output folder that cannot be
written or is too small) comes before torch is imported, and an input whose outputs are already there, made with
these very settings, is answered from their records without loading the model at all.
"""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

import typer

from uvr_cli.cli.common import (
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    LOSSY_FORMATS,
    STEMS,
    Backend,
    BitDepth,
    ClipMode,
    Format,
    FrontEndChoice,
    HighEnd,
    StemChoice,
    closed_pipe_exit,
    fail,
    say,
)
from uvr_cli.cli.records import Runner, print_records, report, report_model, separate_one
from uvr_cli.cli.settings_record import settings_record
from uvr_cli.errors import UsageError, UvrError
from uvr_cli.io.jobs import STDIN

if TYPE_CHECKING:
    from uvr_cli.chain import Chain
    from uvr_cli.io.jobs import Job
    from uvr_cli.separator import Separator


def _on_sigterm(signum: int, frame: object) -> None:
    # Unwind like Ctrl-C so that temporary files are removed by the writers' cleanup, then exit 143.
    raise SystemExit(128 + signum)


def _parse_rate(text: str) -> str | int:
    if text in ("input", "model"):
        return text
    try:
        rate = int(text)
    except ValueError:
        raise UsageError(f"--sample-rate {text!r}: use input, model or a rate in Hz such as 44100") from None
    if not 1000 <= rate <= 768000:
        raise UsageError(f"--sample-rate {rate}: use a rate between 1000 and 768000 Hz")
    return rate


def _check_output_options(
    fmt: str, bit_depth: str | None, rate: str | int, bitrate: str | None, out: str, as_json: bool
) -> None:
    """Refuse impossible output choices before the model is loaded (the input's own rate is checked per file)."""
    from uvr_cli.io.encode import output_subtype

    if bit_depth is not None and fmt in LOSSY_FORMATS:
        raise UsageError(f"--bit-depth applies to wav and flac; {fmt} has no bit depth")
    output_subtype(fmt, bit_depth, rate if isinstance(rate, int) else 44100, 2, bitrate=bitrate)
    if out == "-":
        if as_json:
            raise UsageError("--json and -o - both write to standard output; choose one")
        if sys.stdout.isatty():
            raise UsageError("-o - writes audio to standard output, which is a terminal; pipe it or redirect it")


def _model_rate_guess(params: str | None) -> int:
    """The model's rate for size estimates before it is loaded: the named preset's, else 44100 (most presets')."""
    from uvr_cli.catalog.presets import load_preset

    try:
        return load_preset(params).sr if params else 44100
    except UvrError:
        return 44100  # loading the model reports the bad preset


def _plan_work(jobs: list[Job], settings: dict, skip_existing: bool) -> list[Job]:
    """Mark each input whose outputs are complete and match `settings` as done, and note why others are redone.
    Returns the inputs that need the model."""
    from uvr_cli.io.outputs import check_existing

    work = []
    for job in jobs:
        if job.error:
            continue
        existing = check_existing(job.source, job.outputs, settings)
        if skip_existing and existing.complete:
            job.done = True
            continue
        job.redo = existing.reason if skip_existing else None
        work.append(job)
    return work


def _check_room(work: list[Job], fmt: str, depth: str | None, rate: str | int, params: str | None) -> None:
    """Before any separation: every output folder can be made and written and has room (else one line, exit 1)."""
    from uvr_cli.io.outputs import check_room, estimate_bytes

    model_rate = _model_rate_guess(params)
    planned = []
    for job in work:
        size = (
            estimate_bytes(job.source, stems=1, fmt=fmt, bit_depth=depth, rate=rate, model_rate=model_rate)
            if job.source != "-"
            else 0
        )
        planned += [(path, size) for path in job.outputs.values()]
    check_room(planned)


def separate(
    ctx: typer.Context,
    inputs: list[str] = typer.Argument(
        ...,
        help="Audio files, folders (searched recursively), quoted glob patterns such as 'songs/**/*.flac', or - for standard input.",
    ),
    model: list[str] | None = typer.Option(
        None,
        "-m",
        "--model",
        help="Weight file (.pth), the name of a downloaded model (see `uvr models`), or default (the bundled model, also used without -m). Repeat -m for an ensemble.",
    ),
    then: list[str] | None = typer.Option(
        None,
        "--then",
        help="MODEL[:STEM]: run MODEL on STEM (default vocals) of the step before, in the same run; repeatable. A step's stems are named after what each side holds, e.g. vocals-no-echo and vocals-echo.",
    ),
    ensemble: str = typer.Option(
        "avg",
        "--ensemble",
        help="How an ensemble's stems combine: avg (of the waves), max or min (per-bin magnitude), or VOCALS/INSTRUMENTAL such as max/min.",
    ),
    params: str | None = typer.Option(
        None,
        "--params",
        help="Band preset name (e.g. 4band_v2; `uvr presets` lists them) or JSON path; needed only for unrecognised files.",
    ),
    agg: float = typer.Option(
        10,
        "--agg",
        help="Aggressiveness 0-100; RVC semantics: mask exponent 1+N/100 above the first band (1+N/300 below). 10 is RVC's default. CascadedNet models ignore it.",
    ),
    out: str = typer.Option(
        ".",
        "-o",
        "--out",
        help="Output folder (created if needed), or - to write one stem to standard output (needs --stem).",
    ),
    name: str = typer.Option(
        "{name}_{stem}.{ext}",
        "--name",
        help="Output file name template: {name} (input file stem), {stem}, {model}, {agg}, {ext}, {dir} (the input's sub-folder below a folder argument or a pattern's fixed part).",
    ),
    stem: StemChoice = typer.Option(
        "all", "--stem", help="Which stems to write; one stem skips synthesising the other."
    ),
    fmt: Format = typer.Option("wav", "-f", "--format", help="Output format."),
    bit_depth: BitDepth | None = typer.Option(
        None, "--bit-depth", help="16, 24 or 32f (float; wav only). Default: the input's, where the format allows."
    ),
    bitrate: str | None = typer.Option(
        None, "--bitrate", help="mp3/ogg bitrate in kbit/s, e.g. 192k (default 320k, or the highest the rate allows)."
    ),
    clip_mode: ClipMode = typer.Option(
        "clip",
        "--clip-mode",
        help="Samples beyond full scale: clip (default; counted) or rescale (both stems of an input scaled by one factor so that none clips; the factor on stderr and in --json). 32-bit float keeps them as they are.",
    ),
    sample_rate: str = typer.Option(
        "input", "--sample-rate", help="input (default), model (the preset's rate) or a rate in Hz."
    ),
    skip_existing: bool = typer.Option(
        True,
        "--skip-existing/--overwrite",
        help="Skip inputs whose outputs all exist and were made with the same settings (default; others are separated again, with a line saying why), or overwrite them.",
    ),
    tta: bool = typer.Option(
        False,
        "--tta",
        help="Test-time augmentation: a second pass shifted by half a window, averaged (slower, slightly better).",
    ),
    post_process: bool = typer.Option(
        False, "--post-process", help="RVC's post-processing: returns quiet vocal residue to the instrumental."
    ),
    high_end: HighEnd = typer.Option(
        "mirroring",
        "--high-end",
        help="Rebuild the top band's highest bins: mirroring (RVC's default), mirroring2, or none.",
    ),
    primary: str | None = typer.Option(
        None, "--primary", help="Label of the mask's stem for unknown models: instrumental (default) or vocals."
    ),
    fast: bool = typer.Option(
        False,
        "--fast",
        help="About 3x faster on the CPU, stems a little different: int8 convolutions in ONNX Runtime (the onnx extra; prepared once per model, about a minute) and windows of up to 1536 frames, fitted to the song.",
    ),
    window: int | None = typer.Option(
        None,
        "--window",
        help="Network window in frames (default 512, as in RVC and UVR; with --fast up to 1536, fitted to each song).",
    ),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        help="Windows per network call (default: 1 on the CPU, 8 on a GPU; more is faster on a GPU and needs more memory).",
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option(
        "auto",
        "--precision",
        help="auto (fp32 on CPU, fp16 on GPU, int8 on CPU with --fast), fp32, fp16, bf16 (torch) or int8 (onnxruntime).",
    ),
    backend: Backend | None = typer.Option(
        None,
        "--backend",
        help="What runs the network: torch (default), or onnxruntime (the onnx extra; the network is exported once, about a minute, and cached; the default with --fast).",
    ),
    front_end: FrontEndChoice = typer.Option(
        FrontEndChoice.auto,
        "--front-end",
        help="Where the STFT, iSTFT and resampling run: auto (torch on a CUDA GPU, numpy otherwise), numpy, or torch (on --device; the same transforms, stems within -120 dB).",
    ),
    jobs_count: int = typer.Option(
        1,
        "-j",
        "--jobs",
        help="Worker processes, each with its own model and a share of the cores: faster for many short files.",
    ),
    batch_files: int | None = typer.Option(
        None,
        "--batch-files",
        help="Files separated at once in this process, their network windows run in shared batches (default: 4 on a GPU, 1 on the CPU): for folders of short clips on a GPU.",
    ),
    shard: str | None = typer.Option(
        None,
        "--shard",
        help="K/N: process only share K of N of the inputs (by a hash of each path), to spread a corpus over N machines or jobs.",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object per input on stdout instead of output paths."
    ),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bars or warnings."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Details on stderr: model, preset, device, timings."),
) -> None:
    """Separate songs into vocals and instrumental.

    Prints each written (or already present) output path on stdout. Beside each output a hidden .NAME.uvr.json
    records the settings that made it; a rerun skips an input only when these match.
    """
    signal.signal(signal.SIGTERM, _on_sigterm)
    options = SimpleNamespace(**ctx.params)  # the options above, by name
    try:
        plan = _plan(options)
    except UvrError as exc:
        raise fail(exc) from None
    source = ctx.get_parameter_source("agg")
    agg_given = source is not None and source.name == "COMMANDLINE"
    results = _start(plan, options, agg_given) if plan.work else iter(())
    try:
        failed = print_records(
            report(plan.jobs, results),
            options.as_json,
            options.out == STDIN,
            sys.stderr.isatty() and not options.quiet,
            len(plan.jobs),
        )
    except BrokenPipeError:
        raise closed_pipe_exit() from None
    except KeyboardInterrupt:
        say("interrupted; finished outputs are kept, none is left half-written")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    raise typer.Exit(EXIT_SOME_FAILED if failed else EXIT_OK)


separate.__doc__ = f"{separate.__doc__}\n    {EXIT_CODES_HELP}\n"


@dataclass
class _Plan:
    """What a run will do, decided before torch is imported (unless a chain needs its models to name outputs)."""

    jobs: list[Job]
    work: list[Job]
    settings: dict
    separator_options: dict
    check_rate: Callable[[int], None]
    steps: list[tuple[Path, str]]
    separator: Runner | None


def _plan(o: SimpleNamespace) -> _Plan:
    """Expand the inputs, name the outputs, find what is already done, and check everything that can be checked."""
    from uvr_cli.catalog.models import resolve_model
    from uvr_cli.engine.ensemble import parse as ensemble_algorithms
    from uvr_cli.io.jobs import expand_inputs, model_label, parse_shard, plan_outputs, select_shard

    if o.jobs_count < 1:
        raise UsageError("--jobs must be at least 1")
    if o.batch_files is not None and o.batch_files < 1:
        raise UsageError("--batch-files must be at least 1")
    if o.jobs_count > 1 and (o.batch_files or 1) > 1:
        raise UsageError("-j runs files in worker processes, --batch-files in threads of one: use one of them")
    rate = _parse_rate(o.sample_rate)
    depth = o.bit_depth.value if o.bit_depth else None
    _check_output_options(o.fmt.value, depth, rate, o.bitrate, o.out, o.as_json)
    if STDIN in o.inputs and sys.stdin.isatty():
        raise UsageError("- reads audio from standard input, which is a terminal; pipe audio into uvr")
    stems = list(STEMS) if o.stem.value == "all" else [o.stem.value]
    jobs = expand_inputs(o.inputs)
    models: Sequence[str | None] = o.model or [None]
    if len(models) > 1:
        ensemble_algorithms(o.ensemble)  # a usage error before any work
    model_paths = [resolve_model(m) for m in models]
    separator_options = dict(
        model=model_paths if len(model_paths) > 1 else model_paths[0],
        ensemble=o.ensemble,
        params=o.params,
        agg=o.agg,
        tta=o.tta,
        high_end=o.high_end.value,
        post_process=o.post_process,
        primary=o.primary,
        window=o.window,
        batch_size=o.batch_size,
        device=o.device,
        precision=o.precision,
        backend=o.backend.value if o.backend else None,
        fast=o.fast,
        front_end=o.front_end.value,
        on_note=None if o.quiet else say,
    )
    check_rate = functools.partial(_check_model_rate, o.fmt.value, depth, rate, o.bitrate, o.out, o.as_json)
    steps = [_then_step(text) for text in o.then or []]
    separator = None
    if steps:  # a chain's stem names come from its models: load them before planning
        if o.jobs_count > 1 or (o.batch_files or 1) > 1 or o.stem.value != "all":
            raise UsageError(
                "--then runs one file at a time and writes every stem of the chain: leave out -j, --batch-files "
                "and --stem"
            )
        chain = _load(separator_options, check_rate, steps)
        separator, stems = chain, cast("Chain", chain).stems  # _load gives a Chain whenever there are steps
    plan_outputs(
        jobs, out_dir=o.out, template=o.name, stems=stems, model=model_label(models), agg=o.agg, ext=o.fmt.value
    )
    if o.shard is not None:  # after planning, so that name collisions are found across the whole corpus
        jobs = select_shard(jobs, *parse_shard(o.shard))
    settings = settings_record(o, model_paths, steps, rate, depth)
    work = _plan_work(jobs, settings, o.skip_existing)
    if work:
        _check_room(work, o.fmt.value, depth, rate, o.params)
    return _Plan(jobs, work, settings, separator_options, check_rate, steps, separator)


def _start(plan: _Plan, o: SimpleNamespace, agg_given: bool) -> Iterator[dict]:
    """Load the model(s) and separate the work, in this process or in -j workers; yields records in input order."""
    from uvr_cli.chain import Chain  # after the checks: it imports torch

    separator = plan.separator or _load(plan.separator_options, plan.check_rate, plan.steps)
    first = separator.first if isinstance(separator, Chain) else separator
    settings = report_model(cast("Separator", first), plan.settings, agg_given, o.verbose, o.quiet)
    depth = o.bit_depth.value if o.bit_depth else None
    options = dict(
        fmt=o.fmt.value,
        bit_depth=depth,
        sample_rate=_parse_rate(o.sample_rate),
        bitrate=o.bitrate,
        clip_mode=o.clip_mode.value,
    )
    task = functools.partial(separate_one, options=options, settings=settings, verbose=o.verbose, quiet=o.quiet)
    streams = o.out == STDIN or any(job.source == STDIN for job in plan.jobs)
    if o.jobs_count > 1 and len(plan.work) > 1 and not streams:
        from uvr_cli.cli.parallel import map_jobs

        del separator  # each worker loads its own
        return map_jobs(
            plan.separator_options,
            functools.partial(task, show_progress=False),
            plan.work,
            min(o.jobs_count, len(plan.work)),
        )
    files = o.batch_files or (1 if cast("Separator", first).device.type == "cpu" else 4)
    if files > 1 and len(plan.work) > 1 and not streams and not isinstance(separator, Chain):
        together = cast("Separator", separator).map_together
        return together(functools.partial(task, show_progress=False), plan.work, files)
    show_progress = sys.stderr.isatty() and not o.quiet
    return (task(separator, job, show_progress=show_progress) for job in plan.work)


def _then_step(text: str) -> tuple[Path, str]:
    """--then MODEL[:STEM] -> the model's file and the stem it splits (vocals unless named)."""
    from uvr_cli.catalog.models import resolve_model

    model, _, split = text.rpartition(":") if ":" in text and "/" not in text.rpartition(":")[2] else (text, "", "")
    return resolve_model(model), split or "vocals"


def _check_model_rate(
    fmt: str, depth: str | None, rate: str | int, bitrate: str | None, out: str, as_json: bool, model_rate: int
) -> None:
    """With --sample-rate model, the output checks once the model's rate is known."""
    if rate == "model":
        _check_output_options(fmt, depth, model_rate, bitrate, out, as_json)


def _load(separator_options: dict, check_rate, steps: list[tuple[Path, str]]) -> Separator | Chain:
    """Import torch and load the model (and a chain's further models), once every check that needs neither passed."""
    try:
        from uvr_cli.chain import Chain, Step
        from uvr_cli.separator import Separator

        separator = Separator(**separator_options)
        check_rate(separator.model_sample_rate)
        if steps:
            further = [
                Step(Separator(**{**separator_options, "model": path, "ensemble": "avg"}), split)
                for path, split in steps
            ]
            return Chain(separator, further)
        return separator
    except UvrError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:  # e.g. while torch is imported or the model loads: not click's bare "Aborted!"
        say("interrupted before any input was separated; nothing was written")
        raise typer.Exit(EXIT_INTERRUPTED) from None
