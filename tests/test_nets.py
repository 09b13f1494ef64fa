"""The networks: against the test-only reference networks, the predict/predict_mask contract, aggressiveness, shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import random_uvr_state
from reference import rvc as ref
from uvr_cli.engine.families.vr.nets import (
    Aggressiveness,
    AsppNetSpec,
    CascadedASPPNet,
    CascadedNet,
    CascadedNetSpec,
    MaskNetwork,
    build_network,
)
from uvr_cli.errors import ModelError

# Float32 CPU against float32 CPU; the two implementations may order some sums differently.
RTOL, ATOL = 1e-4, 1e-5

# Every code path at its cheapest width: the three ASPP layouts on a small band count (they are fully
# convolutional), a small CascadedNet, and UVR-DeNoise-Lite's on the 1024 bins its LSTM weights fix. The wider
# capacities differ only in channel counts; test_reference_pipeline runs each of them end to end.
LAYOUTS = [
    (AsppNetSpec(16, 5), 64),
    (AsppNetSpec(16, 7), 64),
    (AsppNetSpec(16, 6, enc5=True), 64),
    (CascadedNetSpec(8, 32), 64),
    (CascadedNetSpec(16, 128, 1024), 1024),
]


@pytest.mark.parametrize(("spec", "bins"), LAYOUTS, ids=str)
def test_networks_compute_what_the_reference_networks_compute(spec: AsppNetSpec | CascadedNetSpec, bins: int) -> None:
    """On the same fp16 weights, against reference/rvc.py's networks (RVC's eval-mode predict): ``predict``,
    with RVC's aggressiveness for the ASPP nets and ``predict_mask`` for CascadedNet."""
    state = random_uvr_state(spec, bins, seed=7)
    ours = build_network(spec, bins)
    ours.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    ours.eval()
    theirs = ref.model_for_state(state, bins)
    x = torch.rand(1, 2, bins + 1, 2 * ours.offset + 32, generator=torch.Generator().manual_seed(1))
    split = bins // 3
    with torch.inference_mode():
        np.testing.assert_allclose(ours.predict(x).numpy(), theirs.predict(x).numpy(), rtol=RTOL, atol=ATOL)
        if isinstance(spec, AsppNetSpec):
            got = ours.predict(x, Aggressiveness(value=0.1, split_bin=split))
            want = theirs.predict(x, {"value": 0.1, "split_bin": split})
        else:
            got, want = ours.predict_mask(x), theirs.predict_mask(x)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=RTOL, atol=ATOL)


def _small(spec: AsppNetSpec | CascadedNetSpec, bins: int = 64, seed: int = 0) -> MaskNetwork:
    """A small random network in eval mode with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    net = build_network(spec, bins)
    for module in net.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _input(net: MaskNetwork, extra_frames: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(1, 2, net.output_bin, 2 * net.offset + extra_frames, generator=gen)


SMALL_SPECS = [AsppNetSpec(16, 5), AsppNetSpec(16, 6, enc5=True), AsppNetSpec(16, 7), CascadedNetSpec(8, 32)]


@pytest.mark.parametrize("spec", SMALL_SPECS, ids=str)
def test_predict_is_trimmed_mask_times_input_exactly(spec: AsppNetSpec | CascadedNetSpec) -> None:
    net = _small(spec)
    x = _input(net, 32)
    agg = Aggressiveness(0.3, 20)
    with torch.inference_mode():
        for a in (None, agg):
            mask = net.predict_mask(x, a)
            assert mask.shape == (1, 2, 65, 32)
            assert torch.equal(net.predict(x, a), mask * x[..., net.offset : -net.offset])
            assert torch.equal(net.predict(x, a), net(x, a)[..., net.offset : -net.offset])


def test_aspp_aggressiveness_powers_the_mask_below_and_from_split_bin() -> None:
    net = _small(AsppNetSpec(16, 5))
    x = _input(net, 32)
    with torch.inference_mode():
        plain = net.predict_mask(x)
        adjusted = net.predict_mask(x, Aggressiveness(0.3, 20))
    torch.testing.assert_close(adjusted[:, :, :20], plain[:, :, :20] ** 1.1, rtol=0, atol=1e-6)
    torch.testing.assert_close(adjusted[:, :, 20:], plain[:, :, 20:] ** 1.3, rtol=0, atol=1e-6)


def test_cascadednet_ignores_aggressiveness() -> None:
    net = _small(CascadedNetSpec(8, 32))
    x = _input(net, 32)
    with torch.inference_mode():
        assert torch.equal(net.predict(x), net.predict(x, Aggressiveness(0.5, 10)))


def test_top_row_replicates_the_row_below() -> None:
    net = _small(AsppNetSpec(16, 5))
    with torch.inference_mode():
        mask = net.predict_mask(_input(net, 32))
    assert torch.equal(mask[:, :, -1], mask[:, :, -2])


@pytest.mark.parametrize(("spec", "n_aux"), [(AsppNetSpec(16, 5), 3), (CascadedNetSpec(8, 32), 2)], ids=str)
def test_training_forward_returns_masked_aux_outputs(spec: AsppNetSpec | CascadedNetSpec, n_aux: int) -> None:
    net = _small(spec).train()
    x = _input(net, 0)
    outputs = net(x)
    assert isinstance(outputs, tuple) and len(outputs) == n_aux
    for out in outputs:
        assert out.shape == x.shape
        assert bool(((out >= 0) & (out <= x)).all())


def test_aspp_variant_layout() -> None:
    """conv6/conv7 keep separate weights at dilation 16; offsets and classes per family."""
    net = build_network(AsppNetSpec(16, 7), 64)
    aspp = net.stg1_low_band_net.aspp
    assert aspp.conv6 is not aspp.conv7
    assert aspp.conv6.conv[0].dilation == aspp.conv7.conv[0].dilation == aspp.conv5.conv[0].dilation == (16, 16)
    assert isinstance(net, CascadedASPPNet) and net.offset == 128
    assert isinstance(build_network(CascadedNetSpec(8, 32), 64), CascadedNet)
    assert build_network(CascadedNetSpec(8, 32), 64).offset == 64


def test_bins_that_cannot_run_are_refused() -> None:
    with pytest.raises(ModelError, match="multiple of 64"):
        build_network(AsppNetSpec(16, 6, enc5=True), 672)  # 336-row half bands do not halve 5 times
    with pytest.raises(ModelError, match="for 1024 frequency bins"):
        build_network(CascadedNetSpec(16, 128, bins=1024), 672)
    build_network(AsppNetSpec(16, 5), 672)


def test_bad_input_shapes_are_refused() -> None:
    net = _small(AsppNetSpec(16, 5))
    with pytest.raises(ValueError, match="multiple of 16"):
        net.predict(_input(net, 8))
    with pytest.raises(ValueError, match="more than 256 frames"):
        net.predict(torch.rand(1, 2, 65, 256))
    with pytest.raises(ValueError, match=r"\(N, 2, 65, T\)"):
        net.predict(torch.rand(1, 2, 64, 288))


def test_specs_validate_their_fields() -> None:
    with pytest.raises(ValueError):
        AsppNetSpec(16, 8)
    with pytest.raises(ValueError):
        CascadedNetSpec(18)
    with pytest.raises(ValueError):
        Aggressiveness(0.1, -1)
