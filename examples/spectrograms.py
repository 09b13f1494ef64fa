"""Draw the README's picture: spectrograms of a song and of the stems uvr separates it into.

usage: python examples/spectrograms.py [SONG] [-m WEIGHTS] [-o PNG]

Needs matplotlib (`pip install matplotlib`), which uvr itself does not use. The stems come from the same
`uvr_cli.Separator` the CLI runs, with its defaults (the bundled model unless -m is given).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from uvr_cli import Separator  # noqa: E402
from uvr_cli.io.decode import read_audio  # noqa: E402

HERE = Path(__file__).resolve().parent
N_FFT, HOP, TOP_HZ, FLOOR_DB = 2048, 512, 11025, -80


def log_spectrogram(mono: np.ndarray, rate: int) -> np.ndarray:
    """dB magnitudes (0 dB = the song's loudest bin) up to TOP_HZ, frames on the second axis."""
    window = np.hanning(N_FFT).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(mono, N_FFT // 2), N_FFT)[::HOP]
    magnitude = np.abs(np.fft.rfft(frames * window, axis=-1)).T
    return 20 * np.log10(magnitude[: int(TOP_HZ / rate * N_FFT) + 1] + 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("song", nargs="?", default=str(HERE / "slow_motion_dream.mp3"))
    parser.add_argument("-m", "--model", default=None, help="weight file (default: the bundled model)")
    parser.add_argument("-o", "--out", default=str(HERE / "spectrograms.png"))
    args = parser.parse_args()

    audio = read_audio(args.song)
    separator = Separator(args.model)
    stems = separator.separate(audio.samples, audio.sample_rate)
    panels = {"input": audio.samples, "vocals": stems["vocals"], "instrumental": stems["instrumental"]}
    specs = {name: log_spectrogram(wave.mean(axis=1), audio.sample_rate) for name, wave in panels.items()}
    loudest = specs["input"].max()

    duration = audio.samples.shape[0] / audio.sample_rate
    fig, axes = plt.subplots(len(specs), 1, figsize=(8, 6.5), sharex=True, constrained_layout=True)
    for ax, (name, spec) in zip(axes, specs.items()):
        image = ax.imshow(
            spec - loudest,
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=FLOOR_DB,
            vmax=0,
            extent=(0, duration, 0, TOP_HZ / 1000),
        )
        ax.set_ylabel("kHz")
        ax.set_title(f"{name} — {Path(args.song).name}" if name == "input" else name, loc="left", fontsize=10)
    axes[-1].set_xlabel("seconds")
    fig.colorbar(image, ax=axes, label="dB", shrink=0.6)
    fig.savefig(args.out, dpi=64)
    print(args.out)


if __name__ == "__main__":
    main()
