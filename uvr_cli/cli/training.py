"""Argument parsing for `uvr eval`, `uvr train` and `uvr dataset synth`; the work lives in evaluate/train/dataset."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

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
    dirs: list[str] = typer.Argument(
        ...,
        help="Test folders: mixtures/+vocals/ pairs (or +drums/, +bass/, ... for every stem), song folders with mixture.*+vocals.* (+drums.*, ...), or MIR-1K stereo clips (left accompaniment, right voice).",
    ),
    model: str | None = typer.Option(
        None, "-m", "--model", help="Model to score: a file (.pth, .onnx, .ckpt) or a downloaded model's name."
    ),
    config: str | None = typer.Option(
        None, "--config", help="MDX23C/RoFormer: the checkpoint's YAML config (default: the .yaml beside it)."
    ),
    params: str | None = typer.Option(
        None, "--params", help="Band preset of the model, for files the registry does not know."
    ),
    primary: str | None = typer.Option(
        None, "--primary", help="What the model's mask keeps, for unknown files: instrumental or vocals."
    ),
    baseline: str | None = typer.Option(
        None, "--baseline", help="Score a fixed estimate instead of a model: 'half' (half the mixture)."
    ),
    agg: float = typer.Option(10, "--agg", help="Aggressiveness used for separation (10: uvr separate's default)."),
    max_clips: int | None = typer.Option(
        None, "--max-clips", help="Score at most N clips per folder, spread evenly (quick checks)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (clips and means) instead of a table."),
    threads: int = typer.Option(0, "--threads", help="CPU threads for torch (0: torch's default)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option("auto", "--precision", help="auto, fp32, fp16 or bf16."),
    fast: bool = typer.Option(False, "--fast", help="Separate as uvr separate --fast does (int8, wider windows)."),
) -> None:
    """Score vocal estimates: SI-SDR (primary), SDR, their improvement over the mixture, the energy ratio, and
    wide-band PESQ (at 16 kHz) and STOI with the eval extra (in uvr's folder: .venv/bin/pip install -e '.[eval]')."""
    from uvr_cli.training import evaluate as ev
    from uvr_cli.training import perceptual
    from uvr_cli.training import stems as st

    _threads(threads)
    if (model is None) == (baseline is None):
        raise UsageError("give either --model WEIGHTS.pth or --baseline half")
    if baseline is not None and baseline != "half":
        raise UsageError(f"--baseline {baseline!r}: the only baseline is 'half'")
    if model is not None:
        from uvr_cli.separator import Separator

        separator = Separator(
            model, params=params, primary=primary, agg=agg, config=config, device=device, precision=precision, fast=fast
        )
        estimator = ev.separator_estimator(separator)
        model_stems: Sequence[str] = separator.stems

        def separate_stems(mixture, rate, stems):
            return separator.separate(mixture, rate, stems=stems)
    else:
        estimator = ev.half_mixture
        model_stems = ()

        def separate_stems(mixture, rate, stems):
            return {stem: ev.half_mixture(mixture, rate) for stem in stems}

    scored = perceptual.available()
    if not scored:
        _say(perceptual.MISSING)
    report: dict = {"model": model or f"baseline:{baseline}", "fast": fast, "folders": {}}
    for folder in dirs:
        stem_clips = st.find_stem_clips(folder)
        if st.is_multi_stem(stem_clips):
            report["folders"][folder] = _eval_stems(
                folder, ev.pick_evenly(stem_clips, max_clips), separate_stems, model_stems, as_json
            )
            continue
        clips = ev.pick_evenly(ev.find_clips(folder), max_clips)
        if not as_json:
            print(f"# {folder} ({len(clips)} clips)\n{ev.HEADER}", flush=True)

        def show(score: ev.ClipScore) -> None:
            if not as_json:
                print(ev.format_row(score.name, score.as_dict()), flush=True)

        scores = ev.evaluate(clips, estimator, on_clip=show, perceptual=scored)
        means = ev.weighted_means(scores)
        report["folders"][folder] = {"means": means, "clips": [s.as_dict() for s in scores]}
        if not as_json and means:
            print(ev.format_row(f"MEAN ({means['clips']} clips, {means['duration_s']:.0f} s)", means), flush=True)
    if as_json:
        print(json.dumps(report), flush=True)


def _eval_stems(folder: str, clips: list, separate, model_stems, as_json: bool) -> dict:
    """A multi-stem test folder: each stem the model gives (every stem for the baseline) that the set has."""
    from uvr_cli.training import stems as st

    available = sorted({stem for clip in clips for stem in clip.references})
    stems = [stem for stem in (model_stems or available) if stem in available]
    if not stems:
        raise UsageError(f"{folder}: the set has the truth of {', '.join(available)}; the model gives none of them")
    if not as_json:
        print(f"# {folder} ({len(clips)} songs; stems {', '.join(stems)})\n{st.STEM_HEADER}", flush=True)

    def show(score) -> None:
        if not as_json:
            print(st.stem_row(f"{score.clip} / {score.stem}", vars(score)), flush=True)

    scores = st.evaluate_stems(clips, separate, stems, show)
    means = st.stem_means(scores)
    if not as_json:
        for stem, values in means.items():
            print(st.stem_row(f"MEAN {stem} ({values['clips']} clips)", values), flush=True)
    return {"stems": means, "scores": [vars(s) for s in scores]}


def train_command(
    dataset: str = typer.Argument(
        ..., help="Data set folder with train/{mixtures,instruments[,vocals]} and validation/ (from uvr dataset synth)."
    ),
    out: str = typer.Option(
        "checkpoints/run",
        "-o",
        "--out",
        help="Run folder: state.pt, best.pth, last.pth, log.jsonl. An existing run there is continued.",
    ),
    preset: str = typer.Option("4band_v2", "--preset", help="Band preset the model is trained on."),
    arch: str = typer.Option("aspp", "--arch", help="aspp (CascadedASPPNet, UVR v5) or cascaded (CascadedNet, v5.1)."),
    ch: int = typer.Option(16, "--ch", help="Width: ASPP ch (16, 32, 64) or CascadedNet nout."),
    batch: int = typer.Option(4, "--batch", help="Patches per step."),
    cropsize: int = typer.Option(256, "--cropsize", help="Frames per patch (a multiple of 16)."),
    lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate."),
    epoch_steps: int = typer.Option(100, "--epoch-steps", help="Steps per epoch; each epoch ends with validation."),
    max_steps: int = typer.Option(0, "--max-steps", help="Stop at this total step count (0: no limit)."),
    max_minutes: float = typer.Option(
        0, "--max-minutes", help="Stop after this many minutes of this run (0: no limit)."
    ),
    save_every: int = typer.Option(20, "--save-every", help="Save the resumable state every N steps."),
    mixup_rate: float = typer.Option(0.25, "--mixup-rate", help="Share of patches mixed up with another one."),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 autocast) or fp32."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA if present), cpu, cuda, cuda:N."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    init: str | None = typer.Option(
        None,
        "--init",
        help="Start from these weights (a UVR5 .pth of a 5-branch CascadedASPPNet or a CascadedNet, e.g. models/default.pth) instead of random ones: fine-tuning. Its architecture replaces --arch/--ch.",
    ),
    validate: bool = typer.Option(True, "--validate/--no-validate", help="Score each epoch on DATASET/validation."),
    threads: int = typer.Option(0, "--threads", help="CPU threads for torch (0: torch's default)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bar."),
) -> None:
    """Train a VR model; Ctrl-C saves the state, and the same command continues from it."""
    from uvr_cli.training.train import TrainConfig, train

    _threads(threads)
    cfg = TrainConfig(
        dataset=dataset,
        out=out,
        preset=preset,
        arch=arch,
        ch=ch,
        batch=batch,
        cropsize=cropsize,
        lr=lr,
        epoch_steps=epoch_steps,
        max_steps=max_steps,
        max_minutes=max_minutes,
        save_every=save_every,
        mixup_rate=mixup_rate,
        precision=precision,
        device=device,
        seed=seed,
        init=init,
        validate=validate,
    )
    result = train(cfg, log=_say, progress=not quiet and sys.stderr.isatty())
    print(json.dumps(result), flush=True)
    if result.get("stopped_by_signal"):
        raise typer.Exit(128 + result["stopped_by_signal"])


def synth_command(
    out: str = typer.Argument(..., help="Output folder (train/, validation/ and CREDITS.md are written there)."),
    hours: float = typer.Option(1.0, "--hours", help="Hours of training songs to generate."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same data set."),
    voices: str = typer.Option(
        "../shared/audio/cc-by-vocals",
        "--voices",
        help="Folder with the CC BY singing clips (training and validation voices).",
    ),
    soundfont: str | None = typer.Option(
        None, "--soundfont", help="General MIDI .sf2 (default: FluidR3_GM, else TimGM6mb)."
    ),
    song_seconds: float = typer.Option(30.0, "--song-seconds", help="Length of each generated song."),
    espeak: bool = typer.Option(True, "--espeak/--no-espeak", help="Also make espeak-ng voices sing."),
    recordings: str | None = typer.Option(
        None,
        "--recordings",
        help="Folder of real instrumental recordings (e.g. /usr/share/games/singularity/music): a share of the songs gets an excerpt of one as accompaniment; every fourth file is held out for `uvr dataset realcheck`.",
    ),
    recording_share: float = typer.Option(
        0.5, "--recording-share", help="Share of the songs whose accompaniment is a real recording (with --recordings)."
    ),
    harmonies: float = typer.Option(
        0.0,
        "--harmonies",
        help="Share of the songs that get backing harmonies (their phrases sung again a third, fifth, ... away); 0 keeps the data sets of earlier seeds unchanged.",
    ),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bar."),
) -> None:
    """Generate songs with separate vocal and instrumental stems (fluidsynth accompaniment, WORLD-resynthesised voices)."""
    from uvr_cli.training.dataset import synthesise_dataset

    bar = None
    if not quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(unit="song", file=sys.stderr, desc="songs")

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.update(1)

    for flag, share in (("--recording-share", recording_share), ("--harmonies", harmonies)):
        if not 0 <= share <= 1:
            raise UsageError(f"{flag} {share:g}: use a share from 0 to 1")
    summary = synthesise_dataset(
        out,
        hours,
        seed,
        voices,
        soundfont=soundfont,
        song_seconds=song_seconds,
        use_espeak=espeak,
        on_song=progress,
        recordings=recordings,
        recording_share=recording_share,
        harmony_share=harmonies,
    )
    if bar is not None:
        bar.close()
    print(json.dumps(summary), flush=True)


def realcheck_command(
    out: str = typer.Argument(..., help="Output folder (mixtures/, instruments/, vocals/ and CREDITS.md)."),
    recordings: str = typer.Option(
        ...,
        "--recordings",
        help="The folder of real instrumental recordings `uvr dataset synth --recordings` was given: its held-out files are used.",
    ),
    voices: str = typer.Option(
        "../shared/audio/cc-by-vocals", "--voices", help="Folder with the CC BY singing clips (the validation voices)."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed of the excerpts."),
    mixes: int = typer.Option(2, "--mixes", help="Excerpts per voice."),
) -> None:
    """The real-music check for `uvr eval`: held-out real singing over held-out real instrumental recordings, 44.1 kHz stereo."""
    from uvr_cli.training.dataset import real_music_check

    if mixes < 1:
        raise UsageError("--mixes must be at least 1")
    print(json.dumps(real_music_check(out, recordings, voices, seed, mixes)), flush=True)


def register(app: typer.Typer) -> None:
    """Add `eval`, `train` and `dataset` to the main app."""
    app.command("eval")(_guarded(eval_command))
    app.command("train")(_guarded(train_command))
    app.add_typer(dataset_app, name="dataset")
    dataset_app.command("synth")(_guarded(synth_command))
    dataset_app.command("realcheck")(_guarded(realcheck_command))


def _guarded(command):
    """Turn UvrError into one line and its exit code, as the main commands do."""
    import functools

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UvrError as exc:
            _say(str(exc))
            raise typer.Exit(exc.exit_code) from None

    return wrapper
