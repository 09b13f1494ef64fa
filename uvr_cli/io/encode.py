"""Encoding stems to files and standard output, block by block, all or nothing.

Samples are prepared here, not by libsndfile: NaN/Inf become 0 and samples beyond full scale are clipped (both
counted; libsndfile before 1.1 wraps around instead), and 16/24-bit PCM is quantised here (scale by 2**(bits-1),
round to nearest, clip the top code) and handed over as integers, so WAV and FLAC of the same samples hold the
same integers (libsndfile's own float conversion differs between the two by one step on about half the samples).
Every file is encoded into a hidden temporary beside its destination and renamed into place only when every stem
of the job is complete; standard output gets its stem once complete, from a spool. A failure is a one-line
AudioError naming the destination; an impossible format choice is a UsageError.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import soundfile as sf

from uvr_cli.atomic import AtomicFile
from uvr_cli.errors import AudioError, UsageError
from uvr_cli.io.decode import STDIO, one_line, sf_reason
from uvr_cli.io.formats import FORMATS, PCM_SUBTYPES
from uvr_cli.io.lossy import lossy_settings, lossy_subtype
from uvr_cli.io.spool import CLIP_MODES, SampleSpool, headroom_factor

_STDOUT_NAME = "standard output"
_BLOCK_FRAMES = 1 << 16  # frames converted and encoded at a time, so a long array is not copied whole
_SPOOL_BYTES = 64 << 20  # encoded output for standard output is kept in memory up to this size, then in TMPDIR
_WAV_MAX_DATA_BYTES = 2**32 - 2**20  # beyond this a WAV header's 32-bit sizes overflow: write RF64

_PCM_BITS = {"PCM_16": 16, "PCM_24": 24}
_SUBTYPE_BYTES = {"PCM_16": 2, "PCM_24": 3, "FLOAT": 4}
_SFC_SET_ADD_PEAK_CHUNK = 0x1050  # sndfile.h; soundfile does not name it


class StdoutClosed(AudioError):
    """Standard output's reader went away (`| head -c 100`): the CLI ends quietly with 141, as SIGPIPE would."""

    exit_code = 141


@dataclass(frozen=True)
class WriteReport:
    """What was written, and what had to change in the samples to write it."""

    dest: str  # the path written, or "-" for standard output
    fmt: str
    subtype: str  # libsndfile's subtype, e.g. "PCM_24"
    frames: int
    channels: int
    sample_rate: int
    clipped_samples: int  # samples beyond full scale set to +/-1 (never for "32f")
    nonfinite_replaced: int  # NaN/Inf samples written as 0


@dataclass(frozen=True)
class _Spec:
    """Everything libsndfile needs to encode one output."""

    fmt: str
    subtype: str
    container: str
    sample_rate: int
    channels: int
    compression_level: float | None
    bitrate_mode: str | None


def output_subtype(
    fmt: str, bit_depth: str | None, sample_rate: int, channels: int, *, bitrate: str | None = None
) -> str:
    """libsndfile's subtype for `fmt` at `bit_depth`, or UsageError when the format cannot store it.

    Cheap, so a caller can check the options before spending minutes on a separation. bit_depth None means 16
    for wav/flac; ogg and mp3 ignore it. `bitrate` (e.g. "320k") is checked for mp3/ogg and refused for wav/flac.
    """
    fmt = fmt.lower()
    spec = FORMATS.get(fmt)
    if spec is None:
        raise UsageError(f"unknown output format '{fmt}'; choose {', '.join(FORMATS)}")
    if spec.lossy:
        return lossy_subtype(fmt, sample_rate, channels, bitrate)
    if bitrate is not None:
        lossy = " and ".join(name for name, f in FORMATS.items() if f.lossy)
        raise UsageError(f"{fmt} is lossless and has no bitrate; a bitrate applies to {lossy}")
    depth = "16" if bit_depth is None else bit_depth
    if depth not in PCM_SUBTYPES:
        raise UsageError(f"unknown bit depth '{depth}'; choose {', '.join(PCM_SUBTYPES)}")
    if depth not in spec.depths:
        raise UsageError(
            f"{fmt} cannot store bit depth {depth}; choose {' or '.join(spec.depths)}, or wav for 32-bit float"
        )
    return PCM_SUBTYPES[depth]


def _spec(fmt: str, bit_depth: str | None, sample_rate: int, channels: int, frames: int, bitrate: str | None) -> _Spec:
    fmt = fmt.lower()
    subtype = output_subtype(fmt, bit_depth, sample_rate, channels, bitrate=bitrate)
    container = fmt.upper()
    if fmt == "wav" and frames * channels * _SUBTYPE_BYTES[subtype] > _WAV_MAX_DATA_BYTES:
        container = "RF64"
    level, mode = lossy_settings(fmt, sample_rate, bitrate) if FORMATS[fmt].lossy else (None, None)
    return _Spec(fmt, subtype, container, int(sample_rate), int(channels), level, mode)


class _ErrorKeepingFile:
    """A file for soundfile's virtual I/O that keeps the first exception of a write, seek or tell.

    soundfile calls these from C callbacks, where an exception would be printed and lost, and
    libsndfile carries on after failed writes for FLAC, OGG and MP3; so the error is kept here and
    raised by `check` once control is back in Python.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.error: BaseException | None = None

    def _kept(self, call: Callable[[], int], failed: int) -> int:
        try:
            return call()
        except BaseException as exc:  # noqa: BLE001 - kept and re-raised by check()
            self.error = self.error or exc
            return failed

    def write(self, data: bytes) -> int:
        return self._kept(lambda: self._raw.write(data), 0)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._kept(lambda: self._raw.seek(offset, whence), -1)

    def tell(self) -> int:
        return self._kept(self._raw.tell, -1)

    def check(self) -> None:
        """Raise the kept exception, if any."""
        if self.error is not None:
            raise self.error


class BlockWriter:
    """Encodes (frames, channels) float blocks of one stem in order; made by `open_stem_writers`."""

    def __init__(self, dest: str, name: str, spec: _Spec, raw: IO[bytes]) -> None:
        self.dest, self.name, self._spec = dest, name, spec
        self.frames = self.clipped_samples = self.nonfinite_replaced = 0
        self.scale = 1.0  # what every sample was multiplied by (--clip-mode rescale)
        self._sink = _ErrorKeepingFile(raw)
        self._out: sf.SoundFile | None = None
        self._spool: SampleSpool | None = None

        def start() -> None:
            self._out = sf.SoundFile(
                self._sink,
                "w",
                spec.sample_rate,
                spec.channels,
                spec.subtype,
                format=spec.container,
                compression_level=spec.compression_level,
                bitrate_mode=spec.bitrate_mode,
            )
            if spec.subtype == "FLOAT":  # its PEAK chunk holds the time of writing: same samples, other bytes
                sf._snd.sf_command(self._out._file, _SFC_SET_ADD_PEAK_CHUNK, sf._ffi.NULL, sf._snd.SF_FALSE)

        self._guarded(start)

    def write(self, samples: np.ndarray) -> None:
        """Encode (frames, channels) or, for one channel, (frames,) floating-point samples (or keep them, when
        spooling)."""
        samples = as_frames(samples)
        if samples.shape[1] != self._spec.channels:
            raise ValueError(f"{samples.shape[1]} channels given to a {self._spec.channels}-channel writer")
        if self._spool is not None:
            self._guarded(functools.partial(self._spool.write, samples))
            return
        self._encode(samples)

    def spool(self, folder: str | None) -> None:
        """From now on keep the samples in a temporary file in `folder` (None: TMPDIR) until `replay`."""
        self._guarded(lambda: setattr(self, "_spool", SampleSpool(folder, self._spec.channels)))

    @property
    def peak(self) -> float:
        """The largest finite magnitude spooled so far."""
        return self._spool.peak if self._spool is not None else 0.0

    def replay(self, scale: float) -> None:
        """Encode the spooled samples multiplied by `scale` (in float64), and drop the spool."""
        spool, self._spool, self.scale = self._spool, None, scale
        assert spool is not None, "replay() without spool()"

        def encode_all() -> None:
            for block in spool.blocks(_BLOCK_FRAMES):
                self._encode(block.astype(np.float64) * scale if scale != 1.0 else block)

        try:
            self._guarded(encode_all)  # a read error of the spool: one line naming the destination
        finally:
            spool.close()

    def _encode(self, samples: np.ndarray) -> None:
        for start in range(0, samples.shape[0], _BLOCK_FRAMES):
            block = self._prepare(samples[start : start + _BLOCK_FRAMES])
            assert self._out is not None  # opened in __init__, which raises otherwise
            self._guarded(functools.partial(self._out.write, block))
            self.frames += block.shape[0]

    def _prepare(self, block: np.ndarray) -> np.ndarray:
        """NaN/Inf to 0 and clipping (counted), then 16/24-bit integers for PCM, float32 otherwise."""
        block = np.array(block, dtype=np.float64 if block.dtype == np.float64 else np.float32, order="C")
        bad = ~np.isfinite(block)
        self.nonfinite_replaced += int(np.count_nonzero(bad))
        block[bad] = 0.0
        if self._spec.subtype == "FLOAT":
            return block.astype(np.float32, copy=False)
        self.clipped_samples += int(np.count_nonzero(np.abs(block) > 1.0))
        np.clip(block, -1.0, 1.0, out=block)
        bits = _PCM_BITS.get(self._spec.subtype)
        if bits is None:
            return block.astype(np.float32, copy=False)
        full_scale = float(2 ** (bits - 1))
        codes = np.minimum(np.rint(block * full_scale), full_scale - 1)  # exact: powers of two and < 2**24
        if bits == 16:
            return codes.astype(np.int16)
        return codes.astype(np.int32) << 8  # libsndfile stores the top 24 bits of an int32

    def report(self) -> WriteReport:
        spec = self._spec
        return WriteReport(
            self.dest,
            spec.fmt,
            spec.subtype,
            self.frames,
            spec.channels,
            spec.sample_rate,
            self.clipped_samples,
            self.nonfinite_replaced,
        )

    def close(self) -> None:
        """Finish the encoding (flush the encoder, complete the header)."""
        if self._out is not None:
            self._guarded(self._out.close)

    def abandon(self) -> None:
        """Close after a failure, ignoring what the half-written output does."""
        with contextlib.suppress(Exception):
            if self._spool is not None:
                self._spool.close()
        with contextlib.suppress(Exception):
            if self._out is not None:
                self._out.close()

    def _guarded(self, action: Callable[[], object]) -> None:
        """Run an encoder call; its I/O error (kept by the sink, the real cause) or libsndfile's, as AudioError."""
        try:
            try:
                action()
            finally:
                self._sink.check()
        except (OSError, sf.LibsndfileError) as exc:
            raise _write_error(self.name, _write_reason(exc)) from None


class _Target:
    """Where one stem goes: a hidden temporary file beside its destination, or a spool for standard output."""

    def __init__(self, dest: str) -> None:
        self.dest = dest
        self.piped = dest == STDIO
        self.name = _STDOUT_NAME if self.piped else f"'{dest}'"
        self.file: AtomicFile | None = None
        self.raw: IO[bytes] | None = None
        self.writer: BlockWriter | None = None

    def open(self, spec: _Spec) -> BlockWriter:
        if self.piped:
            self.raw = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)
        else:
            self.file = _atomic_beside(Path(self.dest), self.name)
            try:
                self.raw = self.file.open()
            except OSError as exc:
                raise _write_error(self.name, _write_reason(exc)) from None
        self.writer = BlockWriter(self.dest, self.name, spec, self.raw)
        return self.writer

    def finish(self) -> None:
        """Complete the encoding; a file is closed (flushed), the spool kept open for `commit`."""
        assert self.writer is not None and self.raw is not None, "finish() before open()"
        self.writer.close()
        if not self.piped:
            try:
                self.raw.close()
            except OSError as exc:
                raise _write_error(self.name, _write_reason(exc)) from None

    def commit(self) -> None:
        """Rename the file into place, or copy the spool to standard output."""
        if not self.piped:
            assert self.file is not None  # set by open() for a file
            try:
                self.file.commit()
            except OSError as exc:
                raise _write_error(self.name, _write_reason(exc)) from None
            return
        assert self.raw is not None  # the spool, set by open()
        self.raw.seek(0)
        try:
            sys.stdout.flush()
            shutil.copyfileobj(self.raw, sys.stdout.buffer, 1 << 20)
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            # Point stdout at /dev/null so that the flush at interpreter exit does not raise (and print) again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise StdoutClosed(f"cannot write {_STDOUT_NAME}: its reader closed the pipe") from None
        except OSError as exc:
            raise _write_error(self.name, _write_reason(exc)) from None
        finally:
            self.raw.close()

    def discard(self) -> None:
        """Leave nothing behind: tried even when open() seemed not to return, as a signal can come between."""
        if self.writer is not None:
            self.writer.abandon()
        if self.raw is not None:
            with contextlib.suppress(OSError):
                self.raw.close()
        if self.file is not None:
            self.file.discard()


@contextlib.contextmanager
def open_stem_writers(
    outputs: dict[str, str],
    sample_rate: int,
    channels: int,
    fmt: str,
    bit_depth: str | None,
    frames: int,
    *,
    bitrate: str | None = None,
    clip_mode: str = "clip",
) -> Iterator[dict[str, BlockWriter]]:
    """One BlockWriter per stem (key: stem, value: destination path, or "-" for standard output, at most one).

    clip_mode "clip" clips samples beyond full scale (counted); "rescale" keeps every stem's samples until the
    block ends, then multiplies all stems by the one factor that brings the loudest to full scale (each writer's
    `scale`; 1.0 when nothing exceeds it, and always for 32-bit float, which stores such samples as they are).

    `frames` is the length each stem will have (beyond 4 GiB of data, WAV becomes RF64). Every destination is
    replaced only when the block ends without an exception and every stem is complete; otherwise nothing is
    left behind and the destinations are untouched. Raises UsageError for an impossible format choice,
    AudioError naming the destination when writing fails, StdoutClosed when standard output's reader went away.
    """
    if clip_mode not in CLIP_MODES:
        raise UsageError(f"--clip-mode {clip_mode!r}: use {' or '.join(CLIP_MODES)}")
    spec = _spec(fmt, bit_depth, sample_rate, channels, frames, bitrate)
    targets = [_Target(os.fsdecode(dest)) for dest in outputs.values()]
    if sum(target.piped for target in targets) > 1:
        raise UsageError("only one stem can be written to standard output")
    if any(target.piped for target in targets):
        if sys.stdout is None:
            raise _write_error(_STDOUT_NAME, "there is none")
        if sys.stdout.isatty():
            raise _write_error(_STDOUT_NAME, "it is a terminal; redirect it to a file or pipe")
    try:
        writers = {stem: target.open(spec) for stem, target in zip(outputs, targets)}
        rescale = clip_mode == "rescale" and spec.subtype != "FLOAT"
        for target in targets if rescale else ():
            writer = target.writer
            assert writer is not None  # set by target.open above
            writer.spool(None if target.file is None else os.fspath(target.file.path.parent))  # None: piped, TMPDIR
        yield writers
        if rescale:
            scale = headroom_factor(max(writer.peak for writer in writers.values()))
            for writer in writers.values():
                writer.replay(scale)
        for target in targets:
            target.finish()
        for target in targets:
            target.commit()
    except BaseException:
        for target in targets:
            target.discard()
        raise


def write_audio(
    dest: str | os.PathLike,
    samples: np.ndarray,
    sample_rate: int,
    fmt: str,
    bit_depth: str | None,
    *,
    bitrate: str | None = None,
) -> WriteReport:
    """Encode a whole (frames, channels) or mono (frames,) float array to a file, or to standard output for "-".

    As `open_stem_writers` with one stem: clipped and NaN/Inf samples counted, the file complete or absent.
    """
    samples = as_frames(samples)
    with open_stem_writers(
        {"audio": os.fsdecode(dest)}, sample_rate, samples.shape[1], fmt, bit_depth, samples.shape[0], bitrate=bitrate
    ) as writers:
        writers["audio"].write(samples)
    return writers["audio"].report()


def as_frames(samples: np.ndarray) -> np.ndarray:
    """(frames,) as (frames, 1); ValueError unless the result is a (frames, channels>0) floating-point array."""
    if samples.ndim == 1:
        samples = samples[:, np.newaxis]
    if samples.ndim != 2 or samples.shape[1] == 0:
        raise ValueError(f"samples must have shape (frames,) or (frames, channels), not {samples.shape}")
    if not np.issubdtype(samples.dtype, np.floating):
        raise ValueError(f"samples must be floating point, not {samples.dtype}")
    return samples


def _atomic_beside(path: Path, name: str) -> AtomicFile:
    """Check the destination, make its folder, and name the temporary file that is renamed onto it when done."""
    if path.is_dir():
        raise _write_error(name, "it is a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(name, f"cannot create folder '{path.parent}': {exc.strerror or exc}") from None
    return AtomicFile(path)


def _write_reason(exc: OSError | sf.LibsndfileError) -> str:
    if isinstance(exc, sf.LibsndfileError):
        return f"encoding failed ({sf_reason(exc)})"
    return exc.strerror or str(exc)


def _write_error(name: str, cause: str) -> AudioError:
    return AudioError(one_line(f"cannot write {name}: {cause}"))
