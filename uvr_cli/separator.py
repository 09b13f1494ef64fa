"""`Separator`: the one path from audio to stems that the CLI and Python scripts share."""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from uvr_cli.engine import spectral
from uvr_cli.io.audio import output_subtype, read_audio, write_audio
from uvr_cli.engine.checkpoint import load_network
from uvr_cli.errors import AudioError, ModelError, UsageError
from uvr_cli.engine.inference import count_windows, mask_silence, predict_mask, prepare_for_inference
from uvr_cli.engine.malloc import map_large_allocations, reuse_freed_memory
from uvr_cli.engine.nets import Aggressiveness, CascadedNetSpec
from uvr_cli.catalog.presets import BandPreset, load_preset, params_hint, presets_with_bins
from uvr_cli.catalog.registry import ModelIdentity, identify
from uvr_cli.engine.resample import resample

STEMS = ("vocals", "instrumental")
HIGH_END_MODES = ("mirroring", "mirroring2", "none")
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Resampler for output written at the input's rate when the model runs at another one (the GUI uses kaiser_best too).
OUTPUT_RESAMPLER = "kaiser_best"


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA, then Apple's MPS, then the CPU; anything else is passed to torch, checked."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise UsageError(f"--device {device!r} is not a device (use auto, cpu, cuda, cuda:N or mps)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: this machine has no usable CUDA GPU")
    if resolved.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError(f"--device {device}: Apple MPS is not available here")
    return resolved


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """'auto' is exact fp32 on the CPU and fp16 on a GPU (as RVC runs its models there)."""
    if precision == "auto":
        return torch.float32 if device.type == "cpu" else torch.float16
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r}: use auto, fp32, fp16 or bf16")
    if device.type == "cpu" and precision == "fp16":
        raise UsageError("--precision fp16 needs a GPU; on the CPU use bf16 or fp32")
    return PRECISIONS[precision]


def configure_gpu_math(device: torch.device, dtype: torch.dtype) -> None:
    """fp32 on CUDA stays true fp32, and cuDNN's autotuner stays off.

    PyTorch lets cuDNN convolutions run in TF32 (10-bit mantissa) by default, which would make `--precision fp32`
    on a GPU no more exact than fp16; the fast GPU modes are fp16 and bf16, asked for by name. The autotuner
    (cudnn.benchmark) times every algorithm for each new input shape, and a song has few shapes and few batches:
    on an H100 (2026-11-26, ch32, 60 s song) the first batch of each shape took 17 and 31 s in fp32 (3.5 and 3.3 s
    in fp16) against 0.12 s (0.04 s) once tuned, 48 s of a 53 s run; untuned first calls took 0.3-1 s. PyTorch
    leaves it off, and so do we.
    """
    if device.type != "cuda":
        return
    exact = dtype == torch.float32
    torch.backends.cudnn.allow_tf32 = not exact
    torch.backends.cuda.matmul.allow_tf32 = not exact


def to_stereo(audio: np.ndarray) -> np.ndarray:
    """(frames, channels) -> (2, frames) float32 for the network.

    Mono is duplicated (as the reference does). More than two channels are downmixed: 5.1 (6 channels, WAV order
    FL FR FC LFE BL BR) with ITU-R BS.775 gains (centre and surrounds at -3 dB, LFE dropped); any other layout keeps
    channels 0 and 1 as left and right and adds the rest to both at -3 dB.
    """
    channels = audio.shape[1]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(audio.T, 2, axis=0), dtype=np.float32)
    if channels == 2:
        return np.ascontiguousarray(audio.T, dtype=np.float32)
    g = np.float32(1 / np.sqrt(2))
    if channels == 6:
        left = audio[:, 0] + g * audio[:, 2] + g * audio[:, 4]
        right = audio[:, 1] + g * audio[:, 2] + g * audio[:, 5]
    else:
        rest = audio[:, 2:].sum(axis=1) * g
        left, right = audio[:, 0] + rest, audio[:, 1] + rest
    return np.ascontiguousarray(np.stack([left, right]), dtype=np.float32)


@dataclass(frozen=True)
class ModelInfo:
    """What was loaded, for reports: the file, the architecture, the preset and the stem labels."""

    path: Path
    spec: object
    preset: str
    identity: ModelIdentity
    primary: str  # "vocals" or "instrumental": which of our stems is mask * mix


class Separator:
    """Load a UVR5 VR model once and separate any number of songs with it.

    >>> sep = Separator(model="HP2_all_vocals.pth", agg=10)
    >>> stems = sep.separate(audio, 44100)   # {"vocals": (frames, ch), "instrumental": (frames, ch)}
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        params: str | os.PathLike | None = None,
        agg: float = 10,
        tta: bool = False,
        high_end: str = "mirroring",
        post_process: bool = False,
        primary: str | None = None,
        window: int = 512,
        batch_size: int | None = None,
        device: str = "auto",
        precision: str = "auto",
    ) -> None:
        if high_end not in HIGH_END_MODES:
            raise UsageError(f"--high-end {high_end!r}: use {', '.join(HIGH_END_MODES)}")
        if primary not in (None, *STEMS):
            raise UsageError(f"--primary {primary!r}: use vocals or instrumental")
        if batch_size is not None and batch_size < 1:
            raise UsageError("--batch-size must be at least 1")
        if not 0 <= agg <= 100:
            raise UsageError(f"--agg {agg}: use a value from 0 to 100 (10 is RVC's default)")
        self.agg, self.tta, self.high_end, self.post_process = agg, tta, high_end, post_process
        self.device = resolve_device(device)
        # One window at a time on the CPU: batching gains nothing there and multiplies the activation memory
        # (a ch32 net at 672 bins holds ~0.5 GB per window); GPUs want batches.
        self.batch_size = batch_size or (1 if self.device.type == "cpu" else 8)
        self.dtype = resolve_precision(precision, self.device)
        configure_gpu_math(self.device, self.dtype)
        map_large_allocations()  # before the weights: their temporaries would stay resident otherwise
        path = resolve_model_path(model)
        loaded, identity, preset = _load(path, params)
        if window <= 2 * loaded.module.offset:
            raise UsageError(f"--window {window} must exceed twice the model's context ({2 * loaded.module.offset})")
        if window % 2**loaded.module.depth:
            raise UsageError(f"--window {window} must be a multiple of {2**loaded.module.depth} for this network")
        self.window = window
        self.preset: BandPreset = preset
        self.model = prepare_for_inference(loaded.module, self.device)
        reuse_freed_memory()
        label = primary or ("vocals" if identity.primary_is_vocals else "instrumental")
        self.info = ModelInfo(path=path, spec=loaded.spec, preset=preset.name, identity=identity, primary=label)

    @property
    def model_sample_rate(self) -> int:
        return self.preset.sr

    def _aggressiveness(self) -> Aggressiveness:
        return Aggressiveness(value=self.agg / 100, split_bin=self.preset.split_bin)

    def separate(
        self,
        audio: np.ndarray,
        sample_rate: int,
        *,
        stems: Sequence[str] = STEMS,
        output_rate: int | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, np.ndarray]:
        """Separate `audio` (frames,) or (frames, channels) at `sample_rate` into the requested stems.

        Returns float32 arrays (frames, channels) at `output_rate` (default: the input's rate), as long as the input
        (rounded up at another rate); mono input gives mono stems. `on_progress(done, total)` counts network windows.
        """
        unknown = set(stems) - set(STEMS)
        if unknown or not stems:
            raise UsageError(f"stems must be among {STEMS}, got {sorted(stems)}")
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim == 1:
            audio = audio[:, None]
        if audio.ndim != 2 or audio.shape[0] == 0:
            raise UsageError("audio must have shape (frames,) or (frames, channels) with at least one frame")
        output_rate = output_rate or sample_rate
        channels = 1 if audio.shape[1] == 1 else 2
        wave = np.nan_to_num(to_stereo(audio), nan=0.0, posinf=0.0, neginf=0.0)
        analysis = spectral.analyse(wave, sample_rate, self.preset, keep_high_end=self.high_end != "none")
        spec = analysis.spec
        magnitude = np.abs(spec)
        coef = float(magnitude.max())
        if coef > 0:
            total = count_windows(spec.shape[-1], self.window, self.model.offset, self.tta)
            done = 0

            def step(n: int) -> None:
                nonlocal done
                done += n
                if on_progress:
                    on_progress(done, total)

            mask = predict_mask(
                self.model, magnitude / coef, window=self.window, aggressiveness=self._aggressiveness(),
                tta=self.tta, batch_size=self.batch_size, device=self.device, dtype=self.dtype, on_window=step,
            )
        else:
            mask = np.zeros_like(magnitude)
        if self.post_process:
            pred = mask * magnitude
            pred = mask_silence(pred, np.clip(magnitude - pred, 0, np.inf))
            primary = pred * np.exp(1.0j * np.angle(spec)).astype(np.complex64)
        else:
            primary = mask * spec
        n_frames = spec.shape[-1]
        first = max(0, n_frames - spectral.TAIL_CONTEXT_FRAMES)
        tail_spec = np.concatenate([spec[:, :, first:], analysis.extra], axis=-1)
        tail_primary = np.concatenate([primary[:, :, first:], mask[:, :, -1:] * analysis.extra], axis=-1)
        tail_high_end = None
        if analysis.high_end is not None:
            tail_high_end = np.concatenate([analysis.high_end[:, :, first:], analysis.extra_high_end], axis=-1)
        by_label = {self.info.primary: (primary, tail_primary)}
        secondary = next(s for s in STEMS if s != self.info.primary)
        if secondary in stems:
            by_label[secondary] = (spec - primary, tail_spec - tail_primary)
        out_length = resampled_len(audio.shape[0], sample_rate, output_rate)
        result = {}
        for stem in stems:
            stem_spec, stem_tail = by_label[stem]
            high_end = tail_high_end_stem = None
            if analysis.high_end is not None:
                high_end = mirror(self.high_end, stem_spec, analysis.high_end, self.preset)
                tail_high_end_stem = mirror(self.high_end, stem_tail, tail_high_end, self.preset)
            wave_out = spectral.synthesise(stem_spec, self.preset, high_end)
            tail = spectral.synthesise_tail(stem_tail, tail_high_end_stem, self.preset, first, n_frames,
                                            analysis.top_length)
            wave_out = fit_length(np.concatenate([wave_out, tail], axis=-1), analysis.top_length)
            if output_rate != self.preset.sr:
                wave_out = resample(wave_out, self.preset.sr, output_rate, OUTPUT_RESAMPLER)
            wave_out = fit_length(wave_out, out_length)
            result[stem] = np.ascontiguousarray(wave_out[:channels].T, dtype=np.float32)
        return result

    def separate_file(
        self,
        source: str,
        outputs: dict[str, str],
        *,
        fmt: str = "wav",
        bit_depth: str | None = None,
        sample_rate: str | int = "input",
        skip_existing: bool = True,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> FileResult:
        """Decode `source` ('-' = stdin), separate it and write each stem to its path in `outputs` ('-' = stdout).

        Files are written atomically. With `skip_existing`, an input whose outputs all exist is not processed.
        Raises UvrError (one-line message naming the file) on failure.
        """
        if fmt not in OUTPUT_DEPTHS:
            raise UsageError(f"--format {fmt!r}: use {', '.join(OUTPUT_DEPTHS)}")
        if bit_depth is not None and bit_depth not in OUTPUT_DEPTHS[fmt]:
            raise UsageError(f"--bit-depth {bit_depth} is not possible with --format {fmt}")
        start = time.perf_counter()
        files = [p for p in outputs.values() if p != "-"]
        if skip_existing and files and len(files) == len(outputs) and all(Path(p).exists() for p in files):
            return FileResult(input=source, status="skipped", outputs=dict(outputs), wall_s=time.perf_counter() - start)
        from uvr_cli.engine import streaming  # a long file from disk to disk goes in blocks (same result, bounded memory)

        streamed = streaming.separate_file(self, source, outputs, fmt=fmt, bit_depth=bit_depth,
                                           sample_rate=sample_rate, on_progress=on_progress)
        if streamed is not None:
            return streamed
        audio = read_audio(source)
        result = FileResult(input=source, status="ok", duration_s=audio.samples.shape[0] / audio.sample_rate)
        if audio.nonfinite_replaced:
            result.warnings.append(f"{audio.nonfinite_replaced} NaN/Inf input samples were replaced by silence")
        if audio.samples.shape[1] > 2:
            result.warnings.append(f"{audio.samples.shape[1]} channels were downmixed to stereo")
        rate = {"input": audio.sample_rate, "model": self.preset.sr}.get(sample_rate, sample_rate)
        if not isinstance(rate, int) or rate <= 0:
            raise UsageError(f"--sample-rate {sample_rate!r}: use input, model or a rate in Hz")
        depth = bit_depth if bit_depth is not None else default_bit_depth(fmt, audio.subtype)
        try:  # before the separation: e.g. mp3 cannot store this input's rate
            output_subtype(fmt, depth, rate, min(audio.samples.shape[1], 2))
        except UsageError as exc:
            raise AudioError(f"{'<stdin>' if source == '-' else source}: {exc}") from None
        stems = self.separate(audio.samples, audio.sample_rate, stems=list(outputs), output_rate=rate,
                              on_progress=on_progress)
        for stem, dest in outputs.items():
            report = write_audio(dest, stems[stem], rate, fmt, depth)
            result.outputs[stem] = dest
            if report.clipped_samples:
                result.clipped_samples[stem] = report.clipped_samples
                result.warnings.append(f"{stem}: {report.clipped_samples} samples beyond full scale were clipped")
        result.wall_s = time.perf_counter() - start
        return result


@dataclass
class FileResult:
    """The outcome of one input, as the CLI reports it (one JSON object per input with --json)."""

    input: str
    status: str  # "ok" or "skipped"
    outputs: dict[str, str] = field(default_factory=dict)
    duration_s: float | None = None
    wall_s: float = 0.0
    clipped_samples: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def realtime_factor(self) -> float | None:
        """Wall time over audio duration (below 1 is faster than real time)."""
        return self.wall_s / self.duration_s if self.duration_s else None


OUTPUT_DEPTHS = {"wav": ("16", "24", "32f"), "flac": ("16", "24"), "ogg": (None,), "mp3": (None,)}


def default_bit_depth(fmt: str, input_subtype: str | None) -> str | None:
    """The input's bit depth where the output format can hold it, else the nearest the format allows."""
    allowed = OUTPUT_DEPTHS[fmt]
    if allowed == (None,):
        return None
    wanted = {"PCM_24": "24", "PCM_32": "32f", "FLOAT": "32f", "DOUBLE": "32f"}.get(input_subtype or "", "16")
    if wanted in allowed:
        return wanted
    return "24" if wanted == "32f" else "16"


def mirror(mode: str, spec: np.ndarray, high_end: np.ndarray, preset: BandPreset) -> np.ndarray:
    """High-end processing of one stem's spectrogram ('mirroring' or 'mirroring2', reference §3.6)."""
    if mode == "mirroring":
        return spectral.mirror_high_end(spec, high_end, preset)
    return spectral.mirror_high_end_2(spec, high_end, preset)


def resampled_len(n: int, orig_sr: int, target_sr: int) -> int:
    return n if orig_sr == target_sr else int(np.ceil(n * target_sr / orig_sr))


def fit_length(wave: np.ndarray, length: int) -> np.ndarray:
    """Zero-pad or trim (channels, n) to `length`."""
    if wave.shape[-1] >= length:
        return wave[:, :length]
    return np.pad(wave, ((0, 0), (0, length - wave.shape[-1])))


def resolve_model_path(model: str | os.PathLike | None) -> Path:
    """A path to a weight file: a path, a catalogue or cache name (`uvr models`), or the bundled default for None."""
    from uvr_cli.catalog.models import resolve_model

    return resolve_model(model)


def _load(path: Path, params: str | os.PathLike | None):
    """Read the weights, recognise the file, pick the preset, build the network."""
    from uvr_cli.engine.checkpoint import detect_spec, read_state_dict

    state = read_state_dict(path)
    try:
        spec = detect_spec(state)
    except ModelError as exc:  # its message does not know the file: name it, as every other refusal does
        raise ModelError(f"{path}: {exc}") from None
    is_cascaded = isinstance(spec, CascadedNetSpec)
    identity = identify(path, is_cascaded, spec.bins if is_cascaded else None)
    preset_name = params if params is not None else identity.params
    if preset_name is None:
        raise ModelError(
            f"{path.name}: unknown weight file, cannot tell which band preset it was trained with; "
            f"pass --params NAME ({params_hint(spec.bins if is_cascaded else None)}) or a preset JSON path"
        )
    preset = load_preset(preset_name)
    if is_cascaded and spec.bins is not None and spec.bins != preset.bins:
        raise ModelError(f"{path.name}: the weights need a preset with {spec.bins} bins, but {preset.name} has "
                         f"{preset.bins}; presets with {spec.bins}: {', '.join(presets_with_bins(spec.bins)) or 'none'}")
    loaded = load_network(path, preset.bins, state=state, spec=spec)
    return loaded, identity, preset
