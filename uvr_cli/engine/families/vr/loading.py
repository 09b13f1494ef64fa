"""A weight file made ready to run: state dict read, file recognised, band preset chosen, network built."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from uvr_cli.catalog.models import load_catalog
from uvr_cli.catalog.presets import BandPreset, load_preset, params_hint, presets_with_bins
from uvr_cli.catalog.registry import ModelIdentity, identify
from uvr_cli.engine.families.vr.checkpoint import LoadedModel, detect_spec, load_network, read_state_dict
from uvr_cli.engine.families.vr.nets import CascadedNetSpec, NetworkSpec
from uvr_cli.errors import ModelError


@dataclass(frozen=True)
class Model:
    """The built network with what identifies it: the file, the registry's verdict and the preset it runs with."""

    path: Path
    loaded: LoadedModel
    identity: ModelIdentity
    preset: BandPreset
    params_used: bool = False  # the preset is --params's (else the file's own, from its hash or name)


def load_model(path: Path, params: str | os.PathLike | None = None, force: bool = False) -> Model:
    """Read the weights, recognise the file, pick the preset, build the network. `params` replaces a guessed preset
    (or none); it replaces one known for certain (by hash) only when `force`d."""
    state = read_state_dict(path)
    try:
        spec = detect_spec(state)
    except ModelError as exc:  # its message does not know the file: name it, as every other refusal does
        raise ModelError(f"{path}: {exc}") from None
    bins = spec.bins if isinstance(spec, CascadedNetSpec) else None  # only CascadedNet weights fix the bin count
    identity = identify(path, isinstance(spec, CascadedNetSpec), bins)
    params_used = params is not None and (force or not identity.certain)
    preset_name = params if params_used else identity.params
    if preset_name is None:
        raise ModelError(
            f"{path.name}: unknown weight file, cannot tell which band preset it was trained with; "
            f"pass --params NAME ({params_hint(bins)}) or a preset JSON path"
        )
    preset = load_preset(preset_name)
    if isinstance(spec, CascadedNetSpec) and spec.bins is not None and spec.bins != preset.bins:
        raise ModelError(
            f"{path.name}: the weights need a preset with {spec.bins} bins, but {preset.name} has "
            f"{preset.bins}; presets with {spec.bins}: {', '.join(presets_with_bins(spec.bins))}"
        )
    return Model(path, load_network(path, preset.bins, state=state, spec=spec), identity, preset, params_used)


def architecture(spec: NetworkSpec) -> str:
    """The network and its capacity in words, e.g. 'CascadedASPPNet (ch 32, 5 ASPP branches)'."""
    if isinstance(spec, CascadedNetSpec):
        return f"CascadedNet (nout {spec.nout}, nout_lstm {spec.nout_lstm})"
    return f"CascadedASPPNet (ch {spec.ch}, {spec.branches} ASPP branches{', enc5' if spec.enc5 else ''})"


def describe_model(path: Path) -> dict:
    """What `uvr info` reports: architecture and capacity from the shapes, hash, registry match, preset, stem."""
    spec = detect_spec(read_state_dict(path))
    if isinstance(spec, CascadedNetSpec):
        network, capacity = "CascadedNet", {"nout": spec.nout, "nout_lstm": spec.nout_lstm}
        bins, bins_from = spec.bins, "weights (LSTM input size)"
    else:
        network, capacity = "CascadedASPPNet", {"ch": spec.ch, "aspp_branches": spec.branches, "enc5": spec.enc5}
        bins, bins_from = None, None  # a CascadedASPPNet does not record it
    identity = identify(path, network == "CascadedNet", bins)
    if bins is None and identity.params:
        bins, bins_from = load_preset(identity.params).bins, "preset"
    if bins is None:
        bins_from = None
    by_hash = [e for e in load_catalog() if e.uvr_hash == identity.uvr_hash]
    known = identity.params is not None
    return {
        "path": str(path),
        "size_bytes": path.stat().st_size,
        "family": "VR",
        "network": network,
        "architecture": architecture(spec),
        "capacity": capacity,
        "bins": bins,
        "bins_from": bins_from,
        "uvr_hash": identity.uvr_hash,
        "recognised_by": identity.how if known else None,
        "catalogue_name": by_hash[0].name if by_hash else None,
        "preset": identity.params,
        "primary_stem": identity.primary_stem if known else None,
        "mask_estimates": ("vocals" if identity.primary_is_vocals else "instrumental") if known else None,
        "stems": ["vocals", "instrumental"],
        "details": {  # what `uvr info` shows after the lines every family has
            "bins": f"{bins} (from the {bins_from})" if bins else "unknown (not in the weights; give --params)",
            "preset": identity.params or "unknown",
            "primary stem": f"{identity.primary_stem} (the mask estimates the "
            f"{'vocals' if identity.primary_is_vocals else 'instrumental'})"
            if known
            else "unknown (instrumental unless --primary says otherwise)",
        },
    }
