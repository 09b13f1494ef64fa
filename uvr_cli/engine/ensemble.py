"""Combining several models' stems, as the UVR GUI's ensemble modes do (lib_v5/spec_utils.py `ensembling`).

'avg' is the average of the stems' waves; 'max' and 'min' keep, bin by bin, the stem spectrogram of largest or
smallest magnitude (on a tie the later model's, as the GUI's `>=`/`<=` comparisons do).

Models that share one analysis (VR models of one band preset) combine their own band spectrograms before the one
synthesis (frames.py); synthesis is linear, so 'avg' there is the average of the waves. Any other ensemble (other
families, other presets) runs each model on its own into a temporary file and combines the waves: 'avg' sample by
sample, 'max'/'min' on the GUI's common STFT (2048 points, hop 1024, Hann), in blocks. Unlike the GUI, whose iSTFT
stops at the last whole hop and pads the rest of the song with silence, every sample is combined.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from uvr_cli.engine.blocks import Result, Sink
from uvr_cli.engine.span import Span
from uvr_cli.engine.spectral import istft_segment, stft_segment
from uvr_cli.settings import algorithm_for

N_FFT, HOP = 2048, 1024  # the UVR GUI's ensemble STFT (spec_utils.wave_to_spectrogram_no_mp)
BLOCK = 1 << 18  # output samples combined at a time

Member = Callable[[dict[str, Sink], Callable[[int, int], None] | None], Result]
"""One model's separation of the input into the given sinks, at the ensemble's output rate."""


def combine(algorithm: str, specs: list[np.ndarray]) -> np.ndarray:
    """One spectrogram from the members' spectrograms of the same stem."""
    if len(specs) == 1:
        return specs[0]
    if algorithm == "avg":
        return (sum(specs[1:], specs[0]) / len(specs)).astype(specs[0].dtype, copy=False)
    out = specs[0]
    for spec in specs[1:]:
        keep_new = np.abs(spec) >= np.abs(out) if algorithm == "max" else np.abs(spec) <= np.abs(out)
        out = np.where(keep_new, spec, out)
    return out


def _read(path: Path, channels: int, n: int, i0: int, i1: int) -> np.ndarray:
    """Samples [i0, i1) of a raw float32 (n, channels) file as (channels, i1 - i0), zero outside [0, n)."""
    lo, hi = max(i0, 0), min(i1, n)
    data = np.zeros((channels, 0), dtype=np.float32)
    if lo < hi:
        data = np.fromfile(path, dtype=np.float32, count=(hi - lo) * channels, offset=lo * channels * 4)
        data = data.reshape(-1, channels).T
    return Span(lo, data, n).get(i0, i1)


def _combined_block(algorithm: str, files: list[Path], channels: int, n: int, q0: int, q1: int) -> np.ndarray:
    """Output samples [q0, q1) of one stem, (channels, q1 - q0)."""
    if algorithm == "avg":
        return np.mean([_read(f, channels, n, q0, q1).astype(np.float64) for f in files], axis=0)
    frames = (n - 1) // HOP + 2  # every frame over a sample of the song, the zero-padded STFT's and one more
    f0 = max((q0 - N_FFT // 2) // HOP, 0)
    f1 = min((q1 - 1 + N_FFT // 2) // HOP + 1, frames)
    start = f0 * HOP - N_FFT // 2
    specs = [stft_segment(_read(f, channels, n, start, start + (f1 - f0 - 1) * HOP + N_FFT), N_FFT, HOP) for f in files]
    wave = istft_segment(combine(algorithm, specs), HOP)
    return wave[:, q0 - start : q1 - start]


def separate_each(
    members: Sequence[Member],
    combine_by: dict[str, str],
    sinks: dict[str, Sink],
    on_progress: Callable[[int, int], None] | None = None,
) -> Result:
    """Run each member into temporary files, then hand each stem, combined, to its sink in blocks."""
    with tempfile.TemporaryDirectory(prefix="uvr-ensemble-") as folder:
        files: dict[str, list[Path]] = {stem: [] for stem in sinks}
        result: Result | None = None
        for k, member in enumerate(members):
            paths = {stem: Path(folder) / f"{k}-{stem}.f32" for stem in sinks}
            handles = {stem: open(path, "wb") for stem, path in paths.items()}
            try:
                progress = None if on_progress is None else _member_progress(on_progress, k, len(members))
                result = member({stem: _writer(handle) for stem, handle in handles.items()}, progress)
            finally:
                for handle in handles.values():
                    handle.close()
            for stem, path in paths.items():
                files[stem].append(path)
        assert result is not None, "an ensemble has members"
        n, channels = result.output_frames, 1 if result.channels == 1 else 2
        for q0 in range(0, n, BLOCK):
            q1 = min(q0 + BLOCK, n)
            for stem, sink in sinks.items():
                block = _combined_block(algorithm_for(combine_by, stem), files[stem], channels, n, q0, q1)
                sink(np.ascontiguousarray(block.T, dtype=np.float32))
    return result


def _writer(handle) -> Sink:
    return lambda block: handle.write(np.ascontiguousarray(block, dtype=np.float32).tobytes())


def _member_progress(on_progress: Callable[[int, int], None], k: int, count: int) -> Callable[[int, int], None]:
    """Member k's windows as the ensemble's: each member counts as the same share of the whole."""
    return lambda done, total: on_progress(k * total + done, count * total)
