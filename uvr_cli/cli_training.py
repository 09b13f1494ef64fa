"""Argument parsing for `uvr eval`, `uvr train` and `uvr dataset synth`; the work lives in evaluate/train/dataset."""
from __future__ import annotations

import json
import sys
from typing import Optional

import typer

from uvr_cli.errors import UsageError, UvrError

dataset_app = typer.Typer(no_args_is_help=True, help="Make training data.")


def _say(message: str) -> None:
    print(f"uvr: {message}", file=sys.stderr, flush=True)


def _threads(threads: int) -> None:
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def eval_command(
    dirs: list[str] = typer.Argument(..., help="Test folders: mixtures/+vocals/ pairs, song folders with mixture.*+vocals.*, or MIR-1K stereo clips (left accompaniment, right voice)."),
    model: Optional[str] = typer.Option(None, "-m", "--model", help="Weight file (.pth) to score."),
    params: Optional[str] = typer.Option(None, "--params", help="Band preset of the model, for files the registry does not know."),
    primary: Optional[str] = typer.Option(None, "--primary", help="What the model's mask keeps, for unknown files: instrumental or vocals."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="Score a fixed estimate instead of a model: 'half' (half the mixture)."),
    agg: float = typer.Option(0, "--agg", help="Aggressiveness used for separation (0: the plain mask)."),
    max_clips: Optional[int] = typer.Option(None, "--max-clips", help="Score at most N clips per folder, spread evenly (quick checks)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (clips and means) instead of a table."),
    threads: int = typer.Option(0, "--threads", help="CPU threads for torch (0: torch's default)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option("auto", "--precision", help="auto, fp32, fp16 or bf16."),
) -> None:
    """Score vocal estimates: SI-SDR (primary), SDR, their improvement over the mixture, and the energy ratio."""
    from uvr_cli import evaluate as ev

    _threads(threads)
    if (model is None) == (baseline is None):
        raise UsageError("give either --model WEIGHTS.pth or --baseline half")
    if baseline is not None and baseline != "half":
        raise UsageError(f"--baseline {baseline!r}: the only baseline is 'half'")
    if model is not None:
        from uvr_cli.separator import Separator

        separator = Separator(model, params=params, primary=primary, agg=agg, device=device, precision=precision)
        estimator = ev.separator_estimator(separator)
    else:
        estimator = ev.half_mixture
    report: dict = {"model": model or f"baseline:{baseline}", "folders": {}}
    for folder in dirs:
        clips = ev.pick_evenly(ev.find_clips(folder), max_clips)
        if not as_json:
            print(f"# {folder} ({len(clips)} clips)\n{ev.HEADER}", flush=True)

        def show(score: ev.ClipScore) -> None:
            if not as_json:
                print(ev.format_row(score.name, score.as_dict()), flush=True)

        scores = ev.evaluate(clips, estimator, on_clip=show)
        means = ev.weighted_means(scores)
        report["folders"][folder] = {"means": means, "clips": [s.as_dict() for s in scores]}
        if not as_json and means:
            print(ev.format_row(f"MEAN ({means['clips']} clips, {means['duration_s']:.0f} s)", means), flush=True)
    if as_json:
        print(json.dumps(report), flush=True)


def register(app: typer.Typer) -> None:
    """Add `eval`, `train` and `dataset` to the main app."""
    app.command("eval")(_guarded(eval_command))
    app.add_typer(dataset_app, name="dataset")


def _guarded(command):
    """Turn UvrError into one line and its exit code, as the main commands do."""
    import functools

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UvrError as exc:
            _say(str(exc))
            raise typer.Exit(exc.exit_code)

    return wrapper
