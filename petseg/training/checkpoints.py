"""Run files: atomic writes, JSON conversion, and checkpoints (the complete training state) written and read.

What a run leaves in its ``run_dir`` (written by rank 0 only): ``config.json`` (``{"task", "train":
TrainConfig fields, "model": the build_model config or null, "world_size"}``), ``provenance.json`` (on a
resume ``provenance.resume-<epoch>.json``), ``metrics.jsonl`` (one JSON object per finished epoch:
``epoch``, ``global_step``, ``lr``, ``train_loss``, ``val_loss``, ``time_s`` and the task's validation
metrics; NaN written as null), ``last.pt`` (after every epoch) and ``best.pt`` (best value of the task's
metric), written atomically (temporary file + ``os.replace``).

A checkpoint (``last.pt``, ``best.pt``) is a dict: ``format_version``, ``model``, ``optimizer``,
``scheduler``, ``scaler``, ``epoch``, ``global_step``, ``steps_per_epoch``, ``total_steps``,
``metric_name``, ``best_metric``, ``best_epoch``, ``world_size``, ``record``, ``rng``, ``config``,
``task``, ``model_config``, ``model_class``. How a model is rebuilt from its ``model_config`` is declared
by its builder (:func:`petseg.models.rebuild_config`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from petseg.errors import CheckpointError
from petseg.models import build_model, rebuild_config
from petseg.models.weights import load_model_state, read_checkpoint
from petseg.training.config import RESUME_KEYS, TrainConfig
from petseg.training.seeds import set_rng_state

__all__ = ["CHECKPOINT_FORMAT", "append_jsonl", "atomic_copy", "atomic_torch_save", "atomic_write_text",
           "check_resumable", "load_checkpoint", "load_model_from_checkpoint", "read_jsonl", "restore_states",
           "resume_from", "start_run_dir", "to_jsonable"]

CHECKPOINT_FORMAT = 1
logger = logging.getLogger("petseg.training")


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file next to ``path``, fsync, then ``os.replace`` it into place."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def atomic_copy(source: Path, destination: Path) -> None:
    """Copy ``source`` to ``destination`` through a temporary file and ``os.replace``."""
    tmp = destination.with_name(destination.name + ".tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, destination)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def to_jsonable(value: Any) -> Any:
    """Convert numpy/torch scalars and arrays, paths and NaN/inf floats into JSON-friendly values (NaN -> None)."""
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append ``record`` as one JSON line (NaN -> null) and fsync."""
    with open(path, "a") as handle:
        handle.write(json.dumps(to_jsonable(record)) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file ([] if there is none)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_checkpoint(path: str | Path, model: nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                    scaler: torch.amp.GradScaler | None = None,
                    map_location: str | torch.device = "cpu", strict: bool = True) -> dict[str, Any]:
    """Load a checkpoint written by :func:`train` and return it as a dict.

    If given, ``model`` (possibly DDP-wrapped), ``optimizer``, ``scheduler`` and ``scaler`` get their
    states restored. A bare ``state_dict`` file is accepted too (for the model only). Keys include
    ``model``, ``optimizer``, ``scheduler``, ``scaler``, ``epoch`` (epochs completed), ``global_step``,
    ``rng``, ``config`` (TrainConfig dict), ``task``, ``model_config``, ``best_metric``, ``record``.
    Loaded with ``weights_only=True``.
    """
    checkpoint = read_checkpoint(path, map_location=map_location)
    if "model" not in checkpoint or not isinstance(checkpoint["model"], Mapping):
        checkpoint = {"model": checkpoint}
    restore_states(checkpoint, model, optimizer, scheduler, scaler, strict)
    return checkpoint


def restore_states(checkpoint: Mapping[str, Any], model: nn.Module | None,
                   optimizer: torch.optim.Optimizer | None,
                   scheduler: torch.optim.lr_scheduler.LRScheduler | None,
                   scaler: torch.amp.GradScaler | None, strict: bool = True) -> None:
    """Restore the states of whichever of model, optimizer, scheduler and scaler are given."""
    if model is not None:
        load_model_state(model, checkpoint["model"], strict)
    if optimizer is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
    if scaler is not None and checkpoint.get("scaler"):
        scaler.load_state_dict(checkpoint["scaler"])


def load_model_from_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model with :func:`petseg.models.build_model` from a checkpoint's ``model_config`` and load
    its weights (eval mode). Needs a model that was built by ``build_model``; what the config needs to rebuild
    it offline (e.g. no pretrained download: the weights are in the checkpoint) is declared by its builder
    (:func:`petseg.models.rebuild_config`)."""
    checkpoint = read_checkpoint(path, map_location=map_location)
    model_config = checkpoint.get("model_config") if isinstance(checkpoint, Mapping) else None
    if not model_config:
        raise CheckpointError(f"{path} has no model_config (the model was not built by build_model); "
                              "build the model yourself and call load_checkpoint(path, model)")
    model = build_model(rebuild_config(model_config))
    load_checkpoint(path, model, map_location=map_location)
    return model.eval()


def check_resumable(checkpoint: Mapping[str, Any], config: TrainConfig, task: str, steps_per_epoch: int,
                    world_size: int) -> None:
    """ValueError naming what changed if ``checkpoint`` (``last.pt``) cannot be resumed under ``config``."""
    saved = checkpoint.get("config", {})
    current = config.to_dict()
    differences = [f"{key}: {saved.get(key)!r} -> {current[key]!r}" for key in RESUME_KEYS
                   if saved.get(key) != current[key]]
    if checkpoint.get("task") != task:
        differences.append(f"task: {checkpoint.get('task')!r} -> {task!r}")
    if checkpoint.get("steps_per_epoch") != steps_per_epoch:
        differences.append(f"steps_per_epoch: {checkpoint.get('steps_per_epoch')} -> {steps_per_epoch}")
    if checkpoint.get("world_size", 1) != world_size:
        differences.append(f"world_size: {checkpoint.get('world_size', 1)} -> {world_size}")
    if differences:
        raise ValueError("cannot resume: the run changed since last.pt was written (" + "; ".join(differences)
                         + "); start a new run_dir or use resume=False")


def start_run_dir(run_dir: Path, run_config: Mapping[str, Any], provenance: Mapping[str, Any] | None,
                  resumed_from: int | None, history: list[dict[str, Any]]) -> None:
    """Write ``config.json``, the provenance and the kept part of ``metrics.jsonl`` into ``run_dir``.

    On a resume the provenance goes to ``provenance.resume-<epoch>.json``; epochs logged after ``last.pt``
    (a crash between the log line and the checkpoint) are dropped, all of them for a fresh run, which also
    removes checkpoints of an earlier run (never left beside the new run's logs).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.json", json.dumps(to_jsonable(dict(run_config)), indent=2) + "\n")
    if provenance is not None:
        name = "provenance.json" if resumed_from is None else f"provenance.resume-{resumed_from}.json"
        atomic_write_text(run_dir / name, json.dumps(to_jsonable(dict(provenance)), indent=2) + "\n")
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(to_jsonable(r)) + "\n" for r in history))
    if resumed_from is None:
        for stale in (run_dir / "last.pt", run_dir / "best.pt"):
            if stale.exists():
                logger.warning("fresh run: removing %s of an earlier run", stale)
                stale.unlink()


def resume_from(last_path: Path, config: TrainConfig, task: str, steps_per_epoch: int, world_size: int,
                model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                scaler: torch.amp.GradScaler) -> dict[str, Any]:
    """Read ``last.pt``, check that the run can go on from it (:func:`check_resumable`), restore the model,
    optimizer, scheduler, scaler and RNG states, and return the checkpoint."""
    # CPU first: RNG states must stay CPU tensors; load_state_dict moves the rest to the model's device.
    checkpoint = read_checkpoint(last_path, "cpu", hint="; cannot resume from it: train again with --force "
                                                         "(force=True) to start this run over")
    check_resumable(checkpoint, config, task, steps_per_epoch, world_size)
    restore_states(checkpoint, model, optimizer, scheduler, scaler)
    set_rng_state(checkpoint["rng"])
    return checkpoint
