"""Which band preset and which stem a weight file has, from its hash, its name or its shapes.

UVR decides this by hash tables (reference §5.7); RVC hard-codes it by file name (§5.1). We try, in order: the UVR
hash, the legacy whole-file hash, the file name of a catalogue entry (`uvr models`), RVC's name rules, a preset name
inside the file name, and finally the bin count a CascadedNet's LSTM fixes. The first three are certain: --params
replaces them only when forced (--force-params); the others are guesses that --params replaces.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from uvr_cli.catalog.presets import list_presets
from uvr_cli.errors import ModelError

# UVR's primary-stem labels whose mask keeps the (dry) voice; RVC writes the De-Echo models' mask output as "vocal".
VOCAL_PRIMARY_STEMS = frozenset({"Vocals", "No Echo", "No Reverb", "Dry", "Echo"})


@dataclass(frozen=True)
class ModelIdentity:
    """What we know about a weight file beyond its tensors."""

    params: str | None  # preset name, or None when nothing tells
    primary_stem: str  # UVR's label for what the mask estimates, e.g. "Instrumental", "Vocals", "No Echo"
    how: str  # how it was recognised, for `uvr info` and error messages
    uvr_hash: str
    nout: int | None = None
    certain: bool = False  # known by hash (or as a catalogue file): --params does not replace it unless forced

    @property
    def primary_is_vocals(self) -> bool:
        return self.primary_stem in VOCAL_PRIMARY_STEMS


HASH_TAIL_BYTES = 10_000 * 1024


@lru_cache(maxsize=1)
def registry() -> dict:
    """The shipped registry (models/registry.json); this module imports no torch, so listing models stays quick."""
    return json.loads((resources.files("uvr_models") / "registry.json").read_text(encoding="utf-8"))


def uvr_model_hash(path: str | os.PathLike) -> str:
    """UVR's model hash: md5 of the last 10,000*1024 bytes, or of the whole file if it is smaller."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(max(0, size - HASH_TAIL_BYTES))
            return hashlib.md5(f.read()).hexdigest()
    except OSError as e:
        raise ModelError(f"{path}: cannot read the model file: {e.strerror or e}") from None


def whole_file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _bundled_default_entry(uvr_hash: str) -> dict | None:
    """models/default.json describes the shipped model; it applies to the file with exactly that hash."""
    description = resources.files("uvr_models") / "default.json"
    if not description.is_file():
        return None
    data = json.loads(description.read_text(encoding="utf-8"))
    return data if data.get("uvr_hash") == uvr_hash else None


def _rvc_name_rule(name: str, is_cascaded_net: bool) -> tuple[str, str] | None:
    """RVC's hard-coded choices: DeEcho/DeReverb -> 4band_v3 (dry = primary); HP2/HP3/HP5 -> 4band_v2."""
    if is_cascaded_net and ("DeEcho" in name or "DeReverb" in name):
        return "4band_v3", "No Echo"
    if not is_cascaded_net and "HP3" in name:
        return "4band_v2", "Vocals"
    if not is_cascaded_net and ("HP2" in name or "HP5" in name):
        return "4band_v2", "Instrumental"
    return None


def identify(path: Path, is_cascaded_net: bool, cascaded_bins: int | None) -> ModelIdentity:
    """Recognise a weight file; `params` is None when the caller must ask the user for --params."""
    table = registry()
    uvr_hash = uvr_model_hash(path)
    entry = table["hashes"].get(uvr_hash)
    if entry:
        return ModelIdentity(
            entry["params"], entry["primary_stem"], f"UVR hash {uvr_hash}", uvr_hash, entry.get("nout"), certain=True
        )
    entry = _bundled_default_entry(uvr_hash)
    if entry:
        return ModelIdentity(
            entry["params"], entry["primary_stem"], "uvr's bundled default model", uvr_hash, certain=True
        )
    if path.stat().st_size <= 1 << 30:
        legacy = table["legacy_md5"].get(whole_file_md5(path))
        if legacy:
            return ModelIdentity(legacy, "Instrumental", "UVR v5.2 file hash", uvr_hash, certain=True)
    for entry in table.get("models", []):
        if entry.get("file") == path.name and entry.get("params"):
            how = "catalogue file name (uvr models)"
            return ModelIdentity(entry["params"], entry["primary_stem"], how, uvr_hash, certain=True)
    rule = _rvc_name_rule(path.name, is_cascaded_net)
    if rule:
        return ModelIdentity(rule[0], rule[1], "RVC file-name rule", uvr_hash)
    for preset in sorted(list_presets(), key=len, reverse=True):
        if preset in path.name:
            return ModelIdentity(preset, "Instrumental", "preset name in the file name", uvr_hash)
    if is_cascaded_net and cascaded_bins == 896:
        return ModelIdentity("4band_v4_ms_fullband", "Instrumental", "the only preset with 896 bins", uvr_hash)
    if is_cascaded_net and cascaded_bins == 672:
        return ModelIdentity("4band_v3", "Instrumental", "672 bins (RVC's De-Echo preset)", uvr_hash)
    return ModelIdentity(None, "Instrumental", "unknown file", uvr_hash)
