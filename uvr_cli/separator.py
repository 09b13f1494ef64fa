"""`Separator`: a model loaded once, and the one engine (engine/pipeline.py) run over arrays, files and pipes."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from uvr_cli.catalog.models import resolve_model
from uvr_cli.catalog.registry import ModelIdentity
from uvr_cli.engine import pipeline
from uvr_cli.engine.analysis import ArraySource
from uvr_cli.engine.batching import WindowBatcher
from uvr_cli.engine.device import configure_gpu_math, resolve_device, resolve_precision
from uvr_cli.engine.ensemble import parse as ensemble_algorithms
from uvr_cli.engine.families.vr.export import check_window
from uvr_cli.engine.families.vr.fast import mode_defaults
from uvr_cli.engine.families.vr.loading import Model, load_model
from uvr_cli.engine.families.vr.nets import Aggressiveness, CascadedNetSpec, NetworkSpec
from uvr_cli.engine.families.vr.onnx_runtime import BACKENDS, onnx_mask_model
from uvr_cli.engine.families.vr.optimize import prepare_for_inference
from uvr_cli.engine.frontend import resolve_front_end
from uvr_cli.engine.malloc import map_large_allocations, reuse_freed_memory
from uvr_cli.engine.pipeline import STEMS
from uvr_cli.engine.resample import resampled_length
from uvr_cli.engine.windows import MaskModel, NetworkRun, run_windows
from uvr_cli.errors import AudioError, UsageError
from uvr_cli.io.decode import open_source
from uvr_cli.io.encode import BlockWriter, open_stem_writers, output_subtype
from uvr_cli.io.overlap import BackgroundSinks, ReadAhead

HIGH_END_MODES = ("mirroring", "mirroring2", "none")
Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


@dataclass(frozen=True)
class ModelInfo:
    """What was loaded, for reports: the file, the architecture, the preset and the stem labels."""

    path: Path
    spec: NetworkSpec
    preset: str
    identity: ModelIdentity
    primary: str  # "vocals" or "instrumental": which of our stems is mask * mix

    @property
    def uses_aggressiveness(self) -> bool:
        """CascadedNet (v5.1) models ignore --agg, as in RVC."""
        return not isinstance(self.spec, CascadedNetSpec)


class Separator:
    """Load a UVR5 VR model (or an ensemble of models) once and separate any number of songs with it.

    >>> sep = Separator(model="HP2_all_vocals.pth", agg=10)
    >>> stems = sep.separate(audio, 44100)   # {"vocals": (frames, ch), "instrumental": (frames, ch)}
    >>> both = Separator(model=["HP2_all_vocals.pth", "HP5_only_main_vocal.pth"], ensemble="max/min")
    >>> quick = Separator(model="HP2_all_vocals.pth", fast=True)   # int8 in ONNX Runtime, wider windows
    """

    def __init__(
        self,
        model: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
        *,
        ensemble: str = "avg",
        params: str | os.PathLike | None = None,
        agg: float = 10,
        tta: bool = False,
        high_end: str = "mirroring",
        post_process: bool = False,
        primary: str | None = None,
        window: int | None = None,
        batch_size: int | None = None,
        device: str = "auto",
        precision: str = "auto",
        backend: str | None = None,
        fast: bool = False,
        front_end: str = "auto",
        overlap_io: bool = True,
        on_note: Callable[[str], None] | None = None,
    ) -> None:
        if high_end not in HIGH_END_MODES:
            raise UsageError(f"--high-end {high_end!r}: use {', '.join(HIGH_END_MODES)}")
        if primary not in (None, *STEMS):
            raise UsageError(f"--primary {primary!r}: use vocals or instrumental")
        if batch_size is not None and batch_size < 1:
            raise UsageError("--batch-size must be at least 1")
        if not 0 <= agg <= 100:
            raise UsageError(f"--agg {agg}: use a value from 0 to 100 (10 is RVC's default)")
        if fast and backend == "torch":
            raise UsageError("--fast runs the network in ONNX Runtime: leave out --backend torch")
        self.fit_window = fast and window is None  # --fast's window is the widest; each song gets its own
        backend, self.window = mode_defaults(fast, backend, window)
        if backend not in BACKENDS:
            raise UsageError(f"--backend {backend!r}: use {' or '.join(BACKENDS)}")
        self.backend, self.fast = backend, fast
        self._ort_options = {"device": device, "precision": precision}
        self._on_note = on_note  # hears the one line before a first --fast/ONNX preparation
        self.front_end = resolve_front_end(front_end, resolve_device(device))  # on the device asked for, even with ORT
        self.overlap_io = overlap_io  # files decode ahead and stems encode behind, in threads (io/overlap.py)
        if backend == "onnxruntime":  # the window loop hands ORT host arrays; ORT picks its own device and precision
            device, precision = "cpu", "fp32"
        self.agg, self.tta, self.high_end, self.post_process = agg, tta, high_end, post_process
        self.device = resolve_device(device)
        # One window at a time on the CPU: batching gains nothing there and multiplies the activation memory
        # (a ch32 net at 672 bins holds ~0.5 GB per window); GPUs want batches.
        self.batch_size = batch_size or (1 if self.device.type == "cpu" else 8)
        self.dtype = resolve_precision(precision, self.device)
        configure_gpu_math(self.device, self.dtype)
        combine = ensemble_algorithms(ensemble)
        map_large_allocations()  # before the weights: their temporaries would stay resident otherwise
        names: Sequence[str | os.PathLike | None]
        if model is None or isinstance(model, (str, os.PathLike)):
            names = [model]
        else:  # an ensemble: a list, tuple or other sequence of models
            names = model
        paths = [resolve_model(m) for m in names]
        loaded = [load_model(path, params) for path in paths]
        self.preset = loaded[0].preset
        for other in loaded[1:]:  # an ensemble's models share one analysis
            if other.preset != self.preset:
                raise UsageError(
                    f"{other.path.name} runs with preset {other.preset.name}, {paths[0].name} with "
                    f"{self.preset.name}: an ensemble's models must share one band preset"
                )
        members = [self._member(one, primary) for one in loaded]
        reuse_freed_memory()
        self.members_info = [info for _, info in members]
        self.info = self.members_info[0]
        self.settings = pipeline.Settings(
            self.preset, tuple(member for member, _ in members), high_end, post_process, combine
        )

    def _member(self, loaded: Model, primary: str | None) -> tuple[pipeline.Member, ModelInfo]:
        """One loaded model made ready to run, with what reports say about it."""
        network = loaded.loaded.module
        check_window(self.window, network.offset, network.depth)
        label = primary or ("vocals" if loaded.identity.primary_is_vocals else "instrumental")
        info = ModelInfo(
            path=loaded.path, spec=loaded.loaded.spec, preset=self.preset.name, identity=loaded.identity, primary=label
        )
        net: MaskModel = (
            prepare_for_inference(network, self.device)
            if self.backend == "torch"
            else onnx_mask_model(loaded, window=self.window, fast=self.fast, note=self._on_note, **self._ort_options)
        )
        run = NetworkRun(
            net,
            self.window,
            Aggressiveness(self.agg / 100, self.preset.split_bin),
            self.tta,
            self.batch_size,
            self.device,
            self.dtype,
            fit=self.fit_window,
            step=2**network.depth,
        )
        return pipeline.Member(run, label), info

    def map_together(
        self, task: Callable[[Separator, Item], Outcome], items: Iterable[Item], files: int
    ) -> Iterator[Outcome]:
        """task(separator, item) for every item, `files` at a time in threads whose network windows run in shared
        batches of up to batch_size (engine/batching.py): for many short files on a GPU. Yields in item order."""
        batchers = [
            WindowBatcher(functools.partial(run_windows, m.network), self.batch_size) for m in self.settings.members
        ]
        members = tuple(
            dataclasses.replace(m, network=dataclasses.replace(m.network, batcher=batcher))
            for m, batcher in zip(self.settings.members, batchers)
        )
        together = copy.copy(self)
        together.settings = dataclasses.replace(self.settings, members=members)

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

    @property
    def model_sample_rate(self) -> int:
        return self.preset.sr

    def separate(
        self,
        audio: np.ndarray,
        sample_rate: int,
        *,
        stems: Sequence[str] = STEMS,
        output_rate: int | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, np.ndarray]:
        """Separate `audio` (frames,) or (frames, channels) at `sample_rate` into the requested stems.

        Returns float32 arrays (frames, channels) at `output_rate` (default: the input's rate), as long as the input
        (rounded up at another rate); mono input gives mono stems. `on_progress(done, total)` counts network windows.
        """
        _check_stems(stems)
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim == 1:
            audio = audio[:, None]
        if audio.ndim != 2 or audio.shape[0] == 0:
            raise UsageError("audio must have shape (frames,) or (frames, channels) with at least one frame")
        parts: dict[str, list[np.ndarray]] = {stem: [] for stem in stems}
        pipeline.separate(
            self.settings,
            lambda: contextlib.nullcontext(ArraySource(audio, sample_rate)),
            {stem: parts[stem].append for stem in stems},
            output_rate=output_rate,
            on_progress=on_progress,
            front_end=self.front_end,
        )
        return {stem: np.concatenate(parts[stem]) for stem in stems}

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
        on_progress: Callable[[int, int], None] | None = None,
    ) -> FileResult:
        """Decode `source` ('-' = stdin), separate it and write each stem to its path in `outputs` ('-' = stdout).

        Every stem is written completely or not at all. clip_mode "clip" clips samples beyond full scale (counted);
        "rescale" scales all stems by one factor so that none clips (`FileResult.rescaled_by`). Raises UvrError
        (one line naming the file) on failure.
        """
        if fmt not in OUTPUT_DEPTHS:
            raise UsageError(f"--format {fmt!r}: use {', '.join(OUTPUT_DEPTHS)}")
        if bit_depth is not None and bit_depth not in OUTPUT_DEPTHS[fmt]:
            raise UsageError(f"--bit-depth {bit_depth} is not possible with --format {fmt}")
        _check_stems(list(outputs))
        start = time.perf_counter()
        with open_source(source) as decoded:
            named_rates = {"input": decoded.sample_rate, "model": self.preset.sr}
            rate = named_rates.get(sample_rate, sample_rate) if isinstance(sample_rate, str) else sample_rate
            if not isinstance(rate, int) or rate <= 0:
                raise UsageError(f"--sample-rate {sample_rate!r}: use input, model or a rate in Hz")
            depth = bit_depth if bit_depth is not None else default_bit_depth(fmt, decoded.subtype)
            channels = 1 if decoded.channels == 1 else 2
            try:  # before the separation: e.g. mp3 cannot store this input's rate
                output_subtype(fmt, depth, rate, channels, bitrate=bitrate)
            except UsageError as exc:
                raise AudioError(f"{decoded.name}: {exc}") from None
            frames_out = resampled_length(decoded.frames, decoded.sample_rate, rate)
            readers = []

            def open_reader():
                reader = decoded.open()
                readers.append(reader)
                return ReadAhead(reader) if self.overlap_io else reader

            with open_stem_writers(
                outputs, rate, channels, fmt, depth, frames_out, bitrate=bitrate, clip_mode=clip_mode
            ) as writers:
                sinks: dict[str, pipeline.Sink] = {stem: w.write for stem, w in writers.items()}
                behind = BackgroundSinks(sinks) if self.overlap_io else None
                try:
                    pipeline.separate(
                        self.settings,
                        open_reader,
                        behind.sinks if behind else sinks,
                        output_rate=rate,
                        on_progress=on_progress,
                        front_end=self.front_end,
                    )
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
        result.note_writers(writers)
        result.wall_s = time.perf_counter() - start
        return result


def _check_stems(stems: Sequence[str]) -> None:
    unknown = set(stems) - set(STEMS)
    if unknown or not stems:
        raise UsageError(f"stems must be among {STEMS}, got {sorted(stems)}")


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

    warnings: list[str] = field(default_factory=list)

    @property
    def realtime_factor(self) -> float | None:
        """Wall time over audio duration (below 1 is faster than real time)."""
        return self.wall_s / self.duration_s if self.duration_s else None


OUTPUT_DEPTHS = {"wav": ("16", "24", "32f"), "flac": ("16", "24"), "ogg": (None,), "mp3": (None,)}


def default_bit_depth(fmt: str, input_subtype: str | None) -> str | None:
    """The input's bit depth where the output format can hold it, else the nearest the format allows."""
    allowed = OUTPUT_DEPTHS[fmt]
    if allowed == (None,):
        return None
    wanted = {"PCM_24": "24", "PCM_32": "32f", "FLOAT": "32f", "DOUBLE": "32f"}.get(input_subtype or "", "16")
    if wanted in allowed:
        return wanted
    return "24" if wanted == "32f" else "16"
