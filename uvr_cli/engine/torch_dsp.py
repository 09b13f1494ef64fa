"""The front end's transforms in torch, on the model's device (frontend.py), computed as the host ones are.

The STFT and iSTFT are torch.fft with the same window, overlap-add and normalisation; FFT resampling is
scipy.signal.resample's spectrum cut on torch.fft. Each FIR resampler (resample_poly, resampy, libsamplerate) is
linear and repeats every `up` outputs, so its taps are read off once from the host resampler's response to a train
of impulses, checked against it on noise, and applied as one strided convolution. A resampler whose taps do not
reproduce it (a ratio where libsamplerate's phase drifts) stays on the host, so the output is never worse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from uvr_cli.engine import resample as host
from uvr_cli.engine.spectral import hann

KERNEL_MIN_SNR_DB = 140.0  # derived taps must reproduce the host resampler this closely, or it stays on the host
SUPPORT = 1024  # input samples each side that a tap set may span, times the decimation factor (as ranges.FIR_MARGIN)


def _snr_db(ref: np.ndarray, est: np.ndarray) -> float:
    noise = float(np.sum((ref - est) ** 2))
    return math.inf if noise == 0 else 10 * math.log10(float(np.sum(ref**2)) / noise)


@dataclass(frozen=True)
class FirTaps:
    """A FIR resampler's taps: output k = sum_j taps[k % up, j] * y[k*down//up + first + j]; `reach` bounds |j|.

    `kernel` holds them as one convolution with stride `down` and `up` output channels: phase r's taps start at
    r*down//up."""

    up: int
    down: int
    kernel: np.ndarray  # (up, 1, width + down - 1)
    first: int
    reach: int

    @classmethod
    def from_taps(cls, taps: np.ndarray, up: int, down: int, first: int, reach: int) -> FirTaps:
        width = taps.shape[1]
        kernel = np.zeros((up, 1, width + down - 1))
        for r in range(up):
            lead = r * down // up
            kernel[r, 0, lead : lead + width] = taps[r]
        return cls(up, down, kernel, first, reach)


@lru_cache(maxsize=32)
def fir_taps(orig_sr: int, target_sr: int, res_type: str) -> FirTaps | None:
    """The taps of the host resampler `res_type`, read off its response to impulses; None when they do not
    reproduce it (KERNEL_MIN_SNR_DB on noise, through `fir_resample`)."""
    up, down = host.rate_ratio(orig_sr, target_sr)
    reach = SUPPORT * max(1, -(-down // up))
    spacing = -(-(2 * reach + 2) // down) * down  # impulses this far apart never share an output
    # Impulse t sits at residue t mod down, so together they give every phase at every offset.
    starts = reach + 1 + np.arange(down) * (spacing + 1)
    probe = np.zeros(int(starts[-1]) + reach + 2)
    probe[starts] = 1.0
    response = host.resample(probe, orig_sr, target_sr, res_type)
    k = np.arange(response.shape[-1])
    base = k * down // up
    nearest = np.clip(np.rint((base - starts[0]) / (spacing + 1)).astype(np.int64), 0, down - 1)
    offset = starts[nearest] - base
    inside = np.abs(offset) <= reach
    taps = np.zeros((up, 2 * reach + 1))
    taps[k[inside] % up, offset[inside] + reach] = response[inside]
    used = np.flatnonzero(np.any(taps != 0, axis=0))
    if used.size == 0:
        return None
    derived = FirTaps.from_taps(taps[:, used[0] : used[-1] + 1], up, down, int(used[0]) - reach, reach)
    for n in (3 * spacing + 17, 3 * spacing + 18):  # both parities: the libraries end their output differently
        noise = np.random.default_rng(n).standard_normal((2, n))
        check = fir_resample(noise, orig_sr, target_sr, res_type, derived, torch.device("cpu"))
        if _snr_db(host.resample(noise, orig_sr, target_sr, res_type), check) < KERNEL_MIN_SNR_DB:
            return None
    return derived


def apply_taps(y: torch.Tensor, fir: FirTaps) -> torch.Tensor:
    """Resample (..., n) float64 on y's device by the taps, zero-padded: ceil(n * up / down) samples."""
    up, down, kernel = fir.up, fir.down, fir.kernel
    n = y.shape[-1]
    n_out = -(-n * up // down)
    steps = -(-n_out // up)
    left = max(0, -fir.first)
    length = (steps - 1) * down + kernel.shape[-1]
    start = fir.first + left  # where output 0's taps begin in the left-padded signal
    flat = torch.nn.functional.pad(y.reshape(-1, 1, n), (left, max(0, start + length - n - left)))
    out = torch.nn.functional.conv1d(
        flat[..., start : start + length], torch.from_numpy(kernel).to(y.device), stride=down
    )
    return out.transpose(1, 2).reshape(y.shape[:-1] + (steps * up,))[..., :n_out]


def fir_resample(
    y: np.ndarray, orig_sr: int, target_sr: int, res_type: str, fir: FirTaps, device: torch.device
) -> np.ndarray:
    """host.resample(y, ...) float64 by the taps on `device`; the last `reach` inputs' outputs come from the host.

    resampy and libsamplerate end their output a sample early for some lengths (librosa pads it with zero): the
    host resampling a short tail, which starts on the input period, gives the whole signal's ending exactly.
    """
    n = y.shape[-1]
    size = host.resampled_length(n, orig_sr, target_sr)
    out = apply_taps(torch.from_numpy(np.ascontiguousarray(y, dtype=np.float64)).to(device), fir).cpu().numpy()
    out = host.fix_length(out, size)
    s = max(0, (n - 3 * fir.reach - fir.down) // fir.down * fir.down)
    tail = host.resample(y[..., s:].astype(np.float64), orig_sr, target_sr, res_type)
    keep = 0 if s == 0 else (s + fir.reach) * fir.up // fir.down + 1  # outputs whose taps all lie in the tail
    tail = tail[..., keep - s * fir.up // fir.down :]
    m = min(tail.shape[-1], size - keep)  # the host's length is a float ceil: the tail's may be a sample short
    out[..., keep : keep + m] = tail[..., :m]
    out[..., keep + m :] = 0
    return out


class TorchFrontEnd:
    """frontend.FrontEnd on a torch device; numpy in and out, with the host transforms' dtypes."""

    name = "torch"

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def _to(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).to(self.device)

    def _window(self, n_fft: int, dtype: torch.dtype) -> torch.Tensor:
        return torch.from_numpy(hann(n_fft)).to(self.device, dtype)

    def stft_segment(self, segment: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
        x = self._to(segment).to(torch.float32)
        frames = x.unfold(-1, n_fft, hop) * self._window(n_fft, torch.float32)
        spec = torch.fft.rfft(frames, dim=-1).transpose(-1, -2)
        return spec.contiguous().cpu().numpy()

    def istft_segment(self, spec: np.ndarray, hop: int) -> np.ndarray:
        n_fft = 2 * (spec.shape[-2] - 1)
        n_frames = spec.shape[-1]
        window = self._window(n_fft, torch.float64)
        frames = torch.fft.irfft(self._to(spec).to(torch.complex128), n=n_fft, dim=-2) * window[:, None]
        length = n_fft + hop * (n_frames - 1)
        flat = frames.reshape(-1, n_fft, n_frames)

        def overlap_add(columns: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.fold(columns, (1, length), (1, n_fft), stride=(1, hop)).reshape(-1, length)

        wave = overlap_add(flat)
        norm = overlap_add((window**2)[None, :, None].expand(1, n_fft, n_frames).contiguous())[0]
        wave = torch.where(norm > torch.finfo(torch.float64).tiny, wave / norm, wave)
        return wave.reshape(spec.shape[:-2] + (length,)).cpu().numpy()

    def fft_resample(self, y: np.ndarray, num: int) -> np.ndarray:
        return self._fft_resample(self._to(y), num).cpu().numpy()

    def _fft_resample(self, x: torch.Tensor, num: int) -> torch.Tensor:
        """host.fft_resample, in the input's precision as scipy.fft works."""
        n_x = x.shape[-1]
        m = min(num, n_x)
        spectrum = torch.fft.rfft(x, dim=-1)[..., : m // 2 + 1].clone()
        if m % 2 == 0 and num != n_x:  # the unpaired bin, as host.fft_resample
            spectrum[..., m // 2] *= 2 if num < n_x else 0.5
        return torch.fft.irfft(spectrum / (n_x / num), n=num, dim=-1)

    def resample(self, y: np.ndarray, orig_sr: int, target_sr: int, res_type: str) -> np.ndarray:
        if orig_sr == target_sr:
            return y
        if y.shape[-1] == 0:
            return np.zeros(y.shape[:-1] + (0,), dtype=y.dtype)
        size = host.resampled_length(y.shape[-1], orig_sr, target_sr)
        if res_type in ("scipy", "fft"):
            out = self._fft_resample(self._to(y), size)
        else:
            fir = fir_taps(orig_sr, target_sr, res_type) if res_type in host.FIR_TYPES else None
            if fir is None:  # also gives the host's one-line error for an unknown resampler
                return host.resample(y, orig_sr, target_sr, res_type)
            return np.asarray(fir_resample(y, orig_sr, target_sr, res_type, fir, self.device), dtype=y.dtype)
        return np.asarray(host.fix_length(out.cpu().numpy(), size), dtype=y.dtype)
