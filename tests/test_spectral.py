"""The STFT front end, the resamplers and the presets against librosa and the test-only RVC reference."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest

from reference import rvc as rvc_reference
from uvr_cli.catalog.presets import list_presets, load_preset
from uvr_cli.engine import spectral
from uvr_cli.engine.analysis import analyse
from uvr_cli.engine.families.vr import high_end
from uvr_cli.engine.resample import fft_resample, poly_resample, resample
from uvr_cli.engine.synthesis import synthesise
from uvr_cli.errors import ModelError

RNG = np.random.default_rng(7)
STEREO = (RNG.standard_normal((2, 22050)) * 0.1).astype(np.float32)


@pytest.mark.parametrize(("n_fft", "hop"), [(960, 480), (512, 160), (2048, 512), (640, 80), (1152, 576)])
def test_stft_and_istft_match_librosa(n_fft, hop):
    ours = spectral.stft(STEREO, n_fft, hop)
    theirs = librosa.stft(STEREO, n_fft=n_fft, hop_length=hop, center=True, pad_mode="constant")
    assert ours.dtype == np.complex64 and ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-6 * np.abs(theirs).max())
    back = spectral.istft(theirs.astype(np.complex128), hop)
    np.testing.assert_allclose(back, librosa.istft(theirs.astype(np.complex128), hop_length=hop), atol=1e-9)
    assert back.shape[-1] == hop * (ours.shape[-1] - 1)


@pytest.mark.parametrize(
    "res_type", ["polyphase", "kaiser_fast", "kaiser_best", "sinc_fastest", "sinc_medium", "sinc_best", "scipy"]
)
@pytest.mark.parametrize(("orig", "target"), [(44100, 14700), (48000, 44100), (7350, 11025)])
def test_resamplers_match_the_reference_librosa_semantics(res_type, orig, target):
    expected = rvc_reference.resample(STEREO, orig, target, res_type)
    got = resample(STEREO, orig, target, res_type)
    assert got.dtype == np.float32 and got.shape == expected.shape == (2, int(np.ceil(22050 * target / orig)))
    np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("n", [1, 2, 5, 64, 1001, 30000])
@pytest.mark.parametrize(("up", "down"), [(1, 2), (1, 3), (1, 6), (2, 1), (3, 2), (147, 160), (160, 147), (4, 6)])
def test_polyphase_resampler_is_scipy_resample_poly(n, up, down):
    """Ours runs without importing scipy.signal; it must agree with scipy's to float64 rounding."""
    import scipy.signal

    y = np.random.default_rng(n + up).standard_normal((2, n))
    expected = scipy.signal.resample_poly(y, up, down, axis=-1)
    got = poly_resample(y, up, down)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12 * np.abs(expected).max())


@pytest.mark.parametrize(("n", "num"), [(1, 3), (7, 2), (100, 37), (100, 300), (1001, 1000), (1000, 1001)])
def test_fft_resampler_is_scipy_resample(n, num):
    import scipy.signal

    for dtype in (np.float32, np.float64):
        y = np.random.default_rng(n).standard_normal((2, n)).astype(dtype)
        expected = scipy.signal.resample(y, num, axis=-1)
        got = fft_resample(y, num)
        assert got.dtype == expected.dtype
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6 * np.abs(expected).max())


def test_separating_does_not_import_scipy_signal():
    """scipy.signal drags in most of scipy: ~65 MB resident and ~2 s of start-up for every process."""
    code = (
        "import sys, numpy as np; import uvr_cli.cli.main, uvr_cli.engine.pipeline; "
        "from uvr_cli.catalog.presets import load_preset; from uvr_cli.engine import analysis, synthesis; "
        "p = load_preset('4band_v2'); a = analysis.analyse(np.zeros((44100, 2), np.float32), 44100, p, True); "
        "synthesis.synthesise(a.spec, p); print('scipy.signal' in sys.modules)"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_stereo_sinc_resampling_keeps_the_last_sample():
    """libsamplerate per channel can return one sample fewer; librosa 0.9 resampled all channels in one call."""
    y = (np.random.default_rng(0).standard_normal((2, 69600)) * 0.1).astype(np.float32)
    assert np.all(resample(y, 48000, 44100, "sinc_best")[:, -1] != 0)


def test_equal_rates_return_the_input_unchanged():
    assert resample(STEREO, 44100, 44100, "kaiser_best") is STEREO


def test_filters_are_the_reference_ramps():
    spec = np.ones((2, 20, 3), dtype=np.complex128)
    expected = rvc_reference.fft_lp_filter(spec.copy(), 5, 9)
    np.testing.assert_array_equal(spec * spectral.lowpass_gains(20, 5, 9)[:, None], expected)
    expected = rvc_reference.fft_hp_filter(spec.copy(), 12, 6)
    np.testing.assert_array_equal(spec * spectral.highpass_gains(20, 12, 6)[:, None], expected)


@pytest.mark.parametrize("preset", ["4band_v2", "3band_44100_msb2", "1band_sr44100_hl512", "4band_v4_ms_fullband"])
def test_combined_spectrogram_and_synthesis_match_the_reference(preset, tmp_path):
    p = load_preset(preset)
    mp = rvc_reference.load_params(Path(__file__).parents[1] / "models" / "presets" / f"{preset}.json")
    analysis = analyse(STEREO.T, 44100, p, keep_high_end=True)
    waves = {len(p.bands): STEREO}
    specs = {}
    for d in range(len(p.bands), 0, -1):
        band = mp["band"][d]
        if d < len(p.bands):
            waves[d] = rvc_reference.resample(waves[d + 1], mp["band"][d + 1]["sr"], band["sr"], band["res_type"])
        specs[d] = rvc_reference.wave_to_spectrogram(
            waves[d], band["hl"], band["n_fft"], mp["mid_side"], mp["mid_side_b2"], mp["reverse"]
        )
    expected = rvc_reference.combine_spectrograms(specs, mp)
    np.testing.assert_allclose(analysis.spec, expected, atol=1e-5 * np.abs(expected).max())
    half = (expected * 0.5).astype(np.complex64)
    extra = rvc_reference.mirroring(half, analysis.high_end, mp)
    height = analysis.high_end.shape[1]
    want = rvc_reference.cmb_spectrogram_to_wave(half, mp, height, extra).T
    got = synthesise(half, p, high_end.mirror_high_end(half, analysis.high_end, p))
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_every_shipped_preset_loads():
    names = list_presets()
    assert len(names) == 26
    for name in names:
        preset = load_preset(name)
        assert sum(b.rows for b in preset.bands) <= preset.bins
    assert load_preset("4band_v4_ms_fullband").bins == 896  # 'n_bins' key
    assert load_preset("4band_v2").split_bin == 85


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("band"), "no 'band' table"),
        (lambda d: d["band"]["1"].update(res_type="magic"), "unknown res_type"),
        (lambda d: d["band"]["1"].update(crop_stop=5000), "does not fit n_fft"),
        (lambda d: d.update(bins="many"), "'bins' must be an integer"),
    ],
)
def test_broken_presets_are_refused_with_the_preset_named(tmp_path, change, message):
    data = json.loads((Path(__file__).parents[1] / "models" / "presets" / "4band_v2.json").read_text())
    change(data)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match=message) as err:
        load_preset(path)
    assert "broken" in str(err.value)


def test_unknown_preset_names_suggest_the_closest_shipped_ones():
    with pytest.raises(ModelError, match="did you mean 4band_v3, 4band_v2") as err:
        load_preset("4band_v9")
    assert "1band_sr16000_hl512" not in str(err.value)  # the closest few, not all 26
