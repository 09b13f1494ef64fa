"""The torch front end (engine/torch_dsp.py) against the host one: every transform, the engine, the CLI option.

The torch front end runs here on the CPU; on a CUDA device it runs the same code. Its stems must stay within
-120 dB of the host front end's (the conformance floor), its transforms much closer.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import ROOT, uvr_command
from toy_family import ToyFamily, toy_file
from uvr_cli.engine import pipeline, resample, spectral, torch_dsp
from uvr_cli.engine.blocks import ArraySource
from uvr_cli.engine.frontend import NUMPY, resolve_front_end

CPU = torch.device("cpu")
FRONT = torch_dsp.TorchFrontEnd(CPU)


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    reference = reference.astype(np.float64)
    error = np.sum((reference - test.astype(np.float64)) ** 2)
    return float(10 * np.log10(np.sum(reference**2) / max(error, 1e-300)))


RATIOS = [(44100, 22050), (44100, 14700), (44100, 32000), (11025, 44100), (48000, 44100), (7350, 11025)]


@pytest.mark.parametrize("res_type", ["polyphase", "kaiser_fast", "kaiser_best", "sinc_fastest", "sinc_best"])
@pytest.mark.parametrize(("orig", "target"), RATIOS, ids=[f"{o}-{t}" for o, t in RATIOS])
def test_each_fir_resampler_runs_as_derived_taps_and_matches_the_host(res_type: str, orig: int, target: int) -> None:
    assert torch_dsp.fir_taps(orig, target, res_type) is not None, "the taps would fall back to the host"
    rng = np.random.default_rng(7)
    for n in (9, 1000, 44101, 60000):  # shorter than the taps, and both parities of long signals
        x = rng.standard_normal((2, n)).astype(np.float32)
        host = resample.resample(x, orig, target, res_type)
        ours = FRONT.resample(x, orig, target, res_type)
        assert ours.shape == host.shape and ours.dtype == host.dtype
        assert snr_db(host, ours) > 140, n


def test_taps_that_do_not_reproduce_the_host_leave_it_on_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    torch_dsp.fir_taps.cache_clear()
    monkeypatch.setattr(torch_dsp, "KERNEL_MIN_SNR_DB", 200.0)  # libsamplerate works in float32: ~147 dB
    try:
        assert torch_dsp.fir_taps(44100, 22050, "sinc_best") is None
        x = np.random.default_rng(0).standard_normal((2, 5000))
        np.testing.assert_array_equal(
            FRONT.resample(x, 44100, 22050, "sinc_best"), resample.resample(x, 44100, 22050, "sinc_best")
        )
    finally:
        torch_dsp.fir_taps.cache_clear()


@pytest.mark.parametrize(("n_fft", "hop"), [(2048, 1024), (1024, 128), (640, 80)])
def test_stft_and_istft_match_the_host(n_fft: int, hop: int) -> None:
    x = np.random.default_rng(1).standard_normal((2, 30000)).astype(np.float32)
    host_spec = spectral.stft_segment(x, n_fft, hop)
    ours = FRONT.stft_segment(x, n_fft, hop)
    assert ours.shape == host_spec.shape and ours.dtype == host_spec.dtype == np.complex64
    assert snr_db(np.abs(host_spec), np.abs(ours)) > 120
    spec = host_spec.astype(np.complex128)
    assert snr_db(spectral.istft_segment(spec, hop), FRONT.istft_segment(spec, hop)) > 200
    wave = x.astype(np.float64)  # synthesis FFT-resamples float64 waves; float32 ones stay float32, as in scipy
    assert snr_db(resample.fft_resample(wave, 17001), FRONT.fft_resample(wave, 17001)) > 200
    assert FRONT.fft_resample(x, 17001).dtype == np.float32
    assert snr_db(resample.fft_resample(x, 17001), FRONT.fft_resample(x, 17001)) > 120


def _separate(preset: str, audio: np.ndarray, rate: int, output_rate: int, front_end, folder: Path):
    """The engine with a cheap mask from the magnitudes (tests/toy_family.py), so the test measures the front end
    and not a network."""
    model = ToyFamily().load(toy_file(folder, preset, "mask"), None, SimpleNamespace(batch_size=1))
    parts: dict[str, list[np.ndarray]] = {"vocals": [], "instrumental": []}
    pipeline.separate(
        pipeline.plan([model], {}),
        lambda: contextlib.nullcontext(ArraySource(audio, rate)),
        {stem: parts[stem].append for stem in parts},
        output_rate=output_rate,
        block_seconds=2.0,
        front_end=front_end,
    )
    return {stem: np.concatenate(p) for stem, p in parts.items()}


# Every resampler the presets use, in blocks: kaiser_fast, polyphase and FFT between bands with kaiser_best out
# (4band_v2 to 48 kHz), sinc_medium and sinc_fastest (2band_48000 from 44.1 kHz), sinc_best (1band at 32 kHz in).
PRESETS = [("4band_v2", 44100, 48000), ("2band_48000", 44100, 44100), ("1band_sr44100_hl512", 32000, 32000)]


@pytest.mark.parametrize(("preset", "rate", "output_rate"), PRESETS, ids=[p[0] for p in PRESETS])
def test_the_engine_gives_the_same_stems_with_either_front_end(
    preset: str, rate: int, output_rate: int, tmp_path: Path
) -> None:
    rng = np.random.default_rng(3)
    t = np.arange(int(6.5 * rate)) / rate
    audio = (0.3 * np.sin(2 * np.pi * 440 * t)[:, None] + 0.1 * rng.standard_normal((t.size, 2))).astype(np.float32)
    host = _separate(preset, audio, rate, output_rate, NUMPY, tmp_path)
    ours = _separate(preset, audio, rate, output_rate, FRONT, tmp_path)
    for stem in host:
        assert ours[stem].shape == host[stem].shape
        assert snr_db(host[stem], ours[stem]) > 120, stem


def test_auto_is_numpy_on_the_cpu_and_unknown_names_are_refused() -> None:
    assert resolve_front_end("auto", CPU) is NUMPY
    assert resolve_front_end("torch", CPU).name == "torch"
    with pytest.raises(Exception, match="--front-end 'gpu'"):
        resolve_front_end("gpu", CPU)


def test_the_cli_runs_the_torch_front_end_and_records_it(tmp_path: Path) -> None:
    song = ROOT / "examples" / "slow_motion_dream.mp3"
    argv = [*uvr_command(), "separate", str(song), "-o", str(tmp_path), "--json", "-v"]
    first = subprocess.run([*argv, "--front-end", "torch"], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "front end torch" in first.stderr
    record = json.loads((tmp_path / ".slow_motion_dream_vocals.wav.uvr.json").read_text())
    assert record["settings"]["front_end"] == "torch"
    again = subprocess.run(argv, capture_output=True, text=True)  # auto: numpy here, so separated again
    assert again.returncode == 0, again.stderr
    assert "made with --front-end torch, not --front-end auto" in again.stderr
