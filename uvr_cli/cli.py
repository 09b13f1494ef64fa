"""The `uvr` command: parses options, drives `Separator`, reports. No signal processing lives here."""
from __future__ import annotations

import json
import signal
import sys
import traceback
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from uvr_cli import __version__
from uvr_cli.errors import ModelError, UsageError, UvrError

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Separate vocals and instrumentals with UVR5 VR-architecture models (HP2, HP5, DeEcho, 1_HP-UVR ... 17).",
)

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_MODEL = 0, 1, 2, 3


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


def _progress_bars(enabled: bool, total_files: int):
    """An overall bar and a per-file bar on stderr (None when disabled)."""
    if not enabled:
        return None
    from tqdm import tqdm

    overall = tqdm(total=total_files, unit="file", position=0, desc="all files", file=sys.stderr, leave=True)
    return overall


@app.command()
def separate(
    inputs: list[str] = typer.Argument(..., help="Audio files, folders (searched recursively), quoted glob patterns, or - for stdin."),
    model: Optional[str] = typer.Option(None, "-m", "--model", help="UVR5 VR weight file (.pth)."),
    params: Optional[str] = typer.Option(None, "--params", help="Band preset name (e.g. 4band_v2) or JSON path; needed only for unrecognised files."),
    agg: float = typer.Option(10, "--agg", help="Aggressiveness 0-100; RVC semantics: mask exponent 1+N/100 above the first band (1+N/300 below). 10 is RVC's default."),
    out: str = typer.Option(".", "-o", "--out", help="Output folder, or - to write one stem to stdout (needs --stem)."),
    name: str = typer.Option("{name}_{stem}.{ext}", "--name", help="Output file name template: {name} {stem} {model} {agg} {ext}."),
    stem: StemChoice = typer.Option(StemChoice.all, "--stem", help="Which stems to write; one stem skips synthesising the other."),
    fmt: Format = typer.Option(Format.wav, "-f", "--format", help="Output format."),
    bit_depth: Optional[BitDepth] = typer.Option(None, "--bit-depth", help="16, 24 or 32f (float). Default: the input's, where the format allows."),
    sample_rate: str = typer.Option("input", "--sample-rate", help="input, model (the preset's rate) or a rate in Hz."),
    skip_existing: bool = typer.Option(True, "--skip-existing/--overwrite", help="Skip inputs whose outputs all exist (default), or overwrite them."),
    tta: bool = typer.Option(False, "--tta", help="Test-time augmentation: a second pass shifted by half a window, averaged (slower, slightly better)."),
    post_process: bool = typer.Option(False, "--post-process", help="RVC's post-processing: returns quiet vocal residue to the instrumental."),
    high_end: HighEnd = typer.Option(HighEnd.mirroring, "--high-end", help="Rebuild the top band's highest bins: mirroring (RVC's default), mirroring2, or none."),
    primary: Optional[str] = typer.Option(None, "--primary", help="Label of the mask's stem for unknown models: instrumental (default) or vocals."),
    window: int = typer.Option(512, "--window", help="Network window in frames (RVC and UVR use 512)."),
    batch_size: int = typer.Option(4, "--batch-size", help="Windows per network call."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option("auto", "--precision", help="auto (fp32 on CPU, fp16 on GPU), fp32, fp16 or bf16."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per input on stdout."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bars or warnings."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Details on stderr: model, preset, timings."),
) -> None:
    """Separate songs into vocals and instrumental."""
    from uvr_cli.jobs import STDIN, expand_inputs, plan_outputs
    from uvr_cli.separator import STEMS, Separator

    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        rate = _parse_rate(sample_rate)
        stems = list(STEMS) if stem is StemChoice.all else [stem.value]
        jobs = expand_inputs(inputs)
        model_name = Path(model).stem if model else "default"
        plan_outputs(jobs, out_dir=out, template=name, stems=stems, model=model_name, agg=agg, ext=fmt.value)
        if sum(j.source == STDIN for j in jobs) > 1:
            raise UsageError("standard input (-) can be read only once")
        separator = Separator(
            model, params=params, agg=agg, tta=tta, high_end=high_end.value, post_process=post_process,
            primary=primary, window=window, batch_size=batch_size, device=device, precision=precision,
        )
    except UvrError as exc:
        raise _fail(exc)
    if verbose:
        info = separator.info
        _say(f"model {info.path.name}: {info.spec}, preset {info.preset}, primary stem {info.primary} "
             f"({info.identity.how}); device {separator.device}, {separator.dtype}")
    show_progress = sys.stderr.isatty() and not quiet
    overall = _progress_bars(show_progress, len(jobs))
    failed = 0
    try:
        for job in jobs:
            record: dict = {"input": job.display}
            try:
                if job.error:
                    raise UvrError(job.error)
                file_bar = None
                if show_progress:
                    from tqdm import tqdm

                    file_bar = tqdm(unit="win", position=1, leave=False, desc=Path(job.display).name, file=sys.stderr)

                def progress(done: int, total: int, bar=file_bar) -> None:
                    if bar is not None:
                        bar.total = total
                        bar.n = done
                        bar.refresh()

                result = separator.separate_file(
                    job.source, job.outputs, fmt=fmt.value, bit_depth=bit_depth.value if bit_depth else None,
                    sample_rate=rate, skip_existing=skip_existing, on_progress=progress,
                )
                if file_bar is not None:
                    file_bar.close()
                if not quiet:
                    for warning in result.warnings:
                        _say(f"{job.display}: {warning}")
                record.update(status=result.status, outputs=result.outputs, duration_s=result.duration_s,
                              wall_s=round(result.wall_s, 3), realtime_factor=result.realtime_factor,
                              clipped_samples=result.clipped_samples, error=None)
                if verbose:
                    _say(f"{job.display}: {result.status} in {result.wall_s:.1f} s")
                if not as_json and out != STDIN:
                    for path in result.outputs.values():
                        print(path, flush=True)
            except UvrError as exc:
                if isinstance(exc, UsageError):
                    raise
                failed += 1
                message = str(exc) if job.display in str(exc) else f"{job.display}: {exc}"
                _say(message)
                record.update(status="error", outputs={}, error=message)
            except (MemoryError, RuntimeError, ValueError, OSError) as exc:
                failed += 1
                message = f"{job.display}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'failed'}"
                _say(message)
                if verbose:
                    traceback.print_exc(file=sys.stderr)
                record.update(status="error", outputs={}, error=message)
            if as_json:
                print(json.dumps(record), flush=True)
            if overall is not None:
                overall.update(1)
    except UvrError as exc:
        raise _fail(exc)
    except KeyboardInterrupt:
        _say("interrupted; finished outputs are kept, none is left half-written")
        raise typer.Exit(130)
    finally:
        if overall is not None:
            overall.close()
    raise typer.Exit(EXIT_SOME_FAILED if failed else EXIT_OK)


@app.command()
def presets() -> None:
    """List the shipped band presets."""
    from uvr_cli.presets import list_presets

    for preset in list_presets():
        print(preset)


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
from uvr_cli.cli_training import register as _register_training  # noqa: E402

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
