"""MSST-format models: a `.ckpt` state dict and a YAML config, as ZFTurbo's Music-Source-Separation-Training trains
them and UVR and python-audio-separator run them. The config says the architecture (BS-RoFormer, Mel-Band RoFormer
or MDX23C, whose networks live in their own rooms, engine/families/roformer and .../mdx23c), the stems and the
chunking; the checkpoint loads strictly (a missing, extra or mis-shaped tensor is one line naming it). They take
the chunk path with the authors' chunking (chunking.py). Options: --config, --num-overlap.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from uvr_cli.catalog.model_config import ModelConfig, find_config, is_msst_checkpoint, read_config
from uvr_cli.catalog.models import load_catalog
from uvr_cli.catalog.registry import ModelIdentity, uvr_model_hash
from uvr_cli.engine.chunks import ChunkNetwork, ChunkPredict
from uvr_cli.engine.device import Runtime, precision_context
from uvr_cli.engine.families.msst.chunking import MsstModel
from uvr_cli.engine.family import ModelInfo
from uvr_cli.engine.weights import NBT, check_values, few, read_state_dict
from uvr_cli.errors import ModelError, UsageError
from uvr_cli.settings import ModelOptions

OPTIONS = frozenset({"config", "num_overlap"})
NAMES = {"bs_roformer": "BS-RoFormer", "mel_band_roformer": "Mel-Band RoFormer", "mdx23c": "MDX23C"}


def build_network(config: ModelConfig) -> nn.Module:
    """The config's network with fresh weights, on the current default device (meta: shapes only)."""
    if config.architecture == "mdx23c":
        from uvr_cli.engine.families.mdx23c.network import TfcTdfNet

        return TfcTdfNet(config.audio, config.model, targets=len(config.outputs))
    if config.architecture == "bs_roformer":
        from uvr_cli.engine.families.roformer.bs_roformer import BSRoformer

        return BSRoformer(**config.model)
    from uvr_cli.engine.families.roformer.mel_band_roformer import MelBandRoformer

    return MelBandRoformer(**config.model)


def _build(config: ModelConfig, where: str, device: torch.device | str) -> nn.Module:
    try:
        with torch.device(device):
            return build_network(config)
    except ModelError as exc:
        raise ModelError(f"{where}: {exc}") from None
    except (TypeError, ValueError) as exc:  # a config the network cannot be built from
        raise ModelError(f"{where}: the config's model section does not build a network: {exc}") from None


def _check_layout(network: nn.Module, state: dict[str, torch.Tensor], path: Path, config: ModelConfig) -> None:
    """Every key and shape of the checkpoint must be the network's, and the other way round."""
    expected = {k: tuple(v.shape) for k, v in network.state_dict().items() if not k.endswith(NBT)}
    given = {k: tuple(v.shape) for k, v in state.items()}
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    wrong = [f"{k} {list(given[k])} (expected {list(s)})" for k, s in expected.items() if k in given and given[k] != s]
    problems = [
        f"{len(found)} {what}: {few(found)}"
        for what, found in (("missing tensor(s)", missing), ("unexpected tensor(s)", unexpected), ("mis-shaped", wrong))
        if found
    ]
    if problems:
        raise ModelError(
            f"{path.name}: does not fit the {NAMES[config.architecture]} its config {config.path.name} describes: "
            + "; ".join(problems)
        )


def _predict(network: nn.Module, runtime: Runtime, channels: int) -> ChunkPredict:
    """Chunks (batch, 2, C) -> (batch, outputs, 2, C): the network on the device, in its precision; a mono network
    separates each channel on its own."""

    def predict(chunks: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(chunks).to(runtime.device)
        batch = x.shape[0]
        if channels == 1:
            x = x.reshape(batch * 2, 1, -1)
        with torch.inference_mode(), precision_context(runtime.device, runtime.dtype):
            y = network(x).float()
        if channels == 1:
            y = y.reshape(batch, 2, y.shape[1], -1).transpose(1, 2)
        return y.cpu().numpy()

    return predict


def _describe(config: ModelConfig) -> str:
    model = config.model
    if config.architecture == "mdx23c":
        return f"MDX23C (n_fft {config.audio.get('n_fft')}, {model.get('num_scales')} scales)"
    return f"{NAMES[config.architecture]} (dim {model.get('dim')}, depth {model.get('depth')})"


class MsstFamily:
    """BS-RoFormer, Mel-Band RoFormer and MDX23C checkpoints with their configs."""

    name = "MSST"

    def claims(self, path: Path, head: bytes) -> bool:
        return is_msst_checkpoint(path, head)

    def config(self, path: Path, options: ModelOptions) -> ModelConfig:
        return read_config(find_config(path, options.config))

    def load(self, path: Path, options: ModelOptions, runtime: Runtime) -> MsstModel:
        config = self.config(path, options)
        where = f"{path.name} ({config.path.name})"
        state = read_state_dict(path)
        _check_layout(_build(config, where, "meta"), state, path, config)
        try:
            check_values(state)
        except ModelError as exc:
            raise ModelError(f"{path}: {exc}") from None
        network = _build(config, where, "cpu")
        counters = {k: torch.zeros((), dtype=torch.long) for k in network.state_dict() if k.endswith(NBT)}
        network.load_state_dict({**counters, **state}, strict=True)
        network = network.eval().to(runtime.device)
        if config.architecture != "mdx23c" and int(config.model.get("num_stems", 1)) != len(config.outputs):
            raise ModelError(
                f"{where}: the network gives {config.model.get('num_stems', 1)} stems, the config names "
                f"{len(config.outputs)} ({', '.join(config.outputs)})"
            )
        channels = 2 if config.architecture == "mdx23c" or config.model.get("stereo") else 1
        num_overlap = options.num_overlap or config.num_overlap
        if config.chunk_size // num_overlap < 1:
            raise UsageError(f"--num-overlap {num_overlap}: more chunks over a sample than the chunk has samples")
        info = self._info(path, config, uvr_model_hash(path))
        run = ChunkNetwork(_predict(network, runtime, channels), runtime.batch_size)
        return MsstModel(info, config, run, num_overlap)

    def _info(self, path: Path, config: ModelConfig, uvr_hash: str) -> ModelInfo:
        name = NAMES[config.architecture]
        how = f"config {config.path.name}"
        return ModelInfo(
            path=path,
            family=name,
            architecture=_describe(config),
            identity=ModelIdentity(config.path.name, config.outputs[0], how, uvr_hash, certain=True),
            stems=config.stems,
            primary=config.outputs[0],
            sample_rate=config.sample_rate,
            setup=f"chunk {config.chunk_size} samples, {config.num_overlap} over each, {len(config.stems)} stems",
            applies=OPTIONS,
            kind=f"a {name} model",
        )

    def describe(self, path: Path, options: ModelOptions) -> dict:
        config = self.config(path, options)
        uvr_hash = uvr_model_hash(path)
        by_hash = [e for e in load_catalog() if e.uvr_hash == uvr_hash]
        return {
            "path": str(path),
            "size_bytes": path.stat().st_size,
            "family": NAMES[config.architecture],
            "architecture": _describe(config),
            "config": str(config.path),
            "uvr_hash": uvr_hash,
            "recognised_by": f"config {config.path.name}",
            "catalogue_name": by_hash[0].name if by_hash else None,
            "stems": list(config.stems),
            "target": config.target,
            "details": {
                "config": str(config.path),
                "outputs": ", ".join(config.outputs)
                + (f" (and {config.stems[-1]} = mix - {config.target})" if config.target else ""),
                "chunking": f"{config.chunk_size} samples at {config.sample_rate} Hz, {config.num_overlap} over each "
                f"sample, batches of {config.batch_size} (the authors' demix)",
            },
        }

    def export(
        self, path: Path, out: Path, options: ModelOptions, precision: str, note: Callable[[str], None] | None = None
    ) -> list[str]:
        raise UsageError(f"{path.name}: exporting {NAMES[self.config(path, options).architecture]} models is not built")


FAMILY = MsstFamily()
