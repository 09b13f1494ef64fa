"""Fetching catalogue models into the cache (`uvr models download`) and adding hand-fetched ones (`uvr models add`).

This is the only module of uvr that opens network connections, and it does so only for `uvr models download`.
Downloads go to a `.part` file beside the destination, resume it with an HTTP Range request, are checked (file
kind, size and UVR hash where the catalogue knows them) and only then renamed into place, so the cache never holds
a file that has not been checked. A source that answers with an HTTP error or cannot be reached gives way to the
entry's mirror. An MDX23C or RoFormer checkpoint comes with its YAML config, saved beside it under the
checkpoint's name (where separation looks for it) once it reads as a config.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException, HTTPResponse
from pathlib import Path

from uvr_cli import __version__
from uvr_cli.atomic import atomic_file
from uvr_cli.catalog.model_config import read_config
from uvr_cli.catalog.models import CatalogEntry, cache_dir, find, load_catalog
from uvr_cli.catalog.registry import uvr_model_hash
from uvr_cli.errors import UsageError, UvrError

TIMEOUT_S = 30.0
"""Seconds without any data before a download gives up (it can then be resumed)."""
_CHUNK = 1 << 20
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save's zip format, or the legacy pickle format
_ONNX_MAGIC = (b"\x08",)  # an ONNX model's protobuf starts with its ir_version field


class DownloadError(UvrError):
    """A download that failed; the message says whether running the command again resumes it."""


class Unavailable(DownloadError):
    """The source answered with an HTTP error or could not be reached: the next source may have the file."""


@dataclass(frozen=True)
class Downloaded:
    """The outcome of `download`: where the file (and its config) is and how it was checked."""

    path: Path
    status: str  # "downloaded", "resumed", "cached" or "added"
    verified: str
    config: Path | None = None


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


def check_config(path: Path, entry: CatalogEntry) -> None:
    """A config must read as one (its sections and model settings); raises DownloadError naming the entry."""
    try:
        read_config(path)
    except UvrError as exc:
        reason = str(exc).removeprefix(f"{path}: ")
        raise DownloadError(f"{entry.name}: the config download is not a usable config ({reason})") from None


def download(entry: CatalogEntry, folder: Path | None = None, *, progress: bool = False) -> Downloaded:
    """Fetch `entry` (and its config) into `folder` (default: the cache), resuming a `.part` file; verify; rename
    into place.

    A file that fails verification is deleted (the next run starts afresh); an interrupted transfer keeps its
    `.part` file so that the next run resumes it.
    """
    folder = folder or cache_dir()
    dest = folder / entry.file
    if dest.is_file():
        try:
            verified = check_file(dest, entry)
        except DownloadError as exc:
            raise DownloadError(f"{exc}; the cached file {dest} is damaged: delete it and download again") from None
        return Downloaded(dest, "cached", verified, _download_config(entry, folder, progress))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create the model cache {folder}: {exc.strerror or exc}") from None
    part = dest.with_name(dest.name + ".part")
    try:
        resumed = _fetch_any(entry, (entry.url, entry.mirror_url), part, progress)
    except DownloadError as exc:
        raise DownloadError(f"{exc}{manual_hint(entry, folder)}") from None
    try:
        verified = check_file(part, entry)
    except DownloadError as exc:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{exc}; the download was deleted{manual_hint(entry, folder)}") from None
    os.replace(part, dest)
    return Downloaded(dest, "resumed" if resumed else "downloaded", verified, _download_config(entry, folder, progress))


def _download_config(entry: CatalogEntry, folder: Path, progress: bool) -> Path | None:
    """The entry's config in the cache, fetched and checked when it is not there yet (None: the entry has none)."""
    if entry.config_file is None:
        return None
    dest = folder / entry.config_file
    if dest.is_file():
        return dest
    part = dest.with_name(dest.name + ".part")
    part.unlink(missing_ok=True)  # a few kB: always fetched whole
    try:
        _fetch_any(entry, (entry.config_url, entry.config_mirror_url), part, progress)
        check_config(part, entry)
    except DownloadError as exc:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{exc}{manual_hint(entry, folder)}") from None
    os.replace(part, dest)
    return dest


def manual_hint(entry: CatalogEntry, folder: Path) -> str:
    """The way forward without uvr's own download: where the files are and where they must go."""
    config = f" and its config {entry.config_url}" if entry.config_url else ""
    return (
        f"; or fetch {entry.url}{config} by other means and run `uvr models add FILE`, "
        f"which checks it and puts it at {folder / entry.file}"
    )


def add_model(source: Path, folder: Path | None = None, config: Path | None = None) -> tuple[CatalogEntry, Downloaded]:
    """Copy a weight file fetched by hand (and its config) into the cache under its catalogue name, once it
    checks out.

    The file is matched by its UVR hash, else by its file name (whose catalogue hash, where known, must then
    agree); a file the catalogue does not know, or that fails the check, is refused and nothing is copied. A
    model with a config takes `config`, else the .yaml of the file's name or of the config's published name
    beside it.
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
    copies = [(source, folder / entry.file)]
    if entry.config_file is not None:
        given = config or _config_beside(source, entry)
        try:
            check_config(given, entry)
        except DownloadError as exc:
            raise DownloadError(f"{source}: not added as {entry.name}: {given}: {exc}") from None
        copies.append((given, folder / entry.config_file))
    elif config is not None:
        raise UsageError(f"{source}: {entry.name} takes no config; leave out --config")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for origin, dest in copies:
            with atomic_file(dest) as temp:
                shutil.copyfile(origin, temp)
    except OSError as exc:
        raise DownloadError(f"{source}: cannot copy it to {folder}: {exc.strerror or exc}") from None
    return entry, Downloaded(copies[0][1], "added", verified, copies[1][1] if len(copies) > 1 else None)


def _config_beside(source: Path, entry: CatalogEntry) -> Path:
    published = Path(urllib.parse.urlsplit(entry.config_url or "").path).name
    for candidate in (source.with_suffix(".yaml"), source.with_name(published)):
        if candidate.is_file():
            return candidate
    raise UsageError(
        f"{source}: {entry.name} needs its YAML config: put {source.with_suffix('.yaml').name} beside it "
        f"or pass --config FILE.yaml (it is at {entry.config_url})"
    )


def _fetch_any(entry: CatalogEntry, urls: tuple[str | None, ...], part: Path, progress: bool) -> bool:
    """Fetch from the first of `urls` that serves the file; True when a resume was accepted."""
    failures = []
    for url in filter(None, urls):
        try:
            return _fetch(entry, url, part, progress)
        except Unavailable as exc:
            failures.append(str(exc).removeprefix(f"{entry.name}: "))
    raise DownloadError(f"{entry.name}: {'; then '.join(failures)}")


def _fetch(entry: CatalogEntry, url: str, part: Path, progress: bool) -> bool:
    """Download `url` into `part`, continuing from its current length; True when a resume was accepted."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": f"uvr/{__version__}"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    host = urllib.parse.urlsplit(url).netloc
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and have:
            claimed = re.search(r"/(\d+)$", exc.headers.get("Content-Range", ""))
            if claimed and int(claimed.group(1)) == have:
                return True  # the part file is already complete
            part.unlink()
            return _fetch(entry, url, part, progress)
        raise Unavailable(f"{entry.name}: HTTP {exc.code} {exc.reason} from {url}") from None
    except urllib.error.URLError as exc:
        raise Unavailable(
            f"{entry.name}: cannot reach {host}: {getattr(exc.reason, 'strerror', None) or exc.reason}"
        ) from None
    except (OSError, HTTPException) as exc:
        raise Unavailable(f"{entry.name}: cannot reach {host}: {exc}") from None
    with response:
        resumed = bool(have) and response.status == 206 and _range_start(response) == have
        if not resumed:
            have = 0  # the server sent the whole file (no Range support): start over
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        bar = None
        if progress:
            from tqdm import tqdm

            name = Path(urllib.parse.urlsplit(url).path).name or entry.file
            bar = tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=name,
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
