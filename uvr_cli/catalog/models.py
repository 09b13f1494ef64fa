"""Known UVR5 models (VR and MDX-Net), the local model cache, and downloading into it.

This is the only module of uvr that opens network connections, and it does so only for `uvr models download`.
The catalogue is data (the "models" list of models/registry.json); `UVR_CATALOG` names another JSON file with a
"models" list to use instead (a mirror, or a test server). Downloads go to a `.part` file beside the destination,
resume it with an HTTP Range request, are checked against the UVR hash (when known) and only then renamed into
place, so the cache never holds a file that has not been checked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from http.client import HTTPException, HTTPResponse
from importlib import resources
from pathlib import Path
from typing import Any

from uvr_cli import __version__
from uvr_cli.atomic import atomic_file
from uvr_cli.catalog.registry import registry, uvr_model_hash
from uvr_cli.catalog.scores import published_scores
from uvr_cli.errors import ModelError, UsageError, UvrError

CATALOG_ENV = "UVR_CATALOG"
CACHE_ENV = "UVR_MODEL_DIR"
TIMEOUT_S = 30.0
"""Seconds without any data before a download gives up (it can then be resumed)."""
_CHUNK = 1 << 20
_HASH = re.compile(r"^[0-9a-f]{32}$")
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save's zip format, or the legacy pickle format
_ONNX_MAGIC = (b"\x08",)  # an ONNX model's protobuf starts with its ir_version field
BUNDLED_NAME = "default"
"""The name of the bundled model in `uvr models`, `-m` and `uvr info`."""


class DownloadError(UvrError):
    """A download that failed; the message says whether running the command again resumes it."""


@dataclass(frozen=True)
class CatalogEntry:
    """One known weight file: where to get it and what it is (None where the sources do not say)."""

    name: str
    file: str
    url: str
    uvr_hash: str | None
    family: str | None  # "CascadedASPPNet" or "CascadedNet"
    capacity: str | None  # e.g. "ch32, 5 ASPP branches" or "nout 48, nout_lstm 128"
    params: str | None  # band preset name
    primary_stem: str | None  # UVR's label for what the mask keeps, e.g. "Instrumental", "No Echo"
    size_bytes: int | None
    source: str  # where the facts above come from


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
    if urllib.parse.urlsplit(raw["url"]).scheme not in ("http", "https"):
        raise UsageError(f"{label}: 'url' must be an http or https URL")
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
        candidates += [folder / text, folder / f"{text}.pth", folder / f"{text}.onnx"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    if entry:
        raise ModelError(f"{text}: model not downloaded yet; run `uvr models download {entry.name}`")
    raise ModelError(
        f"{text}: no such model file, and no model of that name in the catalogue or in {folder} "
        "(`uvr models` lists them)"
    )


def check_file(path: Path, entry: CatalogEntry) -> str:
    """Verify a downloaded file against the catalogue; returns how it was checked. Raises DownloadError."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(4)
    onnx = entry.file.lower().endswith(".onnx")
    if not head.startswith(_ONNX_MAGIC if onnx else _TORCH_MAGIC):
        kind = "an ONNX model" if onnx else "a PyTorch weight file"
        raise DownloadError(f"{entry.name}: the download is not {kind} (it starts with {head!r})")
    if entry.size_bytes is not None and size != entry.size_bytes:
        raise DownloadError(f"{entry.name}: the download has {size} bytes, the catalogue says {entry.size_bytes}")
    if entry.uvr_hash is None:
        if entry.size_bytes is not None:
            return f"size checked ({size} bytes; no hash is known for this file)"
        return "unverified (no hash is known for this file)"
    actual = uvr_model_hash(path)
    if actual != entry.uvr_hash:
        raise DownloadError(
            f"{entry.name}: hash mismatch: the download's UVR hash is {actual}, the catalogue expects {entry.uvr_hash}"
        )
    return f"UVR hash {actual}"


@dataclass(frozen=True)
class Downloaded:
    """The outcome of `download`: where the file is and how it was checked."""

    path: Path
    status: str  # "downloaded", "resumed", "cached" or "added"
    verified: str


def download(entry: CatalogEntry, folder: Path | None = None, *, progress: bool = False) -> Downloaded:
    """Fetch `entry` into `folder` (default: the cache), resuming a `.part` file; verify; rename into place.

    A file that fails verification is deleted (the next run starts afresh); an interrupted transfer keeps its
    `.part` file so that the next run resumes it.
    """
    folder = folder or cache_dir()
    dest = folder / entry.file
    if dest.is_file():
        try:
            return Downloaded(dest, "cached", check_file(dest, entry))
        except DownloadError as exc:
            raise DownloadError(f"{exc}; the cached file {dest} is damaged: delete it and download again") from None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create the model cache {folder}: {exc.strerror or exc}") from None
    part = dest.with_name(dest.name + ".part")
    try:
        resumed = _fetch(entry, part, progress)
    except DownloadError as exc:
        raise DownloadError(f"{exc}{manual_hint(entry, folder)}") from None
    try:
        verified = check_file(part, entry)
    except DownloadError as exc:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{exc}; the download was deleted{manual_hint(entry, folder)}") from None
    os.replace(part, dest)
    return Downloaded(dest, "resumed" if resumed else "downloaded", verified)


def manual_hint(entry: CatalogEntry, folder: Path) -> str:
    """The way forward without uvr's own download: where the file is and where it must go."""
    return (
        f"; or fetch {entry.url} by other means and run `uvr models add FILE`, "
        f"which checks it and puts it at {folder / entry.file}"
    )


def add_model(source: Path, folder: Path | None = None) -> tuple[CatalogEntry, Downloaded]:
    """Copy a weight file fetched by hand into the cache, under its catalogue file name, once it checks out.

    The file is matched by its UVR hash, else by its file name (whose catalogue hash, where known, must then
    agree); a file the catalogue does not know, or that fails the check, is refused and nothing is copied.
    """
    folder = folder or cache_dir()
    if not source.is_file():
        raise UsageError(f"{source}: no such file")
    actual = uvr_model_hash(source)
    entries = load_catalog()
    entry = next((e for e in entries if e.uvr_hash == actual), None) or find(source.name, entries)
    if entry is None:
        raise UsageError(
            f"{source}: neither its UVR hash {actual} nor its name is in the catalogue "
            f"(`uvr models`); use it directly with -m {source}"
        )
    try:
        verified = check_file(source, entry)
    except DownloadError as exc:
        reason = str(exc).removeprefix(f"{entry.name}: ").replace("the download", "the file")
        raise DownloadError(f"{source}: not added as {entry.name}: {reason}") from None
    dest = folder / entry.file
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_file(dest) as temp:
            shutil.copyfile(source, temp)
    except OSError as exc:
        raise DownloadError(f"{source}: cannot copy it to {dest}: {exc.strerror or exc}") from None
    return entry, Downloaded(dest, "added", verified)


def _fetch(entry: CatalogEntry, part: Path, progress: bool) -> bool:
    """Download entry.url into `part`, continuing from its current length; True when a resume was accepted."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(entry.url, headers={"User-Agent": f"uvr/{__version__}"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    host = urllib.parse.urlsplit(entry.url).netloc
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and have:
            claimed = re.search(r"/(\d+)$", exc.headers.get("Content-Range", ""))
            if claimed and int(claimed.group(1)) == have:
                return True  # the part file is already complete
            part.unlink()
            return _fetch(entry, part, progress)
        raise DownloadError(f"{entry.name}: HTTP {exc.code} {exc.reason} from {entry.url}") from None
    except urllib.error.URLError as exc:
        raise DownloadError(
            f"{entry.name}: cannot reach {host}: {getattr(exc.reason, 'strerror', None) or exc.reason}"
        ) from None
    except (OSError, HTTPException) as exc:
        raise DownloadError(f"{entry.name}: cannot reach {host}: {exc}") from None
    with response:
        resumed = bool(have) and response.status == 206 and _range_start(response) == have
        if not resumed:
            have = 0  # the server sent the whole file (no Range support): start over
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=entry.file,
                file=sys.stderr,
                leave=False,
            )
        try:
            with part.open("ab" if resumed else "wb") as out:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
        except (OSError, HTTPException) as exc:
            got = part.stat().st_size if part.exists() else 0
            raise DownloadError(
                f"{entry.name}: download interrupted after {got} bytes ({exc or type(exc).__name__}); "
                "run the command again to resume"
            ) from None
        finally:
            if bar is not None:
                bar.close()
    got = part.stat().st_size
    if total is not None and got < total:
        raise DownloadError(
            f"{entry.name}: the connection closed after {got} of {total} bytes; run the command again to resume"
        )
    return resumed


def _range_start(response: HTTPResponse) -> int | None:
    """The first byte of a 206 response's Content-Range ('bytes START-END/TOTAL')."""
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


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
        cached = (folder / entry.file).is_file()
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
        found = (p for suffix in ("*.pth", "*.onnx") for p in folder.glob(suffix))
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
