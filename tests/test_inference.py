"""The window loop and the inference-time rewrites of the network (BatchNorm folding, concat-free decoders)."""

from __future__ import annotations

import copy
import math
import sys

import numpy as np
import pytest
import torch

from uvr_cli.engine.device import configure_gpu_math
from uvr_cli.engine.families.vr.checkpoint import load_network
from uvr_cli.engine.families.vr.nets import Aggressiveness, AsppNetSpec, build_network
from uvr_cli.engine.families.vr.optimize import BandedDecoder, SplitInputConv, prepare_for_inference
from uvr_cli.engine.families.vr.postprocess import mask_silence
from uvr_cli.engine.windows import NetworkRun, fit_window, predict_song


def _randomise_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial running statistics, so that folding them is really exercised."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)
    return model.eval()


@pytest.mark.parametrize("band_bytes", [None, 1, 5000, sys.maxsize])
@pytest.mark.parametrize("branches", [5, 7])
def test_prepared_aspp_net_gives_the_same_mask(branches, band_bytes, monkeypatch):
    """Also with decoders banded down to one row (every band edge, top and bottom included), a few rows, and one
    band over the whole map (as on a GPU)."""
    if band_bytes is not None:
        monkeypatch.setattr(BandedDecoder, "band_bytes", band_bytes)
    torch.manual_seed(1)
    model = _randomise_batchnorm(build_network(AsppNetSpec(ch=16, branches=branches), 64))
    x = torch.rand(2, 2, 65, 272)
    agg = Aggressiveness(0.1, 20)
    with torch.inference_mode():
        expected = model.predict_mask(x, agg)
        fast = prepare_for_inference(copy.deepcopy(model), torch.device("cpu"))
        got = fast.predict_mask(x.contiguous(memory_format=torch.channels_last), agg)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert sum(isinstance(m, BandedDecoder) for m in fast.modules()) == 4 * 4  # every decoder of the 4 U-Nets
    assert isinstance(fast.stg3_bridge, SplitInputConv)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("band_bytes", [None, 1])
def test_prepared_cascadednet_gives_the_same_mask(cascadednet_weights, band_bytes, monkeypatch):
    if band_bytes is not None:
        monkeypatch.setattr(BandedDecoder, "band_bytes", band_bytes)
    model = load_network(cascadednet_weights, None).module
    x = torch.rand(1, 2, 1025, 144)
    with torch.inference_mode():
        expected = model.predict_mask(x)
        got = prepare_for_inference(copy.deepcopy(model), torch.device("cpu")).predict_mask(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_gpu_decoders_run_in_one_band():
    """Banding saves host memory at the CPU's speed; on a GPU it would only multiply kernel launches."""
    model = build_network(AsppNetSpec(ch=16, branches=5), 64).eval()
    prepared = prepare_for_inference(model, torch.device("meta"))
    decoders = [m for m in prepared.modules() if isinstance(m, BandedDecoder)]
    assert decoders and all(d.band_bytes == sys.maxsize for d in decoders)
    cpu = prepare_for_inference(build_network(AsppNetSpec(ch=16, branches=5), 64).eval(), torch.device("cpu"))
    assert all(m.band_bytes == BandedDecoder.band_bytes for m in cpu.modules() if isinstance(m, BandedDecoder))


@pytest.fixture
def gpu_math_flags():
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark)
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark = saved


def test_fp32_on_cuda_turns_tf32_off_and_the_fast_precisions_allow_it(gpu_math_flags):
    """PyTorch's default lets cuDNN run fp32 convolutions in TF32; --precision fp32 must mean fp32."""
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    configure_gpu_math(torch.device("cuda"), torch.float32)
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert not torch.backends.cudnn.benchmark
    configure_gpu_math(torch.device("cuda"), torch.float16)
    assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    configure_gpu_math(torch.device("cpu"), torch.float16)  # the CPU's settings are not cuDNN's
    assert not torch.backends.cudnn.allow_tf32


OFFSET = 4


def _half_of_the_middle(x: np.ndarray) -> np.ndarray:
    """A fake network whose output is half its input's middle frames: any misplaced window shows up in the result."""
    return x[..., OFFSET:-OFFSET] * 0.5


@pytest.mark.parametrize("frames", [1, 7, 8, 9, 50])
@pytest.mark.parametrize("tta", [False, True])
@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.complex64])
def test_window_loop_places_windows_exactly(frames, tta, batch_size, dtype):
    """Every frame is predicted from its own window position, with and without TTA's shifted windows, whatever the
    network's outputs are (real masks, complex spectrograms)."""
    rng = np.random.default_rng(0)
    inputs = rng.random((2, 9, frames)).astype(dtype)
    if dtype == np.complex64:
        inputs += 1j * rng.random((2, 9, frames)).astype(np.float32)
    run = NetworkRun(_half_of_the_middle, OFFSET, window=16, tta=tta, batch_size=batch_size)
    counted = []
    out = predict_song(run, inputs, counted.append)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, inputs * 0.5, rtol=1e-6)
    assert sum(counted) == run.count_windows(frames)


def test_mask_silence_returns_quiet_residue_with_fades():
    mag = np.ones((2, 4, 300))
    ref = np.full((2, 4, 300), 0.5)
    ref[:, :, 100:250] = 0.1  # 150 quiet frames: longer than min_range
    out = mask_silence(mag, ref)
    np.testing.assert_array_equal(out[:, :, :100], 1.0)
    np.testing.assert_allclose(out[:, :, 140:210], 1.1)
    assert 1.0 < out[0, 0, 110] < 1.1 and 1.0 < out[0, 0, 240] < 1.1


def test_mask_silence_without_quiet_frames_changes_nothing():
    mag = np.ones((2, 4, 100))
    np.testing.assert_array_equal(mask_silence(mag, np.ones((2, 4, 100))), mag)


@pytest.mark.parametrize("n_frames", [0, 1, 300, 1279, 1280, 1281, 5513, 100_000])
@pytest.mark.parametrize("widest, context, step", [(1536, 256, 16), (1024, 128, 32)])
def test_fitted_window_needs_no_more_windows_than_the_widest_and_pads_least(n_frames, widest, context, step):
    window = fit_window(n_frames, widest, context, step)
    roi, widest_roi = window - context, widest - context
    count = max(1, math.ceil(n_frames / widest_roi))
    assert window <= widest and window % step == 0
    assert math.ceil(max(n_frames, 1) / roi) == count  # as many windows as the widest needs
    assert (roi - step) * count < max(n_frames, 1)  # a step narrower would need one more


def test_bf16_is_refused_on_a_cpu_without_onednn_bf16_kernels(monkeypatch):
    """Without them PyTorch runs bf16 convolutions in its slow reference code (~9x fp32 measured): refuse, and keep
    training's 'auto' in fp32 there; with them bf16 is what was asked for."""
    from uvr_cli.engine import device as device_module
    from uvr_cli.errors import UsageError
    from uvr_cli.training import train
    from uvr_cli.training.config import TrainConfig

    cpu = torch.device("cpu")
    for supported in (False, True):
        monkeypatch.setattr(device_module, "cpu_bf16_supported", lambda s=supported: s)
        monkeypatch.setattr(train, "cpu_bf16_supported", lambda s=supported: s)
        auto = TrainConfig(dataset="d", out="o", precision="auto")
        if supported:
            assert device_module.resolve_precision("bf16", cpu) == torch.bfloat16
            assert train.uses_bf16(auto, cpu)
        else:
            with pytest.raises(UsageError, match="bf16.*fp32"):
                device_module.resolve_precision("bf16", cpu)
            with pytest.raises(UsageError, match="bf16"):
                train.uses_bf16(TrainConfig(dataset="d", out="o", precision="bf16"), cpu)
            assert not train.uses_bf16(auto, cpu)
