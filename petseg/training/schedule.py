"""The learning-rate schedule (stepped every optimisation step) and the optimiser's parameter groups."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from petseg.training.config import TrainConfig

__all__ = ["build_scheduler", "parameter_groups"]


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step LR schedule over ``config.epochs * steps_per_epoch`` steps (see :class:`TrainConfig`)."""
    total_steps = config.epochs * steps_per_epoch
    warmup_steps = min(int(round(config.warmup_epochs * steps_per_epoch)), total_steps)
    if config.scheduler == "onecycle":
        pct_start = min(max(config.warmup_epochs / config.epochs, 1e-3), 0.999)
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[group["lr"] for group in optimizer.param_groups], total_steps=total_steps,
            pct_start=pct_start, anneal_strategy="cos", cycle_momentum=False)
    min_ratio = config.min_lr_ratio
    cosine = config.scheduler == "cosine"

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if not cosine:
            return 1.0
        progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters: weight decay on weight matrices/kernels, none on biases and norm parameters."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim > 1 else no_decay).append(parameter)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters")
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]
