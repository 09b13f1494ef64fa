"""The VR family: UVR5's CascadedASPPNet and CascadedNet mask networks, on the frame path (engine/frames.py).

A VR file is a PyTorch state dict whose tensors lay out one of the two networks (checkpoint.py); its band preset
and primary stem come from its hash or name (catalog/registry.py) or from --params/--primary. The network reads the
combined band spectrogram's magnitudes divided by the song's largest one and gives the mask of its primary stem:
primary = mask * mix, the other stem = mix - primary (RVC's semantics, reference §5); the top band's unmodelled rows
are rebuilt per stem (high_end.py). Options: --params, --primary, --agg (CascadedASPPNet only, as in RVC), --tta,
--high-end, --post-process, --window.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from uvr_cli.catalog.presets import BandPreset
from uvr_cli.engine.analysis import Frames
from uvr_cli.engine.device import Runtime, precision_context
from uvr_cli.engine.families.vr.export import check_window, export_network
from uvr_cli.engine.families.vr.high_end import mirror
from uvr_cli.engine.families.vr.loading import Model, architecture, describe_model, load_model
from uvr_cli.engine.families.vr.nets import Aggressiveness, CascadedNetSpec
from uvr_cli.engine.families.vr.onnx_runtime import onnx_mask_model
from uvr_cli.engine.families.vr.optimize import prepare_for_inference
from uvr_cli.engine.families.vr.postprocess import mask_silence
from uvr_cli.engine.family import ModelInfo, sidecar_path
from uvr_cli.engine.frames import StemFrames
from uvr_cli.engine.windows import NetworkRun, Predict, WindowRunner
from uvr_cli.errors import UsageError
from uvr_cli.settings import PRIMARY_STEMS, ModelOptions

OPTIONS = frozenset({"params", "primary", "agg", "tta", "high_end", "post_process", "window"})


class MaskModel(Protocol):
    """A VR network as torch (nets.MaskNetwork) or ONNX Runtime (onnx_runtime.OnnxMaskModel) runs it."""

    offset: int

    def predict_mask(self, x: torch.Tensor, aggressiveness: Aggressiveness | None = None) -> torch.Tensor: ...


def mask_predictor(
    model: MaskModel, device: torch.device, dtype: torch.dtype, aggressiveness: Aggressiveness | None
) -> Predict:
    """The window loop's network: normalised magnitude windows -> float32 masks, on `device` in `dtype`."""

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), precision_context(device, dtype):
            x = torch.from_numpy(batch).to(device).contiguous(memory_format=torch.channels_last)
            return model.predict_mask(x, aggressiveness).float().cpu().numpy()

    return predict


class VrSong:
    """A VR model over one song: the mask of each block's frames, and the two stems it gives."""

    def __init__(self, model: VrModel, runner: WindowRunner, scale: float, n_frames: int) -> None:
        self.model, self.runner, self.scale, self.n_frames = model, runner, scale, n_frames
        self.last_mask: np.ndarray | None = None  # the song's last frame's mask, for the frames after it

    def frames(self, found: Frames, context: int, a: int, b: int, stems: Sequence[str], on_window, ahead: bool):
        centre = found.spec[:, :, context : context + b - a]
        if self.scale > 0:
            mask = self.runner.outputs(found.magnitude / self.scale, a - context, a, b, on_window, ahead)
        else:  # a silent song: nothing to estimate
            mask = np.zeros((2, found.spec.shape[1], b - a), dtype=np.float32)
        if b == self.n_frames:
            self.last_mask = mask[:, :, -1:]
        if self.model.post_process:
            magnitude = found.magnitude[:, :, context : context + b - a]
            estimate = mask * magnitude
            estimate = mask_silence(estimate, np.clip(magnitude - estimate, 0, np.inf))
            primary = estimate * np.exp(1.0j * np.angle(centre)).astype(np.complex64)
        else:
            primary = mask * centre
        high_end = None if found.high_end is None else found.high_end[:, :, context : context + b - a]
        return self._stems(centre, primary, high_end, stems)

    def tail(self, extra: Frames, stems: Sequence[str]) -> StemFrames:
        assert self.last_mask is not None, "the tail comes after the song's last block"
        return self._stems(extra.spec, self.last_mask * extra.spec, extra.high_end, stems)

    def _stems(self, mix: np.ndarray, primary: np.ndarray, high_end: np.ndarray | None, stems: Sequence[str]):
        """The primary stem, and the other one (mix - primary) when wanted, each with its rebuilt high end."""
        model = self.model
        by_stem = {model.primary: primary}
        if model.secondary in stems:
            by_stem[model.secondary] = mix - primary
        return {
            stem: (spec, None if high_end is None else mirror(model.high_end, spec, high_end, model.preset))
            for stem, spec in by_stem.items()
            if stem in stems
        }


@dataclass(frozen=True)
class VrModel:
    """A loaded VR model: what it is, and how the frame path runs it (frames.FrameModel)."""

    info: ModelInfo
    preset: BandPreset
    network: NetworkRun
    high_end: str
    post_process: bool

    @property
    def signal(self) -> VrModel:
        return self

    @property
    def stems(self) -> tuple[str, ...]:
        return PRIMARY_STEMS

    @property
    def primary(self) -> str:
        return self.info.primary

    @property
    def secondary(self) -> str:
        return next(s for s in PRIMARY_STEMS if s != self.info.primary)

    @property
    def keeps_high_end(self) -> bool:
        return self.high_end != "none"

    @property
    def needs_scale(self) -> bool:
        return True

    @property
    def needs_whole_song(self) -> bool:
        return self.post_process

    def song(self, runner: WindowRunner, scale: float, n_frames: int) -> VrSong:
        return VrSong(self, runner, scale, n_frames)

    def with_network(self, network: NetworkRun) -> VrModel:
        return dataclasses.replace(self, network=network)


def model_info(model: Model, primary: str | None) -> ModelInfo:
    """What reports say of a loaded VR file; `primary` overrides the stem its mask estimates."""
    cascaded_net = isinstance(model.loaded.spec, CascadedNetSpec)
    label = primary or ("vocals" if model.identity.primary_is_vocals else "instrumental")
    ignored = {"agg"} if cascaded_net else set()
    why_not = {"agg": "ignores aggressiveness (as in RVC)"} if cascaded_net else {}
    if not model.params_used:
        ignored.add("params")
        why_not["params"] = f"known by its {model.identity.how} to use {model.preset.name} (--force-params uses yours)"
    return ModelInfo(
        path=model.path,
        family="VR",
        architecture=architecture(model.loaded.spec),
        identity=model.identity,
        stems=PRIMARY_STEMS,
        primary=label,
        sample_rate=model.preset.sr,
        setup=f"band preset {model.preset.name}",
        applies=OPTIONS - ignored,
        kind="a CascadedNet model" if cascaded_net else "a VR model",
        why_not=why_not,
    )


class VrFamily:
    """UVR5's VR networks. It claims every file no other family claims, so a file that is nothing uvr knows is
    refused in its words (not a readable PyTorch weight file, ...)."""

    name = "VR"

    def claims(self, path: Path, head: bytes) -> bool:
        return True

    def load(self, path: Path, options: ModelOptions, runtime: Runtime) -> VrModel:
        model = load_model(path, options.params, options.force_params)
        network = model.loaded.module
        window = options.window_for(runtime.fast)
        check_window(window, network.offset, network.depth)
        aggressiveness = Aggressiveness(options.agg / 100, model.preset.split_bin)
        info = model_info(model, options.primary)
        if runtime.backend == "torch":
            runnable: MaskModel = prepare_for_inference(network, runtime.device)
        else:
            runnable = onnx = onnx_mask_model(
                model,
                window=window,
                fast=runtime.fast,
                note=runtime.note,
                device=runtime.options.device,
                precision=runtime.options.precision,
            )
            info = dataclasses.replace(info, setup=f"{info.setup}, network in ONNX Runtime {onnx.precision}")
        run = NetworkRun(
            mask_predictor(runnable, runtime.device, runtime.dtype, aggressiveness),
            network.offset,
            window,
            options.tta,
            runtime.batch_size,
            fit=runtime.fast and options.window is None,  # --fast's window is the widest; each song gets its own
            step=2**network.depth,
        )
        return VrModel(info, model.preset, run, options.high_end, options.post_process)

    def describe(self, path: Path, options: ModelOptions) -> dict:
        return describe_model(path)

    def export(
        self, path: Path, out: Path, options: ModelOptions, precision: str, note: Callable[[str], None] | None = None
    ) -> list[str]:
        if precision not in ("fp32", "fp16"):
            raise UsageError(f"--precision {precision!r}: use fp32 or fp16")
        model = load_model(path, options.params, options.force_params)
        primary = model_info(model, options.primary).primary
        window = options.window_for(False)
        export_network(model, out, precision=precision, window=window, primary=primary, note=note)
        return [str(out), str(sidecar_path(out))]


FAMILY = VrFamily()
