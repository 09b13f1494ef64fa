"""Decoding ahead and encoding behind in threads (io/overlap.py): the same bytes, the same errors, nothing left."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from uvr_cli.errors import AudioError
from uvr_cli.io import overlap
from uvr_cli.separator import Separator

SONG = ROOT / "examples" / "slow_motion_dream.mp3"


@pytest.fixture(scope="module")
def separators() -> dict[bool, Separator]:
    return {on: Separator(device="cpu", overlap_io=on) for on in (True, False)}


def test_overlapped_io_writes_the_same_bytes(separators: dict[bool, Separator], tmp_path: Path) -> None:
    files = {}
    for on, sep in separators.items():
        outputs = {"vocals": str(tmp_path / f"v{on}.flac"), "instrumental": str(tmp_path / f"i{on}.mp3")}
        sep.separate_file(str(SONG), outputs, fmt="flac")
        files[on] = [Path(p).read_bytes() for p in outputs.values()]
    assert files[True] == files[False]
    assert not [t for t in threading.enumerate() if t.name.startswith("uvr-")], "a thread outlived the run"


class _Blocks:
    """A reader of `frames` frames of ones in blocks, failing after `fail_after` frames."""

    def __init__(self, frames: int, fail_after: int | None = None) -> None:
        self.frames, self.sample_rate, self.channels, self.nonfinite_replaced = frames, 44100, 2, 0
        self._pos, self._fail_after, self.closed = 0, fail_after, False

    def read(self, n: int) -> np.ndarray:
        if self._fail_after is not None and self._pos >= self._fail_after:
            raise AudioError("'x.wav': corrupt or truncated audio")
        n = min(n, self.frames - self._pos)
        block = np.arange(self._pos, self._pos + n, dtype=np.float32)[:, None].repeat(2, axis=1)
        self._pos += n
        return block

    def close(self) -> None:
        self.closed = True


def test_read_ahead_gives_the_same_frames_in_any_request_sizes() -> None:
    inner = _Blocks(300_001)
    with overlap.ReadAhead(inner) as ahead:
        got = [ahead.read(n) for n in (1, 70_000, 150_000, 200_000, 10)]
    assert [g.shape[0] for g in got] == [1, 70_000, 150_000, 80_000, 0]
    np.testing.assert_array_equal(np.concatenate(got)[:, 0], np.arange(300_001, dtype=np.float32))
    assert inner.closed


def test_a_decoding_error_reaches_the_reader_as_it_was() -> None:
    with overlap.ReadAhead(_Blocks(1_000_000, fail_after=overlap.AHEAD_FRAMES * 2)) as ahead:
        ahead.read(overlap.AHEAD_FRAMES)
        with pytest.raises(AudioError, match="corrupt or truncated"):
            ahead.read(overlap.AHEAD_FRAMES * 3)


def test_a_failed_write_is_raised_and_later_writes_are_dropped() -> None:
    written: list[int] = []

    def sink(block: np.ndarray) -> None:
        if len(written) == 2:
            raise AudioError("'out.wav': no space left on the device")
        written.append(block.shape[0])

    behind = overlap.BackgroundSinks({"vocals": sink})
    with pytest.raises(AudioError, match="no space left"):
        for _ in range(50):
            behind.sinks["vocals"](np.zeros((10, 2), dtype=np.float32))
        behind.finish()
    behind.abandon()  # what the separator does after an error: the thread ends
    assert written == [10, 10]
    assert not [t for t in threading.enumerate() if t.name == "uvr-write-behind"]
