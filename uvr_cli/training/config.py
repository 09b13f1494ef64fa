"""The settings of a `uvr train` run."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    init: str | None = None  # a UVR5 weight file to start from (fine-tuning) instead of random weights
    extra: dict = field(default_factory=dict)
