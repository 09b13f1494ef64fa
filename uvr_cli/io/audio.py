"""Decoding and encoding of audio: files, standard input and standard output.

Decoding tries soundfile (libsndfile) first, so the float32 samples are exactly those of
`soundfile.read(..., dtype="float32")` that the reference separation was computed from; ffmpeg
decodes what libsndfile cannot open. Encoding clips to full scale itself (libsndfile before 1.1
wraps around instead, and clipping here is what counts the clipped samples) and goes through a
hidden temporary file that replaces the destination only when complete. A failure to read or
write is a one-line AudioError that names the file; an impossible format choice is a UsageError.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

from uvr_cli.errors import AudioError, UsageError

AUDIO_EXTENSIONS: frozenset[str] = frozenset({
    "wav", "wave", "w64", "rf64", "flac", "ogg", "oga", "opus", "mp3", "mp2", "m4a", "aac",
    "aiff", "aif", "aifc", "caf", "au", "snd", "wma", "ape", "wv", "ac3", "amr", "mka", "mkv", "mp4",
    "webm", "mov",
})
"""Lower-case file-name extensions, without the dot, that count as audio when a folder is searched."""

STDIO = "-"
"""The path that means standard input (read_audio) or standard output (write_audio)."""

_STDIN_NAME = "standard input"
_STDOUT_NAME = "standard output"

# libsndfile logs "data : <declared> (should be <present>)" when a WAV/AIFF header promises more
# audio than the file holds; that is the only sign of truncation, as it then reads what is there.
_HEADER_MISMATCH = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
# Writers that stream to a pipe cannot go back to fill in sizes: they leave 0 or ~4 GiB.
_STREAMED_SIZE = 0x7FFF0000

_BLOCK_FRAMES = 1 << 16  # frames converted and encoded at a time, so a long track is not copied whole
_SPOOL_BYTES = 64 << 20  # encoded output for standard output is kept in memory up to this size
_WAV_MAX_DATA_BYTES = 2**32 - 2**20  # beyond this a WAV header's 32-bit sizes overflow: write RF64

_PCM_SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "32f": "FLOAT"}
_FORMAT_DEPTHS = {"wav": ("16", "24", "32f"), "flac": ("16", "24")}
_LOSSY_SUBTYPES = {"ogg": "VORBIS", "mp3": "MPEG_LAYER_III"}
_SAMPLE_BYTES = {"PCM_16": 2, "PCM_24": 3, "FLOAT": 4}
_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


@dataclass
class Audio:
    """Decoded audio; `subtype` and `source_format` are libsndfile's names, None when ffmpeg decoded it."""

    samples: np.ndarray  # float32, shape (frames, channels), C-contiguous
    sample_rate: int
    subtype: str | None  # e.g. "PCM_16", "PCM_24", "FLOAT", "VORBIS"
    source_format: str | None  # e.g. "WAV", "FLAC"
    nonfinite_replaced: int = 0  # NaN/Inf samples set to 0, for the caller to warn about


@dataclass(frozen=True)
class WriteReport:
    """What write_audio wrote, and what it had to change in the samples to write it."""

    dest: str  # the path written, or "-" for standard output
    fmt: str
    subtype: str  # libsndfile's subtype, e.g. "PCM_24"
    frames: int
    channels: int
    sample_rate: int
    clipped_samples: int  # samples beyond full scale set to +/-1 (never for "32f")
    nonfinite_replaced: int  # NaN/Inf samples written as 0


class _NotRecognised(Exception):
    """libsndfile could not open the input at all; the message is its reason."""


def read_audio(source: str | os.PathLike, ffmpeg: str | None = "ffmpeg") -> Audio:
    """Decode a file, or all of standard input when `source` is "-".

    `ffmpeg` is the command used when libsndfile cannot open the input (None: never use ffmpeg).
    Raises AudioError with one line that names the input.
    """
    if os.fspath(source) == STDIO:
        return _decode_bytes(_read_stdin(), _STDIN_NAME, ffmpeg)
    path = os.fsdecode(source)
    name = f"'{path}'"
    try:
        with open(path, "rb") as handle:
            status = os.fstat(handle.fileno())
            # A pipe or device (e.g. bash's <(...)) cannot be seeked by libsndfile: buffer it.
            piped = None if stat.S_ISREG(status.st_mode) else handle.read()
    except OSError as exc:
        raise _read_error(name, exc.strerror or str(exc)) from None
    if piped is not None:
        return _decode_bytes(piped, name, ffmpeg)
    if status.st_size == 0:
        raise _read_error(name, "the file is empty")
    try:
        return _soundfile_decode(path, name)
    except _NotRecognised as exc:
        return _ffmpeg_fallback(path, name, str(exc), ffmpeg)


def _read_stdin() -> bytes:
    """All of standard input, refusing a terminal (the user forgot to pipe audio in)."""
    if sys.stdin is None:
        raise _read_error(_STDIN_NAME, "there is none")
    if sys.stdin.isatty():
        raise _read_error(_STDIN_NAME, "it is a terminal; pipe audio into it or name a file")
    try:
        return sys.stdin.buffer.read()
    except OSError as exc:
        raise _read_error(_STDIN_NAME, exc.strerror or str(exc)) from None


def _decode_bytes(data: bytes, name: str, ffmpeg: str | None) -> Audio:
    """Decode an input held in memory; ffmpeg gets it through a temporary file, as MP4 needs seeking."""
    if not data:
        raise _read_error(name, "it is empty")
    try:
        return _soundfile_decode(io.BytesIO(data), name)
    except _NotRecognised as exc:
        reason = str(exc)
    with tempfile.TemporaryDirectory(prefix="uvr-") as folder:
        path = os.path.join(folder, "input")
        with open(path, "wb") as handle:
            handle.write(data)
        return _ffmpeg_fallback(path, name, reason, ffmpeg)


def _soundfile_decode(file: str | BinaryIO, name: str) -> Audio:
    """Decode with libsndfile: SoundFile.read is what soundfile.read runs, and its log shows truncation."""
    try:
        handle = sf.SoundFile(file)
    except sf.LibsndfileError as exc:
        raise _NotRecognised(_sf_reason(exc)) from None
    with handle:
        try:
            samples = handle.read(dtype="float32", always_2d=True)
        except sf.LibsndfileError as exc:
            raise _read_error(name, f"corrupt or truncated audio ({_sf_reason(exc)})") from None
        for declared, present in _HEADER_MISMATCH.findall(handle.extra_info):
            if 0 < int(declared) < _STREAMED_SIZE and int(declared) > int(present):
                raise _read_error(name, f"the file is truncated (its header declares {declared} bytes "
                                        f"of audio, {present} are present)")
        return _audio(samples, handle.samplerate, handle.subtype, handle.format, name)


def _ffmpeg_fallback(path: str, name: str, sf_reason: str, ffmpeg: str | None) -> Audio:
    """Decode with ffmpeg to 32-bit float WAV at the native rate and channel count.

    -xerror makes a decoding error (a truncated or damaged stream) fail instead of yielding part of it.
    """
    if ffmpeg is None:
        raise _read_error(name, sf_reason)
    executable = shutil.which(ffmpeg)
    if executable is None:
        raise _read_error(name, f"{sf_reason} (and '{ffmpeg}' was not found to try ffmpeg, "
                                "which decodes more formats)")
    input_arg = "file:" + os.path.abspath(path)  # "file:" so a name starting with "-" is not an option
    command = [executable, "-nostdin", "-hide_banner", "-loglevel", "error", "-xerror", "-i", input_arg,
               "-map", "0:a:0", "-c:a", "pcm_f32le", "-f", "wav", "pipe:1"]
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    except OSError as exc:
        raise _read_error(name, f"cannot run {executable}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        # The name is removed before splitting: a line break in it would otherwise leave half of it as the cause.
        lines = done.stderr.decode("utf-8", "replace").replace(input_arg + ": ", "").strip().splitlines()
        cause = lines[-1] if lines else f"exit status {done.returncode}"
        raise _read_error(name, f"not a readable audio file (soundfile: {sf_reason}; ffmpeg: {cause})")
    try:
        with sf.SoundFile(io.BytesIO(done.stdout)) as handle:
            samples = handle.read(dtype="float32", always_2d=True)
            sample_rate = handle.samplerate
    except sf.LibsndfileError as exc:
        raise _read_error(name, f"ffmpeg's output was unreadable ({_sf_reason(exc)})") from None
    return _audio(samples, sample_rate, None, None, name)


def _audio(samples: np.ndarray, sample_rate: int, subtype: str | None, fmt: str | None, name: str) -> Audio:
    """Reject empty audio, zero the NaN/Inf samples and count them."""
    if samples.shape[0] == 0:
        raise _read_error(name, "it contains no audio frames")
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    finite = np.isfinite(samples)
    nonfinite = int(samples.size - np.count_nonzero(finite))
    if nonfinite:
        samples[~finite] = 0.0
    return Audio(samples, int(sample_rate), subtype, fmt, nonfinite)


def output_subtype(fmt: str, bit_depth: str | None, sample_rate: int, channels: int) -> str:
    """libsndfile's subtype for `fmt` at `bit_depth`, or UsageError when the format cannot store it.

    Cheap, so a caller can check the options before spending minutes on a separation.
    bit_depth None means 16 for wav/flac; ogg and mp3 ignore it.
    """
    fmt = fmt.lower()
    if fmt in _LOSSY_SUBTYPES:
        if fmt == "mp3" and channels > 2:
            raise UsageError(f"mp3 cannot store {channels} channels; choose wav, flac or ogg")
        if fmt == "mp3" and sample_rate not in _MP3_RATES:
            raise UsageError(f"mp3 cannot store {sample_rate} Hz audio (only {', '.join(map(str, _MP3_RATES))}); "
                             "choose wav, flac or ogg, or another output sample rate")
        return _LOSSY_SUBTYPES[fmt]
    if fmt not in _FORMAT_DEPTHS:
        raise UsageError(f"unknown output format '{fmt}'; choose wav, flac, ogg or mp3")
    depth = "16" if bit_depth is None else bit_depth
    if depth not in _PCM_SUBTYPES:
        raise UsageError(f"unknown bit depth '{depth}'; choose 16, 24 or 32f")
    if depth not in _FORMAT_DEPTHS[fmt]:
        raise UsageError(f"{fmt} cannot store bit depth {depth}; choose {' or '.join(_FORMAT_DEPTHS[fmt])}, "
                         "or wav for 32-bit float")
    return _PCM_SUBTYPES[depth]


def write_audio(dest: str | os.PathLike, samples: np.ndarray, sample_rate: int, fmt: str,
                bit_depth: str | None) -> WriteReport:
    """Encode (frames, channels) or mono (frames,) float samples to a file, or to standard output for "-".

    Samples beyond full scale are clipped (counted) except for "32f"; NaN/Inf are written as 0 (counted).
    A file appears complete or not at all. Raises UsageError for a format that cannot hold the
    audio, AudioError (one line naming the destination) when writing fails.
    """
    if samples.ndim == 1:
        samples = samples[:, np.newaxis]
    if samples.ndim != 2 or samples.shape[1] == 0:
        raise ValueError(f"samples must have shape (frames,) or (frames, channels), not {samples.shape}")
    if not np.issubdtype(samples.dtype, np.floating):
        raise ValueError(f"samples must be floating point, not {samples.dtype}")
    fmt = fmt.lower()
    frames, channels = samples.shape
    subtype = output_subtype(fmt, bit_depth, sample_rate, channels)
    container = fmt.upper()
    if fmt == "wav" and frames * channels * _SAMPLE_BYTES[subtype] > _WAV_MAX_DATA_BYTES:
        container = "RF64"

    def encode(raw: BinaryIO) -> WriteReport:
        clipped, nonfinite = _encode(raw, samples, sample_rate, container, subtype)
        return WriteReport(os.fsdecode(dest), fmt, subtype, frames, channels, int(sample_rate), clipped, nonfinite)

    if os.fspath(dest) == STDIO:
        return _write_stdout(encode)
    return _write_file(Path(os.fsdecode(dest)), encode)


class _ErrorKeepingFile:
    """A file for soundfile's virtual I/O that keeps the first exception of a write, seek or tell.

    soundfile calls these from C callbacks, where an exception would be printed and lost, and
    libsndfile carries on after failed writes for FLAC, OGG and MP3; so the error is kept here and
    raised by `check` once control is back in Python.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.error: BaseException | None = None

    def write(self, data: bytes) -> int:
        try:
            return self._raw.write(data)
        except BaseException as exc:  # noqa: BLE001 - kept and re-raised by check()
            self.error = self.error or exc
            return 0

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        try:
            return self._raw.seek(offset, whence)
        except BaseException as exc:  # noqa: BLE001 - kept and re-raised by check()
            self.error = self.error or exc
            return -1

    def tell(self) -> int:
        try:
            return self._raw.tell()
        except BaseException as exc:  # noqa: BLE001 - kept and re-raised by check()
            self.error = self.error or exc
            return -1

    def check(self) -> None:
        """Raise the kept exception, if any."""
        if self.error is not None:
            raise self.error


def _encode(raw: BinaryIO, samples: np.ndarray, sample_rate: int, container: str, subtype: str) -> tuple[int, int]:
    """Encode block by block into `raw`; return (clipped, non-finite) sample counts."""
    sink = _ErrorKeepingFile(raw)
    dtype = np.float64 if samples.dtype == np.float64 else np.float32
    clipped = nonfinite = 0
    try:
        with sf.SoundFile(sink, "w", sample_rate, samples.shape[1], subtype, format=container) as out:
            for start in range(0, samples.shape[0], _BLOCK_FRAMES):
                block = np.array(samples[start:start + _BLOCK_FRAMES], dtype=dtype, order="C")
                bad = ~np.isfinite(block)
                nonfinite += int(np.count_nonzero(bad))
                block[bad] = 0.0
                if subtype != "FLOAT":
                    clipped += int(np.count_nonzero(np.abs(block) > 1.0))
                    np.clip(block, -1.0, 1.0, out=block)
                out.write(block)
                sink.check()
    except Exception:
        sink.check()  # the I/O error behind libsndfile's failure (or soundfile's assert) is the cause
        raise
    sink.check()
    return clipped, nonfinite


def _temporary_beside(path: Path, name: str) -> Path:
    """Check the destination, make its folder, and name the temporary file that is renamed onto it when done:
    '.<name>.<pid>-<random>.uvr-tmp' in the same folder (so the rename is atomic and the name ours alone)."""
    if path.is_dir():
        raise _write_error(name, "it is a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(name, f"cannot create folder '{path.parent}': {exc.strerror or exc}") from None
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.uvr-tmp")


def _write_file(path: Path, encode: Callable[[BinaryIO], WriteReport]) -> WriteReport:
    """Encode into '.<name>.<pid>-<random>.uvr-tmp' beside `path`, then rename it over `path`."""
    name = f"'{path}'"
    temp = _temporary_beside(path, name)
    try:
        with open(temp, "xb") as raw:  # 'x': never an existing file; unlike mkstemp, the umask sets the mode
            report = encode(raw)
        os.replace(temp, path)
        return report
    except BaseException as exc:
        _remove_temporary(temp)
        if isinstance(exc, (OSError, sf.LibsndfileError)):
            raise _write_error(name, _write_reason(exc)) from None
        raise


def _remove_temporary(temp: Path) -> None:
    """Remove a writer's temporary file if it exists.

    Tried even when open() seemed not to return: a signal (Ctrl-C, SIGTERM) can arrive after the file was
    created and before the writer knew it, and the name is ours alone (pid and random part).
    """
    try:
        os.unlink(temp)
    except OSError:
        pass  # never created, already gone, or its folder is: nothing is left to clean


def _write_stdout(encode: Callable[[BinaryIO], WriteReport]) -> WriteReport:
    """Encode into a spooled temporary file (WAV and FLAC headers need seeking), then copy it out."""
    if sys.stdout is None:
        raise _write_error(_STDOUT_NAME, "there is none")
    if sys.stdout.isatty():
        raise _write_error(_STDOUT_NAME, "it is a terminal; redirect it to a file or pipe")
    try:
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
            report = encode(spool)
            spool.seek(0)
            sys.stdout.flush()
            shutil.copyfileobj(spool, sys.stdout.buffer, 1 << 20)
            sys.stdout.buffer.flush()
    except (OSError, sf.LibsndfileError) as exc:
        raise _write_error(_STDOUT_NAME, _write_reason(exc)) from None
    return report


def _sf_reason(exc: sf.LibsndfileError) -> str:
    """libsndfile's own message, without the Python object that soundfile puts in front."""
    return exc.error_string.strip().rstrip(".")


def _write_reason(exc: OSError | sf.LibsndfileError) -> str:
    if isinstance(exc, sf.LibsndfileError):
        return f"encoding failed ({_sf_reason(exc)})"
    return exc.strerror or str(exc)


def _read_error(name: str, cause: str) -> AudioError:
    return AudioError(_one_line(f"cannot read {name}: {cause}"))


def _write_error(name: str, cause: str) -> AudioError:
    return AudioError(_one_line(f"cannot write {name}: {cause}"))


def _one_line(message: str) -> str:
    """Keep a message on one line even when a path or a tool's output holds line breaks."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


class BlockReader:
    """Float32 blocks of a file that libsndfile opens, read in order, for the streaming path.

    Samples are those `read_audio` gives for the same file (libsndfile's own float conversion), with
    NaN/Inf set to 0 and counted. Use `open_block_reader`, which returns None when ffmpeg is needed.
    """

    def __init__(self, handle: sf.SoundFile, name: str) -> None:
        self._handle = handle
        self.name = name
        self.frames = int(handle.frames)
        self.sample_rate = int(handle.samplerate)
        self.channels = int(handle.channels)
        self.subtype: str | None = handle.subtype
        self.source_format: str | None = handle.format
        self.nonfinite_replaced = 0

    def read(self, frames: int) -> np.ndarray:
        """The next `frames` frames (fewer at the end) as (frames, channels) float32."""
        try:
            block = self._handle.read(frames, dtype="float32", always_2d=True)
        except sf.LibsndfileError as exc:
            raise _read_error(self.name, f"corrupt or truncated audio ({_sf_reason(exc)})") from None
        finite = np.isfinite(block)
        bad = int(block.size - np.count_nonzero(finite))
        if bad:
            block[~finite] = 0.0
            self.nonfinite_replaced += bad
        return block

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> BlockReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_INEXACT_LENGTH_FORMATS = frozenset({"MPEG", "OGG"})  # libsndfile may only estimate their length: decode whole


def open_block_reader(path: str | os.PathLike) -> BlockReader | None:
    """A BlockReader for a regular file libsndfile decodes, or None (stdin, pipes, formats for ffmpeg).

    Raises AudioError for what `read_audio` rejects too: an unreadable, empty or truncated file.
    """
    if os.fspath(path) == STDIO:
        return None
    path = os.fsdecode(path)
    name = f"'{path}'"
    try:
        status = os.stat(path)
    except OSError as exc:
        raise _read_error(name, exc.strerror or str(exc)) from None
    if not stat.S_ISREG(status.st_mode) or status.st_size == 0:
        return None  # read_audio buffers pipes and reports empty files
    try:
        handle = sf.SoundFile(path)
    except sf.LibsndfileError:
        return None
    for declared, present in _HEADER_MISMATCH.findall(handle.extra_info):
        if 0 < int(declared) < _STREAMED_SIZE and int(declared) > int(present):
            handle.close()
            raise _read_error(name, f"the file is truncated (its header declares {declared} bytes "
                                    f"of audio, {present} are present)")
    if handle.frames <= 0 or not handle.seekable() or handle.format in _INEXACT_LENGTH_FORMATS:
        handle.close()
        return None
    return BlockReader(handle, name)


class BlockWriter:
    """Encodes (frames, channels) float blocks in order, clipping as `write_audio` does; see `open_block_writer`."""

    def __init__(self, out: sf.SoundFile, sink: _ErrorKeepingFile, dest: str, fmt: str, subtype: str) -> None:
        self._out, self._sink = out, sink
        self.dest, self.fmt, self.subtype = dest, fmt, subtype
        self.frames = self.clipped_samples = self.nonfinite_replaced = 0

    def write(self, samples: np.ndarray) -> None:
        if samples.ndim == 1:
            samples = samples[:, np.newaxis]
        dtype = np.float64 if samples.dtype == np.float64 else np.float32
        for start in range(0, samples.shape[0], _BLOCK_FRAMES):
            block = np.array(samples[start:start + _BLOCK_FRAMES], dtype=dtype, order="C")
            bad = ~np.isfinite(block)
            self.nonfinite_replaced += int(np.count_nonzero(bad))
            block[bad] = 0.0
            if self.subtype != "FLOAT":
                self.clipped_samples += int(np.count_nonzero(np.abs(block) > 1.0))
                np.clip(block, -1.0, 1.0, out=block)
            self._out.write(block)
            self._sink.check()
            self.frames += block.shape[0]

    def report(self) -> WriteReport:
        return WriteReport(self.dest, self.fmt, self.subtype, self.frames, self._out.channels,
                           int(self._out.samplerate), self.clipped_samples, self.nonfinite_replaced)


@contextlib.contextmanager
def open_block_writer(dest: str | os.PathLike, sample_rate: int, channels: int, fmt: str, bit_depth: str | None,
                      frames: int) -> Iterator[BlockWriter]:
    """Write a file block by block, atomically: into '.<name>.<pid>-<random>.uvr-tmp', renamed when the block ends.

    `frames` is the total to be written (it picks RF64 for WAV beyond 4 GiB). On an exception the temporary
    file is removed and the destination is untouched. Standard output is not supported (use write_audio).
    """
    fmt = fmt.lower()
    subtype = output_subtype(fmt, bit_depth, sample_rate, channels)
    container = fmt.upper()
    if fmt == "wav" and frames * channels * _SAMPLE_BYTES[subtype] > _WAV_MAX_DATA_BYTES:
        container = "RF64"
    path = Path(os.fsdecode(dest))
    name = f"'{path}'"
    temp = _temporary_beside(path, name)
    try:
        with open(temp, "xb") as raw:
            sink = _ErrorKeepingFile(raw)
            try:
                with sf.SoundFile(sink, "w", sample_rate, channels, subtype, format=container) as out:
                    yield BlockWriter(out, sink, os.fsdecode(dest), fmt, subtype)
                    sink.check()
            except Exception:
                sink.check()
                raise
            sink.check()
        os.replace(temp, path)
    except BaseException as exc:
        _remove_temporary(temp)
        if isinstance(exc, (OSError, sf.LibsndfileError)):
            raise _write_error(name, _write_reason(exc)) from None
        raise
