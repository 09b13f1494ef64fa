"""`uvr separate`: its options into typed settings, a plan of which inputs need work (plan.py), `Separator` driven
for those, each input reported.

The order matters to users: every refusal that needs no model (options, names, an output folder that cannot be
written or is too small) comes before torch is imported, and an input whose outputs are already there, made with
these very settings, is answered from their records without loading the model at all.
"""

from __future__ import annotations

import dataclasses
import functools
import signal
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

import typer

from uvr_cli.batch import in_input_order, separate_one
from uvr_cli.cli.common import (
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    Backend,
    BitDepth,
    ClipMode,
    Format,
    FrontEndChoice,
    HighEnd,
    closed_pipe_exit,
    fail,
    say,
)
from uvr_cli.cli.plan import Plan, check_workers, load_runner, make_plan
from uvr_cli.cli.records import print_records, report_model
from uvr_cli.errors import UvrError
from uvr_cli.io.jobs import DEFAULT_NAME, STDIN
from uvr_cli.settings import (
    DEFAULT_OVERLAP,
    DEFAULT_SEGMENT,
    ModelOptions,
    OutputOptions,
    RuntimeOptions,
    SeparationSettings,
    parse_then,
)

if TYPE_CHECKING:
    from uvr_cli.separator import Separator


def _on_sigterm(signum: int, frame: object) -> None:
    # Unwind like Ctrl-C so that temporary files are removed by the writers' cleanup, then exit 143.
    raise SystemExit(128 + signum)


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
        DEFAULT_NAME,
        "--name",
        help="Output file name template: {name} (input file stem), {stem}, {model}, {agg}, {ext} (the output format's), {inext} (the input's extension), {dir} (the input's sub-folder below a folder argument or a pattern's fixed part).",
    ),
    stem: list[str] | None = typer.Option(
        None,
        "--stem",
        help="A stem to write (repeatable; default all the model gives: vocals and instrumental, or the stems an MDX23C/RoFormer config names). Stems not asked for are not synthesised.",
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
    allow_truncated: bool = typer.Option(
        False,
        "--allow-truncated",
        help="Separate what a truncated or damaged input holds (decoded by ffmpeg as far as it goes), with a warning "
        "giving how much, instead of refusing it.",
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
    force_params: bool = typer.Option(
        False,
        "--force-params",
        help="Use --params even for a model uvr knows by its hash (whose own parameters it otherwise keeps).",
    ),
    primary: str | None = typer.Option(
        None, "--primary", help="Label of the mask's stem for unknown models: instrumental (default) or vocals."
    ),
    fast: bool = typer.Option(
        False,
        "--fast",
        help="About 3x faster on the CPU, stems a little different: int8 network in ONNX Runtime (prepared once per model, about half a minute) and windows of up to 1536 frames, fitted to the song.",
    ),
    window: int | None = typer.Option(
        None,
        "--window",
        help="Network window in frames (default 512, as in RVC and UVR; with --fast up to 1536, fitted to each song).",
    ),
    segment: int = typer.Option(
        DEFAULT_SEGMENT,
        "--segment",
        help="MDX-Net: STFT frames per chunk (python-audio-separator's segment_size; default 256).",
    ),
    overlap: float = typer.Option(
        DEFAULT_OVERLAP,
        "--overlap",
        help="MDX-Net: share of a chunk that the next one overlaps, 0 to under 1 (default 0.25).",
    ),
    config: str | None = typer.Option(
        None,
        "--config",
        help="MDX23C/RoFormer: the checkpoint's YAML config (default: the .yaml of its name beside it).",
    ),
    num_overlap: int | None = typer.Option(
        None,
        "--num-overlap",
        help="MDX23C/RoFormer: chunks over each sample (default: the config's inference.num_overlap, as the authors' inference).",
    ),
    denoise: bool = typer.Option(
        False,
        "--denoise",
        help="MDX-Net: run the network on the mix and on its negation and average the two (twice the time).",
    ),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        help="Windows or chunks per network call (default: 1 on the CPU, 8 on a GPU; more is faster on a GPU and needs more memory).",
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
        help="What runs the network: torch (default), or onnxruntime (the network is exported once, in seconds, and cached; the default with --fast).",
    ),
    front_end: FrontEndChoice = typer.Option(
        "auto",
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
    ray_address: str | None = typer.Option(
        None,
        "--ray",
        help="Spread the inputs over a Ray cluster (the ray extra): local starts one on this machine, auto joins the running one, ray://HOST:10001 a remote one. One model per worker (a GPU each where the cluster has them, else a share of the CPUs; -j sets how many). Paths must be on storage every node reaches.",
    ),
    shard: str | None = typer.Option(
        None,
        "--shard",
        help="K/N: process only share K of N of the inputs (by a hash of each path), to spread a corpus over N machines or jobs; auto (or auto/N) takes K and N from the job array task running it (Slurm, Kubernetes Indexed Job, AWS Batch); auto/FIRST-LAST names a Slurm array's range, so that a task resubmitted alone keeps its share.",
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
    given = {name for name in MODEL_OPTIONS if _from_command_line(ctx, name)}
    try:
        check_workers(options)
        plan = make_plan(options, _settings(options, given))
    except UvrError as exc:
        raise fail(exc) from None
    skipped = sum(job.done for job in plan.jobs)
    if skipped and not options.quiet:
        every = "every input" if skipped == len(plan.jobs) else f"{skipped} of {len(plan.jobs)} inputs"
        say(f"skipping {every}: outputs already made with these settings (--overwrite makes them again)")
    results = _start(plan, options) if plan.work else iter(())
    try:
        failed = print_records(
            in_input_order(plan.jobs, results, say),
            options.as_json,
            options.out == STDIN,
            sys.stderr.isatty() and not options.quiet,
            len(plan.jobs),
            options.quiet,
        )
    except BrokenPipeError:
        raise closed_pipe_exit() from None
    except KeyboardInterrupt:
        say("interrupted; finished outputs are kept, none is left half-written")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except SystemExit as exc:
        if exc.code == 128 + signal.SIGTERM:  # _on_sigterm: e.g. scancel, or a scheduler's preemption
            say("terminated; finished outputs are kept, none is left half-written")
        raise
    raise typer.Exit(EXIT_SOME_FAILED if failed else EXIT_OK)


separate.__doc__ = f"{separate.__doc__}\n    {EXIT_CODES_HELP}\n"
MODEL_OPTIONS = tuple(f.name for f in dataclasses.fields(ModelOptions) if f.name != "force_params")


def _from_command_line(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _settings(o: SimpleNamespace, given: set[str]) -> SeparationSettings:
    """The typed settings of this run, built once from the options (each part checks itself)."""
    return SeparationSettings(
        models=tuple(o.model or ()),
        ensemble=o.ensemble,
        then=tuple(parse_then(text) for text in o.then or ()),
        options=ModelOptions(
            params=o.params,
            force_params=o.force_params,
            primary=o.primary,
            agg=o.agg,
            tta=o.tta,
            high_end=o.high_end.value,
            post_process=o.post_process,
            window=o.window,
            segment=o.segment,
            overlap=o.overlap,
            denoise=o.denoise,
            config=o.config,
            num_overlap=o.num_overlap,
        ),
        runtime=RuntimeOptions(
            device=o.device,
            precision=o.precision,
            backend=o.backend.value if o.backend else None,
            fast=o.fast,
            front_end=o.front_end.value,
            batch_size=o.batch_size,
        ),
        output=OutputOptions(
            fmt=o.fmt.value,
            bit_depth=o.bit_depth.value if o.bit_depth else None,
            sample_rate=o.sample_rate,
            bitrate=o.bitrate,
            clip_mode=o.clip_mode.value,
            allow_truncated=o.allow_truncated,
        ),
        given=frozenset(given),
    )


def _start(plan: Plan, o: SimpleNamespace) -> Iterator[dict]:
    """Load the model(s) and separate the work, in this process or in -j workers; yields records in input order."""
    from uvr_cli.chain import Chain  # after the checks: it imports torch

    separator = plan.separator or load_runner(plan.settings, o.quiet)
    record = report_model(separator, plan.settings, o.verbose, o.quiet)
    if o.ray_address is not None:
        from uvr_cli import ray

        del separator  # each worker loads its own, and writes the same settings record
        try:
            ray.connect(o.ray_address)
        except UvrError as exc:
            raise fail(exc) from None
        workers = o.jobs_count if o.jobs_count > 1 else None
        return ray.map_jobs(plan.settings, plan.work, workers=workers, verbose=o.verbose, quiet=o.quiet, say=say)
    task = functools.partial(
        separate_one, output=plan.settings.output, settings=record, verbose=o.verbose, quiet=o.quiet, say=say
    )
    streams = o.out == STDIN or any(job.source == STDIN for job in plan.jobs)
    if o.jobs_count > 1 and len(plan.work) > 1 and not streams:
        from uvr_cli.cli.parallel import map_jobs

        del separator  # each worker loads its own
        return map_jobs(
            plan.settings,
            functools.partial(task, show_progress=False),
            plan.work,
            min(o.jobs_count, len(plan.work)),
        )
    first = separator.first if isinstance(separator, Chain) else separator
    files = o.batch_files or (1 if cast("Separator", first).runtime.device.type == "cpu" else 4)
    if files > 1 and len(plan.work) > 1 and not streams and not isinstance(separator, Chain):
        together = cast("Separator", separator).map_together
        return together(functools.partial(task, show_progress=False), plan.work, files)
    show_progress = sys.stderr.isatty() and not o.quiet
    return (task(separator, job, show_progress=show_progress) for job in plan.work)
