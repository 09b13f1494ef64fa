"""Small MDX-Net ONNX models for tests, built with onnx.helper from seeds: the real models' input and output layout
(batch, 4, dim_f, frames), a few convolutions and a frequency mixing (the real ones' TDF blocks), random weights.

The network's output is 0.5 * x + 0.1 * conv(relu(conv(x))) + 0.1 * (x @ F): near half the mix, so that both stems
stay inside full scale, but not a plain scaling, so a misplaced or mis-weighted chunk shows in the stems.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# Small parameters: a chunk of 16 frames is 15360 samples (0.35 s), so seconds of audio span dozens of chunks.
SMALL = {
    "compensate": 1.0,
    "mdx_dim_f_set": 256,
    "mdx_dim_t_set": 4,
    "mdx_n_fft_scale_set": 2048,
    "primary_stem": "Vocals",
}


def mdx_onnx(
    path: Path,
    dim_f: int = 256,
    frames: int | None = 16,
    seed: int = 0,
    batch: int | None = None,
    name: str = "input",
    rigid: bool = False,
) -> Path:
    """Write a random MDX-Net-shaped ONNX model; `frames` None leaves the frame axis free, `batch` fixes the batch;
    `rigid` reshapes to the fixed frame count inside, so the network runs at no other (as some exports do)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    hidden = 8
    weights = {
        "w1": (rng.standard_normal((hidden, 4, 3, 3)) * 0.2).astype(np.float32),
        "b1": (rng.standard_normal(hidden) * 0.01).astype(np.float32),
        "w2": (rng.standard_normal((4, hidden, 1, 1)) * 0.2).astype(np.float32),
        "b2": (rng.standard_normal(4) * 0.01).astype(np.float32),
        "mix": (rng.standard_normal((dim_f, dim_f)) / np.sqrt(dim_f)).astype(np.float32),
        "half": np.array(0.5, dtype=np.float32),
        "tenth": np.array(0.1, dtype=np.float32),
        **({"fixed": np.array([-1, 4, dim_f, frames or 16], dtype=np.int64)} if rigid else {}),
    }
    nodes = [
        helper.make_node("Conv", [name, "w1", "b1"], ["h"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Conv", ["r", "w2", "b2"], ["c"]),
        helper.make_node("Mul", ["c", "tenth"], ["c10"]),
        helper.make_node("Transpose", [name], ["xt"], perm=[0, 1, 3, 2]),  # (batch, 4, frames, dim_f)
        helper.make_node("MatMul", ["xt", "mix"], ["m"]),
        helper.make_node("Transpose", ["m"], ["mt"], perm=[0, 1, 3, 2]),
        helper.make_node("Mul", ["mt", "tenth"], ["m10"]),
        helper.make_node("Mul", [name, "half"], ["x5"]),
        helper.make_node("Add", ["x5", "c10"], ["s"]),
        helper.make_node("Add", ["s", "m10"], ["output" if not rigid else "free"]),
        *([helper.make_node("Reshape", ["free", "fixed"], ["output"])] if rigid else []),
    ]
    shape = ["batch" if batch is None else batch, 4, dim_f, "frames" if frames is None else frames]
    graph = helper.make_graph(
        nodes,
        "mdx_test_net",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(value, key) for key, value in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def params_file(path: Path, **changes: object) -> Path:
    """A --params JSON with UVR's field names: SMALL with `changes`."""
    path.write_text(json.dumps({**SMALL, **changes}))
    return path


def onnx_network(path: Path):
    """The model as a function of a (batch, 4, dim_f, frames) array, in ONNX Runtime: the reference's network."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda spec: session.run(None, {name: np.ascontiguousarray(spec, dtype=np.float32)})[0]
