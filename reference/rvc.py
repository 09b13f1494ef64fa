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

The networks are written out too, from the facts in vr-reference.md §1-§2 (lib_v5 ``layers.py``/``nets.py`` and
their 7-branch and GUI-only 6-branch/enc5 siblings; ``layers_new.py``/``nets_new.py``), with RVC's eval-mode
``forward``/``predict``. Nothing here imports uvr_cli, so a test comparing the two is a real cross-check;
test_conformance.py checks this file against the reference outputs of the original code (shared/conformance).
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
import torch.nn.functional as F
from torch import nn

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
    return librosa.stft(
        y, n_fft=n_fft, hop_length=hop_length, win_length=n_fft, window="hann", center=True, pad_mode="constant"
    )


def istft(spec: np.ndarray, hop_length: int) -> np.ndarray:
    n_fft = 2 * (spec.shape[0] - 1)
    return librosa.istft(
        spec, hop_length=hop_length, win_length=n_fft, n_fft=n_fft, window="hann", center=True, length=None
    )


def wave_to_spectrogram(wave, hop_length, n_fft, mid_side=False, mid_side_b2=False, reverse=False):
    if reverse:
        left, right = np.flip(wave[0]), np.flip(wave[1])
    elif mid_side:
        left, right = np.add(wave[0], wave[1]) / 2, np.subtract(wave[0], wave[1])
    elif mid_side_b2:
        left, right = np.add(wave[1], wave[0] * 0.5), np.subtract(wave[0], wave[1] * 0.5)
    else:
        left, right = wave[0], wave[1]
    return np.asfortranarray(
        [stft(np.asfortranarray(left), n_fft, hop_length), stft(np.asfortranarray(right), n_fft, hop_length)]
    )


def combine_spectrograms(specs: dict, mp: dict) -> np.ndarray:
    n_frames = min(specs[d].shape[2] for d in specs)
    spec_c = np.zeros((2, mp["bins"] + 1, n_frames), dtype=np.complex64)
    offset = 0
    bands_n = len(mp["band"])
    for d in range(1, bands_n + 1):
        bp = mp["band"][d]
        h = bp["crop_stop"] - bp["crop_start"]
        spec_c[:, offset : offset + h, :n_frames] = specs[d][:, bp["crop_start"] : bp["crop_stop"], :n_frames]
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
    spec[:, 0 : bin_stop + 1, :] *= 0
    return spec


def mirroring(spec_m: np.ndarray, input_high_end: np.ndarray, mp: dict) -> np.ndarray:
    """RVC's "mirroring" high-end process (the only one its UVR5 tab uses)."""
    start = mp["pre_filter_start"]
    mirror = np.flip(np.abs(spec_m[:, start - 10 - input_high_end.shape[1] : start - 10, :]), 1)
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
        spec_s[:, bp["crop_start"] : bp["crop_stop"], :] = spec_m[:, offset : offset + h, :]
        offset += h
        if d == bands_n:  # the top band
            if extra_bins_h:
                max_bin = bp["n_fft"] // 2
                spec_s[:, max_bin - extra_bins_h : max_bin, :] = extra_bins[:, :extra_bins_h, :]
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


# --- the networks: lib_v5 layers.py/nets.py (CascadedASPPNet) and layers_new.py/nets_new.py (CascadedNet) ---


class Conv2DBNActiv(nn.Module):
    def __init__(self, nin, nout, ksize=3, stride=1, pad=1, dilation=1, activ=nn.ReLU):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(nin, nout, ksize, stride, pad, dilation, bias=False), nn.BatchNorm2d(nout), activ()
        )

    def forward(self, x):
        return self.conv(x)


class SeperableConv2DBNActiv(nn.Module):
    def __init__(self, nin, nout, ksize=3, stride=1, pad=1, dilation=1, activ=nn.ReLU):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(nin, nin, ksize, stride, pad, dilation, groups=nin, bias=False),
            nn.Conv2d(nin, nout, 1, bias=False),
            nn.BatchNorm2d(nout),
            activ(),
        )

    def forward(self, x):
        return self.conv(x)


def crop_center(h1, h2):
    """h1's time axis cut to h2's width, centred."""
    if h1.size(3) == h2.size(3):
        return h1
    if h1.size(3) < h2.size(3):
        raise ValueError("h1 is narrower than h2")
    start = (h1.size(3) - h2.size(3)) // 2
    return h1[:, :, :, start : start + h2.size(3)]


class EncoderV4(nn.Module):
    """The skip is conv1's output, before conv2 strides."""

    def __init__(self, nin, nout, ksize, stride, pad):
        super().__init__()
        self.conv1 = Conv2DBNActiv(nin, nout, ksize, 1, pad, activ=nn.LeakyReLU)
        self.conv2 = Conv2DBNActiv(nout, nout, ksize, stride, pad, activ=nn.LeakyReLU)

    def forward(self, x):
        skip = self.conv1(x)
        return self.conv2(skip), skip


class DecoderV4(nn.Module):
    def __init__(self, nin, nout, ksize=3, stride=1, pad=1):
        super().__init__()
        self.conv = Conv2DBNActiv(nin, nout, ksize, 1, pad)

    def forward(self, x, skip=None):
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        if skip is not None:
            x = torch.cat([x, crop_center(skip, x)], dim=1)
        return self.conv(x)


class ASPPModuleV4(nn.Module):
    """5 branches (layers.py), 6 (the GUI's 129605) or 7 (layers_33966KB.py); every extra branch uses dilations[2]."""

    def __init__(self, nin, nout, dilations=(4, 8, 16), branches=5):
        super().__init__()
        self.conv1 = nn.Sequential(nn.AdaptiveAvgPool2d((1, None)), Conv2DBNActiv(nin, nin, 1, 1, 0))
        self.conv2 = Conv2DBNActiv(nin, nin, 1, 1, 0)
        self.conv3 = SeperableConv2DBNActiv(nin, nin, 3, 1, dilations[0], dilations[0])
        self.conv4 = SeperableConv2DBNActiv(nin, nin, 3, 1, dilations[1], dilations[1])
        self.conv5 = SeperableConv2DBNActiv(nin, nin, 3, 1, dilations[2], dilations[2])
        self.extra = [f"conv{i}" for i in range(6, branches + 1)]
        for name in self.extra:
            setattr(self, name, SeperableConv2DBNActiv(nin, nin, 3, 1, dilations[2], dilations[2]))
        self.bottleneck = nn.Sequential(Conv2DBNActiv(nin * branches, nout, 1, 1, 0), nn.Dropout2d(0.1))

    def forward(self, x):
        _, _, h, w = x.size()
        feat1 = F.interpolate(self.conv1(x), size=(h, w), mode="bilinear", align_corners=True)
        feats = [feat1, self.conv2(x), self.conv3(x), self.conv4(x), self.conv5(x)]
        feats += [getattr(self, name)(x) for name in self.extra]
        return self.bottleneck(torch.cat(feats, dim=1))


class BaseASPPNet(nn.Module):
    def __init__(self, nin, ch, branches=5, enc5=False):
        super().__init__()
        self.enc1 = EncoderV4(nin, ch, 3, 2, 1)
        self.enc2 = EncoderV4(ch, ch * 2, 3, 2, 1)
        self.enc3 = EncoderV4(ch * 2, ch * 4, 3, 2, 1)
        self.enc4 = EncoderV4(ch * 4, ch * 8, 3, 2, 1)
        self.has_enc5 = enc5
        if enc5:
            self.enc5 = EncoderV4(ch * 8, ch * 16, 3, 2, 1)
            self.aspp = ASPPModuleV4(ch * 16, ch * 32, branches=branches)
            self.dec5 = DecoderV4(ch * (16 + 32), ch * 16, 3, 1, 1)
        else:
            self.aspp = ASPPModuleV4(ch * 8, ch * 16, branches=branches)
        self.dec4 = DecoderV4(ch * (8 + 16), ch * 8, 3, 1, 1)
        self.dec3 = DecoderV4(ch * (4 + 8), ch * 4, 3, 1, 1)
        self.dec2 = DecoderV4(ch * (2 + 4), ch * 2, 3, 1, 1)
        self.dec1 = DecoderV4(ch * (1 + 2), ch, 3, 1, 1)

    def forward(self, x):
        h, e1 = self.enc1(x)
        h, e2 = self.enc2(h)
        h, e3 = self.enc3(h)
        h, e4 = self.enc4(h)
        if self.has_enc5:
            h, e5 = self.enc5(h)
            h = self.dec5(self.aspp(h), e5)
        else:
            h = self.aspp(h)
        h = self.dec4(h, e4)
        h = self.dec3(h, e3)
        h = self.dec2(h, e2)
        return self.dec1(h, e1)


class CascadedASPPNet(nn.Module):
    """RVC's nets_61968KB and siblings, eval path: aggressiveness inside, ``mask * mix`` out."""

    offset = 128

    def __init__(self, n_fft, ch=16, branches=5, enc5=False):
        super().__init__()
        self.stg1_low_band_net = BaseASPPNet(2, ch, branches, enc5)
        self.stg1_high_band_net = BaseASPPNet(2, ch, branches, enc5)
        self.stg2_bridge = Conv2DBNActiv(ch + 2, ch // 2, 1, 1, 0)
        self.stg2_full_band_net = BaseASPPNet(ch // 2, ch, branches, enc5)
        self.stg3_bridge = Conv2DBNActiv(2 * ch + 2, ch, 1, 1, 0)
        self.stg3_full_band_net = BaseASPPNet(ch, 2 * ch, branches, enc5)
        self.out = nn.Conv2d(2 * ch, 2, 1, bias=False)
        self.aux1_out = nn.Conv2d(ch, 2, 1, bias=False)
        self.aux2_out = nn.Conv2d(ch, 2, 1, bias=False)
        self.max_bin = n_fft // 2
        self.output_bin = n_fft // 2 + 1

    def forward(self, x, aggressiveness=None):
        mix = x.detach()
        x = x.clone()[:, :, : self.max_bin]
        bandw = x.size(2) // 2
        aux1 = torch.cat([self.stg1_low_band_net(x[:, :, :bandw]), self.stg1_high_band_net(x[:, :, bandw:])], dim=2)
        aux2 = self.stg2_full_band_net(self.stg2_bridge(torch.cat([x, aux1], dim=1)))
        h = self.stg3_full_band_net(self.stg3_bridge(torch.cat([x, aux1, aux2], dim=1)))
        mask = torch.sigmoid(self.out(h))
        mask = F.pad(mask, (0, 0, 0, self.output_bin - mask.size(2)), mode="replicate")
        if aggressiveness:
            split, value = aggressiveness["split_bin"], aggressiveness["value"]
            mask[:, :, :split] = torch.pow(mask[:, :, :split], 1 + value / 3)
            mask[:, :, split:] = torch.pow(mask[:, :, split:], 1 + value)
        return mask * mix

    def predict(self, x_mag, aggressiveness=None):
        return self.forward(x_mag, aggressiveness)[:, :, :, self.offset : -self.offset]


class EncoderV51(nn.Module):
    """The stride is on conv1; no skip is returned."""

    def __init__(self, nin, nout, ksize=3, stride=1, pad=1):
        super().__init__()
        self.conv1 = Conv2DBNActiv(nin, nout, ksize, stride, pad, activ=nn.LeakyReLU)
        self.conv2 = Conv2DBNActiv(nout, nout, ksize, 1, pad, activ=nn.LeakyReLU)

    def forward(self, x):
        return self.conv2(self.conv1(x))


class DecoderV51(nn.Module):
    def __init__(self, nin, nout, ksize=3, stride=1, pad=1):
        super().__init__()
        self.conv1 = Conv2DBNActiv(nin, nout, ksize, 1, pad)

    def forward(self, x, skip=None):
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        if skip is not None:
            x = torch.cat([x, crop_center(skip, x)], dim=1)
        return self.conv1(x)


class ASPPModuleV51(nn.Module):
    """Full (not separable) 3x3 branches with (frequency, time) dilations; the dropout is inactive in eval."""

    def __init__(self, nin, nout, dilations):
        super().__init__()
        self.conv1 = nn.Sequential(nn.AdaptiveAvgPool2d((1, None)), Conv2DBNActiv(nin, nout, 1, 1, 0))
        self.conv2 = Conv2DBNActiv(nin, nout, 1, 1, 0)
        self.conv3 = Conv2DBNActiv(nin, nout, 3, 1, dilations[0], dilations[0])
        self.conv4 = Conv2DBNActiv(nin, nout, 3, 1, dilations[1], dilations[1])
        self.conv5 = Conv2DBNActiv(nin, nout, 3, 1, dilations[2], dilations[2])
        self.bottleneck = Conv2DBNActiv(nout * 5, nout, 1, 1, 0)
        self.dropout = nn.Dropout2d(0.1)

    def forward(self, x):
        _, _, h, w = x.size()
        feat1 = F.interpolate(self.conv1(x), size=(h, w), mode="bilinear", align_corners=True)
        out = torch.cat([feat1, self.conv2(x), self.conv3(x), self.conv4(x), self.conv5(x)], dim=1)
        return self.dropout(self.bottleneck(out))


class LSTMModule(nn.Module):
    def __init__(self, nin_conv, nin_lstm, nout_lstm):
        super().__init__()
        self.conv = Conv2DBNActiv(nin_conv, 1, 1, 1, 0)
        self.lstm = nn.LSTM(input_size=nin_lstm, hidden_size=nout_lstm // 2, bidirectional=True)
        self.dense = nn.Sequential(nn.Linear(nout_lstm, nin_lstm), nn.BatchNorm1d(nin_lstm), nn.ReLU())

    def forward(self, x):
        n, _, nbins, nframes = x.size()
        h = self.conv(x)[:, 0].permute(2, 0, 1)  # (frames, N, bins): the LSTM runs over time
        h, _ = self.lstm(h)
        h = self.dense(h.reshape(-1, h.size(-1)))
        return h.reshape(nframes, n, 1, nbins).permute(1, 2, 3, 0)


class BaseNet(nn.Module):
    def __init__(self, nin, nout, nin_lstm, nout_lstm, dilations=((4, 2), (8, 4), (12, 6))):
        super().__init__()
        self.enc1 = Conv2DBNActiv(nin, nout, 3, 1, 1)
        self.enc2 = EncoderV51(nout, nout * 2, 3, 2, 1)
        self.enc3 = EncoderV51(nout * 2, nout * 4, 3, 2, 1)
        self.enc4 = EncoderV51(nout * 4, nout * 6, 3, 2, 1)
        self.enc5 = EncoderV51(nout * 6, nout * 8, 3, 2, 1)
        self.aspp = ASPPModuleV51(nout * 8, nout * 8, dilations)
        self.dec4 = DecoderV51(nout * (6 + 8), nout * 6, 3, 1, 1)
        self.dec3 = DecoderV51(nout * (4 + 6), nout * 4, 3, 1, 1)
        self.dec2 = DecoderV51(nout * (2 + 4), nout * 2, 3, 1, 1)
        self.lstm_dec2 = LSTMModule(nout * 2, nin_lstm, nout_lstm)
        self.dec1 = DecoderV51(nout * (1 + 2) + 1, nout, 3, 1, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        e4 = self.enc4(e3)
        h = self.aspp(self.enc5(e4))
        h = self.dec4(h, e4)
        h = self.dec3(h, e3)
        h = self.dec2(h, e2)
        h = torch.cat([h, self.lstm_dec2(h)], dim=1)
        return self.dec1(h, e1)


class CascadedNet(nn.Module):
    """nets_new.CascadedNet, eval path: ``predict`` ignores aggressiveness."""

    offset = 64

    def __init__(self, n_fft, nout=32, nout_lstm=128):
        super().__init__()
        self.max_bin = n_fft // 2
        self.output_bin = n_fft // 2 + 1
        nin_lstm = self.max_bin // 2
        self.stg1_low_band_net = nn.Sequential(
            BaseNet(2, nout // 2, nin_lstm // 2, nout_lstm), Conv2DBNActiv(nout // 2, nout // 4, 1, 1, 0)
        )
        self.stg1_high_band_net = BaseNet(2, nout // 4, nin_lstm // 2, nout_lstm // 2)
        self.stg2_low_band_net = nn.Sequential(
            BaseNet(nout // 4 + 2, nout, nin_lstm // 2, nout_lstm), Conv2DBNActiv(nout, nout // 2, 1, 1, 0)
        )
        self.stg2_high_band_net = BaseNet(nout // 4 + 2, nout // 2, nin_lstm // 2, nout_lstm // 2)
        self.stg3_full_band_net = BaseNet(3 * nout // 4 + 2, nout, nin_lstm, nout_lstm)
        self.out = nn.Conv2d(nout, 2, 1, bias=False)
        self.aux_out = nn.Conv2d(3 * nout // 4, 2, 1, bias=False)

    def forward(self, x):
        x = x[:, :, : self.max_bin]
        bandw = x.size(2) // 2
        l1_in, h1_in = x[:, :, :bandw], x[:, :, bandw:]
        l1, h1 = self.stg1_low_band_net(l1_in), self.stg1_high_band_net(h1_in)
        aux1 = torch.cat([l1, h1], dim=2)
        l2 = self.stg2_low_band_net(torch.cat([l1_in, l1], dim=1))
        h2 = self.stg2_high_band_net(torch.cat([h1_in, h1], dim=1))
        aux2 = torch.cat([l2, h2], dim=2)
        mask = torch.sigmoid(self.out(self.stg3_full_band_net(torch.cat([x, aux1, aux2], dim=1))))
        return F.pad(mask, (0, 0, 0, self.output_bin - mask.size(2)), mode="replicate")

    def predict_mask(self, x):
        return self.forward(x)[:, :, :, self.offset : -self.offset]

    def predict(self, x_mag, aggressiveness=None):
        return (x_mag * self.forward(x_mag))[:, :, :, self.offset : -self.offset]


def load_model(path: str | Path, bins: int) -> nn.Module:
    """The network in a UVR5 weight file, in eval mode (RVC: ``torch.load`` then ``load_state_dict``)."""
    return model_for_state(torch.load(path, map_location="cpu", weights_only=True), bins)


def model_for_state(state: dict, bins: int) -> nn.Module:
    """The network a UVR5 state dict describes, loaded strictly and upcast to float32, in eval mode.

    The family and capacity come from the weights' shapes (vr-reference.md §2.5) where RVC goes by the file name.
    """
    if "stg2_bridge.conv.0.weight" in state:
        ch = state["stg1_low_band_net.enc1.conv1.conv.0.weight"].shape[0]
        branches = 5 + sum(f"stg1_low_band_net.aspp.conv{i}.conv.0.weight" in state for i in (6, 7))
        model = CascadedASPPNet(2 * bins, ch, branches, "stg1_low_band_net.enc5.conv1.conv.0.weight" in state)
    else:
        nout = state["out.weight"].shape[1]
        nout_lstm = 2 * state["stg3_full_band_net.lstm_dec2.lstm.weight_hh_l0"].shape[1]
        model = CascadedNet(2 * bins, nout, nout_lstm)
    model.load_state_dict(state)  # strict; copying into the float32 parameters upcasts fp16 files
    return model.eval()


# --- utils.py: make_padding / inference ---------------------------------------------------------------


def make_padding(width, cropsize, offset):
    left = offset
    roi_size = cropsize - left * 2
    if roi_size == 0:
        roi_size = cropsize
    right = roi_size - (width % roi_size) + left
    return left, right, roi_size


def predict(
    model, x: np.ndarray, aggressiveness: dict | None, device: str = "cpu", is_half: bool = False
) -> np.ndarray:
    """``model.predict(x, aggressiveness)`` for a batch of one window. On a GPU RVC moves each window there and,
    with ``is_half``, runs the fp16 model on an fp16 window."""
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    if is_half:
        xt = xt.half()
    with torch.no_grad():
        pred = model.predict(xt, aggressiveness)
    return pred.float().cpu().numpy()


def inference(X_spec, model, aggressiveness, tta, window_size=WINDOW_SIZE, device="cpu", is_half=False):
    def _execute(X_mag_pad, roi_size, n_window):
        preds = []
        for i in range(n_window):
            start = i * roi_size
            window = X_mag_pad[None, :, :, start : start + window_size]
            preds.append(predict(model, window, aggressiveness, device, is_half)[0])
        return np.concatenate(preds, axis=2)

    X_mag = np.abs(X_spec)
    X_phase = np.angle(X_spec)
    coef = X_mag.max()
    X_mag_pre = X_mag / coef
    n_frame = X_mag_pre.shape[2]
    pad_l, pad_r, roi_size = make_padding(n_frame, window_size, model.offset)
    n_window = int(np.ceil(n_frame / roi_size))
    X_mag_pad = np.pad(X_mag_pre, ((0, 0), (0, 0), (pad_l, pad_r)), mode="constant")
    pred = _execute(X_mag_pad, roi_size, n_window)[:, :, :n_frame]
    if tta:
        pad_l += roi_size // 2
        pad_r += roi_size // 2
        n_window += 1
        X_mag_pad = np.pad(X_mag_pre, ((0, 0), (0, 0), (pad_l, pad_r)), mode="constant")
        pred_tta = _execute(X_mag_pad, roi_size, n_window)[:, :, roi_size // 2 :][:, :, :n_frame]
        return (pred + pred_tta) * 0.5 * coef, X_mag, np.exp(1.0j * X_phase)
    return pred * coef, X_mag, np.exp(1.0j * X_phase)


# --- vr.py: AudioPre._path_audio_ -----------------------------------------------------------------------


class AudioPre:
    """RVC's AudioPre/AudioPreDeEcho with the preset and weights given; ``separate`` returns the stems."""

    def __init__(
        self,
        model_path: str | Path,
        params_path: str | Path,
        agg: float,
        tta: bool = False,
        window_size: int = WINDOW_SIZE,
        device: str = "cpu",
        is_half: bool = False,
    ):
        self.mp = load_params(params_path)
        self.model = load_model(model_path, self.mp["bins"]).to(device)
        if is_half:
            self.model = self.model.half()
        self.device, self.is_half = device, is_half
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
            X_spec_s[d] = wave_to_spectrogram(
                X_wave[d], bp["hl"], bp["n_fft"], mp["mid_side"], mp["mid_side_b2"], mp["reverse"]
            )
            if d == bands_n:  # high_end_process "mirroring"
                input_high_end_h = (bp["n_fft"] // 2 - bp["crop_stop"]) + (
                    mp["pre_filter_stop"] - mp["pre_filter_start"]
                )
                input_high_end = X_spec_s[d][:, bp["n_fft"] // 2 - input_high_end_h : bp["n_fft"] // 2, :]

        X_spec_m = combine_spectrograms(X_spec_s, mp)
        aggressiveness = None
        if isinstance(self.model, CascadedASPPNet):  # nets_new.CascadedNet.predict ignores it
            aggressiveness = {"value": float(self.agg / 100), "split_bin": mp["band"][1]["crop_stop"]}
        pred, _, X_phase = inference(
            X_spec_m, self.model, aggressiveness, self.tta, self.window_size, self.device, self.is_half
        )
        y_spec_m = pred * X_phase
        v_spec_m = X_spec_m - y_spec_m

        out = {}
        for stem, spec in (("primary", y_spec_m), ("other", v_spec_m)):
            extra = mirroring(spec, input_high_end, mp)
            wave = cmb_spectrogram_to_wave(spec, mp, input_high_end_h, extra)
            out[stem] = np.asarray(wave, dtype=np.float64)  # (samples, 2)
        return out
