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
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from uvr_cli.atomic import atomic_file
from uvr_cli.catalog.presets import BandPreset, load_preset
from uvr_cli.engine.device import NO_CPU_BF16, cpu_bf16_supported, precision_context, resolve_device
from uvr_cli.engine.families.vr.nets import AsppNetSpec, CascadedNetSpec, MaskNetwork, NetworkSpec, build_network
from uvr_cli.errors import UsageError
from uvr_cli.training.config import TrainConfig
from uvr_cli.training.evaluate import evaluate, find_clips, separator_estimator, weighted_means
from uvr_cli.training.patches import PatchSampler, find_songs


def network_spec(arch: str, ch: int) -> NetworkSpec:
    """The capacity `--arch`/`--ch` name: a 5-branch CascadedASPPNet, or a CascadedNet with a 128-unit LSTM."""
    if arch == "aspp":
        return AsppNetSpec(ch=ch, branches=5)
    if arch == "cascaded":
        return CascadedNetSpec(nout=ch, nout_lstm=128)
    raise UsageError(f"--arch {arch!r}: use aspp or cascaded")


def make_network(cfg: TrainConfig, preset: BandPreset) -> MaskNetwork:
    """The network `cfg.arch` asks for, sized for the preset's bins."""
    return build_network(network_spec(cfg.arch, cfg.ch), preset.bins)


def initial_weights(cfg: TrainConfig, preset: BandPreset, log: Callable[[str], None]) -> tuple[TrainConfig, dict]:
    """For `--init FILE`: the file's weights, and `cfg` with the architecture they are (which --arch/--ch yield)."""
    from uvr_cli.engine.families.vr.checkpoint import load_network

    assert cfg.init is not None
    loaded = load_network(cfg.init, preset.bins)
    spec = loaded.spec
    arch, ch = ("aspp", spec.ch) if isinstance(spec, AsppNetSpec) else ("cascaded", spec.nout)
    buildable = network_spec(arch, ch)
    comparable = replace(spec, bins=None) if isinstance(spec, CascadedNetSpec) else spec
    if comparable != buildable:
        raise UsageError(
            f"--init {cfg.init}: a {spec}; uvr train builds {buildable.__class__.__name__}s like {buildable}"
        )
    log(f"starting from {cfg.init}: {spec}, preset {preset.name}")
    return replace(cfg, arch=arch, ch=ch), loaded.module.state_dict()


def loss_fn(outputs: tuple[torch.Tensor, ...], y: torch.Tensor) -> torch.Tensor:
    """Reference §6: 0.8 on the final masked mixture, the rest spread over the auxiliary outputs."""
    main, aux = outputs[0], outputs[1:]
    loss = 0.8 * F.l1_loss(main.float(), y)
    for a in aux:
        loss = loss + (0.2 / len(aux)) * F.l1_loss(a.float(), y)
    return loss


def uses_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    """'auto' is bf16 where it is fast: a GPU, or a CPU with oneDNN bf16 kernels; fp32 elsewhere."""
    if cfg.precision not in ("auto", "bf16", "fp32"):
        raise UsageError(f"--precision {cfg.precision!r}: use auto, bf16 or fp32")
    fast_bf16 = device.type != "cpu" or cpu_bf16_supported()
    if cfg.precision == "bf16" and not fast_bf16:
        raise UsageError(f"--precision bf16: {NO_CPU_BF16}")
    return cfg.precision == "bf16" or (cfg.precision == "auto" and fast_bf16)


def autocast(cfg: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    return precision_context(device, torch.bfloat16 if uses_bf16(cfg, device) else torch.float32)


def fp16_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A plain state dict as UVR stores its fp16 models (integer buffers kept as they are)."""
    return {
        k: (v.detach().half() if v.is_floating_point() else v.detach()).cpu().contiguous()
        for k, v in model.state_dict().items()
    }


def save_atomic(obj: object, path: Path) -> None:
    with atomic_file(path) as tmp:
        torch.save(obj, tmp)


def validate(weights: Path, cfg: TrainConfig, device: torch.device) -> dict[str, float]:
    """Means over DATASET/validation through the real separation path (`uvr separate`'s defaults, agg 10)."""
    from uvr_cli.separator import Separator

    folder = Path(cfg.dataset) / "validation"
    if not folder.is_dir():
        return {}
    precision = "bf16" if device.type == "cpu" and uses_bf16(cfg, device) else "auto"
    sep = Separator(weights, params=cfg.preset, primary="instrumental", device=str(device), precision=precision)
    return weighted_means(evaluate(find_clips(folder), separator_estimator(sep)))


class StopRequested(Exception):
    """Raised inside the loop after SIGINT/SIGTERM once the state is saved."""


@dataclass
class TrainingRun:
    """A run's model, optimiser, scheduler, sampler and counters: everything state.pt holds."""

    cfg: TrainConfig
    out: Path
    device: torch.device
    model: MaskNetwork
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau
    rng: np.random.Generator
    sampler: PatchSampler
    step: int = 0
    epoch: int = 0
    best: float = -math.inf
    history: list[dict] = field(default_factory=list)

    def save_state(self) -> None:
        """Write OUT/state.pt, from which a later run in the same folder continues."""
        save_atomic(
            {
                "config": asdict(self.cfg),
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "step": self.step,
                "epoch": self.epoch,
                "best": self.best,
                "history": self.history,
                "numpy_rng": self.rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "python_rng": random.getstate(),
            },
            self.out / "state.pt",
        )

    def load_state(self, saved: dict) -> None:
        """Continue from a state.pt (as `save_state` wrote it): weights, optimiser, counters and RNGs."""
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.step, self.epoch, self.best, self.history = saved["step"], saved["epoch"], saved["best"], saved["history"]
        self.rng.bit_generator.state = saved["numpy_rng"]
        torch.set_rng_state(saved["torch_rng"])
        random.setstate(saved["python_rng"])

    def train_step(self) -> float:
        """One optimiser step on a fresh batch; returns its loss."""
        x, y = self.sampler.batch()
        x, y = x.to(self.device), y.to(self.device)
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.cfg, self.device):
            outputs = self.model(x)
        loss = loss_fn(outputs, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return loss.item()

    def finish_epoch(self, losses: list[float], log: Callable[[str], None]) -> None:
        """Validate (`end_epoch`), step the scheduler on the score, and log the record to log.jsonl and `log`."""
        self.epoch += 1
        record = end_epoch(
            self.model, self.cfg, self.device, self.out, self.step, self.epoch, float(np.mean(losses)), self.best
        )
        if "val_si_sdr" in record:
            self.scheduler.step(record["val_si_sdr"])
            self.best = max(self.best, record["val_si_sdr"])
        self.history.append(record)
        with (self.out / "log.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        log(json.dumps(record))
        self.model.train()


def _resume(cfg: TrainConfig, state_path: Path, log: Callable[[str], None]) -> tuple[TrainConfig, dict | None]:
    """The saved state of an earlier run in the same folder, and its config with this run's limits and device."""
    if not state_path.is_file():
        return cfg, None
    saved = torch.load(state_path, map_location="cpu", weights_only=False)
    per_run = ("max_steps", "max_minutes", "device", "validate", "save_every")  # what a resumed run may change
    keep = {k: v for k, v in asdict(cfg).items() if k in per_run}
    log(f"resuming {state_path.parent} at step {saved['step']} (epoch {saved['epoch']})")
    return TrainConfig(**{**saved["config"], **keep}), saved


def set_up(cfg: TrainConfig, log: Callable[[str], None]) -> TrainingRun:
    """A new run from `cfg`, or the one saved in its output folder, continued."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    cfg, saved = _resume(cfg, out / "state.pt", log)
    if cfg.cropsize % 16:
        raise UsageError(f"--cropsize {cfg.cropsize} must be a multiple of 16")
    preset = load_preset(cfg.preset)
    songs = find_songs(Path(cfg.dataset) / "train")
    start = None
    if cfg.init and saved is None:
        cfg, start = initial_weights(cfg, preset, log)
    torch.manual_seed(cfg.seed)  # before the network is built: the same --seed gives the same starting weights
    random.seed(cfg.seed)
    model = make_network(cfg, preset)
    if start is not None:
        model.load_state_dict(start)
    model = model.to(device)
    if device.type == "cpu":
        # Module.to takes memory_format (torch._C._nn._parse_to), but torch's overloads of it leave the keyword out
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=0.9, patience=6, threshold=1e-6, min_lr=cfg.min_lr
    )
    rng = np.random.default_rng(cfg.seed)
    run = TrainingRun(cfg, out, device, model, optimizer, scheduler, rng, PatchSampler(songs, preset, cfg, rng))
    if saved:
        run.load_state(saved)
    return run


class Progress:
    """A tqdm bar, or without one a log line every 10 steps; it also times the run for --max-minutes."""

    def __init__(self, run: TrainingRun, log: Callable[[str], None], bar: bool) -> None:
        self.log, self.first = log, run.step
        self.bar = None
        if bar:
            from tqdm import tqdm

            self.bar = tqdm(
                total=run.cfg.max_steps or None, initial=run.step, unit="step", file=sys.stderr, dynamic_ncols=True
            )
        self.started = time.monotonic()

    def limit_reached(self, run: TrainingRun) -> bool:
        cfg = run.cfg
        if cfg.max_steps and run.step >= cfg.max_steps:
            return True
        return bool(cfg.max_minutes and time.monotonic() - self.started > cfg.max_minutes * 60)

    def update(self, run: TrainingRun, losses: list[float]) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(
                loss=f"{np.mean(losses[-20:]):.5f}", epoch=run.epoch, lr=run.optimizer.param_groups[0]["lr"]
            )
        elif run.step % 10 == 0:
            per_step = (time.monotonic() - self.started) / (run.step - self.first)
            self.log(f"step {run.step} loss {np.mean(losses[-10:]):.5f} ({per_step:.1f} s/step)")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_epoch(run: TrainingRun, progress: Progress, stop: dict[str, int], log: Callable[[str], None]) -> bool:
    """Steps to the end of the epoch (saving every save_every); False when a limit ended the run first."""
    losses: list[float] = []
    while not progress.limit_reached(run):
        losses.append(run.train_step())
        progress.update(run, losses)
        epoch_ended = run.step % run.cfg.epoch_steps == 0
        if epoch_ended:
            run.finish_epoch(losses, log)
        if run.step % run.cfg.save_every == 0:
            run.save_state()
        if stop["signal"]:
            raise StopRequested
        if epoch_ended:
            return True
    return False


def train(cfg: TrainConfig, log: Callable[[str], None] = print, progress: bool = True) -> dict:
    """Run (or continue) training; returns the last log record."""
    run = set_up(cfg, log)
    stop = {"signal": 0}

    def on_signal(signum: int, frame: object) -> None:
        stop["signal"] = signum

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    meter = Progress(run, log, progress)
    try:
        run.model.train()
        while run_epoch(run, meter, stop, log):
            pass
    except StopRequested:
        log(f"signal {stop['signal']}: state saved at step {run.step}; run the same command to continue")
    finally:
        meter.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    run.save_state()
    torch.save(fp16_state_dict(run.model), run.out / "last.pth")
    if not (run.out / "best.pth").exists():
        torch.save(fp16_state_dict(run.model), run.out / "best.pth")
    record = run.history[-1] if run.history else {}
    return {**record, "step": run.step, "stopped_by_signal": stop["signal"]}


def end_epoch(
    model: MaskNetwork,
    cfg: TrainConfig,
    device: torch.device,
    out: Path,
    step: int,
    epoch: int,
    train_loss: float,
    best: float,
) -> dict:
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
