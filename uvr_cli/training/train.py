"""`uvr train`: train a VR network on (mixture, instrumental) magnitude pairs, as tsurumeso v4 did (reference §6).

Each step draws random patches: an instrumental segment and a vocal segment (from the same song or, half of the
time, from another one), at random relative levels, mixed in the waveform domain and taken through the band pyramid
of the chosen preset. The network sees the normalised mixture magnitude and is trained with
0.8·L1(mask·X, y) + 0.1·L1(aux1·X, y) + 0.1·L1(aux2·X, y) (0.8/0.2 with the single aux output of a CascadedNet),
with channel swap, mono and instrumental-only patches, and mixup. Adam at 1e-3 with ReduceLROnPlateau on the
validation score.

Every epoch ends with a validation pass through the real separation path (`Separator`) on DATASET/validation (the
real held-out voices): its mean vocal SI-SDR picks ``best.pth``. The whole state (weights, optimiser, scheduler,
step, RNGs) is saved to ``state.pt`` every ``save_every`` steps and on SIGINT/SIGTERM, and a run in the same
folder continues from it; the file written on a GPU resumes on a CPU and back. ``best.pth`` and ``last.pth`` are
plain fp16 state dicts, loadable by `uvr separate -m` like any UVR5 file.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F

from uvr_cli.engine.analysis import analyse
from uvr_cli.engine.device import precision_context, resolve_device
from uvr_cli.errors import UsageError
from uvr_cli.training.evaluate import evaluate, find_clips, separator_estimator, weighted_means
from uvr_cli.engine.nets import AsppNetSpec, CascadedNetSpec, MaskNetwork, build_network
from uvr_cli.catalog.presets import BandPreset, load_preset


@dataclass
class TrainConfig:
    """Everything that defines a run; stored in state.pt so that a resumed run uses the same settings."""

    dataset: str
    out: str
    preset: str = "4band_v2"
    arch: str = "aspp"  # "aspp" (CascadedASPPNet) or "cascaded" (v5.1 CascadedNet)
    ch: int = 16  # ASPP width (16/32/64), or CascadedNet nout
    batch: int = 4
    cropsize: int = 256  # frames per patch; a multiple of 16
    lr: float = 1e-3
    min_lr: float = 1e-4
    epoch_steps: int = 100
    max_steps: int = 0  # 0: no limit
    max_minutes: float = 0.0  # 0: no limit
    save_every: int = 20
    mixup_rate: float = 0.25
    other_vocal_rate: float = 0.5  # a vocal from another song than the instrumental
    inst_only_rate: float = 0.05
    vocal_gain_db: tuple[float, float] = (-9.0, 6.0)
    precision: str = "auto"  # auto: bf16 autocast; fp32
    device: str = "auto"
    seed: int = 0
    validate: bool = True
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Song:
    """One training song: its stem files and length in samples."""

    instruments: Path
    vocals: Path | None  # None: vocals = mixture - instruments
    mixture: Path
    frames: int


def find_songs(folder: Path) -> list[Song]:
    """Pairs in ``folder/{mixtures,instruments}`` (and ``vocals``) matched by file name stem."""
    from uvr_cli.training.evaluate import _by_stem

    if not (folder / "mixtures").is_dir() or not (folder / "instruments").is_dir():
        raise UsageError(f"{folder}: needs mixtures/ and instruments/ folders (uvr dataset synth writes them)")
    mix, inst = _by_stem(folder / "mixtures"), _by_stem(folder / "instruments")
    voc = _by_stem(folder / "vocals") if (folder / "vocals").is_dir() else {}
    songs = []
    for name in sorted(set(mix) & set(inst)):
        info = sf.info(str(inst[name]))
        if info.samplerate != sf.info(str(mix[name])).samplerate:
            raise UsageError(f"{mix[name]}: its rate differs from {inst[name]}")
        songs.append(Song(inst[name], voc.get(name), mix[name], info.frames))
    if not songs:
        raise UsageError(f"{folder}: no mixture/instrumental pairs")
    return songs


class PatchSampler:
    """Random (mixture, instrumental) magnitude patches, built from the stems at random levels."""

    def __init__(self, songs: list[Song], preset: BandPreset, cfg: TrainConfig, rng: np.random.Generator) -> None:
        self.songs, self.preset, self.cfg, self.rng = songs, preset, cfg, rng
        self.samples = (cfg.cropsize - 1) * preset.top.hl
        self._rate_checked = False

    def _read(self, path: Path, start: int) -> np.ndarray:
        data, rate = sf.read(str(path), start=start, frames=self.samples, dtype="float32", always_2d=True)
        if rate != self.preset.sr:
            raise UsageError(f"{path}: {rate} Hz, but preset {self.preset.name} runs at {self.preset.sr} Hz")
        data = np.repeat(data, 2, axis=1) if data.shape[1] == 1 else data[:, :2]
        return spectral_fit(data.T, self.samples)

    def _segment(self, song: Song, vocals: bool) -> np.ndarray:
        start = int(self.rng.integers(0, max(1, song.frames - self.samples)))
        if not vocals:
            return self._read(song.instruments, start)
        if song.vocals is not None:
            return self._read(song.vocals, start)
        return self._read(song.mixture, start) - self._read(song.instruments, start)

    def pair(self) -> tuple[np.ndarray, np.ndarray]:
        """One normalised (X, y) magnitude pair, each (2, bins+1, cropsize)."""
        cfg, rng = self.cfg, self.rng
        i = int(rng.integers(len(self.songs)))
        inst = self._segment(self.songs[i], vocals=False)
        j = int(rng.integers(len(self.songs))) if rng.random() < cfg.other_vocal_rate else i
        voc = self._segment(self.songs[j], vocals=True) * 10 ** (rng.uniform(*cfg.vocal_gain_db) / 20)
        if rng.random() < cfg.inst_only_rate:
            voc[:] = 0
        if rng.random() < 0.5:
            inst, voc = inst[::-1], voc[::-1]
        if rng.random() < 0.02:
            inst, voc = np.repeat(inst.mean(0, keepdims=True), 2, 0), np.repeat(voc.mean(0, keepdims=True), 2, 0)
        y_spec = analyse(inst.T, self.preset.sr, self.preset).spec  # the separation's own analysis
        x_spec = y_spec + analyse(voc.T, self.preset.sr, self.preset).spec
        x, y = np.abs(x_spec), np.abs(y_spec)
        coef = max(float(x.max()), float(y.max()), 1e-8)
        return x / coef, y / coef

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [self.pair() for _ in range(self.cfg.batch)]
        x = np.stack([p[0] for p in pairs])
        y = np.stack([p[1] for p in pairs])
        if self.cfg.mixup_rate > 0:
            for k in range(len(x)):
                if self.rng.random() < self.cfg.mixup_rate:
                    lam = self.rng.beta(1.0, 1.0)
                    other = (k + 1) % len(x)
                    x[k] = lam * x[k] + (1 - lam) * x[other]
                    y[k] = lam * y[k] + (1 - lam) * y[other]
        return torch.from_numpy(x), torch.from_numpy(y)


def spectral_fit(wave: np.ndarray, length: int) -> np.ndarray:
    """Zero-pad a (2, n) segment that ran past the end of its file."""
    if wave.shape[-1] >= length:
        return wave[:, :length]
    return np.pad(wave, ((0, 0), (0, length - wave.shape[-1])))


def make_network(cfg: TrainConfig, preset: BandPreset) -> MaskNetwork:
    if cfg.arch == "aspp":
        spec = AsppNetSpec(ch=cfg.ch, branches=5)
    elif cfg.arch == "cascaded":
        spec = CascadedNetSpec(nout=cfg.ch, nout_lstm=128)
    else:
        raise UsageError(f"--arch {cfg.arch!r}: use aspp or cascaded")
    return build_network(spec, preset.bins)


def loss_fn(outputs: tuple[torch.Tensor, ...], y: torch.Tensor) -> torch.Tensor:
    """Reference §6: 0.8 on the final masked mixture, the rest spread over the auxiliary outputs."""
    main, aux = outputs[0], outputs[1:]
    loss = 0.8 * F.l1_loss(main.float(), y)
    for a in aux:
        loss = loss + (0.2 / len(aux)) * F.l1_loss(a.float(), y)
    return loss


def autocast(cfg: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    if cfg.precision not in ("auto", "bf16", "fp32"):
        raise UsageError(f"--precision {cfg.precision!r}: use auto, bf16 or fp32")
    return precision_context(device, torch.float32 if cfg.precision == "fp32" else torch.bfloat16)


def fp16_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A plain state dict as UVR stores its fp16 models (integer buffers kept as they are)."""
    return {k: (v.detach().half() if v.is_floating_point() else v.detach()).cpu().contiguous()
            for k, v in model.state_dict().items()}


def save_atomic(obj: object, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def validate(weights: Path, cfg: TrainConfig, device: torch.device) -> dict[str, float]:
    """Means over DATASET/validation through the real separation path (`uvr separate`'s defaults, agg 10)."""
    from uvr_cli.separator import Separator

    folder = Path(cfg.dataset) / "validation"
    if not folder.is_dir():
        return {}
    precision = "bf16" if cfg.precision != "fp32" and device.type == "cpu" else "auto"
    sep = Separator(weights, params=cfg.preset, primary="instrumental", device=str(device), precision=precision)
    return weighted_means(evaluate(find_clips(folder), separator_estimator(sep)))


class StopRequested(Exception):
    """Raised inside the loop after SIGINT/SIGTERM once the state is saved."""


def train(cfg: TrainConfig, log: Callable[[str], None] = print, progress: bool = True) -> dict:
    """Run (or continue) training; returns the last log record."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "state.pt"
    device = resolve_device(cfg.device)
    resumed = None
    if state_path.is_file():
        resumed = torch.load(state_path, map_location="cpu", weights_only=False)
        keep = {k: v for k, v in asdict(cfg).items() if k in ("max_steps", "max_minutes", "device", "validate", "save_every")}
        cfg = TrainConfig(**{**resumed["config"], **keep})
        log(f"resuming {out} at step {resumed['step']} (epoch {resumed['epoch']})")
    if cfg.cropsize % 16:
        raise UsageError(f"--cropsize {cfg.cropsize} must be a multiple of 16")
    preset = load_preset(cfg.preset)
    songs = find_songs(Path(cfg.dataset) / "train")
    model = make_network(cfg, preset).to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.9, patience=6,
                                                           threshold=1e-6, min_lr=cfg.min_lr)
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    step, epoch, best, history = 0, 0, -math.inf, []
    if resumed:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        step, epoch, best, history = resumed["step"], resumed["epoch"], resumed["best"], resumed["history"]
        rng.bit_generator.state = resumed["numpy_rng"]
        torch.set_rng_state(resumed["torch_rng"])
        random.setstate(resumed["python_rng"])
    sampler = PatchSampler(songs, preset, cfg, rng)

    def save_state() -> None:
        save_atomic({"config": asdict(cfg), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "step": step, "epoch": epoch, "best": best,
                     "history": history, "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                     "python_rng": random.getstate()}, state_path)

    stop = {"signal": 0}

    def on_signal(signum: int, frame: object) -> None:
        stop["signal"] = signum

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.max_steps or None, initial=step, unit="step", file=sys.stderr, dynamic_ncols=True)
    started, first = time.monotonic(), step
    record: dict = history[-1] if history else {}
    try:
        model.train()
        losses: list[float] = []
        while True:
            if cfg.max_steps and step >= cfg.max_steps:
                break
            if cfg.max_minutes and time.monotonic() - started > cfg.max_minutes * 60:
                break
            x, y = sampler.batch()
            x, y = x.to(device), y.to(device)
            if device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(cfg, device):
                outputs = model(x)
            loss = loss_fn(outputs, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            losses.append(loss.item())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.5f}", epoch=epoch, lr=optimizer.param_groups[0]["lr"])
            elif step % 10 == 0:
                log(f"step {step} loss {np.mean(losses[-10:]):.5f} ({(time.monotonic() - started) / (step - first):.1f} s/step)")
            if step % cfg.epoch_steps == 0:
                epoch += 1
                record = end_epoch(model, cfg, device, out, step, epoch, float(np.mean(losses)), best)
                losses = []
                if "val_si_sdr" in record:
                    scheduler.step(record["val_si_sdr"])
                    best = max(best, record["val_si_sdr"])
                history.append(record)
                with (out / "log.jsonl").open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(record) + "\n")
                log(json.dumps(record))
                model.train()
            if step % cfg.save_every == 0:
                save_state()
            if stop["signal"]:
                raise StopRequested
    except StopRequested:
        log(f"signal {stop['signal']}: state saved at step {step}; run the same command to continue")
    finally:
        if bar is not None:
            bar.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    save_state()
    torch.save(fp16_state_dict(model), out / "last.pth")
    if not (out / "best.pth").exists():
        torch.save(fp16_state_dict(model), out / "best.pth")
    return {**record, "step": step, "stopped_by_signal": stop["signal"]}


def end_epoch(model: MaskNetwork, cfg: TrainConfig, device: torch.device, out: Path, step: int, epoch: int,
              train_loss: float, best: float) -> dict:
    """Write last.pth, validate it, and copy it to best.pth when its validation SI-SDR is the best so far."""
    model.eval()
    last = out / "last.pth"
    save_atomic(fp16_state_dict(model), last)
    record: dict = {"epoch": epoch, "step": step, "train_loss": train_loss, "time": time.strftime("%H:%M:%S")}
    if cfg.validate:
        means = validate(last, cfg, device)
        if means:
            record.update(val_si_sdr=means["si_sdr"], val_sdr=means["sdr"], val_energy=means["energy_ratio"])
            if means["si_sdr"] > best:
                save_atomic(fp16_state_dict(model), out / "best.pth")
                record["best"] = True
    return record
