"""The input as every signal path reads it: (frames, channels) blocks from a re-readable source, made stereo and read
forward through a rolling buffer, so that memory is bounded by the block, not the song."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from uvr_cli.engine.span import Span

READ_FRAMES = 1 << 16  # input frames decoded at a time


class BlockSource(Protocol):
    """What the pipeline reads: (frames, channels) float32 blocks in order; fewer than asked only at the end."""

    frames: int
    sample_rate: int
    channels: int

    def read(self, n: int) -> np.ndarray: ...


def to_stereo(audio: np.ndarray) -> np.ndarray:
    """(frames, channels) -> (2, frames) float32 for the network, with NaN/Inf as silence.

    Mono is duplicated (as the reference does). More than two channels are downmixed: 5.1 (6 channels, WAV order
    FL FR FC LFE BL BR) with ITU-R BS.775 gains (centre and surrounds at -3 dB, LFE dropped); any other layout keeps
    channels 0 and 1 as left and right and adds the rest to both at -3 dB.
    """
    channels = audio.shape[1]
    if channels == 1:
        stereo = np.repeat(audio.T, 2, axis=0)
    elif channels == 2:
        stereo = audio.T
    else:
        g = np.float32(1 / np.sqrt(2))
        if channels == 6:
            left = audio[:, 0] + g * audio[:, 2] + g * audio[:, 4]
            right = audio[:, 1] + g * audio[:, 2] + g * audio[:, 5]
        else:
            rest = audio[:, 2:].sum(axis=1) * g
            left, right = audio[:, 0] + rest, audio[:, 1] + rest
        stereo = np.stack([left, right])
    stereo = np.ascontiguousarray(stereo, dtype=np.float32)
    return np.nan_to_num(stereo, copy=False, nan=0.0, posinf=0.0, neginf=0.0)


class InputStream:
    """The input as a stereo float32 signal, read forward through a rolling buffer.

    Samples from `keep_from` on are never discarded (the FFT wrap-around of synthesis needs the song's last seconds).
    """

    def __init__(self, reader: BlockSource, keep_from: int | None = None) -> None:
        self._reader = reader
        self.length = reader.frames
        self._keep_from = self.length if keep_from is None else max(keep_from, 0)
        self._start, self._data = 0, np.zeros((2, 0), dtype=np.float32)

    def get(self, i0: int, i1: int) -> Span:
        """A span holding samples [i0, i1) (clipped to the signal); earlier samples are released."""
        i0, i1 = max(i0, 0), max(i1, 0)
        keep = max(0, min(i0, self.length, self._keep_from) - self._start)
        if keep:
            self._data, self._start = self._data[:, keep:], self._start + keep
        want = min(i1, self.length)
        parts = [self._data]
        end = self._start + self._data.shape[1]
        while end < want:
            block = self._reader.read(max(READ_FRAMES, want - end))
            if block.shape[0] == 0:
                self.length = end  # the source promised more than it holds: the rest is silence
                break
            parts.append(to_stereo(block))
            end += block.shape[0]
        if len(parts) > 1:
            self._data = np.concatenate(parts, axis=1)
        return Span(i0, Span(self._start, self._data, self.length).get(i0, i1), self.length)


class ArraySource:
    """An in-memory (frames, channels) array as a BlockSource."""

    def __init__(self, audio: np.ndarray, sample_rate: int) -> None:
        self._audio, self.sample_rate, self._pos = audio, sample_rate, 0
        self.frames, self.channels = audio.shape
        self.nonfinite_replaced = 0

    def read(self, n: int) -> np.ndarray:
        block = self._audio[self._pos : self._pos + n]
        self._pos += block.shape[0]
        return block


BLOCK_SECONDS = 15.0  # a block of the signal paths: peak memory grows with it, speed does not (benchmarks/RESULTS.md)

Sink = Callable[[np.ndarray], None]
"""Where a stem's samples go, as (frames, channels) float32 blocks in order."""
Opener = Callable[[], contextlib.AbstractContextManager[BlockSource]]
"""Opens the input afresh for each pass over it."""


@dataclass(frozen=True)
class Result:
    frames_in: int
    sample_rate: int
    channels: int
    output_frames: int
