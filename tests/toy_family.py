"""A test-only model family, written against the family seam (uvr_cli/engine/family.py) and nothing else.

A `.toy` file is JSON: {"preset": NAME, "kind": "complex" | "mask"}. Its "network" has no weights:
- "complex": it reads the complex spectrogram and gives three stems as complex spectrograms: "same" (the mix),
  "negated" (minus the mix) and "half" (half the mix); no magnitude mask can give the negated stem, so it shows
  that a family's complex output reaches the synthesis whole;
- "mask": it reads the magnitudes divided by the song's largest and gives a soft mask m = |X| / (|X| + 0.05) of
  "vocals"; "instrumental" is the rest. Cheap, so a test of the front end measures the transforms and not a network.
`install(monkeypatch)` adds the family to uvr's list, so `Separator(model="x.toy")` loads it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uvr_cli.catalog.presets import BandPreset, load_preset
from uvr_cli.catalog.registry import ModelIdentity
from uvr_cli.engine import families
from uvr_cli.engine.analysis import Frames
from uvr_cli.engine.family import ModelInfo
from uvr_cli.engine.windows import NetworkRun, WindowRunner
from uvr_cli.errors import UsageError

OFFSET = 8
STEMS = {"complex": ("same", "negated", "half"), "mask": ("vocals", "instrumental")}
FACTORS = {"same": 1.0, "negated": -1.0, "half": 0.5}


def _complex_network(batch: np.ndarray) -> np.ndarray:
    """(B, 4, F, W) real/imaginary parts -> (B, 3, 2, F, W - 2*OFFSET) complex64: each stem's spectrogram."""
    middle = batch[..., OFFSET:-OFFSET]
    spec = (middle[:, :2] + 1j * middle[:, 2:]).astype(np.complex64)
    return np.stack([FACTORS[stem] * spec for stem in STEMS["complex"]], axis=1)


def _mask_network(batch: np.ndarray) -> np.ndarray:
    """(B, 2, F, W) magnitudes -> (B, 2, F, W - 2*OFFSET) float32 soft mask."""
    middle = batch[..., OFFSET:-OFFSET]
    return (middle / (middle + 0.05)).astype(np.float32)


class ToySong:
    def __init__(self, model: ToyModel, runner: WindowRunner, scale: float) -> None:
        self.model, self.runner, self.scale = model, runner, scale

    def _stems(self, mix: np.ndarray, out: np.ndarray, high_end: np.ndarray | None, stems: Sequence[str]):
        """Each wanted stem's frames; the complex stems' top rows (above the analysis' bins) scaled like them."""
        if self.model.kind == "complex":
            return {
                stem: (spec, None if high_end is None else FACTORS[stem] * high_end)
                for stem, spec in zip(STEMS["complex"], out)
                if stem in stems
            }
        by_stem = {"vocals": out * mix, "instrumental": mix - out * mix}
        return {stem: (by_stem[stem], None) for stem in stems}

    def frames(self, found: Frames, context: int, a: int, b: int, stems: Sequence[str], on_window, ahead: bool):
        if self.model.kind == "complex":
            inputs = np.concatenate([found.spec.real, found.spec.imag]).astype(np.float32)
        else:
            inputs = found.magnitude / max(self.scale, 1e-8)
        out = self.runner.outputs(inputs, a - context, a, b, on_window, ahead)
        high_end = None if found.high_end is None else found.high_end[:, :, context : context + b - a]
        return self._stems(found.spec[:, :, context : context + b - a], out, high_end, stems)

    def tail(self, extra: Frames, stems: Sequence[str]):
        if self.model.kind == "complex":
            out = np.stack([FACTORS[stem] * extra.spec for stem in STEMS["complex"]])
        else:
            magnitude = extra.magnitude / max(self.scale, 1e-8)
            out = magnitude / (magnitude + 0.05)
        return self._stems(extra.spec, out, extra.high_end, stems)


@dataclass(frozen=True)
class ToyModel:
    info: ModelInfo
    preset: BandPreset
    network: NetworkRun
    kind: str

    @property
    def signal(self) -> ToyModel:
        return self

    @property
    def stems(self) -> tuple[str, ...]:
        return STEMS[self.kind]

    @property
    def keeps_high_end(self) -> bool:
        return self.kind == "complex"

    @property
    def needs_scale(self) -> bool:  # the mask reads magnitudes divided by the song's largest, as VR's networks do
        return self.kind == "mask"

    needs_whole_song = False

    def song(self, runner: WindowRunner, scale: float, n_frames: int) -> ToySong:
        return ToySong(self, runner, scale)

    def with_network(self, network: NetworkRun) -> ToyModel:
        return dataclasses.replace(self, network=network)


class ToyFamily:
    name = "Toy"

    def claims(self, path: Path, head: bytes) -> bool:
        return path.suffix == ".toy"

    def load(self, path: Path, options, runtime) -> ToyModel:
        spec = json.loads(path.read_text())
        preset, kind = load_preset(spec["preset"]), spec["kind"]
        info = ModelInfo(
            path=path,
            family="Toy",
            architecture=f"toy ({kind})",
            identity=ModelIdentity(spec["preset"], STEMS[kind][0], "a .toy file", "0" * 32),
            stems=STEMS[kind],
            primary=STEMS[kind][0],
            sample_rate=preset.sr,
            setup=f"band preset {preset.name}",
            applies=frozenset(),
            kind="a toy model",
        )
        predict = _complex_network if kind == "complex" else _mask_network
        network = NetworkRun(predict, OFFSET, window=64, batch_size=runtime.batch_size)
        return ToyModel(info, preset, network, kind)

    def describe(self, path: Path, options) -> dict:
        raise UsageError("toy models have no description")

    def export(self, path: Path, out: Path, options, precision: str, note=None) -> list[str]:
        raise UsageError("toy models do not export")


def install(monkeypatch) -> None:
    """Let uvr load `.toy` files, for the length of one test."""
    uvrs = families.all_families()
    monkeypatch.setattr(families, "all_families", lambda: (ToyFamily(), *uvrs))


def toy_file(folder: Path, preset: str, kind: str) -> Path:
    path = folder / f"{kind}-{preset}.toy"
    path.write_text(json.dumps({"preset": preset, "kind": kind}))
    return path
