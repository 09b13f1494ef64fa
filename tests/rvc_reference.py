"""An independent, test-only re-implementation of the reference UVR5 VR pipeline (RVC's UVR5 tab).

It follows the structure of RVC's ``infer/modules/uvr5/vr.py`` (AudioPre / AudioPreDeEcho
``_path_audio_``), ``infer/lib/uvr5_pack/utils.py`` (``make_padding``, ``inference``) and
``infer/lib/uvr5_pack/lib_v5/spec_utils.py``, written from the facts in
shared/docs/vr-reference.md §3 and §5.1, with the fixes the conformance references use:

* the synthesis buffers are zero-initialised (RVC allocates them with ``np.ndarray``, i.e. garbage);
* no int16 output: the stems stay float, as long as the pipeline makes them (it stops at the last frame's centre);
* the preset, the network and the stem label are given (RVC hard-codes 4band_v2 / 4band_v3 and a net).

The reference ran on librosa 0.9.2. Where 0.9.2 and the installed librosa could differ, the 0.9.2
behaviour is written out here (``resample``, ``load``); ``librosa.stft``/``istft`` are called with
every argument that matters given explicitly (centre, zero padding, periodic Hann, no length).

Only the networks come from uvr_cli (``uvr_cli.engine.checkpoint.load_network``): they are checked on their
own against the shared network vectors. Nothing here uses uvr_cli's spectral, resampling, inference
or separation code, so that a test comparing the two is a real cross-check.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import librosa
import numpy as np
import resampy
import samplerate
import scipy.signal
import soundfile as sf
import torch

from uvr_cli.engine.checkpoint import load_network
from uvr_cli.engine.nets import AsppNetSpec

WINDOW_SIZE = 512  # RVC's data["window_size"]; the CLI exposes it as --window


# --- ModelParameters (lib_v5/model_param_init.py) ----------------------------------------------------

def load_params(path: str | Path) -> dict:
    """A band preset as ModelParameters reads it: integer band keys, absent flags False, n_bins -> bins."""
    raw = json.loads(Path(path).read_text())
    param = dict(raw)
    param["band"] = {int(k): v for k, v in raw["band"].items()}
    for flag in ("mid_side", "mid_side_b", "mid_side_b2", "stereo_w", "stereo_n", "reverse"):
        param.setdefault(flag, False)
    if "n_bins" in param:
        param["bins"] = param["n_bins"]
    return param


# --- librosa 0.9.2 load/resample ----------------------------------------------------------------------

def fix_length(y: np.ndarray, size: int) -> np.ndarray:
    n = y.shape[-1]
    if n > size:
        return y[..., :size]
    if n < size:
        return np.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, size - n)], mode="constant")
    return y


def resample(y: np.ndarray, orig_sr: int, target_sr: int, res_type: str) -> np.ndarray:
    """librosa 0.9.2 ``resample(y, orig_sr=, target_sr=, res_type=)`` along the last axis."""
    if orig_sr == target_sr:
        return y
    ratio = float(target_sr) / orig_sr
    n_samples = int(np.ceil(y.shape[-1] * ratio))
    if res_type in ("scipy", "fft"):
        y_hat = scipy.signal.resample(y, n_samples, axis=-1)
    elif res_type == "polyphase":
        gcd = math.gcd(int(orig_sr), int(target_sr))
        y_hat = scipy.signal.resample_poly(y, int(target_sr) // gcd, int(orig_sr) // gcd, axis=-1)
    elif res_type in ("linear", "zero_order_hold", "sinc_best", "sinc_fastest", "sinc_medium"):
        # 0.9.2 hands libsamplerate all channels at once (frames x channels)
        y_hat = samplerate.resample(y.T, ratio, converter_type=res_type).T
    else:  # kaiser_best / kaiser_fast
        y_hat = resampy.resample(y, orig_sr, target_sr, filter=res_type, axis=-1)
    y_hat = fix_length(y_hat, n_samples)
    return np.asfortranarray(y_hat, dtype=y.dtype)


def load(path: str | Path, sr: int, res_type: str) -> np.ndarray:
    """librosa 0.9.2 ``load(path, sr=sr, mono=False, dtype=float32, res_type=res_type)`` (soundfile path)."""
    data, native_sr = sf.read(str(path), dtype="float32", always_2d=False)
    y = data.T  # (channels, frames), or (frames,) for a mono file
    return resample(y, native_sr, sr, res_type)


# --- spec_utils.py ------------------------------------------------------------------------------------

def stft(y: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    return librosa.stft(y, n_fft=n_fft, hop_length=hop_length, win_length=n_fft, window="hann",
                        center=True, pad_mode="constant")


def istft(spec: np.ndarray, hop_length: int) -> np.ndarray:
    n_fft = 2 * (spec.shape[0] - 1)
    return librosa.istft(spec, hop_length=hop_length, win_length=n_fft, n_fft=n_fft, window="hann",
                         center=True, length=None)


def wave_to_spectrogram(wave, hop_length, n_fft, mid_side=False, mid_side_b2=False, reverse=False):
    if reverse:
        left, right = np.flip(wave[0]), np.flip(wave[1])
    elif mid_side:
        left, right = np.add(wave[0], wave[1]) / 2, np.subtract(wave[0], wave[1])
    elif mid_side_b2:
        left, right = np.add(wave[1], wave[0] * 0.5), np.subtract(wave[0], wave[1] * 0.5)
    else:
        left, right = wave[0], wave[1]
    return np.asfortranarray([stft(np.asfortranarray(left), n_fft, hop_length),
                              stft(np.asfortranarray(right), n_fft, hop_length)])


def combine_spectrograms(specs: dict, mp: dict) -> np.ndarray:
    l = min(specs[d].shape[2] for d in specs)
    spec_c = np.zeros((2, mp["bins"] + 1, l), dtype=np.complex64)
    offset = 0
    bands_n = len(mp["band"])
    for d in range(1, bands_n + 1):
        bp = mp["band"][d]
        h = bp["crop_stop"] - bp["crop_start"]
        spec_c[:, offset:offset + h, :l] = specs[d][:, bp["crop_start"]:bp["crop_stop"], :l]
        offset += h
    if offset > mp["bins"]:
        raise ValueError("Too much bins")
    if mp["pre_filter_start"] > 0:
        if bands_n == 1:
            spec_c = fft_lp_filter(spec_c, mp["pre_filter_start"], mp["pre_filter_stop"])
        else:
            gp = 1
            for b in range(mp["pre_filter_start"] + 1, mp["pre_filter_stop"]):
                g = math.pow(10, -(b - mp["pre_filter_start"]) * (3.5 - gp) / 20.0)
                gp = g
                spec_c[:, b, :] *= g
    return np.asfortranarray(spec_c)


def fft_lp_filter(spec, bin_start, bin_stop):
    g = 1.0
    for b in range(bin_start, bin_stop):
        g -= 1 / (bin_stop - bin_start)
        spec[:, b, :] = g * spec[:, b, :]
    spec[:, bin_stop:, :] *= 0
    return spec


def fft_hp_filter(spec, bin_start, bin_stop):
    g = 1.0
    for b in range(bin_start, bin_stop, -1):
        g -= 1 / (bin_start - bin_stop)
        spec[:, b, :] = g * spec[:, b, :]
    spec[:, 0:bin_stop + 1, :] *= 0
    return spec


def mirroring(spec_m: np.ndarray, input_high_end: np.ndarray, mp: dict) -> np.ndarray:
    """RVC's "mirroring" high-end process (the only one its UVR5 tab uses)."""
    start = mp["pre_filter_start"]
    mirror = np.flip(np.abs(spec_m[:, start - 10 - input_high_end.shape[1]:start - 10, :]), 1)
    mirror = mirror * np.exp(1.0j * np.angle(input_high_end))
    return np.where(np.abs(input_high_end) <= np.abs(mirror), input_high_end, mirror)


def spectrogram_to_wave(spec, hop_length, mid_side, mid_side_b2, reverse):
    left = istft(np.asfortranarray(spec[0]), hop_length)
    right = istft(np.asfortranarray(spec[1]), hop_length)
    if reverse:
        return np.asfortranarray([np.flip(left), np.flip(right)])
    if mid_side:
        return np.asfortranarray([np.add(left, right / 2), np.subtract(left, right / 2)])
    if mid_side_b2:
        return np.asfortranarray([np.add(right / 1.25, 0.4 * left), np.subtract(left / 1.25, 0.4 * right)])
    return np.asfortranarray([left, right])


def cmb_spectrogram_to_wave(spec_m, mp, extra_bins_h=None, extra_bins=None):
    bands_n = len(mp["band"])
    flags = (mp["mid_side"], mp["mid_side_b2"], mp["reverse"])
    offset = 0
    wave = None
    for d in range(1, bands_n + 1):
        bp = mp["band"][d]
        # FIX (vr-reference.md §3.4): np.zeros, where RVC has the uninitialised np.ndarray
        spec_s = np.zeros((2, bp["n_fft"] // 2 + 1, spec_m.shape[2]), dtype=complex)
        h = bp["crop_stop"] - bp["crop_start"]
        spec_s[:, bp["crop_start"]:bp["crop_stop"], :] = spec_m[:, offset:offset + h, :]
        offset += h
        if d == bands_n:  # the top band
            if extra_bins_h:
                max_bin = bp["n_fft"] // 2
                spec_s[:, max_bin - extra_bins_h:max_bin, :] = extra_bins[:, :extra_bins_h, :]
            if bp["hpf_start"] > 0:
                spec_s = fft_hp_filter(spec_s, bp["hpf_start"], bp["hpf_stop"] - 1)
            top = spectrogram_to_wave(spec_s, bp["hl"], *flags)
            wave = top if bands_n == 1 else np.add(wave, top)
        else:
            sr = mp["band"][d + 1]["sr"]
            if d == 1:  # the lowest band
                spec_s = fft_lp_filter(spec_s, bp["lpf_start"], bp["lpf_stop"])
                wave = resample(spectrogram_to_wave(spec_s, bp["hl"], *flags), bp["sr"], sr, "sinc_fastest")
            else:  # a middle band
                spec_s = fft_hp_filter(spec_s, bp["hpf_start"], bp["hpf_stop"] - 1)
                spec_s = fft_lp_filter(spec_s, bp["lpf_start"], bp["lpf_stop"])
                wave2 = np.add(wave, spectrogram_to_wave(spec_s, bp["hl"], *flags))
                wave = resample(wave2, bp["sr"], sr, "scipy")
    return wave.T


# --- utils.py: make_padding / inference ---------------------------------------------------------------

def make_padding(width, cropsize, offset):
    left = offset
    roi_size = cropsize - left * 2
    if roi_size == 0:
        roi_size = cropsize
    right = roi_size - (width % roi_size) + left
    return left, right, roi_size


def predict(model, offset: int, x: np.ndarray, aggressiveness: dict | None, device: str = "cpu",
            is_half: bool = False) -> np.ndarray:
    """``model.predict(x, aggressiveness)`` for a batch of one window, as RVC's nets do it.

    CascadedASPPNet (nets_61968KB and siblings): ``mask ** (1+value/3)`` below split_bin and
    ``** (1+value)`` from it up (top replicated row included), times the input, offset trimmed.
    CascadedNet (nets_new): ``mask * x`` trimmed; aggressiveness is ignored.
    The mask is taken from the network unadjusted; the exponents are applied here. On a GPU RVC moves each
    window there and, with ``is_half``, runs the fp16 model on an fp16 window.
    """
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    if is_half:
        xt = xt.half()
    with torch.no_grad():
        mask = model.predict_mask(xt, None)  # trimmed by offset, replicate-padded top row
        if aggressiveness is not None:
            split, value = aggressiveness["split_bin"], aggressiveness["value"]
            mask = mask.clone()
            mask[:, :, :split] = torch.pow(mask[:, :, :split], 1 + value / 3)
            mask[:, :, split:] = torch.pow(mask[:, :, split:], 1 + value)
        pred = mask * xt[:, :, :, offset:-offset]
    return pred.float().cpu().numpy()


def inference(X_spec, model, offset, aggressiveness, tta, window_size=WINDOW_SIZE, device="cpu", is_half=False):
    def _execute(X_mag_pad, roi_size, n_window):
        preds = []
        for i in range(n_window):
            start = i * roi_size
            window = X_mag_pad[None, :, :, start:start + window_size]
            preds.append(predict(model, offset, window, aggressiveness, device, is_half)[0])
        return np.concatenate(preds, axis=2)

    X_mag = np.abs(X_spec)
    X_phase = np.angle(X_spec)
    coef = X_mag.max()
    X_mag_pre = X_mag / coef
    n_frame = X_mag_pre.shape[2]
    pad_l, pad_r, roi_size = make_padding(n_frame, window_size, offset)
    n_window = int(np.ceil(n_frame / roi_size))
    X_mag_pad = np.pad(X_mag_pre, ((0, 0), (0, 0), (pad_l, pad_r)), mode="constant")
    pred = _execute(X_mag_pad, roi_size, n_window)[:, :, :n_frame]
    if tta:
        pad_l += roi_size // 2
        pad_r += roi_size // 2
        n_window += 1
        X_mag_pad = np.pad(X_mag_pre, ((0, 0), (0, 0), (pad_l, pad_r)), mode="constant")
        pred_tta = _execute(X_mag_pad, roi_size, n_window)[:, :, roi_size // 2:][:, :, :n_frame]
        return (pred + pred_tta) * 0.5 * coef, X_mag, np.exp(1.0j * X_phase)
    return pred * coef, X_mag, np.exp(1.0j * X_phase)


# --- vr.py: AudioPre._path_audio_ -----------------------------------------------------------------------

class AudioPre:
    """RVC's AudioPre/AudioPreDeEcho with the preset and weights given; ``separate`` returns the stems."""

    def __init__(self, model_path: str | Path, params_path: str | Path, agg: float, tta: bool = False,
                 window_size: int = WINDOW_SIZE, device: str = "cpu", is_half: bool = False):
        self.mp = load_params(params_path)
        loaded = load_network(model_path, self.mp["bins"])
        self.model = loaded.module.eval().to(device)
        if is_half:
            self.model = self.model.half()
        self.device, self.is_half = device, is_half
        self.is_aspp = isinstance(loaded.spec, AsppNetSpec)
        self.offset = 128 if self.is_aspp else 64
        assert self.model.offset == self.offset
        self.agg = agg
        self.tta = tta
        self.window_size = window_size

    def separate(self, music_file: str | Path) -> dict[str, np.ndarray]:
        """{"primary": mask*mix, "other": mix - primary}, each (samples, 2) float64 at the preset's rate, as
        long as the pipeline makes them: it stops at the last frame's centre, up to a hop before the input's end."""
        mp = self.mp
        X_wave, X_spec_s = {}, {}
        bands_n = len(mp["band"])
        for d in range(bands_n, 0, -1):
            bp = mp["band"][d]
            if d == bands_n:
                X_wave[d] = load(music_file, bp["sr"], bp["res_type"])
                if X_wave[d].ndim == 1:
                    X_wave[d] = np.asfortranarray([X_wave[d], X_wave[d]])
                X_wave[d] = X_wave[d][:2]
            else:
                X_wave[d] = resample(X_wave[d + 1], mp["band"][d + 1]["sr"], bp["sr"], bp["res_type"])
            X_spec_s[d] = wave_to_spectrogram(X_wave[d], bp["hl"], bp["n_fft"],
                                              mp["mid_side"], mp["mid_side_b2"], mp["reverse"])
            if d == bands_n:  # high_end_process "mirroring"
                input_high_end_h = (bp["n_fft"] // 2 - bp["crop_stop"]) + (
                    mp["pre_filter_stop"] - mp["pre_filter_start"])
                input_high_end = X_spec_s[d][:, bp["n_fft"] // 2 - input_high_end_h:bp["n_fft"] // 2, :]

        X_spec_m = combine_spectrograms(X_spec_s, mp)
        aggressiveness = None
        if self.is_aspp:  # nets_new.CascadedNet.predict ignores it
            aggressiveness = {"value": float(self.agg / 100), "split_bin": mp["band"][1]["crop_stop"]}
        pred, X_mag, X_phase = inference(X_spec_m, self.model, self.offset, aggressiveness, self.tta,
                                         self.window_size, self.device, self.is_half)
        y_spec_m = pred * X_phase
        v_spec_m = X_spec_m - y_spec_m

        out = {}
        for stem, spec in (("primary", y_spec_m), ("other", v_spec_m)):
            extra = mirroring(spec, input_high_end, mp)
            wave = cmb_spectrogram_to_wave(spec, mp, input_high_end_h, extra)
            out[stem] = np.asarray(wave, dtype=np.float64)  # (samples, 2)
        return out
