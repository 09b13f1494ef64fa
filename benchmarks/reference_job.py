"""One run of the reference pipeline, as RVC's UVR5 tab does it, for the benchmark's baseline rows.

usage: python -m benchmarks.reference_job [--device cuda] [--half] WEIGHTS PRESET_JSON AGG OUTDIR INPUT [INPUT ...]

Each input is separated with the test suite's independent re-implementation of RVC's code path
(reference/rvc.py: librosa front end, one window per network call, unfused NCHW network), and both stems are
written as 16-bit WAV the way RVC writes them. The model is loaded once per process, as RVC does. On a GPU RVC's
default is --half (is_half: an fp16 model and fp16 windows).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf

from reference.rvc import AudioPre


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--half", action="store_true")
    ap.add_argument("weights")
    ap.add_argument("preset")
    ap.add_argument("agg", type=float)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("inputs", nargs="+")
    args = ap.parse_args()
    pipeline = AudioPre(args.weights, args.preset, args.agg, device=args.device, is_half=args.half)
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    for path in args.inputs:
        stems = pipeline.separate(path)
        for name, wave in stems.items():
            pcm = (np.clip(wave, -1.0, 32767 / 32768) * 32768).astype(np.int16)
            sf.write(out / f"{Path(path).stem}_{name}.wav", pcm, pipeline.mp["sr"])


if __name__ == "__main__":
    main()
