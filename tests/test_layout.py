"""The package's layers: each subpackage imports only the layers below it, so the design stays readable."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "uvr_cli"
# Each layer may import itself and the layers listed for it (transitively lower ones are listed explicitly).
ALLOWED = {
    "errors": set(),
    "atomic": set(),  # the one atomic-file helper, for every writer
    "catalog": {"errors", "atomic"},
    "io": {"errors", "atomic"},
    "settings": {"errors", "catalog", "io"},  # typed settings: no torch
    "engine": {"errors", "atomic", "catalog", "settings"},
    "separator": {"errors", "catalog", "settings", "engine", "io"},
    "chain": {"errors", "catalog", "settings", "engine", "io", "separator"},
    "training": {"errors", "atomic", "catalog", "settings", "engine", "io", "separator"},
    # a batch of inputs into records, whoever drives it (the CLI, -j workers, Ray)
    "batch": {"errors", "catalog", "settings", "engine", "io", "separator"},
    "ray": {"errors", "catalog", "settings", "engine", "io", "separator", "batch"},  # Ray workers and Ray Data
    "cli": {"errors", "catalog", "settings", "engine", "io", "separator", "chain", "training", "batch", "ray"},
    "compat": {"errors", "catalog", "settings", "io", "separator"},  # drop-ins for other projects' APIs (RVC's uvr5)
    "root": {"errors", "separator"},  # uvr_cli/__init__.py: the version, the errors and the lazy Separator
    "entry": {"cli"},  # uvr_cli/__main__.py
}
# What any module may take from the package root: its version string.
ROOT_NAMES = {"uvr_cli", "uvr_cli.__version__"}


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] == "__main__":
        return "entry"
    if len(parts) == 1 or parts[1] == "__init__":
        return "root"
    return parts[1]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("uvr_cli"):
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("uvr_cli")}
    return found


def test_imports_only_go_down():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        here = _layer(module)
        for target in _imports(path):
            there = _layer(target)
            if there != here and there not in ALLOWED[here] and target not in ROOT_NAMES:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_every_module_belongs_to_a_known_layer():
    layers = {_layer(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)) for p in PACKAGE.rglob("*.py")}
    assert layers <= set(ALLOWED), layers - set(ALLOWED)
