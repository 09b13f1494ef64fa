"""Band synthesis: output samples of any range of a stem, from the stem's combined spectrogram frames around them.

Band d's summed wave S_d (its own iSTFT plus the bands below, resampled as RVC does: libsamplerate's sinc_fastest
from band 0, scipy's FFT resample between the others) is computed over ranges planned from the top band down. Where
S_d is FFT-resampled, the whole-song resample sees the song's other end beyond each end: `fill_edges` computes those
samples first. A plan spanning the whole song is computed whole, exactly as the reference does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from uvr_cli.catalog.presets import BandPreset
from uvr_cli.engine import spectral
from uvr_cli.engine.frontend import NUMPY, FrontEnd
from uvr_cli.engine.ranges import FFT_CONTEXT_S, resample_range, source_range
from uvr_cli.engine.resample import resampled_length
from uvr_cli.engine.span import Span

OUTPUT_RESAMPLER = "kaiser_best"  # for output at a rate other than the model's (the UVR GUI uses it too)
TAIL_CONTEXT_FRAMES = 128  # frames before the tail that its synthesis sees (about 1.4 s)


@dataclass(frozen=True)
class Plan:
    """What output samples [q0, q1) need: top-band and per-band wave ranges, and the stem frames they read."""

    q0: int
    q1: int
    top: tuple[int, int]
    bands: list[tuple[int, int]]
    frames: tuple[int, int]


class Synthesiser:
    """Output samples of one stem at `output_rate`, from its frames; see the module docstring."""

    def __init__(
        self, preset: BandPreset, n_frames: int, top_length: int, output_rate: int, front_end: FrontEnd = NUMPY
    ) -> None:
        self.preset, self.n_frames, self.top_length, self.output_rate = preset, n_frames, top_length, output_rate
        self.front_end = front_end
        bands = preset.bands
        self.wave_lengths = [b.hl * (n_frames - 1) for b in bands]
        self.out_length = resampled_length(top_length, preset.sr, output_rate)
        self.gains = [spectral.band_gains(preset, d) for d in range(len(bands))]
        self.fft_levels = [d for d in range(1, len(bands) - 1) if bands[d].sr != bands[d + 1].sr]
        self.edge_lengths = {
            d: min(self.wave_lengths[d], math.ceil((len(bands) - 1 - d) * (FFT_CONTEXT_S + 0.25) * bands[d].sr))
            for d in self.fft_levels
        }
        self.head: dict[int, Span] = {}
        self.tail: dict[int, Span] = {}
        self.end: np.ndarray | None = None  # top-band samples [hl*(frames-1), top_length), from `synthesise_tail`

    @staticmethod
    def _lower_type(d: int) -> str:
        return "sinc_fastest" if d == 0 else "scipy"

    def _level_ranges(self, level: int, p0: int, p1: int) -> list[tuple[int, int]]:
        bands = self.preset.bands
        ranges: list[tuple[int, int]] = [(0, 0)] * (level + 1)
        ranges[level] = (p0, p1)
        for d in range(level, 0, -1):
            ranges[d - 1] = source_range(
                *ranges[d], bands[d - 1].sr, bands[d].sr, self._lower_type(d - 1), self.wave_lengths[d - 1]
            )
            if self.preset.reverse:  # a reversed band wave is known only whole
                ranges[d - 1] = (min(ranges[d - 1][0], 0), max(ranges[d - 1][1], self.wave_lengths[d - 1]))
        return ranges

    def _frames(self, ranges: list[tuple[int, int]]) -> tuple[int, int]:
        if self.preset.reverse:
            return 0, self.n_frames
        g0, g1 = self.n_frames, 0
        for band, (p0, p1) in zip(self.preset.bands, ranges):
            g0 = min(g0, (p0 - band.n_fft // 2) // band.hl)
            g1 = max(g1, (p1 - 1 + band.n_fft // 2) // band.hl + 1)
        return max(g0, 0), min(max(g1, 0), self.n_frames)

    def plan(self, q0: int, q1: int) -> Plan:
        if self.output_rate == self.preset.sr:
            top = (q0, q1)
        else:
            top = source_range(q0, q1, self.preset.sr, self.output_rate, OUTPUT_RESAMPLER, self.top_length)
        ranges = self._level_ranges(len(self.preset.bands) - 1, *top)
        return Plan(q0, q1, top, ranges, self._frames(ranges))

    def edge_frames(self) -> tuple[int, int]:
        """(frames from 0 that `fill_edges` needs at the head, first frame it needs at the tail)."""
        head, tail = 0, self.n_frames
        for d, e in self.edge_lengths.items():
            head = max(head, self._frames(self._level_ranges(d, 0, e))[1])
            n = self.wave_lengths[d]
            tail = min(tail, self._frames(self._level_ranges(d, n - e, n))[0])
        return head, tail

    def fill_edges(self, head_spec: np.ndarray, tail_spec: np.ndarray, tail_start: int) -> None:
        """Compute the head and tail of every FFT-resampled level (lowest first: each wraps the one below)."""
        for d in self.fft_levels:
            e, n = self.edge_lengths[d], self.wave_lengths[d]
            head = self._level_wave(self._level_ranges(d, 0, e), head_spec, None, 0)
            tail = self._level_wave(self._level_ranges(d, n - e, n), tail_spec, None, tail_start)
            self.head[d] = Span(0, head.get(0, e), n)
            self.tail[d] = Span(n - e, tail.get(n - e, n), n)

    def _istft_range(
        self, d: int, spec: np.ndarray, high_end: np.ndarray | None, g0: int, p0: int, p1: int
    ) -> np.ndarray:
        """Band d's own iSTFT samples [p0, p1) in the model's channels, from combined frames starting at frame g0."""
        band, preset = self.preset.bands[d], self.preset
        out = np.zeros((2, p1 - p0))
        lo, hi = max(p0, 0), min(p1, self.wave_lengths[d])
        if lo >= hi:
            return out
        f0 = max((lo - band.n_fft // 2) // band.hl, g0, 0)
        f1 = min((hi - 1 + band.n_fft // 2) // band.hl + 1, g0 + spec.shape[-1], self.n_frames)
        offset = sum(b.rows for b in preset.bands[:d])
        band_spec = np.zeros((2, band.n_fft // 2 + 1, f1 - f0), dtype=np.complex128)
        band_spec[:, band.crop_start : band.crop_stop] = spec[:, offset : offset + band.rows, f0 - g0 : f1 - g0]
        if d == len(preset.bands) - 1 and high_end is not None and high_end.shape[1] > 0:
            top = band.n_fft // 2
            band_spec[:, top - high_end.shape[1] : top] = high_end[:, :, f0 - g0 : f1 - g0]
        for gains in self.gains[d]:
            band_spec *= gains[:, None]
        wave = self.front_end.istft_segment(band_spec, band.hl)
        first = f0 * band.hl - band.n_fft // 2  # sample index of wave[0]
        assert first <= lo and first + wave.shape[-1] >= hi, "frames do not cover the requested samples"
        out[:, lo - p0 : hi - p0] = wave[:, lo - first : hi - first]
        return out

    def _band_wave(
        self, d: int, spec: np.ndarray, high_end: np.ndarray | None, g0: int, p0: int, p1: int
    ) -> np.ndarray:
        """Band d's own samples [p0, p1) in left/right channels."""
        if self.preset.reverse:  # output sample j is sample W-1-j of the reversed wave's iSTFT
            n = self.wave_lengths[d]
            return self._istft_range(d, spec, high_end, g0, n - p1, n - p0)[:, ::-1]
        return spectral.from_model_channels(self._istft_range(d, spec, high_end, g0, p0, p1), self.preset)

    def _level_wave(
        self, ranges: list[tuple[int, int]], spec: np.ndarray, high_end: np.ndarray | None, g0: int
    ) -> Span:
        """S_d over ranges[d] for the last level d of `ranges`, computed from band 0 up."""
        bands = self.preset.bands
        lower: Span | None = None
        for d, (p0, p1) in enumerate(ranges):
            wave = self._band_wave(d, spec, high_end if d == len(bands) - 1 else None, g0, p0, p1)
            if lower is not None:
                wrap = (self.head[d - 1], self.tail[d - 1]) if d - 1 in self.head else None
                wave += resample_range(
                    lower,
                    p0,
                    p1,
                    bands[d - 1].sr,
                    bands[d].sr,
                    self._lower_type(d - 1),
                    self.wave_lengths[d],
                    wrap,
                    self.front_end,
                )
            lower = Span(p0, wave, self.wave_lengths[d])
        assert lower is not None
        return lower

    def top_wave(self, plan: Plan, spec: np.ndarray, high_end: np.ndarray | None, g0: int) -> Span:
        """Top-band samples of plan.top, the tail included; `spec`/`high_end` hold frames from g0."""
        wave = self._level_wave(plan.bands, spec, high_end, g0)
        top = Span(plan.top[0], wave.get(*plan.top), self.top_length)
        begin = self.wave_lengths[-1]
        if plan.top[1] > begin and self.top_length > begin:
            assert self.end is not None, "the tail is needed before it was synthesised"
            lo, hi = max(plan.top[0], begin), min(plan.top[1], self.top_length)
            top.data[:, lo - plan.top[0] : hi - plan.top[0]] = self.end[:, lo - begin : hi - begin]
        return top

    def synthesise(self, plan: Plan, spec: np.ndarray, high_end: np.ndarray | None, g0: int) -> np.ndarray:
        """(2, q1 - q0) float64 output samples; `spec`/`high_end` hold frames from g0 covering plan.frames."""
        top = self.top_wave(plan, spec, high_end, g0)
        if self.output_rate == self.preset.sr:
            return top.get(plan.q0, plan.q1)
        return resample_range(
            top,
            plan.q0,
            plan.q1,
            self.preset.sr,
            self.output_rate,
            OUTPUT_RESAMPLER,
            self.out_length,
            front_end=self.front_end,
        )


def synthesise(
    spec: np.ndarray, preset: BandPreset, high_end: np.ndarray | None = None, front_end: FrontEnd = NUMPY
) -> np.ndarray:
    """cmb_spectrogram_to_wave: combined (2, bins+1, T) frames -> (2, hl_top*(T-1)) float64 at the top band's rate.

    `high_end` (already mirrored) replaces the top band's rows just below Nyquist, as in the reference.
    """
    n_frames = spec.shape[-1]
    synth = Synthesiser(preset, n_frames, preset.top.hl * (n_frames - 1), preset.sr, front_end)
    return synth.top_wave(synth.plan(0, synth.top_length), spec, high_end, 0).data


def tail_frame_count(preset: BandPreset, n_frames: int, top_length: int) -> int:
    """Frames after the last one that the tail's synthesis needs: synthesis stops at the last frame's centre."""
    return max(1, -(-top_length // preset.top.hl) - n_frames + 1)


def synthesise_tail(
    stem: np.ndarray,
    high_end: np.ndarray | None,
    preset: BandPreset,
    first: int,
    n_frames: int,
    top_length: int,
    front_end: FrontEnd = NUMPY,
) -> np.ndarray:
    """The stem's samples [hl*(T-1), top_length) at the top band's rate, which the reference leaves silent.

    The reference stops at the last frame's centre, so up to one hop at the end stays silent (all of a song shorter
    than one hop). `stem` holds the stem's frames from `first` to T plus `tail_frame_count` frames after the song,
    masked like its last frame. Synthesising that short stretch leaves every sample before the tail as the
    reference has it; the stretch starts at frame 0 or fades in, so FFT resampling does not wrap a hard edge.
    """
    hop = preset.top.hl
    begin = hop * (n_frames - 1)
    if top_length <= begin:
        return np.zeros((2, 0))
    if first > 0:
        width = min(TAIL_CONTEXT_FRAMES // 2, stem.shape[-1] // 2)
        fade = np.ones(stem.shape[-1], dtype=np.float32)
        fade[:width] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(width) + 0.5) / width)
        stem = stem * fade
        high_end = None if high_end is None else high_end * fade
    wave = synthesise(stem, preset, high_end, front_end)[:, begin - hop * first :]
    out = np.zeros((2, top_length - begin))
    out[:, : min(wave.shape[-1], out.shape[-1])] = wave[:, : out.shape[-1]]
    return out
