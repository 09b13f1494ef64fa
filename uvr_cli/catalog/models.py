"""Known UVR5 models (VR, MDX-Net, MDX23C and RoFormer), the local model cache, and finding a model in it.

The catalogue is data (the "models" list of models/registry.json); `UVR_CATALOG` names another JSON file with a
"models" list to use instead (a mirror, or a test server). download.py fetches its entries into the cache.
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.parse
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from uvr_cli.catalog.registry import registry
from uvr_cli.catalog.scores import published_scores
from uvr_cli.errors import ModelError, UsageError

CATALOG_ENV = "UVR_CATALOG"
CACHE_ENV = "UVR_MODEL_DIR"
_HASH = re.compile(r"^[0-9a-f]{32}$")
MODEL_SUFFIXES = (".pth", ".onnx", ".ckpt")
HTTP = ("http", "https")
BUNDLED_NAME = "default"
"""The name of the bundled model in `uvr models`, `-m` and `uvr info`."""


@dataclass(frozen=True)
class CatalogEntry:
    """One known weight file: where to get it and what it is (None where the sources do not say)."""

    name: str
    file: str
    url: str
    uvr_hash: str | None
    family: str | None  # "CascadedASPPNet", "CascadedNet", "MDX-Net", "MDX23C", "BS-RoFormer", "Mel-Band RoFormer"
    capacity: str | None  # e.g. "ch32, 5 ASPP branches" or "nout 48, nout_lstm 128"
    params: str | None  # band preset name
    primary_stem: str | None  # UVR's label for what the mask keeps, e.g. "Instrumental", "No Echo"
    size_bytes: int | None
    source: str  # where the facts above come from
    mirror_url: str | None = None  # another server of the same file, tried when `url` fails
    config_url: str | None = None  # MDX23C and RoFormer: the checkpoint's YAML config
    config_mirror_url: str | None = None

    @property
    def config_file(self) -> str | None:
        """Where a model's config goes in the cache: beside the checkpoint, under its name (where uvr looks)."""
        return f"{Path(self.file).stem}.yaml" if self.config_url else None


def _entry(raw: object, where: str) -> CatalogEntry:
    """Validate one catalogue record; a bad record is a one-line error naming the catalogue and the field."""
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: each model must be a JSON object")
    label = f"{where}: model {raw.get('name')!r}"
    for key in ("name", "file", "url"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise UsageError(f"{label}: '{key}' must be a non-empty string")
    if Path(raw["file"]).name != raw["file"] or raw["file"] in (".", ".."):
        raise UsageError(f"{label}: 'file' must be a plain file name, not {raw['file']!r}")
    urls = {key: raw.get(key) for key in ("mirror_url", "config_url", "config_mirror_url")}
    for key, value in {"url": raw["url"], **urls}.items():
        if value is not None and not (isinstance(value, str) and urllib.parse.urlsplit(value).scheme in HTTP):
            raise UsageError(f"{label}: '{key}' must be an http or https URL")
    if urls["config_mirror_url"] and not urls["config_url"]:
        raise UsageError(f"{label}: 'config_mirror_url' without a 'config_url'")
    uvr_hash = raw.get("uvr_hash")
    if uvr_hash is not None and not (isinstance(uvr_hash, str) and _HASH.match(uvr_hash)):
        raise UsageError(f"{label}: 'uvr_hash' must be 32 lower-case hex digits or null")
    size = raw.get("size_bytes")
    if size is not None and not (isinstance(size, int) and size > 0):
        raise UsageError(f"{label}: 'size_bytes' must be a positive integer or null")
    text = {key: raw.get(key) for key in ("family", "capacity", "params", "primary_stem")}
    for key, value in text.items():
        if value is not None and not isinstance(value, str):
            raise UsageError(f"{label}: '{key}' must be a string or null")
    return CatalogEntry(
        name=raw["name"],
        file=raw["file"],
        url=raw["url"],
        uvr_hash=uvr_hash,
        size_bytes=size,
        source=str(raw.get("source", "")),
        **text,
        **urls,
    )


def load_catalog() -> list[CatalogEntry]:
    """The catalogue: the file named by UVR_CATALOG, else the shipped registry's "models" list."""
    override = os.environ.get(CATALOG_ENV)
    if override:
        try:
            data = json.loads(Path(override).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"{CATALOG_ENV}={override}: cannot read the catalogue ({exc})") from None
        where = override
    else:
        data, where = registry(), "models/registry.json"
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list):
        raise UsageError(f'{where}: needs a "models" list')
    entries = [_entry(raw, where) for raw in models]
    seen: set[str] = set()
    for entry in entries:
        for key in {entry.name.lower(), entry.file.lower()}:
            if key in seen:
                raise UsageError(f"{where}: {key!r} names two models")
            seen.add(key)
    return entries


def cache_dir() -> Path:
    """Where downloaded models live: UVR_MODEL_DIR, else the platform's per-user cache folder + 'uvr'."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local") / "uvr" / "cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "uvr"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg and os.path.isabs(xdg) else home / ".cache") / "uvr"


def bundled_default() -> Path:
    """The path the bundled default model has when it is installed (the registry's "bundled_default" file)."""
    name = registry().get("bundled_default") or "default.pth"
    return Path(str(resources.files("uvr_models") / name))


def find(name: str, entries: list[CatalogEntry] | None = None) -> CatalogEntry | None:
    """The catalogue entry whose name or file name is `name` (case-insensitive, the file's suffix optional)."""
    wanted = name.lower()
    for entry in entries if entries is not None else load_catalog():
        if wanted in (entry.name.lower(), entry.file.lower(), Path(entry.file).stem.lower()):
            return entry
    return None


def resolve_model(model: str | os.PathLike | None) -> Path:
    """A weight file from -m: a path, a catalogue name or a file name in the cache; None or "default" = the
    bundled default (the name `uvr models` shows for it), unless a file called "default" is at hand."""
    if model is None or (os.fspath(model) == BUNDLED_NAME and not Path(model).is_file()):
        default = bundled_default()
        if default.is_file():
            return default
        raise UsageError(
            "no model given and no bundled default model is installed: pass -m WEIGHTS.pth, "
            "or -m NAME for a model from `uvr models`"
        )
    path = Path(model).expanduser()
    if path.is_file():
        return path
    text = os.fspath(model)
    folder = cache_dir()
    entry = find(text) if os.sep not in text and "/" not in text else None
    candidates = [folder / entry.file] if entry else []
    if path.name == text:  # a bare file name: look in the cache too
        candidates += [folder / text, *(folder / f"{text}{suffix}" for suffix in MODEL_SUFFIXES)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    if entry:
        raise ModelError(f"{text}: model not downloaded yet; run `uvr models download {entry.name}`")
    raise ModelError(
        f"{text}: no such model file, and no model of that name in the catalogue or in {folder}"
        + _did_you_mean(text, folder)
    )


def _did_you_mean(text: str, folder: Path) -> str:
    """'; did you mean X?' for the model names (bundled, catalogue, cache) closest to a misspelt -m, else a pointer
    to `uvr models`."""
    import difflib

    names = [BUNDLED_NAME, *(entry.name for entry in load_catalog())]
    if folder.is_dir():
        names += [p.stem for p in folder.iterdir() if p.suffix.lower() in MODEL_SUFFIXES]
    by_lower = {name.lower(): name for name in names}
    close = difflib.get_close_matches(Path(text).stem.lower(), list(by_lower), n=3, cutoff=0.75)
    if not close:
        return " (`uvr models` lists them)"
    return "; did you mean " + " or ".join(by_lower[name] for name in close) + "?"


def listing() -> dict:
    """What `uvr models` shows: the bundled model, every catalogue entry (with its published scores, if any), and
    other model files in the cache."""
    folder = cache_dir()
    entries = load_catalog()
    scores = published_scores()
    default = bundled_default()
    described = resources.files("uvr_models") / "default.json"
    about = json.loads(described.read_text(encoding="utf-8")) if described.is_file() else {}
    rows: list[dict[str, Any]] = [
        {
            "name": BUNDLED_NAME,
            "file": default.name,
            "bundled": True,
            "installed": default.is_file(),
            "path": str(default) if default.is_file() else None,
            "family": about.get("architecture"),
            "params": about.get("params"),
            "primary_stem": about.get("primary_stem"),
            "size_bytes": default.stat().st_size if default.is_file() else None,
            "scores": [],
        }
    ]
    known = set()
    for entry in entries:
        config = entry.config_file
        cached = (folder / entry.file).is_file() and (config is None or (folder / config).is_file())
        known.add(entry.file)
        row = {
            **asdict(entry),
            "cached": cached,
            "path": str(folder / entry.file) if cached else None,
            "scores": [asdict(score) for score in scores.get(entry.file.lower(), [])],
        }
        if cached:  # the file at hand tells its size where the catalogue does not
            row["size_bytes"] = (folder / entry.file).stat().st_size
        rows.append(row)
    if folder.is_dir():
        found = (p for suffix in MODEL_SUFFIXES for p in folder.glob(f"*{suffix}"))
        for extra in sorted(p for p in found if p.is_file() and p.name not in known):
            rows.append(
                {
                    "name": extra.stem,
                    "file": extra.name,
                    "cached": True,
                    "path": str(extra),
                    "size_bytes": extra.stat().st_size,
                    "source": "found in the cache, not in the catalogue",
                    "scores": [],
                }
            )
    return {"cache_dir": str(folder), "models": rows}
