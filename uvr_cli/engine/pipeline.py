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
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from uvr_cli.catalog.presets import BandPreset
from uvr_cli.engine.analysis import Analyser, BlockSource, Frames, InputStream
from uvr_cli.engine.postprocess import mask_silence
from uvr_cli.engine.resample import resampled_length
from uvr_cli.engine.spectral import mirror
from uvr_cli.engine.synthesis import TAIL_CONTEXT_FRAMES, Synthesiser, synthesise_tail, tail_frame_count
from uvr_cli.engine.windows import NetworkRun, WindowRunner

STEMS = ("vocals", "instrumental")
BLOCK_SECONDS = 15.0  # network block: peak memory grows with it, speed does not (benchmarks/RESULTS.md)

Sink = Callable[[np.ndarray], None]
Opener = Callable[[], contextlib.AbstractContextManager[BlockSource]]


@dataclass(frozen=True)
class Settings:
    """What the engine does besides the network: the band preset, which stem the mask gives, high end, post-processing."""

    preset: BandPreset
    network: NetworkRun
    primary: str  # "vocals" or "instrumental": the stem that is mask * mix
    high_end: str = "mirroring"  # "mirroring", "mirroring2" or "none"
    post_process: bool = False

    @property
    def needs_whole_song(self) -> bool:
        return self.preset.reverse or self.post_process


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


class _Stems:
    """Each stem's frames for the blocks of pass 2: analysis, mask, the stems' spectrograms and mirrored high ends."""

    def __init__(self, settings: Settings, analyser: Analyser, stems: list[str], coef: float) -> None:
        self.settings, self.analyser, self.stems, self.coef = settings, analyser, stems, coef
        self.secondary = next(s for s in STEMS if s != settings.primary)
        self.last_mask: np.ndarray | None = None

    def _split(self, spec: np.ndarray, primary: np.ndarray, high_end: np.ndarray | None
               ) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        by_label = {self.settings.primary: primary}
        if self.secondary in self.stems:
            by_label[self.secondary] = spec - primary
        mode, preset = self.settings.high_end, self.settings.preset
        return {stem: (by_label[stem], None if high_end is None else mirror(mode, by_label[stem], high_end, preset))
                for stem in self.stems}

    def frames(self, source: InputStream, runner: WindowRunner, a: int, b: int, on_window: Callable[[int], None]
               ) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """Each stem's spectrogram and mirrored high end for frames [a, b)."""
        ctx = runner.context
        found = self.analyser.analyse(source, a - ctx, b + ctx)
        magnitude = np.abs(found.spec)
        if self.coef > 0:
            mask = runner.mask(magnitude / self.coef, a - ctx, a, b, on_window)
        else:
            mask = np.zeros((2, found.spec.shape[1], b - a), dtype=np.float32)
        if b == self.analyser.frames:
            self.last_mask = mask[:, :, -1:]
        centre = found.spec[:, :, ctx : ctx + b - a]
        if self.settings.post_process:
            pred = mask * magnitude[:, :, ctx : ctx + b - a]
            pred = mask_silence(pred, np.clip(magnitude[:, :, ctx : ctx + b - a] - pred, 0, np.inf))
            primary = pred * np.exp(1.0j * np.angle(centre)).astype(np.complex64)
        else:
            primary = mask * centre
        high_end = None if found.high_end is None else found.high_end[:, :, ctx : ctx + b - a]
        return self._split(centre, primary, high_end)

    def tail(self, source: InputStream) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """Each stem's frames after the song, masked like its last frame (see synthesis.synthesise_tail)."""
        n = self.analyser.frames
        extra: Frames = self.analyser.analyse(source, n, n + tail_frame_count(self.settings.preset, n,
                                                                                self.analyser.top_length),
                                              beyond_end=True)
        assert self.last_mask is not None
        return self._split(extra.spec, self.last_mask * extra.spec, extra.high_end)


def _normalisation(analyser: Analyser, source: InputStream, block: int) -> float:
    """Pass 1: the largest combined magnitude of the song."""
    coef = 0.0
    for a in range(0, analyser.frames, block):
        coef = max(coef, float(np.abs(analyser.analyse(source, a, min(a + block, analyser.frames)).spec).max()))
    return coef


def _last_ready(synth: Synthesiser, written: int, b: int) -> int:
    """The furthest output sample whose frames are all among the first `b`."""
    lo, hi = written, synth.out_length
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if synth.plan(written, mid).frames[1] <= b:
            lo = mid
        else:
            hi = mid - 1
    return lo


def separate(settings: Settings, open_source: Opener, sinks: dict[str, Sink], *, output_rate: int | None = None,
             block_seconds: float | None = None, on_progress: Callable[[int, int], None] | None = None) -> Result:
    """Separate the input `open_source()` gives (opened once per pass), handing each stem's samples to its sink.

    Sinks get (frames, channels) float32 blocks in order: mono input gives mono stems, anything else stereo;
    `output_rate` defaults to the input's rate, and each stem is exactly as long as the input at that rate.
    """
    preset, stems = settings.preset, list(sinks)
    block_seconds = BLOCK_SECONDS if block_seconds is None else block_seconds
    with open_source() as reader:
        n_in, rate_in, channels_in = reader.frames, reader.sample_rate, reader.channels
        output_rate = output_rate or rate_in
        analyser = Analyser(preset, n_in, rate_in, settings.high_end != "none")
        n_frames = analyser.frames
        runner = WindowRunner(settings.network)
        ctx = runner.context
        whole = settings.needs_whole_song or n_frames <= block_frames(preset, runner.roi, block_seconds)
        block = max(n_frames, 1) if whole else block_frames(preset, runner.roi, block_seconds)
        synths = {stem: Synthesiser(preset, n_frames, analyser.top_length, output_rate) for stem in stems}
        synth = synths[stems[0]]
        head_need, edge_first = synth.edge_frames()
        needs_edges = bool(synth.fft_levels) and n_frames > 0 and not whole
        keep_from = 0 if whole else analyser.input_start(edge_first - ctx, n_frames + ctx) if needs_edges else None
        source = InputStream(reader, keep_from)
        coef = _normalisation(analyser, source, block)
        pieces = _Stems(settings, analyser, stems, coef)
        edges = pieces.frames(source, WindowRunner(settings.network), edge_first, n_frames, lambda n: None
                              ) if needs_edges else {}
    channels = 1 if channels_in == 1 else 2
    out_length = resampled_length(n_in, rate_in, output_rate) if output_rate != rate_in else n_in
    total = settings.network.count_windows(n_frames)
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done = min(total, done + n)
        if on_progress:
            on_progress(done, total)

    tail_first = max(0, n_frames - TAIL_CONTEXT_FRAMES)
    buf: dict[str, list] = {s: [] for s in stems}  # per stem: [spec frames, high-end frames] from frame buf_start
    buf_start = written = 0
    with open_source() as reader:
        source = InputStream(reader, 0 if whole else None)
        for a in range(0, n_frames, block):
            b = min(a + block, n_frames)
            for stem, (spec_s, he_s) in pieces.frames(source, runner, a, b, step).items():
                if buf[stem]:
                    spec_s = np.concatenate([buf[stem][0], spec_s], axis=-1)
                    he_s = None if he_s is None else np.concatenate([buf[stem][1], he_s], axis=-1)
                buf[stem] = [spec_s, he_s]
            if needs_edges and not synth.head:
                if b < min(head_need, n_frames):
                    continue
                for stem in stems:
                    synths[stem].fill_edges(buf[stem][0], edges[stem][0], edge_first)
                edges = {}
            if b >= n_frames:
                for stem, (extra, extra_he) in pieces.tail(source).items():
                    spec_s, he_s = buf[stem]
                    local = np.concatenate([spec_s[:, :, tail_first - buf_start :], extra], axis=-1)
                    local_he = None if he_s is None else np.concatenate([he_s[:, :, tail_first - buf_start :],
                                                                          extra_he], axis=-1)
                    synths[stem].end = synthesise_tail(local, local_he, preset, tail_first, n_frames,
                                                       analyser.top_length)
                q1 = out_length
            else:
                q1 = _last_ready(synth, written, b)
            if q1 <= written:
                continue
            plan = synth.plan(written, q1)
            assert plan.frames[0] >= buf_start
            for stem in stems:
                wave = synths[stem].synthesise(plan, buf[stem][0], buf[stem][1], buf_start)
                sinks[stem](np.ascontiguousarray(wave[:channels].T, dtype=np.float32))
            written = q1
            keep = synth.plan(written, min(written + 1, out_length)).frames[0] if written < out_length else b
            keep = min(max(keep, buf_start), b, tail_first)  # the tail's synthesis needs the last frames
            for stem in stems:
                spec_s, he_s = buf[stem]
                cut = keep - buf_start
                buf[stem] = [spec_s[:, :, cut:].copy(), None if he_s is None else he_s[:, :, cut:].copy()]
            buf_start = keep
    if written < out_length:  # only when the song has no frames at all
        for stem in stems:
            sinks[stem](np.zeros((out_length - written, channels), dtype=np.float32))
    return Result(n_in, rate_in, channels_in, out_length)
