"""MP3 and Ogg Vorbis output: the rates, channel counts and bitrates libsndfile can encode, and its settings."""

from __future__ import annotations

import re

import numpy as np

from uvr_cli.errors import UsageError
from uvr_cli.io.formats import FORMATS

_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
# Layer III bitrates (kbit/s) of MPEG-1 (32-48 kHz) and MPEG-2/2.5 (8-24 kHz).
_MPEG1_KBPS = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_MPEG2_KBPS = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
# libvorbis's nominal bitrates for 44.1 kHz stereo at quality 0, 1, ..., 10.
_VORBIS_KBPS = (64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 500)
_DEFAULT_OGG_KBPS = 320


def lossy_subtype(fmt: str, sample_rate: int, channels: int, bitrate: str | None) -> str:
    """libsndfile's subtype for mp3 or ogg, or UsageError when the format cannot store this audio or bitrate."""
    if fmt == "mp3" and channels > 2:
        raise UsageError(f"mp3 cannot store {channels} channels; choose wav, flac or ogg")
    if fmt == "mp3" and sample_rate not in _MP3_RATES:
        raise UsageError(
            f"mp3 cannot store {sample_rate} Hz audio (only {', '.join(map(str, _MP3_RATES))}); "
            "choose wav, flac or ogg, or another output sample rate"
        )
    lossy_settings(fmt, sample_rate, bitrate)
    subtype = FORMATS[fmt].lossy_subtype
    assert subtype is not None
    return subtype


def lossy_settings(fmt: str, sample_rate: int, bitrate: str | None) -> tuple[float, str | None]:
    """libsndfile's (compression_level, bitrate_mode) for a bitrate; UsageError for one the format cannot use.

    mp3: constant bitrate, exactly the one asked for (default: the highest at the rate, 320k from 32 kHz up).
    libsndfile maps compression c to int(top - c * (top - bottom)) kbit/s; c = 1 (the bottom rate) is refused
    while soundfile still has lame in VBR mode, hence the bottom rate is left out. ogg: Vorbis VBR at the quality
    whose nominal bitrate for 44.1 kHz stereo is the one asked for (default 320k, quality 9); libsndfile's
    quality is 1 - c.
    """
    kbps = None if bitrate is None else _parse_kbps(bitrate)
    if fmt == "mp3":
        bottom, top, table = (
            (32, 320, _MPEG1_KBPS)
            if sample_rate >= 32000
            else (8, 160, _MPEG2_KBPS)
            if sample_rate >= 16000
            else (8, 64, _MPEG2_KBPS)
        )
        allowed = [k for k in table if bottom < k <= top]
        kbps = top if kbps is None else kbps
        if kbps not in allowed:
            raise UsageError(
                f"mp3 at {sample_rate} Hz cannot use bitrate {bitrate}; "
                f"choose one of {', '.join(f'{k}k' for k in allowed)}"
            )
        return max(0.0, (top - kbps - 0.5) / (top - bottom)), "CONSTANT"  # +0.5: int() cannot fall a step short
    kbps = _DEFAULT_OGG_KBPS if kbps is None else kbps
    if not _VORBIS_KBPS[0] <= kbps <= _VORBIS_KBPS[-1]:
        raise UsageError(f"ogg cannot use bitrate {bitrate}; choose {_VORBIS_KBPS[0]}k to {_VORBIS_KBPS[-1]}k")
    quality = float(np.interp(kbps, _VORBIS_KBPS, np.arange(len(_VORBIS_KBPS)))) / 10
    return 1.0 - quality, None


def _parse_kbps(bitrate: str) -> int:
    """'320k' or '320000' (bit/s) as 320 kbit/s."""
    match = re.fullmatch(r"\s*(\d+)\s*([kK]?)\s*", bitrate)
    if match is None or (not match[2] and int(match[1]) % 1000):
        raise UsageError(f"bitrate '{bitrate}': give it in kbit/s, such as 320k")
    return int(match[1]) if match[2] else int(match[1]) // 1000
