"""Decoding audio from files, pipes and standard input as re-openable block sources of exact length.

libsndfile decodes first, so the float32 samples are exactly those of `soundfile.read(..., dtype="float32")` that
the reference separation was computed from; ffmpeg decodes what libsndfile cannot open. A seekable file that
libsndfile opens with an exact frame count is read in place. Everything else is copied or decoded once into a
private folder in tempfile.gettempdir(), removed when `open_source` exits: standard input and pipes (their raw
bytes, then treated like a file, so the samples do not depend on how the input came in) and what ffmpeg decodes
(as 32-bit float WAV, RF64 beyond 4 GiB; not W64, whose float data libsndfile 1.2 misreads as PCM_32 when
ffmpeg writes it with a WAVE_FORMAT_EXTENSIBLE header). MP3 is the one libsndfile format whose length can
be wrong: without a Xing/LAME header libsndfile only estimates it, and stops reading at the estimate (measured:
a 20 s VBR file without a header read as 7.9 s), so such files go to ffmpeg. A failure is a one-line AudioError
that names the input.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import soundfile as sf
from soundfile import _ffi, _snd  # the C library itself, for BlockReader.read

from uvr_cli.errors import AudioError
from uvr_cli.io.stderr import native_output_silenced

AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {
        "wav",
        "wave",
        "w64",
        "rf64",
        "flac",
        "ogg",
        "oga",
        "opus",
        "mp3",
        "mp2",
        "m4a",
        "aac",
        "aiff",
        "aif",
        "aifc",
        "caf",
        "au",
        "snd",
        "wma",
        "ape",
        "wv",
        "ac3",
        "amr",
        "mka",
        "mkv",
        "mp4",
        "webm",
        "mov",
    }
)
"""Lower-case file-name extensions, without the dot, that count as audio when a folder is searched."""

STDIO = "-"
"""The path that means standard input (decoding) or standard output (encoding)."""

_STDIN_NAME = "standard input"

# libsndfile logs "data : <declared> (should be <present>)" when a WAV/AIFF header promises more
# audio than the file holds; that is the only sign of truncation, as it then reads what is there.
_HEADER_MISMATCH = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
# Writers that stream to a pipe cannot go back to fill in sizes: they leave 0 or ~4 GiB.
_STREAMED_SIZE = 0x7FFF0000
_COPY_BYTES = 1 << 20  # chunk size when copying a pipe or standard input into the spool


@dataclass
class Audio:
    """Decoded audio; `subtype` and `source_format` are libsndfile's names, None when ffmpeg decoded it."""

    samples: np.ndarray  # float32, shape (frames, channels), C-contiguous
    sample_rate: int
    subtype: str | None  # e.g. "PCM_16", "PCM_24", "FLOAT", "VORBIS"
    source_format: str | None  # e.g. "WAV", "FLAC"
    nonfinite_replaced: int = 0  # NaN/Inf samples set to 0, for the caller to warn about


class BlockReader:
    """Float32 blocks of a source, in order from its first frame; made by `DecodedSource.open`.

    Delivers exactly `frames` frames: a file that ends sooner raises AudioError rather than being cut short.
    """

    def __init__(self, path: str, name: str, frames: int) -> None:
        try:
            with native_output_silenced():
                self._handle = sf.SoundFile(path)
        except (sf.LibsndfileError, OSError) as exc:
            reason = sf_reason(exc) if isinstance(exc, sf.LibsndfileError) else exc.strerror or str(exc)
            raise _read_error(name, f"cannot open it again ({reason})") from None
        self.name = name
        self.frames = frames
        self.sample_rate = int(self._handle.samplerate)
        self.channels = int(self._handle.channels)
        self.nonfinite_replaced = 0
        self._position = 0

    def read(self, frames: int) -> np.ndarray:
        """The next `frames` frames (fewer at the end) as C-contiguous (frames, channels) float32, NaN/Inf as 0."""
        wanted = max(0, min(frames, self.frames - self._position))
        block = np.empty((wanted, self.channels), dtype=np.float32)
        # libsndfile's C read, not SoundFile.read: that seeks to where it stopped after every call, and a seek
        # makes mpg123 decode MPEG-2/2.5 MP3 differently (by one float32 step on a third of the samples), so the
        # samples would depend on the block size. Read forward only, they equal those of one whole read.
        got = _snd.sf_readf_float(self._handle._file, _ffi.cast("float *", block.ctypes.data), wanted)
        error = _snd.sf_error(self._handle._file)
        if error:
            raise _read_error(self.name, f"corrupt or truncated audio ({sf_reason(sf.LibsndfileError(error))})")
        if got < wanted:
            raise _read_error(
                self.name,
                f"corrupt or truncated audio (it ends after {self._position + got} of its {self.frames} frames; "
                "--allow-truncated separates what it holds)",
            )
        self._position += wanted
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


@dataclass(frozen=True)
class DecodedSource:
    """An input ready to be read, as often as needed, through `open`; valid inside `open_source` only."""

    name: str  # as messages show it: "'song.mp3'" or "standard input"
    frames: int  # exactly what a reader from `open` delivers
    sample_rate: int
    channels: int
    subtype: str | None  # libsndfile's, e.g. "PCM_24"; None when ffmpeg decoded it
    source_format: str | None  # libsndfile's, e.g. "WAV"; None when ffmpeg decoded it
    path: str  # the file libsndfile reads: the input itself, or its copy or decoding in the spool
    declared_frames: int | None = None  # what a truncated input's header declares, when more than it holds

    def open(self) -> BlockReader:
        """A reader from the first frame."""
        return BlockReader(self.path, self.name, self.frames)


class _Spool:
    """A private folder in tempfile.gettempdir(), made when first needed and removed with everything in it."""

    def __init__(self, name: str) -> None:
        self._name = name
        self.folder: str | None = None

    def path(self, file_name: str) -> str:
        if self.folder is None:
            try:
                self.folder = tempfile.mkdtemp(prefix="uvr-")
            except OSError as exc:
                raise _read_error(
                    self._name, f"cannot make a temporary folder in {tempfile.gettempdir()} ({exc.strerror or exc})"
                ) from None
        return os.path.join(self.folder, file_name)

    def remove(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def open_source(
    source: str | os.PathLike, ffmpeg: str | None = "ffmpeg", allow_truncated: bool = False
) -> Iterator[DecodedSource]:
    """The input `source` ("-" = standard input) as a DecodedSource; its temporary files go when the block ends.

    `ffmpeg` is the command used when libsndfile cannot decode the input exactly (None: never use ffmpeg). With
    `allow_truncated`, ffmpeg decodes every input as far as it goes (a truncated or damaged one included) and
    `declared_frames` tells where that is short of what the header declares.
    Raises AudioError with one line that names the input.
    """
    if os.fspath(source) == STDIO:
        name = _STDIN_NAME
    else:
        name = f"'{os.fsdecode(source)}'"
    spool = _Spool(name)
    try:
        yield _prepare(source, name, ffmpeg, spool, allow_truncated)
    finally:
        spool.remove()


def read_audio(source: str | os.PathLike, ffmpeg: str | None = "ffmpeg") -> Audio:
    """Decode all of a file, or of standard input when `source` is "-", into one array (see `open_source`)."""
    with open_source(source, ffmpeg) as decoded, decoded.open() as reader:
        samples = reader.read(decoded.frames)
        return Audio(samples, decoded.sample_rate, decoded.subtype, decoded.source_format, reader.nonfinite_replaced)


def why_unreadable(source: str | os.PathLike, allow_truncated: bool = False) -> str | None:
    """Why `source` cannot be decoded as a run would (open_source's one line), or None; decodes it to find out."""
    try:
        with open_source(source, allow_truncated=allow_truncated):
            return None
    except AudioError as exc:
        return str(exc)


def _prepare(
    source: str | os.PathLike, name: str, ffmpeg: str | None, spool: _Spool, allow_truncated: bool
) -> DecodedSource:
    """Copy standard input or a pipe into the spool, refuse an empty file, then decode as a file."""
    if name == _STDIN_NAME:
        if sys.stdin is None:
            raise _read_error(name, "there is none")
        if sys.stdin.isatty():
            raise _read_error(name, "it is a terminal; pipe audio into it or name a file")
        return _decode_file(_copy_to_spool(sys.stdin.buffer, name, spool), name, ffmpeg, spool, allow_truncated)
    path = os.fsdecode(source)
    try:
        with open(path, "rb") as handle:
            status = os.fstat(handle.fileno())
            # A pipe or device (e.g. bash's <(...)) cannot be seeked by libsndfile: copy it.
            if not stat.S_ISREG(status.st_mode):
                return _decode_file(_copy_to_spool(handle, name, spool), name, ffmpeg, spool, allow_truncated)
    except OSError as exc:
        raise _read_error(name, exc.strerror or str(exc)) from None
    if status.st_size == 0:
        raise _read_error(name, "the file is empty")
    return _decode_file(path, name, ffmpeg, spool, allow_truncated)


def _copy_to_spool(stream: BinaryIO, name: str, spool: _Spool) -> str:
    """Copy a stream's bytes into the spool in chunks; its path there."""
    path = spool.path("input")
    try:
        with open(path, "wb") as copy:
            copied = 0
            while chunk := stream.read(_COPY_BYTES):
                copy.write(chunk)
                copied += len(chunk)
    except OSError as exc:
        raise _read_error(name, exc.strerror or str(exc)) from None
    if copied == 0:
        raise _read_error(name, "it is empty")
    return path


def _decode_file(path: str, name: str, ffmpeg: str | None, spool: _Spool, allow_truncated: bool) -> DecodedSource:
    """In place when libsndfile knows the exact length, else through ffmpeg into the spool."""
    if allow_truncated:
        return _salvage(path, name, ffmpeg, spool)
    try:
        with native_output_silenced():
            handle = sf.SoundFile(path)
    except sf.LibsndfileError as exc:
        return _ffmpeg_decode(path, name, sf_reason(exc), ffmpeg, spool)
    with handle:
        for declared, present in _HEADER_MISMATCH.findall(handle.extra_info):
            if 0 < int(declared) < _STREAMED_SIZE and int(declared) > int(present):
                raise _read_error(
                    name,
                    f"the file is truncated (its header declares {declared} bytes of audio, {present} are present; "
                    "--allow-truncated separates what it holds)",
                )
        if handle.format == "MP3" and not _mp3_states_its_length(path):
            reason = "libsndfile cannot tell the length of an MP3 without a Xing/LAME header"
            return _ffmpeg_decode(path, name, reason, ffmpeg, spool)
        return _source(name, path, handle, handle.subtype, handle.format)


def _salvage(path: str, name: str, ffmpeg: str | None, spool: _Spool) -> DecodedSource:
    """All that ffmpeg can decode of the input, with the length its header declares where that is longer."""
    try:
        with native_output_silenced():
            info = sf.info(path)
        # an MP3 without a Xing/VBRI header states no length: libsndfile's figure is an estimate
        declared = info.frames if info.format != "MP3" or _mp3_states_its_length(path) else 0
    except (sf.LibsndfileError, RuntimeError, OSError):
        declared = 0  # no header libsndfile reads: nothing to compare with
    why = "--allow-truncated decodes with ffmpeg"
    decoded = _ffmpeg_decode(path, name, why, ffmpeg, spool, stop_at_errors=False)
    if declared > decoded.frames:  # whole MP3 (Xing), Ogg Vorbis, FLAC and WAV files decode to exactly `declared`
        return dataclasses.replace(decoded, declared_frames=declared)
    return decoded


def _ffmpeg_decode(
    path: str, name: str, why_not: str, ffmpeg: str | None, spool: _Spool, stop_at_errors: bool = True
) -> DecodedSource:
    """Decode the first audio stream with ffmpeg to 32-bit float WAV at the native rate and channel count.

    -xerror makes a decoding error (a truncated or damaged stream) fail instead of yielding part of it; without
    `stop_at_errors`, ffmpeg decodes what it can (--allow-truncated).
    """
    if ffmpeg is None:
        raise _read_error(name, why_not)
    executable = shutil.which(ffmpeg)
    if executable is None:
        raise _read_error(name, f"{why_not} (and '{ffmpeg}' was not found to try ffmpeg, which decodes more formats)")
    decoded = spool.path("decoded.wav")
    input_arg = "file:" + os.path.abspath(path)  # "file:" so a name starting with "-" is not an option
    command = [
        executable,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        *(["-xerror"] if stop_at_errors else []),
        "-i",
        input_arg,
        "-map",
        "0:a:0",
        "-c:a",
        "pcm_f32le",
        "-f",
        "wav",
        "-rf64",
        "auto",
        "-y",
        "file:" + decoded,
    ]
    try:
        done = subprocess.run(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
        )
    except OSError as exc:
        raise _read_error(name, f"cannot run {executable}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        # The name is removed before splitting: a line break in it would otherwise leave half of it as the cause.
        lines = done.stderr.decode("utf-8", "replace").replace(input_arg + ": ", "").strip().splitlines()
        cause = lines[-1] if lines else f"exit status {done.returncode}"
        raise _read_error(name, f"not a readable audio file (soundfile: {why_not}; ffmpeg: {cause})")
    if spool.folder is not None and os.path.dirname(path) == spool.folder:
        os.unlink(path)  # a copied pipe is not needed once decoded: keep the spool to one file
    try:
        with native_output_silenced():
            handle = sf.SoundFile(decoded)
    except sf.LibsndfileError as exc:
        raise _read_error(name, f"ffmpeg's output was unreadable ({sf_reason(exc)})") from None
    with handle:
        return _source(name, decoded, handle, None, None)


def _mp3_states_its_length(path: str) -> bool:
    """Whether the first MPEG audio frame (after any ID3v2 tags) carries a Xing/Info or VBRI header.

    With one, mpg123 (libsndfile's MP3 decoder) takes the exact length from it; without, it estimates the length
    from the file size and the first frame's bitrate, and libsndfile reads no further than the estimate.
    """
    with open(path, "rb") as handle:
        head = handle.read(10)
        while head[:3] == b"ID3" and len(head) == 10:
            size = 10 + sum((byte & 0x7F) << (7 * (3 - i)) for i, byte in enumerate(head[6:10]))
            handle.seek(size + (10 if head[5] & 0x10 else 0) - 10, os.SEEK_CUR)  # 0x10: a footer follows
            head = handle.read(10)
        data = head + handle.read(4096)
    for at in range(len(data) - 40):
        if data[at] != 0xFF or data[at + 1] & 0xE6 != 0xE2:  # frame sync, then layer III
            continue
        mpeg1, mono = data[at + 1] & 0x18 == 0x18, data[at + 3] >> 6 == 3
        side_info = (17 if mono else 32) if mpeg1 else (9 if mono else 17)
        return data[at + 4 + side_info : at + 8 + side_info] in (b"Xing", b"Info") or data[at + 36 : at + 40] == b"VBRI"
    return False


def _source(name: str, path: str, handle: sf.SoundFile, subtype: str | None, fmt: str | None) -> DecodedSource:
    if handle.frames <= 0:
        raise _read_error(name, "it contains no audio frames")
    return DecodedSource(name, int(handle.frames), int(handle.samplerate), int(handle.channels), subtype, fmt, path)


def sf_reason(exc: sf.LibsndfileError) -> str:
    """libsndfile's own message, without the Python object that soundfile puts in front."""
    return exc.error_string.strip().rstrip(".")


def one_line(message: str) -> str:
    """Keep a message on one line even when a path or a tool's output holds line breaks."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


def _read_error(name: str, cause: str) -> AudioError:
    return AudioError(one_line(f"cannot read {name}: {cause}"))
