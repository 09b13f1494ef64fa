"""`uvr_cli.compat.rvc`: RVC's AudioPre / AudioPreDeEcho driven the way RVC and GPT-SoVITS scripts drive them."""

from __future__ import annotations

import inspect
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, save_random_checkpoint, tone_mix
from uvr_cli.compat.rvc import NO_SAVE_ROOT, AudioPre, AudioPreDeEcho
from uvr_cli.engine.families.vr.nets import CascadedNetSpec
from uvr_cli.errors import AudioError, ModelError, UsageError

DEFAULT_MODEL = ROOT / "models" / "default.pth"  # CascadedASPPNet, 4band_v2 at 44.1 kHz, like RVC's HP2/HP5
RATE = 44100


def faded(audio: np.ndarray, seconds: float = 0.1) -> np.ndarray:
    """Fade in and out, as songs start and end: the engine's edges then carry no energy."""
    n = audio.shape[0]
    ramp = np.minimum(1.0, np.minimum(np.arange(n), n - 1 - np.arange(n)) / (seconds * RATE))
    return (audio * (ramp[:, None] if audio.ndim == 2 else ramp)).astype(np.float32)


def tones(seconds: float) -> np.ndarray:
    """Stereo tones well below the 4-band presets' cut-offs, (frames, 2) float32."""
    t = np.arange(int(seconds * RATE)) / RATE
    base = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1375 * t + 1.0)
    return np.stack([base, 0.7 * base], axis=1).astype(np.float32)


@pytest.fixture(scope="module")
def audio_pre() -> AudioPre:
    return AudioPre(agg=10, model_path=str(DEFAULT_MODEL), device="cpu", is_half=False)


def test_a_folder_loop_writes_rvcs_names_folders_rates_and_lengths(tmp_path, audio_pre):
    songs = tmp_path / "songs"
    songs.mkdir()
    stereo = faded(tones(1.0))
    sf.write(songs / "a.wav", stereo, RATE, subtype="FLOAT")
    mono = faded(tone_mix(0.5, RATE, channels=1, seed=2)[:, 0])
    sf.write(songs / "b.wav", mono, RATE, subtype="FLOAT")
    sf.write(songs / "c.flac", tone_mix(0.5, 48000, seed=3), 48000, subtype="PCM_16")
    vocal_root, ins_root = tmp_path / "opt" / "vocal", tmp_path / "opt" / "ins"  # not there yet: made, as RVC does

    for name in sorted(os.listdir(songs)):  # RVC's web UI loop: _path_audio_(path, save_root_ins, save_root_vocal, fmt)
        assert audio_pre._path_audio_(os.path.join(songs, name), str(ins_root), str(vocal_root), "wav") is None

    assert sorted(os.listdir(ins_root)) == [
        "instrument_a.wav_10.wav",
        "instrument_b.wav_10.wav",
        "instrument_c.flac_10.wav",
    ]
    assert sorted(os.listdir(vocal_root)) == ["vocal_a.wav_10.wav", "vocal_b.wav_10.wav", "vocal_c.flac_10.wav"]
    expected = {
        "a.wav": (RATE, 2, "FLOAT"),
        "b.wav": (RATE // 2, 1, "FLOAT"),
        "c.flac": (math.ceil(24000 * RATE / 48000), 2, "PCM_16"),
    }  # 48 kHz in: out at the model's 44.1 kHz
    for name, (frames, channels, subtype) in expected.items():
        for path in (ins_root / f"instrument_{name}_10.wav", vocal_root / f"vocal_{name}_10.wav"):
            info = sf.info(path)
            assert (info.samplerate, info.frames, info.channels, info.subtype) == (RATE, frames, channels, subtype)

    # The stems are the engine's, exactly: instrument_ holds the mask's stem (instrumental for this model).
    direct = audio_pre.separator.separate(mono, RATE)
    np.testing.assert_allclose(
        sf.read(ins_root / "instrument_b.wav_10.wav", dtype="float32")[0], direct["instrumental"][:, 0], atol=1e-6
    )
    np.testing.assert_allclose(
        sf.read(vocal_root / "vocal_b.wav_10.wav", dtype="float32")[0], direct["vocals"][:, 0], atol=1e-6
    )

    # vocals + instrumental give the input back: not bit for bit, because each band of the 4-band analysis is
    # cropped before the stems are synthesised (as in RVC; broadband content above the top band's cut-off is not
    # in either stem), but within -40 dB for a band-limited clip that fades in and out as songs do.
    total = sum(
        sf.read(root / f"{head}a.wav_10.wav", dtype="float32")[0]
        for root, head in ((ins_root, "instrument_"), (vocal_root, "vocal_"))
    )
    error = total - stereo
    assert np.abs(error).max() < 0.02
    assert 10 * np.log10(np.sum(stereo**2) / np.sum(error**2)) > 40


def test_is_hp3_swaps_the_names_and_keeps_the_folders(tmp_path, audio_pre):
    clip = tmp_path / "x.wav"
    sf.write(clip, faded(tone_mix(0.3, RATE, seed=4)), RATE, subtype="FLOAT")
    audio_pre._path_audio_(str(clip), str(tmp_path / "ins"), str(tmp_path / "voc"), "flac", is_hp3=True)
    audio_pre._path_audio_(str(clip), ins_root=str(tmp_path / "plain"), format="flac")  # one folder: one stem
    # RVC's is_hp3: the mask's stem still goes to ins_root, but is named vocal_ (HP3's mask keeps the voice).
    assert os.listdir(tmp_path / "ins") == ["vocal_x.wav_10.flac"]
    assert os.listdir(tmp_path / "voc") == ["instrument_x.wav_10.flac"]
    assert os.listdir(tmp_path / "plain") == ["instrument_x.wav_10.flac"]
    same, _ = sf.read(tmp_path / "plain" / "instrument_x.wav_10.flac")
    np.testing.assert_array_equal(sf.read(tmp_path / "ins" / "vocal_x.wav_10.flac")[0], same)


@pytest.fixture(scope="module")
def deecho_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random CascadedNet under RVC's De-Echo file name (RVC's rule: 4band_v3, 672 bins, mask = dry voice)."""
    folder = tmp_path_factory.mktemp("deecho")
    return save_random_checkpoint(folder / "VR-DeEchoNormal.pth", CascadedNetSpec(16, 128, 672), 672, seed=7)


def test_deecho_keeps_rvcs_argument_order_and_names(tmp_path, deecho_weights):
    pre = AudioPreDeEcho(agg=10, model_path=str(deecho_weights), device="cpu", is_half=False)
    song = faded(tone_mix(0.3, RATE, seed=5))
    sf.write(tmp_path / "s.wav", song, RATE, subtype="FLOAT")
    save_root_vocal, save_root_ins = tmp_path / "vocal", tmp_path / "ins"
    # RVC's web UI passes (inp_path, save_root_ins, save_root_vocal, format0) to both classes: for AudioPreDeEcho
    # that is vocal_root=save_root_ins, ins_root=save_root_vocal, so the dry voice lands in save_root_vocal.
    pre._path_audio_(str(tmp_path / "s.wav"), str(save_root_ins), str(save_root_vocal), "wav", is_hp3=True)
    assert os.listdir(save_root_vocal) == ["vocal_s.wav_10.wav"]
    assert os.listdir(save_root_ins) == ["instrument_s.wav_10.wav"]
    direct = pre.separator.separate(song, RATE)
    assert pre.separator.info.primary == "vocals"  # the mask keeps the dry voice
    np.testing.assert_allclose(
        sf.read(save_root_vocal / "vocal_s.wav_10.wav", dtype="float32")[0], direct["vocals"], atol=1e-6
    )


def test_wrong_family_bad_agg_and_unknown_files(tmp_path, ch16_weights, cascadednet_weights, deecho_weights):
    with pytest.raises(UsageError, match="agg 150"):
        AudioPre(150, str(DEFAULT_MODEL), "cpu", False)
    with pytest.raises(ModelError, match="load it with AudioPreDeEcho"):
        AudioPre(10, str(deecho_weights), "cpu", False)
    with pytest.raises(ModelError, match="need a preset with 1024 bins, but 4band_v2 has 672"):
        AudioPre(10, str(cascadednet_weights), "cpu", False)  # unknown: RVC's fixed preset is tried, and refused
    with pytest.raises(ModelError, match="load it with AudioPre,"):
        AudioPreDeEcho(10, str(DEFAULT_MODEL), "cpu", False)
    with pytest.raises(ModelError, match="no such model file"):
        AudioPre(10, str(tmp_path / "missing.pth"), "cpu", False)
    renamed = shutil.copy(ch16_weights, tmp_path / "mystery.pth")  # nothing tells its preset: RVC's 4band_v2
    assert AudioPre(10, str(renamed), "cpu", False).separator.info.setup == "band preset 4band_v2"


def test_refusals_leave_no_output(tmp_path, audio_pre):
    clip = tmp_path / "y.wav"
    sf.write(clip, tone_mix(0.2, RATE), RATE)
    assert audio_pre._path_audio_(str(clip)) == NO_SAVE_ROOT
    with pytest.raises(UsageError, match="format 'm4a'"):
        audio_pre._path_audio_(str(clip), str(tmp_path / "i"), str(tmp_path / "v"), "m4a")
    with pytest.raises(AudioError, match="nothere.wav"):
        audio_pre._path_audio_(str(tmp_path / "nothere.wav"), str(tmp_path / "i"), str(tmp_path / "v"), "wav")
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["y.wav"]


def test_signatures_are_rvcs():
    """Positional callers depend on the order, which differs between RVC's two classes."""
    for cls, roots in ((AudioPre, ["ins_root", "vocal_root"]), (AudioPreDeEcho, ["vocal_root", "ins_root"])):
        assert list(inspect.signature(cls).parameters) == ["agg", "model_path", "device", "is_half", "tta"]
        method = inspect.signature(cls._path_audio_).parameters
        assert list(method) == ["self", "music_file", *roots, "format", "is_hp3"]
        assert (method["format"].default, method["is_hp3"].default) == ("flac", False)
