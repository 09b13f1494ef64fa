"""The one separation engine: decoded blocks -> band analysis -> network windows -> masks -> stems -> synthesis.

Every input takes this path, from a file, a pipe or an array. Two passes over the input: the first analyses it
block by block and keeps only the running maximum of the combined magnitudes (the normalisation is global); the
second analyses it again, runs the network over each block's windows, and synthesises each stem's samples as soon
as all the frames they need are known, handing them to the stem's sink in order. Memory is bounded by the block,
not the song. What needs the whole song (RVC's post-processing, 'reverse' presets) runs as one block spanning it;
a song shorter than a block is one block too, and then every stage is exactly the reference's whole-song one.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from uvr_cli.catalog.presets import BandPreset
from uvr_cli.engine.analysis import Analyser, BlockSource, Frames, InputStream
from uvr_cli.engine.ensemble import combine
from uvr_cli.engine.families.vr.postprocess import mask_silence
from uvr_cli.engine.frontend import NUMPY, FrontEnd
from uvr_cli.engine.resample import resampled_length
from uvr_cli.engine.spectral import mirror
from uvr_cli.engine.synthesis import TAIL_CONTEXT_FRAMES, Synthesiser, synthesise_tail, tail_frame_count
from uvr_cli.engine.windows import NetworkRun, WindowRunner

STEMS = ("vocals", "instrumental")
BLOCK_SECONDS = 15.0  # network block: peak memory grows with it, speed does not (benchmarks/RESULTS.md)

Sink = Callable[[np.ndarray], None]
Opener = Callable[[], contextlib.AbstractContextManager[BlockSource]]


@dataclass(frozen=True)
class Member:
    """One model of a run: how its network runs, and which stem its mask gives ("vocals" or "instrumental")."""

    network: NetworkRun
    primary: str


@dataclass(frozen=True)
class Settings:
    """What the engine runs: the band preset, the models (one, or an ensemble over one analysis), how their stems
    combine, the high-end processing and post-processing."""

    preset: BandPreset
    members: tuple[Member, ...]
    high_end: str = "mirroring"  # "mirroring", "mirroring2" or "none"
    post_process: bool = False
    combine: dict[str, str] = field(default_factory=lambda: {"vocals": "avg", "instrumental": "avg"})

    @property
    def needs_whole_song(self) -> bool:
        return self.preset.reverse or self.post_process

    @property
    def context(self) -> int:
        """Frames of input each side of a block that the members' windows read: the widest member's."""
        return max(m.network.context for m in self.members)

    def count_windows(self, n_frames: int) -> int:
        return sum(m.network.count_windows(n_frames) for m in self.members)

    def for_song(self, n_frames: int) -> Settings:
        """These settings with each network's window for a song of `n_frames` frames (NetworkRun.for_song)."""
        members = tuple(dataclasses.replace(m, network=m.network.for_song(n_frames)) for m in self.members)
        return dataclasses.replace(self, members=members)


@dataclass(frozen=True)
class Result:
    frames_in: int
    sample_rate: int
    channels: int
    output_frames: int


def block_frames(preset: BandPreset, roi: int, block_seconds: float) -> int:
    """Frames per network block: a whole number of rois, about `block_seconds` long."""
    hop_s = preset.top.hl / preset.top.sr
    return roi * max(1, round(block_seconds / (hop_s * roi)))


StemFrames = dict[str, tuple[np.ndarray, np.ndarray | None]]  # per stem: spectrogram, mirrored high end


class _Stems:
    """Each stem's frames for the blocks of a pass: one analysis, each model's mask, the stems combined."""

    def __init__(
        self, settings: Settings, analyser: Analyser, stems: list[str], coef: float, runners: list[WindowRunner]
    ) -> None:
        self.settings, self.analyser, self.stems, self.coef = settings, analyser, stems, coef
        self.runners = runners
        self.context = settings.context
        self.last_masks: list[np.ndarray] = []

    def _split(self, member: Member, spec: np.ndarray, primary: np.ndarray) -> dict[str, np.ndarray]:
        secondary = next(s for s in STEMS if s != member.primary)
        by_label = {member.primary: primary}
        if secondary in self.stems:
            by_label[secondary] = spec - primary
        return by_label

    def _combined(self, spec: np.ndarray, primaries: list[np.ndarray], high_end: np.ndarray | None) -> StemFrames:
        mode, preset = self.settings.high_end, self.settings.preset
        out: StemFrames = {}
        for stem in self.stems:
            specs = [self._split(m, spec, p)[stem] for m, p in zip(self.settings.members, primaries)]
            mirrored = None if high_end is None else [mirror(mode, s, high_end, preset) for s in specs]
            algorithm = self.settings.combine[stem]
            out[stem] = (combine(algorithm, specs), None if mirrored is None else combine(algorithm, mirrored))
        return out

    def frames(
        self, source: InputStream, a: int, b: int, on_window: Callable[[int], None], ahead: bool = False
    ) -> StemFrames:
        """Each stem's spectrogram and mirrored high end for frames [a, b) (`ahead`: see WindowRunner.mask)."""
        ctx = self.context
        found = self.analyser.analyse(source, a - ctx, b + ctx)
        magnitude = np.abs(found.spec)
        centre = found.spec[:, :, ctx : ctx + b - a]
        primaries = []
        for runner in self.runners:
            if self.coef > 0:
                mask = runner.mask(magnitude / self.coef, a - ctx, a, b, on_window, ahead)
            else:
                mask = np.zeros((2, found.spec.shape[1], b - a), dtype=np.float32)
            if b == self.analyser.frames:
                self.last_masks.append(mask[:, :, -1:])
            if self.settings.post_process:
                pred = mask * magnitude[:, :, ctx : ctx + b - a]
                pred = mask_silence(pred, np.clip(magnitude[:, :, ctx : ctx + b - a] - pred, 0, np.inf))
                primaries.append(pred * np.exp(1.0j * np.angle(centre)).astype(np.complex64))
            else:
                primaries.append(mask * centre)
        high_end = None if found.high_end is None else found.high_end[:, :, ctx : ctx + b - a]
        return self._combined(centre, primaries, high_end)

    def tail(self, source: InputStream) -> StemFrames:
        """Each stem's frames after the song, masked like its last frame (see synthesis.synthesise_tail)."""
        n = self.analyser.frames
        count = tail_frame_count(self.settings.preset, n, self.analyser.top_length)
        extra: Frames = self.analyser.analyse(source, n, n + count, beyond_end=True)
        return self._combined(extra.spec, [m * extra.spec for m in self.last_masks], extra.high_end)


def _normalisation(analyser: Analyser, source: InputStream, block: int) -> float:
    """Pass 1: the largest combined magnitude of the song."""
    coef = 0.0
    for a in range(0, analyser.frames, block):
        coef = max(coef, float(np.abs(analyser.analyse(source, a, min(a + block, analyser.frames)).spec).max()))
    return coef


class _Output:
    """Pass 2's back end: the stems' frames so far, and each stem's samples handed to its sink as they complete."""

    def __init__(
        self,
        settings: Settings,
        analyser: Analyser,
        sinks: dict[str, Sink],
        output_rate: int,
        out_length: int,
        channels: int,
    ) -> None:
        self.preset, self.sinks, self.out_length, self.channels = settings.preset, sinks, out_length, channels
        self.n_frames, self.top_length, self.front_end = analyser.frames, analyser.top_length, analyser.front_end
        self.synths = {
            stem: Synthesiser(self.preset, self.n_frames, self.top_length, output_rate, self.front_end)
            for stem in sinks
        }
        self.synth = next(iter(self.synths.values()))  # plans are the same for every stem
        self.tail_first = max(0, self.n_frames - TAIL_CONTEXT_FRAMES)
        self.buf: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}  # per stem: frames from buf_start on
        self.buf_start = self.written = 0

    def append(self, frames: dict[str, tuple[np.ndarray, np.ndarray | None]]) -> None:
        for stem, (spec, high_end) in frames.items():
            if stem in self.buf:
                old_spec, old_high_end = self.buf[stem]
                spec = np.concatenate([old_spec, spec], axis=-1)
                high_end = None if high_end is None else np.concatenate([old_high_end, high_end], axis=-1)
            self.buf[stem] = (spec, high_end)

    def fill_edges(self, edges: dict[str, tuple[np.ndarray, np.ndarray | None]], edge_first: int) -> None:
        for stem, synth in self.synths.items():
            synth.fill_edges(self.buf[stem][0], edges[stem][0], edge_first)

    def end_song(self, extra: dict[str, tuple[np.ndarray, np.ndarray | None]]) -> None:
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
    settings: Settings,
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
    preset, stems = settings.preset, list(sinks)
    with open_source() as reader:  # pass 1
        n_in, rate_in, channels_in = reader.frames, reader.sample_rate, reader.channels
        output_rate = output_rate or rate_in
        analyser = Analyser(preset, n_in, rate_in, settings.high_end != "none", front_end)
        settings = settings.for_song(analyser.frames)
        n_frames, roi = analyser.frames, settings.members[0].network.roi
        block = block_frames(preset, roi, BLOCK_SECONDS if block_seconds is None else block_seconds)
        whole = settings.needs_whole_song or n_frames <= block
        block = max(n_frames, 1) if whole else block
        output = _Output(
            settings,
            analyser,
            sinks,
            output_rate,
            resampled_length(n_in, rate_in, output_rate) if output_rate != rate_in else n_in,
            1 if channels_in == 1 else 2,
        )
        head_need, edge_first = output.synth.edge_frames()
        needs_edges = bool(output.synth.fft_levels) and not whole
        context = settings.context
        keep_from = analyser.input_start(edge_first - context, n_frames + context) if needs_edges else 0
        source = InputStream(reader, keep_from if needs_edges or whole else None)
        coef = _normalisation(analyser, source, block)
        runners = [WindowRunner(m.network) for m in settings.members]  # shared: pass 2 reuses the edges' windows
        edges = (
            _Stems(settings, analyser, stems, coef, runners).frames(source, edge_first, n_frames, lambda n: None, True)
            if needs_edges
            else {}
        )
    pieces = _Stems(settings, analyser, stems, coef, runners)
    total, done = settings.count_windows(n_frames), 0

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
