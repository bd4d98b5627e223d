"""The hyper-parameters of a training run (:class:`TrainConfig`): everything but the model and the data."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = ["RECONSTRUCTION_LOSSES", "RESUME_KEYS", "SCHEDULERS", "TASKS", "TrainConfig", "cpu_bf16_supported"]

TASKS = ("segmentation", "reconstruction", "prompted")
SCHEDULERS = ("cosine", "onecycle", "constant")
RECONSTRUCTION_LOSSES = ("l1", "mse")
# Changing any of these between an interrupted run and its resume would change the schedule.
RESUME_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "scheduler", "min_lr_ratio",
               "max_steps_per_epoch", "seed", "dice_weight", "class_weights", "reconstruction_loss")


def cpu_bf16_supported() -> bool:
    """Whether this CPU runs bfloat16 convolutions and matmuls natively (oneDNN with AVX-512 BF16 or AMX)."""
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # an older or unusual build: take the safe path
        return False


@dataclasses.dataclass
class TrainConfig:
    """Hyper-parameters of :func:`petseg.training.loop.train` (everything but the model and the data).

    ``scheduler``: ``"cosine"`` (linear warm-up over ``warmup_epochs``, then cosine decay to
    ``lr * min_lr_ratio``), ``"onecycle"`` (``torch.optim.lr_scheduler.OneCycleLR`` with
    ``pct_start = warmup_epochs / epochs``) or ``"constant"`` (warm-up, then flat). The schedule is
    stepped every optimisation step. ``device``: ``"auto"`` (cuda > mps > cpu) or any torch device string.
    ``amp`` only takes effect on CUDA. ``cpu_bf16``: bfloat16 autocast for the training steps and the per-epoch
    validation on a CPU whose oneDNN supports bf16 (AVX-512 BF16 or AMX, :func:`cpu_bf16_supported`; a quick
    UNet step 1.3x faster there), fp32 elsewhere. The losses are computed in fp32; a run's test evaluation is always fp32.
    ``max_steps_per_epoch`` caps the batches per epoch (quick runs).
    ``batch_size`` is per process under torchrun.
    """

    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    scheduler: str = "cosine"
    min_lr_ratio: float = 0.0
    dice_weight: float = 0.0
    class_weights: list[float] | None = None
    grad_clip: float | None = 1.0
    num_workers: int = 0
    seed: int = 0
    device: str = "auto"
    max_steps_per_epoch: int | None = None
    reconstruction_loss: str = "l1"
    amp: bool = True
    amp_dtype: str = "float16"
    cpu_bf16: bool = False
    eval_batch_size: int | None = None
    deterministic: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        if self.reconstruction_loss not in RECONSTRUCTION_LOSSES:
            raise ValueError(f"reconstruction_loss must be one of {RECONSTRUCTION_LOSSES}, "
                             f"got {self.reconstruction_loss!r}")
        if self.amp_dtype not in ("float16", "bfloat16"):
            raise ValueError(f"amp_dtype must be 'float16' or 'bfloat16', got {self.amp_dtype!r}")
        if self.warmup_epochs < 0 or self.dice_weight < 0:
            raise ValueError("warmup_epochs and dice_weight must be >= 0")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError("max_steps_per_epoch must be >= 1 or None")
        if self.class_weights is not None:
            self.class_weights = [float(weight) for weight in self.class_weights]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a plain dict (e.g. a YAML section); unknown keys raise ValueError naming the valid ones."""
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig keys {unknown}; valid keys: {sorted(names)}")
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of every field."""
        return dataclasses.asdict(self)
