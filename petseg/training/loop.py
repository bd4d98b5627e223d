"""The training loop shared by every petseg model: :func:`train`.

Each epoch trains on the shuffled training set (the task's loss, AdamW, the LR schedule stepped every step,
gradient clipping, mixed precision on CUDA and, with ``cpu_bf16``, on CPUs with native bf16), validates,
appends a line to ``metrics.jsonl`` and writes ``last.pt`` (and ``best.pt`` when the task's metric improved). What differs between segmentation,
reconstruction and prompted models is the task object (:mod:`petseg.training.tasks`); the run's files are
described in :mod:`petseg.training.checkpoints`. An epoch is re-seeded from ``(seed, epoch, rank)``, so it
depends only on the model/optimizer state at its start: two identical runs give the same metrics, and a
resumed run those of the uninterrupted one (seed before you *build* the model, :func:`seed_everything`, for
the initial weights to match too). Under ``torchrun`` the model is wrapped in DistributedDataParallel and
the data sharded (:mod:`petseg.training.distributed`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from petseg.data.labels import NUM_CLASSES
from petseg.evaluation.segmentation import batch_to_device
from petseg.models.weights import unwrap_model
from petseg.training import checkpoints as files
from petseg.training.config import TASKS, TrainConfig, cpu_bf16_supported
from petseg.training.distributed import (
    DistributedContext,
    all_reduce_sum,
    barrier,
    init_distributed,
    process_device,
    train_loader,
    val_loader,
)
from petseg.training.progress import TrainingReport, progress_disabled
from petseg.training.schedule import build_scheduler, parameter_groups
from petseg.training.seeds import derived_seed, deterministic_mode, rng_state, seed_everything
from petseg.training.tasks import Task, make_task, validate

__all__ = ["train"]

logger = logging.getLogger("petseg.training")
Callback = Callable[[dict[str, Any]], None]


def train(model: nn.Module, train_set: Dataset, val_set: Dataset, config: TrainConfig | Mapping[str, Any],
          run_dir: str | Path, task: str = "segmentation", resume: bool = False,
          provenance: Mapping[str, Any] | None = None, on_epoch_end: Callback | None = None,
          on_step_end: Callback | None = None) -> dict[str, Any]:
    """Train ``model`` in place for ``task`` (see :mod:`petseg.training.tasks`) and return a summary dict.

    ``resume=True`` continues from ``run_dir/last.pt`` if it exists (otherwise starts fresh) and ends with the
    same steps and metrics as an uninterrupted run. ``on_epoch_end(record)`` is called after each epoch's
    files are written, ``on_step_end({"epoch", "step", "global_step", "loss", "lr"})`` after each optimisation
    step; an exception raised there stops training (``last.pt`` holds the last finished epoch).

    Returns ``{"run_dir", "task", "epochs", "epochs_completed", "global_step", "steps_per_epoch",
    "total_steps", "metric_name", "best_metric", "best_epoch", "world_size", "history", "last_checkpoint",
    "best_checkpoint", "resumed_from_epoch", "precision"}`` (precision: ``"fp32"``, ``"bf16 autocast"``, ...).
    The model ends with the *last* weights (``best_checkpoint`` holds the best ones).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    config = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    context = init_distributed(config.device)
    try:
        with deterministic_mode(config.deterministic):
            return _train(model, train_set, val_set, config, Path(run_dir), make_task(task, config), resume,
                          provenance, on_epoch_end, on_step_end, context)
    finally:
        if context.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


@dataclasses.dataclass
class _Progress:
    """Where training stands: stored in every checkpoint and returned in the summary."""

    steps_per_epoch: int
    total_steps: int
    metric_name: str
    world_size: int
    global_step: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"global_step": self.global_step, "steps_per_epoch": self.steps_per_epoch,
                "total_steps": self.total_steps, "metric_name": self.metric_name, "best_metric": self.best_metric,
                "best_epoch": self.best_epoch, "world_size": self.world_size}

    def improved(self, value: float | None, task: Task) -> bool:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        return self.best_metric is None or (value > self.best_metric if task.higher_is_better
                                            else value < self.best_metric)


def _optimiser_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, trainable: list[nn.Parameter],
                    grad_clip: float | None) -> None:
    """Backward (scaled under float16 AMP), gradient clipping, optimiser and schedule step."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip is not None and grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(trainable, grad_clip)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()


def _train(model: nn.Module, train_set: Dataset, val_set: Dataset, config: TrainConfig, run_dir: Path, task: Task,
           resume: bool, provenance: Mapping[str, Any] | None, on_epoch_end: Callback | None,
           on_step_end: Callback | None, context: DistributedContext) -> dict[str, Any]:
    seed_everything(config.seed)
    device = process_device(config, context)
    model = unwrap_model(model).to(device)
    model_config = getattr(model, "petseg_config", None)
    # What a checkpoint needs to rebuild the model offline; the run's config.json keeps the config as given.
    checkpoint_config = model.checkpoint_config() if callable(getattr(model, "checkpoint_config", None)) else model_config
    num_classes = int(getattr(model, "n_classes", NUM_CLASSES))
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"

    generator = torch.Generator()
    loader, sampler = train_loader(train_set, config, context, generator, device)
    validation = val_loader(val_set, config, context, device)
    steps_per_epoch = min(len(loader), config.max_steps_per_epoch or len(loader))
    if steps_per_epoch == 0:
        raise ValueError("the training set is empty")
    progress = _Progress(steps_per_epoch, config.epochs * steps_per_epoch, task.metric_name, context.world_size)

    optimizer = torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch)
    use_amp = config.amp and device.type == "cuda"
    amp_dtype = torch.float16 if config.amp_dtype == "float16" else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    train_bf16 = config.cpu_bf16 and device.type == "cpu" and cpu_bf16_supported()
    task.loss_fn.to(device)

    def autocast() -> Any:  # training steps and validation alike; a run's test evaluation stays fp32
        return torch.autocast(device.type, dtype=torch.bfloat16 if train_bf16 else amp_dtype,
                              enabled=use_amp or train_bf16)

    start_epoch, history, resumed_from = 0, [], None
    if resume and last_path.exists():
        checkpoint = files.resume_from(last_path, config, task.name, steps_per_epoch, context.world_size, model,
                                       optimizer, scheduler, scaler)
        start_epoch = resumed_from = int(checkpoint["epoch"])
        progress.global_step = int(checkpoint["global_step"])
        progress.best_metric, progress.best_epoch = checkpoint.get("best_metric"), checkpoint.get("best_epoch")
        history = [r for r in files.read_jsonl(run_dir / "metrics.jsonl") if r.get("epoch", 0) <= start_epoch]
        logger.info("resuming %s from epoch %d (step %d)", run_dir, start_epoch, progress.global_step)
    elif resume:
        logger.info("resume requested but %s does not exist: starting from scratch", last_path)
    if context.is_main:
        files.start_run_dir(run_dir, {"task": task.name, "train": config.to_dict(), "model": model_config,
                                      "world_size": context.world_size}, provenance, resumed_from, history)
    barrier(context)

    train_model: nn.Module = model
    if context.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=task.unused_parameters)
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    report = TrainingReport(context.is_main and not progress_disabled(), progress.total_steps, progress.global_step)
    precision = "bf16 autocast" if train_bf16 else (str(amp_dtype).removeprefix("torch.") + " autocast" if use_amp
                                                      else "fp32")
    report.plan(task.name, len(train_set), steps_per_epoch, steps_per_epoch < len(loader), config, len(val_set),
                precision)

    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        seed_everything(derived_seed(config.seed, epoch, context.rank))
        generator.manual_seed(derived_seed(config.seed, epoch, context.rank, 1))
        prompt_rng = np.random.default_rng(derived_seed(config.seed, epoch, context.rank, 2))
        if sampler is not None:
            sampler.set_epoch(epoch)
        train_model.train()
        loss_sum = torch.zeros((), device=device)  # float32: MPS has no float64
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
                   disable=not report.show)
        batches = iter(loader)
        for step in range(steps_per_epoch):
            images, masks = batch_to_device(next(batches), device)
            with autocast():
                loss = task.loss(task.forward(train_model, images, masks, rng=prompt_rng), images, masks)
            _optimiser_step(loss, optimizer, scaler, scheduler, trainable, config.grad_clip)
            progress.global_step += 1
            loss_sum += loss.detach().float()
            bar.update(1)
            report.step(progress.global_step)
            if on_step_end is not None:
                on_step_end({"epoch": epoch + 1, "step": step + 1, "global_step": progress.global_step,
                             "loss": float(loss.detach()), "lr": scheduler.get_last_lr()[0]})
        bar.close()
        del batches
        (train_loss_sum,) = all_reduce_sum([float(loss_sum)], context, device)
        record: dict[str, Any] = {"epoch": epoch + 1, "global_step": progress.global_step,
                                  "lr": scheduler.get_last_lr()[0],
                                  "train_loss": train_loss_sum / (steps_per_epoch * context.world_size)}
        record.update(validate(model, validation, device, task, autocast, context, num_classes))
        record["time_s"] = round(time.perf_counter() - started, 3)
        record = files.to_jsonable(record)
        improved = progress.improved(record.get(task.metric_name), task)
        if improved:
            progress.best_metric, progress.best_epoch = record[task.metric_name], epoch + 1
        history.append(record)
        if context.is_main:
            files.append_jsonl(run_dir / "metrics.jsonl", record)
            files.atomic_torch_save({
                "format_version": files.CHECKPOINT_FORMAT, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "epoch": epoch + 1, **progress.as_dict(), "record": record,
                "rng": rng_state(), "config": config.to_dict(), "task": task.name,
                "model_config": checkpoint_config, "model_class": type(model).__name__}, last_path)
            if improved:
                files.atomic_copy(last_path, best_path)
        barrier(context)
        logger.info("epoch %d/%d step %d train_loss %s val_loss %s %s %s", epoch + 1, config.epochs,
                    progress.global_step, record["train_loss"], record["val_loss"], task.metric_name,
                    record.get(task.metric_name))
        report.epoch(epoch + 1, config.epochs, record["time_s"], progress.global_step, steps_per_epoch)
        if on_epoch_end is not None:
            on_epoch_end(record)

    return {"run_dir": str(run_dir), "task": task.name, "epochs": config.epochs, "epochs_completed": config.epochs,
            **progress.as_dict(), "history": history, "last_checkpoint": str(last_path),
            "best_checkpoint": str(best_path) if progress.best_epoch is not None else None,
            "resumed_from_epoch": resumed_from, "precision": precision}
