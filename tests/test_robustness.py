"""What uvr promises under hostile conditions (issue 4), checked through the real `uvr` command in a subprocess.

Bad and odd audio, hostile and broken checkpoints, signals during a batch, two processes sharing a folder, paths
that try to leave the output folder, and folders that cannot be written. Separations use the random-weight
CascadedNet with a 160-frame window (its context is 64 frames a side), which costs about a quarter of the default
window, and inputs of at most 0.3 s, so that each input is a single network window.
"""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import ROOT, has_ffmpeg, run_uvr, tone_mix, uvr_command
from uvr_cli.cli.records import CLIP_REMEDY
from uvr_cli.io.decode import read_audio
from uvr_cli.io.outputs import record_path

MODEL_RATE = 44100
HOP = 512  # of the preset below
PRESET = ("--params", "1band_sr44100_hl512", "--batch-size", "8")
FAST = ("--window", "160")
SECONDS = 0.25


def separate_args(weights: Path, out: Path, *extra: str) -> list[str]:
    return ["separate", "-m", str(weights), *PRESET, *FAST, "-o", str(out), *extra]


def stderr_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return proc.stderr.decode("utf-8", "replace").splitlines()


def temporaries(root: Path) -> list[Path]:
    return sorted(root.rglob("*.uvr-tmp"))


def tree(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def audio_files(paths) -> list[Path]:
    """The stems among `paths`, without the settings records written beside them."""
    return sorted(p for p in paths if p.is_file() and not p.name.endswith(".uvr.json"))


def write_wav(path: Path, samples: np.ndarray, rate: int = MODEL_RATE, subtype: str = "PCM_16") -> Path:
    sf.write(path, samples, rate, subtype, format="WAV")
    return path


def assert_stem(path: Path, frames: int, channels: int, rate: int) -> np.ndarray:
    """A complete, finite stem of the expected shape (read_audio also refuses a truncated file)."""
    audio = read_audio(path, ffmpeg=None)
    assert (audio.samples.shape, audio.sample_rate) == ((frames, channels), rate), path
    assert audio.nonfinite_replaced == 0, f"{path} holds NaN or Inf"
    return audio.samples


def unprivileged_prefix(scratch: Path) -> list[str] | None:
    """A command prefix under which file permissions bind, or None where none can be made.

    Root ignores permission bits; `setpriv` takes CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH out of the bounding set,
    so a mode-000 file is as unreadable to uvr as to anyone. Used only once a probe shows both that the prefix
    runs and that it makes a mode-000 file unreadable.
    """
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            return None
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    probe = scratch / "permission-probe"
    probe.write_bytes(b"x")
    probe.chmod(0)
    try:
        runs = subprocess.run([*prefix, "true"], capture_output=True).returncode == 0
        denied = subprocess.run([*prefix, "cat", str(probe)], capture_output=True).returncode != 0
    finally:
        probe.unlink()
    return prefix if runs and denied else None


# ---------------------------------------------------------------------------------------------------------------
# Bad audio: one batch holds every case, good and bad interleaved, and the tests below read its results.


def _clip(rate: int = MODEL_RATE, channels: int = 2) -> np.ndarray:
    """Three tones below 4 kHz (so every rate holds them), phases differing per channel: (frames, channels)."""
    t = np.arange(int(SECONDS * rate)) / rate
    waves = [
        sum(a * np.sin(2 * np.pi * f * t + ch * p) for a, f, p in ((0.3, 220, 0.5), (0.2, 1375, 1.0), (0.1, 3100, 2.0)))
        for ch in range(channels)
    ]
    return np.stack(waves, axis=1).astype(np.float32)


def _nonfinite() -> np.ndarray:
    x = _clip()
    x[100, 0], x[200, 1], x[300:310] = np.nan, np.inf, -np.inf
    return x


def _surround() -> np.ndarray:
    """5.1 in WAV order (FL FR FC LFE BL BR), every channel different."""
    t = np.arange(int(SECONDS * MODEL_RATE)) / MODEL_RATE
    freqs = (220, 330, 440, 55, 660, 880)
    return np.stack([0.15 * np.sin(2 * np.pi * f * t) for f in freqs], axis=1).astype(np.float32)


GOOD: dict[str, Callable[[], tuple[np.ndarray, int, str]]] = {
    "one_sample.wav": lambda: (_clip()[:1], MODEL_RATE, "PCM_16"),
    "shorter_than_an_fft.wav": lambda: (_clip()[:300], MODEL_RATE, "PCM_16"),
    "silence.wav": lambda: (np.zeros((int(SECONDS * MODEL_RATE), 2), np.float32), MODEL_RATE, "PCM_16"),
    "dc_offset.wav": lambda: (0.5 * _clip() + 0.4, MODEL_RATE, "PCM_16"),
    "nan_and_inf.wav": lambda: (_nonfinite(), MODEL_RATE, "FLOAT"),
    "full_scale_clipping.wav": lambda: (np.sign(_clip()), MODEL_RATE, "PCM_16"),
    "far_above_full_scale.wav": lambda: (1000 * _clip(), MODEL_RATE, "FLOAT"),
    "pcm_8bit.wav": lambda: (_clip(), MODEL_RATE, "PCM_U8"),
    "pcm_24bit.wav": lambda: (_clip(), MODEL_RATE, "PCM_24"),
    "float_32bit.wav": lambda: (_clip(), MODEL_RATE, "FLOAT"),
    "rate_8000.wav": lambda: (_clip(8000), 8000, "PCM_16"),
    "rate_96000.wav": lambda: (_clip(96000), 96000, "PCM_16"),
    "rate_192000.wav": lambda: (_clip(192000), 192000, "PCM_16"),
    "mono.wav": lambda: (_clip(channels=1), MODEL_RATE, "PCM_16"),
    "surround_5.1.wav": lambda: (_surround(), MODEL_RATE, "FLOAT"),
    "name with spaces.wav": lambda: (_clip(), MODEL_RATE, "PCM_16"),
    "ünïcødé 曲名.wav": lambda: (_clip(), MODEL_RATE, "PCM_16"),
    "-leading-dash.wav": lambda: (_clip(), MODEL_RATE, "PCM_16"),
}
FFMPEG_ONLY = "-leading-dash-for-ffmpeg.m4a"  # AAC: libsndfile cannot open it, so ffmpeg decodes it by name

# name -> words the one error line must contain
BAD: dict[str, str] = {
    "empty.wav": "empty",
    "zero_frames.wav": "no audio frames",
    "corrupt_header.wav": "not a readable audio file",
    "truncated.wav": "truncated",
    "random_bytes.wav": "not a readable audio file",
    "folder.wav": "folder holds no audio files",
    "unreadable.wav": "Permission denied",
    "line\nbreak.wav": "not a readable audio file",
    "missing.wav": "no such file",
}
ALL_NAMES = [*GOOD, FFMPEG_ONLY, *BAD]
assert not [(a, b) for a in ALL_NAMES for b in ALL_NAMES if a != b and a in b], "a name inside another: ambiguous"


def _shown(name: str) -> str:
    """How uvr shows a file name in a message (line breaks escaped)."""
    return name.replace("\n", "\\n")


def _make_bad(folder: Path, name: str) -> None:
    path = folder / name
    whole = io.BytesIO()
    sf.write(whole, _clip(), MODEL_RATE, "PCM_16", format="WAV")
    good = whole.getvalue()
    rng = np.random.default_rng(7)
    if name == "empty.wav":
        path.write_bytes(b"")
    elif name == "zero_frames.wav":
        write_wav(path, np.zeros((0, 2), np.float32))
    elif name == "corrupt_header.wav":
        path.write_bytes(good[:20] + b"\xff" * 16 + good[36:])  # the 'fmt ' chunk's fields
    elif name == "truncated.wav":
        path.write_bytes(good[: len(good) // 2])
    elif name in ("random_bytes.wav", "line\nbreak.wav"):
        path.write_bytes(rng.bytes(5000))
    elif name == "folder.wav":
        path.mkdir()
    elif name == "unreadable.wav":
        path.write_bytes(good)
        path.chmod(0)
    # "missing.wav" is named on the command line and never made.


class BatchRun:
    """One `uvr separate` over every case: its result, where the files are, which cases could be made."""

    def __init__(self, proc: subprocess.CompletedProcess, inputs: Path, out: Path, made: set[str]) -> None:
        self.proc, self.inputs, self.out, self.made = proc, inputs, out, made
        self.lines = stderr_lines(proc)

    def lines_about(self, name: str) -> list[str]:
        return [line for line in self.lines if _shown(name) in line]

    def stems(self, name: str) -> list[Path]:
        stem = Path(name).stem
        return [self.out / f"{stem}_vocals.wav", self.out / f"{stem}_instrumental.wav"]


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, cascadednet_weights: Path) -> BatchRun:
    root = tmp_path_factory.mktemp("bad-audio")
    inputs, out = root / "in", root / "out"
    inputs.mkdir()
    prefix = unprivileged_prefix(root)
    made = set()
    for name, make in GOOD.items():
        samples, rate, subtype = make()
        write_wav(inputs / name, samples, rate, subtype)
        made.add(name)
    if has_ffmpeg():
        write_wav(root / "for-aac.wav", _clip())
        subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-loglevel",
                "error",
                "-i",
                str(root / "for-aac.wav"),
                "-c:a",
                "aac",
                "file:" + str(inputs / FFMPEG_ONLY),
            ],
            check=True,
        )
        made.add(FFMPEG_ONLY)
    for name in BAD:
        if name == "unreadable.wav" and prefix is None:
            continue
        _make_bad(inputs, name)
        made.add(name)
    good, bad = [n for n in ALL_NAMES if n in made and n not in BAD], [n for n in BAD if n in made]
    order = [n for pair in zip(good, bad + [""] * len(good)) for n in pair if n]  # failures between successes
    proc = subprocess.run(
        [*(prefix or []), *uvr_command(), *separate_args(cascadednet_weights, out), "--", *order],
        capture_output=True,
        cwd=inputs,
        timeout=900,
    )
    print(proc.stderr.decode("utf-8", "replace"))
    return BatchRun(proc, inputs, out, made)


def test_batch_with_failures_exits_1_and_leaves_no_temporaries(batch: BatchRun) -> None:
    assert batch.proc.returncode == 1, batch.lines
    assert not temporaries(batch.out)
    for line in batch.lines:
        assert line.startswith("uvr: "), f"stray stderr output (a traceback?): {line!r}"


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_fails_with_one_line_naming_it(batch: BatchRun, name: str) -> None:
    if name not in batch.made:
        pytest.skip("file permissions cannot be made to bind here (root without a usable setpriv)")
    about = batch.lines_about(name)
    assert len(about) == 1, batch.lines
    assert BAD[name] in about[0]
    assert not any(p.exists() for p in batch.stems(name))


def _downmix(x: np.ndarray) -> np.ndarray:
    """The promised policy: mono stays mono, stereo stays, 5.1 to stereo with ITU-R BS.775 gains, LFE dropped."""
    if x.shape[1] != 6:
        return x
    g = 1 / np.sqrt(2)
    return np.stack([x[:, 0] + g * (x[:, 2] + x[:, 4]), x[:, 1] + g * (x[:, 2] + x[:, 5])], axis=1)


@pytest.mark.parametrize("name", [*GOOD, FFMPEG_ONLY])
def test_odd_input_separates_into_complete_finite_stems(batch: BatchRun, name: str) -> None:
    if name not in batch.made:
        pytest.skip("ffmpeg is not installed")
    source = read_audio(batch.inputs / name)
    frames, channels = source.samples.shape
    out_channels = 1 if channels == 1 else 2
    vocals, instrumental = (assert_stem(p, frames, out_channels, source.sample_rate) for p in batch.stems(name))
    # The stems add up to the (downmixed) input to the last sample; at other rates than the model's, except two
    # hops at either end, where the resamplers see the abrupt start and end.
    expected = _downmix(source.samples)
    edge = 0 if source.sample_rate == MODEL_RATE else int(2 * HOP * source.sample_rate / MODEL_RATE)
    peak = float(np.abs(expected).max())
    if frames > 2 * edge and peak < 1:  # beyond full scale, 16-bit stems are clipped (and say so)
        error = np.abs(vocals + instrumental - expected)[edge : frames - edge].max()
        assert error <= 1e-3 * max(peak, 0.1), error
    if name == "silence.wav":
        assert not vocals.any() and not instrumental.any()


def test_long_odd_files_stream_with_the_same_repairs(tmp_path: Path, cascadednet_weights: Path) -> None:
    """Files longer than a streaming block (decoded block by block): NaN/Inf in 5.1 float, 8-bit mono at 22.05 kHz."""
    from uvr_cli.engine.blocks import BLOCK_SECONDS

    seconds = BLOCK_SECONDS + 2
    rate = MODEL_RATE
    t = np.arange(int(seconds * rate)) / rate
    surround = np.stack([0.15 * np.sin(2 * np.pi * f * t) for f in (220, 330, 440, 55, 660, 880)], axis=1)
    surround = surround.astype(np.float32)
    broken = surround.copy()
    for at in (5, int(rate * BLOCK_SECONDS * 0.7), int(rate * (BLOCK_SECONDS + 1))):  # in different blocks
        broken[at : at + 40, at % 6] = np.nan
        broken[at + 50, (at + 1) % 6] = np.inf
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_wav(inputs / "long_surround.wav", broken, rate, "FLOAT")
    mono_rate = 22050
    mono = 0.4 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * mono_rate)) / mono_rate)[:, None]
    write_wav(inputs / "long_8bit_mono.wav", mono.astype(np.float32), mono_rate, "PCM_U8")
    out = tmp_path / "out"
    proc = run_uvr(
        *separate_args(cascadednet_weights, out, str(inputs / "long_surround.wav"), str(inputs / "long_8bit_mono.wav")),
        timeout=900,
    )
    lines = stderr_lines(proc)
    assert proc.returncode == 0, lines
    assert any("NaN/Inf" in line and "long_surround.wav" in line for line in lines), lines
    assert any("downmixed" in line and "long_surround.wav" in line for line in lines), lines

    repaired = np.nan_to_num(broken, nan=0.0, posinf=0.0, neginf=0.0)
    # 8-bit steps are 1/128: the band filters take out part of that quantisation noise, up to half a step
    for name, expected, frames, channels, at_rate, tolerance in (
        ("long_surround", _downmix(repaired), len(broken), 2, rate, 1e-3),
        ("long_8bit_mono", read_audio(inputs / "long_8bit_mono.wav").samples, len(mono), 1, mono_rate, 1 / 256),
    ):
        vocals, instrumental = (
            assert_stem(out / f"{name}_{stem}.wav", frames, channels, at_rate) for stem in ("vocals", "instrumental")
        )
        edge = 0 if at_rate == MODEL_RATE else int(2 * HOP * at_rate / MODEL_RATE)
        error = np.abs(vocals + instrumental - expected)[edge : frames - edge]
        # where the input had NaN/Inf the repaired input has a step, which the band filters smear a little
        assert np.percentile(error, 99.9) <= tolerance, (name, float(error.max()))


def test_warnings_name_the_repairs(batch: BatchRun) -> None:
    assert any("NaN/Inf" in line for line in batch.lines_about("nan_and_inf.wav")), batch.lines
    assert any("downmixed" in line for line in batch.lines_about("surround_5.1.wav")), batch.lines
    # whether a full-scale square wave's stems clip depends on the weights: the warning appears exactly when they do
    at_full_scale = any(np.abs(sf.read(p)[0]).max() >= 32767 / 32768 for p in batch.stems("full_scale_clipping.wav"))
    warned = any("clipped" in line for line in batch.lines_about("full_scale_clipping.wav"))
    assert warned == at_full_scale, batch.lines


def test_clipped_samples_are_counted_and_named(tmp_path: Path) -> None:
    """With the bundled model a full-scale square wave's instrumental goes beyond full scale (its vocals may too):
    one warning line per clipped stem, with the count the JSON record gives, and the remedy once a run."""
    t = np.arange(MODEL_RATE) / MODEL_RATE
    song = write_wav(tmp_path / "square.wav", np.repeat(np.sign(np.sin(2 * np.pi * 220 * t))[:, None], 2, axis=1))
    again = shutil.copy(song, tmp_path / "square_again.wav")
    proc = run_uvr("separate", str(song), str(again), "-o", str(tmp_path / "out"), "--json", "--device", "cpu")
    assert proc.returncode == 0, stderr_lines(proc)
    first = json.loads(proc.stdout.splitlines()[0])
    clipped = {stem: count for stem, count in first["clipped_samples"].items() if count}
    assert clipped.get("instrumental", 0) > 0
    lines = sorted(line for line in stderr_lines(proc) if f"{song}:" in line)
    expected = [f"uvr: {song}: {stem}: {n} samples beyond full scale were clipped" for stem, n in clipped.items()]
    assert lines == sorted(expected)
    assert stderr_lines(proc).count(f"uvr: {CLIP_REMEDY}") == 1  # for both inputs
    for stem, count in clipped.items():
        written, _ = sf.read(tmp_path / "out" / f"square_{stem}.wav", dtype="int16")
        assert np.count_nonzero(np.abs(written.astype(np.int32)) >= 32767) >= count


def test_the_last_partial_hop_is_separated_too(batch: BatchRun) -> None:
    source = read_audio(batch.inputs / "shorter_than_an_fft.wav").samples
    vocals, instrumental = (read_audio(p).samples for p in batch.stems("shorter_than_an_fft.wav"))
    assert np.abs(vocals + instrumental - source).max() < 1e-3


# ---------------------------------------------------------------------------------------------------------------
# Hostile and broken checkpoints: refused with exit status 3 and one line, before anything is written.


class _RunsCode:
    """Unpickling this would create the marker file: the classic malicious-checkpoint pattern."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch '{self.marker}'",))


def _claim_huge_size(path: Path, member_suffix: str) -> None:
    """Rewrite torch's zip with one member deflated, then make its headers claim ~4 GiB unpacked (a bomb's claim)."""
    with zipfile.ZipFile(path) as src:
        members = [(info.filename, src.read(info)) for info in src.infolist()]
    with zipfile.ZipFile(path, "w") as dst:
        for name, data in members:
            method = zipfile.ZIP_DEFLATED if name.endswith(member_suffix) else zipfile.ZIP_STORED
            dst.writestr(name, data, compress_type=method)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(member_suffix))
    claim = 0xFFFFFFF0
    struct.pack_into("<I", data, info.header_offset + 22, claim)  # local header: uncompressed size
    central = data.find(b"PK\x01\x02")
    while central != -1:
        name_len = struct.unpack_from("<H", data, central + 28)[0]
        if data[central + 46 : central + 46 + name_len] == info.filename.encode():
            struct.pack_into("<I", data, central + 24, claim)  # central directory: uncompressed size
        central = data.find(b"PK\x01\x02", central + 4)
    path.write_bytes(bytes(data))


def _hostile_checkpoint(kind: str, folder: Path, state: dict[str, torch.Tensor], original: Path, marker: Path) -> Path:
    path = folder / f"{kind}.pth"
    first = next(iter(state))
    if kind == "code_in_pickle":
        torch.save({**state, "payload": _RunsCode(marker)}, path)
    elif kind == "truncated":
        whole = original.read_bytes()
        path.write_bytes(whole[: len(whole) // 2])
    elif kind == "wrong_shapes":
        key = "stg1_low_band_net.enc1.conv1.conv.0.weight"
        torch.save({**state, key: torch.zeros(16, 2, 5, 5)}, path)
    elif kind == "unknown_keys":
        torch.save({**state, "extra.head.weight": torch.zeros(4, 4)}, path)
    elif kind == "nan_weights":
        torch.save({**state, first: torch.full_like(state[first], float("nan"))}, path)
    elif kind == "not_torch":
        write_wav(path, _clip())
    elif kind == "zip_bomb_claim":
        torch.save({first: state[first]}, path)
        _claim_huge_size(path, "data/0")
    return path


CHECKPOINTS = {  # kind -> words the one error line must contain
    "code_in_pickle": "refused",
    "truncated": "weight file",
    "wrong_shapes": "shape mismatch",
    "unknown_keys": "unexpected key",
    "nan_weights": "NaN",
    "not_torch": "weight file",
    "zip_bomb_claim": "zip bomb",
}


@pytest.fixture(scope="module")
def ch16_state(ch16_weights: Path) -> dict[str, torch.Tensor]:
    return torch.load(ch16_weights, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("kind", list(CHECKPOINTS))
def test_hostile_or_broken_checkpoint_is_refused_before_any_output(
    tmp_path: Path, ch16_weights: Path, ch16_state: dict[str, torch.Tensor], kind: str
) -> None:
    marker = tmp_path / "CODE-RAN"
    weights = _hostile_checkpoint(kind, tmp_path, ch16_state, ch16_weights, marker)
    song = write_wav(tmp_path / "song.wav", _clip())
    out = tmp_path / "out"
    proc = run_uvr("separate", "-m", str(weights), *PRESET, "-o", str(out), str(song))
    lines = stderr_lines(proc)
    assert proc.returncode == 3, lines
    assert len(lines) == 1 and weights.name in lines[0] and CHECKPOINTS[kind] in lines[0], lines
    assert not marker.exists(), "the checkpoint ran code"
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------------------
# Interruptions and concurrent writers.


def _songs(folder: Path, count: int) -> list[Path]:
    folder.mkdir(exist_ok=True)
    return [write_wav(folder / f"song{i}.wav", tone_mix(0.3, seed=i)) for i in range(count)]


def _wait_for_first_output(proc: subprocess.Popen, out: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not (out.is_dir() and any(p.suffix == ".wav" and not p.name.startswith(".") for p in out.iterdir())):
        assert proc.poll() is None, "uvr ended before writing anything"
        assert time.monotonic() < deadline, "no output appeared"
        time.sleep(0.01)


def _sigint_as_from_a_terminal() -> None:
    """In the child: Ctrl-C's default action. A suite started in the background (`cmd &` in a script) inherits an
    ignored SIGINT, which Python then keeps ignoring, as a background job should."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_leaves_only_whole_files_and_a_rerun_finishes_the_rest(
    tmp_path: Path, cascadednet_weights: Path, signum: int, status: int
) -> None:
    songs = _songs(tmp_path / "in", 3)
    out = tmp_path / "out"
    args = [*uvr_command(), *separate_args(cascadednet_weights, out), *map(str, songs)]
    with (tmp_path / "stderr").open("wb") as err:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, preexec_fn=_sigint_as_from_a_terminal)
        try:
            _wait_for_first_output(proc, out)
            proc.send_signal(signum)
            assert proc.wait(timeout=120) == status, (tmp_path / "stderr").read_text()
        finally:
            proc.kill()
    said = (tmp_path / "stderr").read_text()
    assert f"uvr: {'interrupted' if signum == signal.SIGINT else 'terminated'}; finished outputs are kept" in said, said
    assert not temporaries(out)
    frames = int(0.3 * MODEL_RATE)
    done_first = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in audio_files(out.iterdir())}
    for path in done_first:
        assert_stem(path, frames, 2, MODEL_RATE)
    assert len(done_first) < 2 * len(songs), "the signal came after the batch had finished"
    recorded = {p for p in done_first if record_path(p).is_file()}

    rerun = run_uvr(*separate_args(cascadednet_weights, out), *map(str, songs))
    assert rerun.returncode == 0, stderr_lines(rerun)
    for song in songs:
        stems = [out / f"{song.stem}_{stem}.wav" for stem in ("vocals", "instrumental")]
        for path in stems:
            assert_stem(path, frames, 2, MODEL_RATE)
        # finished before the signal, settings records included: skipped, not redone (a signal between the stems
        # and their records leaves stems without records, which a rerun rightly makes again)
        if all(p in done_first and p in recorded for p in stems):
            assert all(done_first[p] == (p.stat().st_ino, p.stat().st_mtime_ns) for p in stems)
    assert not temporaries(out)


def test_ctrl_c_while_the_model_loads_exits_130_with_one_line(tmp_path: Path, cascadednet_weights: Path) -> None:
    # A real SIGINT, delivered while the weights are being read (the load is made to wait for it).
    song = write_wav(tmp_path / "song.wav", _clip())
    out = tmp_path / "out"
    args = separate_args(cascadednet_weights, out, str(song))
    script = (
        "import os, signal, sys, time\n"
        "import uvr_cli.engine.families.vr.checkpoint as checkpoint\n"
        "def interrupted_load(path):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(30)\n"
        "checkpoint.read_state_dict = interrupted_load\n"
        "from uvr_cli.cli.main import main\n"
        f"sys.argv = ['uvr', *{args!r}]\n"
        "main()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=120, preexec_fn=_sigint_as_from_a_terminal
    )
    lines = stderr_lines(proc)
    assert proc.returncode == 130, lines
    assert len(lines) == 1 and "interrupted" in lines[0], lines
    assert not out.exists() or not any(out.iterdir())


def _wav_size(frames: int, channels: int, subtype: str) -> int:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((frames, channels), np.float32), MODEL_RATE, subtype, format="WAV")
    return len(buffer.getvalue())


def test_two_processes_writing_one_folder_leave_whole_files(tmp_path: Path, cascadednet_weights: Path) -> None:
    songs = _songs(tmp_path / "in", 3)
    out = tmp_path / "out"
    # The same paths from both, at different bit depths: a file mixing the two writers cannot pass as either.
    procs = [
        subprocess.Popen(
            [
                *uvr_command(),
                *separate_args(cascadednet_weights, out),
                "--overwrite",
                "--bit-depth",
                depth,
                *map(str, songs),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for depth in ("16", "24")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()
    frames = int(0.3 * MODEL_RATE)
    outputs = audio_files(out.iterdir())
    assert len(outputs) == 2 * len(songs)
    for path in outputs:
        assert_stem(path, frames, 2, MODEL_RATE)
        subtype = sf.info(path).subtype
        assert subtype in ("PCM_16", "PCM_24")
        assert path.stat().st_size == _wav_size(frames, 2, subtype), path


# ---------------------------------------------------------------------------------------------------------------
# Paths: nothing lands outside the output folder, and no input is overwritten.


@pytest.mark.parametrize(
    "template",
    ["../{name}_{stem}.{ext}", "{outside}/{name}_{stem}.{ext}", "{name}/../../{name}_{stem}.{ext}"],
    ids=["dotdot", "absolute", "nested-dotdot"],
)
def test_name_template_cannot_leave_the_output_folder(tmp_path: Path, cascadednet_weights: Path, template: str) -> None:
    song = write_wav(tmp_path / "song.wav", _clip())
    out = tmp_path / "deep" / "out"
    out.mkdir(parents=True)
    before = tree(tmp_path)
    name = template.replace("{outside}", str(tmp_path / "elsewhere"))
    proc = run_uvr(*separate_args(cascadednet_weights, out), "--name", name, str(song))
    lines = stderr_lines(proc)
    assert proc.returncode == 2 and len(lines) == 1, lines
    assert tree(tmp_path) == before


def test_input_name_that_would_climb_out_is_refused(tmp_path: Path, cascadednet_weights: Path) -> None:
    song = write_wav(tmp_path / "...wav", _clip())  # its {name} is ".."
    out = tmp_path / "deep" / "out"
    out.mkdir(parents=True)
    before = tree(tmp_path)
    proc = run_uvr(*separate_args(cascadednet_weights, out), "--name", "{name}/{stem}.{ext}", str(song))
    assert proc.returncode == 2 and len(stderr_lines(proc)) == 1, stderr_lines(proc)
    assert tree(tmp_path) == before


def test_odd_names_and_subfolder_templates_write_inside(tmp_path: Path, cascadednet_weights: Path) -> None:
    songs = [write_wav(tmp_path / name, _clip()) for name in ("...wav", "..\\..\\back.wav", "-.wav")]
    out = tmp_path / "deep" / "out"
    before = tree(tmp_path)
    proc = run_uvr(*separate_args(cascadednet_weights, out), "--name", "{stem}/{name}.{ext}", "--", *map(str, songs))
    assert proc.returncode == 0, stderr_lines(proc)
    new = {p for p in tree(tmp_path) - before if p.is_file()}
    assert len(audio_files(new)) == 2 * len(songs)
    assert all(out in p.parents for p in new), new  # the settings records too


def test_symlinked_subfolder_pointing_outside_is_refused(tmp_path: Path, cascadednet_weights: Path) -> None:
    song = write_wav(tmp_path / "song.wav", _clip())
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "link").symlink_to(elsewhere)
    proc = run_uvr(*separate_args(cascadednet_weights, out), "--name", "link/{name}_{stem}.{ext}", str(song))
    assert proc.returncode == 2 and len(stderr_lines(proc)) == 1, stderr_lines(proc)
    assert not any(elsewhere.iterdir())


@pytest.mark.parametrize("how", ["same-path", "symlink"])
def test_output_that_would_overwrite_an_input_is_refused(tmp_path: Path, cascadednet_weights: Path, how: str) -> None:
    song = write_wav(tmp_path / "song.wav", _clip())
    original = song.read_bytes()
    if how == "same-path":
        extra = ["-o", str(tmp_path), "--name", "{name}.{ext}", "--stem", "vocals"]
    else:  # an output name in the output folder that is a symlink to the input
        (tmp_path / "song_vocals.wav").symlink_to(song)
        extra = ["-o", str(tmp_path), "--overwrite"]
    proc = run_uvr("separate", "-m", str(cascadednet_weights), *PRESET, *FAST, *extra, str(song))
    lines = stderr_lines(proc)
    assert proc.returncode == 2 and len(lines) == 1 and "overwrite an input" in lines[0], lines
    assert song.read_bytes() == original


# ---------------------------------------------------------------------------------------------------------------
# Resources: a folder that cannot be written, a full disk.


def _assert_one_write_error(proc: subprocess.CompletedProcess, reason: str) -> None:
    lines = stderr_lines(proc)
    assert proc.returncode == 1, lines
    assert len(lines) == 1 and "cannot write" in lines[0] and "song_vocals.wav" in lines[0], lines
    assert reason in lines[0], lines


def test_unwritable_output_folder(tmp_path: Path, cascadednet_weights: Path) -> None:
    """A read-only folder where permissions can be made to bind; elsewhere (root without setpriv), an output folder
    below a regular file, which no one can create."""
    song = write_wav(tmp_path / "song.wav", _clip())
    prefix = unprivileged_prefix(tmp_path)
    if prefix is not None:
        out, reason = tmp_path / "out", "Permission denied"
        out.mkdir(mode=0o555)
    else:
        (tmp_path / "file").write_bytes(b"not a folder")
        prefix, out, reason = [], tmp_path / "file" / "out", "Not a directory"
    before = tree(tmp_path)
    proc = subprocess.run(
        [*prefix, *uvr_command(), *separate_args(cascadednet_weights, out), str(song)], capture_output=True, timeout=300
    )
    _assert_one_write_error(proc, reason)
    assert tree(tmp_path) == before


def _can_mount_private_tmpfs(scratch: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o size=16k uvr-probe "$0"', str(scratch)]
    return subprocess.run(probe, capture_output=True).returncode == 0


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (32 << 10, 32 << 10))


def test_full_disk(tmp_path: Path, cascadednet_weights: Path) -> None:
    """A real ENOSPC from a 32 KiB tmpfs over the output folder, in a mount namespace of uvr's own; where no
    namespace can be made, RLIMIT_FSIZE, with which the kernel refuses writes past 32 KiB (EFBIG) as a quota would."""
    song = write_wav(tmp_path / "song.wav", _clip())
    out = tmp_path / "out"
    out.mkdir()
    command = [*uvr_command(), *separate_args(cascadednet_weights, out), str(song)]
    if _can_mount_private_tmpfs(out):
        # uvr runs on the full tmpfs, then `ls -A` lists what it left there, before the namespace (and tmpfs) go.
        script = 'mount -t tmpfs -o size=32k uvr-full "$0" && "$@"; status=$?; ls -A "$0"; exit $status'
        proc = subprocess.run(
            ["unshare", "-m", "sh", "-c", script, str(out), *command], capture_output=True, timeout=300
        )
        _assert_one_write_error(proc, "No space left on device")
        assert proc.stdout.decode().split() == [], "files were left on the full disk"
    else:
        proc = subprocess.run(command, capture_output=True, timeout=300, preexec_fn=_limit_file_size)
        _assert_one_write_error(proc, "File too large")
        assert not any(out.iterdir())


def test_full_standard_output(tmp_path: Path, cascadednet_weights: Path) -> None:
    song = write_wav(tmp_path / "song.wav", _clip())
    with open("/dev/full", "wb") as full:
        proc = subprocess.run(
            [*uvr_command(), *separate_args(cascadednet_weights, Path("-")), "--stem", "vocals", str(song)],
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=300,
        )
    lines = stderr_lines(proc)
    assert proc.returncode == 1 and len(lines) == 1, lines
    assert "standard output" in lines[0] and "No space left on device" in lines[0], lines


# ---------------------------------------------------------------------------------------------------------------
# Memory: the streaming path's promise that a long input costs no more memory than a short one.


def _write_long_input(path: Path, seconds: int, rate: int) -> None:
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", rate, 2, "PCM_16", format="WAV") as f:
        for start in range(0, seconds * rate, 10 * rate):
            t = (start + np.arange(10 * rate)) / rate
            tone = 0.2 * np.sin(2 * np.pi * 220 * t)[:, None] + 0.05 * rng.standard_normal((t.size, 2))
            f.write(tone.astype(np.float32))


def _peak_rss_bytes(args: list[str]) -> int:
    """Peak resident memory of one child, from wait4 (getrusage(RUSAGE_CHILDREN) keeps the largest child ever)."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    assert proc.returncode == 0, err.decode()
    return usage.ru_maxrss * 1024


@pytest.mark.slow
def test_peak_memory_of_ten_minutes_is_that_of_one(tmp_path: Path, ch16_weights: Path) -> None:
    rate = 16000  # 1band_sr16000_hl512: the fewest frames per second of any preset, so the cheapest long run
    peaks = []
    for minutes in (1, 10):
        song = tmp_path / f"{minutes}min.wav"
        _write_long_input(song, 60 * minutes, rate)
        peaks.append(
            _peak_rss_bytes(
                [
                    *uvr_command(),
                    "separate",
                    "-q",
                    "-m",
                    str(ch16_weights),
                    "--params",
                    "1band_sr16000_hl512",
                    "--stem",
                    "vocals",
                    "-o",
                    str(tmp_path / "out"),
                    str(song),
                ]
            )
        )
        song.unlink()
    report = f"peak RSS {peaks[0] / 2**20:.0f} MiB for 1 min, {peaks[1] / 2**20:.0f} MiB for 10 min"
    print(report)
    assert peaks[1] <= 1.1 * peaks[0], report


def test_decoder_chatter_never_reaches_stderr_and_a_truncated_file_can_be_separated(tmp_path: Path) -> None:
    """The example MP3 without its last 5000 bytes: mpg123 warns 'Xing stream size off by more than 1%' on each
    open; only uvr's one line about the file reaches stderr. With --allow-truncated, what it holds is separated."""
    song = tmp_path / "cut.mp3"
    song.write_bytes((ROOT / "examples" / "slow_motion_dream.mp3").read_bytes()[:-5000])
    refused = run_uvr("separate", str(song), "-o", str(tmp_path / "out"), "--device", "cpu")
    assert refused.returncode == 1
    assert stderr_lines(refused) == [
        f"uvr: cannot read '{song}': corrupt or truncated audio (it ends after 471215 of its 479832 frames; "
        "--allow-truncated separates what it holds)"
    ]
    if not has_ffmpeg():
        return  # --allow-truncated decodes with ffmpeg
    done = run_uvr("separate", str(song), "-o", str(tmp_path / "out"), "--allow-truncated", "--device", "cpu", "-q")
    assert done.returncode == 0, stderr_lines(done)
    held = sf.info(tmp_path / "out" / "cut_vocals.wav").frames
    assert 471215 <= held < 479832  # ffmpeg decodes at least what libsndfile did
    warned = run_uvr("separate", str(song), "-o", str(tmp_path / "again"), "--allow-truncated", "--stem", "vocals")
    assert (
        f"uvr: {song}: the file is truncated: separated the {held / 44100:.2f} s it holds of the 10.88 s its "
        "header declares" in stderr_lines(warned)
    )
