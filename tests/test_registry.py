"""Recognising weight files: catalogue names, RVC's name rules, preset names, CascadedNet bins, unknown files."""

from __future__ import annotations

import shutil

import pytest

from uvr_cli.catalog.registry import identify, registry, uvr_model_hash


@pytest.fixture
def copy_as(tmp_path, ch16_weights):
    def make(name: str):
        target = tmp_path / name
        shutil.copy(ch16_weights, target)
        return target

    return make


def test_catalogue_file_names_give_their_preset_and_stem(copy_as):
    identity = identify(copy_as("2_HP-UVR.pth"), False, None)
    assert (identity.params, identity.primary_stem, identity.primary_is_vocals) == ("4band_v2", "Instrumental", False)
    assert "catalogue" in identity.how


@pytest.mark.parametrize(
    ("name", "cascaded", "params", "vocals"),
    [
        ("my_HP3_copy.pth", False, "4band_v2", True),
        ("my_HP5_copy.pth", False, "4band_v2", False),
        ("VR-DeEchoSomething.pth", True, "4band_v3", True),
        ("trained_on_3band_44100_msb2.pth", False, "3band_44100_msb2", False),
    ],
)
def test_rvc_and_preset_name_rules(copy_as, name, cascaded, params, vocals):
    identity = identify(copy_as(name), cascaded, 672 if cascaded else None)
    assert identity.params == params and identity.primary_is_vocals is vocals


def test_cascadednet_bins_decide_when_nothing_else_does(copy_as):
    assert identify(copy_as("mystery.pth"), True, 896).params == "4band_v4_ms_fullband"
    assert identify(copy_as("mystery.pth"), True, 1024).params is None


def test_unknown_files_have_no_preset(copy_as):
    identity = identify(copy_as("mystery.pth"), False, None)
    assert identity.params is None and identity.how == "unknown file"


def test_hash_table_entries_name_shipped_presets():
    from uvr_cli.catalog.presets import list_presets

    presets = set(list_presets())
    assert all(entry["params"] in presets for entry in registry()["hashes"].values())
    assert all(params in presets for params in registry()["legacy_md5"].values())


def test_uvr_hash_of_a_small_file_is_the_whole_file_md5(tmp_path):
    import hashlib

    path = tmp_path / "small.pth"
    path.write_bytes(b"abc" * 1000)
    assert uvr_model_hash(path) == hashlib.md5(path.read_bytes()).hexdigest()


def test_the_bundled_default_model_is_recognised_by_its_description():
    import json
    from importlib import resources

    from uvr_cli.catalog.models import bundled_default

    path = bundled_default()
    description = json.loads((resources.files("uvr_models") / "default.json").read_text())
    identity = identify(path, False, None)
    assert identity.params == description["params"] and identity.how == "uvr's bundled default model"
    assert uvr_model_hash(path) == description["uvr_hash"]
