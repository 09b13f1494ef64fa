"""Published scores in the catalogue: `uvr models` shows them with their source; the data file is validated."""

from __future__ import annotations

import copy
import json
import sys

import pytest

from conftest import ROOT, on_terminal, run_uvr
from uvr_cli.catalog.models import load_catalog
from uvr_cli.catalog.scores import parse_scores, published_scores
from uvr_cli.errors import UsageError

SHIPPED = json.loads((ROOT / "models" / "scores.json").read_text(encoding="utf-8"))
SOURCE_URL = SHIPPED["sources"]["audio-separator-musdb18"]["url"]


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UVR_MODEL_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("UVR_CATALOG", raising=False)


def test_the_listing_shows_scores_and_their_source(empty_cache):
    result = run_uvr("models")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    row = {line.split()[0]: line for line in lines if line and not line.startswith((" ", "score:", "cache:"))}
    assert "8.10/13.43 SDR" in row["2_HP-UVR"]  # vocals 8.10224, instrumental 13.4269 dB as published
    assert "4.64/11.96 SDR" in row["5_HP-Karaoke-UVR"]
    assert row["HP2_all_vocals"].split()[-3] == "-"  # no public figure for RVC's file: '-', never a guess
    assert "SCORE VOC/INST" in lines[0]
    note = next(i for i, line in enumerate(lines) if line.startswith("score: SDR (dB)"))
    assert "median over 36 MUSDB18 tracks" in lines[note] and lines[note + 1].strip() == SOURCE_URL


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
@pytest.mark.parametrize("columns", [80, 100, 200])
def test_the_listing_fits_the_terminal(empty_cache, columns):
    """Every line fits but an unbreakable word (a URL, a model name longer than the screen); every model's name is
    whole at the start of a line; the columns left out are named. To a pipe, nothing is cut (the test above)."""
    status, shown, _ = on_terminal("models", columns=columns)
    assert status == 0
    lines = shown.decode().replace("\r\n", "\n").splitlines()
    assert all(len(line) <= columns or " " not in line.strip() for line in lines), max(lines, key=len)
    names = [m["name"] for m in json.loads(run_uvr("models", "--json").stdout)["models"]]
    assert {line.split()[0] for line in lines if line and not line.startswith(" ")} >= set(names)
    if columns < 200:
        assert any(line.startswith(f"(left out at {columns} columns: SIZE") for line in lines)
        assert "PRESET" not in lines[0]
    else:
        assert "PRESET" in lines[0] and not any(line.startswith("(left out") for line in lines)
    assert "SCORE VOC/INST" in lines[0] or not any(line.startswith("score:") for line in lines)


def test_the_json_carries_metric_value_and_source(empty_cache):
    result = run_uvr("models", "--json")
    assert result.returncode == 0, result.stderr
    rows = {m["name"]: m for m in json.loads(result.stdout)["models"]}
    figures = {s["stem"]: s for s in rows["9_HP2-UVR"]["scores"]}
    assert (figures["vocals"]["value"], figures["instrumental"]["value"]) == (7.90542, 13.4887)
    for figure in figures.values():
        assert (figure["metric"], figure["unit"], figure["url"]) == ("SDR", "dB", SOURCE_URL)
        assert "audio-separator" in figure["source"] and "MUSDB18" in figure["aggregate"]
    assert rows["VR-DeEchoNormal"]["scores"] == [] and rows["default"]["scores"] == []
    assert "backing-vocal" in rows["UVR-BVE-4B_SN-44100-1"]["scores"][0]["note"]


def test_every_scored_file_is_a_catalogue_model():
    catalogue = {entry.file.lower() for entry in load_catalog()}
    assert set(published_scores()) <= catalogue
    assert len(published_scores()) == len(SHIPPED["scores"]) == 21 + 22 + 25  # VR, MDX-Net, MDX23C and RoFormer


def _broken(change) -> dict:
    data = copy.deepcopy(SHIPPED)
    change(data)
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["sources"]["audio-separator-musdb18"].update(url="ftp://x"), "'url' must be an http or https URL"),
        (lambda d: d["sources"]["audio-separator-musdb18"].pop("metric"), "'metric' must be a non-empty string"),
        (lambda d: d["scores"][0].update(source="nobody"), "'source' must name one of the sources"),
        (lambda d: d["scores"][0].update(vocals="7.6"), "'vocals' must be a number"),
        (lambda d: d["scores"][0].update(vocals=float("nan")), "'vocals' must be a number"),
        (lambda d: d["scores"][0].update(file="../1_HP-UVR.pth"), "'file' must be a plain weight file name"),
        (lambda d: [d["scores"][0].pop(k) for k in ("vocals", "instrumental")], "needs a figure for vocals"),
        (lambda d: d["scores"].append(dict(d["scores"][0])), "has two SDR figures from the same source"),
        (lambda d: d.pop("sources"), 'needs a "sources" object'),
    ],
)
def test_a_malformed_scores_file_is_one_line_naming_it(change, message):
    with pytest.raises(UsageError, match=message) as caught:
        parse_scores(_broken(change), "models/scores.json")
    assert str(caught.value).startswith("models/scores.json: ") and "\n" not in str(caught.value)
