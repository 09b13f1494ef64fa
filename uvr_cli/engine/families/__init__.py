"""Every model family uvr runs, each in its room here, and which family a file belongs to (family.py says what a
family is). A new family is a new room and one entry in `all_families`."""

from __future__ import annotations

from pathlib import Path

from uvr_cli.engine.device import Runtime
from uvr_cli.engine.family import Family, LoadedModel
from uvr_cli.settings import ModelOptions


def all_families() -> tuple[Family, ...]:
    """The families, asked in order; VR, last, takes whatever no other family claims. Imported when first asked
    for, so that importing the engine loads no family's code."""
    from uvr_cli.engine.families.mdx.family import FAMILY as MDX
    from uvr_cli.engine.families.msst.family import FAMILY as MSST
    from uvr_cli.engine.families.vr.family import FAMILY as VR

    return (MDX, MSST, VR)


def family_of(path: Path) -> Family:
    """The family whose file `path` is, from its name and first bytes (an unreadable file is left to VR's loader,
    whose message says why)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError:
        head = b""
    return next(family for family in all_families() if family.claims(path, head))


def load(path: Path, options: ModelOptions, runtime: Runtime) -> LoadedModel:
    """`path` loaded by its family, ready to run."""
    return family_of(path).load(path, options, runtime)
