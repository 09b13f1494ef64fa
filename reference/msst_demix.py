"""An independent, test-only re-implementation of the authors' chunked inference of MSST-format models
(ZFTurbo/Music-Source-Separation-Training, utils/model_utils.py `demix`, generic mode, and inference.py's
`--extract_instrumental`), the way it runs: whole song in memory, torch tensors, float32 sums, batches of
inference.batch_size chunks with the window rules that depend on them. Nothing here imports uvr_cli, so a test
comparing the two is a real cross-check of uvr's chunk engine (engine/chunks.py) and MSST chunking
(engine/families/msst/chunking.py).

`model` maps a (batch, channels, chunk) float32 tensor to (batch, instruments, channels, chunk).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F


def windowing_array(window_size: int, fade_size: int) -> torch.Tensor:
    fadein = torch.linspace(0, 1, fade_size)
    fadeout = torch.linspace(1, 0, fade_size)
    window = torch.ones(window_size)
    window[-fade_size:] = fadeout
    window[:fade_size] = fadein
    return window


def demix(config: dict, model: Callable[[torch.Tensor], torch.Tensor], mix: np.ndarray) -> dict[str, np.ndarray]:
    """demix(config, model, mix, device, model_type != 'htdemucs') on a (channels, samples) float32 mix."""
    mix_t = torch.tensor(mix, dtype=torch.float32)
    inference, audio, training = config["inference"], config["audio"], config["training"]
    chunk_size = inference.get("chunk_size", audio["chunk_size"])
    target = training.get("target_instrument")
    instruments = [target] if target else training["instruments"]
    num_overlap = inference["num_overlap"]
    fade_size = chunk_size // 10
    step = chunk_size // num_overlap
    border = chunk_size - step
    length_init = mix_t.shape[-1]
    window_array = windowing_array(chunk_size, fade_size)
    if length_init > 2 * border and border > 0:
        mix_t = F.pad(mix_t, (border, border), mode="reflect")
    batch_size = inference["batch_size"]
    with torch.inference_mode():
        req_shape = (len(instruments), *mix_t.shape)
        result = torch.zeros(req_shape, dtype=torch.float32)
        counter = torch.zeros(req_shape, dtype=torch.float32)
        i = 0
        batch_data: list[torch.Tensor] = []
        batch_locations: list[tuple[int, int]] = []
        while i < mix_t.shape[1]:
            part = mix_t[:, i : i + chunk_size]
            chunk_len = part.shape[-1]
            pad_mode = "reflect" if chunk_len > chunk_size // 2 else "constant"
            part = F.pad(part, (0, chunk_size - chunk_len), mode=pad_mode, value=0)
            batch_data.append(part)
            batch_locations.append((i, chunk_len))
            i += step
            if len(batch_data) >= batch_size or i >= mix_t.shape[1]:
                x = model(torch.stack(batch_data, dim=0))
                window = window_array.clone()
                if i - step == 0:
                    window[:fade_size] = 1
                elif i >= mix_t.shape[1]:
                    window[-fade_size:] = 1
                for j, (start, seg_len) in enumerate(batch_locations):
                    result[..., start : start + seg_len] += x[j, ..., :seg_len].cpu() * window[..., :seg_len]
                    counter[..., start : start + seg_len] += window[..., :seg_len]
                batch_data.clear()
                batch_locations.clear()
        estimated = (result / counter).cpu().numpy()
        np.nan_to_num(estimated, copy=False, nan=0.0)
        if length_init > 2 * border and border > 0:
            estimated = estimated[..., border:-border]
    return dict(zip(instruments, estimated))


def separate(config: dict, model: Callable[[torch.Tensor], torch.Tensor], mix: np.ndarray) -> dict[str, np.ndarray]:
    """The estimates, and with a target instrument the rest of the mix (mix - target), as inference.py's
    --extract_instrumental makes it, named by the caller."""
    estimates = demix(config, model, mix)
    target = config["training"].get("target_instrument")
    if target:
        estimates["rest"] = mix - estimates[target]
    return estimates
