"""A weight file made ready to run: its state dict read, the file recognised, the band preset chosen, the network built."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from uvr_cli.catalog.presets import BandPreset, load_preset, params_hint, presets_with_bins
from uvr_cli.catalog.registry import ModelIdentity, identify
from uvr_cli.engine.checkpoint import LoadedModel, detect_spec, load_network, read_state_dict
from uvr_cli.engine.nets import CascadedNetSpec
from uvr_cli.errors import ModelError


@dataclass(frozen=True)
class Model:
    """The built network with what identifies it: the file, the registry's verdict and the preset it runs with."""

    path: Path
    loaded: LoadedModel
    identity: ModelIdentity
    preset: BandPreset


def load_model(path: Path, params: str | os.PathLike | None = None) -> Model:
    """Read the weights, recognise the file, pick the preset (`params` overrides the registry), build the network."""
    state = read_state_dict(path)
    try:
        spec = detect_spec(state)
    except ModelError as exc:  # its message does not know the file: name it, as every other refusal does
        raise ModelError(f"{path}: {exc}") from None
    bins = spec.bins if isinstance(spec, CascadedNetSpec) else None  # only CascadedNet weights fix the bin count
    identity = identify(path, isinstance(spec, CascadedNetSpec), bins)
    preset_name = params if params is not None else identity.params
    if preset_name is None:
        raise ModelError(
            f"{path.name}: unknown weight file, cannot tell which band preset it was trained with; "
            f"pass --params NAME ({params_hint(bins)}) or a preset JSON path"
        )
    preset = load_preset(preset_name)
    if isinstance(spec, CascadedNetSpec) and spec.bins is not None and spec.bins != preset.bins:
        raise ModelError(f"{path.name}: the weights need a preset with {spec.bins} bins, but {preset.name} has "
                         f"{preset.bins}; presets with {spec.bins}: {', '.join(presets_with_bins(spec.bins))}")
    return Model(path, load_network(path, preset.bins, state=state, spec=spec), identity, preset)
