"""The engine's one entry: any loaded model (or ensemble) run over an input, block by block, into stem sinks.

A family's model takes one of two signal paths (family.py): frames (frames.py) or chunks (chunks.py). An ensemble of
frame models sharing a band preset runs as one frame run, their stems combined before one synthesis; any other
ensemble runs each model on its own and combines their waves (ensemble.py).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from uvr_cli.engine import chunks, frames
from uvr_cli.engine.batching import WindowBatcher
from uvr_cli.engine.blocks import Opener, Result, Sink
from uvr_cli.engine.chunks import ChunkModel, run_chunks
from uvr_cli.engine.ensemble import separate_each
from uvr_cli.engine.family import LoadedModel
from uvr_cli.engine.frames import FrameModel, FrameRun
from uvr_cli.engine.frontend import NUMPY, FrontEnd
from uvr_cli.engine.windows import run_windows


@dataclass(frozen=True)
class Ensemble:
    """Models that cannot share one analysis (other families, other band presets): each runs on its own, and their
    stems combine as waves (ensemble.py)."""

    runs: tuple[FrameRun | ChunkModel, ...]
    combine: dict[str, str]


Run = FrameRun | ChunkModel | Ensemble


def _alone(model: LoadedModel) -> FrameRun | ChunkModel:
    signal = model.signal
    return FrameRun((signal,)) if isinstance(signal, FrameModel) else signal


def plan(models: Sequence[LoadedModel], combine: dict[str, str]) -> Run:
    """How the engine runs `models`: one, or an ensemble whose stems combine by `combine`."""
    if len(models) == 1:
        return _alone(models[0])
    signals = [model.signal for model in models]
    frame_models = [s for s in signals if isinstance(s, FrameModel)]
    if len(frame_models) == len(signals) and all(m.preset == frame_models[0].preset for m in frame_models):
        return FrameRun(tuple(frame_models), combine)
    return Ensemble(tuple(_alone(model) for model in models), combine)


def with_batchers(run: Run, batch_size: int) -> tuple[Run, list[WindowBatcher]]:
    """`run` with each network's windows batched across the songs separated at the same time (batching.py)."""
    if isinstance(run, Ensemble):
        parts = [_batched(member, batch_size) for member in run.runs]
        runs = tuple(part for part, _ in parts)
        return dataclasses.replace(run, runs=runs), [b for _, batchers in parts for b in batchers]
    return _batched(run, batch_size)


def _batched(run: FrameRun | ChunkModel, batch_size: int) -> tuple[FrameRun | ChunkModel, list[WindowBatcher]]:
    if isinstance(run, ChunkModel):
        batcher = WindowBatcher(functools.partial(run_chunks, run.network), batch_size)
        return chunks.with_batcher(run, batcher), [batcher]
    batchers = [WindowBatcher(functools.partial(run_windows, m.network), batch_size) for m in run.members]
    members: tuple[FrameModel, ...] = tuple(
        m.with_network(dataclasses.replace(m.network, batcher=batcher)) for m, batcher in zip(run.members, batchers)
    )
    return dataclasses.replace(run, members=members), batchers


def separate(
    run: Run,
    open_source: Opener,
    sinks: dict[str, Sink],
    *,
    output_rate: int | None = None,
    block_seconds: float | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    front_end: FrontEnd = NUMPY,
) -> Result:
    """Separate the input `open_source()` gives (opened once per pass), handing each stem's samples to its sink.

    Sinks get (frames, channels) float32 blocks in order: mono input gives mono stems, anything else stereo;
    `output_rate` defaults to the input's rate, and each stem is exactly as long as the input at that rate.
    `on_progress(done, total)` counts network windows; `front_end` runs the frame path's transforms (frontend.py).
    """
    if isinstance(run, Ensemble):
        members = [
            functools.partial(
                _member, member, open_source, output_rate=output_rate, block_seconds=block_seconds, front_end=front_end
            )
            for member in run.runs
        ]
        return separate_each(members, run.combine, sinks, on_progress)
    if isinstance(run, ChunkModel):
        return chunks.separate(run, open_source, sinks, output_rate=output_rate, on_progress=on_progress)
    return frames.separate(
        run,
        open_source,
        sinks,
        output_rate=output_rate,
        block_seconds=block_seconds,
        on_progress=on_progress,
        front_end=front_end,
    )


def _member(
    run: FrameRun | ChunkModel,
    open_source: Opener,
    sinks: dict[str, Sink],
    on_progress: Callable[[int, int], None] | None,
    **options,
) -> Result:
    return separate(run, open_source, sinks, on_progress=on_progress, **options)
