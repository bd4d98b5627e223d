"""What a training run says while it runs: its plan, then how long it will take (silent when progress is off)."""

from __future__ import annotations

import logging
import os
import time

from tqdm.auto import tqdm

from petseg.training.config import TrainConfig

__all__ = ["TrainingReport", "progress_disabled"]

logger = logging.getLogger("petseg.training")


def progress_disabled() -> bool:
    """``PETSEG_PROGRESS=0`` hides progress bars and the training plan, ``=1`` forces them; unset: shown on a
    terminal and in an interactive Jupyter kernel (``petseg book`` sets 0 for the chapters it executes)."""
    setting = os.environ.get("PETSEG_PROGRESS")
    if setting in ("0", "1"):
        return setting == "0"
    import sys

    return not (sys.stderr.isatty() or "ipykernel" in sys.modules)


class TrainingReport:
    """Says what a training run will do before it starts, then how long it will take, measured on its first
    steps; silent when progress is off (everything is logged as well)."""

    MEASURE_STEPS = 5  # after one warm-up step

    def __init__(self, show: bool, total_steps: int, start_step: int) -> None:
        self.show, self.total_steps, self.start_step = show, total_steps, start_step
        self.clock: float | None = None
        self.estimated = False

    def say(self, text: str) -> None:
        logger.info(text)
        if self.show:
            tqdm.write(f"[petseg train] {text}")

    def plan(self, task: str, items: int, steps_per_epoch: int, capped: bool, config: TrainConfig,
             val_items: int, precision: str = "fp32") -> None:
        cap = f" (capped by max_steps_per_epoch; an epoch holds {items:,} items)" if capped else ""
        resumed = f", resuming at step {self.start_step:,}" if self.start_step else ""
        self.say(f"{task}: {config.epochs} epochs x {steps_per_epoch:,} steps of {config.batch_size} items{cap} = "
                 f"{self.total_steps:,} optimiser steps in {precision}{resumed}; validation on {val_items:,} images after each epoch")

    def step(self, global_step: int) -> None:
        if self.estimated:
            return
        done = global_step - self.start_step
        if done == 1:
            self.clock = time.perf_counter()
        elif done == 1 + self.MEASURE_STEPS and self.clock is not None:
            per_step = (time.perf_counter() - self.clock) / self.MEASURE_STEPS
            left = per_step * (self.total_steps - global_step)
            self.say(f"{per_step:.2f} s per step on its first steps: about {_minutes(left)} of training left "
                     "(validation not included)")
            self.estimated = True

    def epoch(self, epoch: int, epochs: int, seconds: float, global_step: int, steps_per_epoch: int) -> None:
        left = seconds / steps_per_epoch * (self.total_steps - global_step)
        self.say(f"epoch {epoch}/{epochs} took {seconds:.0f} s with validation: about {_minutes(left)} left")


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
