"""`uvr separate` as users run it: the real command in a subprocess, on short generated audio.

Separations are the expensive part (a random-weight ch16 net, one network call per file), so one batch run is
shared and later tests reuse its outputs (reruns that skip, pipes, progress on a terminal). Usage errors are
caught before torch is imported, so those tests cost a process start each.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, has_ffmpeg, on_terminal, tone_mix, uvr_command

# The cheapest honest setup: the ASPP net does not fix its bin count, so a 256-bin preset is valid for it, and a
# window whose core (window - 2 * 128 frames of context) spans a whole 1 s file needs one network call per file.
PARAMS = ["--params", "1band_sr44100_hl256", "--window", "448", "--batch-size", "8", "--device", "cpu"]
ENV = dict(os.environ, OMP_NUM_THREADS="1")  # the test machine is shared: one thread per separation


def uvr(*args: str, cwd: Path, stdin: bytes | None = None, **kwargs: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*uvr_command(), *args], cwd=cwd, input=stdin, capture_output=True, env=ENV, timeout=300, **kwargs
    )


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, ch16_weights: Path) -> SimpleNamespace:
    """songs/a.wav (stereo, 24-bit, 44.1 kHz, 1 s) and songs/sub/b.wav (mono, 16-bit, 22.05 kHz, 0.5 s), plus a
    missing input, separated in one --json run into out/."""
    root = tmp_path_factory.mktemp("batch")
    (root / "songs" / "sub").mkdir(parents=True)
    sf.write(root / "songs/a.wav", tone_mix(1.0), 44100, subtype="PCM_24")
    sf.write(root / "songs/sub/b.wav", tone_mix(0.5, rate=22050, channels=1, seed=1), 22050, subtype="PCM_16")
    model = ["-m", str(ch16_weights), *PARAMS]
    proc = uvr("separate", "songs", "missing.wav", "-o", "out", "--json", *model, cwd=root)
    records = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    return SimpleNamespace(root=root, proc=proc, records=records, model=model)


def mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def visible(folder: Path) -> list[str]:
    """The files a user sees (not the hidden .NAME.uvr.json settings records)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def test_batch_goes_on_past_a_failed_input_and_exits_1(batch):
    assert batch.proc.returncode == 1, batch.proc.stderr
    a, b, missing = batch.records
    assert [r["input"] for r in batch.records] == ["songs/a.wav", "songs/sub/b.wav", "missing.wav"]
    assert a["status"] == b["status"] == "ok" and a["error"] is None
    assert a["outputs"] == {
        "vocals": str(batch.root / "out/a_vocals.wav"),
        "instrumental": str(batch.root / "out/a_instrumental.wav"),
    }
    assert a["duration_s"] == 1.0 and b["duration_s"] == 0.5
    assert a["wall_s"] > 0 and a["realtime_factor"] == pytest.approx(a["wall_s"] / 1.0, rel=0.01)
    assert a["realtime_factor"] == round(a["realtime_factor"], 3) and a["agg_applied"] is True
    assert missing["status"] == "error" and missing["outputs"] == {} and "missing.wav: no such file" in missing["error"]
    assert set(missing) == set(a)  # every record has the same fields
    stderr = batch.proc.stderr.decode()
    assert stderr.count("missing.wav") == 1 and stderr.count("\n") == 1, stderr  # one line for the failed input
    assert "\r" not in stderr  # no progress bars when stderr is not a terminal


def test_outputs_keep_the_inputs_rate_channels_and_bit_depth(batch):
    out = batch.root / "out"
    for stem in ("vocals", "instrumental"):
        a = sf.info(out / f"a_{stem}.wav")
        assert (a.samplerate, a.channels, a.frames, a.subtype) == (44100, 2, 44100, "PCM_24")
        b = sf.info(out / f"b_{stem}.wav")
        assert (b.samplerate, b.channels, b.frames, b.subtype) == (22050, 1, 11025, "PCM_16")
    assert visible(out) == ["a_instrumental.wav", "a_vocals.wav", "b_instrumental.wav", "b_vocals.wav"]
    records = sorted(p.name for p in out.iterdir() if p.name.startswith("."))
    assert records == [f".{name}.uvr.json" for name in visible(out)]  # and no temporary files are left behind


def test_a_rerun_skips_finished_inputs_and_prints_their_paths(batch):
    before = mtimes(batch.root / "out")
    proc = uvr("separate", "songs", "-o", "out", "-v", "--skip-existing", *batch.model, cwd=batch.root)
    assert proc.returncode == 0, proc.stderr
    assert (
        proc.stderr
        == b"uvr: skipping every input: outputs already made with these settings (--overwrite makes them again)\n"
    )  # and -v no more: with nothing to do, no model is loaded
    names = ("a_vocals.wav", "a_instrumental.wav", "b_vocals.wav", "b_instrumental.wav")
    assert proc.stdout.decode().split() == [str(batch.root / "out" / n) for n in names]
    assert mtimes(batch.root / "out") == before


def test_overwrite_redoes_an_input_found_by_our_own_glob(batch):
    before = mtimes(batch.root / "out")
    proc = uvr("separate", "songs/**/b.wav", "--overwrite", "-o", "out", "--json", *batch.model, cwd=batch.root)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "ok"
    after = mtimes(batch.root / "out")
    assert after["b_vocals.wav"] > before["b_vocals.wav"] and after["a_vocals.wav"] == before["a_vocals.wav"]


def test_separation_options_reach_the_engine_and_the_output(batch):
    proc = uvr(
        "separate",
        "songs/a.wav",
        "--stem",
        "vocals",
        "-f",
        "flac",
        "--bit-depth",
        "16",
        "--sample-rate",
        "32000",
        "--name",
        "{model}/{name}-{stem}-{agg}.{ext}",
        "--agg",
        "20",
        "--tta",
        "--post-process",
        "--high-end",
        "none",
        "--primary",
        "vocals",
        "--precision",
        "fp32",
        "-v",
        "-o",
        "opts",
        *batch.model,
        cwd=batch.root,
    )
    assert proc.returncode == 0, proc.stderr
    written = batch.root / "opts/cascaded_aspp_ch16_fp16/a-vocals-20.flac"
    assert proc.stdout.decode().split() == [str(written)]
    assert visible(written.parent) == [written.name]  # --stem vocals: no instrumental
    info = sf.info(written)
    assert (info.format, info.subtype, info.samplerate, info.channels, info.frames) == (
        "FLAC",
        "PCM_16",
        32000,
        2,
        32000,
    )
    stderr = proc.stderr.decode()
    assert "primary stem vocals" in stderr and "device cpu, float32" in stderr and "batch size 8" in stderr
    assert "agg 20, tta on, post-process on, high end none, window 448" in stderr


def test_mp3_output_at_the_models_rate_for_a_mono_input(batch):
    proc = uvr(
        "separate",
        "songs/sub/b.wav",
        "--stem",
        "instrumental",
        "-f",
        "mp3",
        "--sample-rate",
        "model",
        "-o",
        "mp3",
        *batch.model,
        cwd=batch.root,
    )
    assert proc.returncode == 0, proc.stderr
    info = sf.info(batch.root / "mp3/b_instrumental.mp3")
    assert (info.samplerate, info.channels) == (44100, 1)
    assert info.duration == pytest.approx(0.5, abs=0.06)


def test_an_output_format_that_cannot_hold_the_input_fails_that_input_before_separating(batch):
    sf.write(batch.root / "hi.wav", tone_mix(0.2, rate=96000), 96000)
    proc = uvr("separate", "hi.wav", "-f", "mp3", "-o", "hi", *batch.model, cwd=batch.root)
    assert proc.returncode == 1
    (line,) = proc.stderr.decode().splitlines()
    assert "hi.wav" in line and line.endswith(
        ": mp3 cannot store 96000 Hz audio (only 8000, 11025, 12000, 16000, "
        "22050, 24000, 32000, 44100, 48000); choose wav, flac or ogg, or "
        "another output sample rate"
    ), line
    assert not (batch.root / "hi").exists()


def test_stdin_to_stdout_in_a_pipeline(batch):
    """The README's `ffmpeg -i talk.mp4 -f wav - | uvr separate - --stem vocals -o - | ffmpeg -i - voice.mp3`."""
    args = [*uvr_command(), "separate", "-", "--stem", "vocals", "-o", "-", *batch.model]
    if not has_ffmpeg():  # the same path without ffmpeg: WAV bytes in, WAV bytes out
        proc = subprocess.run(
            args, input=(batch.root / "songs/a.wav").read_bytes(), capture_output=True, env=ENV, timeout=300
        )
        assert proc.returncode == 0, proc.stderr
        assert sf.info(io.BytesIO(proc.stdout)).frames == 44100
        return
    ffmpeg = shutil.which("ffmpeg")
    voice = batch.root / "voice.mp3"
    quiet = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error"]
    decode = subprocess.Popen([*quiet, "-i", "songs/a.wav", "-f", "wav", "-"], cwd=batch.root, stdout=subprocess.PIPE)
    separate = subprocess.Popen(
        args, cwd=batch.root, stdin=decode.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV
    )
    encode = subprocess.Popen([*quiet, "-i", "-", str(voice)], cwd=batch.root, stdin=separate.stdout)
    decode.stdout.close()
    separate.stdout.close()
    assert encode.wait(timeout=300) == 0
    assert separate.wait(timeout=300) == 0, separate.stderr.read()
    assert decode.wait(timeout=60) == 0
    assert separate.stderr.read() == b""
    info = sf.info(voice)
    assert info.channels == 2 and info.duration == pytest.approx(1.0, abs=0.06)


def test_a_closed_stdout_ends_the_run_quietly(batch):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before uvr prints anything, as with `| head -0`
    proc = subprocess.run(
        [*uvr_command(), "separate", "songs", "-o", "out", *batch.model],
        cwd=batch.root,
        stdout=write_end,
        stderr=subprocess.PIPE,
        env=ENV,
        timeout=300,
    )
    os.close(write_end)
    assert proc.returncode == 141
    assert proc.stderr.decode().splitlines() == [  # the batch is already done; nothing about the closed pipe
        "uvr: skipping every input: outputs already made with these settings (--overwrite makes them again)"
    ]


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
@pytest.mark.parametrize("quiet", [False, True], ids=["terminal", "terminal-quiet"])
def test_progress_bars_appear_on_a_terminal_unless_quiet(batch, quiet):
    args = ["separate", "songs", "-o", "out", *batch.model, *(["-q"] if quiet else [])]
    status, shown, results = on_terminal(*args, columns=100, stream="stderr", cwd=batch.root, env=ENV)
    assert status == 0
    assert len(results.split()) == 4  # results still go to stdout
    assert (b"all files" in shown and b"2/2" in shown) != quiet, shown


@pytest.mark.parametrize(
    "args, message",
    [
        (["a.wav", "-o", "-"], "add --stem with one of vocals, instrumental"),
        (["a.wav", "-o", "-", "--stem", "vocals", "--json"], "--json and -o -"),
        (["a.wav", "-f", "flac", "--bit-depth", "32f"], "flac cannot store bit depth 32f"),
        (["a.wav", "-f", "ogg", "--bit-depth", "24"], "ogg has no bit depth"),
        (["a.wav", "-f", "mp3", "--sample-rate", "33075"], "mp3 cannot store 33075 Hz"),
        (["a.wav", "--sample-rate", "fast"], "--sample-rate 'fast'"),
        (["a.wav", "--name", "{title}.{ext}"], "unknown field {title}"),
        (["x/a.wav", "y/a.wav"], "would both write"),
        (["a.wav", "a.flac"], "--name '{name}_{inext}_{stem}.{ext}'"),
        (["a.wav", "--name", "{name}_{stem}.mp3"], "ends in .mp3 but the output format is wav"),
        (["a.wav", "--stem", "drums"], "drums"),
        (["a.wav", "--precision", "int8"], "--precision int8 runs in ONNX Runtime on the CPU: add --fast"),
        (["a.wav", "--precision", "fp16", "--device", "cpu"], "--precision fp16 needs a GPU; on the CPU use fp32"),
    ],
)
def test_usage_errors_exit_2_before_any_work(tmp_path, args, message):
    for rel in ("a.wav", "a.flac", "x/a.wav", "y/a.wav"):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        # real audio: inputs whose names clash are decoded to see that both can be read (the rest are not read)
        sf.write(tmp_path / rel, np.zeros((100, 2)), 44100, format=rel.rsplit(".", 1)[1].upper())
    proc = (
        uvr("separate", *args, "-o", "out", cwd=tmp_path, stdin=b"")
        if "-o" not in args
        else uvr("separate", *args, cwd=tmp_path, stdin=b"")
    )
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr.decode()
    assert "Traceback" not in proc.stderr.decode()
    assert not (tmp_path / "out").exists()


def test_a_clash_with_an_unreadable_input_fails_that_input_alone(tmp_path):
    """song.wav and song.flac would write the same stems; the one that cannot be read fails on its own line
    instead of refusing the batch, and the other is separated under the usual names."""
    sf.write(tmp_path / "song.wav", tone_mix(1.0), 44100)
    (tmp_path / "song.flac").write_bytes(b"fLaC but not really")
    proc = uvr("separate", "song.wav", "song.flac", "-o", "out", "--json", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    records = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert [(r["input"], r["status"]) for r in records] == [("song.wav", "ok"), ("song.flac", "error")]
    assert "cannot read 'song.flac'" in records[1]["error"] and "would both write" not in proc.stderr.decode()
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == [
        "song_instrumental.wav",
        "song_vocals.wav",
    ]
    # both unreadable: each fails for its own reason, and nothing is written
    (tmp_path / "song.wav").write_bytes(b"RIFF but not really")
    proc = uvr("separate", "song.wav", "song.flac", "-o", "out2", cwd=tmp_path)
    said = proc.stderr.decode()
    assert proc.returncode == 1 and "cannot read 'song.wav'" in said and "cannot read 'song.flac'" in said, said
    assert not (tmp_path / "out2").exists()


@pytest.mark.parametrize(
    "model, message",
    [
        ("missing.pth", "no such model file"),
        ("defualt", "; did you mean default?"),
        ("2_HP_UVR", "; did you mean 2_HP-UVR or 1_HP-UVR?"),
        ("notes.pth", "notes.pth: not a PyTorch weight file"),
        (None, "pass --params NAME"),
    ],
)
def test_a_model_that_cannot_be_loaded_exits_3(tmp_path, ch16_weights, model, message):
    sf.write(tmp_path / "a.wav", tone_mix(0.1), 44100)
    (tmp_path / "notes.pth").write_text("not weights")
    proc = uvr("separate", "a.wav", "-m", model or str(ch16_weights), cwd=tmp_path)  # the ch16 file is unknown
    assert proc.returncode == 3
    stderr = proc.stderr.decode()
    assert message in stderr and stderr.count("\n") == 1, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "notes.pth"]  # nothing was written


def test_the_python_api_gives_what_the_cli_wrote(batch, ch16_weights, tmp_path, request):
    """`uvr_cli.Separator` is what the CLI drives: same settings, same stems (up to the 24-bit file format)."""
    import torch

    import uvr_cli

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the CLI runs in these tests (OMP_NUM_THREADS=1): the machine is shared
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    sep = uvr_cli.Separator(model=ch16_weights, params="1band_sr44100_hl256", window=448, batch_size=8, device="cpu")
    audio, rate = sf.read(batch.root / "songs/a.wav", dtype="float32")
    stems = sep.separate(audio, rate)
    assert set(stems) == {"vocals", "instrumental"}
    for stem, wave in stems.items():
        written, _ = sf.read(batch.root / f"out/a_{stem}.wav", dtype="float32")
        assert wave.shape == written.shape == (44100, 2)
        assert np.max(np.abs(np.clip(wave, -1, 1) - written)) < 2**-22

    result = sep.separate_file(str(batch.root / "songs/sub/b.wav"), {"vocals": str(tmp_path / "v.flac")}, fmt="flac")
    assert (result.status, result.outputs, result.duration_s) == ("ok", {"vocals": str(tmp_path / "v.flac")}, 0.5)
    info = sf.info(tmp_path / "v.flac")
    assert (info.channels, info.samplerate, info.frames, info.subtype) == (1, 22050, 11025, "PCM_16")
    assert math.isclose(result.realtime_factor, result.wall_s / 0.5)


def test_shards_split_a_folder_between_runs(tmp_path, ch16_weights):
    """Two runs with --shard 1/2 and 2/2 write every input exactly once between them (skip-existing not needed)."""
    (tmp_path / "clips").mkdir()
    for i in range(4):
        sf.write(tmp_path / f"clips/c{i}.wav", tone_mix(0.3, seed=i), 44100)
    shares = []
    for k in (1, 2):
        proc = uvr(
            "separate",
            "clips",
            "--stem",
            "vocals",
            "--shard",
            f"{k}/2",
            "-o",
            f"out{k}",
            "-m",
            str(ch16_weights),
            *PARAMS,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        shares.append({Path(line).name for line in proc.stdout.decode().splitlines()})
    assert not shares[0] & shares[1]
    assert shares[0] | shares[1] == {f"c{i}_vocals.wav" for i in range(4)}


def test_jobs_spread_inputs_over_workers_with_identical_results(tmp_path, ch16_weights):
    """--jobs 2: the same files byte for byte as one process, paths in input order, a failure still one line."""
    (tmp_path / "clips").mkdir()
    names = [f"c{i}.wav" for i in range(3)]
    for i, name in enumerate(names):
        sf.write(tmp_path / "clips" / name, tone_mix(0.3, seed=i), 44100)
    (tmp_path / "clips" / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    order = ["clips/c0.wav", "clips/broken.wav", "clips/c1.wav", "clips/c2.wav"]
    runs = {}
    for jobs in ("1", "2"):
        proc = uvr("separate", *order, "-j", jobs, "-o", f"out{jobs}", "-m", str(ch16_weights), *PARAMS, cwd=tmp_path)
        assert proc.returncode == 1, proc.stderr
        errors = [line for line in proc.stderr.decode().splitlines() if "broken.wav" in line]
        assert len(errors) == 1, proc.stderr
        runs[jobs] = [Path(line).name for line in proc.stdout.decode().splitlines()]
    expected = [f"c{i}_{stem}.wav" for i in range(3) for stem in ("vocals", "instrumental")]
    assert runs["1"] == runs["2"] == expected
    for name in expected:
        assert (tmp_path / "out1" / name).read_bytes() == (tmp_path / "out2" / name).read_bytes(), name


def test_jobs_must_be_positive(tmp_path):
    proc = uvr("separate", "x.wav", "-j", "0", cwd=tmp_path)
    assert proc.returncode == 2 and b"--jobs" in proc.stderr


def test_dir_is_the_path_below_a_patterns_fixed_part(batch):
    """'album/**/track1.*' with '{dir}/...': album/cd1/track1.wav -> out/cd1/..., as a folder argument would."""
    for rel in ("album/cd1/track1.wav", "album/cd2/live/track1.wav"):
        (batch.root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(batch.root / "songs/a.wav", batch.root / rel)
    proc = uvr(
        "separate",
        "album/**/track1.*",
        "--name",
        "{dir}/{name}_{stem}.{ext}",
        "--stem",
        "vocals",
        "-o",
        "globbed",
        *batch.model,
        cwd=batch.root,
    )
    assert proc.returncode == 0, proc.stderr
    out = batch.root / "globbed"
    assert proc.stdout.decode().split() == [str(out / "cd1/track1_vocals.wav"), str(out / "cd2/live/track1_vocals.wav")]


@pytest.mark.parametrize(
    "args, line",
    [
        (["--aggressiveness", "30"], "uvr: separate: no such option --aggressiveness; did you mean --agg?"),
        (["--agg", "abc"], "uvr: separate: --agg: 'abc' is not a number"),
        (
            ["--stem", "vocal"],
            "uvr: --stem vocal: the model gives vocals, instrumental; did you mean 'vocals'?",
        ),
        (["--window", "1.5"], "uvr: separate: --window: '1.5' is not a whole number"),
        (["--bitrate", "192k"], "uvr: wav is lossless and has no bitrate; a bitrate applies to mp3 and ogg"),
        (
            ["-f", "mp3", "--bitrate", "1000k"],
            "uvr: mp3 at 44100 Hz cannot use bitrate 1000k; choose one of 40k, 48k, "
            "56k, 64k, 80k, 96k, 112k, 128k, 160k, 192k, 224k, 256k, 320k",
        ),
    ],
)
def test_usage_errors_are_one_line_with_a_suggestion(tmp_path, args, line):
    proc = uvr("separate", "a.wav", *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.decode().splitlines() == [line]
    assert proc.stdout == b""


@pytest.mark.parametrize("command", [[], ["separate"], ["models"], ["eval"], ["train"]])
def test_help_fits_80_columns_with_plain_metavars(command):
    """Click's plain layout (the boxed Rich one took 296 lines for `uvr separate --help`): one name column, help
    text wrapped beside it, metavars that say what a value is."""
    env = dict(ENV, COLUMNS="80")
    shown = subprocess.run([*uvr_command(), *command, "--help"], capture_output=True, env=env, timeout=60)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.decode().splitlines()
    assert max(map(len, lines)) <= 80 and not any(box in line for line in lines for box in "│╭╰")
    assert not any(python in line for line in lines for python in ("<list[", "<str>", "<int>", "<float>", "<bool>"))
    if command == ["separate"]:
        assert any(line.startswith("  -m, --model MODEL ") for line in lines) and len(lines) < 160


def test_help_lists_every_exit_status(tmp_path):
    for args in (["--help"], ["separate", "--help"]):
        proc = uvr(*args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        text = " ".join(proc.stdout.decode().replace("│", " ").split())
        assert "Exit status: 0 done" in text, text
        for status in (
            "1 some inputs failed",
            "2 usage error",
            "3 the model cannot be loaded",
            "130/143",
            "141 standard output was closed",
        ):
            assert status in text, (status, text)


def test_agg_with_a_model_that_ignores_it_warns_once(tmp_path, cascadednet_weights):
    """CascadedNet models ignore --agg (as in RVC): one warning line, agg_applied false, and any --agg reuses."""
    sf.write(tmp_path / "a.wav", tone_mix(0.3), 44100)
    model = ["-m", str(cascadednet_weights), "--params", "1band_sr44100_hl512", "--window", "256", "--device", "cpu"]
    proc = uvr("separate", "a.wav", "--agg", "30", "--stem", "vocals", "--json", *model, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.decode().splitlines() == [
        "uvr: --agg 30 has no effect: cascadednet_nout16_bins1024_fp16.pth is a CascadedNet model, which ignores "
        "aggressiveness (as in RVC)"
    ]
    assert json.loads(proc.stdout)["agg_applied"] is False
    assert json.loads((tmp_path / ".a_vocals.wav.uvr.json").read_text())["settings"]["agg"] is None
    again = uvr("separate", "a.wav", "--agg", "60", "--stem", "vocals", "--json", *model, cwd=tmp_path)
    assert (
        json.loads(again.stdout)["status"] == "skipped"
        and again.stderr
        == b"uvr: skipping every input: outputs already made with these settings (--overwrite makes them again)\n"
    )
    default = uvr("separate", "a.wav", "--overwrite", "--stem", "vocals", *model, cwd=tmp_path)
    assert default.returncode == 0 and default.stderr == b""  # --agg not given: nothing to warn about


def test_a_closed_stdout_ends_an_audio_pipe_quietly_with_141(batch):
    """`uvr separate x.wav --stem vocals -o - | head -c 100`: the reader goes, uvr stops with 141 and no message."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    proc = subprocess.run(
        [*uvr_command(), "separate", "songs/a.wav", "--stem", "vocals", "-o", "-", *batch.model],
        cwd=batch.root,
        stdout=write_end,
        stderr=subprocess.PIPE,
        env=ENV,
        timeout=300,
    )
    os.close(write_end)
    assert (proc.returncode, proc.stderr) == (141, b"")


@pytest.mark.parametrize("bitrate, kbps", [(None, 320), ("128k", 128)])
def test_mp3_bitrate(batch, bitrate, kbps):
    out = f"mp3-{kbps}"
    proc = uvr(
        "separate",
        "songs/a.wav",
        "--stem",
        "vocals",
        "-f",
        "mp3",
        *(["--bitrate", bitrate] if bitrate else []),
        "-o",
        out,
        *batch.model,
        cwd=batch.root,
    )
    assert proc.returncode == 0, proc.stderr
    written = batch.root / out / "a_vocals.mp3"
    measured = written.stat().st_size * 8 / sf.info(written).duration / 1000
    assert measured == pytest.approx(kbps, rel=0.1)


def test_extras_are_installed_from_the_checkout_with_the_venvs_pip():
    """uvr is not on PyPI: the advice names the pip beside the running Python and this checkout, and the help text
    keeps its brackets (Rich markup would eat '[eval]')."""
    from uvr_cli.errors import install_command

    assert install_command("ray") == f"{Path(sys.executable).with_name('pip')} install -e '{ROOT}[ray]'"
    wide = dict(ENV, COLUMNS="400")  # Rich wraps help text at COLUMNS: one line per paragraph
    shown = subprocess.run([*uvr_command(), "eval", "--help"], capture_output=True, env=wide, timeout=60).stdout
    assert b".venv/bin/pip install -e '.[eval]'" in shown


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
@pytest.mark.parametrize("columns", [80, 100])
def test_a_terminal_shows_whole_lines_and_no_stale_bar(tmp_path_factory, columns):
    """stdout and stderr on one terminal, as a user runs uvr: rendered (pyte), the screen ends with each output
    path and each warning whole on a line of its own, and one overall bar, at 100 %."""
    import pyte

    root = tmp_path_factory.mktemp("t")  # short paths: each fits on one line
    (root / "in").mkdir()
    for i in range(2):
        sf.write(root / "in" / f"s{i}.wav", tone_mix(2.0, seed=i), 44100, subtype="PCM_16")
    square = np.repeat(np.sign(np.sin(2 * np.pi * 220 * np.arange(44100) / 44100))[:, None], 2, axis=1)
    sf.write(root / "in" / "sq.wav", square, 44100, subtype="PCM_16")  # its instrumental clips: a warning line
    status, shown, _ = on_terminal("separate", "in", "-o", "out", "--device", "cpu", columns=columns, stream="both",
                                   cwd=root, env=ENV)  # fmt: skip
    assert status == 0, shown
    screen = pyte.Screen(columns, 24)
    pyte.ByteStream(screen).feed(shown)
    lines = [line.rstrip() for line in screen.display if line.strip()]
    paths = sorted(str(p) for p in (root / "out").iterdir() if not p.name.startswith("."))
    assert sorted(line for line in lines if line.startswith("/")) == paths, lines
    warnings = [line for line in lines if line.startswith("uvr: ")]
    assert any("sq.wav: instrumental:" in line and line.endswith("were clipped") for line in warnings), lines
    bars = [line for line in lines if "all files" in line]
    assert len(bars) == 1 and bars[0] == lines[-1] and "100%" in bars[0], lines
    assert bars[0].endswith(("s/file]", "file/s]")), lines


def test_an_exported_vr_network_given_to_m_says_how_to_run_it(tmp_path):
    """`uvr export -m default -o net.onnx` writes net.onnx and net.onnx.json; -m net.onnx is read as MDX-Net, so
    uvr names what the file is and the command that runs its model in ONNX Runtime."""
    sf.write(tmp_path / "a.wav", tone_mix(0.1), 44100)
    (tmp_path / "net.onnx").write_bytes(b"not read")
    description = {"format": "onnx", "exported_by": "uvr 0.1.0, torch 2.13.0", "model": {"file": "default.pth"}}
    (tmp_path / "net.onnx.json").write_text(json.dumps(description))
    proc = uvr("separate", "a.wav", "-m", "net.onnx", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.decode().splitlines() == [
        "uvr: net.onnx: a VR network exported by `uvr export` (see net.onnx.json), not an MDX-Net model; to run "
        "default.pth in ONNX Runtime, use -m default.pth --backend onnxruntime"
    ]
