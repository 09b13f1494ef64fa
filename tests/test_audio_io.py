"""Tests for uvr_cli.io.decode and .encode: round trips, clipping, NaN/Inf, standard streams, atomic writes, errors,
exact lengths whatever way an input comes in, and the temporary files that takes.

Small generated audio only; the ffmpeg tests skip when ffmpeg is not installed.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from uvr_cli import atomic
from uvr_cli.errors import AudioError, UsageError
from uvr_cli.io import decode, encode
from uvr_cli.io.decode import AUDIO_EXTENSIONS, open_source, read_audio
from uvr_cli.io.encode import (
    StdoutClosed,
    open_stem_writers,
    output_subtype,
    write_audio,
)

ROOT = Path(__file__).resolve().parents[1]
RATE = 8000
needs_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (apt-get install ffmpeg to run this)"
)

# Reads argv[1] ("-" = stdin), writes argv[2] ("-" = stdout) as argv[3] at depth argv[4]; errors as the CLI shows them.
PIPE_SCRIPT = """
import sys
from uvr_cli.io.decode import read_audio
from uvr_cli.io.encode import write_audio
from uvr_cli.errors import UvrError
try:
    audio = read_audio(sys.argv[1])
    write_audio(sys.argv[2], audio.samples, audio.sample_rate, sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
except UvrError as exc:
    sys.exit(f"uvr: {exc}")
"""


def noise(frames: int = 3000, channels: int = 2, peak: float = 0.9, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-peak, peak, (frames, channels)).astype(np.float32)


def tone(frames: int, channels: int, rate: int) -> np.ndarray:
    t = np.arange(frames) / rate
    return np.repeat((0.5 * np.sin(2 * np.pi * 440 * t))[:, None], channels, axis=1).astype(np.float32)


def wav_bytes(samples: np.ndarray, rate: int = RATE, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, subtype, format="WAV")
    return buffer.getvalue()


def run_pipe(*args: str, input: bytes | None = None, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PIPE_SCRIPT, *args],
        input=input,
        stdout=stdout,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".uvr-tmp"))


def assert_one_line_naming(error: pytest.ExceptionInfo, name: str) -> str:
    message = str(error.value)
    assert name in message, message
    assert "\n" not in message
    return message


def deny(monkeypatch: pytest.MonkeyPatch, path: Path, mode: int) -> None:
    """Take permissions away from `path`; as root (which ignores them) make open() fail as it would."""
    path.chmod(mode)
    if os.access(path, os.R_OK if mode == 0 else os.W_OK):

        def refusing_open(file, *args, **kwargs):
            if Path(file) == path or Path(file).parent == path:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
            return open(file, *args, **kwargs)

        monkeypatch.setattr(decode, "open", refusing_open, raising=False)
        monkeypatch.setattr(atomic, "open", refusing_open, raising=False)


# --- round trips -----------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2, 6])
@pytest.mark.parametrize(
    ("fmt", "depth", "bits"), [("wav", "16", 16), ("wav", "24", 24), ("flac", "16", 16), ("flac", "24", 24)]
)
def test_integer_round_trip_quantises_within_one_lsb(tmp_path, fmt, depth, bits, channels):
    """Read back, every sample is on the 2**(bits-1) grid and less than 1 LSB from what was written."""
    x = noise(channels=channels)
    report = write_audio(tmp_path / f"out.{fmt}", x, RATE, fmt, depth)
    audio = read_audio(tmp_path / f"out.{fmt}")

    assert (report.frames, report.channels, report.clipped_samples, report.nonfinite_replaced) == (3000, channels, 0, 0)
    assert (audio.sample_rate, audio.subtype, audio.source_format) == (RATE, f"PCM_{bits}", fmt.upper())
    assert audio.samples.shape == x.shape and audio.samples.dtype == np.float32
    codes = audio.samples.astype(np.float64) * 2 ** (bits - 1)
    np.testing.assert_array_equal(codes, np.round(codes))
    assert np.abs(audio.samples.astype(np.float64) - x).max() * 2 ** (bits - 1) <= 1.0


def test_mono_vector_is_written_as_one_channel(tmp_path):
    x = noise(channels=1)[:, 0]
    write_audio(tmp_path / "mono.wav", x, RATE, "wav", "16")
    assert read_audio(tmp_path / "mono.wav").samples.shape == (3000, 1)


@pytest.mark.parametrize("channels", [1, 2, 6])
def test_float_round_trip_is_exact_and_unclipped(tmp_path, channels):
    x = noise(channels=channels, peak=3.0)
    report = write_audio(tmp_path / "out.wav", x, RATE, "wav", "32f")
    audio = read_audio(tmp_path / "out.wav")
    assert report.clipped_samples == 0 and audio.subtype == "FLOAT"
    np.testing.assert_array_equal(audio.samples, x)


@pytest.mark.parametrize(
    ("fmt", "subtype", "channels"),
    [
        ("ogg", "VORBIS", 1),
        ("ogg", "VORBIS", 2),
        ("ogg", "VORBIS", 6),
        ("mp3", "MPEG_LAYER_III", 1),
        ("mp3", "MPEG_LAYER_III", 2),
    ],
)
def test_lossy_round_trip_ignores_bit_depth(tmp_path, fmt, subtype, channels):
    rate, frames = 44100, 22050
    x = tone(frames, channels, rate)
    report = write_audio(tmp_path / f"out.{fmt}", x, rate, fmt, "24")
    audio = read_audio(tmp_path / f"out.{fmt}")
    assert report.subtype == subtype == audio.subtype
    assert audio.sample_rate == rate and audio.samples.shape[1] == channels
    assert abs(audio.samples.shape[0] - frames) <= 2 * 1152
    rms = float(np.sqrt(np.mean(audio.samples**2)))
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


@pytest.mark.parametrize(
    "path_and_kwargs", [("x.wav", {}), ("x.flac", {}), ("x.ogg", {}), ("x.wav", {"subtype": "FLOAT"})]
)
def test_read_gives_exactly_soundfiles_float32(tmp_path, path_and_kwargs):
    """The separation must match a reference that loaded audio with soundfile.read(dtype="float32")."""
    name, kwargs = path_and_kwargs
    sf.write(tmp_path / name, noise(), RATE, **kwargs)
    expected, rate = sf.read(tmp_path / name, dtype="float32", always_2d=True)
    audio = read_audio(str(tmp_path / name))
    assert audio.samples.flags.c_contiguous and audio.samples.dtype == np.float32
    np.testing.assert_array_equal(audio.samples, expected)
    assert audio.sample_rate == rate


def test_big_wav_is_written_as_rf64(tmp_path, monkeypatch):
    """A WAV header's sizes are 32-bit; past 4 GiB of data the file becomes RF64 instead of corrupt."""
    monkeypatch.setattr(encode, "_WAV_MAX_DATA_BYTES", 1000)
    x = noise()
    write_audio(tmp_path / "big.wav", x, RATE, "wav", "32f")
    assert sf.info(tmp_path / "big.wav").format == "RF64"
    np.testing.assert_array_equal(read_audio(tmp_path / "big.wav").samples, x)


def test_long_input_is_encoded_in_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(encode, "_BLOCK_FRAMES", 1000)
    x = noise(frames=3500, peak=1.2)
    report = write_audio(tmp_path / "out.flac", x, RATE, "flac", "24")
    assert report.clipped_samples == int(np.count_nonzero(np.abs(x) > 1))
    assert read_audio(tmp_path / "out.flac").samples.shape == x.shape


# --- clipping and NaN/Inf --------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "depth"), [("wav", "16"), ("wav", "24"), ("flac", "16"), ("flac", "24")])
def test_beyond_full_scale_is_clipped_never_wrapped(tmp_path, fmt, depth):
    x = np.zeros((100, 2), np.float32)
    x[10] = [1.5, -1.5]
    x[20] = [np.nextafter(np.float32(1), np.float32(2)), 1.0]  # just over full scale, and exactly at it
    original = x.copy()
    report = write_audio(tmp_path / f"out.{fmt}", x, RATE, fmt, depth)
    y = read_audio(tmp_path / f"out.{fmt}").samples
    assert report.clipped_samples == 3
    assert y[10, 0] > 0.999 and y[10, 1] < -0.999
    assert y[20, 0] > 0.999 and y[20, 1] > 0.999
    np.testing.assert_array_equal(x, original)  # the caller's samples are left alone


@pytest.mark.parametrize(
    ("fmt", "depth", "limit"),
    [("wav", "16", 1.0), ("flac", "24", 1.0), ("ogg", None, 1.0), ("mp3", None, 1.0), ("wav", "32f", 1.5)],
)
def test_encoder_never_sees_samples_beyond_full_scale(tmp_path, monkeypatch, fmt, depth, limit):
    """libsndfile before 1.1 wraps +1.5 around to a negative integer, so we clip before it sees the data."""
    peaks = []
    real_write = sf.SoundFile.write

    def noting_write(self, data):
        # Integers (16/24-bit PCM) count as full scale at their type's largest value, as libsndfile takes them.
        scale = np.iinfo(data.dtype).max + 1 if np.issubdtype(data.dtype, np.integer) else 1
        peaks.append(np.abs(data.astype(np.float64)).max() / scale)
        return real_write(self, data)

    monkeypatch.setattr(sf.SoundFile, "write", noting_write)
    write_audio(tmp_path / f"out.{fmt}", 3 * tone(4410, 2, 44100), 44100, fmt, depth)  # peak 1.5
    assert max(peaks) == pytest.approx(limit, abs=1e-3)


@pytest.mark.parametrize("fmt", ["ogg", "mp3"])
def test_lossy_output_is_clipped_too(tmp_path, fmt):
    x = 3 * tone(8820, 2, 44100)  # peak 1.5
    report = write_audio(tmp_path / f"out.{fmt}", x, 44100, fmt, None)
    assert report.clipped_samples == int(np.count_nonzero(np.abs(x) > 1))
    assert np.abs(read_audio(tmp_path / f"out.{fmt}").samples).max() < 1.3


@pytest.mark.parametrize(("fmt", "depth"), [("wav", "16"), ("wav", "32f"), ("flac", "24"), ("ogg", None)])
def test_nonfinite_samples_are_written_as_zero(tmp_path, fmt, depth):
    x = np.full((2000, 1), 0.25, np.float32)
    x[[100, 200, 300], 0] = [np.nan, np.inf, -np.inf]
    report = write_audio(tmp_path / f"out.{fmt}", x, RATE, fmt, depth)
    y = read_audio(tmp_path / f"out.{fmt}").samples
    assert (report.nonfinite_replaced, report.clipped_samples) == (3, 0)
    assert np.isfinite(y).all()
    if fmt != "ogg":
        assert (y[[100, 200, 300], 0] == 0).all()


def test_nonfinite_input_samples_are_zeroed_and_counted(tmp_path):
    x = noise()
    x[5, 0], x[6, 1], x[7, 0] = np.nan, np.inf, -np.inf
    sf.write(tmp_path / "bad.wav", x, RATE, "FLOAT")
    audio = read_audio(tmp_path / "bad.wav")
    assert audio.nonfinite_replaced == 3
    expected = np.where(np.isfinite(x), x, 0)
    np.testing.assert_array_equal(audio.samples, expected)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, st.integers(1, 200), elements=st.floats(width=32, allow_nan=True, allow_infinity=True)))
def test_any_samples_come_back_clipped_or_zeroed(x):
    """Whatever the caller passes, 16-bit output is clip(x) (NaN/Inf as 0) to within 1 LSB."""
    with tempfile.TemporaryDirectory() as folder:
        report = write_audio(Path(folder) / "out.wav", x, RATE, "wav", "16")
        y = read_audio(Path(folder) / "out.wav").samples[:, 0]
    finite = np.isfinite(x)
    expected = np.clip(np.where(finite, x, 0), -1, 1)
    assert np.abs(y - expected).max() <= 1 / 32768
    assert report.nonfinite_replaced == int(np.count_nonzero(~finite))
    assert report.clipped_samples == int(np.count_nonzero(np.abs(x[finite]) > 1))


# --- standard input and output ---------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "depth"), [("wav", "16"), ("wav", "32f"), ("flac", "24"), ("mp3", None)])
def test_stdin_to_stdout(tmp_path, fmt, depth):
    x = noise(channels=2, seed=3)
    done = run_pipe("-", "-", fmt, depth or "", input=wav_bytes(x, 44100, "FLOAT"))
    assert done.returncode == 0, done.stderr.decode()
    piped, rate = sf.read(io.BytesIO(done.stdout), dtype="float32", always_2d=True)
    write_audio(tmp_path / f"ref.{fmt}", x, 44100, fmt, depth)
    reference, _ = sf.read(tmp_path / f"ref.{fmt}", dtype="float32", always_2d=True)
    assert rate == 44100
    np.testing.assert_array_equal(piped, reference)


def test_streamed_wav_with_unknown_sizes_is_not_truncated():
    """Tools writing WAV to a pipe (ffmpeg -f wav -) leave 0xFFFFFFFF sizes; that is not truncation."""
    data = bytearray(wav_bytes(noise()))
    data[4:8] = data[40:44] = b"\xff\xff\xff\xff"
    done = run_pipe("-", "-", "wav", "16", input=bytes(data))
    assert done.returncode == 0, done.stderr.decode()
    assert sf.info(io.BytesIO(done.stdout)).frames == 3000


def test_empty_stdin_is_an_error():
    done = run_pipe("-", "-", "wav", input=b"")
    assert done.returncode == 1 and done.stdout == b""
    assert done.stderr.decode().strip() == "uvr: cannot read standard input: it is empty"


def test_garbage_on_stdin_is_an_error():
    done = run_pipe("-", "-", "wav", input=b"this is not audio" * 50)
    assert done.returncode == 1
    message = done.stderr.decode().strip()
    assert message.startswith("uvr: cannot read standard input: ") and "\n" not in message


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full to fill standard output")
def test_full_stdout_is_an_error(tmp_path):
    sf.write(tmp_path / "in.wav", noise(), RATE)
    with open("/dev/full", "wb") as full:
        done = run_pipe(str(tmp_path / "in.wav"), "-", "wav", "16", stdout=full)
    assert done.returncode == 1
    assert done.stderr.decode().strip() == "uvr: cannot write standard output: No space left on device"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_named_pipe_input_is_copied(tmp_path):
    """bash's <(...) hands over a pipe: libsndfile cannot seek it, so it is copied into a temporary file first."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    x = noise()
    writer = threading.Thread(target=lambda: fifo.write_bytes(wav_bytes(x, subtype="FLOAT")))
    writer.start()
    audio = read_audio(fifo)
    writer.join()
    np.testing.assert_array_equal(audio.samples, x)


# --- atomic writes and write errors ----------------------------------------------------------------


def break_encoder_after_first_block(
    monkeypatch: pytest.MonkeyPatch, error: BaseException, folder: Path, seen: list[str]
) -> None:
    """Make soundfile's write raise `error` on its second block, noting the files in `folder` then."""
    monkeypatch.setattr(encode, "_BLOCK_FRAMES", 1000)
    real_write = sf.SoundFile.write
    calls = []

    def failing_write(self, data):
        calls.append(len(data))
        if len(calls) == 2:
            seen.extend(p.name for p in folder.iterdir())
            raise error
        return real_write(self, data)

    monkeypatch.setattr(sf.SoundFile, "write", failing_write)


@pytest.mark.parametrize("error", [OSError(errno.EIO, os.strerror(errno.EIO)), KeyboardInterrupt()])
def test_interrupted_write_leaves_no_output_and_no_temporary_file(tmp_path, monkeypatch, error):
    seen: list[str] = []
    break_encoder_after_first_block(monkeypatch, error, tmp_path, seen)
    (tmp_path / "vocals.wav").write_bytes(b"previous output")
    with pytest.raises(AudioError if isinstance(error, OSError) else KeyboardInterrupt) as info:
        write_audio(tmp_path / "vocals.wav", noise(frames=5000), RATE, "wav", "16")
    temps = [n for n in seen if n.endswith(".uvr-tmp")]
    assert len(temps) == 1 and temps[0].startswith(f".vocals.wav.{os.getpid()}-")
    assert leftovers(tmp_path) == []
    assert (tmp_path / "vocals.wav").read_bytes() == b"previous output"
    if isinstance(error, OSError):
        assert assert_one_line_naming(info, "vocals.wav").endswith("Input/output error")


@pytest.mark.parametrize("transient", [False, True], ids=["full", "full-once"])
@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
def test_disk_full_is_an_error_naming_the_file(tmp_path, monkeypatch, fmt, transient):
    """libsndfile ignores failed writes for FLAC/OGG/MP3: a lost write must fail the output, even when
    later writes succeed again (space freed meanwhile), and leave nothing behind."""

    class FullDisk(io.FileIO):
        failed = False

        def write(self, data):
            if self.tell() + len(data) > 4096 and not (transient and FullDisk.failed):
                FullDisk.failed = True
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return super().write(data)

    monkeypatch.setattr(atomic, "open", FullDisk, raising=False)
    with pytest.raises(AudioError) as info:
        write_audio(tmp_path / f"out.{fmt}", noise(frames=44100, peak=0.5), 44100, fmt, None)
    assert assert_one_line_naming(info, f"out.{fmt}").endswith("No space left on device")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(sys.platform != "linux", reason="uses RLIMIT_FSIZE to make the kernel refuse writes")
@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_file_size_limit_from_the_kernel_is_an_error(tmp_path, fmt):
    script = (
        "import resource, signal, numpy as np\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))\n" + PIPE_SCRIPT
    )
    sf.write(tmp_path / "in.wav", noise(frames=40000), RATE)
    command = [sys.executable, "-c", script, str(tmp_path / "in.wav"), str(tmp_path / f"out.{fmt}"), fmt, "16"]
    done = subprocess.run(command, capture_output=True, cwd=ROOT, timeout=60, check=False)
    assert done.returncode == 1
    assert done.stderr.decode().strip() == f"uvr: cannot write '{tmp_path / f'out.{fmt}'}': File too large"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav"]


def test_missing_folders_are_made(tmp_path):
    write_audio(tmp_path / "a" / "b" / "out.wav", noise(), RATE, "wav", None)
    assert sf.info(tmp_path / "a" / "b" / "out.wav").subtype == "PCM_16"


def test_output_mode_follows_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        write_audio(tmp_path / "out.wav", noise(), RATE, "wav", None)
    finally:
        os.umask(previous)
    assert (tmp_path / "out.wav").stat().st_mode & 0o777 == 0o644


def test_unwritable_folder_is_an_error(tmp_path, monkeypatch):
    folder = tmp_path / "locked"
    folder.mkdir()
    deny(monkeypatch, folder, 0o500)
    try:
        with pytest.raises(AudioError) as info:
            write_audio(folder / "out.wav", noise(), RATE, "wav", None)
    finally:
        folder.chmod(0o700)
    assert assert_one_line_naming(info, "out.wav").endswith("Permission denied")
    assert list(folder.iterdir()) == []


def test_destination_that_is_a_folder_is_an_error(tmp_path):
    (tmp_path / "out.wav").mkdir()
    with pytest.raises(AudioError) as info:
        write_audio(tmp_path / "out.wav", noise(), RATE, "wav", None)
    assert assert_one_line_naming(info, "out.wav").endswith("it is a folder")


def test_parent_that_is_a_file_is_an_error(tmp_path):
    (tmp_path / "stems").write_text("not a folder")
    with pytest.raises(AudioError) as info:
        write_audio(tmp_path / "stems" / "out.wav", noise(), RATE, "wav", None)
    assert "cannot create folder" in assert_one_line_naming(info, "out.wav")


# --- format and depth combinations -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "depth", "rate", "channels", "words"),
    [
        ("flac", "32f", RATE, 2, ["flac", "32f"]),
        ("wav", "8", RATE, 2, ["8"]),
        ("aiff", None, RATE, 2, ["aiff"]),
        ("mp3", None, 44100, 3, ["mp3", "3 channels"]),
        ("mp3", None, 96000, 2, ["mp3", "96000"]),
    ],
)
def test_impossible_outputs_are_usage_errors(tmp_path, fmt, depth, rate, channels, words):
    with pytest.raises(UsageError) as info:
        write_audio(tmp_path / "out.x", noise(channels=channels), rate, fmt, depth)
    assert all(word in str(info.value) for word in words), str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("fmt", "depth", "subtype"),
    [
        ("wav", None, "PCM_16"),
        ("wav", "24", "PCM_24"),
        ("WAV", "32f", "FLOAT"),
        ("flac", None, "PCM_16"),
        ("flac", "24", "PCM_24"),
        ("ogg", "32f", "VORBIS"),
        ("mp3", "16", "MPEG_LAYER_III"),
    ],
)
def test_output_subtype(fmt, depth, subtype):
    assert output_subtype(fmt, depth, 44100, 2) == subtype


@pytest.mark.parametrize(
    "samples", [np.zeros((2, 3, 4), np.float32), np.zeros((10, 0), np.float32), np.zeros((10, 2), np.int16)]
)
def test_malformed_sample_arrays_are_programming_errors(tmp_path, samples):
    with pytest.raises(ValueError):
        write_audio(tmp_path / "out.wav", samples, RATE, "wav", None)


def test_audio_extensions_are_lower_case_without_dot():
    assert {
        "wav",
        "flac",
        "ogg",
        "oga",
        "opus",
        "mp3",
        "m4a",
        "aac",
        "aiff",
        "aif",
        "wma",
        "mp4",
        "mkv",
        "webm",
        "mov",
        "caf",
        "w64",
    } <= AUDIO_EXTENSIONS
    assert all(ext == ext.lower() and not ext.startswith(".") for ext in AUDIO_EXTENSIONS)


# --- read errors -----------------------------------------------------------------------------------


def truncated(data: bytes, keep: float) -> bytes:
    return data[: int(len(data) * keep)]


def flac_bytes() -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, noise(frames=20000), RATE, format="FLAC")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("make", "cause"),
    [
        (None, "No such file or directory"),
        ("folder", "Is a directory"),
        (b"", "the file is empty"),
        (wav_bytes(noise(frames=0)), "it contains no audio frames"),
        (b"this is not audio at all" * 20, "Format not recognised"),
        (truncated(wav_bytes(noise()), 0.5), "the file is truncated"),
        (wav_bytes(noise())[:40], "No 'data' chunk"),
        (truncated(flac_bytes(), 0.5), "corrupt or truncated audio"),
    ],
    ids=[
        "missing",
        "folder",
        "empty",
        "zero-frames",
        "garbage",
        "truncated-wav-data",
        "truncated-wav-header",
        "truncated-flac",
    ],
)
def test_unreadable_inputs_are_one_line_audio_errors(tmp_path, make, cause):
    path = tmp_path / "my song.wav"
    if make == "folder":
        path.mkdir()
    elif make is not None:
        path.write_bytes(make)
    with pytest.raises(AudioError) as info:
        read_audio(path, ffmpeg=None)
    message = assert_one_line_naming(info, "my song.wav")
    assert cause in message, message


def test_unreadable_file_is_an_error(tmp_path, monkeypatch):
    path = tmp_path / "secret.wav"
    sf.write(path, noise(), RATE)
    deny(monkeypatch, path, 0)
    try:
        with pytest.raises(AudioError) as info:
            read_audio(path)
    finally:
        path.chmod(0o600)
    assert assert_one_line_naming(info, "secret.wav").endswith("Permission denied")


def test_line_breaks_in_names_stay_on_one_line(tmp_path):
    with pytest.raises(AudioError) as info:
        read_audio(tmp_path / "two\nlines.wav")
    assert "two\\nlines.wav" in assert_one_line_naming(info, "lines.wav")


def test_missing_ffmpeg_is_named_in_the_error(tmp_path):
    path = tmp_path / "song.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    with pytest.raises(AudioError) as info:
        read_audio(path, ffmpeg="uvr-test-no-such-ffmpeg")
    assert "uvr-test-no-such-ffmpeg' was not found" in assert_one_line_naming(info, "song.m4a")


# --- ffmpeg fallback -------------------------------------------------------------------------------


def ffmpeg_encode(source: Path, dest: Path, *options: str) -> Path:
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(source),
            *options,
            "file:" + str(dest),
        ],
        check=True,
        timeout=60,
    )
    return dest


@needs_ffmpeg
@pytest.mark.parametrize("name", ["song.m4a", "-leading dash.m4a"])
def test_ffmpeg_decodes_what_soundfile_cannot(tmp_path, name):
    sf.write(tmp_path / "in.wav", tone(22050, 2, 22050), 22050)
    path = ffmpeg_encode(tmp_path / "in.wav", tmp_path / name, "-c:a", "aac")
    audio = read_audio(path)
    assert (audio.sample_rate, audio.subtype, audio.source_format) == (22050, None, None)
    assert audio.samples.dtype == np.float32 and audio.samples.flags.c_contiguous
    assert audio.samples.shape[1] == 2 and abs(audio.samples.shape[0] - 22050) <= 2048
    assert float(np.sqrt(np.mean(audio.samples**2))) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


@needs_ffmpeg
def test_ffmpeg_fallback_from_stdin(tmp_path):
    """MP4 keeps its index at the end, so stdin reaches ffmpeg through a seekable temporary file."""
    sf.write(tmp_path / "in.wav", tone(8000, 1, 16000), 16000)
    path = ffmpeg_encode(tmp_path / "in.wav", tmp_path / "song.m4a", "-c:a", "aac")
    done = run_pipe("-", "-", "wav", "32f", input=path.read_bytes())
    assert done.returncode == 0, done.stderr.decode()
    info = sf.info(io.BytesIO(done.stdout))
    assert (info.samplerate, info.channels) == (16000, 1)


@needs_ffmpeg
def test_truncated_input_fails_in_ffmpeg_too(tmp_path):
    sf.write(tmp_path / "in.wav", noise(frames=44100), 44100)
    path = ffmpeg_encode(tmp_path / "in.wav", tmp_path / "song.m4a", "-c:a", "aac", "-movflags", "+faststart")
    path.write_bytes(truncated(path.read_bytes(), 0.5))
    with pytest.raises(AudioError) as info:
        read_audio(path)
    assert "ffmpeg:" in assert_one_line_naming(info, "song.m4a")


@needs_ffmpeg
def test_garbage_fails_in_both_decoders(tmp_path):
    path = tmp_path / "noise.wav"
    path.write_bytes(os.urandom(4000))
    with pytest.raises(AudioError) as info:
        read_audio(path)
    message = assert_one_line_naming(info, "noise.wav")
    assert "soundfile: " in message and "ffmpeg: " in message


@needs_ffmpeg
def test_truncated_flac_is_not_rescued_by_ffmpeg(tmp_path):
    """A file libsndfile recognises but cannot finish is damaged; ffmpeg would hand back part of it."""
    path = tmp_path / "cut.flac"
    path.write_bytes(truncated(flac_bytes(), 0.5))
    with pytest.raises(AudioError) as info:
        read_audio(path)
    assert "corrupt or truncated" in assert_one_line_naming(info, "cut.flac")


# --- one decoding path: exact lengths, the same samples whichever way an input comes in ------------

SOURCE_RATE = 22050
SOURCE_FRAMES = 3 * SOURCE_RATE + 777  # not a multiple of any codec's frame size
# Read from standard input in a child process, saved for the parent to compare.
STDIN_SCRIPT = """
import sys
import numpy as np
from uvr_cli.io.decode import read_audio
np.save(sys.argv[1], read_audio("-").samples)
"""


def ffmpeg_f32(path: Path) -> np.ndarray:
    """ffmpeg's own decoding of `path`, through a pipe: a reference independent of uvr's decoding code."""
    done = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", "file:" + str(path), "-map", "0:a:0", "-f", "f32le", "-"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return np.frombuffer(done.stdout, np.float32).reshape(-1, 2)


@pytest.fixture(scope="module")
def encodings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same stereo music-like signal in every kind of input; ffmpeg-made ones only where it is installed."""
    folder = tmp_path_factory.mktemp("encodings")
    t = np.arange(SOURCE_FRAMES) / SOURCE_RATE
    rng = np.random.default_rng(5)
    x = np.stack(
        [
            0.3 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(t.size),
            0.3 * np.sin(2 * np.pi * 550 * t) + 0.05 * rng.standard_normal(t.size),
        ],
        axis=1,
    )
    files = {"wav": folder / "song.wav", "flac": folder / "song.flac", "ogg": folder / "song.ogg"}
    sf.write(files["wav"], x, SOURCE_RATE, "PCM_16")
    sf.write(files["flac"], x, SOURCE_RATE, "PCM_24")
    sf.write(files["ogg"], x, SOURCE_RATE, "VORBIS")
    if shutil.which("ffmpeg"):
        made = {
            "mp3-cbr-header": ("-b:a", "128k"),
            "mp3-vbr-header": ("-q:a", "4"),
            "mp3-cbr-no-header": ("-b:a", "128k", "-write_xing", "0"),
            "mp3-vbr-no-header": ("-q:a", "4", "-write_xing", "0"),
        }
        for name, options in made.items():
            files[name] = ffmpeg_encode(files["wav"], folder / f"{name}.mp3", "-c:a", "libmp3lame", *options)
        files["m4a"] = ffmpeg_encode(files["wav"], folder / "song.m4a", "-c:a", "aac")
    return files


def needs(encodings: dict[str, Path], name: str) -> Path:
    if name not in encodings:
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg to run this)")
    return encodings[name]


@pytest.mark.parametrize("name", ["wav", "flac", "ogg", "mp3-cbr-header", "mp3-vbr-header"])
def test_inputs_libsndfile_measures_are_read_in_place_at_their_exact_length(encodings, name):
    path = needs(encodings, name)
    with sf.SoundFile(path) as handle:  # one read from the start, as librosa.load does (soundfile.read seeks first)
        expected = handle.read(dtype="float32", always_2d=True)
    with open_source(path) as source, source.open() as reader:
        assert source.path == str(path) and source.subtype is not None
        assert (source.frames, source.sample_rate, source.channels) == (SOURCE_FRAMES, SOURCE_RATE, 2)
        np.testing.assert_array_equal(reader.read(SOURCE_FRAMES + 1), expected)
    if name.startswith("mp3"):  # the header's length is the one ffmpeg's decoder gives too
        assert ffmpeg_f32(path).shape[0] == SOURCE_FRAMES


@pytest.mark.parametrize("name", ["mp3-cbr-no-header", "mp3-vbr-no-header", "m4a"])
def test_inputs_libsndfile_cannot_measure_are_decoded_by_ffmpeg(encodings, name):
    """libsndfile stops a headerless MP3 at its estimate of the length (a VBR one far too early)."""
    path = needs(encodings, name)
    reference = ffmpeg_f32(path)
    with open_source(path) as source, source.open() as reader:
        assert (source.subtype, source.source_format, source.frames) == (None, None, reference.shape[0])
        np.testing.assert_array_equal(reader.read(source.frames), reference)
    assert reference.shape[0] >= SOURCE_FRAMES


@pytest.mark.parametrize("name", ["wav", "flac", "ogg", "mp3-cbr-header", "mp3-vbr-no-header", "m4a"])
def test_file_stdin_and_fifo_give_the_same_samples(tmp_path, encodings, name):
    path = needs(encodings, name)
    from_file = read_audio(path)
    done = subprocess.run(
        [sys.executable, "-c", STDIN_SCRIPT, str(tmp_path / "stdin.npy")],
        input=path.read_bytes(),
        capture_output=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(path.read_bytes()))
    writer.start()
    from_fifo = read_audio(fifo)
    writer.join()
    np.testing.assert_array_equal(np.load(tmp_path / "stdin.npy"), from_file.samples)
    np.testing.assert_array_equal(from_fifo.samples, from_file.samples)


@pytest.mark.parametrize("name", ["ogg", "mp3-vbr-header"])
def test_blocks_add_up_to_the_whole_and_every_open_starts_again(encodings, name):
    """Also for a 22.05 kHz (MPEG-2) MP3, which mpg123 decodes differently after a seek."""
    path = needs(encodings, name)
    with open_source(path) as source:
        for _ in range(2):
            with source.open() as reader:
                blocks = [reader.read(10000) for _ in range(8)]
                assert [len(b) for b in blocks] == [10000] * 6 + [SOURCE_FRAMES - 60000, 0]
                assert all(b.flags.c_contiguous and b.dtype == np.float32 and b.shape[1] == 2 for b in blocks)
                np.testing.assert_array_equal(np.concatenate(blocks), read_audio(path).samples)


def spools(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def tmpdir_for_spools(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "TMPDIR"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@needs_ffmpeg
def test_the_spool_is_removed_after_use_and_after_an_error(encodings, tmpdir_for_spools):
    with open_source(encodings["m4a"]) as source:
        (spool,) = spools(tmpdir_for_spools)
        assert spool.startswith("uvr-") and Path(source.path).parent == tmpdir_for_spools / spool
        assert source.path.endswith(".wav") and os.listdir(tmpdir_for_spools / spool) == ["decoded.wav"]
    assert spools(tmpdir_for_spools) == []
    with pytest.raises(KeyboardInterrupt), open_source(encodings["m4a"]):
        raise KeyboardInterrupt
    assert spools(tmpdir_for_spools) == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_the_spool_is_removed_when_decoding_fails(tmp_path, tmpdir_for_spools):
    fifo = tmp_path / "garbage"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(os.urandom(5000)))
    writer.start()
    with pytest.raises(AudioError) as info:
        read_audio(fifo)
    writer.join()
    assert "not a readable audio file" in assert_one_line_naming(info, "garbage")
    assert spools(tmpdir_for_spools) == []


def test_an_mp3_shorter_than_its_header_says_is_an_error(tmp_path):
    write_audio(tmp_path / "whole.mp3", tone(44100, 2, 44100), 44100, "mp3", None)
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(truncated((tmp_path / "whole.mp3").read_bytes(), 0.5))
    with pytest.raises(AudioError) as info:
        read_audio(cut, ffmpeg=None)
    assert "corrupt or truncated audio (it ends after" in assert_one_line_naming(info, "cut.mp3")


@needs_ffmpeg
def test_a_headerless_mp3_needs_ffmpeg(encodings):
    path = encodings["mp3-vbr-no-header"]
    with pytest.raises(AudioError) as info:
        read_audio(path, ffmpeg=None)
    assert "without a Xing/LAME header" in assert_one_line_naming(info, path.name)
    with pytest.raises(AudioError) as info:
        read_audio(path, ffmpeg="uvr-test-no-such-ffmpeg")
    assert "was not found to try ffmpeg" in assert_one_line_naming(info, path.name)


# --- encoding: integers, bitrates, stems written together --------------------------------------------


@pytest.mark.parametrize("bits", [16, 24])
def test_wav_and_flac_hold_the_same_integers(tmp_path, bits):
    """Quantised by us: round(clip(x) * 2**(bits-1)), the top code clipped, whatever the container."""
    x = noise(frames=20000, peak=1.1, seed=9)
    x[:4, 0] = [1.0, -1.0, 0.5 / 2 ** (bits - 1), -1.5 / 2 ** (bits - 1)]  # full scale and two half-way points
    stored = {}
    for fmt in ("wav", "flac"):
        write_audio(tmp_path / f"out.{fmt}", x, RATE, fmt, str(bits))
        stored[fmt] = sf.read(tmp_path / f"out.{fmt}", dtype="int32")[0] >> (32 - bits)
    full = 2 ** (bits - 1)
    expected = np.clip(np.round(np.clip(x.astype(np.float64), -1, 1) * full), -full, full - 1).astype(np.int32)
    np.testing.assert_array_equal(stored["wav"], expected)
    np.testing.assert_array_equal(stored["flac"], expected)


def measured_kbps(path: Path, seconds: float) -> float:
    return path.stat().st_size * 8 / seconds / 1000


@pytest.mark.parametrize(
    ("rate", "bitrate", "kbps"),
    [
        (44100, None, 320),
        (44100, "128k", 128),
        (48000, "192000", 192),
        (22050, None, 160),
        (22050, "64k", 64),
        (11025, "32k", 32),
    ],
)
def test_mp3_is_written_at_the_bitrate_asked_for(tmp_path, rate, bitrate, kbps):
    seconds = 4
    write_audio(tmp_path / "out.mp3", noise(frames=seconds * rate, peak=0.5), rate, "mp3", None, bitrate=bitrate)
    assert measured_kbps(tmp_path / "out.mp3", seconds) == pytest.approx(kbps, rel=0.05)  # neighbours: >= 10 % away
    assert read_audio(tmp_path / "out.mp3", ffmpeg=None).samples.shape[0] == seconds * rate


def test_ogg_bitrate_sets_the_vorbis_quality(tmp_path):
    """Vorbis is VBR: a higher bitrate asks for a higher quality; noise needs at least the nominal rate."""
    seconds, sizes = 4, {}
    for bitrate in ("96k", "192k", "320k", None):
        path = tmp_path / f"{bitrate}.ogg"
        write_audio(path, noise(frames=seconds * 44100, peak=0.5), 44100, "ogg", None, bitrate=bitrate)
        sizes[bitrate] = measured_kbps(path, seconds)
    assert sizes["96k"] < sizes["192k"] < sizes["320k"]
    assert sizes[None] == pytest.approx(sizes["320k"], rel=0.02)
    assert sizes["96k"] >= 96 * 0.9 and sizes["320k"] >= 320 * 0.9


@pytest.mark.parametrize(
    ("fmt", "rate", "bitrate", "words"),
    [
        ("wav", 44100, "320k", ["wav", "lossless"]),
        ("flac", 44100, "320k", ["flac", "lossless"]),
        ("mp3", 44100, "100k", ["96k", "112k"]),
        ("mp3", 22050, "320k", ["160k"]),
        ("ogg", 44100, "32k", ["64k"]),
        ("mp3", 44100, "fast", ["320k"]),
        ("ogg", 44100, "1500", ["kbit/s"]),
    ],
)
def test_impossible_bitrates_are_usage_errors(tmp_path, fmt, rate, bitrate, words):
    with pytest.raises(UsageError) as info:
        output_subtype(fmt, None, rate, 2, bitrate=bitrate)
    assert all(word in str(info.value) for word in words), str(info.value)


def test_stems_are_renamed_into_place_together(tmp_path):
    outputs = {"vocals": str(tmp_path / "v.flac"), "instrumental": str(tmp_path / "i.flac")}
    with open_stem_writers(outputs, RATE, 2, "flac", "24", 3000) as writers:
        for writer in writers.values():
            writer.write(noise(frames=1000))
            writer.write(noise(frames=2000, seed=1))
        assert spools(tmp_path) == sorted(spools(tmp_path)) and leftovers(tmp_path) != []
        assert not (tmp_path / "v.flac").exists() and not (tmp_path / "i.flac").exists()
    assert leftovers(tmp_path) == []
    for stem, writer in writers.items():
        assert writer.report().frames == 3000 and sf.info(outputs[stem]).frames == 3000


def test_a_failure_in_one_stem_leaves_every_destination_untouched(tmp_path):
    outputs = {"vocals": str(tmp_path / "v.wav"), "instrumental": str(tmp_path / "i.wav")}
    Path(outputs["vocals"]).write_bytes(b"previous vocals")
    with pytest.raises(ValueError), open_stem_writers(outputs, RATE, 2, "wav", "16", 3000) as writers:
        writers["vocals"].write(noise())
        writers["instrumental"].write(noise(channels=1))  # a programming error, after one stem was complete
    assert spools(tmp_path) == ["v.wav"] and Path(outputs["vocals"]).read_bytes() == b"previous vocals"


def test_only_one_stem_can_go_to_standard_output(tmp_path):
    with pytest.raises(UsageError), open_stem_writers({"vocals": "-", "instrumental": "-"}, RATE, 2, "wav", None, 10):
        pass


def test_a_reader_that_goes_away_ends_the_writer_quietly_with_141(tmp_path):
    """`uvr ... -o - | head -c 100`: the CLI maps StdoutClosed to 141, as SIGPIPE would end a C tool."""
    script = (
        "import sys, numpy as np\n"
        "from uvr_cli.io.encode import StdoutClosed, write_audio\n"
        "try:\n"
        "    write_audio('-', np.zeros((441000, 2), np.float32), 44100, 'wav', '16')\n"
        "except StdoutClosed as exc:\n"
        "    sys.exit(exc.exit_code)\n"
    )
    (tmp_path / "write.py").write_text(script)
    pipeline = f"'{sys.executable}' '{tmp_path / 'write.py'}' | head -c 100 >/dev/null; echo ${{PIPESTATUS[0]}}"
    done = subprocess.run(["bash", "-c", pipeline], capture_output=True, cwd=ROOT, timeout=60, check=False)
    assert done.stdout.decode().strip() == "141" and done.stderr == b""
    assert StdoutClosed.exit_code == 141 and issubclass(StdoutClosed, AudioError)
