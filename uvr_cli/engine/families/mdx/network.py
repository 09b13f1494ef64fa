"""An MDX-Net network over chunks: UVR's STFT of each chunk, the ONNX network in ONNX Runtime, the iSTFT back.

The STFT is UVR's (lib_v5/tfc_tdf_v3.py `STFT`, which python-audio-separator copies): a periodic Hann window of
n_fft, hop 1024, centred with reflected ends, unscaled; each channel's real and imaginary parts are the network's
four input channels (left real, left imaginary, right real, right imaginary), cut to the lowest dim_f bins. The
first three bins are zeroed before the network (UVR's `spek[:, :, :3, :] *= 0`); the bins above dim_f are zero
again for the inverse, whose length is the chunk's (no `length` argument: hop * (frames - 1)). The network's output
is the primary stem's spectrogram, not a mask. With denoise the network also runs on the negated spectrogram and
the two are averaged: 0.5 * net(X) - 0.5 * net(-X), as UVR and python-audio-separator compute it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from uvr_cli.engine.families.mdx.params import MdxParams
from uvr_cli.errors import ModelError

HOP = 1024
ZEROED_BINS = 3


class ChunkNet:
    """Chunks (batch, 2, hop * (frames - 1)) -> the primary stem's waveforms (batch, 1, 2, same), as UVR's
    `run_model` computes them."""

    def __init__(self, session, params: MdxParams, device: torch.device, denoise: bool) -> None:
        self.session, self.params, self.device, self.denoise = session, params, device, denoise
        self.input_name = session.get_inputs()[0].name
        self.window = torch.hann_window(params.n_fft, periodic=True, device=device)

    def spectrum(self, chunks: torch.Tensor) -> torch.Tensor:
        """(batch, 2, samples) -> (batch, 4, dim_f, frames): per channel its real then imaginary part."""
        batch, channels, samples = chunks.shape
        spec = torch.stft(
            chunks.reshape(-1, samples), self.params.n_fft, HOP, window=self.window, center=True, return_complex=True
        )
        spec = torch.view_as_real(spec).permute(0, 3, 1, 2)  # (batch*2, re/im, bins, frames)
        return spec.reshape(batch, channels * 2, spec.shape[-2], spec.shape[-1])[:, :, : self.params.dim_f]

    def waveform(self, spec: torch.Tensor) -> torch.Tensor:
        """The inverse of `spectrum`, the bins above dim_f zero: (batch, 4, dim_f, frames) -> (batch, 2, samples)."""
        batch, _, dim_f, frames = spec.shape
        bins = self.params.n_fft // 2 + 1
        full = torch.cat([spec, spec.new_zeros(batch, 4, bins - dim_f, frames)], dim=2)
        full = full.reshape(batch * 2, 2, bins, frames).permute(0, 2, 3, 1).contiguous()
        wave = torch.istft(torch.view_as_complex(full), self.params.n_fft, HOP, window=self.window, center=True)
        return wave.reshape(batch, 2, -1)

    def network(self, spec: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: spec})[0]

    def __call__(self, chunks: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            spec = self.spectrum(torch.from_numpy(chunks).to(self.device))
            spec[:, :, :ZEROED_BINS] = 0
            mix = np.ascontiguousarray(spec.cpu().numpy())
            if self.denoise:
                predicted = -self.network(-mix) * 0.5 + self.network(mix) * 0.5
            else:
                predicted = self.network(mix)
            wave = self.waveform(torch.from_numpy(np.ascontiguousarray(predicted)).to(self.device))
            return wave.cpu().numpy()[:, None]


def read_graph(path: Path):
    """The ONNX model at `path` (onnx.ModelProto); a file that is not one is a one-line ModelError."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except Exception as exc:  # protobuf's DecodeError and kin: a damaged, cut short or foreign file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{path}: not a readable ONNX model (damaged or cut short?): {first}") from None


def dims(value_info) -> list[int | None]:
    """A graph input's or output's shape: each axis's size, None where it is named (free)."""
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]


def free_axes(graph, axes: tuple[int, ...]) -> bytes:
    """The model with the given axes of its input and output named instead of fixed (UVR runs such models with
    another frame count through a torch conversion; ONNX Runtime needs the axes free), serialised."""
    for value_info in (*graph.graph.input, *graph.graph.output):
        shape = value_info.type.tensor_type.shape
        for axis in axes:
            if axis < len(shape.dim):
                shape.dim[axis].dim_param = f"axis{axis}"
    del graph.graph.value_info[:]  # inferred shapes of the inner tensors would still hold the old sizes
    return graph.SerializeToString()
