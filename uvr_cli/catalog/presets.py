"""Band presets: the UVR5 `modelparams` JSON files that say how audio is split into frequency bands."""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from uvr_cli.errors import ModelError

KNOWN_RESAMPLERS = frozenset(
    {
        "polyphase",
        "kaiser_fast",
        "kaiser_best",
        "sinc_fastest",
        "sinc_medium",
        "sinc_best",
        "scipy",
        "fft",
        "linear",
        "zero_order_hold",
    }
)


@dataclass(frozen=True)
class Band:
    """One band of the pyramid: its rate, STFT size, the rows it contributes and its synthesis ramps."""

    sr: int
    hl: int
    n_fft: int
    crop_start: int
    crop_stop: int
    res_type: str
    lpf_start: int | None = None
    lpf_stop: int | None = None
    hpf_start: int | None = None
    hpf_stop: int | None = None
    convert_channels: str | None = None

    @property
    def rows(self) -> int:
        """Rows of the combined spectrogram this band fills."""
        return self.crop_stop - self.crop_start


@dataclass(frozen=True)
class BandPreset:
    """A whole band configuration (UVR's ModelParameters), validated on load."""

    name: str
    bins: int
    sr: int
    pre_filter_start: int
    pre_filter_stop: int
    bands: tuple[Band, ...]
    mid_side: bool = False
    mid_side_b2: bool = False
    reverse: bool = False

    @property
    def top(self) -> Band:
        return self.bands[-1]

    @property
    def split_bin(self) -> int:
        """Row where aggressiveness switches from the gentle to the strong exponent (RVC: band 1's crop_stop)."""
        return self.bands[0].crop_stop

    @property
    def high_end_rows(self) -> int:
        """Rows of the top band that high-end processing replaces (reference §3.6)."""
        return (self.top.n_fft // 2 - self.top.crop_stop) + (self.pre_filter_stop - self.pre_filter_start)


def _presets_dir() -> Path:
    return Path(str(resources.files("uvr_models") / "presets"))


def list_presets() -> list[str]:
    """Names of the shipped presets, e.g. '4band_v2'."""
    return sorted(p.stem for p in _presets_dir().glob("*.json"))


def presets_with_bins(bins: int) -> list[str]:
    """Shipped presets whose spectrogram has `bins` rows: the candidates for weights that fix their bin count."""
    return [name for name in list_presets() if load_preset(name).bins == bins]


def params_hint(bins: int | None) -> str:
    """The --params suggestion for weights that fix their bin count (None: they do not, any preset may fit)."""
    names = presets_with_bins(bins) if bins else []
    return f"one of the presets with {bins} bins: {', '.join(names)}" if names else "e.g. 4band_v2"


def closest_presets(name: str, limit: int = 3) -> list[str]:
    """Shipped preset names that look like `name` (difflib), best first: for "did you mean" in errors."""
    return difflib.get_close_matches(name, list_presets(), n=limit, cutoff=0.5)


def describe_preset(preset: BandPreset) -> dict:
    """What `uvr presets` shows: the model's rate, band count, bins and each band's hop length and rate."""
    return {
        "name": preset.name,
        "sample_rate": preset.sr,
        "bands": len(preset.bands),
        "bins": preset.bins,
        "hop": [band.hl for band in preset.bands],
        "band_rates": [band.sr for band in preset.bands],
    }


def _int(value: object, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ModelError(f"{where}: '{key}' must be an integer, got {value!r}")
    return value


def preset_from_dict(data: dict, name: str) -> BandPreset:
    """Validate parsed preset JSON and build a BandPreset; errors name the preset and the key."""
    if not isinstance(data, dict) or not isinstance(data.get("band"), dict) or not data["band"]:
        raise ModelError(f"preset {name}: no 'band' table")
    bins = data.get("bins", data.get("n_bins"))
    bins = _int(bins, "bins", f"preset {name}")
    bands = []
    for index in range(1, len(data["band"]) + 1):
        raw = data["band"].get(str(index))
        where = f"preset {name} band {index}"
        if not isinstance(raw, dict):
            raise ModelError(f"{where}: missing (bands must be numbered 1..{len(data['band'])})")
        fields = {k: _int(raw.get(k), k, where) for k in ("sr", "hl", "n_fft", "crop_start", "crop_stop")}
        res_type = raw.get("res_type", "kaiser_best")
        if res_type not in KNOWN_RESAMPLERS:
            raise ModelError(f"{where}: unknown res_type {res_type!r}")
        optional = {k: _int(raw[k], k, where) for k in ("lpf_start", "lpf_stop", "hpf_start", "hpf_stop") if k in raw}
        band = Band(res_type=res_type, convert_channels=raw.get("convert_channels"), **fields, **optional)
        if not 0 <= band.crop_start < band.crop_stop <= band.n_fft // 2 + 1:
            raise ModelError(f"{where}: crop {band.crop_start}-{band.crop_stop} does not fit n_fft {band.n_fft}")
        bands.append(band)
    rows = sum(b.rows for b in bands)
    if rows > bins:
        raise ModelError(f"preset {name}: the bands fill {rows} rows but bins is {bins}")
    for lower, upper in zip(bands, bands[1:]):
        if lower.sr > upper.sr:
            raise ModelError(f"preset {name}: band rates must not decrease ({lower.sr} then {upper.sr})")
    for band in bands[:-1]:
        if band.lpf_start is None or band.lpf_stop is None:
            raise ModelError(f"preset {name}: every band below the top needs lpf_start/lpf_stop")
    for band in bands[1:]:
        if band.hpf_start is None or band.hpf_stop is None:
            raise ModelError(f"preset {name}: every band above the first needs hpf_start/hpf_stop")
    return BandPreset(
        name=name,
        bins=bins,
        sr=_int(data.get("sr"), "sr", f"preset {name}"),
        pre_filter_start=_int(data.get("pre_filter_start"), "pre_filter_start", f"preset {name}"),
        pre_filter_stop=_int(data.get("pre_filter_stop"), "pre_filter_stop", f"preset {name}"),
        bands=tuple(bands),
        mid_side=bool(data.get("mid_side", False)),
        mid_side_b2=bool(data.get("mid_side_b2", False)),
        reverse=bool(data.get("reverse", False)),
    )


def load_preset(name_or_path: str | os.PathLike) -> BandPreset:
    """Load a shipped preset by name ('4band_v2') or any preset JSON file by path."""
    text = str(name_or_path)
    shipped = _presets_dir() / f"{text.removesuffix('.json')}.json"
    path = shipped if shipped.is_file() and os.sep not in text else Path(text)
    if not path.is_file():
        close = closest_presets(text.removesuffix(".json"))
        hint = (
            f"did you mean {', '.join(close[:-1]) + ' or ' if close[1:] else ''}{close[-1]}?"
            if close
            else "not a shipped preset nor a file"
        )
        raise ModelError(f"unknown preset {text!r}: {hint} (`uvr presets` lists the {len(list_presets())} presets)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"preset {path}: cannot read it as JSON ({exc})") from None
    return preset_from_dict(data, path.stem)
