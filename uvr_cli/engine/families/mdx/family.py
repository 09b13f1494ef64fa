"""The MDX-Net family: UVR's MDX-Net ONNX models (UVR-MDX-NET Main/Inst/Voc, Inst_HQ 1-5, Kim_Vocal 1/2, Kim_Inst,
UVR_MDXNET_KARA 1/2, Reverb_HQ, ...), on the chunk path (engine/chunks.py).

A `.onnx` file whose one input is (batch, 4, dim_f, frames). Its parameters come from UVR's table by its hash, or
from --params FILE.json (params.py). Chunking is UVR's `demix` (separate.py `SeperateMDX`), which
python-audio-separator follows: the song gets n_fft/2 zeros in front and zeros behind up to a whole number of
generated spans (chunk - n_fft); chunks of hop * (segment - 1) samples start every (1 - overlap) * chunk samples;
each chunk's output is weighted by a symmetric Hann window over the chunk's real span (np.hanning; none with
overlap 0) and the weighted sum divided by the summed weights. The primary stem is that average times
`compensate` (UVR's volume compensation), the other stem the mix minus it. Options: --params, --primary,
--segment, --overlap, --denoise (python-audio-separator's defaults: 256, 0.25, off).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uvr_cli.catalog.models import load_catalog
from uvr_cli.catalog.registry import VOCAL_PRIMARY_STEMS, ModelIdentity, uvr_model_hash
from uvr_cli.engine.chunks import ChunkLayout, ChunkNetwork
from uvr_cli.engine.device import Runtime
from uvr_cli.engine.families.mdx.network import HOP, ChunkNet, dims, free_axes, read_graph
from uvr_cli.engine.families.mdx.params import MdxParams, find_params
from uvr_cli.engine.family import ModelInfo, sidecar_path
from uvr_cli.engine.onnx import providers, session
from uvr_cli.errors import ModelError, UsageError
from uvr_cli.settings import PRIMARY_STEMS, ModelOptions

RATE = 44100  # UVR loads every input at 44.1 kHz for MDX-Net
OPTIONS = frozenset({"params", "primary", "segment", "overlap", "denoise"})


@dataclass(frozen=True)
class MdxModel:
    """A loaded MDX-Net model: what it is, and how the chunk path runs it (chunks.ChunkModel)."""

    info: ModelInfo
    params: MdxParams
    network: ChunkNetwork
    segment: int
    overlap: float

    @property
    def signal(self) -> MdxModel:
        return self

    @property
    def sample_rate(self) -> int:
        return RATE

    @property
    def stems(self) -> tuple[str, ...]:
        return PRIMARY_STEMS

    @property
    def chunk(self) -> int:
        return HOP * (self.segment - 1)

    def layout(self, n: int) -> ChunkLayout:
        trim = self.params.n_fft // 2
        generated = self.chunk - 2 * trim
        length = trim + n + generated + trim - n % generated
        step = int((1 - self.overlap) * self.chunk)
        return ChunkLayout(n, trim, length, self.chunk, tuple(range(0, length, step)))

    def chunk_input(self, layout: ChunkLayout, k: int, part: np.ndarray) -> np.ndarray:
        return np.pad(part, ((0, 0), (0, layout.chunk - part.shape[1])))

    def weight(self, layout: ChunkLayout, k: int) -> np.ndarray:
        span = layout.span(k)
        return np.hanning(span) if self.overlap else np.ones(span)

    def stems_of(self, averaged: np.ndarray, mix: np.ndarray, stems: Sequence[str]) -> dict[str, np.ndarray]:
        primary = averaged[0] * self.params.compensate
        by_stem = {self.info.primary: primary}
        secondary = next(s for s in PRIMARY_STEMS if s != self.info.primary)
        if secondary in stems:
            by_stem[secondary] = mix - primary
        return {stem: wave for stem, wave in by_stem.items() if stem in stems}

    def with_network(self, network: ChunkNetwork) -> MdxModel:
        return dataclasses.replace(self, network=network)


def _input_of(graph, path: Path):
    """The graph's one input, checked to be a 4-channel spectrogram (batch, 4, bins, frames)."""
    inputs, outputs = list(graph.graph.input), list(graph.graph.output)
    names = [i.name for i in inputs]
    initialisers = {t.name for t in graph.graph.initializer}
    feeds = [i for i in inputs if i.name not in initialisers]
    if set(names) >= {"x", "agg"}:
        raise ModelError(
            f"{path.name}: a VR network exported by `uvr export`, not an MDX-Net model: separate with the weight "
            "file it was exported from (-m FILE.pth), which runs in ONNX Runtime with --backend onnxruntime"
        )
    if len(feeds) != 1 or len(outputs) < 1:
        raise ModelError(
            f"{path.name}: not an MDX-Net model: it takes {len(feeds)} inputs ({', '.join(names)}), not one"
        )
    shape = dims(feeds[0])
    if len(shape) != 4 or shape[1] not in (None, 4):
        shown = "x".join("?" if d is None else str(d) for d in shape)
        raise ModelError(f"{path.name}: not an MDX-Net model: its input is {shown}, not (batch, 4, bins, frames)")
    return feeds[0], shape


def _info(path: Path, params: MdxParams, uvr_hash: str, primary: str | None, frames: int | None) -> ModelInfo:
    label = primary or ("vocals" if params.primary_stem in VOCAL_PRIMARY_STEMS else "instrumental")
    shown = "?" if frames is None else str(frames)
    return ModelInfo(
        path=path,
        family="MDX-Net",
        architecture=f"ONNX network on (batch, 4, {params.dim_f}, {shown}) spectrograms",
        identity=ModelIdentity(params.describe(), params.primary_stem, params.how, uvr_hash),
        stems=PRIMARY_STEMS,
        primary=label,
        sample_rate=RATE,
        setup=params.describe(),
        applies=OPTIONS if params.from_params else OPTIONS - {"params"},
        kind="an MDX-Net model",
        why_not={"params": f"known by its {params.how} (--force-params uses yours)"},
    )


def _refuse_a_uvr_export(path: Path) -> None:
    """A VR network that `uvr export` wrote (its FILE.onnx.json says so) is not an MDX-Net model: say how to run
    the model it came from in ONNX Runtime instead of failing on its shapes."""
    import json

    try:
        description = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not (isinstance(description, dict) and str(description.get("exported_by", "")).startswith("uvr ")):
        return
    source = (description.get("model") or {}).get("file", "the .pth it came from")
    raise UsageError(
        f"{path.name}: a VR network exported by `uvr export` (see {path.name}.json), not an MDX-Net model; to run "
        f"{source} in ONNX Runtime, use -m {source} --backend onnxruntime"
    )


class MdxFamily:
    """MDX-Net ONNX models, by their `.onnx` name."""

    name = "MDX-Net"

    def claims(self, path: Path, head: bytes) -> bool:
        return path.suffix.lower() == ".onnx"

    def load(self, path: Path, options: ModelOptions, runtime: Runtime) -> MdxModel:
        _refuse_a_uvr_export(path)
        graph = read_graph(path)
        feed, shape = _input_of(graph, path)
        uvr_hash = uvr_model_hash(path)
        params = find_params(path, uvr_hash, options.params, options.force_params)
        if shape[2] is not None and shape[2] != params.dim_f:
            raise ModelError(
                f"{path.name}: its network takes {shape[2]} frequency bins, but its parameters ({params.how}) say "
                f"dim_f {params.dim_f}"
            )
        frames = options.segment
        if HOP * (frames - 1) <= params.n_fft:
            raise UsageError(
                f"--segment {frames}: a chunk of {frames} frames is too short for {path.name}'s n_fft "
                f"{params.n_fft}; use at least {params.n_fft // HOP + 2}"
            )
        if int((1 - options.overlap) * HOP * (frames - 1)) < 1:
            raise UsageError(f"--overlap {options.overlap:g}: chunks would not advance; use less overlap")
        fixed = [axis for axis in (0, 3) if shape[axis] is not None]
        model: Path | bytes = free_axes(graph, (0, 3)) if fixed else path
        onnx_session = session(model, providers(runtime.options.device), path, arena=True)
        net = ChunkNet(onnx_session, params, runtime.device, options.denoise)
        if shape[3] is not None and shape[3] != frames:
            _check_runs(net, params, frames, shape[3], path)
        info = _info(path, params, uvr_hash, options.primary, frames)
        return MdxModel(info, params, ChunkNetwork(net, runtime.batch_size), frames, options.overlap)

    def describe(self, path: Path, options: ModelOptions) -> dict:
        graph = read_graph(path)
        feed, shape = _input_of(graph, path)
        uvr_hash = uvr_model_hash(path)
        try:
            params: MdxParams | None = find_params(path, uvr_hash, options.params, options.force_params)
        except ModelError:
            params = None
        by_hash = [e for e in load_catalog() if e.uvr_hash == uvr_hash]
        shown = ", ".join(
            "batch" if i == 0 and d is None else "?" if d is None else str(d) for i, d in enumerate(shape)
        )
        primary = None if params is None else _info(path, params, uvr_hash, options.primary, shape[3]).primary
        return {
            "path": str(path),
            "size_bytes": path.stat().st_size,
            "family": "MDX-Net",
            "architecture": f"ONNX network, input {feed.name} ({shown})",
            "input": {"name": feed.name, "shape": shape},
            "uvr_hash": uvr_hash,
            "recognised_by": None if params is None else params.how,
            "catalogue_name": by_hash[0].name if by_hash else None,
            "params": None if params is None else dataclasses.asdict(params),
            "primary_stem": None if params is None else params.primary_stem,
            "stems": list(PRIMARY_STEMS),
            "details": {
                "parameters": "unknown (pass --params FILE.json)" if params is None else params.describe(),
                "primary stem": "unknown"
                if params is None
                else f"{params.primary_stem} (the network estimates the {primary})",
                "chunk": f"{options.segment} frames of hop {HOP} (--segment), {HOP * (options.segment - 1)} samples",
            },
        }

    def export(
        self, path: Path, out: Path, options: ModelOptions, precision: str, note: Callable[[str], None] | None = None
    ) -> list[str]:
        raise UsageError(
            f"{path.name} is an MDX-Net model, already an ONNX file: other runtimes can load it as it is "
            "(input: the STFT described by `uvr info`)"
        )


def _check_runs(net: ChunkNet, params: MdxParams, frames: int, exported: int, path: Path) -> None:
    """A network exported for `exported` frames, run at `frames`: try one chunk, so a graph that cannot is a
    one-line error now rather than a failure mid-song."""
    trial = np.zeros((1, 4, params.dim_f, frames), dtype=np.float32)
    try:
        runs = net.network(trial).shape == trial.shape
    except Exception:
        runs = False
    if not runs:
        raise UsageError(
            f"--segment {frames}: {path.name}'s network was exported for {exported} frames and does not run with "
            f"{frames}; use --segment {exported}"
        )


FAMILY = MdxFamily()
