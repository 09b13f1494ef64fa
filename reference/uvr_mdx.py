"""An independent, test-only re-implementation of UVR's MDX-Net separation (UVR 5.6 `separate.py`, `SeperateMDX`).

Written from the facts of UVR's code as it runs (`demix`, `run_model`, `initialize_model_settings` and
lib_v5/tfc_tdf_v3.py `STFT`), whole song in memory, the way UVR does it: torch's STFT/iSTFT per chunk, numpy
sums in float32. Nothing here imports uvr_cli, so a test comparing the two is a real cross-check of uvr's block
engine (engine/chunks.py) and MDX-Net family (engine/families/mdx/).

`network(spec)` is the ONNX network as a function of a (batch, 4, dim_f, frames) float32 array. `overlap` is a share
(0.25, python-audio-separator's default) or "Default" (UVR's own default: step = chunk - n_fft, still windowed).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

HOP = 1024


def stft(x: torch.Tensor, n_fft: int, dim_f: int) -> torch.Tensor:
    """tfc_tdf_v3.STFT.__call__: (B, 2, T) -> (B, 4, dim_f, frames), channels L.re, L.im, R.re, R.im."""
    window = torch.hann_window(window_length=n_fft, periodic=True)
    batch_dims = x.shape[:-2]
    c, t = x.shape[-2:]
    x = x.reshape([-1, t])
    x = torch.view_as_real(torch.stft(x, n_fft=n_fft, hop_length=HOP, window=window, center=True, return_complex=True))
    x = x.permute([0, 3, 1, 2])
    x = x.reshape([*batch_dims, c, 2, -1, x.shape[-1]]).reshape([*batch_dims, c * 2, -1, x.shape[-1]])
    return x[..., :dim_f, :]


def istft(x: torch.Tensor, n_fft: int) -> torch.Tensor:
    """tfc_tdf_v3.STFT.inverse: the bins above dim_f zero-padded back, no `length` to torch.istft."""
    window = torch.hann_window(window_length=n_fft, periodic=True)
    batch_dims = x.shape[:-3]
    c, f, t = x.shape[-3:]
    n = n_fft // 2 + 1
    f_pad = torch.zeros([*batch_dims, c, n - f, t])
    x = torch.cat([x, f_pad], -2)
    x = x.reshape([*batch_dims, c // 2, 2, n, t]).reshape([-1, 2, n, t])
    x = x.permute([0, 2, 3, 1])
    x = x[..., 0] + x[..., 1] * 1.0j
    x = torch.istft(x, n_fft=n_fft, hop_length=HOP, window=window, center=True)
    return x.reshape([*batch_dims, 2, -1])


def run_model(
    mix: torch.Tensor, network: Callable[[np.ndarray], np.ndarray], n_fft: int, dim_f: int, denoise: bool
) -> np.ndarray:
    spek = stft(mix, n_fft, dim_f)
    spek[:, :, :3, :] *= 0
    if denoise:
        spec_pred = -network(-spek.numpy()) * 0.5 + network(spek.numpy()) * 0.5
    else:
        spec_pred = network(spek.numpy())
    return istft(torch.tensor(spec_pred), n_fft).numpy()


def demix(
    mix: np.ndarray,
    network: Callable[[np.ndarray], np.ndarray],
    *,
    n_fft: int,
    dim_f: int,
    segment_size: int = 256,
    overlap: float | str = 0.25,
    compensate: float = 1.0,
    denoise: bool = False,
) -> np.ndarray:
    """SeperateMDX.demix on a (2, N) float32 mix: the primary stem, compensated, (2, N) float32."""
    trim = n_fft // 2
    chunk_size = HOP * (segment_size - 1)
    gen_size = chunk_size - 2 * trim
    pad = gen_size + trim - ((mix.shape[-1]) % gen_size)
    mixture = np.concatenate((np.zeros((2, trim), dtype="float32"), mix, np.zeros((2, pad), dtype="float32")), 1)
    step = chunk_size - n_fft if overlap == "Default" else int((1 - overlap) * chunk_size)
    result = np.zeros((1, 2, mixture.shape[-1]), dtype=np.float32)
    divider = np.zeros((1, 2, mixture.shape[-1]), dtype=np.float32)
    for i in range(0, mixture.shape[-1], step):
        start = i
        end = min(i + chunk_size, mixture.shape[-1])
        chunk_size_actual = end - start
        window = None if overlap == 0 else np.tile(np.hanning(chunk_size_actual)[None, None, :], (1, 2, 1))
        mix_part_ = mixture[:, start:end]
        if end != i + chunk_size:
            pad_size = (i + chunk_size) - end
            mix_part_ = np.concatenate((mix_part_, np.zeros((2, pad_size), dtype="float32")), axis=-1)
        mix_part = torch.tensor(np.array([mix_part_]), dtype=torch.float32)
        tar_waves = run_model(mix_part, network, n_fft, dim_f, denoise)
        if window is not None:
            tar_waves[..., :chunk_size_actual] *= window
            divider[..., start:end] += window
        else:
            divider[..., start:end] += 1
        result[..., start:end] += tar_waves[..., : end - start]
    with np.errstate(invalid="ignore", divide="ignore"):
        tar_waves = result / divider
    tar_waves_ = np.vstack([tar_waves])[:, :, trim:-trim]
    tar_waves = np.concatenate(tar_waves_, axis=-1)[:, : mix.shape[-1]]
    return tar_waves * compensate


def separate(mix: np.ndarray, network: Callable[[np.ndarray], np.ndarray], **options) -> tuple[np.ndarray, np.ndarray]:
    """SeperateMDX.seperate's two stems without spectral inversion: (primary, secondary = mix - primary)."""
    primary = demix(mix, network, **options)
    return primary, mix - primary
