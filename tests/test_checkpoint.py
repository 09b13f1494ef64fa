"""Weight files: reading, recognising every real UVR5 layout, and refusing broken or unsafe files."""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from conftest import DATA
from reference import rvc as ref
from uvr_cli.catalog.registry import HASH_TAIL_BYTES, uvr_model_hash
from uvr_cli.engine.families.vr.checkpoint import (
    detect_spec,
    load_network,
    network_from_state_dict,
    read_state_dict,
)
from uvr_cli.engine.families.vr.nets import AsppNetSpec, CascadedNetSpec
from uvr_cli.errors import ModelError

LISTINGS = sorted((DATA / "uvr-statedicts").glob("*.tsv"))  # UVR5's own key/shape/dtype listings
ASPP_BINS = 64  # any multiple of 64 runs every ASPP variant; small keeps the forward pass fast


def _random_state(listing: Path, seed: int = 0) -> dict[str, Tensor]:
    """A state dict with exactly the listing's keys, shapes and dtypes, and values that run sanely."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for line in listing.read_text().splitlines()[1:]:
        key, shape_text, dtype = line.split("\t")
        shape = () if shape_text == "scalar" else tuple(int(n) for n in shape_text.split("x"))
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros(shape, dtype=getattr(torch, dtype))
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[key] = torch.randn(shape, generator=gen) * 0.05
        assert state[key].dtype == getattr(torch, dtype)
    return state


def _expected_spec(listing: Path) -> AsppNetSpec | CascadedNetSpec:
    """The spec the listing's file name states, e.g. ``CascadedASPPNet_ch16_6branch_enc5__...``."""
    if m := re.match(r"CascadedASPPNet_ch(\d+)_(\d)branch(_enc5)?__", listing.name):
        return AsppNetSpec(int(m[1]), int(m[2]), enc5=bool(m[3]))
    m = re.match(r"CascadedNet_nout(\d+)_lstm(\d+)_bins(\d+)__", listing.name)
    assert m, listing.name
    return CascadedNetSpec(int(m[1]), int(m[2]), int(m[3]))


def test_every_real_layout_is_listed() -> None:
    assert len(LISTINGS) == 10


@pytest.mark.parametrize("listing", LISTINGS, ids=lambda p: p.stem)
def test_real_layout_is_detected_loaded_strictly_and_runs(listing: Path) -> None:
    state = _random_state(listing)
    spec = _expected_spec(listing)
    assert detect_spec(state) == spec
    bins = ASPP_BINS if isinstance(spec, AsppNetSpec) else None

    module, got_spec, got_bins = network_from_state_dict(state, bins)
    assert got_spec == spec and not module.training
    assert got_bins == (spec.bins if isinstance(spec, CascadedNetSpec) else ASPP_BINS)
    key = next(iter(state))
    assert torch.equal(module.state_dict()[key], state[key])

    # A forward pass: ASPP nets through predict at small bins, CascadedNet (bins fixed by the LSTM) on 32 frames.
    frames = 2 * module.offset + 32 if isinstance(spec, AsppNetSpec) else 32
    x = torch.rand(1, 2, got_bins + 1, frames, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        out = module.predict(x) if isinstance(spec, AsppNetSpec) else module(x)
    assert out.shape == (1, 2, got_bins + 1, frames - 2 * module.offset if isinstance(spec, AsppNetSpec) else frames)
    assert bool(torch.isfinite(out).all())

    without_counters = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert network_from_state_dict(without_counters, bins)[1] == spec

    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    module16, spec16, _ = network_from_state_dict(half, bins)
    assert spec16 == spec
    assert module16.state_dict()[key].dtype == torch.float32
    assert torch.equal(module16.state_dict()[key], half[key].float())


# --- files ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_state() -> dict[str, Tensor]:
    """A random ch16 5-branch ASPP state dict (the smallest real layout)."""
    return _random_state(DATA / "uvr-statedicts" / "CascadedASPPNet_ch16_5branch__31191KB.tsv")


def _saved(tmp_path: Path, obj: object, name: str = "model.pth") -> Path:
    path = tmp_path / name
    torch.save(obj, path)
    return path


def _error(path: Path, bins: int | None = 1024) -> str:
    with pytest.raises(ModelError) as info:
        load_network(path, bins)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "Traceback" not in message
    return message


def test_fp16_file_loads_with_metadata(tmp_path: Path, small_state: dict[str, Tensor]) -> None:
    half = {k: v.half() if v.is_floating_point() else v for k, v in small_state.items()}
    path = _saved(tmp_path, half)
    loaded = load_network(path, 1024)
    assert loaded.spec == AsppNetSpec(16, 5) and loaded.bins == 1024 and loaded.path == path
    assert loaded.md5 == hashlib.md5(path.read_bytes()[-HASH_TAIL_BYTES:]).hexdigest()
    assert not loaded.module.training
    state = read_state_dict(path)
    assert all(v.dtype == torch.float32 for v in state.values())
    assert not any(k.endswith("num_batches_tracked") for k in state)


def test_loaded_cascadednet_gives_the_reference_mask(cascadednet_weights: Path) -> None:
    """The meta-device build plus ``assign=True`` load must leave a working net (LSTM included)."""
    loaded = load_network(cascadednet_weights, None)
    assert loaded.spec == CascadedNetSpec(16, 128, 1024)
    x = torch.rand(1, 2, 1025, 160, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = ref.load_model(cascadednet_weights, 1024).predict_mask(x)
        torch.testing.assert_close(loaded.module.predict_mask(x), expected, rtol=1e-4, atol=1e-5)


def test_already_read_state_and_expected_spec(tmp_path: Path, small_state: dict[str, Tensor]) -> None:
    path = _saved(tmp_path, small_state)
    state = read_state_dict(path)
    loaded = load_network(path, 1024, state=state, spec=detect_spec(state))
    assert loaded.spec == AsppNetSpec(16, 5)
    assert loaded.module.state_dict()["out.weight"].data_ptr() == state["out.weight"].data_ptr()  # no copy
    with pytest.raises(ModelError, match=r"not the expected CascadedASPPNet \(ch 32"):
        load_network(path, 1024, state=state, spec=AsppNetSpec(32, 5))


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_wrapped_state_dict_loads(tmp_path: Path, small_state: dict[str, Tensor], wrapper: str) -> None:
    path = _saved(tmp_path, {wrapper: small_state, "epoch": 7, "note": "trained"})
    assert load_network(path, 1024).spec == AsppNetSpec(16, 5)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert "No such file" in _error(tmp_path / "absent.pth")
    assert "Is a directory" in _error(tmp_path)


def test_garbage_bytes(tmp_path: Path) -> None:
    # Seeded: about 8 % of random byte strings start like a pickle and fail inside it ("not a readable ..."), the
    # rest earlier; both are one line naming the file (unseeded, this test failed one run in twelve).
    rng = np.random.default_rng(0)
    for i in range(60):
        path = tmp_path / f"garbage{i}.pth"
        path.write_bytes(rng.bytes(4096))
        assert re.search(r"not a (readable )?PyTorch weight file", _error(path))


def test_empty_and_truncated_files(tmp_path: Path, small_state: dict[str, Tensor]) -> None:
    whole = _saved(tmp_path, small_state).read_bytes()
    for size in (0, 64, len(whole) // 2, len(whole) - 10):
        path = tmp_path / f"cut{size}.pth"
        path.write_bytes(whole[:size])
        message = _error(path)
        assert "empty or cut short" in message or "zip archive" in message


class _Payload:
    """Unpickling this would create the marker file: the classic malicious-checkpoint pattern."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("container", ["torch-zip", "legacy-pickle"])
def test_code_running_pickle_is_refused(tmp_path: Path, container: str) -> None:
    marker = tmp_path / "PWNED"
    obj = {"stg2_bridge.conv.0.weight": torch.zeros(1), "payload": _Payload(marker)}
    path = tmp_path / "evil.pth"
    if container == "torch-zip":
        torch.save(obj, path)
    else:
        path.write_bytes(pickle.dumps(obj, protocol=2))
    assert "refused" in _error(path)
    assert not marker.exists()


def test_non_tensor_values_and_non_dicts(tmp_path: Path) -> None:
    assert "entry 'b' holds int" in _error(_saved(tmp_path, {"a": torch.zeros(1), "b": 3}))
    assert "holds list" in _error(_saved(tmp_path, [torch.zeros(1)]))
    assert "holds no weights" in _error(_saved(tmp_path, {}))


def test_unknown_model_names_the_marker_keys(tmp_path: Path) -> None:
    message = _error(_saved(tmp_path, {"encoder.weight": torch.zeros(3, 3)}))
    assert "stg2_bridge.conv.0.weight" in message and "encoder.weight" in message


def test_wrong_shape_is_reported(tmp_path: Path, small_state: dict[str, Tensor]) -> None:
    state = dict(small_state)
    state["stg3_bridge.conv.0.weight"] = torch.zeros(16, 30, 1, 1)
    message = _error(_saved(tmp_path, state))
    assert (
        "shape mismatch" in message and "stg3_bridge.conv.0.weight [16, 30, 1, 1] (expected [16, 34, 1, 1])" in message
    )


def test_extra_and_missing_keys_are_reported(tmp_path: Path, small_state: dict[str, Tensor]) -> None:
    state = dict(small_state, **{"stg1_low_band_net.extra.weight": torch.zeros(2)})
    del state["out.weight"]
    message = _error(_saved(tmp_path, state))
    assert "1 unexpected key(s): stg1_low_band_net.extra.weight" in message
    assert "1 missing key(s): out.weight" in message


def test_branch_count_must_match_the_branch_keys(tmp_path: Path, small_state: dict[str, Tensor]) -> None:
    state = dict(small_state)
    state["stg1_low_band_net.aspp.conv6.conv.0.weight"] = torch.zeros(128, 1, 3, 3)
    assert "aspp.conv6 being present" in _error(_saved(tmp_path, state))


def test_nan_weights_are_refused(tmp_path: Path, small_state: dict[str, Tensor]) -> None:
    state = dict(small_state)
    state["out.weight"] = state["out.weight"].clone()
    state["out.weight"][0, 0] = float("nan")
    message = _error(_saved(tmp_path, state))
    assert "NaN or Inf" in message and "out.weight" in message


def test_aspp_needs_bins_and_cascadednet_checks_them(tmp_path: Path, small_state: dict[str, Tensor]) -> None:
    assert "does not record its number of frequency bins" in _error(_saved(tmp_path, small_state), bins=None)
    listing = DATA / "uvr-statedicts" / "CascadedNet_nout16_lstm128_bins1024__1band_sr44100_hl1024.tsv"
    path = _saved(tmp_path, _random_state(listing), "cascaded.pth")
    assert "1024-bin band preset" in _error(path, bins=672)
    assert load_network(path, None).bins == load_network(path, 1024).bins == 1024


def test_tsurumeso_v6_is_refused() -> None:
    state = {
        "stg3_full_band_net.lstm_dec2.lstm.weight_ih_l0": torch.zeros(256, 512),
        "out.weight": torch.zeros(4, 16, 1, 1),
    }
    with pytest.raises(ModelError, match="v6"):
        detect_spec(state)


def test_uvr_model_hash_uses_the_tail_of_large_files(tmp_path: Path) -> None:
    path = tmp_path / "big.pth"
    data = os.urandom(HASH_TAIL_BYTES + 1000)
    path.write_bytes(data)
    assert uvr_model_hash(path) == hashlib.md5(data[-HASH_TAIL_BYTES:]).hexdigest()
    path.write_bytes(data[:HASH_TAIL_BYTES])
    assert uvr_model_hash(path) == hashlib.md5(data[:HASH_TAIL_BYTES]).hexdigest()
    with pytest.raises(ModelError, match="absent.pth"):
        uvr_model_hash(tmp_path / "absent.pth")
