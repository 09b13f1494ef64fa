"""Reading UVR5 VR weight files and recognising their architecture from tensor shapes.

UVR itself guesses the architecture from the file size, which breaks on fp16 re-saves and on the
CascadedNet sizes (vr-reference.md §2.5); here the shapes decide, and every failure becomes a one-line
:class:`ModelError` that names the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from uvr_cli.catalog.registry import uvr_model_hash
from uvr_cli.engine.families.vr.nets import AsppNetSpec, CascadedNetSpec, MaskNetwork, NetworkSpec, build_network
from uvr_cli.engine.weights import NBT, check_values, clean, few, read_state_dict
from uvr_cli.errors import ModelError

_ASPP_MARKER = "stg2_bridge.conv.0.weight"
_LSTM_MARKER = "stg3_full_band_net.lstm_dec2.lstm.weight_ih_l0"
_ASPP_PROBE_BINS = 1024
"""ASPP weights do not depend on the band count; any bins valid for every variant will do to lay them out."""


@dataclass(frozen=True)
class LoadedModel:
    """A network with its weights loaded, in eval mode, plus what identifies it."""

    module: MaskNetwork
    spec: NetworkSpec
    bins: int
    md5: str
    path: Path


def _shape(sd: Mapping[str, Tensor], key: str, ndim: int) -> tuple[int, ...]:
    if key not in sd:
        raise ModelError(f"key {key} is missing")
    shape = tuple(sd[key].shape)
    if len(shape) != ndim:
        raise ModelError(f"{key} has shape {list(shape)}, expected {ndim} dimensions")
    return shape


def _aspp_spec(sd: Mapping[str, Tensor]) -> AsppNetSpec:
    ch, nin = _shape(sd, "stg1_low_band_net.enc1.conv1.conv.0.weight", 4)[:2]
    if nin != 2 or ch <= 0:
        raise ModelError(
            f"stg1_low_band_net.enc1.conv1.conv.0.weight has shape [{ch}, {nin}, ...], expected [ch, 2, 3, 3]"
        )
    enc5 = "stg1_low_band_net.enc5.conv1.conv.0.weight" in sd
    width = _shape(sd, "stg1_low_band_net.aspp.bottleneck.0.conv.0.weight", 4)[1]
    branch_width = ch * (16 if enc5 else 8)
    branches, rest = divmod(width, branch_width)
    has6 = "stg1_low_band_net.aspp.conv6.conv.0.weight" in sd
    has7 = "stg1_low_band_net.aspp.conv7.conv.0.weight" in sd
    if rest or branches not in (5, 6, 7) or has6 != (branches >= 6) or has7 != (branches == 7):
        raise ModelError(
            f"the ASPP bottleneck takes {width} channels ({width / branch_width:g} branches of {branch_width}), "
            f"which does not fit aspp.conv6 being {'present' if has6 else 'absent'} "
            f"and aspp.conv7 being {'present' if has7 else 'absent'}"
        )
    try:
        return AsppNetSpec(ch=ch, branches=branches, enc5=enc5)
    except ValueError as e:
        raise ModelError(str(e)) from None


def _cascaded_spec(sd: Mapping[str, Tensor]) -> CascadedNetSpec:
    out_ch, nout = _shape(sd, "out.weight", 4)[:2]
    if out_ch != 2:
        raise ModelError(
            f"out.weight has {out_ch} output channels, not 2: a tsurumeso vocal-remover v6 checkpoint, "
            "which is not supported"
        )
    nout_lstm = 2 * _shape(sd, "stg3_full_band_net.lstm_dec2.lstm.weight_hh_l0", 2)[1]
    bins = 2 * _shape(sd, _LSTM_MARKER, 2)[1]
    try:
        return CascadedNetSpec(nout=nout, nout_lstm=nout_lstm, bins=bins)
    except ValueError as e:
        raise ModelError(str(e)) from None


def _layout_problems(spec: NetworkSpec, state_dict: Mapping[str, Tensor]) -> list[str]:
    """Missing keys, unexpected keys and shape mismatches of ``state_dict`` against ``spec``'s network.

    The network is laid out on the meta device, so even the 537 MB variant costs no memory or init time.
    ``num_batches_tracked`` is ignored on both sides (old checkpoints lack it).
    """
    bins = spec.bins if isinstance(spec, CascadedNetSpec) else None
    with torch.device("meta"):
        net = build_network(spec, bins or _ASPP_PROBE_BINS)
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items() if not k.endswith(NBT)}
    given = {k: tuple(v.shape) for k, v in state_dict.items() if not k.endswith(NBT)}
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    wrong = [f"{k} {list(given[k])} (expected {list(s)})" for k, s in expected.items() if k in given and given[k] != s]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {few(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {few(unexpected)}")
    if wrong:
        problems.append(f"{len(wrong)} shape mismatch(es): {few(wrong)}")
    return problems


def _describe(spec: NetworkSpec) -> str:
    if isinstance(spec, AsppNetSpec):
        return f"CascadedASPPNet (ch {spec.ch}, {spec.branches} ASPP branches{', enc5' if spec.enc5 else ''})"
    return f"CascadedNet (nout {spec.nout}, nout_lstm {spec.nout_lstm}, {spec.bins} bins)"


def detect_spec(state_dict: Mapping[str, Tensor]) -> NetworkSpec:
    """Recognise the architecture and capacity from tensor shapes (vr-reference.md §2.5), then verify
    that every key and shape fits it, so that a returned spec always loads strictly."""
    spec: NetworkSpec
    if _ASPP_MARKER in state_dict:
        spec = _aspp_spec(state_dict)
    elif _LSTM_MARKER in state_dict:
        spec = _cascaded_spec(state_dict)
    else:
        raise ModelError(
            f"not a UVR5 VR-architecture model: it has neither {_ASPP_MARKER} (CascadedASPPNet) nor "
            f"{_LSTM_MARKER} (CascadedNet); its first keys are {few(list(state_dict), 3)}"
        )
    problems = _layout_problems(spec, state_dict)
    if problems:
        raise ModelError(f"looks like a {_describe(spec)} but does not fit it: {'; '.join(problems)}")
    return spec


def network_from_state_dict(
    state_dict: Mapping[str, Tensor], bins: int | None, *, spec: NetworkSpec | None = None
) -> tuple[MaskNetwork, NetworkSpec, int]:
    """Recognise, build and strictly load a network from an in-memory state dict, in eval mode.

    ``bins`` is the band preset's bin count: required for CascadedASPPNet (the weights do not fix it),
    optional for CascadedNet (the LSTM fixes it; a different value is refused). ``spec``, if given, is
    what the caller expects (e.g. from an earlier :func:`detect_spec`); other weights are refused.
    Returns the module, its spec and the bins it was built for. ``num_batches_tracked`` entries are
    optional and fp16 is upcast; the module's parameters are the float32 tensors themselves, not copies.
    """
    state = clean(state_dict)
    detected = detect_spec(state)
    if spec is not None and spec != detected:
        raise ModelError(f"the weights are a {_describe(detected)}, not the expected {_describe(spec)}")
    check_values(state)
    if isinstance(detected, CascadedNetSpec):
        assert detected.bins is not None  # detect_spec reads a CascadedNet's bins from its LSTM weights
        if bins is not None and bins != detected.bins:
            raise ModelError(
                f"the weights are for a {detected.bins}-bin band preset (LSTM input size), "
                f"but the chosen preset has {bins} bins"
            )
        bins = detected.bins
    elif bins is None:
        raise ModelError(
            "a CascadedASPPNet does not record its number of frequency bins; give the band preset it was trained with"
        )
    # Laid out on the meta device and then handed the tensors themselves (assign=True): no random init
    # and no second copy of the weights, which matters for the 537 MB networks.
    with torch.device("meta"):
        module = build_network(detected, bins)
    counters = {k: torch.zeros((), dtype=torch.long) for k in module.state_dict() if k.endswith(NBT)}
    module.load_state_dict({**counters, **state}, strict=True, assign=True)
    return module.eval(), detected, bins


def load_network(
    path: str | os.PathLike,
    bins: int | None,
    *,
    state: Mapping[str, Tensor] | None = None,
    spec: NetworkSpec | None = None,
) -> LoadedModel:
    """Read, recognise and strictly load a UVR5 VR weight file (see :func:`network_from_state_dict`).

    ``state`` is the file's state dict when the caller has already read it with :func:`read_state_dict`
    (saves a second read of a large file); ``spec`` is the architecture the caller expects.
    """
    if state is None:
        state = read_state_dict(path)
    try:
        module, spec, bins = network_from_state_dict(state, bins, spec=spec)
    except ModelError as e:
        raise ModelError(f"{path}: {e}") from None
    return LoadedModel(module=module, spec=spec, bins=bins, md5=uvr_model_hash(path), path=Path(path))
