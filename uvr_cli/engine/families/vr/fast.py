"""What `--fast` changes: wider network windows, and an int8 network calibrated on real music.

Windows of up to 1536 frames spend at most 1/6 of their frames on context where RVC's 512-frame ones spend 1/2, and
each song gets the width that tiles it with the least padding (`fit_window`). The convolutions take 8-bit
activations and per-channel 8-bit weights (ONNX Runtime runs them on VNNI where the CPU has it), and the maps
between them stay 8-bit through the activations, upsampling and concatenations, so the decoders' wide maps take a
quarter of float's memory (benchmarks/RESULTS.md). The activation ranges come from running the float network on
windows of a shipped song. The convolutions that read the input itself stay float: the normalised magnitudes span
~100 dB, which 8 bits cannot hold (quantising them too took the bundled model's mask from 32 to 23 dB SNR against
float, benchmarks/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np
import soundfile as sf

from uvr_cli.catalog.presets import BandPreset
from uvr_cli.engine.analysis import analyse

# --fast's widest window (settings.FAST_WINDOW, 1536): wider is a little faster per frame but ONNX Runtime's peak
# memory grows with it (ch32 at 4band_v2, ONNX Runtime alone: 0.93 GB at 1024 frames, 1.35 GB at 1536; RESULTS.md)
CALIBRATION_FILE = "calibration.mp3"  # the example song's excerpt (models/NOTICE)
# Calibration memory is ONNX Runtime's calibration session, whose arena and memory pattern grow with the windows
# (ch32 at 4band_v2: 3 x 272 frames peak near 5 GB, 4 x 512 frames peaked at 6.4 GB), so they are few and narrow.
CALIBRATION_WINDOWS = 3
CALIBRATION_WIDTH = 272  # frames per window: the narrowest the exported graph takes (more than twice the offset)
QUANTISED_OPS = ["Conv", "Relu", "LeakyRelu", "Resize", "Concat"]  # every map between the convolutions
CALIBRATION_VERSION = 3  # part of the cache key: bump when the calibration or the recipe changes


def calibration_windows(preset: BandPreset, depth: int, width: int = CALIBRATION_WIDTH) -> list[np.ndarray]:
    """Normalised magnitude windows (1, 2, bins+1, width) of the calibration song, as the engine feeds them."""
    with resources.as_file(resources.files("uvr_models") / CALIBRATION_FILE) as path:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    magnitude = np.abs(analyse(audio, rate, preset).spec)
    magnitude /= max(float(magnitude.max()), 1e-8)
    width -= width % 2**depth
    starts = np.linspace(0, max(0, magnitude.shape[-1] - width), CALIBRATION_WINDOWS).astype(int)
    padded = np.pad(magnitude, ((0, 0), (0, 0), (0, max(0, width - magnitude.shape[-1]))))
    return [np.ascontiguousarray(padded[None, :, :, s : s + width], dtype=np.float32) for s in starts]


def input_convolutions(graph) -> list[str]:  # graph: onnx.GraphProto
    """The Conv nodes that read the input `x` through non-convolution ops only (slices, concatenations)."""
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    found, seen, todo = [], set(), ["x"]
    while todo:
        for node in readers.get(todo.pop(), []):
            if node.name in seen:
                continue
            seen.add(node.name)
            if node.op_type == "Conv":
                found.append(node.name)
            else:
                todo.extend(node.output)
    return found


def quantize_graph(float_path: Path, out_path: Path, windows: list[np.ndarray]) -> None:
    """Write `float_path`'s network with int8 convolutions (QDQ, per-channel weights) to `out_path`; a prepared
    copy of the float graph (shapes inferred, constants folded) is left beside `float_path`."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Windows(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds: Iterator[np.ndarray] = iter(windows)

        def get_next(self) -> dict | None:
            x = next(self.feeds, None)
            return None if x is None else {"x": x, "agg": np.array(0.0, dtype=np.float32)}

    prepared = float_path.with_name(f"{float_path.stem}-prepared.onnx")
    quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
    keep_float = input_convolutions(onnx.load(str(prepared)).graph)
    quantize_static(
        str(prepared),
        str(out_path),
        Windows(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=QUANTISED_OPS,
        nodes_to_exclude=keep_float,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
