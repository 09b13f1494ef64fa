"""The frame path of the engine: decoded blocks -> band analysis -> network windows -> stem spectrograms -> synthesis.

Families whose networks work on spectrogram frames (VR) take this path, for every input: a file, a pipe or an
array. The family supplies a FrameModel: its band preset (a one-band preset is a plain STFT), what its network
reads of the analysed frames and how its outputs become each stem's frames (a magnitude mask, a complex
spectrogram, ...); the engine does the rest. Two passes over the input: the first analyses it block by block and
keeps only the running maximum of the combined magnitudes, for models that normalise by it; the second analyses
it again, runs the networks over each block's windows, and synthesises each stem's samples as soon as all the
frames they need are known, handing them to the stem's sink in order. Memory is bounded by the block, not the
song. What needs the whole song (VR's post-processing, 'reverse' presets) runs as one block spanning it; a song
shorter than a block is one block too, and then every stage is exactly the reference's whole-song one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from uvr_cli.catalog.presets import BandPreset
from uvr_cli.engine.analysis import Analyser, Frames
from uvr_cli.engine.blocks import BLOCK_SECONDS, InputStream, Opener, Result, Sink
from uvr_cli.engine.ensemble import combine
from uvr_cli.engine.frontend import NUMPY, FrontEnd
from uvr_cli.engine.resample import resampled_length
from uvr_cli.engine.synthesis import TAIL_CONTEXT_FRAMES, Synthesiser, synthesise_tail, tail_frame_count
from uvr_cli.engine.windows import NetworkRun, WindowRunner
from uvr_cli.settings import algorithm_for

StemFrames = dict[str, tuple[np.ndarray, np.ndarray | None]]
"""Per stem: its combined spectrogram frames, and its top-band rows above the network's bins (or None)."""


class FrameSong(Protocol):
    """A frame model's state over one song: turns analysed frames into each wanted stem's frames."""

    def frames(
        self,
        found: Frames,
        context: int,
        a: int,
        b: int,
        stems: Sequence[str],
        on_window: Callable[[int], None],
        ahead: bool,
    ) -> StemFrames:
        """The wanted stems' frames [a, b), from `found`: the analysis of frames [a - context, b + context).
        `on_window` and `ahead` are for the window runner (WindowRunner.outputs)."""
        ...

    def tail(self, extra: Frames, stems: Sequence[str]) -> StemFrames:
        """The wanted stems' frames after the song (synthesis.synthesise_tail), treated like its last frame."""
        ...


@runtime_checkable
class FrameModel(Protocol):
    """What a frame family gives the engine for one loaded model."""

    @property
    def preset(self) -> BandPreset: ...  # the analysis and synthesis bands (one band: a plain STFT)

    @property
    def network(self) -> NetworkRun: ...  # the network, and how the window loop runs it

    @property
    def stems(self) -> tuple[str, ...]: ...

    @property
    def keeps_high_end(self) -> bool: ...  # the analysis keeps the top band's rows above the combined bins

    @property
    def needs_scale(self) -> bool: ...  # pass 1 finds the song's largest combined magnitude for `song`

    @property
    def needs_whole_song(self) -> bool: ...

    def song(self, runner: WindowRunner, scale: float, n_frames: int) -> FrameSong: ...

    def with_network(self, network: NetworkRun) -> FrameModel: ...  # this model run another way (batching.py)


@dataclass(frozen=True)
class FrameRun:
    """What the frame path runs: one model, or an ensemble of models sharing one analysis (one band preset), and how
    each stem of theirs combines (ensemble.py; avg unless named)."""

    members: tuple[FrameModel, ...]
    combine: dict[str, str] = field(default_factory=dict)

    @property
    def preset(self) -> BandPreset:
        return self.members[0].preset

    @property
    def needs_whole_song(self) -> bool:
        return self.preset.reverse or any(m.needs_whole_song for m in self.members)


def block_frames(preset: BandPreset, roi: int, block_seconds: float) -> int:
    """Frames per network block: a whole number of rois, about `block_seconds` long."""
    hop_s = preset.top.hl / preset.top.sr
    return roi * max(1, round(block_seconds / (hop_s * roi)))


class _Stems:
    """Each stem's frames for the blocks of a pass: one analysis, each model's stems, combined."""

    def __init__(self, run: FrameRun, analyser: Analyser, stems: list[str], context: int, songs: list[FrameSong]):
        self.run, self.analyser, self.stems, self.context, self.songs = run, analyser, stems, context, songs

    def _combined(self, per_model: list[StemFrames]) -> StemFrames:
        out: StemFrames = {}
        for stem in self.stems:
            algorithm = algorithm_for(self.run.combine, stem)
            specs = [frames[stem][0] for frames in per_model]
            high = [h for frames in per_model if (h := frames[stem][1]) is not None]
            out[stem] = (combine(algorithm, specs), combine(algorithm, high) if len(high) == len(specs) else None)
        return out

    def frames(
        self, source: InputStream, a: int, b: int, on_window: Callable[[int], None], ahead: bool = False
    ) -> StemFrames:
        """Each stem's spectrogram and high end for frames [a, b) (`ahead`: see WindowRunner.outputs)."""
        found = self.analyser.analyse(source, a - self.context, b + self.context)
        return self._combined([s.frames(found, self.context, a, b, self.stems, on_window, ahead) for s in self.songs])

    def tail(self, source: InputStream) -> StemFrames:
        """Each stem's frames after the song (see synthesis.synthesise_tail)."""
        n = self.analyser.frames
        count = tail_frame_count(self.run.preset, n, self.analyser.top_length)
        extra = self.analyser.analyse(source, n, n + count, beyond_end=True)
        return self._combined([song.tail(extra, self.stems) for song in self.songs])


def _largest_magnitude(analyser: Analyser, source: InputStream, block: int) -> float:
    """Pass 1: the largest combined magnitude of the song."""
    largest = 0.0
    for a in range(0, analyser.frames, block):
        largest = max(largest, float(analyser.analyse(source, a, min(a + block, analyser.frames)).magnitude.max()))
    return largest


class _Output:
    """Pass 2's back end: the stems' frames so far, and each stem's samples handed to its sink as they complete."""

    def __init__(
        self,
        preset: BandPreset,
        analyser: Analyser,
        sinks: dict[str, Sink],
        output_rate: int,
        out_length: int,
        channels: int,
    ) -> None:
        self.preset, self.sinks, self.out_length, self.channels = preset, sinks, out_length, channels
        self.n_frames, self.top_length, self.front_end = analyser.frames, analyser.top_length, analyser.front_end
        self.synths = {
            stem: Synthesiser(self.preset, self.n_frames, self.top_length, output_rate, self.front_end)
            for stem in sinks
        }
        self.synth = next(iter(self.synths.values()))  # plans are the same for every stem
        self.tail_first = max(0, self.n_frames - TAIL_CONTEXT_FRAMES)
        self.buf: StemFrames = {}  # per stem: frames from buf_start on
        self.buf_start = self.written = 0

    def append(self, frames: StemFrames) -> None:
        for stem, (spec, high_end) in frames.items():
            if stem in self.buf:
                old_spec, old_high_end = self.buf[stem]
                spec = np.concatenate([old_spec, spec], axis=-1)
                high_end = None if high_end is None else np.concatenate([old_high_end, high_end], axis=-1)
            self.buf[stem] = (spec, high_end)

    def fill_edges(self, edges: StemFrames, edge_first: int) -> None:
        for stem, synth in self.synths.items():
            synth.fill_edges(self.buf[stem][0], edges[stem][0], edge_first)

    def end_song(self, extra: StemFrames) -> None:
        """Synthesise the samples after the last frame's centre from the frames after the song."""
        cut = self.tail_first - self.buf_start
        for stem, (extra_spec, extra_high_end) in extra.items():
            spec, high_end = self.buf[stem]
            local = np.concatenate([spec[:, :, cut:], extra_spec], axis=-1)
            local_he = None if high_end is None else np.concatenate([high_end[:, :, cut:], extra_high_end], axis=-1)
            self.synths[stem].end = synthesise_tail(
                local, local_he, self.preset, self.tail_first, self.n_frames, self.top_length, self.front_end
            )
        self.emit(self.out_length, self.n_frames)

    def ready(self, b: int) -> int:
        """The furthest output sample whose frames are all among the first `b`."""
        lo, hi = self.written, self.out_length
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.synth.plan(self.written, mid).frames[1] <= b:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def emit(self, q1: int, b: int) -> None:
        """Hand samples [written, q1) to the sinks, then drop the frames no later sample needs."""
        if q1 <= self.written:
            return
        plan = self.synth.plan(self.written, q1)
        assert plan.frames[0] >= self.buf_start
        for stem, synth in self.synths.items():
            wave = synth.synthesise(plan, *self.buf[stem], self.buf_start)
            self.sinks[stem](np.ascontiguousarray(wave[: self.channels].T, dtype=np.float32))
        self.written = q1
        keep = self.synth.plan(q1, min(q1 + 1, self.out_length)).frames[0] if q1 < self.out_length else b
        keep = min(max(keep, self.buf_start), b, self.tail_first)  # the tail's synthesis needs the last frames
        cut = keep - self.buf_start
        self.buf = {
            stem: (spec[:, :, cut:].copy(), None if he is None else he[:, :, cut:].copy())
            for stem, (spec, he) in self.buf.items()
        }
        self.buf_start = keep


def separate(
    run: FrameRun,
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
    `front_end` runs the transforms (frontend.py): on the host, or on the model's device.
    """
    preset, stems = run.preset, list(sinks)
    with open_source() as reader:  # pass 1
        n_in, rate_in, channels_in = reader.frames, reader.sample_rate, reader.channels
        output_rate = output_rate or rate_in
        analyser = Analyser(preset, n_in, rate_in, any(m.keeps_high_end for m in run.members), front_end)
        n_frames = analyser.frames
        networks = [m.network.for_song(n_frames) for m in run.members]
        block = block_frames(preset, networks[0].roi, BLOCK_SECONDS if block_seconds is None else block_seconds)
        whole = run.needs_whole_song or n_frames <= block
        block = max(n_frames, 1) if whole else block
        output = _Output(
            preset,
            analyser,
            sinks,
            output_rate,
            resampled_length(n_in, rate_in, output_rate) if output_rate != rate_in else n_in,
            1 if channels_in == 1 else 2,
        )
        head_need, edge_first = output.synth.edge_frames()
        needs_edges = bool(output.synth.fft_levels) and not whole
        context = max(network.context for network in networks)  # the widest model's
        keep_from = analyser.input_start(edge_first - context, n_frames + context) if needs_edges else 0
        source = InputStream(reader, keep_from if needs_edges or whole else None)
        scale = _largest_magnitude(analyser, source, block) if any(m.needs_scale for m in run.members) else 1.0
        runners = [WindowRunner(network) for network in networks]  # shared: pass 2 reuses the edges' windows

        def pass_of_songs() -> _Stems:
            songs = [m.song(runner, scale, n_frames) for m, runner in zip(run.members, runners)]
            return _Stems(run, analyser, stems, context, songs)

        edges = pass_of_songs().frames(source, edge_first, n_frames, lambda n: None, True) if needs_edges else {}
    pieces = pass_of_songs()
    total, done = sum(network.count_windows(n_frames) for network in networks), 0

    def step(n: int) -> None:
        nonlocal done
        done = min(total, done + n)
        if on_progress:
            on_progress(done, total)

    with open_source() as reader:  # pass 2
        source = InputStream(reader, 0 if whole else None)
        for a in range(0, n_frames, block):
            b = min(a + block, n_frames)
            output.append(pieces.frames(source, a, b, step))
            if edges and b >= min(head_need, n_frames):
                output.fill_edges(edges, edge_first)
                edges = {}
            if edges:
                continue
            if b >= n_frames:
                output.end_song(pieces.tail(source))
            else:
                output.emit(output.ready(b), b)
    if output.written < output.out_length:  # only when the song has no frames at all
        for sink in sinks.values():
            sink(np.zeros((output.out_length - output.written, output.channels), dtype=np.float32))
    return Result(n_in, rate_in, channels_in, output.out_length)
