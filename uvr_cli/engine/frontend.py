"""Where the signal processing runs: the STFT, the iSTFT and the resamplers, on the host (numpy) or in torch.

Analysis and synthesis (analysis.py, synthesis.py, ranges.py) call their transforms through a `FrontEnd`, so one
block pipeline runs either way. `NUMPY` is the reference's own arithmetic (scipy.fft, libsamplerate, resampy);
torch_dsp.TorchFrontEnd runs the same transforms on the model's device, so a GPU is not left waiting on the host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from uvr_cli.engine.resample import fft_resample, resample
from uvr_cli.engine.spectral import istft_segment, stft_segment
from uvr_cli.errors import UsageError
from uvr_cli.settings import FRONT_ENDS

if TYPE_CHECKING:
    import torch


class FrontEnd(Protocol):
    """The four transforms analysis and synthesis are built from; numpy arrays in and out, the same dtypes."""

    name: str

    def stft_segment(self, segment: np.ndarray, n_fft: int, hop: int) -> np.ndarray: ...

    def istft_segment(self, spec: np.ndarray, hop: int) -> np.ndarray: ...

    def resample(self, y: np.ndarray, orig_sr: int, target_sr: int, res_type: str) -> np.ndarray: ...

    def fft_resample(self, y: np.ndarray, num: int) -> np.ndarray: ...


class NumpyFrontEnd:
    """The host transforms: scipy.fft and the reference's own resampling libraries."""

    name = "numpy"

    stft_segment = staticmethod(stft_segment)
    istft_segment = staticmethod(istft_segment)
    resample = staticmethod(resample)
    fft_resample = staticmethod(fft_resample)


NUMPY: FrontEnd = NumpyFrontEnd()


def resolve_front_end(choice: str, device: torch.device) -> FrontEnd:
    """'auto' is torch on a CUDA device and numpy elsewhere (on the CPU numpy is the faster, measured in
    benchmarks/RESULTS.md; Apple's MPS has no float64, which the iSTFT and resamplers need)."""
    if choice not in FRONT_ENDS:
        raise UsageError(f"--front-end {choice!r}: use {', '.join(FRONT_ENDS)}")
    if choice == "numpy" or (choice == "auto" and device.type != "cuda"):
        return NUMPY
    if device.type == "mps":
        raise UsageError("--front-end torch: Apple MPS has no float64, which the front end needs; use numpy")
    from uvr_cli.engine.torch_dsp import TorchFrontEnd

    return TorchFrontEnd(device)
