"""What an output folder already holds, and whether the next outputs fit in it.

Beside each output `NAME` uvr keeps a small hidden record, `.NAME.uvr.json`, written only once every output of
its input is complete: the settings that made it, the input's size and modification time, and the output's size.
Skip-existing trusts an output only when its record matches the settings asked for now, so a rerun with another
model or `--agg` never returns the old files as if they were new. One record per output (rather than one per
folder) means that runs sharing an output folder (`--shard` on several machines) never rewrite each other's.

Before any separation, `check_room` makes sure that each output folder exists or can be made, can be written,
and has room for the estimated outputs. Nothing here imports torch: a rerun with nothing to do stays quick.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from uvr_cli.atomic import write_atomic
from uvr_cli.errors import AudioError
from uvr_cli.io.formats import bytes_per_second

STDIO = "-"
RECORD_SUFFIX = ".uvr.json"
NOT_APPLIED = None
"""A setting recorded as null did not shape the outputs (e.g. --agg for a CascadedNet); any value matches it."""
_MARGIN_BYTES = 1 << 20  # headers, the settings records, and a little slack


def record_path(output: str | os.PathLike) -> Path:
    """Where the settings record of one output file lives: hidden, beside it."""
    path = Path(output)
    return path.with_name(f".{path.name}{RECORD_SUFFIX}")


def _input_stamp(source: str) -> dict:
    status = os.stat(source)
    return {"size": status.st_size, "mtime_ns": status.st_mtime_ns}


def write_records(source: str, outputs: dict[str, str], settings: dict, version: str) -> None:
    """Remember `settings` beside each output of `source`; call only when all of them are complete.

    Each record is written atomically (uvr_cli/atomic.py), so a record is never seen half-written.
    """
    stamp = _input_stamp(source) if source != STDIO else None
    for output in outputs.values():
        if output == STDIO:
            continue
        record = {"uvr": version, "settings": settings, "input": stamp, "output_size": os.stat(output).st_size}
        target = record_path(output)
        try:
            write_atomic(target, json.dumps(record, indent=1).encode("utf-8"))
        except OSError as exc:
            raise AudioError(
                f"{output}: written, but its settings record {target.name} could not be: {exc.strerror or exc}"
            ) from None


def _describe(key: str, value: object) -> str:
    if key == "model":
        return f"the model with UVR hash {value}"
    option = f"--{key.replace('_', '-')}"
    if isinstance(value, bool):
        return f"{option} {'on' if value else 'off'}"
    return f"{option} {value:g}" if isinstance(value, float) else f"{option} {value}"


# Settings added after records began: what a record made before them means (exact mode, the automatic front end;
# the MDX-Net and MSST options did not shape the VR models that made every such record)
UNRECORDED_MEANT = {
    "fast": False,
    "front_end": "auto",
    **dict.fromkeys(("segment", "overlap", "denoise", "config", "num_overlap")),
}


def difference(recorded: dict, wanted: dict) -> str | None:
    """The first setting that differs, worded for the user, or None when `recorded` matches `wanted`."""
    for key, value in wanted.items():
        old = recorded.get(key, UNRECORDED_MEANT.get(key, "unrecorded"))
        if old is NOT_APPLIED or value is NOT_APPLIED or old == value:
            continue
        return f"made with {_describe(key, old)}, not {_describe(key, value)}"
    return None


@dataclass(frozen=True)
class Existing:
    """What is known about an input's outputs before separating it."""

    complete: bool  # every output exists and its record matches: nothing to do
    reason: str | None = None  # why existing outputs cannot be reused (None: there were none to reuse)


def check_existing(source: str, outputs: dict[str, str], settings: dict) -> Existing:
    """Whether `source`'s outputs are already there, made from this very input with these settings."""
    files = [path for path in outputs.values() if path != STDIO]
    if source == STDIO or not files or len(files) != len(outputs):
        return Existing(False)  # standard input or output: nothing on disk can stand for it
    present = [path for path in files if os.path.isfile(path)]
    if len(present) < len(files):
        return Existing(False, None if not present else "some of its outputs are missing")
    try:
        stamp = _input_stamp(source)
    except OSError:
        return Existing(False)  # the separation reports the unreadable input
    for path in files:
        try:
            record = json.loads(record_path(path).read_text(encoding="utf-8"))
            settings_then, input_then, size_then = record["settings"], record["input"], record["output_size"]
        except (OSError, ValueError, KeyError, TypeError):
            return Existing(False, f"{Path(path).name} has no record of the settings that made it")
        if input_then != stamp:
            return Existing(False, "the input changed since its outputs were made")
        if size_then != os.stat(path).st_size:
            return Existing(False, f"{Path(path).name} changed since uvr wrote it")
        changed = difference(settings_then, settings)
        if changed:
            return Existing(False, f"its outputs were {changed}")
    return Existing(True)


def estimate_bytes(
    source: str, *, stems: int, fmt: str, bit_depth: str | None, rate: str | int, model_rate: int
) -> int:
    """About how many bytes `stems` outputs of `source` will take (0 when its header cannot be read: the
    separation then reports why); see formats.bytes_per_second."""
    import soundfile as sf

    from uvr_cli.io.stderr import native_output_silenced

    try:
        with native_output_silenced():
            info = sf.info(source)
    except (OSError, RuntimeError, sf.LibsndfileError):
        return 0
    out_rate = {"input": info.samplerate, "model": model_rate}.get(rate, rate)  # type: ignore[arg-type]
    seconds = info.frames / info.samplerate if info.samplerate else 0.0
    per_second = bytes_per_second(fmt, bit_depth, info.subtype, int(out_rate), min(info.channels, 2))
    return int(seconds * per_second * stems)


def _nearest_existing(folder: Path) -> Path:
    """The folder itself, or the closest ancestor that exists (what must be written to create the rest)."""
    folder = folder.absolute()
    while not os.path.lexists(folder) and folder.parent != folder:
        folder = folder.parent
    return folder


def _probe_writable(folder: Path) -> None:
    """Create and remove a file in `folder`: the only test that also binds where permission bits do not tell."""
    if not folder.is_dir():
        raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
    handle, name = tempfile.mkstemp(prefix=".uvr-probe-", dir=folder)
    os.close(handle)
    os.unlink(name)


def _human(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{max(n, 0) / 1e3:.0f} kB"


def check_room(planned: Iterable[tuple[str, int]]) -> None:
    """Refuse (AudioError, one line) unless every output's folder can be made and written, and each file system
    has room for the bytes planned on it. `planned`: (output path, estimated bytes) for each output to write."""
    by_folder: dict[Path, tuple[str, int]] = {}
    for output, size in planned:
        if output == STDIO:
            continue
        folder = _nearest_existing(Path(output).parent)
        first, total = by_folder.get(folder, (output, 0))
        by_folder[folder] = (first, total + size)
    by_device: dict[int, tuple[str, Path, int]] = {}
    for folder, (first, total) in by_folder.items():
        try:
            _probe_writable(folder)
            device = os.stat(folder).st_dev
        except OSError as exc:
            raise AudioError(f"{first}: cannot write into {folder}: {exc.strerror or exc}") from None
        seen_first, seen_folder, seen_total = by_device.get(device, (first, folder, 0))
        by_device[device] = (seen_first, seen_folder, seen_total + total)
    for first, folder, total in by_device.values():
        free = shutil.disk_usage(folder).free
        if total + _MARGIN_BYTES > free:
            raise AudioError(
                f"{first}: cannot write into {folder}: {os.strerror(errno.ENOSPC)} (the outputs need "
                f"about {_human(total)}, {_human(free)} is free)"
            )
