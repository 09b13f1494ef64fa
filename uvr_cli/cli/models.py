"""`uvr presets`, `uvr models` (list, download, add) and `uvr info`: what models and presets there are."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import typer

from uvr_cli.cli.common import EXIT_OK, EXIT_SOME_FAILED, emit, fail, say, size_text
from uvr_cli.errors import UsageError, UvrError

models_app = typer.Typer(
    help="List the known models (VR, MDX-Net, MDX23C, RoFormer), download them into the local cache, or add a file "
    "fetched by hand."
)


VR_FAMILIES = (None, "CascadedASPPNet", "CascadedNet")


MODEL_COLUMNS = ("NAME", "ARCHITECTURE", "PRESET", "PRIMARY STEM", "SCORE VOC/INST", "SIZE", "LOCAL")
CELL_CAPS = {"ARCHITECTURE": 30, "PRIMARY STEM": 16}  # longer cells end in '...' (--json has them whole)
FIRST_COLUMN_CAP = 40  # on a screen, a longer name (never cut: it is what -m takes) has a line of its own
DROP_ORDER = ("SIZE", "PRESET", "ARCHITECTURE", "SCORE VOC/INST", "PRIMARY STEM")  # left out first on a narrow screen


def _screen_width() -> int | None:
    """The terminal's width, or None when the table goes to a file or pipe: nothing is cut there."""
    import shutil

    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def _table(
    rows: Sequence[tuple[str, ...]], *, caps: dict[str, int] | None = None, drop: Sequence[str] = ()
) -> list[str]:
    """Rows under the header row rows[0], in aligned columns. On a screen, cells longer than their column's cap
    are cut with '...', a first cell longer than FIRST_COLUMN_CAP gets a line of its own, and where the lines are
    still wider than the screen the `drop` columns are left out in turn (named below the table, and returned)."""
    header = rows[0]
    screen = _screen_width()
    if screen is not None:
        rows = [tuple(_cut(cell, (caps or {}).get(name)) for cell, name in zip(row, header)) for row in rows]
    keep = list(range(len(header)))
    widths = [max(len(row[i]) for row in rows) for i in keep]
    if screen is not None:
        widths[0] = min(widths[0], FIRST_COLUMN_CAP)
    dropped = []
    for name in drop:
        if screen is None or sum(widths[i] + 2 for i in keep) - 2 <= screen:
            break
        keep.remove(header.index(name))
        dropped.append(name)
    for row in rows:
        if len(row[0]) > widths[0]:
            emit(row[0])
            row = ("", *row[1:])
        emit("  ".join(row[i].ljust(widths[i]) for i in keep).rstrip())
    if dropped:
        note = f"(left out at {screen} columns: {', '.join(dropped)}; a wider terminal or --json shows them)"
        emit(_wrap(note, screen))
    return dropped


def _wrap(text: str, screen: int | None) -> str:
    """`text` in lines of the screen's width, later lines indented; words (and URLs) are never split."""
    if screen is None:
        return text
    indent = text[: len(text) - len(text.lstrip())]
    return textwrap.fill(
        text.strip(),
        screen,
        initial_indent=indent,
        subsequent_indent="  ",
        break_long_words=False,
        break_on_hyphens=False,
    )


def _cut(cell: str, cap: int | None) -> str:
    """`cell`, or its first cap - 3 characters and '...' (ASCII: a terminal in any encoding shows it)."""
    return cell if cap is None or len(cell) <= cap else cell[: cap - 3] + "..."


def presets(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON list instead of a table."),
) -> None:
    """List the shipped band presets: the model's sample rate, bands, bins (spectrogram rows) and each band's hop.

    A CascadedNet's weights fix its bin count: only a preset with that many bins fits it.
    """
    from uvr_cli.catalog.presets import describe_preset, list_presets, load_preset

    try:
        described = [describe_preset(load_preset(name)) for name in list_presets()]
    except UvrError as exc:
        raise fail(exc) from None
    if as_json:
        emit(json.dumps(described, indent=1))
        return
    rows = [("NAME", "RATE", "BANDS", "BINS", "HOP (per band)")]
    rows += [
        (p["name"], str(p["sample_rate"]), str(p["bands"]), str(p["bins"]), "/".join(map(str, p["hop"])))
        for p in described
    ]
    _table(rows)


@models_app.callback(invoke_without_command=True)
def models(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (cache_dir, models) instead of a table."),
) -> None:
    """List the bundled model ("default") and every known UVR5 model (VR, MDX-Net, MDX23C, RoFormer): architecture,
    band preset (VR), primary stem, published scores, size, cached.

    SCORE is a published quality figure for the vocals / instrumental stems (e.g. SDR in dB), with its source named
    below the table and in --json ("scores": stem, metric, unit, value, aggregate, source, url); '-' where no public
    source has one.

    The cache is the folder named by UVR_MODEL_DIR, else ~/.cache/uvr (the platform's cache folder). Sizes are
    those of the files at hand, else the catalogue's where it knows them.
    """
    if ctx.invoked_subcommand is not None:
        return
    from uvr_cli.catalog.models import listing

    try:
        data = listing()
    except UvrError as exc:
        raise fail(exc) from None
    if as_json:
        emit(json.dumps(data, indent=1))
        return
    rows = [MODEL_COLUMNS]
    for m in data["models"]:
        if m.get("bundled"):
            rows.append(
                (
                    m["name"],
                    m["family"] or "-",
                    m["params"] or "-",
                    m["primary_stem"] or "-",
                    _score_cell(m["scores"]),
                    size_text(m["size_bytes"]),
                    "bundled" if m["installed"] else "not installed",
                )
            )
            continue
        arch = ", ".join(x for x in (m.get("family"), m.get("capacity")) if x) or "?"
        rows.append(
            (
                m["name"],
                arch,
                m.get("params") or ("?" if m.get("family") in VR_FAMILIES else "-"),  # only VR has band presets
                m.get("primary_stem") or "?",
                _score_cell(m.get("scores", [])),
                size_text(m.get("size_bytes")),
                "cached" if m["cached"] else "-",
            )
        )
    if "SCORE VOC/INST" not in _table(rows, caps=CELL_CAPS, drop=DROP_ORDER):
        for line in _score_sources(data["models"]):
            emit("\n".join(_wrap(part, _screen_width()) for part in line.split("\n")))
    emit(f"cache: {data['cache_dir']}")


def _score_cell(scores: list[dict]) -> str:
    """'vocals/instrumental' figures of the first source that has any, e.g. '8.10/13.43 SDR'; '-' for none."""
    if not scores:
        return "-"
    first = [s for s in scores if s["url"] == scores[0]["url"] and s["metric"] == scores[0]["metric"]]
    value = {s["stem"]: f"{s['value']:.2f}" for s in first}
    return f"{value.get('vocals', '-')}/{value.get('instrumental', '-')} {scores[0]['metric']}"


def _score_sources(models: list[dict]) -> list[str]:
    """One line per source behind the SCORE column: what the figures are and who published them, where."""
    seen: dict[tuple[str, ...], None] = {}
    for m in models:
        for s in m.get("scores", [])[:1]:
            seen[(s["metric"], s["unit"], s["aggregate"], s["source"], s["url"])] = None
    return [
        f"score: {metric} ({unit}) of the vocals/instrumental stems, {aggregate}; from {source}:\n  {url}"
        for metric, unit, aggregate, source, url in seen
    ]


@models_app.command("download")
def models_download(
    names: list[str] = typer.Argument(..., help="Model names or file names from `uvr models`."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bar."),
) -> None:
    """Download models into the cache: resumes an interrupted download, checks the UVR hash before use.

    Prints the path of each model on stdout. A failure names the URL and where a file fetched by other means goes
    (`uvr models add FILE` puts it there). Exit status 1 when a download failed, 2 for an unknown name.
    """
    from uvr_cli.catalog.download import download
    from uvr_cli.catalog.models import find, load_catalog

    try:
        catalogue = load_catalog()
        found = [find(n, catalogue) for n in names]
        unknown = [n for n, e in zip(names, found) if e is None]
        if unknown:
            raise UsageError(f"unknown model {unknown[0]!r}; `uvr models` lists the known ones")
        entries = [e for e in found if e is not None]
    except UvrError as exc:
        raise fail(exc) from None
    failed = 0
    for entry in entries:
        try:
            done = download(entry, progress=sys.stderr.isatty() and not quiet)
        except UvrError as exc:
            say(str(exc))
            failed += 1
            continue
        except KeyboardInterrupt:
            say(f"{entry.name}: interrupted; run the command again to resume the download")
            raise typer.Exit(130) from None
        if not quiet:
            config = f"; config {done.config.name}" if done.config else ""
            say(f"{entry.name}: {done.status}, {done.verified}{config}")
        emit(str(done.path))
    raise typer.Exit(EXIT_SOME_FAILED if failed else EXIT_OK)


@models_app.command("add")
def models_add(
    files: list[Path] = typer.Argument(
        ..., help="Weight files fetched by hand (e.g. from the URL that a failed `uvr models download` names)."
    ),
    config: Path | None = typer.Option(
        None, "--config", help="MDX23C/RoFormer: the checkpoint's YAML config (default: the .yaml beside it)."
    ),
) -> None:
    """Copy weight files into the cache under their catalogue names, once each one's UVR hash matches the catalogue.

    An MDX23C or RoFormer checkpoint needs its YAML config too: --config, or the .yaml of its name (or of the
    config's published name) beside it. Prints the cached path of each; a file the catalogue does not know, or
    whose hash or size disagrees with it, is refused with one line (exit status 1; 2 when a file is missing or
    unknown) and nothing is copied for it.
    """
    from uvr_cli.catalog.download import add_model

    if config is not None and len(files) != 1:
        raise fail(UsageError("--config goes with one checkpoint; add the others one at a time"))
    status = EXIT_OK
    for file in files:
        try:
            entry, done = add_model(file, config=config)
        except UvrError as exc:
            say(str(exc))
            status = max(status, exc.exit_code)
            continue
        say(f"{entry.name}: added, {done.verified}" + (f"; config {done.config.name}" if done.config else ""))
        emit(str(done.path))
    raise typer.Exit(status)


def info(
    model: str = typer.Argument(..., help="A model file (.pth, .onnx), the name of a downloaded model, or default."),
    params: str | None = typer.Option(
        None, "--params", help="For files uvr does not recognise: what --params would say when separating."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Describe a model file: family, architecture and capacity, UVR hash, registry match, parameters, stems.

    Architecture and capacity come from the file's tensors; exit status 3 when it is not a model uvr can load.
    """
    from uvr_cli.catalog.models import resolve_model
    from uvr_cli.engine.families import family_of
    from uvr_cli.settings import ModelOptions

    try:
        path = resolve_model(model)
        data = family_of(path).describe(path, ModelOptions(params=params))
    except UvrError as exc:
        raise fail(exc) from None
    if as_json:
        emit(json.dumps(data))
        return
    lines = {
        "file": f"{data['path']} ({size_text(data['size_bytes'])})",
        "family": f"{data['family']}: {data['architecture']}",
        "uvr hash": data["uvr_hash"],
        "recognised": data["recognised_by"] or "no: pass --params (and --primary) to use it",
        "catalogue": data["catalogue_name"] or "-",
        "stems": ", ".join(data["stems"]),
        **data["details"],
    }
    for key, value in lines.items():
        emit(f"{key + ':':14}{value}")
