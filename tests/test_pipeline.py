"""The one engine (engine/pipeline.py): blocks give the one-block stems, files the array stems, memory is bounded."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import save_random_checkpoint, tone_mix, uvr_command
from uvr_cli.engine import frames, pipeline
from uvr_cli.engine.analysis import Analyser
from uvr_cli.engine.blocks import ArraySource
from uvr_cli.engine.families.vr.nets import AsppNetSpec
from uvr_cli.separator import Separator

BLOCK_SECONDS = 3.0  # one roi per block: an 8 s song spans three blocks


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    reference = reference.astype(np.float64)
    error = np.sum((reference - test.astype(np.float64)) ** 2)
    return float(10 * np.log10(np.sum(reference**2) / max(error, 1e-300)))


def song(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """Tones and noise that start and stop at full level (the hard case for the FFT wrap-around)."""
    rng = np.random.default_rng(seed)
    x = tone_mix(seconds, rate, seed=seed)
    return (x + 0.05 * rng.standard_normal(x.shape)).astype(np.float32)


def _cached_windows(predict):
    """The network, window by window, remembering results: both paths feed it the same windows, so a test pays
    for each window once. A window whose input differs in any bit is run again."""
    cache: dict[bytes, np.ndarray] = {}

    def run(batch: np.ndarray) -> np.ndarray:
        for window in batch:
            if window.tobytes() not in cache:
                cache[window.tobytes()] = predict(window[None])[0]
        return np.stack([cache[window.tobytes()] for window in batch])

    return run


def separator(weights: Path, preset: str, **options) -> Separator:
    sep = Separator(weights, params=preset, device="cpu", **options)
    members = tuple(
        m.with_network(dataclasses.replace(m.network, predict=_cached_windows(m.network.predict)))
        for m in sep.run.members
    )
    sep.run = dataclasses.replace(sep.run, members=members)
    return sep


def in_blocks(
    sep: Separator, audio: np.ndarray, rate: int, block_seconds: float, output_rate: int | None = None
) -> dict[str, np.ndarray]:
    """The engine over an array with blocks of `block_seconds`."""
    parts: dict[str, list[np.ndarray]] = {"vocals": [], "instrumental": []}
    pipeline.separate(
        sep.run,
        lambda: contextlib.nullcontext(ArraySource(audio, rate)),
        {stem: parts[stem].append for stem in parts},
        output_rate=output_rate,
        block_seconds=block_seconds,
    )
    return {stem: np.concatenate(p) for stem, p in parts.items()}


# (preset, input rate, output rate, TTA, seconds): every resampler family (resample_poly, resampy in and out,
# FFT between middle bands; libsamplerate in test_separate_file_streams_long_files) and the shifted TTA windows.
# A window of this random net takes seconds on a busy CPU: the songs are as short as spans three blocks.
CASES = [
    ("1band_sr44100_hl512", 44100, None, False, 7.0),
    ("4band_v2", 44100, None, False, 8.01),  # 8.01 s: the last hop is partial (7 s at hop 512 too)
    ("3band_44100_msb2", 48000, None, False, 8.0),
    ("4band_v2", 44100, None, True, 8.01),
]


@pytest.mark.parametrize(
    ("preset", "rate", "output_rate", "tta", "seconds"),
    CASES,
    ids=[f"{c[0]}-{c[1]}{'-tta' if c[3] else ''}" for c in CASES],
)
def test_blocks_equal_one_block(
    ch16_weights: Path, preset: str, rate: int, output_rate: int | None, tta: bool, seconds: float
) -> None:
    sep = separator(ch16_weights, preset, tta=tta)
    audio = song(seconds, rate)
    whole = sep.separate(audio, rate, output_rate=output_rate)  # shorter than a default block: one block
    streamed = in_blocks(sep, audio, rate, BLOCK_SECONDS, output_rate)
    for stem in whole:
        assert streamed[stem].shape == whole[stem].shape == (audio.shape[0], 2)
        if len(sep.run.preset.bands) == 1:  # one FIR resampler at most: the same samples to the bit
            np.testing.assert_array_equal(streamed[stem], whole[stem])
        else:  # the FFT resampling between middle bands is emulated per block
            assert snr_db(whole[stem], streamed[stem]) > 90, stem
        # the samples after the last frame's centre are separated in both, from the same frames
        end = slice(-400, None)
        assert np.abs(whole[stem][end]).max() > 1e-3, stem
        assert snr_db(whole[stem][end], streamed[stem][end]) > 60, stem


def test_separate_file_streams_long_files(ch16_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through Separator.separate_file in blocks, mono, 2band_32000 (libsamplerate in the pyramid and at synthesis,
    resampy back to 44.1 kHz): the array's stems in the same blocks to the bit, clipping counted, no temporary file
    left."""
    monkeypatch.setattr(frames, "BLOCK_SECONDS", BLOCK_SECONDS)
    sep = separator(ch16_weights, "2band_32000")
    audio = song(8.0, 44100, seed=3)[:, :1] * 3  # mono, loud enough to clip
    source = tmp_path / "in.wav"
    sf.write(source, audio, 44100, subtype="FLOAT")
    outputs = {"vocals": str(tmp_path / "v.wav"), "instrumental": str(tmp_path / "i.wav")}
    result = sep.separate_file(str(source), outputs, fmt="wav", bit_depth="32f")
    assert result.status == "ok"
    same_blocks = in_blocks(sep, audio, 44100, BLOCK_SECONDS)
    whole = in_blocks(sep, audio, 44100, 1e9)
    for stem, dest in outputs.items():
        written, rate = sf.read(dest, dtype="float32", always_2d=True)
        assert rate == 44100 and written.shape == (audio.shape[0], 1)
        np.testing.assert_array_equal(written, same_blocks[stem][:, :1])
        assert snr_db(whole[stem][:, :1], written) > 90
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.wav", "in.wav", "v.wav"]
    result16 = sep.separate_file(str(source), {"vocals": str(tmp_path / "v16.wav")}, fmt="wav", bit_depth="16")
    expected = int(np.count_nonzero(np.abs(whole["vocals"][:, 0]) > 1.0))
    assert expected and result16.clipped_samples.get("vocals", 0) == expected


@pytest.mark.parametrize("options", [{"post_process": True}, {}], ids=["post-process", "reverse-preset"])
def test_whole_song_settings_run_as_one_block(ch16_weights: Path, options: dict) -> None:
    """Post-processing looks at runs of frames across the song and 'reverse' presets reverse whole band waves:
    whatever the block length, they are separated as one block."""
    preset = "4band_44100" if options else "4band_44100_reverse"
    sep = separator(ch16_weights, preset, **options)
    audio = song(7.0, 44100, seed=5)
    one = in_blocks(sep, audio, 44100, 1e9)
    blocks = in_blocks(sep, audio, 44100, BLOCK_SECONDS)
    for stem in one:
        np.testing.assert_array_equal(blocks[stem], one[stem])
        assert np.abs(one[stem]).max() > 1e-3


def _peak_rss_mb(args: list[str]) -> float:
    """Peak RSS of the CLI run in a fresh child (RUSAGE_CHILDREN of a wrapper that waits for it)."""
    code = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1]) / 1024


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_length(ch16_weights: Path, tmp_path: Path) -> None:
    """10 minutes through the real CLI peak within 10 % of 1 minute (both streamed, 4band_v2)."""
    peaks = {}
    for minutes in (1, 10):
        source = tmp_path / f"song{minutes}.flac"
        with sf.SoundFile(source, "w", 44100, 2, "PCM_16") as out:
            for i in range(minutes * 2):
                out.write(song(30.0, 44100, seed=i) * 0.5)
        peaks[minutes] = _peak_rss_mb(
            [
                *uvr_command(),
                "separate",
                str(source),
                "-m",
                str(ch16_weights),
                "--params",
                "4band_v2",
                "-o",
                str(tmp_path / "out"),
                "--device",
                "cpu",
            ]
        )
    print(json.dumps({"peak_rss_mb": peaks}))
    assert peaks[10] <= 1.10 * peaks[1]


@pytest.mark.parametrize("tta", [False, True])
def test_each_window_runs_once_and_progress_reaches_the_total(tmp_path: Path, tta: bool) -> None:
    """The first pass runs the windows of the song's last frames (the FFT levels' synthesis needs them first);
    the second pass takes them from there instead of running them again."""
    weights = save_random_checkpoint(tmp_path / "ch4.pth", AsppNetSpec(4, 5), 672, seed=3)
    sep = Separator(weights, params="4band_v2", device="cpu", tta=tta)
    member = sep.run.members[0]
    run_window, windows_run, progress = member.network.predict, [], []
    counting = dataclasses.replace(member.network, predict=lambda x: windows_run.append(len(x)) or run_window(x))
    sep.run = dataclasses.replace(sep.run, members=(member.with_network(counting),))
    audio = song(12.0, 44100)
    pipeline.separate(
        sep.run,
        lambda: contextlib.nullcontext(ArraySource(audio, 44100)),
        {"vocals": lambda block: None},
        block_seconds=BLOCK_SECONDS,
        on_progress=lambda done, total: progress.append((done, total)),
    )
    total = member.network.count_windows(Analyser(sep.run.preset, len(audio), 44100, True).frames)
    assert total >= 5  # several blocks, so that the first pass's windows are met again
    assert sum(windows_run) == total
    assert progress[-1] == (total, total)
