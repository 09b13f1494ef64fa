"""The chunk path of the engine: decoded blocks -> the waveform at the model's rate -> overlapping chunks -> the
network's waveforms -> weighted overlap-add -> stems -> the output rate.

Families whose networks map a stretch of waveform to stem waveforms (MDX-Net: an STFT, the network and an iSTFT
inside each chunk) take this path. The family's ChunkModel gives the chunk layout of a song (padding at both ends,
where the chunks start), each chunk's weight and padding, the network over a batch of chunks, and how the averaged
outputs become stems. The engine reads the input once, forward, resampled to the model's rate where needed, and
hands a stem's samples on as soon as every chunk over them has run: memory is bounded by a few chunks, not the song;
and since the chunk grid depends only on the song's length, the result does not depend on how the input is read.

Sums are kept as the reference implementations keep them: in float32, chunk after chunk, the output multiplied in
place by the weight (numpy's mixed-precision rules then decide the rounding, as in UVR's `demix`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from uvr_cli.engine.batching import WindowBatcher
from uvr_cli.engine.blocks import InputStream, Opener, Result, Sink
from uvr_cli.engine.ranges import resample_range, source_range
from uvr_cli.engine.resample import resampled_length
from uvr_cli.engine.span import Span

INPUT_RESAMPLER = "kaiser_best"  # the input to the model's rate: librosa 0.9's default, which UVR uses
OUTPUT_RESAMPLER = "kaiser_best"  # the stems to another output rate, as the frame path does
READ_SAMPLES = 1 << 16  # model-rate samples made at a time


@dataclass(frozen=True)
class ChunkLayout:
    """A song's chunks, in the coordinates of the padded signal: `pad_left` samples (zeros, or the song reflected),
    the song's `n` samples, then padding to `length`. Chunk k covers [starts[k], starts[k] + chunk) ∩ [0, length)."""

    n: int
    pad_left: int
    length: int
    chunk: int
    starts: tuple[int, ...]
    reflect: bool = False  # the padding holds the song reflected at its ends (np.pad's 'reflect'), else zeros

    def span(self, k: int) -> int:
        """How many samples of chunk k lie inside the padded signal."""
        return min(self.chunk, self.length - self.starts[k])


ChunkPredict = Callable[[np.ndarray], np.ndarray]
"""The network over a batch of chunks: (batch, 2, chunk) float32 -> (batch, outputs, 2, chunk) float32."""


@dataclass(frozen=True)
class ChunkNetwork:
    """The network of a chunk model, and how it is called: `batch_size` chunks at a time, or through a batcher
    shared with the songs separated at the same time (batching.py)."""

    predict: ChunkPredict
    batch_size: int = 1
    batcher: WindowBatcher | None = None

    def run(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        if self.batcher is not None:
            return self.batcher.outputs(chunks)
        return run_chunks(self, chunks)


def run_chunks(network: ChunkNetwork, chunks: list[np.ndarray]) -> list[np.ndarray]:
    """The network's outputs of `chunks`, `batch_size` per call."""
    out: list[np.ndarray] = []
    for i in range(0, len(chunks), network.batch_size):
        out.extend(network.predict(np.stack(chunks[i : i + network.batch_size])))
    return out


@runtime_checkable
class ChunkModel(Protocol):
    """What a chunk family gives the engine for one loaded model."""

    @property
    def sample_rate(self) -> int: ...

    @property
    def stems(self) -> tuple[str, ...]: ...

    @property
    def network(self) -> ChunkNetwork: ...

    def layout(self, n: int) -> ChunkLayout:
        """The chunks of a song of `n` samples at the model's rate."""
        ...

    def chunk_input(self, layout: ChunkLayout, k: int, part: np.ndarray) -> np.ndarray:
        """Chunk k's network input (2, chunk) from its `part` of the padded signal (2, layout.span(k))."""
        ...

    def weight(self, layout: ChunkLayout, k: int) -> np.ndarray:
        """Chunk k's weight over its span (layout.span(k),); its outputs are multiplied by it and summed, and so
        are the weights, and the sums divided."""
        ...

    def stems_of(self, averaged: np.ndarray, mix: np.ndarray, stems: Sequence[str]) -> dict[str, np.ndarray]:
        """The wanted stems (2, m) from the averaged outputs (outputs, 2, m) and the mix (2, m) of the same samples."""
        ...

    def with_network(self, network: ChunkNetwork) -> ChunkModel: ...


class _ModelRateSignal:
    """The input at the model's rate, made forward in blocks (resampled where the rates differ) and kept from
    `keep` on; samples outside [0, n) are zero."""

    def __init__(self, stream: InputStream, rate_in: int, rate: int, n: int) -> None:
        self.stream, self.rate_in, self.rate, self.n = stream, rate_in, rate, n
        self.start, self.data = 0, np.zeros((2, 0), dtype=np.float32)

    def _make(self, j0: int, j1: int) -> np.ndarray:
        if self.rate_in == self.rate:
            return self.stream.get(j0, j1).data
        s, e = source_range(j0, j1, self.rate_in, self.rate, INPUT_RESAMPLER, self.stream.length)
        span = self.stream.get(s, e)
        return resample_range(span, j0, j1, self.rate_in, self.rate, INPUT_RESAMPLER, self.n).astype(np.float32)

    def get(self, j0: int, j1: int) -> np.ndarray:
        """Samples [j0, j1); j0 must not be below what `release` let go."""
        j0, j1 = max(j0, 0), min(j1, self.n)
        end = self.start + self.data.shape[1]
        if j1 > end:
            made = self._make(end, max(j1, min(end + READ_SAMPLES, self.n)))
            self.data = np.concatenate([self.data, made], axis=1)
        assert j0 >= self.start, "the samples were released"
        return self.data[:, max(j0 - self.start, 0) : max(j1 - self.start, 0)]

    def release(self, before: int) -> None:
        cut = min(max(before - self.start, 0), self.data.shape[1])
        if cut:
            self.data, self.start = self.data[:, cut:], self.start + cut


class _Padded:
    """The padded signal of a layout over the model-rate signal (zeros, or the song reflected, beyond its ends)."""

    def __init__(self, signal: _ModelRateSignal, layout: ChunkLayout) -> None:
        self.signal, self.layout = signal, layout

    def get(self, i0: int, i1: int) -> np.ndarray:
        n, left = self.layout.n, self.layout.pad_left
        j0, j1 = i0 - left, i1 - left  # song coordinates
        if not self.layout.reflect or (j0 >= 0 and j1 <= n):
            out = np.zeros((2, i1 - i0), dtype=np.float32)
            lo, hi = max(j0, 0), min(j1, n)
            if lo < hi:
                out[:, lo - j0 : hi - j0] = self.signal.get(lo, hi)
            return out
        index = np.arange(j0, j1)
        index = np.where(index < 0, -index, index)
        index = np.where(index >= n, 2 * (n - 1) - index, index)
        lo = int(index.min())
        return self.signal.get(lo, int(index.max()) + 1)[:, index - lo]


class _Output:
    """The stems at the model's rate as they complete, handed to the sinks at the output rate."""

    def __init__(self, sinks: dict[str, Sink], rate: int, n: int, output_rate: int, channels: int) -> None:
        self.sinks, self.rate, self.n, self.output_rate, self.channels = sinks, rate, n, output_rate, channels
        self.out_length = resampled_length(n, rate, output_rate) if output_rate != rate else n
        self.start = self.have = self.written = 0
        self.buf: dict[str, np.ndarray] = {stem: np.zeros((2, 0), dtype=np.float32) for stem in sinks}

    def add(self, stems: dict[str, np.ndarray]) -> None:
        """The stems' next model-rate samples; hand on every output sample they complete."""
        for stem, wave in stems.items():
            self.buf[stem] = np.concatenate([self.buf[stem], wave], axis=1)
        self.have += next(iter(stems.values())).shape[1]
        q1 = self.out_length if self.have >= self.n else self._ready()
        if q1 <= self.written:
            return
        for stem, buf in self.buf.items():
            if self.output_rate == self.rate:
                wave = buf[:, self.written - self.start : q1 - self.start]
            else:
                span = Span(self.start, buf, self.n)
                wave = resample_range(
                    span, self.written, q1, self.rate, self.output_rate, OUTPUT_RESAMPLER, self.out_length
                )
            self.sinks[stem](np.ascontiguousarray(wave[: self.channels].T, dtype=np.float32))
        self.written = q1
        if q1 < self.out_length:  # keep what later output samples read
            keep = self._source(q1, q1 + 1)[0]
            cut = max(keep - self.start, 0)
            self.buf = {stem: buf[:, cut:] for stem, buf in self.buf.items()}
            self.start += cut

    def _source(self, q0: int, q1: int) -> tuple[int, int]:
        if self.output_rate == self.rate:
            return q0, q1
        return source_range(q0, q1, self.rate, self.output_rate, OUTPUT_RESAMPLER, self.n)

    def _ready(self) -> int:
        """The furthest output sample whose model-rate samples are all here."""
        lo, hi = self.written, self.out_length
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._source(self.written, mid)[1] <= self.have:
                lo = mid
            else:
                hi = mid - 1
        return lo


def separate(
    model: ChunkModel,
    open_source: Opener,
    sinks: dict[str, Sink],
    *,
    output_rate: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Result:
    """Separate the input `open_source()` gives (read once), handing each stem's samples to its sink: (frames,
    channels) float32 blocks in order, mono for mono input, stereo otherwise, exactly as long as the input at
    `output_rate` (default: the input's). `on_progress(done, total)` counts chunks."""
    with open_source() as reader:
        n_in, rate_in, channels_in = reader.frames, reader.sample_rate, reader.channels
        output_rate = output_rate or rate_in
        rate = model.sample_rate
        n = resampled_length(n_in, rate_in, rate) if rate_in != rate else n_in
        layout = model.layout(n)
        out = _Output(sinks, rate, n, output_rate, 1 if channels_in == 1 else 2)
        if n == 0:
            return Result(n_in, rate_in, channels_in, 0)
        # padding that reflects the song's end reads its last samples at the end: they are kept once read
        tail = max(n - 1 - (layout.length - layout.pad_left - n), 0) if layout.reflect else n
        keep_from = source_range(tail, n, rate_in, rate, INPUT_RESAMPLER, n_in)[0] if rate_in != rate else tail
        signal = _ModelRateSignal(InputStream(reader, keep_from), rate_in, rate, n)
        padded = _Padded(signal, layout)
        acc: np.ndarray | None = None  # (outputs, 2, ·) float32 sums from `base` on, in padded coordinates
        weights = np.zeros(0, dtype=np.float32)
        base, emitted = 0, layout.pad_left
        # a chunk that lies wholly in the padding changes only samples that are cut away: it is not run
        song_end = layout.pad_left + n
        used = [
            k for k, start in enumerate(layout.starts) if start < song_end and start + layout.span(k) > layout.pad_left
        ]
        total, batch = len(used), model.network.batch_size
        for i0 in range(0, total, batch):
            ks = used[i0 : i0 + batch]
            parts = [padded.get(layout.starts[k], layout.starts[k] + layout.span(k)) for k in ks]
            inputs = [model.chunk_input(layout, k, part) for k, part in zip(ks, parts)]
            for k, result in zip(ks, model.network.run(inputs)):
                start, m = layout.starts[k], layout.span(k)
                if acc is None:
                    acc = np.zeros(result.shape[:2] + (0,), dtype=np.float32)
                grow = start + m - base - acc.shape[-1]
                if grow > 0:
                    acc = np.concatenate([acc, np.zeros(acc.shape[:2] + (grow,), dtype=np.float32)], axis=-1)
                    weights = np.concatenate([weights, np.zeros(grow, dtype=np.float32)])
                weight = model.weight(layout, k)
                part = result[..., :m]
                part *= weight
                acc[..., start - base : start - base + m] += part
                weights[start - base : start - base + m] += weight
            if on_progress:
                on_progress(min(i0 + batch, total), total)
            final = layout.starts[used[i0 + batch]] if i0 + batch < total else layout.length
            stop = min(final, song_end)  # samples before `final` get no more chunks
            if stop > emitted:
                assert acc is not None
                lo, hi = emitted - base, stop - base
                averaged = np.zeros(acc.shape[:2] + (hi - lo,), dtype=np.float32)
                np.divide(acc[..., lo:hi], weights[lo:hi], out=averaged, where=weights[lo:hi] != 0)
                mix = signal.get(emitted - layout.pad_left, stop - layout.pad_left)
                out.add(model.stems_of(averaged, mix, list(sinks)))
                emitted = stop
            keep = min(emitted, final)  # the next chunks and the next stem samples read from here on
            if acc is not None and keep > base:
                cut = min(keep - base, acc.shape[-1])
                acc, weights, base = acc[..., cut:], weights[cut:], base + cut
            signal.release(min(keep - layout.pad_left, tail))
    return Result(n_in, rate_in, channels_in, out.out_length)


def with_batcher(model: ChunkModel, batcher: WindowBatcher) -> ChunkModel:
    """`model` with its chunks batched across the songs separated at the same time."""
    return model.with_network(dataclasses.replace(model.network, batcher=batcher))
