"""Streaming separation: a file of any length in blocks, with memory bounded by the block, not the song.

The result equals `Separator.separate` on the whole file (measured: tests/test_streaming.py). Two passes over the
input: the first analyses it block by block and keeps only the running max of the combined magnitudes (the
normalisation coefficient is global); the second analyses it again, runs the network and synthesises and writes
the stems, a little behind the analysis.

Why blocks reproduce the whole-file result:
* Every stage but one is local. Band waves: resample_poly, resampy and libsamplerate are FIR interpolators that see
  zeros beyond the signal's ends, so a segment that starts at a multiple of the resampler's input period and
  carries `FIR_MARGIN` samples of context each side gives the same samples (libsamplerate and resample_poly to the
  bit). STFT frames are centred with zeros only beyond the ends; the window loop predicts frame blocks aligned to
  the roi from `offset` frames of context (plus a roi for TTA's shifted windows); mask, mirroring and the band
  filters work per frame or per row; the iSTFT is an overlap-add over neighbouring frames.
* The exception is scipy's FFT resampling (RVC's 'scipy' between middle bands at synthesis), which is periodic over
  the whole song. It is emulated per segment with `FFT_CONTEXT_S` of context each side, the outer `FFT_TAPER_S`
  of it faded out. Beyond the song's ends the whole-song FFT sees the other end (periodic): the first and last
  seconds of each FFT-resampled band wave are computed first (the tail from the song's last seconds, kept in pass 1)
  and stand in there. Measured per stage against scipy.signal.resample on 60 s: 105 dB (7350->14700 Hz),
  118 dB (14700->44100), 121 dB (22050->44100); without the wrap-around, 62-75 dB.

Measured (random-weight ch16 net, tests/test_streaming.py): FIR-only presets bit-identical to whole-file; 4band_v2
111-118 dB, 3band_44100_msb2 at 48 kHz 128-131 dB. Peak RSS with the former 30 s blocks (4band_v2, network stubbed): 621 MB
for 1 minute, 641 MB for 10, 647 MB for 60; whole-file 1 minute: 1125 MB.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.fft
import torch

from uvr_cli.engine import spectral
from uvr_cli.io.audio import BlockReader, open_block_reader, open_block_writer, output_subtype
from uvr_cli.engine.inference import count_windows, window_layout
from uvr_cli.catalog.presets import BandPreset
from uvr_cli.engine.resample import fft_resample, resample, resampled_length

BLOCK_SECONDS = 15.0  # network block: memory grows with it (ch32 4band_v2, 60 s: 983 MiB at 30 s, 893 at 12)
FIR_MARGIN = 1024  # source samples of context per FIR resampler, times the decimation factor (sinc_best needs ~150)
FFT_CONTEXT_S = 1.0  # seconds of context each side when emulating a whole-song FFT resample
FFT_TAPER_S = 0.5  # the outer part of that context is faded out, so the segment's wrap-around is silent
READ_FRAMES = 1 << 16


def can_stream(preset: BandPreset, post_process: bool) -> bool:
    """'reverse' presets time-reverse the song and post-processing looks at runs across it: both need all of it."""
    return not preset.reverse and not post_process


# --- waves known over a range of sample indices --------------------------------------------------------------


class _Span:
    """Samples [start, start + n) of a signal of `length` samples; zero outside [0, length)."""

    def __init__(self, start: int, data: np.ndarray, length: int) -> None:
        self.start, self.data, self.length = start, data, length

    def get(self, i0: int, i1: int) -> np.ndarray:
        out = np.zeros(self.data.shape[:-1] + (i1 - i0,), dtype=self.data.dtype)
        lo, hi = max(i0, 0, self.start), min(i1, self.length, self.start + self.data.shape[-1])
        if lo < hi:
            out[..., lo - i0 : hi - i0] = self.data[..., lo - self.start : hi - self.start]
        need_lo, need_hi = max(i0, 0), min(i1, self.length)
        assert need_lo >= hi or (lo <= need_lo and hi >= need_hi), "span does not cover the request"
        return out


class _InputStream:
    """The decoded input as a stereo float32 signal, read forward through a rolling buffer."""

    def __init__(self, reader: BlockReader, keep_from: int | None = None) -> None:
        from uvr_cli.separator import to_stereo

        self._reader, self._to_stereo = reader, to_stereo
        self.length = reader.frames
        self._keep_from = self.length if keep_from is None else max(keep_from, 0)  # never discarded from here on
        self._start, self._data = 0, np.zeros((2, 0), dtype=np.float32)

    def get(self, i0: int, i1: int) -> np.ndarray:
        keep = max(0, min(i0, self.length, self._keep_from) - self._start)
        if keep:
            self._data, self._start = self._data[:, keep:], self._start + keep
        want = min(i1, self.length)
        parts = [self._data]
        end = self._start + self._data.shape[1]
        while end < want:
            block = self._reader.read(max(READ_FRAMES, want - end))
            if block.shape[0] == 0:
                self.length = end  # the header promised more than there is: the rest is silence
                break
            parts.append(np.nan_to_num(self._to_stereo(block), nan=0.0, posinf=0.0, neginf=0.0))
            end += block.shape[0]
        if len(parts) > 1:
            self._data = np.concatenate(parts, axis=1)
        return _Span(self._start, self._data, self.length).get(i0, i1)


# --- resampling a range ----------------------------------------------------------------------------------------


def _ratio(sr_src: int, sr_dst: int) -> tuple[int, int]:
    g = math.gcd(sr_src, sr_dst)
    return sr_dst // g, sr_src // g


def _source_range(d0: int, d1: int, sr_src: int, sr_dst: int, res_type: str, n_src: int) -> tuple[int, int]:
    """Source samples whose resampling gives destination samples [d0, d1) exactly (or, for FFT, closely).

    The start is a multiple of the source period, so the destination grid of the segment is the song's.
    """
    if sr_src == sr_dst:
        return d0, d1
    up, down = _ratio(sr_src, sr_dst)
    if res_type in ("scipy", "fft"):
        margin = math.ceil(FFT_CONTEXT_S * sr_src)
    else:
        margin = FIR_MARGIN * max(1, -(-down // up))
    s = (d0 * down) // up - margin
    s = (s // down) * down
    e = -(-(d1 * down) // up) + margin
    e = -(-e // down) * down
    if res_type in ("scipy", "fft"):
        return s, e  # zeros beyond the ends stand in for the whole-song FFT's wrap-around
    s = max(s, 0)
    return s, (n_src if e >= n_src else e)


def _taper(x: np.ndarray, width: int) -> np.ndarray:
    if width <= 0:
        return x
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(width) + 0.5) / width)
    x = x.copy()
    x[..., :width] *= ramp
    x[..., -width:] *= ramp[::-1]
    return x


def _resample_range(src: _Span, d0: int, d1: int, sr_src: int, sr_dst: int, res_type: str, n_dst: int,
                    wrap: tuple[_Span, _Span] | None = None) -> np.ndarray:
    """Destination samples [d0, d1) of resample(whole source), zero outside [0, n_dst).

    For FFT resampling, `wrap` = (head, tail) of the source: the samples the whole-song FFT sees beyond its ends.
    """
    if sr_src == sr_dst:
        return src.get(d0, d1)
    up, down = _ratio(sr_src, sr_dst)
    s, e = _source_range(d0, d1, sr_src, sr_dst, res_type, src.length)
    out = np.zeros(src.data.shape[:-1] + (d1 - d0,), dtype=src.data.dtype)
    if e <= s:
        return out
    x = src.get(s, e)
    if res_type in ("scipy", "fft"):
        if wrap is not None:
            n = src.length
            if s < 0:
                x[..., : min(-s, e - s)] = wrap[1].get(n + s, n + min(0, e))
            if e > n:
                x[..., max(n, s) - s :] = wrap[0].get(max(n, s) - n, e - n)
        x = _taper(x, min(math.ceil(FFT_TAPER_S * sr_src), (e - s) // 2))
        size = scipy.fft.next_fast_len(e - s, real=True)
        while size % down:
            size = scipy.fft.next_fast_len(size + 1, real=True)
        x = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, size - (e - s))])
        y = fft_resample(x, size * up // down).astype(x.dtype, copy=False)
    else:
        y = resample(x, sr_src, sr_dst, res_type)
    o = s * up // down
    lo, hi = max(d0, o, 0), min(d1, o + y.shape[-1], n_dst)
    if lo < hi:
        out[..., lo - d0 : hi - d0] = y[..., lo - o : hi - o]
    return out


# --- analysis of a frame range ---------------------------------------------------------------------------------


class _Analyser:
    """Combined spectrogram frames [f0, f1) of the whole song (zero outside [0, frames)), from the input stream."""

    def __init__(self, preset: BandPreset, n_input: int, input_rate: int, keep_high_end: bool) -> None:
        self.preset, self.input_rate, self.n_input = preset, input_rate, n_input
        bands = preset.bands
        lengths = [0] * len(bands)
        lengths[-1] = n_input if input_rate == bands[-1].sr else resampled_length(n_input, input_rate, bands[-1].sr)
        for d in range(len(bands) - 2, -1, -1):
            same = bands[d].sr == bands[d + 1].sr
            lengths[d] = lengths[d + 1] if same else resampled_length(lengths[d + 1], bands[d + 1].sr, bands[d].sr)
        self.band_lengths = lengths
        self.frames = min(1 + n // b.hl for n, b in zip(lengths, bands))
        self.top_length = lengths[-1]
        self.high_end_rows = preset.high_end_rows if keep_high_end else 0

    def _ranges(self, f0: int, f1: int):
        bands = self.preset.bands
        stft_range = [(f0 * b.hl - b.n_fft // 2, (f1 - 1) * b.hl + b.n_fft // 2) for b in bands]
        need = list(stft_range)
        for d in range(len(bands) - 1):  # each band is made from the band above it: widen that band's range
            s, e = _source_range(*need[d], bands[d + 1].sr, bands[d].sr, bands[d].res_type, self.band_lengths[d + 1])
            need[d + 1] = (min(need[d + 1][0], s), max(need[d + 1][1], e))
        lo, hi = need[-1]
        source = _source_range(lo, hi, self.input_rate, bands[-1].sr, bands[-1].res_type, self.n_input)
        return stft_range, need, source

    def input_start(self, f0: int, f1: int) -> int:
        """The first input sample that analysing frames [f0, f1) reads."""
        return max(self._ranges(f0, f1)[2][0], 0)

    def analyse(self, source: _InputStream, f0: int, f1: int, beyond_end: bool = False
                ) -> tuple[np.ndarray, np.ndarray | None]:
        """Frames [f0, f1); those outside the song are zero, unless `beyond_end` (the tail's frames after it)."""
        bands, preset = self.preset.bands, self.preset
        stft_range, need, (s, e) = self._ranges(f0, f1)
        spans: list[_Span] = [None] * len(bands)  # type: ignore[list-item]
        top = len(bands) - 1
        lo, hi = need[top]
        src = _Span(max(s, 0), source.get(max(s, 0), max(e, 0)), source.length)
        spans[top] = _Span(lo, _resample_range(src, lo, hi, self.input_rate, bands[top].sr, bands[top].res_type,
                                               self.band_lengths[top]), self.band_lengths[top])
        for d in range(top - 1, -1, -1):
            lo, hi = need[d]
            spans[d] = _Span(lo, _resample_range(spans[d + 1], lo, hi, bands[d + 1].sr, bands[d].sr,
                                                 bands[d].res_type, self.band_lengths[d]), self.band_lengths[d])
        specs = []
        for band, span, (lo, hi) in zip(bands, spans, stft_range):
            wave = spectral.to_model_channels(span.get(lo, hi), preset)
            frames = np.lib.stride_tricks.sliding_window_view(wave, band.n_fft, axis=-1)[..., :: band.hl, :]
            spec = scipy.fft.rfft(frames * spectral.hann(band.n_fft, "float32"), axis=-1)
            specs.append(np.ascontiguousarray(np.swapaxes(spec, -1, -2)).astype(np.complex64, copy=False))
        combined = spectral.combine(specs, preset)
        high_end = None
        if self.high_end_rows > 0:
            t = preset.top.n_fft // 2
            high_end = np.ascontiguousarray(specs[-1][:, t - self.high_end_rows : t, :])
        outside = (np.arange(f0, f1) < 0) | ((np.arange(f0, f1) >= self.frames) & (not beyond_end))
        if outside.any():
            combined[:, :, outside] = 0
            if high_end is not None:
                high_end[:, :, outside] = 0
        return combined, high_end


# --- synthesis of an output range ------------------------------------------------------------------------------


@dataclass
class _SynthPlan:
    q0: int
    q1: int
    top: tuple[int, int]  # top-band wave range feeding the output resampler
    bands: list[tuple[int, int]]  # per band: the range of its summed wave to compute
    frames: tuple[int, int]  # stem frames needed, within [0, frames)


class _Synthesiser:
    """Output samples [q0, q1) of the whole song's stem, from the stem's spectrogram frames around them.

    Band d's summed wave S_d (its own iSTFT plus the bands below, resampled) is computed over ranges planned from
    the top down. Where S_d is FFT-resampled, the whole-song resample sees the song's other end beyond each end:
    `head`/`tail` hold those samples once `fill_edges` has computed them.
    """

    def __init__(self, preset: BandPreset, n_frames: int, top_length: int, output_rate: int) -> None:
        self.preset, self.n_frames, self.top_length, self.output_rate = preset, n_frames, top_length, output_rate
        self.wave_lengths = [b.hl * (n_frames - 1) for b in preset.bands]
        self.out_top_length = resampled_length(top_length, preset.sr, output_rate)
        bands = preset.bands
        self.gains: list[list[np.ndarray]] = []
        for d, band in enumerate(bands):
            rows = band.n_fft // 2 + 1
            if d == len(bands) - 1:
                g = [spectral.highpass_gains(rows, band.hpf_start, band.hpf_stop - 1)] if (
                    band.hpf_start is not None and band.hpf_start > 0) else []
            elif d == 0:
                g = [spectral.lowpass_gains(rows, band.lpf_start, band.lpf_stop)]
            else:
                g = [spectral.highpass_gains(rows, band.hpf_start, band.hpf_stop - 1),
                     spectral.lowpass_gains(rows, band.lpf_start, band.lpf_stop)]
            self.gains.append(g)
        # levels whose wave is FFT-resampled, and how much of each end the levels above can reach
        self.fft_levels = [d for d in range(1, len(bands) - 1) if bands[d].sr != bands[d + 1].sr]
        self.edge_lengths = {d: min(self.wave_lengths[d], math.ceil((len(bands) - 1 - d) * (FFT_CONTEXT_S + 0.25)
                                                                      * bands[d].sr)) for d in self.fft_levels}
        self.head: dict[int, _Span] = {}
        self.tail: dict[int, _Span] = {}
        self.end: np.ndarray | None = None  # top-band samples [hl*(frames-1), top_length): spectral.synthesise_tail

    def _lower_type(self, d: int) -> str:
        return "sinc_fastest" if d == 0 else "scipy"

    def _level_ranges(self, level: int, p0: int, p1: int) -> list[tuple[int, int]]:
        bands = self.preset.bands
        ranges: list[tuple[int, int]] = [(0, 0)] * (level + 1)
        ranges[level] = (p0, p1)
        for d in range(level, 0, -1):
            ranges[d - 1] = _source_range(*ranges[d], bands[d - 1].sr, bands[d].sr, self._lower_type(d - 1),
                                          self.wave_lengths[d - 1])
        return ranges

    def _frames(self, ranges: list[tuple[int, int]]) -> tuple[int, int]:
        g0, g1 = self.n_frames, 0
        for band, (p0, p1) in zip(self.preset.bands, ranges):
            g0 = min(g0, (p0 - band.n_fft // 2) // band.hl)
            g1 = max(g1, (p1 - 1 + band.n_fft // 2) // band.hl + 1)
        return max(g0, 0), min(max(g1, 0), self.n_frames)

    def plan(self, q0: int, q1: int) -> _SynthPlan:
        if self.output_rate == self.preset.sr:
            top = (q0, q1)
        else:
            top = _source_range(q0, q1, self.preset.sr, self.output_rate, "kaiser_best", self.top_length)
        ranges = self._level_ranges(len(self.preset.bands) - 1, *top)
        return _SynthPlan(q0, q1, top, ranges, self._frames(ranges))

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
            self.head[d] = _Span(0, head.get(0, e), n)
            self.tail[d] = _Span(n - e, tail.get(n - e, n), n)

    def _band_wave(self, d: int, spec: np.ndarray, high_end: np.ndarray | None, g0: int, p0: int, p1: int
                   ) -> np.ndarray:
        """The band's own iSTFT samples [p0, p1) from combined frames starting at frame g0."""
        bands, preset = self.preset.bands, self.preset
        band = bands[d]
        out = np.zeros((2, p1 - p0))
        length = self.wave_lengths[d]
        lo, hi = max(p0, 0), min(p1, length)
        if lo >= hi:
            return out
        f0 = max((lo - band.n_fft // 2) // band.hl, g0, 0)
        f1 = min((hi - 1 + band.n_fft // 2) // band.hl + 1, g0 + spec.shape[-1], self.n_frames)
        offset = sum(b.rows for b in bands[:d])
        rows = band.n_fft // 2 + 1
        band_spec = np.zeros((2, rows, f1 - f0), dtype=np.complex128)
        band_spec[:, band.crop_start : band.crop_stop] = spec[:, offset : offset + band.rows, f0 - g0 : f1 - g0]
        if d == len(bands) - 1 and high_end is not None and high_end.shape[1] > 0:
            top = band.n_fft // 2
            band_spec[:, top - high_end.shape[1] : top] = high_end[:, :, f0 - g0 : f1 - g0]
        for g in self.gains[d]:
            band_spec *= g[:, None]
        n_fft = band.n_fft
        window = spectral.hann(n_fft)
        frames = scipy.fft.irfft(band_spec, n=n_fft, axis=-2) * window[:, None]
        wave = spectral._overlap_add(frames, band.hl)
        norm = spectral._overlap_add(np.broadcast_to((window**2)[:, None], (n_fft, f1 - f0)), band.hl)
        nonzero = norm > np.finfo(np.float64).tiny
        wave[..., nonzero] /= norm[nonzero]
        first = f0 * band.hl - n_fft // 2  # sample index of wave[0]
        assert first <= lo and first + wave.shape[-1] >= hi, "frames do not cover the requested samples"
        out[:, lo - p0 : hi - p0] = spectral.from_model_channels(wave[:, lo - first : hi - first], preset)
        return out

    def _level_wave(self, ranges: list[tuple[int, int]], spec: np.ndarray, high_end: np.ndarray | None, g0: int
                    ) -> _Span:
        """S_d over ranges[d] for the last level d of `ranges`, computed from band 0 up."""
        bands = self.preset.bands
        lower: _Span | None = None
        for d, (p0, p1) in enumerate(ranges):
            wave = self._band_wave(d, spec, high_end if d == len(bands) - 1 else None, g0, p0, p1)
            if lower is not None:
                wrap = (self.head[d - 1], self.tail[d - 1]) if d - 1 in self.head else None
                wave += _resample_range(lower, p0, p1, bands[d - 1].sr, bands[d].sr, self._lower_type(d - 1),
                                        self.wave_lengths[d], wrap)
            lower = _Span(p0, wave, self.wave_lengths[d])
        assert lower is not None
        return lower

    def synthesise(self, plan: _SynthPlan, spec: np.ndarray, high_end: np.ndarray | None, g0: int) -> np.ndarray:
        """(2, q1 - q0) float64 output samples; `spec`/`high_end` hold frames from g0 covering plan.frames."""
        wave = self._level_wave(plan.bands, spec, high_end, g0)
        top = _Span(plan.top[0], wave.get(*plan.top), self.top_length)
        begin = self.wave_lengths[-1]
        if plan.top[1] > begin and self.top_length > begin:
            assert self.end is not None, "the tail is needed before it was synthesised"
            lo, hi = max(plan.top[0], begin), min(plan.top[1], self.top_length)
            top.data[:, lo - plan.top[0] : hi - plan.top[0]] = self.end[:, lo - begin : hi - begin]
        if self.output_rate == self.preset.sr:
            return top.get(plan.q0, plan.q1)
        return _resample_range(top, plan.q0, plan.q1, self.preset.sr, self.output_rate, "kaiser_best",
                               self.out_top_length)


# --- the network over a frame block ----------------------------------------------------------------------------


class _WindowRunner:
    """The window loop of `inference.predict_mask`, for frames [a, b) of the song from magnitudes with context."""

    def __init__(self, sep, n_frames: int) -> None:
        self.sep = sep
        self.offset = sep.model.offset
        _, _, self.roi = window_layout(n_frames, sep.window, self.offset)
        self.n_frames = n_frames
        self.context = self.offset + self.roi
        self._tta_cache: tuple[int, np.ndarray] | None = None

    def _run(self, windows: list[np.ndarray]) -> list[np.ndarray]:
        sep = self.sep
        out: list[np.ndarray] = []
        precision = torch.autocast(device_type=sep.device.type, dtype=sep.dtype) if sep.dtype != torch.float32 else None
        with torch.inference_mode():
            if precision is not None:
                precision.__enter__()
            try:
                for i in range(0, len(windows), sep.batch_size):
                    batch = torch.from_numpy(np.stack(windows[i : i + sep.batch_size])).to(sep.device)
                    mask = sep.model.predict_mask(batch, sep._aggressiveness()).float().cpu().numpy()
                    out.extend(mask)
            finally:
                if precision is not None:
                    precision.__exit__(None, None, None)
        return out

    def mask(self, magnitude: np.ndarray, first: int, a: int, b: int, on_window: Callable[[int], None]) -> np.ndarray:
        """Mask for frames [a, b); `magnitude` holds normalised frames from `first` (zeros outside the song)."""
        roi, offset, window = self.roi, self.offset, self.sep.window
        starts = [(i * roi - offset, i * roi) for i in range(a // roi, -(-b // roi))]
        tta_starts: list[tuple[int, int]] = []
        if self.sep.tta:
            half = roi // 2
            tta_starts = [(j * roi - half - offset, j * roi - half)
                          for j in range((a + half) // roi, (b - 1 + half) // roi + 1)]
        cached = self._tta_cache
        todo = starts + [s for s in tta_starts if not (cached and cached[0] == s[1])]
        windows = [magnitude[:, :, s - first : s - first + window] for s, _ in todo]
        masks = self._run(windows)
        on_window(len(windows))
        plain = np.empty(magnitude.shape[:2] + (b - a,), dtype=np.float32)
        for (_, o), m in zip(starts, masks[: len(starts)]):
            lo, hi = max(o, a), min(o + roi, b)
            plain[:, :, lo - a : hi - a] = m[:, :, lo - o : hi - o]
        if not self.sep.tta:
            return plain
        tta_masks = dict(zip([o for _, o in todo[len(starts):]], masks[len(starts):]))
        if cached:
            tta_masks.setdefault(cached[0], cached[1])
        shifted = np.empty_like(plain)
        for _, o in tta_starts:
            m = tta_masks[o]
            lo, hi = max(o, a), min(o + roi, b)
            shifted[:, :, lo - a : hi - a] = m[:, :, lo - o : hi - o]
        last = tta_starts[-1][1]
        self._tta_cache = (last, tta_masks[last])
        return (plain + shifted) * 0.5


# --- the two passes --------------------------------------------------------------------------------------------


@dataclass
class StreamResult:
    frames_in: int
    sample_rate: int
    channels: int
    output_frames: int
    nonfinite_replaced: int


def block_frames(preset: BandPreset, roi: int, block_seconds: float) -> int:
    """Frames per network block: a whole number of rois, about `block_seconds` long."""
    hop_s = preset.top.hl / preset.top.sr
    return roi * max(1, round(block_seconds / (hop_s * roi)))


def separate_stream(
    sep,
    open_reader: Callable[[], BlockReader],
    sinks: dict[str, Callable[[np.ndarray], None]],
    *,
    output_rate: int | None = None,
    block_seconds: float | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> StreamResult:
    """Separate the input `open_reader()` gives (opened once per pass) with Separator `sep`, in blocks.

    Each requested stem's samples go, in order, to `sinks[stem]` as (frames, channels) float32 blocks;
    the concatenation equals `sep.separate(...)[stem]` on the whole input.
    """
    from uvr_cli.separator import STEMS, mirror, resampled_len

    preset = sep.preset
    block_seconds = BLOCK_SECONDS if block_seconds is None else block_seconds
    stems = list(sinks)
    secondary = next(s for s in STEMS if s != sep.info.primary)

    def stem_frames(source: _InputStream, runner: _WindowRunner, a: int, b: int, on_window: Callable[[int], None]
                    ) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """Each stem's spectrogram and mirrored high end for frames [a, b)."""
        ctx = runner.context
        spec, high_end = analyser.analyse(source, a - ctx, b + ctx)
        if coef > 0:
            mask = runner.mask(np.abs(spec) / coef, a - ctx, a, b, on_window)
        else:
            mask = np.zeros((2, spec.shape[1], b - a), dtype=np.float32)
        if b == n_frames:
            last_mask[:] = [mask[:, :, -1:]]
        centre = spec[:, :, ctx : ctx + b - a]
        primary = mask * centre
        by_label = {sep.info.primary: primary}
        if secondary in stems:
            by_label[secondary] = centre - primary
        he = None if high_end is None else high_end[:, :, ctx : ctx + b - a]
        return {stem: (by_label[stem], None if he is None else mirror(sep.high_end, by_label[stem], he, preset))
                for stem in stems}

    def synthesise_tails(source: _InputStream) -> None:
        """Each stem's samples after the last frame's centre, from the frames after the song (see spectral)."""
        count = spectral.tail_frame_count(preset, n_frames, analyser.top_length)
        extra, extra_high_end = analyser.analyse(source, n_frames, n_frames + count, beyond_end=True)
        extra_primary = last_mask[0] * extra
        for stem in stems:
            stem_extra = extra_primary if stem == sep.info.primary else extra - extra_primary
            spec_s, he_s = buf[stem]
            local = np.concatenate([spec_s[:, :, tail_first - buf_start :], stem_extra], axis=-1)
            local_he = None
            if he_s is not None:
                extra_he = mirror(sep.high_end, stem_extra, extra_high_end, preset)
                local_he = np.concatenate([he_s[:, :, tail_first - buf_start :], extra_he], axis=-1)
            synths[stem].end = spectral.synthesise_tail(local, local_he, preset, tail_first, n_frames,
                                                        analyser.top_length)

    last_mask: list[np.ndarray] = []

    with open_reader() as reader:
        n_in, rate_in, channels_in = reader.frames, reader.sample_rate, reader.channels
        output_rate = output_rate or rate_in
        analyser = _Analyser(preset, n_in, rate_in, sep.high_end != "none")
        n_frames = analyser.frames
        runner = _WindowRunner(sep, n_frames)
        ctx = runner.context
        block = block_frames(preset, runner.roi, block_seconds)
        synths = {stem: _Synthesiser(preset, n_frames, analyser.top_length, output_rate) for stem in stems}
        synth = synths[stems[0]]
        head_need, edge_first = synth.edge_frames()
        needs_edges = bool(synth.fft_levels) and n_frames > 0
        keep_from = analyser.input_start(edge_first - ctx, n_frames + ctx) if needs_edges else None
        tail_first = max(0, n_frames - spectral.TAIL_CONTEXT_FRAMES)
        # pass 1: the normalisation coefficient (and the song's last seconds, kept for the FFT wrap-around)
        coef = 0.0
        source = _InputStream(reader, keep_from)
        for a in range(0, n_frames, block):
            spec, _ = analyser.analyse(source, a, min(a + block, n_frames))
            coef = max(coef, float(np.abs(spec).max()))
            del spec
        tail: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        if needs_edges:
            tail = stem_frames(source, _WindowRunner(sep, n_frames), edge_first, n_frames, lambda n: None)
        del source
        nonfinite = reader.nonfinite_replaced
    channels = 1 if channels_in == 1 else 2
    out_length = resampled_len(n_in, rate_in, output_rate)
    total = count_windows(n_frames, sep.window, runner.offset, sep.tta)
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done = min(total, done + n)
        if on_progress:
            on_progress(done, total)

    # pass 2: stems frame block by frame block; output is synthesised as soon as all the frames it needs are known
    buf: dict[str, list] = {s: [] for s in stems}  # per stem: [spec frames, high-end frames] from frame buf_start
    buf_start = 0
    written = 0
    with open_reader() as reader:
        source = _InputStream(reader)
        for a in range(0, n_frames, block):
            b = min(a + block, n_frames)
            for stem, (spec_s, he_s) in stem_frames(source, runner, a, b, step).items():
                if buf[stem]:
                    spec_s = np.concatenate([buf[stem][0], spec_s], axis=-1)
                    he_s = None if he_s is None else np.concatenate([buf[stem][1], he_s], axis=-1)
                buf[stem] = [spec_s, he_s]
            if needs_edges and not synth.head:
                if b < min(head_need, n_frames):
                    continue
                for stem in stems:
                    synths[stem].fill_edges(buf[stem][0], tail[stem][0], edge_first)
                tail = {}
            if b >= n_frames:
                synthesise_tails(source)
                q1 = out_length
            else:  # the furthest output sample whose frames are all here
                lo, hi = written, out_length
                while lo < hi:
                    mid = (lo + hi + 1) // 2
                    if synth.plan(written, mid).frames[1] <= b:
                        lo = mid
                    else:
                        hi = mid - 1
                q1 = lo
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
        nonfinite = max(nonfinite, reader.nonfinite_replaced)
    if written < out_length:  # only when the song has no frames at all
        for stem in stems:
            sinks[stem](np.zeros((out_length - written, channels), dtype=np.float32))
    return StreamResult(n_in, rate_in, channels_in, out_length, nonfinite)


def separate_file(
    sep,
    source: str,
    outputs: dict[str, str],
    *,
    fmt: str,
    bit_depth: str | None,
    sample_rate: str | int,
    on_progress: Callable[[int, int], None] | None = None,
    min_seconds: float | None = None,
    block_seconds: float | None = None,
):
    """`Separator.separate_file` in blocks, or None when this input is better done whole.

    None when: standard input or output is involved, libsndfile cannot read the file (ffmpeg will), the preset or
    post-processing needs the whole song, or the song is shorter than `min_seconds` (default: one block).
    """
    from uvr_cli.errors import AudioError, UsageError
    from uvr_cli.separator import FileResult, default_bit_depth, resampled_len

    if source == "-" or any(dest == "-" for dest in outputs.values()) or not can_stream(sep.preset, sep.post_process):
        return None
    start = time.perf_counter()
    reader = open_block_reader(source)
    if reader is None:
        return None
    with reader:
        n_in, rate_in, channels_in, subtype = reader.frames, reader.sample_rate, reader.channels, reader.subtype
    block_seconds = BLOCK_SECONDS if block_seconds is None else block_seconds
    if n_in / rate_in < (block_seconds if min_seconds is None else min_seconds):
        return None
    rate = {"input": rate_in, "model": sep.preset.sr}.get(sample_rate, sample_rate)
    if not isinstance(rate, int) or rate <= 0:
        raise UsageError(f"--sample-rate {sample_rate!r}: use input, model or a rate in Hz")
    depth = bit_depth if bit_depth is not None else default_bit_depth(fmt, subtype)
    channels = 1 if channels_in == 1 else 2
    try:  # before the separation, as the whole-file path does: e.g. mp3 cannot store this input's rate
        output_subtype(fmt, depth, rate, channels)
    except UsageError as exc:
        raise AudioError(f"{source}: {exc}") from None
    frames_out = resampled_len(n_in, rate_in, rate)

    def open_reader() -> BlockReader:
        again = open_block_reader(source)
        assert again is not None
        return again

    result = FileResult(input=source, status="ok", duration_s=n_in / rate_in)
    with _Writers(outputs, rate, channels, fmt, depth, frames_out) as writers:
        done = separate_stream(sep, open_reader, {stem: w.write for stem, w in writers.items()}, output_rate=rate,
                               block_seconds=block_seconds, on_progress=on_progress)
    if done.nonfinite_replaced:
        result.warnings.append(f"{done.nonfinite_replaced} NaN/Inf input samples were replaced by silence")
    if channels_in > 2:
        result.warnings.append(f"{channels_in} channels were downmixed to stereo")
    for stem, dest in outputs.items():
        result.outputs[stem] = dest
        clipped = writers[stem].clipped_samples
        if clipped:
            result.clipped_samples[stem] = clipped
            result.warnings.append(f"{stem}: {clipped} samples beyond full scale were clipped")
    result.wall_s = time.perf_counter() - start
    return result


class _Writers(dict):
    """One block writer per stem, all renamed into place only when every stem is complete."""

    def __init__(self, outputs: dict[str, str], rate: int, channels: int, fmt: str, depth: str | None,
                 frames: int) -> None:
        super().__init__()
        self._contexts = [(stem, open_block_writer(dest, rate, channels, fmt, depth, frames))
                          for stem, dest in outputs.items()]

    def __enter__(self) -> _Writers:
        try:
            for stem, context in self._contexts:
                self[stem] = context.__enter__()
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        error = exc
        for stem, context in reversed(self._contexts):
            if stem not in self:
                continue
            try:
                if error is None:
                    context.__exit__(None, None, None)
                else:
                    context.__exit__(type(error), error, error.__traceback__)
            except BaseException as raised:  # noqa: BLE001 - the first failure is re-raised below
                error = error or raised
        if error is not None and error is not exc:
            raise error
        return False


def stream_array(sep, audio: np.ndarray, sample_rate: int, *, stems: Sequence[str] = ("vocals", "instrumental"),
                 output_rate: int | None = None, block_seconds: float | None = None) -> dict[str, np.ndarray]:
    """The streaming path on an in-memory (frames, channels) array, for tests and comparisons."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[:, None]

    class _ArrayReader:
        frames, channels = audio.shape
        nonfinite_replaced = 0

        def __init__(self) -> None:
            self.sample_rate, self._pos = sample_rate, 0

        def read(self, n: int) -> np.ndarray:
            block = audio[self._pos : self._pos + n].copy()
            self._pos += block.shape[0]
            return block

        def __enter__(self):
            return self

        def __exit__(self, *exc_info) -> None:
            pass

    parts: dict[str, list[np.ndarray]] = {s: [] for s in stems}
    separate_stream(sep, _ArrayReader, {s: parts[s].append for s in stems}, output_rate=output_rate,
                    block_seconds=block_seconds)
    return {s: np.concatenate(parts[s]) for s in stems}
