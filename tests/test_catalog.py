"""The model catalogue, cache and downloader: `uvr models`, `uvr models download`, `uvr info`, `-m NAME`.

Downloads run the real CLI against an HTTP server on 127.0.0.1 that this file starts (with Range support, and
modes that cut a transfer short or ignore Range), through a test catalogue named by UVR_CATALOG.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import ROOT, uvr_command
from msst_models import BS, msst_model
from uvr_cli.catalog.models import load_catalog
from uvr_cli.catalog.presets import list_presets
from uvr_cli.catalog.registry import registry, uvr_model_hash
from uvr_cli.engine.families.mdx.params import table as mdx_table


class _Handler(BaseHTTPRequestHandler):
    """Serves `server.files`, honouring `Range: bytes=N-` unless `server.ignore_range`; `server.cut_at` cuts bodies."""

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        wanted = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
        if wanted and not srv.ignore_range:
            start = int(wanted.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        end = len(body) if srv.cut_at is None else min(len(body), srv.cut_at)
        self.wfile.write(body[start:end])
        self.wfile.flush()
        if srv.cut_at is not None:
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep test output clean
        return


@pytest.fixture()
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.requests, srv.ignore_range, srv.cut_at = {}, [], False, None
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture()
def env(tmp_path: Path) -> dict:
    """A private cache folder and catalogue for the CLI under test."""
    return dict(os.environ, UVR_MODEL_DIR=str(tmp_path / "cache"), UVR_CATALOG=str(tmp_path / "catalog.json"))


def write_catalog(env: dict, **entry: object) -> None:
    base = {
        "name": "testnet",
        "file": "testnet.pth",
        "uvr_hash": None,
        "family": "CascadedNet",
        "capacity": None,
        "params": "1band_sr44100_hl512",
        "primary_stem": "Instrumental",
        "size_bytes": None,
        "source": "test",
    }
    Path(env["UVR_CATALOG"]).write_text(json.dumps({"models": [{**base, **entry}]}))


def uvr(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*uvr_command(), *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture()
def weights(cascadednet_weights: Path) -> bytes:
    return cascadednet_weights.read_bytes()


def test_download_verifies_hash_and_the_model_is_then_found_by_name(server, env, weights, cascadednet_weights):
    server.files["/m/testnet.pth"] = weights
    url = f"http://127.0.0.1:{server.server_port}/m/testnet.pth"
    write_catalog(env, url=url, uvr_hash=uvr_model_hash(cascadednet_weights))
    done = uvr(env, "models", "download", "testnet")
    assert done.returncode == 0, done.stderr
    cached = Path(env["UVR_MODEL_DIR"]) / "testnet.pth"
    assert done.stdout.strip() == str(cached)
    assert "downloaded, UVR hash" in done.stderr
    assert cached.read_bytes() == weights
    assert not list(cached.parent.glob("*.part"))

    again = uvr(env, "models", "download", "TESTNET")  # names are case-insensitive; a cached file is not fetched
    assert again.returncode == 0 and "cached" in again.stderr
    assert len(server.requests) == 1

    listing = json.loads(uvr(env, "models", "--json").stdout)
    assert listing["cache_dir"] == env["UVR_MODEL_DIR"]
    row = next(m for m in listing["models"] if m["name"] == "testnet")
    assert row["cached"] and row["path"] == str(cached)

    info = uvr(env, "info", "testnet", "--json")  # -m / info accept a cached model's catalogue name
    assert info.returncode == 0, info.stderr
    described = json.loads(info.stdout)
    assert described["path"] == str(cached)
    assert (described["family"], described["network"], described["capacity"], described["bins"]) == (
        "VR",
        "CascadedNet",
        {"nout": 16, "nout_lstm": 128},
        1024,
    )
    assert described["catalogue_name"] == "testnet"

    song = Path(env["UVR_MODEL_DIR"]).parent / "song.wav"  # -m NAME in separate (an empty input: only the load runs)
    song.write_bytes(b"")
    sep = uvr(
        env, "separate", str(song), "-m", "testnet", "--params", "1band_sr44100_hl512", "-o", str(song.parent), "-v"
    )
    assert sep.returncode == 1, sep.stderr
    assert f"uvr: model {cached}:" in sep.stderr and "song.wav" in sep.stderr.splitlines()[-1]


@pytest.mark.parametrize("ignore_range", [False, True], ids=["range", "server-ignores-range"])
def test_interrupted_download_resumes_from_the_part_file(server, env, weights, ignore_range):
    server.files["/testnet.pth"] = weights
    write_catalog(env, url=f"http://127.0.0.1:{server.server_port}/testnet.pth", size_bytes=len(weights))
    server.cut_at = len(weights) // 3
    cut = uvr(env, "models", "download", "testnet", "-q")
    assert cut.returncode == 1
    assert "run the command again to resume" in cut.stderr
    part = Path(env["UVR_MODEL_DIR"]) / "testnet.pth.part"
    assert part.stat().st_size == len(weights) // 3
    assert not (Path(env["UVR_MODEL_DIR"]) / "testnet.pth").exists()

    server.cut_at, server.ignore_range = None, ignore_range
    resumed = uvr(env, "models", "download", "testnet", "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert server.requests[-1][1] == f"bytes={len(weights) // 3}-"
    assert (Path(env["UVR_MODEL_DIR"]) / "testnet.pth").read_bytes() == weights
    assert not part.exists()


def test_complete_part_file_is_verified_without_downloading_again(server, env, weights):
    server.files["/testnet.pth"] = weights
    write_catalog(env, url=f"http://127.0.0.1:{server.server_port}/testnet.pth")
    cache = Path(env["UVR_MODEL_DIR"])
    cache.mkdir()
    (cache / "testnet.pth.part").write_bytes(weights)
    done = uvr(env, "models", "download", "testnet")
    assert done.returncode == 0, done.stderr
    assert "unverified (no hash is known" in done.stderr  # said plainly, not hidden
    assert (cache / "testnet.pth").read_bytes() == weights


def test_hash_mismatch_deletes_the_download_and_fails(server, env, weights):
    server.files["/testnet.pth"] = weights
    write_catalog(env, url=f"http://127.0.0.1:{server.server_port}/testnet.pth", uvr_hash="0" * 32)
    done = uvr(env, "models", "download", "testnet")
    assert done.returncode == 1
    assert "hash mismatch" in done.stderr and "0" * 32 in done.stderr and "deleted" in done.stderr
    assert list(Path(env["UVR_MODEL_DIR"]).iterdir()) == []


def test_http_404_fails_with_the_status(server, env):
    write_catalog(env, url=f"http://127.0.0.1:{server.server_port}/missing.pth")
    done = uvr(env, "models", "download", "testnet")
    assert done.returncode == 1
    assert "HTTP 404" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_server_gone_fails_cleanly(env):
    with socket.socket() as sock:  # a port that nothing listens on any more
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    write_catalog(env, url=f"http://127.0.0.1:{port}/testnet.pth")
    done = uvr(env, "models", "download", "testnet")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [  # the way forward: the URL, and where a file fetched by hand belongs
        f"uvr: testnet: cannot reach 127.0.0.1:{port}: Connection refused; "
        f"or fetch http://127.0.0.1:{port}/testnet.pth by other means "
        "and run `uvr models add FILE`, which checks it and puts it at "
        f"{Path(env['UVR_MODEL_DIR']) / 'testnet.pth'}"
    ]


def test_unknown_model_name_is_a_usage_error(env):
    write_catalog(env, url="http://127.0.0.1:9/testnet.pth")
    done = uvr(env, "models", "download", "no-such-model")
    assert done.returncode == 2 and "unknown model 'no-such-model'" in done.stderr


def test_models_lists_the_shipped_catalogue_and_the_cache(tmp_path):
    env = dict(os.environ, UVR_MODEL_DIR=str(tmp_path))
    env.pop("UVR_CATALOG", None)
    (tmp_path / "my_own.pth").write_bytes(b"PK\x03\x04")
    (tmp_path / "HP5_only_main_vocal.pth").write_bytes(b"PK\x03\x04")
    table = uvr(env, "models")
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split()[:2] == ["NAME", "ARCHITECTURE"]
    assert re.match(r"default\s+CascadedASPPNet.*4band_v2\s+Instrumental.*bundled$", lines[1])  # the shipped model
    assert re.match(
        r"HP5_only_main_vocal\s+CascadedASPPNet.*4band_v2.*cached$",
        next(line for line in lines if line.startswith("HP5_only_main_vocal")),
    )
    assert any(line.startswith("my_own") for line in lines)
    assert lines[-1] == f"cache: {tmp_path}"
    data = json.loads(uvr(env, "models", "--json").stdout)
    names = [m["name"] for m in data["models"]]
    assert {
        "1_HP-UVR",
        "17_HP-Wind_Inst-UVR",
        "UVR-De-Echo-Normal",
        "HP2_all_vocals",
        "VR-DeEchoDeReverb",
        "MGM_MAIN_v4",
        "my_own",
    } <= set(names)


def test_shipped_catalogue_agrees_with_the_hash_table():
    entries = load_catalog()
    assert len(entries) >= 30
    hashes = registry()["hashes"]
    presets = set(list_presets())
    mdx = mdx_table()
    for entry in entries:
        assert entry.url.startswith("https://") and entry.url.endswith("/" + entry.file)
        assert entry.source
        if entry.family in ("MDX23C", "BS-RoFormer", "Mel-Band RoFormer"):  # a checkpoint and its YAML config
            assert entry.file.endswith(".ckpt") and entry.params is None
            assert entry.config_url and entry.config_url.startswith("https://") and entry.config_url.endswith(".yaml")
            continue
        if entry.family == "MDX-Net":  # UVR's MDX-Net table gives its parameters
            record = mdx[entry.uvr_hash]
            assert entry.file.endswith(".onnx") and entry.params is None and record["file"] == entry.file
            assert record["primary_stem"] == entry.primary_stem
            assert entry.capacity == f"n_fft {record['mdx_n_fft_scale_set']}, dim_f {record['mdx_dim_f_set']}, " + (
                f"dim_t {2 ** record['mdx_dim_t_set']}"
            )
            continue
        assert entry.params in presets
        assert entry.family in (None, "CascadedASPPNet", "CascadedNet")
        if entry.uvr_hash:
            assert hashes[entry.uvr_hash]["params"] == entry.params
            assert hashes[entry.uvr_hash]["primary_stem"] == entry.primary_stem
    assert sum(entry.family == "MDX-Net" for entry in entries) >= 25
    assert sum(entry.config_url is not None for entry in entries) >= 100


def test_a_broken_test_catalogue_is_reported(env):
    Path(env["UVR_CATALOG"]).write_text(json.dumps({"models": [{"name": "x", "file": "../x.pth", "url": "http://h/"}]}))
    done = uvr(env, "models")
    assert done.returncode == 2 and "plain file name" in done.stderr


def test_only_the_catalogue_opens_network_connections():
    # urllib.parse only handles strings; every other import here can open a connection
    pattern = re.compile(
        r"^\s*(?:import|from)\s+(?:urllib(?!\.parse\b)|http|socket|ssl|requests|ftplib)\b", re.MULTILINE
    )
    package = ROOT / "uvr_cli"
    users = sorted(
        p.relative_to(package).as_posix()
        for p in package.rglob("*.py")
        if pattern.search(p.read_text(encoding="utf-8"))
    )
    assert users == ["catalog/download.py"]


def test_info_describes_a_checkpoint(ch16_weights, tmp_path):
    done = subprocess.run([*uvr_command(), "info", str(ch16_weights)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "CascadedASPPNet (ch 16, 5 ASPP branches)" in done.stdout
    assert "unknown (not in the weights; give --params)" in done.stdout  # an ASPP net does not record its bins
    assert uvr_model_hash(ch16_weights) in done.stdout

    named = tmp_path / "HP2_all_vocals.pth"  # a catalogue file name: preset, and bins from the preset
    named.write_bytes(ch16_weights.read_bytes())
    done = subprocess.run([*uvr_command(), "info", str(named)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    fields = dict(line.split(":", 1) for line in done.stdout.splitlines())
    assert {k: v.strip() for k, v in fields.items() if k in ("bins", "recognised", "preset", "primary stem")} == {
        "bins": "672 (from the preset)",
        "recognised": "catalogue file name (uvr models)",
        "preset": "4band_v2",
        "primary stem": "Instrumental (the mask estimates the instrumental)",
    }


def test_info_on_a_file_that_is_not_a_model_exits_3(tmp_path):
    bad = tmp_path / "notes.pth"
    bad.write_text("not weights")
    done = subprocess.run([*uvr_command(), "info", str(bad)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3
    assert done.stderr.count("\n") == 1 and str(bad) in done.stderr


def test_models_add_checks_a_hand_fetched_file_and_copies_it_into_the_cache(env, tmp_path, cascadednet_weights):
    write_catalog(env, url="http://127.0.0.1:9/testnet.pth", uvr_hash=uvr_model_hash(cascadednet_weights))
    cache = Path(env["UVR_MODEL_DIR"])
    (tmp_path / "testnet.pth").write_bytes(b"PK\x03\x04 not the catalogue's file")
    refused = uvr(env, "models", "add", str(tmp_path / "testnet.pth"))
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.splitlines() == [
        f"uvr: {tmp_path / 'testnet.pth'}: not added as testnet: hash mismatch: the file's UVR hash is "
        f"{uvr_model_hash(tmp_path / 'testnet.pth')}, the catalogue expects {uvr_model_hash(cascadednet_weights)}"
    ]
    assert not cache.exists() or not any(cache.iterdir())

    fetched = shutil.copy(cascadednet_weights, tmp_path / "download (1).pth")  # matched by hash, whatever its name
    added = uvr(env, "models", "add", str(fetched))
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == str(cache / "testnet.pth")
    assert (cache / "testnet.pth").read_bytes() == cascadednet_weights.read_bytes()
    assert sorted(p.name for p in cache.iterdir()) == ["testnet.pth"]
    row = next(m for m in json.loads(uvr(env, "models", "--json").stdout)["models"] if m["name"] == "testnet")
    assert row["cached"] and row["size_bytes"] == cascadednet_weights.stat().st_size  # the size of the file at hand

    unknown = uvr(env, "models", "add", str(tmp_path / "nothing.pth"))
    assert unknown.returncode == 2 and unknown.stderr.splitlines() == [f"uvr: {tmp_path / 'nothing.pth'}: no such file"]


def test_default_names_the_bundled_model(tmp_path):
    info = subprocess.run(
        [*uvr_command(), "info", "default", "--json"], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert info.returncode == 0, info.stderr
    assert Path(json.loads(info.stdout)["path"]) == ROOT / "models/default.pth"


def test_presets_show_rate_bands_bins_and_hop(tmp_path):
    table = subprocess.run([*uvr_command(), "presets"], capture_output=True, text=True, timeout=120)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["NAME", "RATE", "BANDS", "BINS", "HOP", "(per", "band)"]
    assert "4band_v2 44100 4 672 80/80/160/480" in [" ".join(line.split()) for line in lines]
    listed = json.loads(
        subprocess.run([*uvr_command(), "presets", "--json"], capture_output=True, text=True, timeout=120).stdout
    )
    assert [p["name"] for p in listed] == list_presets()
    assert next(p for p in listed if p["name"] == "4band_v2") == {
        "name": "4band_v2",
        "sample_rate": 44100,
        "bands": 4,
        "bins": 672,
        "hop": [80, 80, 160, 480],
        "band_rates": [7350, 7350, 14700, 44100],
    }


@pytest.mark.parametrize(
    "params, message",
    [
        (
            "4band_2",
            "unknown preset '4band_2': did you mean 4band_v2, 4band_v3 or 4band_v2_sn? (`uvr presets` lists "
            "the 26 presets)",
        ),
        (
            "4band_v2",
            "cascadednet_nout16_bins1024_fp16.pth: the weights need a preset with 1024 bins, but 4band_v2 "
            "has 672; presets with 1024: 1band_sr16000_hl512, 1band_sr32000_hl512, 1band_sr33075_hl384, "
            "1band_sr44100_hl1024, 1band_sr44100_hl512, 1band_sr44100_hl512_cut",
        ),
    ],
)
def test_a_preset_that_does_not_fit_names_the_ones_that_might(tmp_path, cascadednet_weights, params, message):
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    proc = subprocess.run(
        [*uvr_command(), "separate", "a.wav", "-m", str(cascadednet_weights), "--params", params],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 3
    assert proc.stderr.splitlines() == [f"uvr: {message}"]


@pytest.fixture()
def roformer(tmp_path: Path) -> Path:
    folder = tmp_path / "made"
    folder.mkdir()
    return msst_model(folder, "tiny_roformer", BS)


def test_a_roformer_download_brings_its_config_from_a_mirror(server, env, roformer):
    """The checkpoint's first URL answers 404, so its mirror serves it; the config goes beside it under the
    checkpoint's name, where separation finds it."""
    port = server.server_port
    server.files["/mirror/tiny_roformer.ckpt"] = roformer.read_bytes()
    server.files["/configs/config_tiny.yaml"] = roformer.with_suffix(".yaml").read_bytes()
    write_catalog(
        env,
        name="tiny_roformer",
        file="tiny_roformer.ckpt",
        url=f"http://127.0.0.1:{port}/gone/tiny_roformer.ckpt",
        mirror_url=f"http://127.0.0.1:{port}/mirror/tiny_roformer.ckpt",
        config_url=f"http://127.0.0.1:{port}/configs/config_tiny.yaml",
        uvr_hash=uvr_model_hash(roformer),
        family="BS-RoFormer",
        params=None,
    )
    done = uvr(env, "models", "download", "tiny_roformer")
    assert done.returncode == 0, done.stderr
    cache = Path(env["UVR_MODEL_DIR"])
    assert sorted(p.name for p in cache.iterdir()) == ["tiny_roformer.ckpt", "tiny_roformer.yaml"]
    assert "config tiny_roformer.yaml" in done.stderr
    assert [path for path, _ in server.requests] == [
        "/gone/tiny_roformer.ckpt",
        "/mirror/tiny_roformer.ckpt",
        "/configs/config_tiny.yaml",
    ]
    described = json.loads(uvr(env, "info", "tiny_roformer", "--json").stdout)
    assert described["family"] == "BS-RoFormer" and described["config"] == str(cache / "tiny_roformer.yaml")

    (cache / "tiny_roformer.yaml").unlink()  # a missing config alone is fetched again; the checkpoint is kept
    server.files["/configs/config_tiny.yaml"] = b"model: [unclosed\n"
    broken = uvr(env, "models", "download", "tiny_roformer")
    assert broken.returncode == 1 and "the config download is not a usable config" in broken.stderr
    assert len(broken.stderr.splitlines()) == 1
    assert sorted(p.name for p in cache.iterdir()) == ["tiny_roformer.ckpt"]
    row = next(m for m in json.loads(uvr(env, "models", "--json").stdout)["models"] if m["name"] == "tiny_roformer")
    assert not row["cached"]


def test_models_add_takes_a_checkpoint_with_its_config(env, tmp_path, roformer):
    write_catalog(
        env,
        name="tiny_roformer",
        file="tiny_roformer.ckpt",
        url="http://127.0.0.1:9/tiny_roformer.ckpt",
        config_url="http://127.0.0.1:9/configs/config_tiny.yaml",
        uvr_hash=uvr_model_hash(roformer),
        family="BS-RoFormer",
        params=None,
    )
    fetched = tmp_path / "fetched"
    fetched.mkdir()
    shutil.copy(roformer, fetched / "tiny_roformer.ckpt")
    alone = uvr(env, "models", "add", str(fetched / "tiny_roformer.ckpt"))
    assert alone.returncode == 2 and "needs its YAML config" in alone.stderr
    assert "http://127.0.0.1:9/configs/config_tiny.yaml" in alone.stderr
    shutil.copy(roformer.with_suffix(".yaml"), fetched / "config_tiny.yaml")  # as published, beside it
    added = uvr(env, "models", "add", str(fetched / "tiny_roformer.ckpt"))
    assert added.returncode == 0, added.stderr
    cache = Path(env["UVR_MODEL_DIR"])
    assert (cache / "tiny_roformer.yaml").read_bytes() == roformer.with_suffix(".yaml").read_bytes()
    assert (cache / "tiny_roformer.ckpt").read_bytes() == roformer.read_bytes()
