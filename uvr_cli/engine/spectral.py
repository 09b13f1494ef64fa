"""The spectral transforms of the VR pipeline (vr-reference.md §3), to the sample.

librosa's centred, zero-padded STFT with a periodic Hann window and its iSTFT, the preset's channel transforms, the
band crop/combine with its pre-filter, the synthesis filters, and high-end mirroring. They work on frame ranges, so
the block pipeline (analysis.py, synthesis.py) and whole-song uses share one implementation.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import scipy.fft

from uvr_cli.catalog.presets import Band, BandPreset
from uvr_cli.engine.span import Span


@lru_cache(maxsize=32)
def hann(n_fft: int, dtype: str = "float64") -> np.ndarray:
    """Periodic Hann window (scipy.signal.get_window('hann', n, fftbins=True)), cached per size."""
    k = np.arange(n_fft, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * k / n_fft)).astype(dtype)


def frames_segment(wave: np.ndarray, n_fft: int, hop: int, first: int, count: int) -> np.ndarray:
    """The samples frames [first, first + count) of `stft(wave, n_fft, hop)` read, zeros outside the wave."""
    start = first * hop - n_fft // 2
    return Span(0, wave, wave.shape[-1]).get(start, start + (count - 1) * hop + n_fft)


def stft_frames(wave: np.ndarray, n_fft: int, hop: int, first: int, count: int) -> np.ndarray:
    """Frames [first, first + count) of `stft(wave, n_fft, hop)`, also beyond its ends (zeros outside the wave)."""
    return stft_segment(frames_segment(wave, n_fft, hop, first, count), n_fft, hop)


def stft_segment(segment: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """STFT frames of a segment starting at a frame's first sample: (..., n) -> (..., n_fft//2+1, T) complex64."""
    frames = np.lib.stride_tricks.sliding_window_view(segment, n_fft, axis=-1)[..., ::hop, :]
    spec = scipy.fft.rfft(frames * hann(n_fft, "float32"), axis=-1)
    return np.ascontiguousarray(np.swapaxes(spec, -1, -2)).astype(np.complex64, copy=False)


def stft(wave: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """librosa.stft(center=True, pad_mode='constant'): (..., n) float -> (..., n_fft//2+1, 1+n//hop) complex64."""
    return stft_frames(wave, n_fft, hop, 0, 1 + wave.shape[-1] // hop)


def overlap_add(frames: np.ndarray, hop: int) -> np.ndarray:
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


def istft_segment(spec: np.ndarray, hop: int) -> np.ndarray:
    """The window-normalised overlap-add of frames (..., F, T): samples from the first frame's first sample on."""
    n_fft = 2 * (spec.shape[-2] - 1)
    window = hann(n_fft)
    frames = scipy.fft.irfft(spec.astype(np.complex128, copy=False), n=n_fft, axis=-2) * window[:, None]
    wave = overlap_add(frames, hop)
    norm = overlap_add(np.broadcast_to((window**2)[:, None], (n_fft, spec.shape[-1])), hop)
    nonzero = norm > np.finfo(np.float64).tiny
    wave[..., nonzero] /= norm[nonzero]
    return wave


def istft(spec: np.ndarray, hop: int) -> np.ndarray:
    """librosa.istft(hop_length=hop) with defaults: (..., F, T) complex -> (..., hop*(T-1)) float64."""
    n_fft = 2 * (spec.shape[-2] - 1)
    wave = istft_segment(spec, hop)
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


def _band_highpass(band: Band, rows: int) -> np.ndarray:
    # load_preset requires hpf_start/hpf_stop of every band above the first
    assert band.hpf_start is not None and band.hpf_stop is not None
    return highpass_gains(rows, band.hpf_start, band.hpf_stop - 1)


def _band_lowpass(band: Band, rows: int) -> np.ndarray:
    # load_preset requires lpf_start/lpf_stop of every band below the top
    assert band.lpf_start is not None and band.lpf_stop is not None
    return lowpass_gains(rows, band.lpf_start, band.lpf_stop)


def band_gains(preset: BandPreset, d: int) -> list[np.ndarray]:
    """Per-row gains synthesis applies to band d, in order: the top band's high-pass, band 0's low-pass, or both."""
    bands = preset.bands
    band = bands[d]
    rows = band.n_fft // 2 + 1
    if d == len(bands) - 1:
        has_highpass = band.hpf_start is not None and band.hpf_start > 0
        return [_band_highpass(band, rows)] if has_highpass else []
    if d == 0:
        return [_band_lowpass(band, rows)]
    return [_band_highpass(band, rows), _band_lowpass(band, rows)]
