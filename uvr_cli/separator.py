"""`Separator`: models loaded once, and the one engine (engine/pipeline.py) run over arrays, files and pipes."""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from uvr_cli.catalog.model_config import common_stems
from uvr_cli.engine import families, pipeline
from uvr_cli.engine.blocks import ArraySource, Opener, Sink
from uvr_cli.engine.device import Runtime
from uvr_cli.engine.family import ModelInfo
from uvr_cli.engine.malloc import map_large_allocations, reuse_freed_memory
from uvr_cli.engine.resample import resampled_length
from uvr_cli.errors import AudioError, UsageError
from uvr_cli.io.decode import BlockReader, open_source
from uvr_cli.io.encode import BlockWriter, open_stem_writers, output_subtype
from uvr_cli.io.formats import default_bit_depth
from uvr_cli.io.overlap import BackgroundSinks, ReadAhead
from uvr_cli.settings import (
    DEFAULT_OVERLAP,
    DEFAULT_SEGMENT,
    OutputOptions,
    SeparationSettings,
)

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")
Produce = Callable[[Opener, dict[str, Sink], int, Callable[[int, int], None] | None], None]
"""Runs a separation: (the input's opener, a sink per stem, the output rate, on_progress)."""


class Separator:
    """Load a model (or an ensemble of models) once and separate any number of songs with it.

    >>> sep = Separator(model="HP2_all_vocals.pth", agg=10)
    >>> stems = sep.separate(audio, 44100)   # {"vocals": (frames, ch), "instrumental": (frames, ch)}
    >>> both = Separator(model=["HP2_all_vocals.pth", "HP5_only_main_vocal.pth"], ensemble="max/min")
    >>> mdx = Separator(model="UVR-MDX-NET-Inst_HQ_3.onnx", overlap=0.5)
    >>> quick = Separator(model="HP2_all_vocals.pth", fast=True)   # int8 in ONNX Runtime, wider windows

    The keyword arguments are the command-line options of the same names; `settings` (what the command line
    builds) replaces them all.
    """

    def __init__(
        self,
        model: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
        *,
        ensemble: str = "avg",
        params: str | os.PathLike | None = None,
        force_params: bool = False,
        agg: float = 10,
        tta: bool = False,
        high_end: str = "mirroring",
        post_process: bool = False,
        primary: str | None = None,
        window: int | None = None,
        segment: int = DEFAULT_SEGMENT,
        overlap: float = DEFAULT_OVERLAP,
        denoise: bool = False,
        config: str | os.PathLike | None = None,
        num_overlap: int | None = None,
        batch_size: int | None = None,
        device: str = "auto",
        precision: str = "auto",
        backend: str | None = None,
        fast: bool = False,
        front_end: str = "auto",
        overlap_io: bool = True,
        on_note: Callable[[str], None] | None = None,
        settings: SeparationSettings | None = None,
    ) -> None:
        if settings is None:
            settings = SeparationSettings.from_keywords(
                model,
                ensemble=ensemble,
                params=params,
                force_params=force_params,
                primary=primary,
                agg=agg,
                tta=tta,
                high_end=high_end,
                post_process=post_process,
                window=window,
                segment=segment,
                overlap=overlap,
                denoise=denoise,
                config=config,
                num_overlap=num_overlap,
                device=device,
                precision=precision,
                backend=backend,
                fast=fast,
                front_end=front_end,
                batch_size=batch_size,
                overlap_io=overlap_io,
            )
        self.settings = settings
        self.runtime = Runtime.resolve(settings.runtime, on_note)
        map_large_allocations()  # before the weights: their temporaries would stay resident otherwise
        self.models = [families.load(path, settings.options, self.runtime) for path in settings.model_paths()]
        reuse_freed_memory()
        self.members_info: list[ModelInfo] = [model.info for model in self.models]
        self.info = self.members_info[0]
        self.stems = common_stems([info.stems for info in self.members_info])
        if not self.stems:
            given = "; ".join(f"{info.path.name}: {', '.join(info.stems)}" for info in self.members_info)
            raise UsageError(f"an ensemble combines the stems its models share, and these share none ({given})")
        self.run = pipeline.plan(self.models, settings.combine)

    @property
    def model_sample_rate(self) -> int:
        """The rate the (first) model works at: what --sample-rate model means."""
        return self.info.sample_rate

    @property
    def applied(self) -> set[str]:
        """The model options that shape this run's output (any of its models)."""
        return set().union(*(info.applies for info in self.members_info))

    def map_together(
        self, task: Callable[[Separator, Item], Outcome], items: Iterable[Item], files: int
    ) -> Iterator[Outcome]:
        """task(separator, item) for every item, `files` at a time in threads whose network windows run in shared
        batches of up to the batch size (engine/batching.py): for many short files on a GPU. Yields in item order."""
        together = copy.copy(self)
        together.run, batchers = pipeline.with_batchers(self.run, self.runtime.batch_size)

        def one(item: Item) -> Outcome:
            with contextlib.ExitStack() as clients:
                for batcher in batchers:
                    clients.enter_context(batcher.client())
                return task(together, item)

        pool = ThreadPoolExecutor(files, thread_name_prefix="uvr-file")
        try:
            yield from pool.map(one, items)
        finally:  # stopped early (Ctrl-C, an error, the reader went away): files in flight end at their next window
            for batcher in batchers:
                batcher.stop()
            pool.shutdown(wait=True, cancel_futures=True)

    def produce(
        self,
        open_reader: Opener,
        sinks: dict[str, Sink],
        output_rate: int,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """Run the engine over the input `open_reader` gives, into a sink per wanted stem."""
        pipeline.separate(
            self.run,
            open_reader,
            sinks,
            output_rate=output_rate,
            on_progress=on_progress,
            front_end=self.runtime.front_end,
        )

    def separate(
        self,
        audio: np.ndarray,
        sample_rate: int,
        *,
        stems: Sequence[str] | None = None,
        output_rate: int | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, np.ndarray]:
        """Separate `audio` (frames,) or (frames, channels) at `sample_rate` into the requested stems (default: all
        the model gives).

        Returns float32 arrays (frames, channels) at `output_rate` (default: the input's rate), as long as the input
        (rounded up at another rate); mono input gives mono stems. `on_progress(done, total)` counts network windows.
        """
        wanted = list(self.stems if stems is None else stems)
        check_stems(wanted, self.stems)
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim == 1:
            audio = audio[:, None]
        if audio.ndim != 2 or audio.shape[0] == 0:
            raise UsageError("audio must have shape (frames,) or (frames, channels) with at least one frame")
        parts: dict[str, list[np.ndarray]] = {stem: [] for stem in wanted}
        self.produce(
            lambda: contextlib.nullcontext(ArraySource(audio, sample_rate)),
            {stem: parts[stem].append for stem in wanted},
            output_rate or sample_rate,
            on_progress,
        )
        return {stem: np.concatenate(parts[stem]) for stem in wanted}

    def separate_file(
        self,
        source: str,
        outputs: dict[str, str],
        *,
        fmt: str = "wav",
        bit_depth: str | None = None,
        sample_rate: str | int = "input",
        bitrate: str | None = None,
        clip_mode: str = "clip",
        output: OutputOptions | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> FileResult:
        """Decode `source` ('-' = stdin), separate it and write each stem to its path in `outputs` ('-' = stdout).

        Every stem is written completely or not at all. clip_mode "clip" clips samples beyond full scale (counted);
        "rescale" scales all stems by one factor so that none clips (`FileResult.rescaled_by`). `output` (what the
        command line builds) replaces fmt, bit_depth, sample_rate, bitrate and clip_mode. Raises UvrError (one line
        naming the file) on failure.
        """
        output = output or OutputOptions(fmt, bit_depth, sample_rate, bitrate, clip_mode)
        check_stems(list(outputs), self.stems)
        return write_stems(
            source, outputs, output, self.model_sample_rate, self.settings.runtime.overlap_io, self.produce, on_progress
        )


def check_stems(wanted: Sequence[str], stems: Sequence[str]) -> None:
    unknown = set(wanted) - set(stems)
    if unknown or not wanted:
        raise UsageError(f"stems must be among {', '.join(stems)}, got {', '.join(sorted(wanted)) or 'none'}")


def write_stems(
    source: str,
    outputs: dict[str, str],
    output: OutputOptions,
    model_rate: int,
    overlap_io: bool,
    produce: Produce,
    on_progress: Callable[[int, int], None] | None = None,
) -> FileResult:
    """The file handling of every separation: decode `source`, check that the output format can hold this input,
    write each stem `produce` gives to its path in `outputs` atomically, and report what happened to the samples."""
    start = time.perf_counter()
    with open_source(source, allow_truncated=output.allow_truncated) as decoded:
        rate = output.rate(decoded.sample_rate, model_rate)
        depth = output.bit_depth if output.bit_depth is not None else default_bit_depth(output.fmt, decoded.subtype)
        channels = 1 if decoded.channels == 1 else 2
        try:  # before the separation: e.g. mp3 cannot store this input's rate
            output_subtype(output.fmt, depth, rate, channels, bitrate=output.bitrate)
        except UsageError as exc:
            raise AudioError(f"{decoded.name}: {exc}") from None
        frames_out = resampled_length(decoded.frames, decoded.sample_rate, rate)
        readers: list[BlockReader] = []

        def open_reader():
            reader = decoded.open()
            readers.append(reader)
            return ReadAhead(reader) if overlap_io else reader

        with open_stem_writers(
            outputs, rate, channels, output.fmt, depth, frames_out, bitrate=output.bitrate, clip_mode=output.clip_mode
        ) as writers:
            sinks: dict[str, Sink] = {stem: w.write for stem, w in writers.items()}
            behind = BackgroundSinks(sinks) if overlap_io else None
            try:
                produce(open_reader, behind.sinks if behind else sinks, rate, on_progress)
            except BaseException:
                if behind:
                    behind.abandon()
                raise
            if behind:
                behind.finish()
    result = FileResult(
        input=source, status="ok", duration_s=decoded.frames / decoded.sample_rate, outputs=dict(outputs)
    )
    nonfinite = max((r.nonfinite_replaced for r in readers), default=0)
    if nonfinite:
        result.warnings.append(f"{nonfinite} NaN/Inf input samples were replaced by silence")
    if decoded.channels > 2:
        result.warnings.append(f"{decoded.channels} channels were downmixed to stereo")
    if decoded.declared_frames:
        held, declared = (n / decoded.sample_rate for n in (decoded.frames, decoded.declared_frames))
        result.warnings.append(
            f"the file is truncated: separated the {held:.2f} s it holds of the {declared:.2f} s its header declares"
        )
    result.note_writers(writers)
    result.wall_s = time.perf_counter() - start
    return result


@dataclass
class FileResult:
    """The outcome of one input, as the CLI reports it (one JSON object per input with --json)."""

    input: str
    status: str  # "ok" or "skipped"
    outputs: dict[str, str] = field(default_factory=dict)
    duration_s: float | None = None
    wall_s: float = 0.0
    clipped_samples: dict[str, int] = field(default_factory=dict)
    rescaled_by: float = 1.0  # --clip-mode rescale: the factor every stem was multiplied by
    warnings: list[str] = field(default_factory=list)

    def note_writers(self, writers: dict[str, BlockWriter]) -> None:
        """What writing changed in the samples: clipped counts, or the rescaling factor, with their warnings."""
        for stem, writer in writers.items():
            if writer.clipped_samples:
                self.clipped_samples[stem] = writer.clipped_samples
                self.warnings.append(f"{stem}: {writer.clipped_samples} samples beyond full scale were clipped")
        self.rescaled_by = min(writer.scale for writer in writers.values())
        if self.rescaled_by < 1.0:
            self.warnings.append(
                f"scaled by {self.rescaled_by:.4f} ({20 * math.log10(self.rescaled_by):.2f} dB) so that no "
                "sample clips (--clip-mode rescale)"
            )

    @property
    def realtime_factor(self) -> float | None:
        """Wall time over audio duration (below 1 is faster than real time)."""
        return self.wall_s / self.duration_s if self.duration_s else None
