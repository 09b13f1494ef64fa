"""The authors' chunking of MSST-format models (MSST utils/model_utils.py `demix`, generic mode), on the chunk path.

chunk C = inference.chunk_size (else audio.chunk_size), step = C // inference.num_overlap, fade = C // 10,
border = C - step. A song longer than 2 * border is padded by `border` at each end with itself reflected; chunks
start every `step` from 0; a chunk running past the end is padded with itself reflected when more than half of it
is song, else with zeros. Each chunk's output is weighted by a window of linear fades (0 to 1 over `fade` samples at
each end, both ends included) and the sums divided by the summed weights (0 where none, as np.nan_to_num makes it).
The fades are dropped as MSST drops them, per batch of inference.batch_size chunks: the first chunk's fade-in when
it is a batch of its own, and the fade-out of every chunk in the last batch. Those weights are the authors' whatever
batches uvr runs the network in. The model's outputs are its config's instruments (or its target), and with a
target the rest of the mix is the other stem.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from uvr_cli.catalog.model_config import ModelConfig
from uvr_cli.engine.chunks import ChunkLayout, ChunkNetwork
from uvr_cli.engine.family import ModelInfo


def fade_window(size: int, fade: int) -> np.ndarray:
    """MSST's `_getWindowingArray` as float32: ones, with torch.linspace(0, 1, fade) and its reverse at the ends."""
    window = torch.ones(size)
    window[-fade:] = torch.linspace(1, 0, fade)
    window[:fade] = torch.linspace(0, 1, fade)
    return window.numpy()


@dataclass(frozen=True)
class MsstModel:
    """A loaded MSST-format model: what it is, its config, and its network (chunks.ChunkModel)."""

    info: ModelInfo
    config: ModelConfig
    network: ChunkNetwork
    num_overlap: int

    @property
    def signal(self) -> MsstModel:
        return self

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def stems(self) -> tuple[str, ...]:
        return self.config.stems

    @property
    def chunk(self) -> int:
        return self.config.chunk_size

    @property
    def step(self) -> int:
        return self.chunk // self.num_overlap

    @cached_property
    def window(self) -> np.ndarray:
        return fade_window(self.chunk, self.chunk // 10)

    def layout(self, n: int) -> ChunkLayout:
        border = self.chunk - self.step
        padded = n > 2 * border and border > 0
        pad = border if padded else 0
        length = n + 2 * pad
        return ChunkLayout(n, pad, length, self.chunk, tuple(range(0, length, self.step)), reflect=padded)

    def chunk_input(self, layout: ChunkLayout, k: int, part: np.ndarray) -> np.ndarray:
        missing = self.chunk - part.shape[1]
        if not missing:
            return part
        return np.pad(part, ((0, 0), (0, missing)), mode="reflect" if part.shape[1] > self.chunk // 2 else "constant")

    def weight(self, layout: ChunkLayout, k: int) -> np.ndarray:
        batch = self.config.batch_size
        last = min((k // batch + 1) * batch, len(layout.starts)) - 1  # the last chunk of k's batch in MSST
        after = layout.starts[last] + self.step  # MSST's position when it runs that batch
        fade = self.chunk // 10
        window = self.window.copy()
        if after - self.step == 0:  # the first chunk, alone in its batch: no fade-in
            window[:fade] = 1
        elif after >= layout.length:  # the last batch: no fade-out
            window[-fade:] = 1
        return window[: layout.span(k)]

    def stems_of(self, averaged: np.ndarray, mix: np.ndarray, stems: Sequence[str]) -> dict[str, np.ndarray]:
        by_stem = dict(zip(self.config.outputs, averaged))
        target, rest = self.config.target, self.config.rest
        if target and rest:
            by_stem[rest] = mix - by_stem[target]
        return {stem: by_stem[stem] for stem in stems}

    def with_network(self, network: ChunkNetwork) -> MsstModel:
        return dataclasses.replace(self, network=network)
