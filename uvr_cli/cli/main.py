"""The `uvr` command: parses options, drives `Separator`, reports. No signal processing lives here."""
from __future__ import annotations

import functools
import json
import os
import signal
import sys
import traceback
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from uvr_cli import __version__
from uvr_cli.errors import ModelError, UsageError, UvrError

if TYPE_CHECKING:
    from uvr_cli.io.jobs import Job
    from uvr_cli.separator import Separator

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Separate vocals and instrumentals with UVR5 VR-architecture models (HP2, HP5, DeEcho, 1_HP-UVR ... 17).",
)

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_MODEL = 0, 1, 2, 3
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool stopped by a closed pipe


class StemChoice(str, Enum):
    all = "all"
    vocals = "vocals"
    instrumental = "instrumental"


class Format(str, Enum):
    wav = "wav"
    flac = "flac"
    ogg = "ogg"
    mp3 = "mp3"


class BitDepth(str, Enum):
    b16 = "16"
    b24 = "24"
    b32f = "32f"


class HighEnd(str, Enum):
    mirroring = "mirroring"
    mirroring2 = "mirroring2"
    none = "none"


def _say(message: str) -> None:
    # One line per message, even when a file name in it holds a line break.
    print("uvr: " + message.replace("\r", "\\r").replace("\n", "\\n"), file=sys.stderr, flush=True)


def _fail(exc: UvrError) -> "typer.Exit":
    _say(str(exc))
    return typer.Exit(exc.exit_code)


def _emit(line: str) -> None:
    """One result line on stdout; a reader that went away (`| head -1`) ends the run quietly with 141, like SIGPIPE."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        # Point stdout at /dev/null so that the flush at interpreter exit does not raise (and print) again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(EXIT_BROKEN_PIPE) from None


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


def _check_output_options(fmt: str, bit_depth: str | None, rate: str | int, out: str, as_json: bool) -> None:
    """Refuse impossible output choices before the model is loaded (the input's own rate is checked per file)."""
    from uvr_cli.io.audio import output_subtype

    if bit_depth is not None and fmt in ("ogg", "mp3"):
        raise UsageError(f"--bit-depth applies to wav and flac; {fmt} has no bit depth")
    output_subtype(fmt, bit_depth, rate if isinstance(rate, int) else 44100, 2)
    if out == "-":
        if as_json:
            raise UsageError("--json and -o - both write to standard output; choose one")
        if sys.stdout.isatty():
            raise UsageError("-o - writes audio to standard output, which is a terminal; pipe it or redirect it")


def _separate_one(separator: "Separator", job: "Job", options: dict, show_progress: bool, verbose: bool,
                  quiet: bool) -> dict:
    """Run one input; any failure becomes an error record (one stderr line naming the input), never an exception."""
    record: dict = {"input": job.display, "status": "error", "outputs": {}, "duration_s": None, "wall_s": None,
                    "realtime_factor": None, "clipped_samples": {}, "error": None}
    file_bar = None
    try:
        if job.error:
            raise UvrError(job.error)
        if show_progress:
            from tqdm import tqdm

            file_bar = tqdm(unit="win", position=1, leave=False, desc=Path(job.display).name, file=sys.stderr)

        def progress(done: int, total: int) -> None:
            if file_bar is not None:
                file_bar.total = total
                file_bar.n = done
                file_bar.refresh()

        result = separator.separate_file(job.source, job.outputs, on_progress=progress, **options)
        if not quiet:
            for warning in result.warnings:
                _say(f"{job.display}: {warning}")
        record.update(status=result.status, outputs=result.outputs, duration_s=result.duration_s,
                      wall_s=round(result.wall_s, 3), realtime_factor=result.realtime_factor,
                      clipped_samples=result.clipped_samples)
        if verbose:
            _say(f"{job.display}: {result.status} in {result.wall_s:.1f} s")
    except UvrError as exc:
        message = str(exc) if job.display in str(exc) else f"{job.display}: {exc}"
        _say(message)
        record["error"] = message
    except (MemoryError, RuntimeError, ValueError, OSError) as exc:
        # Errors of torch, numpy or the OS that no check foresaw: still one line, and the batch goes on.
        first = str(exc).splitlines()[0] if str(exc) else "failed"
        message = f"{job.display}: {type(exc).__name__}: {first}"
        _say(message)
        if verbose:
            traceback.print_exc(file=sys.stderr)
        record["error"] = message
    finally:
        if file_bar is not None:
            file_bar.close()
    return record


@app.command()
def separate(
    inputs: list[str] = typer.Argument(..., help="Audio files, folders (searched recursively), quoted glob patterns such as 'songs/**/*.flac', or - for standard input."),
    model: Optional[str] = typer.Option(None, "-m", "--model", help="Weight file (.pth), or the name of a downloaded model (see `uvr models`)."),
    params: Optional[str] = typer.Option(None, "--params", help="Band preset name (e.g. 4band_v2) or JSON path; needed only for unrecognised files."),
    agg: float = typer.Option(10, "--agg", help="Aggressiveness 0-100; RVC semantics: mask exponent 1+N/100 above the first band (1+N/300 below). 10 is RVC's default."),
    out: str = typer.Option(".", "-o", "--out", help="Output folder (created if needed), or - to write one stem to standard output (needs --stem)."),
    name: str = typer.Option("{name}_{stem}.{ext}", "--name", help="Output file name template: {name} (input file stem), {stem}, {model}, {agg}, {ext}, {dir} (the input's sub-folder under a folder argument)."),
    stem: StemChoice = typer.Option(StemChoice.all, "--stem", help="Which stems to write; one stem skips synthesising the other."),
    fmt: Format = typer.Option(Format.wav, "-f", "--format", help="Output format."),
    bit_depth: Optional[BitDepth] = typer.Option(None, "--bit-depth", help="16, 24 or 32f (float; wav only). Default: the input's, where the format allows."),
    sample_rate: str = typer.Option("input", "--sample-rate", help="input (default), model (the preset's rate) or a rate in Hz."),
    skip_existing: bool = typer.Option(True, "--skip-existing/--overwrite", help="Skip inputs whose outputs all exist (default; a rerun resumes a batch), or overwrite them."),
    tta: bool = typer.Option(False, "--tta", help="Test-time augmentation: a second pass shifted by half a window, averaged (slower, slightly better)."),
    post_process: bool = typer.Option(False, "--post-process", help="RVC's post-processing: returns quiet vocal residue to the instrumental."),
    high_end: HighEnd = typer.Option(HighEnd.mirroring, "--high-end", help="Rebuild the top band's highest bins: mirroring (RVC's default), mirroring2, or none."),
    primary: Optional[str] = typer.Option(None, "--primary", help="Label of the mask's stem for unknown models: instrumental (default) or vocals."),
    window: int = typer.Option(512, "--window", help="Network window in frames (RVC and UVR use 512)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Windows per network call (default: 1 on the CPU, 8 on a GPU; more is faster on a GPU and needs more memory)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option("auto", "--precision", help="auto (fp32 on CPU, fp16 on GPU), fp32, fp16 or bf16."),
    jobs_count: int = typer.Option(1, "-j", "--jobs", help="Worker processes, each with its own model and a share of the cores: faster for many short files (outputs are identical)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="K/N: process only share K of N of the inputs (by a hash of each path), to spread a corpus over N machines or jobs."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per input on stdout instead of output paths."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bars or warnings."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Details on stderr: model, preset, device, timings."),
) -> None:
    """Separate songs into vocals and instrumental.

    Prints each written (or already present) output path on stdout. Exit status: 0 all done, 1 some inputs
    failed (the others were still processed), 2 usage error, 3 the model could not be loaded.
    """
    from uvr_cli.catalog.models import resolve_model
    from uvr_cli.io.jobs import STDIN, expand_inputs, parse_shard, plan_outputs, select_shard

    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if jobs_count < 1:
            raise UsageError("--jobs must be at least 1")
        rate = _parse_rate(sample_rate)
        depth = bit_depth.value if bit_depth else None
        _check_output_options(fmt.value, depth, rate, out, as_json)
        if STDIN in inputs and sys.stdin.isatty():
            raise UsageError("- reads audio from standard input, which is a terminal; pipe audio into uvr")
        stems = ["vocals", "instrumental"] if stem is StemChoice.all else [stem.value]
        jobs = expand_inputs(inputs)
        model_name = Path(model).stem if model else "default"
        plan_outputs(jobs, out_dir=out, template=name, stems=stems, model=model_name, agg=agg, ext=fmt.value)
        if shard is not None:  # after planning, so that name collisions are found across the whole corpus
            jobs = select_shard(jobs, *parse_shard(shard))
        model_path = resolve_model(model)
        # torch is imported only now, so that the errors above are reported at once.
        from uvr_cli.separator import Separator

        separator_options = dict(
            model=model_path, params=params, agg=agg, tta=tta, high_end=high_end.value, post_process=post_process,
            primary=primary, window=window, batch_size=batch_size, device=device, precision=precision,
        )
        separator = Separator(**separator_options)
        if rate == "model":
            _check_output_options(fmt.value, depth, separator.model_sample_rate, out, as_json)
    except UvrError as exc:
        raise _fail(exc)
    except KeyboardInterrupt:  # e.g. while torch is imported or the model loads: not click's bare "Aborted!"
        _say("interrupted before any input was separated; nothing was written")
        raise typer.Exit(130) from None
    if verbose:
        info = separator.info
        _say(f"model {info.path}: {info.spec}, preset {info.preset}, primary stem {info.primary} "
             f"({info.identity.how}); device {separator.device}, {separator.dtype}")
        _say(f"agg {separator.agg:g}, tta {'on' if separator.tta else 'off'}, post-process "
             f"{'on' if separator.post_process else 'off'}, high end {separator.high_end}, window {separator.window}, "
             f"batch size {separator.batch_size}")
    show_progress = sys.stderr.isatty() and not quiet
    overall = None
    if show_progress:
        from tqdm import tqdm

        overall = tqdm(total=len(jobs), unit="file", position=0, desc="all files", file=sys.stderr)
    options = dict(fmt=fmt.value, bit_depth=depth, sample_rate=rate, skip_existing=skip_existing)
    failed = 0
    streams = out == STDIN or any(job.source == STDIN for job in jobs)  # standard input/output stay here
    if jobs_count > 1 and len(jobs) > 1 and not streams:
        from uvr_cli.cli.parallel import map_jobs

        del separator  # each worker loads its own
        task = functools.partial(_separate_one, options=options, show_progress=False, verbose=verbose, quiet=quiet)
        records = map_jobs(separator_options, task, jobs, min(jobs_count, len(jobs)))
    else:
        records = (_separate_one(separator, job, options, show_progress, verbose, quiet) for job in jobs)
    try:
        for record in records:
            failed += record["status"] == "error"
            if as_json:
                _emit(json.dumps(record))
            elif out != STDIN:
                for path in record["outputs"].values():
                    _emit(path)
            if overall is not None:
                overall.update(1)
    except KeyboardInterrupt:
        _say("interrupted; finished outputs are kept, none is left half-written")
        raise typer.Exit(130) from None
    finally:
        if overall is not None:
            overall.close()
    raise typer.Exit(EXIT_SOME_FAILED if failed else EXIT_OK)


@app.command()
def presets() -> None:
    """List the shipped band presets."""
    from uvr_cli.catalog.presets import list_presets

    for preset in list_presets():
        _emit(preset)


models_app = typer.Typer(help="List the known UVR5 VR models and download them into the local cache.")
app.add_typer(models_app, name="models")


def _size(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


@models_app.callback(invoke_without_command=True)
def models(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (cache_dir, models) instead of a table."),
) -> None:
    """List the bundled model and every known UVR5 VR model: architecture, preset, primary stem, size, cached.

    The cache is the folder named by UVR_MODEL_DIR, else ~/.cache/uvr (the platform's cache folder).
    """
    if ctx.invoked_subcommand is not None:
        return
    from uvr_cli.catalog.models import listing

    try:
        data = listing()
    except UvrError as exc:
        raise _fail(exc)
    if as_json:
        _emit(json.dumps(data, indent=1))
        return
    rows = [("NAME", "ARCHITECTURE", "PRESET", "PRIMARY STEM", "SIZE", "LOCAL")]
    for m in data["models"]:
        if m.get("bundled"):
            rows.append((m["name"], m["family"] or "-", m["params"] or "-", m["primary_stem"] or "-",
                         _size(m["size_bytes"]), "bundled" if m["installed"] else "not installed"))
            continue
        arch = ", ".join(x for x in (m.get("family"), m.get("capacity")) if x) or "?"
        rows.append((m["name"], arch, m.get("params") or "?", m.get("primary_stem") or "?", _size(m.get("size_bytes")),
                     "cached" if m["cached"] else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        _emit("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    _emit(f"cache: {data['cache_dir']}")


@models_app.command("download")
def models_download(
    names: list[str] = typer.Argument(..., help="Model names or file names from `uvr models`."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bar."),
) -> None:
    """Download models into the cache: resumes an interrupted download, checks the UVR hash before use.

    Prints the path of each model on stdout. Exit status 1 when a download failed, 2 for an unknown name.
    """
    from uvr_cli.catalog.models import download, find, load_catalog

    try:
        catalogue = load_catalog()
        entries = [find(n, catalogue) for n in names]
        unknown = [n for n, e in zip(names, entries) if e is None]
        if unknown:
            raise UsageError(f"unknown model {unknown[0]!r}; `uvr models` lists the known ones")
    except UvrError as exc:
        raise _fail(exc)
    failed = 0
    for entry in entries:
        try:
            done = download(entry, progress=sys.stderr.isatty() and not quiet)
        except UvrError as exc:
            _say(str(exc))
            failed += 1
            continue
        except KeyboardInterrupt:
            _say(f"{entry.name}: interrupted; run the command again to resume the download")
            raise typer.Exit(130) from None
        if not quiet:
            _say(f"{entry.name}: {done.status}, {done.verified}")
        _emit(str(done.path))
    raise typer.Exit(EXIT_SOME_FAILED if failed else EXIT_OK)


@app.command()
def info(
    model: str = typer.Argument(..., help="A weight file (.pth), or the name of a downloaded model."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Describe a weight file: architecture, capacity, bins, UVR hash, registry match, preset, primary stem.

    Architecture and capacity come from the tensor shapes; exit status 3 when it is not a loadable UVR5 VR model.
    """
    from uvr_cli.catalog.models import describe_model, resolve_model

    try:
        data = describe_model(resolve_model(model))
    except UvrError as exc:
        raise _fail(exc)
    if as_json:
        _emit(json.dumps(data))
        return
    cap = data["capacity"]
    if data["family"] == "CascadedNet":
        capacity = f"nout {cap['nout']}, nout_lstm {cap['nout_lstm']}"
    else:
        capacity = f"ch {cap['ch']}, {cap['aspp_branches']} ASPP branches{', enc5' if cap['enc5'] else ''}"
    lines = {
        "file": f"{data['path']} ({_size(data['size_bytes'])})",
        "architecture": f"{data['family']} ({capacity})",
        "bins": f"{data['bins']} (from the {data['bins_from']})" if data["bins"] else "unknown (not in the weights; "
                "give --params)",
        "uvr hash": data["uvr_hash"],
        "recognised": data["recognised_by"] or "no: pass --params (and --primary) to use it",
        "catalogue": data["catalogue_name"] or "-",
        "preset": data["preset"] or "unknown",
        "primary stem": f"{data['primary_stem']} (the mask estimates the {data['mask_estimates']})"
        if data["primary_stem"] else "unknown (instrumental unless --primary says otherwise)",
    }
    for key, value in lines.items():
        _emit(f"{key + ':':14}{value}")


def version_callback(value: bool) -> None:
    if value:
        print(f"uvr {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True, help="Show the version."),
) -> None:
    """uvr: vocal/instrument separation with UVR5 VR models."""


# `uvr eval`, `uvr train` and `uvr dataset ...` are parsed in cli_training (their modules load lazily).
from uvr_cli.cli.training import register as _register_training  # noqa: E402

_register_training(app)


def main() -> None:
    """Console entry point: one line per error, never a traceback, exit codes 0/1/2/3."""
    try:
        app()
    except ModelError as exc:
        _say(str(exc))
        sys.exit(EXIT_MODEL)
    except UvrError as exc:
        _say(str(exc))
        sys.exit(exc.exit_code)
