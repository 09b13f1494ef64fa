"""The STFT front end and back end of the VR pipeline: band pyramid in, combined spectrogram, stems out.

Everything here follows the reference (vr-reference.md §3) to the sample: librosa's centred, zero-padded STFT with a
periodic Hann window, the band crop/combine with its pre-filter, per-band synthesis with the exact ramp filters and
RVC's resampler choices, and high-end mirroring. Synthesis buffers start as zeros (the originals read garbage there).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft

from uvr_cli.catalog.presets import Band, BandPreset
from uvr_cli.engine.resample import resample


@lru_cache(maxsize=32)
def hann(n_fft: int, dtype: str = "float64") -> np.ndarray:
    """Periodic Hann window (scipy.signal.get_window('hann', n, fftbins=True)), cached per size."""
    k = np.arange(n_fft, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * k / n_fft)).astype(dtype)


def stft(wave: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """librosa.stft(center=True, pad_mode='constant'): (..., n) float -> (..., n_fft//2+1, 1+n//hop) complex64."""
    return stft_frames(wave, n_fft, hop, 0, 1 + wave.shape[-1] // hop)


def _overlap_add(frames: np.ndarray, hop: int) -> np.ndarray:
    """Sum frames (..., n_fft, T) placed hop apart into (..., n_fft + hop*(T-1))."""
    n_fft, n_frames = frames.shape[-2:]
    k = -(-n_fft // hop)
    if k * hop != n_fft:
        frames = np.concatenate([frames, np.zeros(frames.shape[:-2] + (k * hop - n_fft, n_frames))], axis=-2)
    out = np.zeros(frames.shape[:-2] + (hop * (n_frames - 1) + k * hop,))
    parts = frames.reshape(frames.shape[:-2] + (k, hop, n_frames))
    for j in range(k):
        seg = np.swapaxes(parts[..., j, :, :], -1, -2).reshape(frames.shape[:-2] + (hop * n_frames,))
        out[..., j * hop : j * hop + hop * n_frames] += seg
    return out[..., : n_fft + hop * (n_frames - 1)]


def istft(spec: np.ndarray, hop: int) -> np.ndarray:
    """librosa.istft(hop_length=hop) with defaults: (..., F, T) complex -> (..., hop*(T-1)) float64."""
    n_fft = 2 * (spec.shape[-2] - 1)
    n_frames = spec.shape[-1]
    window = hann(n_fft)
    frames = scipy.fft.irfft(spec.astype(np.complex128, copy=False), n=n_fft, axis=-2) * window[:, None]
    wave = _overlap_add(frames, hop)
    norm = _overlap_add(np.broadcast_to((window**2)[:, None], (n_fft, n_frames)), hop)
    nonzero = norm > np.finfo(np.float64).tiny
    wave[..., nonzero] /= norm[nonzero]
    return wave[..., n_fft // 2 : wave.shape[-1] - n_fft // 2]


def to_model_channels(wave: np.ndarray, preset: BandPreset) -> np.ndarray:
    """The preset's channel transform on a (2, n) wave; only the first matching flag counts (as in RVC)."""
    left, right = wave[0], wave[1]
    if preset.reverse:
        return np.stack([left[::-1], right[::-1]])
    if preset.mid_side:
        return np.stack([(left + right) / 2, left - right])
    if preset.mid_side_b2:
        return np.stack([right + left * 0.5, left - right * 0.5])
    return wave


def from_model_channels(wave: np.ndarray, preset: BandPreset) -> np.ndarray:
    """Inverse of `to_model_channels`, applied after each band's iSTFT."""
    left, right = wave[0], wave[1]
    if preset.reverse:
        return np.stack([left[::-1], right[::-1]])
    if preset.mid_side:
        return np.stack([left + right / 2, left - right / 2])
    if preset.mid_side_b2:
        return np.stack([right / 1.25 + 0.4 * left, left / 1.25 - 0.4 * right])
    return wave


def lowpass_gains(rows: int, start: int, stop: int) -> np.ndarray:
    """Per-row gains of fft_lp_filter: a ramp from start to stop, zero from stop up."""
    gains = np.ones(rows)
    g = 1.0
    for b in range(start, stop):
        g -= 1 / (stop - start)
        gains[b] = g
    gains[stop:] = 0.0
    return gains


def highpass_gains(rows: int, start: int, stop: int) -> np.ndarray:
    """Per-row gains of fft_hp_filter(start, stop): a ramp down from start to stop, zero at and below stop."""
    gains = np.ones(rows)
    g = 1.0
    for b in range(start, stop, -1):
        g -= 1 / (start - stop)
        gains[b] = g
    gains[0 : stop + 1] = 0.0
    return gains


@dataclass
class Analysis:
    """What the separation needs from the input: the combined spectrogram and the raw top-band high end."""

    spec: np.ndarray  # (2, bins+1, T) complex64, pre-filtered
    high_end: np.ndarray | None  # (2, H, T) complex64 rows below the top band's Nyquist, or None
    top_length: int  # samples of the input at the top band's rate
    extra: np.ndarray  # (2, bins+1, E) the frames after the last one, for the tail (see `synthesise_tail`)
    extra_high_end: np.ndarray | None  # (2, H, E)


def band_waves(wave: np.ndarray, sample_rate: int, preset: BandPreset) -> list[np.ndarray]:
    """The band pyramid: the top band from the input, each lower band resampled from the band above it."""
    bands = preset.bands
    waves: list[np.ndarray] = [np.empty(0)] * len(bands)
    waves[-1] = resample(wave, sample_rate, bands[-1].sr, bands[-1].res_type)
    for d in range(len(bands) - 2, -1, -1):
        waves[d] = resample(waves[d + 1], bands[d + 1].sr, bands[d].sr, bands[d].res_type)
    return waves


def stft_frames(wave: np.ndarray, n_fft: int, hop: int, first: int, count: int) -> np.ndarray:
    """Frames [first, first + count) of `stft(wave, n_fft, hop)`, also beyond its last frame (zeros past the end)."""
    start = first * hop - n_fft // 2
    stop = start + (count - 1) * hop + n_fft
    segment = np.zeros(wave.shape[:-1] + (stop - start,), dtype=wave.dtype)
    lo, hi = max(start, 0), min(stop, wave.shape[-1])
    if lo < hi:
        segment[..., lo - start : hi - start] = wave[..., lo:hi]
    frames = np.lib.stride_tricks.sliding_window_view(segment, n_fft, axis=-1)[..., ::hop, :]
    spec = scipy.fft.rfft(frames * hann(n_fft, "float32"), axis=-1)
    return np.ascontiguousarray(np.swapaxes(spec, -1, -2)).astype(np.complex64, copy=False)


def combine(specs: list[np.ndarray], preset: BandPreset) -> np.ndarray:
    """combine_spectrograms: stack each band's crop into one (2, bins+1, T) spectrogram and pre-filter it."""
    n_frames = min(s.shape[-1] for s in specs)
    combined = np.zeros((2, preset.bins + 1, n_frames), dtype=np.complex64)
    offset = 0
    for band, spec in zip(preset.bands, specs):
        combined[:, offset : offset + band.rows] = spec[:, band.crop_start : band.crop_stop, :n_frames]
        offset += band.rows
    start, stop = preset.pre_filter_start, preset.pre_filter_stop
    if start > 0:
        if len(preset.bands) == 1:
            combined *= lowpass_gains(preset.bins + 1, start, stop).astype(np.float32)[:, None]
        else:
            gp = 1.0
            for b in range(start + 1, stop):
                g = math.pow(10, -(b - start) * (3.5 - gp) / 20.0)
                gp = g
                combined[:, b, :] *= g
    return combined


def analyse(wave: np.ndarray, sample_rate: int, preset: BandPreset, keep_high_end: bool) -> Analysis:
    """Audio (2, n) float32 at `sample_rate` -> combined spectrogram (and the high end for mirroring)."""
    waves = band_waves(wave, sample_rate, preset)
    specs = [stft(to_model_channels(w, preset), band.n_fft, band.hl) for band, w in zip(preset.bands, waves)]
    high_end = None
    height = preset.high_end_rows
    if keep_high_end and height > 0:
        top = preset.top.n_fft // 2
        high_end = specs[-1][:, top - height : top, :]
    combined = combine(specs, preset)
    if high_end is not None:
        high_end = np.ascontiguousarray(high_end[:, :, : combined.shape[-1]])
    n_frames, top_length = combined.shape[-1], waves[-1].shape[-1]
    count = tail_frame_count(preset, n_frames, top_length)
    extra_specs = [stft_frames(to_model_channels(w, preset), band.n_fft, band.hl, n_frames, count)
                   for band, w in zip(preset.bands, waves)]
    extra = combine(extra_specs, preset)
    extra_high_end = None
    if high_end is not None:
        top = preset.top.n_fft // 2
        extra_high_end = np.ascontiguousarray(extra_specs[-1][:, top - height : top, :])
    return Analysis(spec=combined, high_end=high_end, top_length=top_length, extra=extra,
                    extra_high_end=extra_high_end)


def _mirrored_magnitudes(spec: np.ndarray, height: int, preset: BandPreset) -> np.ndarray:
    start = preset.pre_filter_start - 10
    return np.flip(np.abs(spec[:, start - height : start, :]), 1)


def mirror_high_end(spec: np.ndarray, high_end: np.ndarray, preset: BandPreset) -> np.ndarray:
    """'mirroring': rebuild the top rows from the mirrored magnitudes below the pre-filter, keeping the smaller."""
    mirror = _mirrored_magnitudes(spec, high_end.shape[1], preset) * np.exp(1.0j * np.angle(high_end))
    return np.where(np.abs(high_end) <= np.abs(mirror), high_end, mirror)


def mirror_high_end_2(spec: np.ndarray, high_end: np.ndarray, preset: BandPreset) -> np.ndarray:
    """'mirroring2': as 'mirroring', but the candidate is mirror * input * 1.7 (a complex product)."""
    candidate = _mirrored_magnitudes(spec, high_end.shape[1], preset) * (high_end * 1.7)
    return np.where(np.abs(high_end) <= np.abs(candidate), high_end, candidate)


def _band_wave(spec: np.ndarray, band: Band, preset: BandPreset) -> np.ndarray:
    return from_model_channels(istft(spec, band.hl), preset)


def synthesise(spec: np.ndarray, preset: BandPreset, high_end: np.ndarray | None = None) -> np.ndarray:
    """cmb_spectrogram_to_wave: combined (2, bins+1, T) spectrogram -> (2, hl_top*(T-1)) float64 wave.

    `high_end` (already mirrored) replaces the top band's rows just below Nyquist, as in the reference.
    """
    n_frames = spec.shape[-1]
    bands = preset.bands
    offset = 0
    wave: np.ndarray | None = None
    for d, band in enumerate(bands):
        rows = band.n_fft // 2 + 1
        band_spec = np.zeros((2, rows, n_frames), dtype=np.complex128)
        band_spec[:, band.crop_start : band.crop_stop] = spec[:, offset : offset + band.rows]
        offset += band.rows
        if d == len(bands) - 1:
            if high_end is not None and high_end.shape[1] > 0:
                top = band.n_fft // 2
                band_spec[:, top - high_end.shape[1] : top] = high_end
            if band.hpf_start is not None and band.hpf_start > 0:
                band_spec *= highpass_gains(rows, band.hpf_start, band.hpf_stop - 1)[:, None]
            own = _band_wave(band_spec, band, preset)
            wave = own if wave is None else _fit(wave, own.shape[-1]) + own
        else:
            next_sr = bands[d + 1].sr
            if d == 0:
                band_spec *= lowpass_gains(rows, band.lpf_start, band.lpf_stop)[:, None]
                wave = resample(_band_wave(band_spec, band, preset), band.sr, next_sr, "sinc_fastest")
            else:
                band_spec *= highpass_gains(rows, band.hpf_start, band.hpf_stop - 1)[:, None]
                band_spec *= lowpass_gains(rows, band.lpf_start, band.lpf_stop)[:, None]
                own = _band_wave(band_spec, band, preset)
                wave = resample(_fit(wave, own.shape[-1]) + own, band.sr, next_sr, "scipy")
    assert wave is not None
    return wave


TAIL_CONTEXT_FRAMES = 128  # frames before the tail that its synthesis sees (about 1.4 s)


def tail_frame_count(preset: BandPreset, n_frames: int, top_length: int) -> int:
    """Frames after the last one that the tail's synthesis needs: `synthesise` stops at the last frame's centre."""
    hop = preset.top.hl
    return max(1, -(-top_length // hop) - n_frames + 1)


def synthesise_tail(stem: np.ndarray, high_end: np.ndarray | None, preset: BandPreset, first: int, n_frames: int,
                    top_length: int) -> np.ndarray:
    """The stem's samples [hl*(T-1), top_length) at the top band's rate, which `synthesise` cannot give.

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
    wave = synthesise(stem, preset, high_end)
    return _fit(wave[:, begin - hop * first :], top_length - begin)


def _fit(wave: np.ndarray, length: int) -> np.ndarray:
    """Trim or zero-pad the last axis to `length` (band waves agree to the sample for every shipped preset)."""
    if wave.shape[-1] >= length:
        return wave[..., :length]
    return np.pad(wave, [(0, 0)] * (wave.ndim - 1) + [(0, length - wave.shape[-1])])
