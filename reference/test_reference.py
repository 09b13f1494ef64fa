"""The test-only reference (reference/rvc.py) against outputs of the original UVR5 code in shared/conformance.

They need the shared data folder (../shared beside the checkout, or $UVR_SHARED), so they live outside the test
suite, which runs without it; CI runs them (`pytest reference`) beside shared/conformance/check.py. They anchor the
suite: tests/test_nets.py and tests/test_reference_pipeline.py compare uvr with this reference on weights made from
seeds, so the reference itself must compute what the original code computed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from reference import rvc as ref

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"

pytestmark = pytest.mark.slow

SHARED = Path(os.environ.get("UVR_SHARED", ROOT.parent / "shared"))


@pytest.fixture(scope="module")
def conformance() -> Path:
    folder = SHARED / "conformance"
    if not folder.is_dir():
        pytest.skip(f"needs the shared conformance data, {folder} is absent (set UVR_SHARED)")
    return folder


# (weights, vector file, output name -> the reference call that makes it)
NETWORK_VECTORS = {
    "cascadednet_nout16": (
        "cascadednet_nout16_bins1024_fp16.pth",
        "V0_net_new16.npz",
        {
            "predict": lambda net, x: net.predict(x),
            "mask": lambda net, x: net.predict_mask(x),
        },
    ),
    "cascaded_aspp_ch16": (
        "cascaded_aspp_ch16_fp16.pth",
        "V0_net_seed.npz",
        {
            "predict": lambda net, x: net.predict(x),
            # RVC's default: agg 10 -> value 0.1, split at 4band_v2's band[1].crop_stop
            "predict_agg": lambda net, x: net.predict(x, {"value": 0.1, "split_bin": 85}),
        },
    ),
}


@pytest.mark.parametrize("name", list(NETWORK_VECTORS))
def test_reference_networks_reproduce_the_original_outputs(conformance: Path, name: str) -> None:
    weights, vectors, outputs = NETWORK_VECTORS[name]
    net = ref.load_model(conformance / "weights" / weights, 1024)
    with np.load(conformance / "net" / vectors) as vec, torch.no_grad():
        x = torch.from_numpy(vec["x"])
        for key, call in outputs.items():
            np.testing.assert_allclose(call(net, x).numpy(), vec[key], rtol=1e-4, atol=1e-5, err_msg=key)


def snr_db(r: np.ndarray, e: np.ndarray) -> float:
    noise = np.sum((r - e) ** 2)
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(r**2) / noise))


@pytest.mark.parametrize("index", [0, 1], ids=["V1-ch16-1band", "V2-ch16-4band_v2-tta"])
def test_reference_pipeline_reproduces_the_conformance_stems(conformance: Path, index: int) -> None:
    """Whole separations, at >= 100 dB: the CLI is held to 50 dB against the same stems."""
    vec = json.loads((conformance / "manifest.json").read_text())["vectors"][index]
    pipeline = ref.AudioPre(
        conformance / vec["weights"], DATA / "modelparams" / f"{vec['params']}.json", vec["agg"], vec["tta"]
    )
    got = pipeline.separate(conformance / vec["input"])
    for stem, key in (("instrumental", "primary"), ("vocals", "other")):
        want = np.load(conformance / vec["expect"][stem])
        assert len(got[key]) == len(want), stem
        assert snr_db(want, got[key]) >= 100, stem
