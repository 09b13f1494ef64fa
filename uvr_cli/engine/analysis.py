"""Band analysis: the input's band pyramid, and combined spectrogram frames of any frame range.

Frames [f0, f1) of the whole song's combined spectrogram are computed from the input samples around them: each band
wave is resampled from the band above it (the top band from the input) over just the range its frames need, widened
by the resampler's context (ranges.py). 'reverse' presets time-reverse whole band waves, so their ranges always
span the song.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from uvr_cli.catalog.presets import BandPreset
from uvr_cli.engine import spectral
from uvr_cli.engine.blocks import ArraySource, InputStream
from uvr_cli.engine.frontend import NUMPY, FrontEnd
from uvr_cli.engine.ranges import resample_range, source_range
from uvr_cli.engine.resample import resampled_length
from uvr_cli.engine.span import Span


@dataclass(frozen=True)
class Frames:
    """Combined spectrogram frames of a range, and the raw top-band rows under Nyquist that mirroring needs."""

    spec: np.ndarray  # (2, bins+1, n) complex64, pre-filtered
    high_end: np.ndarray | None  # (2, H, n) complex64, or None

    @functools.cached_property
    def magnitude(self) -> np.ndarray:
        """|spec|, computed once however many models read it."""
        return np.abs(self.spec)


class Analyser:
    """Combined spectrogram frames [f0, f1) of the whole song (zero outside [0, frames)), from an InputStream."""

    def __init__(
        self, preset: BandPreset, n_input: int, input_rate: int, keep_high_end: bool, front_end: FrontEnd = NUMPY
    ) -> None:
        self.preset, self.input_rate, self.n_input, self.front_end = preset, input_rate, n_input, front_end
        bands = preset.bands
        lengths = [0] * len(bands)
        lengths[-1] = resampled_length(n_input, input_rate, bands[-1].sr) if input_rate != bands[-1].sr else n_input
        for d in range(len(bands) - 2, -1, -1):
            same = bands[d].sr == bands[d + 1].sr
            lengths[d] = lengths[d + 1] if same else resampled_length(lengths[d + 1], bands[d + 1].sr, bands[d].sr)
        self.band_lengths = lengths
        self.frames = min(1 + n // b.hl for n, b in zip(lengths, bands))
        self.top_length = lengths[-1]
        self.high_end_rows = preset.high_end_rows if keep_high_end else 0

    def _ranges(self, f0: int, f1: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]], tuple[int, int]]:
        """Per band the STFT's sample range and the (wider) range of its wave to compute; the input's range."""
        bands = self.preset.bands
        stft_range = [(f0 * b.hl - b.n_fft // 2, (f1 - 1) * b.hl + b.n_fft // 2) for b in bands]
        if self.preset.reverse:  # a reversed wave's frames depend on where it ends: take all of it
            stft_range = [(min(lo, 0), max(hi, n)) for (lo, hi), n in zip(stft_range, self.band_lengths)]
        need = list(stft_range)
        for d in range(len(bands) - 1):  # each band is made from the band above it: widen that band's range
            s, e = source_range(*need[d], bands[d + 1].sr, bands[d].sr, bands[d].res_type, self.band_lengths[d + 1])
            need[d + 1] = (min(need[d + 1][0], s), max(need[d + 1][1], e))
        lo, hi = need[-1]
        source = source_range(lo, hi, self.input_rate, bands[-1].sr, bands[-1].res_type, self.n_input)
        return stft_range, need, source

    def input_start(self, f0: int, f1: int) -> int:
        """The first input sample that analysing frames [f0, f1) reads."""
        return max(self._ranges(f0, f1)[2][0], 0)

    def analyse(self, source: InputStream, f0: int, f1: int, beyond_end: bool = False) -> Frames:
        """Frames [f0, f1); those outside the song are zero, unless `beyond_end` (the tail's frames after it)."""
        bands, preset, front_end = self.preset.bands, self.preset, self.front_end
        stft_range, need, (s, e) = self._ranges(f0, f1)
        top = len(bands) - 1
        span = source.get(s, e)
        specs: list[np.ndarray] = [np.empty(0)] * len(bands)
        for d in range(top, -1, -1):
            sr_from = self.input_rate if d == top else bands[d + 1].sr
            span = Span(
                need[d][0],
                resample_range(
                    span, *need[d], sr_from, bands[d].sr, bands[d].res_type, self.band_lengths[d], front_end=front_end
                ),
                self.band_lengths[d],
            )
            if preset.reverse:
                full = spectral.to_model_channels(span.get(0, self.band_lengths[d]), preset)
                segment = spectral.frames_segment(full, bands[d].n_fft, bands[d].hl, f0, f1 - f0)
            else:  # the segment starts at frame f0's first sample
                segment = spectral.to_model_channels(span.get(*stft_range[d]), preset)
            specs[d] = front_end.stft_segment(segment, bands[d].n_fft, bands[d].hl)
        combined = spectral.combine(specs, preset)
        high_end = None
        if self.high_end_rows > 0:
            t = preset.top.n_fft // 2
            high_end = np.ascontiguousarray(specs[-1][:, t - self.high_end_rows : t, :])
        index = np.arange(f0, f1)
        outside = (index < 0) | ((index >= self.frames) & (not beyond_end))
        if outside.any():
            combined[:, :, outside] = 0
            if high_end is not None:
                high_end[:, :, outside] = 0
        return Frames(combined, high_end)


def analyse(
    audio: np.ndarray, sample_rate: int, preset: BandPreset, keep_high_end: bool = False, front_end: FrontEnd = NUMPY
) -> Frames:
    """The whole song's combined spectrogram from (frames, channels) audio: the same analysis as every block."""
    analyser = Analyser(preset, audio.shape[0], sample_rate, keep_high_end, front_end)
    return analyser.analyse(InputStream(ArraySource(audio, sample_rate)), 0, analyser.frames)
