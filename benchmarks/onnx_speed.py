"""Time one network window run by torch (as `uvr separate` runs it) and by ONNX Runtime (`--backend onnxruntime`).

usage: python benchmarks/onnx_speed.py [--family ch32|ch16|nout48] [--window 512] [--repeats 10]

Random weights in the real layouts (speed does not depend on their values): ch32 5-branch at 4band_v2 is the HP
class (HP2/HP5, 1_HP..4_HP), ch16 the SP class, CascadedNet nout48 the De-Echo class. Each backend runs the same
random normalised-magnitude window, batch 1, with each library's default thread count, after two warm-up
runs, the two alternating; the median and the best time are printed, with the SNR of ONNX Runtime's mask
against torch's. Runs worth keeping go into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from uvr_cli.catalog.presets import load_preset
from uvr_cli.engine.families.vr.export import mask_graph, write_graph
from uvr_cli.engine.families.vr.nets import Aggressiveness, AsppNetSpec, CascadedNetSpec, build_network
from uvr_cli.engine.families.vr.onnx_runtime import OnnxMaskModel
from uvr_cli.engine.families.vr.optimize import prepare_for_inference

FAMILIES = {
    "ch32": (AsppNetSpec(ch=32, branches=5), "4band_v2"),
    "ch16": (AsppNetSpec(ch=16, branches=5), "4band_44100"),
    "nout48": (CascadedNetSpec(nout=48, nout_lstm=128, bins=672), "4band_v3"),
}


def timed(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each run, after two warm-up calls; the runs alternate, so that load from other
    processes on a shared machine falls on both alike."""
    for run in runs.values():
        run(), run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", choices=FAMILIES, default="ch32")
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=10)
    a = ap.parse_args()
    spec, preset_name = FAMILIES[a.family]
    preset = load_preset(preset_name)
    torch.manual_seed(0)
    network = build_network(spec, preset.bins).eval()
    agg = Aggressiveness(0.1, preset.split_bin)
    x = torch.rand(1, 2, preset.bins + 1, a.window) ** 3
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "net.onnx"
        start = time.perf_counter()
        write_graph(mask_graph(network, preset.split_bin), path)
        export_s = time.perf_counter() - start
        ort_model = OnnxMaskModel(
            path, network.offset, network.depth, preset.split_bin, ["CPUExecutionProvider"], "fp32"
        )
        optimised = prepare_for_inference(network, torch.device("cpu"))
        batch = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            want = optimised.predict_mask(batch, agg).numpy()
            got = ort_model.predict_mask(x, agg).numpy()
            times = timed(
                {"torch": lambda: optimised.predict_mask(batch, agg), "ort": lambda: ort_model.predict_mask(x, agg)},
                a.repeats,
            )
        torch_times, ort_times = times["torch"], times["ort"]
    snr = 10 * np.log10(np.sum(want.astype(np.float64) ** 2) / np.sum((want.astype(np.float64) - got) ** 2))
    print(
        f"{a.family} {preset_name} window {a.window}, batch 1, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads); "
        f"export {export_s:.0f} s"
    )
    for name, times in (
        ("torch (engine: folded BN, banded decoders, channels-last)", torch_times),
        ("onnxruntime (exported graph)", ort_times),
    ):
        print(f"  {name:<58} median {statistics.median(times):6.3f} s  best {min(times):6.3f} s")
    ratio = statistics.median(torch_times) / statistics.median(ort_times)
    print(f"  onnxruntime / torch speed: {ratio:.2f}x; mask SNR {snr:.1f} dB")


if __name__ == "__main__":
    main()
