"""The typed settings of a separation: built once (by the CLI from its options, or by the Python API from its keyword
arguments), checked on construction, taken by `Separator` and chains, and written beside the outputs as the settings
record. No torch here: every refusal these checks make comes before torch is imported.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uvr_cli.errors import UsageError
from uvr_cli.io.formats import FORMATS
from uvr_cli.io.spool import CLIP_MODES

HIGH_END_MODES = ("mirroring", "mirroring2", "none")
PRIMARY_STEMS = ("vocals", "instrumental")
ENSEMBLE_ALGORITHMS = ("avg", "max", "min")
BACKENDS = ("torch", "onnxruntime")
FRONT_ENDS = ("auto", "numpy", "torch")
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
EXACT_WINDOW = 512  # RVC's and UVR's VR window
FAST_WINDOW = 1536  # --fast's widest VR window (engine/families/vr/fast.py says why)
DEFAULT_SEGMENT, DEFAULT_OVERLAP = 256, 0.25  # MDX-Net, as python-audio-separator's defaults


@dataclass(frozen=True)
class ModelOptions:
    """How the models separate. Each family reads the options that mean something to it (family.py `applies`)."""

    params: str | None = None  # VR: band preset name or JSON path; MDX-Net: a JSON file of UVR's model data fields
    force_params: bool = False  # --params replaces even what uvr knows of a file for certain (its hash)
    primary: str | None = None  # the stem the network estimates, for files uvr does not recognise
    agg: float = 10.0  # VR (CascadedASPPNet): aggressiveness 0-100
    tta: bool = False  # VR: test-time augmentation
    high_end: str = "mirroring"  # VR: how the top band's unmodelled bins are rebuilt
    post_process: bool = False  # VR: RVC's post-processing
    window: int | None = None  # VR: network window in frames (None: 512, or up to 1536 with --fast)
    segment: int = DEFAULT_SEGMENT  # MDX-Net: STFT frames per chunk
    overlap: float = DEFAULT_OVERLAP  # MDX-Net: share of a chunk that the next one overlaps
    denoise: bool = False  # MDX-Net: the network run on the mix and its negation, averaged
    config: str | None = None  # MDX23C/RoFormer: the checkpoint's YAML config (default: the .yaml beside it)
    num_overlap: int | None = None  # MDX23C/RoFormer: chunks over each sample (default: the config's)

    def __post_init__(self) -> None:
        if self.high_end not in HIGH_END_MODES:
            raise UsageError(f"--high-end {self.high_end!r}: use {', '.join(HIGH_END_MODES)}")
        if self.primary not in (None, *PRIMARY_STEMS):
            raise UsageError(f"--primary {self.primary!r}: use vocals or instrumental")
        if not 0 <= self.agg <= 100:
            raise UsageError(f"--agg {self.agg:g}: use a value from 0 to 100 (10 is RVC's default)")
        if self.window is not None and self.window < 1:
            raise UsageError(f"--window {self.window}: use a positive number of frames")
        if not 2 <= self.segment <= 8192:
            raise UsageError(f"--segment {self.segment}: use 2 to 8192 STFT frames (256 is the default)")
        if not (0 <= self.overlap < 1) or math.isnan(self.overlap):
            raise UsageError(f"--overlap {self.overlap:g}: use a share from 0 up to (not including) 1, e.g. 0.25")
        if self.num_overlap is not None and not 1 <= self.num_overlap <= 64:
            raise UsageError(f"--num-overlap {self.num_overlap}: use 1 to 64 chunks over each sample")

    def window_for(self, fast: bool) -> int:
        """The (widest) VR window: as given, else 512, or 1536 with --fast."""
        return self.window or (FAST_WINDOW if fast else EXACT_WINDOW)


@dataclass(frozen=True)
class RuntimeOptions:
    """Where and how the networks run; these do not change which stems a model gives, only how exactly."""

    device: str = "auto"
    precision: str = "auto"
    backend: str | None = None  # None: torch, or ONNX Runtime with --fast
    fast: bool = False
    front_end: str = "auto"
    batch_size: int | None = None  # None: 1 on the CPU, 8 on a GPU
    overlap_io: bool = True  # decode ahead and encode behind in threads (io/overlap.py)

    def __post_init__(self) -> None:
        if self.backend not in (None, *BACKENDS):
            raise UsageError(f"--backend {self.backend!r}: use {' or '.join(BACKENDS)}")
        if self.fast and self.backend == "torch":
            raise UsageError("--fast runs the network in ONNX Runtime: leave out --backend torch")
        if self.front_end not in FRONT_ENDS:
            raise UsageError(f"--front-end {self.front_end!r}: use {', '.join(FRONT_ENDS)}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision {self.precision!r}: use {', '.join(PRECISIONS)}")
        if self.precision == "int8" and self.backend_name == "torch":
            raise UsageError(
                "--precision int8 runs in ONNX Runtime on the CPU: add --fast (where it is the default) or "
                "--backend onnxruntime"
            )
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError("--batch-size must be at least 1")

    @property
    def backend_name(self) -> str:
        return self.backend or ("onnxruntime" if self.fast else "torch")


def parse_rate(text: str | int) -> str | int:
    """--sample-rate: 'input', 'model' or a rate in Hz."""
    if text in ("input", "model") or isinstance(text, int) and not isinstance(text, bool):
        rate = text
    else:
        try:
            rate = int(str(text))
        except ValueError:
            raise UsageError(f"--sample-rate {text!r}: use input, model or a rate in Hz such as 44100") from None
    if isinstance(rate, int) and not 1000 <= rate <= 768000:
        raise UsageError(f"--sample-rate {rate}: use a rate between 1000 and 768000 Hz")
    return rate


@dataclass(frozen=True)
class OutputOptions:
    """What the stems are written as, and of what: the input's own rate is checked against the format per file,
    and a truncated input is refused unless `allow_truncated` (then what it holds is separated, with a warning)."""

    fmt: str = "wav"
    bit_depth: str | None = None  # None: the input's depth where the format can hold it
    sample_rate: str | int = "input"  # "input", "model" or Hz
    bitrate: str | None = None
    clip_mode: str = "clip"
    allow_truncated: bool = False

    def __post_init__(self) -> None:
        from uvr_cli.io.encode import output_subtype

        if self.fmt not in FORMATS:
            raise UsageError(f"--format {self.fmt!r}: use {', '.join(FORMATS)}")
        if self.bit_depth is not None and FORMATS[self.fmt].lossy:
            raise UsageError(f"--bit-depth applies to wav and flac; {self.fmt} has no bit depth")
        if self.clip_mode not in CLIP_MODES:
            raise UsageError(f"--clip-mode {self.clip_mode!r}: use {' or '.join(CLIP_MODES)}")
        object.__setattr__(self, "sample_rate", parse_rate(self.sample_rate))
        rate = self.sample_rate if isinstance(self.sample_rate, int) else 44100
        output_subtype(self.fmt, self.bit_depth, rate, 2, bitrate=self.bitrate)

    def rate(self, input_rate: int, model_rate: int) -> int:
        """The output rate for an input at `input_rate` and a model at `model_rate`."""
        named = {"input": input_rate, "model": model_rate}
        return named[self.sample_rate] if isinstance(self.sample_rate, str) else self.sample_rate

    def check_model_rate(self, model_rate: int) -> None:
        """With --sample-rate model, the format's checks once the model's rate is known."""
        from uvr_cli.io.encode import output_subtype

        if self.sample_rate == "model":
            output_subtype(self.fmt, self.bit_depth, model_rate, 2, bitrate=self.bitrate)


def parse_ensemble(text: str) -> dict[str, str]:
    """--ensemble -> the algorithm by stem name, "*" for every stem not named: 'avg', 'max' or 'min' for all;
    'VOCALS/INSTRUMENTAL' such as 'max/min' (the UVR GUI's pairs); or 'STEM=ALG,...' such as 'drums=max,bass=min'
    (the others avg)."""
    usage = f"--ensemble {text!r}: use avg, max, min, VOCALS/INSTRUMENTAL such as max/min, or STEM=ALG,..."
    if "=" in text:
        pairs = [part.partition("=") for part in text.split(",")]
        if any(not stem.strip() or alg not in ENSEMBLE_ALGORITHMS for stem, _, alg in pairs):
            raise UsageError(usage)
        return {"*": "avg", **{stem.strip().lower(): alg for stem, _, alg in pairs}}
    parts = text.split("/")
    if any(p not in ENSEMBLE_ALGORITHMS for p in parts) or len(parts) > 2:
        raise UsageError(usage)
    if len(parts) == 1:
        return {"*": parts[0]}
    return {"*": "avg", **dict(zip(PRIMARY_STEMS, parts))}


def algorithm_for(combine: dict[str, str], stem: str) -> str:
    """The ensemble algorithm of one stem (parse_ensemble's result)."""
    return combine.get(stem, combine.get("*", "avg"))


def parse_then(text: str) -> tuple[str, str]:
    """--then MODEL[:STEM] -> (model, the stem it splits; vocals unless named). A ':' inside a path is the path's."""
    model, colon, split = text.rpartition(":")
    if not colon or "/" in split or not model:
        return text, "vocals"
    return model, split or "vocals"


@dataclass(frozen=True)
class SeparationSettings:
    """Everything a separation needs to know, as the user gave it (None where a default applies)."""

    models: tuple[str, ...] = ()  # paths or model names; () for the bundled default
    ensemble: str = "avg"
    then: tuple[tuple[str, str], ...] = ()  # further steps: (model, the stem it splits)
    options: ModelOptions = field(default_factory=ModelOptions)
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    output: OutputOptions = field(default_factory=OutputOptions)
    given: frozenset[str] = frozenset()  # the options the user set (a warning names those that have no effect)

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(str(m) for m in self.models))
        parse_ensemble(self.ensemble)

    @classmethod
    def from_keywords(
        cls,
        model: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
        *,
        ensemble: str = "avg",
        **keywords: Any,
    ) -> SeparationSettings:
        """The Python API's settings: `model` a path or model name, a sequence of them, or None (the bundled model);
        each keyword a field of ModelOptions, RuntimeOptions or OutputOptions (the command-line option's name with
        '_' for '-', and `fmt` for --format). Paths may be os.PathLike."""
        models = () if model is None else (model,) if isinstance(model, (str, os.PathLike)) else tuple(model)
        values = {name: os.fspath(v) if isinstance(v, os.PathLike) else v for name, v in keywords.items()}
        parts: dict[str, Any] = {}
        for part, kind in (("options", ModelOptions), ("runtime", RuntimeOptions), ("output", OutputOptions)):
            names = {f.name for f in dataclasses.fields(kind)} & set(values)
            parts[part] = kind(**{name: values.pop(name) for name in names})
        if values:
            raise TypeError(f"unknown option {sorted(values)[0]!r}")
        return cls(models=tuple(os.fspath(m) for m in models), ensemble=ensemble, **parts)

    @property
    def combine(self) -> dict[str, str]:
        return parse_ensemble(self.ensemble)

    def model_paths(self) -> list[Path]:
        """The weight files of -m (the bundled model when none is given), resolved and checked to exist."""
        from uvr_cli.catalog.models import resolve_model

        return [resolve_model(m) for m in (self.models or (None,))]

    def step_paths(self) -> list[tuple[Path, str]]:
        from uvr_cli.catalog.models import resolve_model

        return [(resolve_model(model), split) for model, split in self.then]

    def replace(self, **changes: object) -> SeparationSettings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def record(self, applied: set[str] | None = None) -> dict:
        """The settings record beside each output: everything that changes the samples written. A model option
        that shapes no model of the run (`applied`, once known) is recorded as null, which any value matches."""
        from uvr_cli.catalog.registry import uvr_model_hash

        paths, steps = self.model_paths(), self.step_paths()
        o, r, out = self.options, self.runtime, self.output

        def used(name: str, value: object) -> object:
            return None if applied is not None and name not in applied else value

        return {
            "model": "+".join(uvr_model_hash(p) for p in paths),
            "ensemble": self.ensemble if len(paths) > 1 else None,
            "then": [f"{uvr_model_hash(path)}:{split}" for path, split in steps] or None,
            "fast": r.fast,
            "backend": r.backend_name,
            "params": "auto" if o.params is None else used("params", _params_key(o.params)),
            "primary": o.primary or "auto",
            "agg": used("agg", o.agg),
            "tta": used("tta", o.tta),
            "post_process": used("post_process", o.post_process),
            "high_end": used("high_end", o.high_end),
            "window": used("window", o.window_for(r.fast)),
            "segment": used("segment", o.segment),
            "overlap": used("overlap", o.overlap),
            "denoise": used("denoise", o.denoise),
            "config": used("config", _config_key(paths, o.config)),
            "num_overlap": used("num_overlap", o.num_overlap or "config"),
            "precision": r.precision,
            "front_end": r.front_end,
            "format": out.fmt,
            "bit_depth": out.bit_depth or "input",
            "sample_rate": out.sample_rate,
            "bitrate": (out.bitrate or "default") if FORMATS[out.fmt].lossy else None,
            "clip_mode": out.clip_mode,
        }


def _config_key(paths: list[Path], given: str | None) -> str:
    """The YAML configs the MSST-format models of a run read, by their contents (so an edited config redoes)."""
    from uvr_cli.catalog.model_config import find_config
    from uvr_cli.errors import ModelError

    keys = []
    for path in paths:
        try:
            config = find_config(path, given)
            keys.append(f"{config.name} (md5 {hashlib.md5(config.read_bytes()).hexdigest()})")
        except (ModelError, OSError):
            continue  # not an MSST-format model, or one loading will refuse
    return "+".join(keys) or "auto"


def _params_key(params: str | None) -> str:
    """--params as recorded beside the outputs: 'auto', a shipped name, or a file by its contents."""
    if params is None:
        return "auto"
    path = Path(params)
    if path.is_file() and (len(path.parts) > 1 or path.suffix == ".json"):
        return f"{path.name} (md5 {hashlib.md5(path.read_bytes()).hexdigest()})"
    return params
