"""Published quality figures for catalogue models (models/scores.json), so `uvr models` can help people choose.

The file holds only figures found in a public source, as published, each with the source named; a model with no
entry has no figure (the listing shows '-'). It is validated on load: a malformed entry is one line naming the file
and the entry, never a traceback or a silently missing score.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from uvr_cli.errors import UsageError

SCORES_FILE = "scores.json"
SCORE_STEMS = ("vocals", "instrumental")
_SOURCE_KEYS = ("title", "url", "metric", "unit", "aggregate")


@dataclass(frozen=True)
class Score:
    """One published figure: `value` of `metric` (in `unit`, aggregated as `aggregate`) for one stem of one model."""

    stem: str  # "vocals" or "instrumental"
    metric: str  # e.g. "SDR"
    unit: str  # e.g. "dB"
    value: float
    aggregate: str  # e.g. "median over 36 MUSDB18 tracks"
    source: str  # who published it, and where
    url: str
    note: str | None = None


def _sources(raw: object, where: str) -> dict[str, dict[str, str]]:
    """The "sources" table: each needs a title, an http(s) url, a metric, a unit and how it was aggregated."""
    if not isinstance(raw, dict) or not raw:
        raise UsageError(f'{where}: needs a "sources" object naming where the figures come from')
    for key, source in raw.items():
        if not isinstance(source, dict):
            raise UsageError(f"{where}: source {key!r} must be a JSON object")
        for field in _SOURCE_KEYS:
            if not isinstance(source.get(field), str) or not source[field].strip():
                raise UsageError(f"{where}: source {key!r}: '{field}' must be a non-empty string")
        if urllib.parse.urlsplit(source["url"]).scheme not in ("http", "https"):
            raise UsageError(f"{where}: source {key!r}: 'url' must be an http or https URL")
    return raw


def _figures(entry: object, sources: dict[str, dict[str, str]], where: str) -> tuple[str, list[Score]]:
    """One "scores" entry: a plain file name, a known source, and a finite number for at least one stem."""
    if not isinstance(entry, dict):
        raise UsageError(f"{where}: each score must be a JSON object")
    file = entry.get("file")
    if not isinstance(file, str) or not file or Path(file).name != file:
        raise UsageError(f"{where}: score {file!r}: 'file' must be a plain weight file name")
    label = f"{where}: score for {file}"
    source = sources.get(entry.get("source"))  # type: ignore[arg-type]
    if source is None:
        raise UsageError(f"{label}: 'source' must name one of the sources ({', '.join(sources)})")
    note = entry.get("note")
    if note is not None and not isinstance(note, str):
        raise UsageError(f"{label}: 'note' must be a string")
    figures = []
    for stem in SCORE_STEMS:
        value = entry.get(stem)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UsageError(f"{label}: '{stem}' must be a number")
        figures.append(
            Score(
                stem=stem,
                metric=source["metric"],
                unit=source["unit"],
                value=float(value),
                aggregate=source["aggregate"],
                source=source["title"],
                url=source["url"],
                note=note,
            )
        )
    if not figures:
        raise UsageError(f"{label}: needs a figure for {' or '.join(SCORE_STEMS)}")
    return file, figures


def parse_scores(data: object, where: str) -> dict[str, list[Score]]:
    """Validate a scores document; returns the figures by lower-case weight file name."""
    if not isinstance(data, dict) or not isinstance(data.get("scores"), list):
        raise UsageError(f'{where}: needs a "scores" list')
    sources = _sources(data.get("sources"), where)
    table: dict[str, list[Score]] = {}
    for entry in data["scores"]:
        file, figures = _figures(entry, sources, where)
        known = table.setdefault(file.lower(), [])
        if any((old.stem, old.url) == (new.stem, new.url) for old in known for new in figures):
            raise UsageError(f"{where}: {file} has two {figures[0].metric} figures from the same source")
        known.extend(figures)
    return table


@lru_cache(maxsize=1)
def published_scores() -> dict[str, list[Score]]:
    """The shipped figures (models/scores.json) by lower-case file name; empty when the file is not installed."""
    shipped = resources.files("uvr_models") / SCORES_FILE
    where = f"models/{SCORES_FILE}"
    if not shipped.is_file():
        return {}
    try:
        data = json.loads(shipped.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UsageError(f"{where}: not valid JSON ({exc})") from None
    return parse_scores(data, where)
