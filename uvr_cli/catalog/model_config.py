"""The YAML config of an MSST-format checkpoint (MDX23C, BS-RoFormer, Mel-Band RoFormer), read without torch.

ZFTurbo's Music-Source-Separation-Training (MSST), where these models are trained, stores a model as a `.ckpt`
state dict and a YAML config with `audio`, `model`, `training` and `inference` sections; UVR and
python-audio-separator keep the YAML beside the checkpoint. uvr takes it from --config, else from the `.yaml` of
the same name beside the checkpoint. The config names the model's stems: `training.instruments`, or the one
`training.target_instrument`, in which case the rest of the mix (mix - target) is a stem too (see
`ModelConfig.rest` for its name).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from uvr_cli.errors import ModelError

SECTIONS = ("audio", "model", "training", "inference")
COMPLEMENTS = {"vocals": "instrumental", "instrumental": "vocals"}
PAIR = ("vocals", "instrumental")  # the stems of VR and MDX-Net models
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save's zip, or the legacy pickle


def _loader():
    """PyYAML's safe loader, taught the one Python tag MSST's configs use (`!!python/tuple`)."""
    import yaml

    class ConfigLoader(yaml.SafeLoader):
        pass

    ConfigLoader.add_constructor(
        "tag:yaml.org,2002:python/tuple", lambda loader, node: tuple(loader.construct_sequence(node))
    )
    return ConfigLoader


def dump_config(config: dict) -> str:
    """The YAML text of `config` as MSST writes configs (tuples as !!python/tuple), for models made by tests and
    benchmarks; read_config reads it back as it was."""
    import yaml

    class ConfigDumper(yaml.SafeDumper):
        pass

    ConfigDumper.add_representer(
        tuple, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:python/tuple", data)
    )
    return yaml.dump(config, Dumper=ConfigDumper, sort_keys=False)


def stem_name(text: str) -> str:
    """A stem's name as uvr uses it: lower case, words joined by hyphens ("No Reverb" -> "no-reverb")."""
    return "-".join(str(text).lower().split())


@dataclass(frozen=True)
class ModelConfig:
    """An MSST config, its sections as plain dicts."""

    path: Path
    audio: dict
    model: dict
    training: dict
    inference: dict

    @property
    def architecture(self) -> str:
        """'mel_band_roformer', 'bs_roformer' or 'mdx23c', from the model section's keys (as UVR decides)."""
        if "num_bands" in self.model:
            return "mel_band_roformer"
        if "freqs_per_bands" in self.model:
            return "bs_roformer"
        return "mdx23c"

    @property
    def target(self) -> str | None:
        target = self.training.get("target_instrument")
        return stem_name(target) if target else None

    @property
    def outputs(self) -> tuple[str, ...]:
        """The network's outputs, in order: the target alone, or every instrument."""
        if self.target:
            return (self.target,)
        return tuple(stem_name(name) for name in self.training["instruments"])

    @property
    def rest(self) -> str | None:
        """The name of the mix less the target (None without one): `instrumental` for `vocals` and back, as UVR and
        MSST name them whatever else the config lists, else the config's other instrument where it lists two
        (`noreverb` and `reverb`), else `no-<target>`."""
        if not self.target:
            return None
        if self.target in COMPLEMENTS:
            return COMPLEMENTS[self.target]
        others = [stem_name(name) for name in self.training.get("instruments", []) if stem_name(name) != self.target]
        if len(others) == 1:
            return others[0]
        return self.target.removeprefix("no-") if self.target.startswith("no-") else f"no-{self.target}"

    @property
    def stems(self) -> tuple[str, ...]:
        """What uvr offers: the network's outputs, and the rest of the mix when there is one target."""
        return self.outputs + ((self.rest,) if self.rest else ())

    @property
    def sample_rate(self) -> int:
        return int(self.audio.get("sample_rate", 44100))

    @property
    def chunk_size(self) -> int:
        """Samples per chunk, as MSST's demix takes it: the inference section's, else the audio section's."""
        return int(self.inference.get("chunk_size", self.audio["chunk_size"]))

    @property
    def num_overlap(self) -> int:
        return int(self.inference.get("num_overlap", 2))

    @property
    def batch_size(self) -> int:
        return int(self.inference.get("batch_size", 1))


def find_config(checkpoint: Path, given: str | None) -> Path:
    """--config, else the `.yaml` (or `.yml`) of the checkpoint's name beside it; a one-line ModelError if none."""
    if given is not None:
        return Path(given)
    for suffix in (".yaml", ".yml"):
        beside = checkpoint.with_suffix(suffix)
        if beside.is_file():
            return beside
    raise ModelError(
        f"{checkpoint.name}: needs its YAML config (the model's audio, model, training and inference settings): "
        f"pass --config FILE.yaml or put {checkpoint.with_suffix('.yaml').name} beside it"
    )


def read_config(path: Path) -> ModelConfig:
    """The config at `path`, checked for what uvr reads of it; any failure is one line naming the file."""
    import yaml

    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_loader())
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the config: {exc.strerror or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{path}: not a readable YAML config: {first}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: not an MSST config: it holds no sections")
    sections: dict[str, dict] = {}
    for name in SECTIONS:
        section = data.get(name) if data.get(name) is not None else {}
        if not isinstance(section, dict):
            raise ModelError(f"{path}: the '{name}' section must be a mapping")
        sections[name] = section
    if not sections["model"]:
        raise ModelError(f"{path}: not an MSST config: it has no 'model' section")
    config = ModelConfig(path, sections["audio"], sections["model"], sections["training"], sections["inference"])
    instruments = config.training.get("instruments")
    if not config.target and (not isinstance(instruments, list) or not instruments):
        raise ModelError(f"{path}: training.instruments must list the model's stems (or name a target_instrument)")
    try:
        if config.chunk_size < 2 or config.num_overlap < 1 or config.batch_size < 1:
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise ModelError(
            f"{path}: needs audio.chunk_size (or inference.chunk_size) >= 2, inference.num_overlap >= 1 and "
            "inference.batch_size >= 1"
        ) from None
    if len(set(config.stems)) != len(config.stems):
        raise ModelError(f"{path}: two of its stems have one name: {', '.join(config.stems)}")
    return config


def is_msst_checkpoint(path: Path, head: bytes) -> bool:
    """A `.ckpt`, or a PyTorch file (first bytes `head`) with a `.yaml` of its name beside it."""
    beside = any(path.with_suffix(suffix).is_file() for suffix in (".yaml", ".yml"))
    return path.suffix.lower() == ".ckpt" or (beside and head.startswith(_TORCH_MAGIC))


def stems_of(path: Path, config: str | None) -> tuple[str, ...]:
    """The stems a model file gives, known without loading it (so that outputs are named before torch is
    imported): an MSST-format checkpoint's from its config, every other model's the vocal/instrumental pair."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError:
        return PAIR  # loading reports why the file cannot be read
    if is_msst_checkpoint(path, head):
        return read_config(find_config(path, config)).stems
    return PAIR


def common_stems(each: Sequence[Sequence[str]]) -> tuple[str, ...]:
    """The stems every model of an ensemble gives, in the first model's order."""
    return tuple(stem for stem in each[0] if all(stem in stems for stems in each[1:]))
