"""One training loop for every petseg model, plus evaluation and checkpoint loading.

``train(model, train_set, val_set, config, run_dir)`` trains a segmentation model (``task="segmentation"``:
logits ``[B, C, H, W]`` against masks with 255 = ignore), an autoencoder (``task="reconstruction"``:
an image in ``[0, 1]`` against the input image) or a promptable pet-vs-background model such as SAM 2
(``task="prompted"``: ``model(images, masks, rng=...)`` simulates prompts from the masks and returns
``{"logits" [B, M, H, W], "iou_predictions" [B, M], "candidates" bool [B, M]}``; see :class:`PromptedLoss`).
Datasets yield ``(image [3, S, S] float, mask [S, S] int64)``.

What a run leaves in ``run_dir`` (written by rank 0 only):

* ``config.json``: ``{"task", "train": TrainConfig fields, "model": the build_model config or null,
  "world_size"}``;
* ``provenance.json``: the ``provenance`` dict given to :func:`train` (on a resume, the new one goes to
  ``provenance.resume-<epoch>.json``);
* ``metrics.jsonl``: one JSON object per finished epoch, appended as it happens (NaN written as null):
  ``epoch`` (1-based), ``global_step``, ``lr``, ``train_loss``, ``val_loss``, ``time_s`` and, for
  segmentation, ``val_miou``, ``val_mdice``, ``val_acc``, ``val_iou_<class>``, ``val_dice_<class>``; for
  reconstruction ``val_ssim`` and ``val_psnr``; for prompted, the pet-vs-background metrics of one
  click at the most interior pet point (``val_miou``, ``val_iou_pet``, ``val_dice_pet``...);
* ``last.pt`` (after every epoch) and ``best.pt`` (best ``val_miou``; best ``val_iou_pet`` for prompted;
  lowest ``val_loss`` for reconstruction), written atomically (temporary file + ``os.replace``). Both are complete training
  states: model, optimizer, scheduler, grad scaler, epoch, global step, RNG states, configs.

Reproducibility: ``train`` seeds python/numpy/torch from ``config.seed``, re-seeds them at the start of
every epoch from ``(seed, epoch, rank)`` (the same for the data-loader generator and its workers, and for
the ``numpy.random.Generator`` that a prompted model draws its training prompts from) and
enables ``torch.use_deterministic_algorithms(True, warn_only=True)`` for the duration of the call. An
epoch therefore depends only on the model/optimizer state at its start, so two identical runs give the
same metrics and ``resume=True`` after an interruption reproduces the uninterrupted run. Seed before you
*build* the model (:func:`seed_everything`) so initial weights match too.

Multi-GPU: launched under ``torchrun`` (``WORLD_SIZE > 1``) the loop initialises ``torch.distributed``
(NCCL on CUDA, gloo on CPU), wraps the model in DistributedDataParallel and shards training data with a
DistributedSampler (``batch_size`` is per process). Validation shards the validation set without padding
and sums confusion matrices over processes, so the reported metrics are exactly those of the whole set.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from tqdm.auto import tqdm

from petseg.checkpoints import read_checkpoint
from petseg.data.labels import BINARY_CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES, to_binary
from petseg.errors import CheckpointError
from petseg.evaluation.metrics import ConfusionMatrix
from petseg.evaluation.segmentation import batch_to_device
from petseg.models import unwrap_model

__all__ = [
    "PromptedLoss",
    "SegmentationLoss",
    "TrainConfig",
    "build_loss",
    "build_scheduler",
    "prompted_prediction",
    "load_checkpoint",
    "load_model_from_checkpoint",
    "seed_everything",
    "select_device",
    "soft_dice_loss",
    "to_jsonable",
    "train",
]

logger = logging.getLogger(__name__)

TASKS = ("segmentation", "reconstruction", "prompted")
SCHEDULERS = ("cosine", "onecycle", "constant")
RECONSTRUCTION_LOSSES = ("l1", "mse")
CHECKPOINT_FORMAT = 1
# Changing any of these between an interrupted run and its resume would change the schedule.
_RESUME_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "scheduler", "min_lr_ratio",
                "max_steps_per_epoch", "seed", "dice_weight", "class_weights", "reconstruction_loss")


@dataclasses.dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train` (everything but the model and the data).

    ``scheduler``: ``"cosine"`` (linear warm-up over ``warmup_epochs``, then cosine decay to
    ``lr * min_lr_ratio``), ``"onecycle"`` (``torch.optim.lr_scheduler.OneCycleLR`` with
    ``pct_start = warmup_epochs / epochs``) or ``"constant"`` (warm-up, then flat). The schedule is
    stepped every optimisation step. ``device``: ``"auto"`` (cuda > mps > cpu) or any torch device string.
    ``amp`` only takes effect on CUDA. ``max_steps_per_epoch`` caps the batches per epoch (quick runs).
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


# ----------------------------------------------------------------------------------- seeds and devices


def seed_everything(seed: int) -> None:
    """Seed ``random``, ``numpy`` and ``torch`` (all devices) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _derived_seed(*parts: int) -> int:
    """A well-mixed 31-bit seed from integers (e.g. base seed, epoch, rank)."""
    return int(np.random.SeedSequence([int(part) for part in parts]).generate_state(1)[0] & 0x7FFFFFFF)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed numpy and random from the worker's torch seed."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def select_device(preference: str = "auto") -> torch.device:
    """``"auto"`` -> cuda if available, else mps, else cpu; any other string is used as given."""
    if preference != "auto":
        return torch.device(preference)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@contextmanager
def _deterministic_mode(enabled: bool) -> Iterator[None]:
    """Enable deterministic algorithms (warn-only) inside the block and restore the previous setting."""
    if not enabled:
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    previous = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = previous[2], previous[3]


# ------------------------------------------------------------------------------------------- losses


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX,
                   eps: float = 1e-7) -> torch.Tensor:
    """Soft Dice loss ``1 - mean_c dice_c`` of softmax(logits ``[B, C, H, W]``) against labels ``[B, H, W]``.

    Sums run over the whole batch. Pixels labelled ``ignore_index`` contribute nothing, and the mean runs
    over the classes present in the (valid) target of the batch; a batch without valid pixels gives 0
    (with a gradient of zero).
    """
    num_classes = logits.shape[1]
    valid = target != ignore_index
    probabilities = logits.float().softmax(dim=1) * valid.unsqueeze(1)
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    one_hot = F.one_hot(safe_target, num_classes).permute(0, 3, 1, 2).to(probabilities.dtype)
    one_hot = one_hot * valid.unsqueeze(1)
    dims = (0, 2, 3)
    intersection = (probabilities * one_hot).sum(dims)
    target_sum = one_hot.sum(dims)
    cardinality = probabilities.sum(dims) + target_sum
    dice = 2 * intersection / cardinality.clamp_min(eps)
    present = target_sum > 0
    if not bool(present.any()):
        return probabilities.sum() * 0.0
    return 1 - dice[present].mean()


class SegmentationLoss(nn.Module):
    """``CrossEntropy(weight=class_weights, ignore_index) + dice_weight * soft_dice_loss``."""

    def __init__(self, class_weights: list[float] | None = None, dice_weight: float = 0.0,
                 ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
        self.register_buffer("class_weights", weight)
        self.dice_weight = dice_weight
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Weighted mean over valid pixels, written out so that a batch without valid pixels gives 0, not NaN.
        loss_sum = F.cross_entropy(logits.float(), target, weight=self.class_weights,
                                   ignore_index=self.ignore_index, reduction="sum")
        valid = target != self.ignore_index
        if self.class_weights is None:
            normaliser = valid.sum().to(loss_sum.dtype)
        else:
            normaliser = (self.class_weights[torch.where(valid, target, torch.zeros_like(target))] * valid).sum()
        loss = loss_sum / normaliser.clamp_min(torch.finfo(torch.float32).tiny)
        if self.dice_weight > 0:
            loss = loss + self.dice_weight * soft_dice_loss(logits, target, self.ignore_index)
        return loss


class ReconstructionLoss(nn.Module):
    """L1 or MSE between the reconstruction and the input image."""

    def __init__(self, kind: str = "l1") -> None:
        super().__init__()
        if kind not in RECONSTRUCTION_LOSSES:
            raise ValueError(f"reconstruction loss must be one of {RECONSTRUCTION_LOSSES}, got {kind!r}")
        self.kind = kind

    def forward(self, reconstruction: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        if self.kind == "l1":
            return F.l1_loss(reconstruction.float(), images.float())
        return F.mse_loss(reconstruction.float(), images.float())


def _binary_target(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float pet target (labels 1 and 2 -> 1) and boolean valid map (not ``IGNORE_INDEX``) of label masks."""
    valid = masks != IGNORE_INDEX
    return (to_binary(masks) == 1).float(), valid


class PromptedLoss(nn.Module):
    """Loss of a promptable binary model (SAM 2's recipe, with BCE in place of focal loss).

    ``outputs``: ``logits [B, M, H, W]`` (M candidate masks), ``iou_predictions [B, M]`` and ``candidates``
    (bool ``[B, M]``: which masks answer each image's prompt). Per image and candidate mask: BCE over valid
    pixels (255 = trimap border and padding are skipped) + ``dice_weight`` * soft Dice of the pet; the mask
    loss of an image is that of its best candidate (only the best of an ambiguous prompt's masks learns, as
    in SAM). The IoU head learns the true IoU of every candidate (MSE, weight ``iou_weight``).
    """

    def __init__(self, dice_weight: float = 1.0, iou_weight: float = 1.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.dice_weight, self.iou_weight, self.eps = dice_weight, iou_weight, eps

    def forward(self, outputs: Mapping[str, torch.Tensor], masks: torch.Tensor) -> torch.Tensor:
        logits = outputs["logits"].float()
        candidates = outputs["candidates"]
        target, valid = _binary_target(masks)
        target, valid = target.unsqueeze(1).expand_as(logits), valid.unsqueeze(1).float().expand_as(logits)
        pixels = valid.sum(dim=(2, 3)).clamp_min(1.0)
        bce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * valid).sum(dim=(2, 3)) / pixels
        probabilities = logits.sigmoid() * valid
        intersection = (probabilities * target).sum(dim=(2, 3))
        dice = 1 - (2 * intersection + self.eps) / (probabilities.sum(dim=(2, 3)) + (target * valid).sum(dim=(2, 3))
                                                     + self.eps)
        per_mask = bce + self.dice_weight * dice
        mask_loss = per_mask.masked_fill(~candidates, float("inf")).min(dim=1).values.mean()
        with torch.no_grad():
            predicted = (logits > 0).float() * valid
            hard_intersection = (predicted * target).sum(dim=(2, 3))
            union = predicted.sum(dim=(2, 3)) + (target * valid).sum(dim=(2, 3)) - hard_intersection
            true_iou = torch.where(union > 0, hard_intersection / union.clamp_min(1.0), torch.ones_like(union))
        iou_error = (outputs["iou_predictions"].float() - true_iou) ** 2
        iou_loss = (iou_error * candidates).sum() / candidates.sum().clamp_min(1)
        return mask_loss + self.iou_weight * iou_loss


def prompted_prediction(outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Binary prediction ``[B, H, W]`` (int64, 1 = pet) of a prompted model's outputs: among each image's
    candidate masks the one with the highest predicted IoU (SAM 2's choice for a single click), logit > 0."""
    scores = outputs["iou_predictions"].float().masked_fill(~outputs["candidates"], float("-inf"))
    best = scores.argmax(dim=1)
    logits = outputs["logits"][torch.arange(best.shape[0], device=best.device), best]
    return (logits > 0).long()


def build_loss(task: str, config: TrainConfig) -> nn.Module:
    """The loss of ``task`` configured by ``config`` (see :class:`SegmentationLoss`, :class:`ReconstructionLoss`,
    :class:`PromptedLoss`; for prompted, ``dice_weight`` 0 in the config means the default weight 1)."""
    if task == "segmentation":
        return SegmentationLoss(config.class_weights, config.dice_weight)
    if task == "reconstruction":
        return ReconstructionLoss(config.reconstruction_loss)
    if task == "prompted":
        return PromptedLoss(config.dice_weight or 1.0)
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")


# ---------------------------------------------------------------------------------------- schedules


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


def _parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters: weight decay on weight matrices/kernels, none on biases and norm parameters."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim > 1 else no_decay).append(parameter)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters")
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


# ------------------------------------------------------------------------------------- distributed


@dataclasses.dataclass
class _DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _init_distributed(device_preference: str) -> _DistributedContext:
    """Join the torchrun process group if ``WORLD_SIZE > 1`` (or reuse an initialised one)."""
    import torch.distributed as dist

    if not dist.is_available():
        return _DistributedContext()
    if dist.is_initialized():
        rank = dist.get_rank()
        return _DistributedContext(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", rank)))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return _DistributedContext()
    use_cuda = torch.cuda.is_available() and device_preference in ("auto", "cuda")
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return _DistributedContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")),
                               owns_group=True)


def _process_device(config: TrainConfig, context: _DistributedContext) -> torch.device:
    device = select_device(config.device)
    if context.enabled:
        if device.type == "cuda":
            device = torch.device("cuda", context.local_rank)
            torch.cuda.set_device(device)
        elif device.type == "mps":
            device = torch.device("cpu")  # no DDP backend for MPS
    return device


def _all_reduce_sum(values: list[float], context: _DistributedContext, device: torch.device) -> list[float]:
    if not context.enabled:
        return values
    import torch.distributed as dist

    reduce_device = device if dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.tensor(values, dtype=torch.float64, device=reduce_device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().tolist()


def _barrier(context: _DistributedContext) -> None:
    if context.enabled:
        import torch.distributed as dist

        dist.barrier()


# ----------------------------------------------------------------------------------------- files


def _atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file next to ``path``, fsync, then ``os.replace`` it into place."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _atomic_copy(source: Path, destination: Path) -> None:
    tmp = destination.with_name(destination.name + ".tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, destination)


def _atomic_write_text(path: Path, text: str) -> None:
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


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(to_jsonable(record)) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _progress_disabled() -> bool:
    """``PETSEG_PROGRESS=0`` hides progress bars and the training plan, ``=1`` forces them; unset: shown on a
    terminal and in an interactive Jupyter kernel (``petseg book`` sets 0 for the chapters it executes)."""
    setting = os.environ.get("PETSEG_PROGRESS")
    if setting in ("0", "1"):
        return setting == "0"
    import sys

    return not (sys.stderr.isatty() or "ipykernel" in sys.modules)


class _TrainingReport:
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
             val_items: int) -> None:
        cap = f" (capped by max_steps_per_epoch; an epoch holds {items:,} items)" if capped else ""
        resumed = f", resuming at step {self.start_step:,}" if self.start_step else ""
        self.say(f"{task}: {config.epochs} epochs x {steps_per_epoch:,} steps of {config.batch_size} items{cap} = "
                 f"{self.total_steps:,} optimiser steps{resumed}; validation on {val_items:,} images after each epoch")

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


def _rng_state() -> dict[str, Any]:
    numpy_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(_as_tuples(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([cuda_state.cpu() for cuda_state in state["cuda"]])


def _as_tuples(value: Any) -> Any:
    return tuple(_as_tuples(item) for item in value) if isinstance(value, list | tuple) else value


# ----------------------------------------------------------------------------------- checkpoints


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
    _restore_states(checkpoint, model, optimizer, scheduler, scaler, strict)
    return checkpoint


def _restore_states(checkpoint: Mapping[str, Any], model: nn.Module | None,
                    optimizer: torch.optim.Optimizer | None,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
                    scaler: torch.amp.GradScaler | None, strict: bool = True) -> None:
    if model is not None:
        state = checkpoint["model"]
        if any(key.startswith("module.") for key in state):
            state = {key.removeprefix("module."): value for key, value in state.items()}
        unwrap_model(model).load_state_dict(state, strict=strict)
    if optimizer is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
    if scaler is not None and checkpoint.get("scaler"):
        scaler.load_state_dict(checkpoint["scaler"])


def load_model_from_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model with :func:`petseg.models.build_model` from a checkpoint's ``model_config`` and load
    its weights (eval mode). Needs a model that was built by ``build_model``."""
    from petseg.models import build_model

    checkpoint = read_checkpoint(path, map_location=map_location)
    model_config = checkpoint.get("model_config") if isinstance(checkpoint, Mapping) else None
    if not model_config:
        raise CheckpointError(f"{path} has no model_config (the model was not built by build_model); "
                         "build the model yourself and call load_checkpoint(path, model)")
    config = dict(model_config)
    if config.get("name") == "ae_unet":
        config["autoencoder_checkpoint"] = None  # the weights come from this checkpoint
    if str(config.get("name", "")).startswith("sam2_"):
        config["checkpoint"] = None  # no official SAM 2 file needed: every weight is in this checkpoint
    if config.get("name") == "fusion_unet":
        from petseg.models.clip_unet import checkpoint_model_config

        config = checkpoint_model_config(config)  # a CLIP tower's weights are in this checkpoint too
    model = build_model(config)
    load_checkpoint(path, model, map_location=map_location)
    return model.eval()


# ------------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def _validate(model: nn.Module, loader: DataLoader, device: torch.device, task: str, loss_fn: nn.Module,
              autocast: Callable[[], Any], context: _DistributedContext, num_classes: int) -> dict[str, Any]:
    """Validation loss and metrics over this process's shard, summed over processes."""
    model.eval()
    loss_sum, images_seen = 0.0, 0
    meter = None
    if task == "segmentation":
        meter = ConfusionMatrix(num_classes)
    elif task == "prompted":
        meter = ConfusionMatrix(2, class_names=BINARY_CLASS_NAMES)
    image_metrics = None
    if task == "reconstruction":
        from petseg.evaluation.reconstruction import image_quality_meters

        image_metrics = image_quality_meters(device)
    for batch in loader:
        images, masks = batch_to_device(batch, device)
        with autocast():
            outputs = model(images, masks) if task == "prompted" else model(images)
        if task == "segmentation":
            loss = loss_fn(outputs, masks)
            meter.update(outputs.argmax(dim=1), masks)
        elif task == "prompted":  # one click at the most interior pet point (the model's eval-mode prompt)
            loss = loss_fn(outputs, masks)
            meter.update(prompted_prediction(outputs).cpu(), to_binary(masks).cpu())
        else:
            loss = loss_fn(outputs, images)
            reconstruction = outputs.float().clamp(0, 1)
            for metric in image_metrics:
                metric.update(reconstruction, images)
        loss_sum += float(loss) * images.shape[0]
        images_seen += images.shape[0]
    loss_sum, images_seen = _all_reduce_sum([loss_sum, float(images_seen)], context, device)
    results: dict[str, Any] = {"val_loss": loss_sum / images_seen if images_seen else float("nan")}
    if meter is not None:
        meter.all_reduce()
        results.update(meter.summary(prefix="val_"))
    else:
        ssim, psnr = image_metrics
        results.update({"val_ssim": float(ssim.compute()), "val_psnr": float(psnr.compute())})
    return results


# ------------------------------------------------------------------------------------------ train


def _make_train_loader(dataset: Dataset, config: TrainConfig, context: _DistributedContext,
                       generator: torch.Generator, device: torch.device) -> tuple[DataLoader, Any]:
    sampler = None
    if context.enabled:
        sampler = DistributedSampler(dataset, num_replicas=context.world_size, rank=context.rank, shuffle=True,
                                     seed=config.seed, drop_last=False)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=config.num_workers, worker_init_fn=seed_worker, generator=generator,
                        pin_memory=device.type == "cuda", drop_last=False)
    return loader, sampler


def _make_val_loader(dataset: Dataset, config: TrainConfig, context: _DistributedContext,
                     device: torch.device) -> DataLoader:
    if context.enabled:  # an unpadded shard per process, so the summed metrics are exact
        dataset = Subset(dataset, list(range(context.rank, len(dataset), context.world_size)))
    return DataLoader(dataset, batch_size=config.eval_batch_size or config.batch_size, shuffle=False,
                      num_workers=config.num_workers, worker_init_fn=seed_worker,
                      pin_memory=device.type == "cuda")


def _check_resumable(checkpoint: Mapping[str, Any], config: TrainConfig, task: str, steps_per_epoch: int,
                     world_size: int) -> None:
    saved = checkpoint.get("config", {})
    current = config.to_dict()
    differences = [f"{key}: {saved.get(key)!r} -> {current[key]!r}" for key in _RESUME_KEYS
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


def _is_better(value: float | None, best: float | None, higher_is_better: bool) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if best is None:
        return True
    return value > best if higher_is_better else value < best


def train(model: nn.Module, train_set: Dataset, val_set: Dataset, config: TrainConfig | Mapping[str, Any],
          run_dir: str | Path, task: str = "segmentation", resume: bool = False,
          provenance: Mapping[str, Any] | None = None,
          on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
          on_step_end: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train ``model`` in place and return a summary dict (see the module docstring for files written).

    ``task="segmentation"``: model outputs logits, loss = cross-entropy (ignore 255, optional class weights)
    + ``dice_weight`` * soft Dice; the best checkpoint maximises ``val_miou``. ``task="reconstruction"``:
    model outputs an image, loss = L1/MSE against the input; best = lowest ``val_loss``. ``task="prompted"``:
    ``model(images, masks, rng=generator)`` simulates prompts (the generator is re-seeded every epoch from
    ``(seed, epoch, rank)``), loss = :class:`PromptedLoss`; best = highest one-click ``val_iou_pet``.

    ``resume=True`` continues from ``run_dir/last.pt`` if it exists (otherwise starts fresh): the run ends
    with the same number of steps, and the same metrics, as an uninterrupted one. ``on_epoch_end(record)``
    is called after each epoch's files are written, ``on_step_end({"epoch", "step", "global_step", "loss",
    "lr"})`` after each optimisation step; an exception raised there stops training (``last.pt`` holds the
    last finished epoch).

    Returns ``{"run_dir", "task", "epochs", "epochs_completed", "global_step", "steps_per_epoch",
    "total_steps", "metric_name", "best_metric", "best_epoch", "history", "last_checkpoint",
    "best_checkpoint", "resumed_from_epoch", "world_size"}``. When training ends the model holds the
    *last* weights (load ``best_checkpoint`` for the best ones).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    config = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    run_dir = Path(run_dir)
    context = _init_distributed(config.device)
    try:
        with _deterministic_mode(config.deterministic):
            return _train(model, train_set, val_set, config, run_dir, task, resume, provenance, on_epoch_end,
                          on_step_end, context)
    finally:
        if context.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(model: nn.Module, train_set: Dataset, val_set: Dataset, config: TrainConfig, run_dir: Path,
           task: str, resume: bool, provenance: Mapping[str, Any] | None,
           on_epoch_end: Callable[[dict[str, Any]], None] | None,
           on_step_end: Callable[[dict[str, Any]], None] | None,
           context: _DistributedContext) -> dict[str, Any]:
    seed_everything(config.seed)
    device = _process_device(config, context)
    model = unwrap_model(model).to(device)
    model_config = getattr(model, "petseg_config", None)
    # What a checkpoint needs to rebuild the model offline (a CLIP tower: weights from the checkpoint,
    # preprocessing pinned); the run's config.json keeps the config as given.
    checkpoint_config = (model.checkpoint_config() if callable(getattr(model, "checkpoint_config", None))
                         else model_config)
    num_classes = int(getattr(model, "n_classes", NUM_CLASSES))
    last_path, best_path, metrics_path = run_dir / "last.pt", run_dir / "best.pt", run_dir / "metrics.jsonl"

    generator = torch.Generator()
    train_loader, train_sampler = _make_train_loader(train_set, config, context, generator, device)
    val_loader = _make_val_loader(val_set, config, context, device)
    steps_per_epoch = len(train_loader)
    if config.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    if steps_per_epoch == 0:
        raise ValueError("the training set is empty")
    capped = steps_per_epoch < len(train_loader)
    total_steps = config.epochs * steps_per_epoch

    optimizer = torch.optim.AdamW(_parameter_groups(model, config.weight_decay), lr=config.lr)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch)
    use_amp = config.amp and device.type == "cuda"
    amp_dtype = torch.float16 if config.amp_dtype == "float16" else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    loss_fn = build_loss(task, config).to(device)
    higher_is_better = task != "reconstruction"
    metric_name = {"segmentation": "val_miou", "prompted": "val_iou_pet"}.get(task, "val_loss")

    def autocast() -> Any:
        return torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp)

    start_epoch, global_step, best_metric, best_epoch = 0, 0, None, None

    def training_state() -> dict[str, Any]:
        """Where training stands: stored in every checkpoint and returned in the summary."""
        return {"global_step": global_step, "steps_per_epoch": steps_per_epoch, "total_steps": total_steps,
                "metric_name": metric_name, "best_metric": best_metric, "best_epoch": best_epoch,
                "world_size": context.world_size}

    history: list[dict[str, Any]] = []
    resumed_from = None
    if resume and last_path.exists():
        # CPU first: RNG states must stay CPU tensors; load_state_dict moves the rest to the model's device.
        checkpoint = read_checkpoint(last_path, "cpu", hint="; cannot resume from it: train again with --force "
                                                             "(force=True) to start this run over")
        _check_resumable(checkpoint, config, task, steps_per_epoch, context.world_size)
        _restore_states(checkpoint, model, optimizer, scheduler, scaler)
        start_epoch, global_step = int(checkpoint["epoch"]), int(checkpoint["global_step"])
        best_metric, best_epoch = checkpoint.get("best_metric"), checkpoint.get("best_epoch")
        _set_rng_state(checkpoint["rng"])
        resumed_from = start_epoch
        history = [record for record in _read_jsonl(metrics_path) if record.get("epoch", 0) <= start_epoch]
        logger.info("resuming %s from epoch %d (step %d)", run_dir, start_epoch, global_step)
    elif resume:
        logger.info("resume requested but %s does not exist: starting from scratch", last_path)

    if context.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        run_config = {"task": task, "train": config.to_dict(), "model": model_config,
                      "world_size": context.world_size}
        _atomic_write_text(run_dir / "config.json", json.dumps(to_jsonable(run_config), indent=2) + "\n")
        if provenance is not None:
            name = "provenance.json" if resumed_from is None else f"provenance.resume-{resumed_from}.json"
            _atomic_write_text(run_dir / name, json.dumps(to_jsonable(dict(provenance)), indent=2) + "\n")
        # Drop epochs logged after last.pt (a crash between the log line and the checkpoint), or all of
        # them for a fresh run.
        _atomic_write_text(metrics_path, "".join(json.dumps(to_jsonable(r)) + "\n" for r in history))
        if resumed_from is None:  # a fresh run: never leave checkpoints of an earlier run beside its logs
            for stale in (last_path, best_path):
                if stale.exists():
                    logger.warning("fresh run: removing %s of an earlier run", stale)
                    stale.unlink()
    _barrier(context)

    train_model: nn.Module = model
    if context.enabled:
        device_ids = [device.index] if device.type == "cuda" else None
        # a prompted model leaves some heads unused in a step (e.g. SAM's object-score head)
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids,
                                                          find_unused_parameters=task == "prompted")
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    report = _TrainingReport(context.is_main and not _progress_disabled(), total_steps, global_step)
    report.plan(task, len(train_set), steps_per_epoch, capped, config, len(val_set))

    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        seed_everything(_derived_seed(config.seed, epoch, context.rank))
        generator.manual_seed(_derived_seed(config.seed, epoch, context.rank, 1))
        prompt_rng = np.random.default_rng(_derived_seed(config.seed, epoch, context.rank, 2))
        if train_sampler is not None:
            train_sampler.set_epoch(epoch)
        train_model.train()
        loss_sum = torch.zeros((), device=device)  # float32: MPS has no float64
        progress = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
                        disable=not report.show)
        batches = iter(train_loader)
        for step in range(steps_per_epoch):
            images, masks = batch_to_device(next(batches), device)
            target = images if task == "reconstruction" else masks
            with autocast():
                outputs = train_model(images, masks, rng=prompt_rng) if task == "prompted" else train_model(images)
                loss = loss_fn(outputs, target)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip is not None and config.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            global_step += 1
            loss_sum += loss.detach().float()
            progress.update(1)
            report.step(global_step)
            if on_step_end is not None:
                on_step_end({"epoch": epoch + 1, "step": step + 1, "global_step": global_step,
                             "loss": float(loss.detach()), "lr": scheduler.get_last_lr()[0]})
        progress.close()
        del batches
        (train_loss_sum,) = _all_reduce_sum([float(loss_sum)], context, device)
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "global_step": global_step,
            "lr": scheduler.get_last_lr()[0],
            "train_loss": train_loss_sum / (steps_per_epoch * context.world_size),
        }
        record.update(_validate(model, val_loader, device, task, loss_fn, autocast, context, num_classes))
        record["time_s"] = round(time.perf_counter() - started, 3)
        record = to_jsonable(record)
        improved = _is_better(record.get(metric_name), best_metric, higher_is_better)
        if improved:
            best_metric, best_epoch = record[metric_name], epoch + 1
        history.append(record)
        if context.is_main:
            _append_jsonl(metrics_path, record)
            checkpoint = {
                "format_version": CHECKPOINT_FORMAT,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": epoch + 1,
                **training_state(),
                "record": record,
                "rng": _rng_state(),
                "config": config.to_dict(),
                "task": task,
                "model_config": checkpoint_config,
                "model_class": type(model).__name__,
            }
            _atomic_torch_save(checkpoint, last_path)
            if improved:
                _atomic_copy(last_path, best_path)
        _barrier(context)
        logger.info("epoch %d/%d step %d train_loss %s val_loss %s %s %s", epoch + 1, config.epochs,
                    global_step, record["train_loss"], record["val_loss"], metric_name, record.get(metric_name))
        report.epoch(epoch + 1, config.epochs, record["time_s"], global_step, steps_per_epoch)
        if on_epoch_end is not None:
            on_epoch_end(record)

    return {
        "run_dir": str(run_dir),
        "task": task,
        "epochs": config.epochs,
        "epochs_completed": config.epochs,
        **training_state(),
        "history": history,
        "last_checkpoint": str(last_path),
        "best_checkpoint": str(best_path) if best_epoch is not None else None,
        "resumed_from_epoch": resumed_from,
    }
