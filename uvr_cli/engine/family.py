"""The family seam: the one place that says what a model family is, and all the engine asks of one.

A family (a room of its own under engine/families/) recognises its model files and reads their parameters, builds
the network, and says how it runs on one of the engine's two signal paths:

- the frame path (frames.py): the input's band spectrogram (one band: a plain STFT) -> network windows over its
  frames -> each stem's spectrogram frames -> band synthesis. The family's FrameModel says what the network reads
  (band magnitudes, the complex spectrogram, ...) and how its output becomes stems (a magnitude mask, a complex
  spectrogram or mask, ...). VR models take this path.
- the chunk path (chunks.py): the waveform at the model's rate, in overlapping chunks that the network maps to each
  stem's waveform (any transform inside a chunk is the family's), weighted and added back. MDX-Net takes it.

It also says which options mean something to a model (`ModelInfo.applies`; the others have no effect and are
recorded as not applying), how `uvr info` describes a file, and how the network exports. Adding a family is adding
its room and one line in families/__init__.py; the engine's common rooms do not change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from uvr_cli.catalog.registry import ModelIdentity
from uvr_cli.engine.chunks import ChunkModel
from uvr_cli.engine.device import Runtime
from uvr_cli.engine.frames import FrameModel
from uvr_cli.settings import ModelOptions


def sidecar_path(path: Path) -> Path:
    """Where the description of a file that `Family.export` writes goes: FILE.onnx -> FILE.onnx.json."""
    return path.with_name(path.name + ".json")


@dataclass(frozen=True)
class ModelInfo:
    """What was loaded, for reports, records and chains."""

    path: Path
    family: str  # "VR", "MDX-Net", ...
    architecture: str  # e.g. "CascadedASPPNet (ch 32, 5 ASPP branches)"
    identity: ModelIdentity  # the UVR hash, how the file was recognised, UVR's label of the network's stem
    stems: tuple[str, ...]  # the stems it gives
    primary: str  # the stem the network estimates; the others are derived from it
    sample_rate: int  # the rate the model works at
    setup: str  # its parameters in a few words: a band preset's name, MDX-Net's STFT sizes, ...
    applies: frozenset[str]  # the ModelOptions fields that shape its output
    kind: str = "a model"  # what it is, for "--agg has no effect: X.pth is <kind>"
    why_not: Mapping[str, str] = field(default_factory=dict)  # option -> why it does not apply, beyond `kind`

    def no_effect(self, option: str) -> str:
        """Why `option` does not shape this model's output, as the end of a sentence."""
        reason = self.why_not.get(option)
        return f"{self.path.name} is {self.kind}" + (f", which {reason}" if reason else "")


class LoadedModel(Protocol):
    """A model ready to run: what it is, and what it gives the engine (a FrameModel or a ChunkModel)."""

    @property
    def info(self) -> ModelInfo: ...

    @property
    def signal(self) -> FrameModel | ChunkModel: ...


class Family(Protocol):
    """One model family: how its files are recognised, loaded, described and exported."""

    name: str

    def claims(self, path: Path, head: bytes) -> bool:
        """Whether `path` (whose first bytes are `head`) is this family's file; decided without loading it."""
        ...

    def load(self, path: Path, options: ModelOptions, runtime: Runtime) -> LoadedModel:
        """The model ready to run; a ModelError (one line naming the file) when it cannot be."""
        ...

    def describe(self, path: Path, options: ModelOptions) -> dict:
        """What `uvr info` reports of the file (its "family" key names this family)."""
        ...

    def export(
        self, path: Path, out: Path, options: ModelOptions, precision: str, note: Callable[[str], None] | None = None
    ) -> list[str]:
        """Write the network to `out` for other runtimes; the paths written. A UsageError where it cannot. `note`
        hears one line when the slow part (tracing the network) starts, after every check has passed."""
        ...
