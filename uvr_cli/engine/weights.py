"""Reading a PyTorch weight file safely: plain tensors only (a pickle that would run code is refused), a zip
directory that claims too much refused before anything is unpacked, training wrappers unwrapped, every failure one
line that names the file. Shared by the families whose models are PyTorch state dicts."""

from __future__ import annotations

import os
import re
import warnings
import zipfile
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from uvr_cli.errors import ModelError

MAX_UNPACKED_BYTES = 3 << 30
"""Most that a weight file's zip directory may claim to unpack to; the largest models uvr runs hold about 1 GB."""
NBT = "num_batches_tracked"


def _first_sentence(text: str) -> str:
    line = next((s.strip() for s in text.splitlines() if s.strip()), "")
    return line.split(". ")[0].rstrip(".")[:200]


def _load_failure(exc: Exception) -> str:
    """Condense a torch.load failure (often a multi-line essay) into one short cause."""
    if isinstance(exc, OSError):
        return f"cannot read it: {exc.strerror or _first_sentence(str(exc))}"
    if isinstance(exc, EOFError):
        return "the file is empty or cut short"
    text = str(exc)
    if "Weights only load failed" in text:
        if m := re.search(r"GLOBAL (\S+)", text):
            return (
                f"refused: it would import and call {m.group(1)} when unpickled (a pickle that can run code); "
                "only plain weight files are accepted"
            )
        if m := re.search(r"Unsupported operand (\d+)", text):
            return (
                f"not a PyTorch weight file, or one holding non-weight objects (unsupported pickle opcode {m.group(1)})"
            )
        return "refused: it holds Python objects other than plain weights"
    return f"not a readable PyTorch weight file ({_first_sentence(text) or type(exc).__name__})"


def unwrap(obj: object) -> Mapping[object, object]:
    """A plain state dict, or the one a training checkpoint keeps under "state_dict", "model", "state" or
    "model_state_dict" (UVR's, MSST's and Lightning's wrappers)."""
    if not isinstance(obj, Mapping):
        raise ModelError(f"holds {type(obj).__name__}, not a state dict")
    if not all(isinstance(v, Tensor) for v in obj.values()):
        for wrapper in ("state_dict", "model", "state", "model_state_dict"):
            if isinstance(obj.get(wrapper), Mapping):
                return obj[wrapper]
    return obj


def clean(entries: Mapping[Any, object]) -> dict[str, Tensor]:
    """Tensors only, ``num_batches_tracked`` dropped (optional in real files), floats (fp16/bf16) as float32."""
    state: dict[str, Tensor] = {}
    for key, value in entries.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise ModelError(f"not a state dict: entry {key!r} holds {type(value).__name__}, not a tensor")
        if key.endswith(NBT):
            continue
        state[key] = value.float() if value.is_floating_point() else value
    if not state:
        raise ModelError("holds no weights")
    return state


def check_unpacked_size(path: str | os.PathLike) -> None:
    """Refuse a zip (torch's format) whose directory claims more than MAX_UNPACKED_BYTES.

    A file of a few megabytes can hold deflated records that unpack to gigabytes (a zip bomb); torch.load would
    allocate and inflate all of it before any check of ours ran. Only the directory is read here; a damaged one
    is left to torch.load to report.
    """
    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as archive:
            claimed = sum(info.file_size for info in archive.infolist())
    except Exception:  # zipfile raises many types on damaged directories; torch.load then names the damage
        return
    if claimed > MAX_UNPACKED_BYTES:
        raise ModelError(
            f"{path}: refused: its zip directory claims {claimed / 2**30:.1f} GiB of contents, more than any "
            f"model uvr runs holds (limit {MAX_UNPACKED_BYTES / 2**30:g} GiB); the file is damaged or a zip bomb"
        )


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Load a weight file safely (``weights_only``, zip size claims checked first) as float32 tensors without
    ``num_batches_tracked``."""
    check_unpacked_size(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol notes would bypass our one-line messages
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many unrelated types; every one means "cannot use this file"
        raise ModelError(f"{path}: {_load_failure(e)}") from None
    try:
        return clean(unwrap(obj))
    except ModelError as e:
        raise ModelError(f"{path}: {e}") from None


def few(items: list[str], n: int = 3) -> str:
    """The first `n` items (key names from the file), line breaks escaped so that the message stays on one line."""
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(item.replace("\r", "\\r").replace("\n", "\\n") for item in items[:n]) + more


def check_values(state_dict: Mapping[str, Tensor]) -> None:
    """Refuse integer weights and NaN/Inf values, which would load silently and produce garbage masks."""
    bad_type = [k for k, v in state_dict.items() if not v.is_floating_point()]
    if bad_type:
        raise ModelError(f"weights must be floating point, but {few(bad_type)} are {state_dict[bad_type[0]].dtype}")
    bad = [k for k, v in state_dict.items() if not bool(torch.isfinite(v).all())]
    if bad:
        raise ModelError(f"{len(bad)} weight tensor(s) contain NaN or Inf values: {few(bad)}; the file is damaged")
