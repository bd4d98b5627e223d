"""Experiments: a model config + a profile + data + a seed -> a finished run directory with results.

``run_experiment("unet", "quick", data)`` trains (or resumes) the model through :func:`petseg.training.loop.train`,
evaluates its best checkpoint on the test split beside two baselines, and writes ``results.json`` with
provenance. The run directory's name is a key of everything that determines the result (resolved config,
data fingerprint, seed), so a chapter that runs again with the same inputs reuses the finished run instead
of training again; a changed config or dataset gets a new run.

Files in a run directory: those of :func:`petseg.training.loop.train` (``config.json``, ``metrics.jsonl``,
``best.pt``, ``last.pt``, ``provenance.json``) plus ``experiment.json`` (the resolved experiment config and
data description), ``results.json`` and ``per_image_test.csv``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from petseg import config as settings
from petseg.config import available_experiments as available_experiments  # re-exported
from petseg.config import overrides_for_upstream
from petseg.data.dataset import padding_of
from petseg.data.labels import CLASS_NAMES
from petseg.data.pipeline import PreparedData, prepare_data
from petseg.errors import ConfigError, MissingInputError, UserError, one_line
from petseg.evaluation.segmentation import baseline_metrics
from petseg.models.weights import check_checkpoint_path
from petseg.paths import repository_root
from petseg.training.checkpoints import read_jsonl, to_jsonable

RUNS_ENV = "PETSEG_RUNS"
# model settings an encoder-reusing experiment passes on to the run that trains its encoder
RESULTS_FILE = "results.json"
EXPERIMENT_FILE = "experiment.json"


def default_runs_dir() -> Path:
    """``$PETSEG_RUNS``, else ``runs/`` at the root of the checkout the current directory is in (so a chapter
    opened from ``notebooks/`` reuses the book's runs), else ``runs/`` in the current directory."""
    if os.environ.get(RUNS_ENV):
        return Path(os.environ[RUNS_ENV]).expanduser().resolve()
    return ((repository_root() or Path.cwd()) / "runs").resolve()


def deep_merge(base: dict, update: dict) -> dict:
    """A copy of ``base`` with ``update`` merged in (nested dicts merged, everything else replaced)."""
    return settings.merge(base, update)


def load_experiment_config(name: str, profile: str = "quick", overrides: dict | None = None) -> dict:
    """``petseg/configs/<name>.yaml`` with its profile (and ``overrides``) deep-merged over the defaults,
    checked by :func:`petseg.config.load_experiment_config` (a ConfigError names what is wrong)."""
    return settings.load_experiment_config(name, profile, overrides)


def run_key(config: dict, fingerprint: str, seed: int) -> str:
    text = json.dumps({"config": config, "fingerprint": fingerprint, "seed": seed}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


@dataclass
class Run:
    """A finished (or loaded) experiment run."""

    path: Path
    config: dict
    results: dict
    reused: bool
    prepared: PreparedData | None = None  # the data it was trained and evaluated on, when known

    @property
    def best_checkpoint(self) -> Path:
        return self.path / "best.pt"

    def history(self) -> pd.DataFrame:
        """Per-epoch training log (``metrics.jsonl``) as a DataFrame."""
        lines = (self.path / "metrics.jsonl").read_text().splitlines()
        return pd.DataFrame([json.loads(line) for line in lines if line.strip()])

    def per_image(self) -> pd.DataFrame:
        return pd.read_csv(self.path / "per_image_test.csv")

    def load_model(self, map_location: str = "cpu") -> torch.nn.Module:
        from petseg.training.checkpoints import load_model_from_checkpoint

        model = load_model_from_checkpoint(self.best_checkpoint, map_location=map_location)
        return model.eval()


def run_experiment(name: str, profile: str = "quick", data: str | Path | None = None, seed: int = 0, *,
                   overrides: dict | None = None, tag: str | None = None, runs_dir: Path | None = None,
                   force: bool = False, prepared: PreparedData | None = None, progress: bool = True,
                   device: str | None = None, resume: str = "auto") -> Run:
    """Train and evaluate experiment ``name`` unless a finished run with the same inputs exists.

    ``resume``: ``"auto"`` continues an interrupted run (its ``last.pt``) and starts a missing one;
    ``"required"`` raises FileNotFoundError unless an interrupted run exists. ``force`` starts over.
    """
    if resume not in ("auto", "required"):
        raise ValueError(f"resume must be 'auto' or 'required', got {resume!r}")
    config = load_experiment_config(name, profile, overrides)
    if config.get("upstream") and not config.get("pretrained_from"):
        raise ValueError(f"experiment {name!r} is not pre-trained from another run: an 'upstream' override "
                         f"({config['upstream']}) has nothing to apply to")
    if device is not None:
        config["train"]["device"] = device
    if prepared is None:
        prepared = prepare_data(data, profile, overrides=config.get("data"), progress=progress)
    config["train"]["seed"] = seed
    if config.get("pretrained_from"):
        upstream_overrides = overrides_for_upstream(overrides)
        upstream = run_experiment(config["pretrained_from"], profile, data, seed, runs_dir=runs_dir,
                                  overrides=upstream_overrides, progress=progress, device=device,
                                  prepared=prepared_for(config["pretrained_from"], profile, prepared,
                                                        upstream_overrides))
        config["model"]["autoencoder_checkpoint"] = str(upstream.best_checkpoint)
        config["upstream_run"] = upstream.path.name
    key_config = {k: v for k, v in config.items() if k != "model"}
    key_config["model"] = {k: v for k, v in config["model"].items() if k != "autoencoder_checkpoint"}
    key_config["train"] = {k: v for k, v in config["train"].items() if k not in ("device", "num_workers")}
    key_config["split"] = split_digest(prepared)
    if prepared.image_size_note:  # preprocessed below the configured size: a run apart from one at that size
        key_config["preprocessed_size"] = prepared.cache.size
    runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    label = f"{name}-{tag}" if tag else name
    run_dir = runs_dir / f"{label}-{profile}-s{seed}-{run_key(key_config, prepared.report.fingerprint, seed)}"
    if (run_dir / RESULTS_FILE).exists() and not force:
        return Run(run_dir, config, json.loads((run_dir / RESULTS_FILE).read_text()), reused=True, prepared=prepared)
    if resume == "required" and (force or not (run_dir / "last.pt").exists()):
        raise MissingInputError(f"nothing to resume: no interrupted run at {run_dir} (leave out --resume to "
                                "start it)")
    return _train_and_evaluate(config, prepared, run_dir, seed, force, progress)


def split_digest(prepared: PreparedData) -> str:
    """A short digest of the stems a run trains, validates and is tested on (part of its run key)."""
    stems = {name: prepared.stems(name) for name in ("train", "val", "test")}
    return hashlib.sha256(json.dumps(stems).encode()).hexdigest()[:12]


def prepared_for(name: str, profile: str, prepared: PreparedData, overrides: dict | None = None
                 ) -> PreparedData | None:
    """Reuse ``prepared`` for experiment ``name`` if its data settings match, else None (prepare anew)."""
    wanted = load_experiment_config(name, profile, overrides).get("data", {})
    same = all(prepared.config.get(k) == v for k, v in wanted.items())
    return prepared if same else None


def _data_description(prepared: PreparedData) -> dict:
    return {
        "root": str(prepared.root), "layout": prepared.report.layout, "fingerprint": prepared.report.fingerprint,
        "image_size": prepared.cache.size, "split": prepared.split.sizes(), "split_file": str(prepared.split_path),
        "evaluated": {name: len(prepared.stems(name)) for name in ("val", "test")},
        "dropped_duplicates": len(prepared.split.dropped_duplicates),
        "multipliers": prepared.multipliers, "usable_pairs": len(prepared.report.usable),
        "breeds": len({s.breed for s in prepared.report.usable}),
        # only when the images were kept below the profile's size (configs/data.yaml: cap_at_data_size)
        **({"image_size_note": prepared.image_size_note} if prepared.image_size_note else {}),
    }


def _seconds_of_finished_epochs(run_dir: Path) -> float:
    """Seconds the finished epochs of a stopped run took (``time_s`` in its ``metrics.jsonl``; 0 without one)."""
    return float(sum(record.get("time_s") or 0.0 for record in read_jsonl(run_dir / "metrics.jsonl")))


def _train_and_evaluate(config: dict, prepared: PreparedData, run_dir: Path, seed: int, force: bool,
                        progress: bool) -> Run:
    from petseg.models import build_model
    from petseg.provenance import collect_provenance
    from petseg.training.config import TrainConfig
    from petseg.training.loop import train
    from petseg.training.seeds import seed_everything

    main_process = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 writes and evaluates
    data_info = _data_description(prepared)
    provenance = collect_provenance({"experiment": config["experiment"], "profile": config["profile"],
                                     "data_fingerprint": data_info["fingerprint"], "data_root": data_info["root"]})
    seed_everything(seed)
    try:  # before the run folder exists: a model that cannot be built leaves nothing behind
        model = build_model(config["model"])
    except UserError:
        raise
    except ValueError as error:
        raise ConfigError(f"cannot build the model from these settings: {one_line(error)}") from error
    if force and main_process and (run_dir / RESULTS_FILE).exists():
        (run_dir / RESULTS_FILE).unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    if main_process:
        (run_dir / EXPERIMENT_FILE).write_text(json.dumps({"config": config, "data": data_info}, indent=1))
    train_config = TrainConfig.from_dict(config["train"])
    resume = (run_dir / "last.pt").exists() and not force
    # a resumed run's time: the epochs trained before it was stopped (their time_s in metrics.jsonl) + this part
    earlier = _seconds_of_finished_epochs(run_dir) if resume else 0.0
    start = time.perf_counter()
    summary = train(model, prepared.dataset("train"), prepared.dataset("val", augment=False), train_config,
                    run_dir, task=config["task"], resume=resume, provenance=provenance)
    train_seconds = earlier + time.perf_counter() - start
    run = Run(run_dir, config, {}, reused=False, prepared=prepared)
    if not main_process:
        return run
    best = run.load_model()
    test_set = prepared.dataset("test", augment=False)
    results: dict[str, Any] = {
        "experiment": config["experiment"], "profile": config["profile"], "seed": seed, "task": config["task"],
        "data": data_info, "train_summary": to_jsonable(summary), "train_seconds": round(train_seconds, 1),
        "resumed_after_seconds": round(earlier, 1) if resume else None,
        "parameters": sum(p.numel() for p in best.parameters()),
        "trainable_parameters": sum(p.numel() for p in best.parameters() if p.requires_grad),
        "provenance": provenance,
    }
    if config["task"] == "segmentation":
        results["test"], per_image = evaluate_segmentation(best, test_set, device=train_config.device)
        per_image.insert(0, "stem", prepared.stems("test"))
        per_image.to_csv(run_dir / "per_image_test.csv", index=False)
        results["baselines"] = to_jsonable(baseline_metrics(prepared))
    elif config["task"] == "prompted":  # SAM 2: 1 click, box and the 20-click protocol via SAM2ImagePredictor
        from petseg.evaluation.clicks import evaluate_prompted_model

        results["test"], per_image = evaluate_prompted_model(best, test_set, config.get("evaluation"),
                                                             device=str(_device(train_config.device)))
        per_image.insert(0, "stem", [prepared.stems("test")[i] for i in per_image.pop("index")])
        per_image.to_csv(run_dir / "per_image_test.csv", index=False)
        results["baselines"] = to_jsonable(baseline_metrics(prepared))
    else:
        results["test"] = evaluate_reconstruction(best, test_set, device=train_config.device)
    (run_dir / RESULTS_FILE).write_text(json.dumps(to_jsonable(results), indent=1))
    run.results = json.loads((run_dir / RESULTS_FILE).read_text())
    return run


def _device(preference: str | None) -> torch.device:
    from petseg.training.distributed import select_device

    return select_device(preference or "auto")


def evaluate_segmentation(model: torch.nn.Module, dataset, device: str | None = None) -> tuple[dict, pd.DataFrame]:
    """Dataset-level metrics (3-class and binary pet/background) and a per-image table."""
    from petseg.evaluation.segmentation import evaluate

    metrics = evaluate(model, dataset, device=_device(device))
    columns = {}
    for key, values in metrics.pop("per_image").items():
        values = np.asarray(values)
        if values.ndim == 1:
            columns[key] = values
        else:  # one column per class: iou_background, iou_cat, ...
            columns.update({f"{key}_{name}": values[:, i] for i, name in enumerate(CLASS_NAMES)})
    return to_jsonable(metrics), pd.DataFrame(columns)


def evaluate_reconstruction(model: torch.nn.Module, dataset, device: str | None = None) -> dict:
    from torch.utils.data import DataLoader

    from petseg.evaluation.reconstruction import reconstruction_metrics

    model = model.to(_device(device))
    return to_jsonable(reconstruction_metrics(model, DataLoader(dataset, batch_size=8)))


@torch.no_grad()
def predict(model: torch.nn.Module, dataset, indices: list[int], task: str = "segmentation",
            device: str | None = None) -> dict[str, np.ndarray]:
    """Images (uint8 HWC), masks and model outputs for ``indices`` of a dataset.

    Segmentation models give ``probabilities`` (N, C, H, W); autoencoders give ``reconstructions`` (uint8).
    Datasets that know their padding (:meth:`PetSegDataset.padding`) add ``padding`` (N, H, W) bool.
    """
    device_ = _device(device)
    model = model.to(device_).eval()
    images, masks = zip(*(dataset[i] for i in indices), strict=True)
    batch = torch.stack(images).to(device_)
    output = model(batch).float().cpu()
    result = {"images": (torch.stack(images).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8),
              "masks": torch.stack(masks).numpy().astype(np.uint8)}
    if task == "reconstruction":
        result["reconstructions"] = (output.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    else:
        result["probabilities"] = output.softmax(dim=1).numpy()
    padding = padding_of(dataset, indices)
    if padding is not None:
        result["padding"] = padding
    return result


def evaluate_checkpoint(checkpoint: str | Path, split: str = "test", data: str | Path | None = None,
                        device: str | None = None) -> dict:
    """Evaluate a run's checkpoint on ``split`` with the data settings it was trained with.

    Writes ``eval-<split>-<checkpoint>.json`` beside the checkpoint and returns the same dict: metrics
    (segmentation: 3-class and binary; reconstruction: SSIM/PSNR), baselines, data and provenance. On other
    ``data`` (another fingerprint) the file is ``eval-<split>-<checkpoint>-data-<fingerprint>.json`` and a
    note goes to stderr.
    """
    from petseg.provenance import collect_provenance
    from petseg.training.checkpoints import load_model_from_checkpoint

    checkpoint = check_checkpoint_path(checkpoint)
    model = load_model_from_checkpoint(checkpoint).eval()  # a damaged file fails before the data is prepared
    experiment_file = checkpoint.parent / EXPERIMENT_FILE
    if not experiment_file.exists():
        raise MissingInputError(f"{experiment_file} missing: evaluate needs a run directory written by petseg train")
    recorded = json.loads(experiment_file.read_text())
    config = recorded["config"]
    data = os.path.abspath(Path(data).expanduser()) if data else recorded["data"]["root"]
    prepared = prepare_data(data, config["profile"], overrides=config.get("data"), progress=False)
    other_data = prepared.report.fingerprint != recorded["data"]["fingerprint"]
    if other_data:
        print(f"note: data fingerprint {prepared.report.fingerprint} differs from the training data's "
              f"{recorded['data']['fingerprint']}", file=sys.stderr)
    dataset = prepared.dataset(split, augment=False)
    result: dict[str, Any] = {"checkpoint": str(checkpoint), "split": split, "data": _data_description(prepared)}
    if config["task"] == "segmentation":
        result["metrics"], _ = evaluate_segmentation(model, dataset, device=device)
        if split == "test":
            result["baselines"] = to_jsonable(baseline_metrics(prepared))
    elif config["task"] == "prompted":
        from petseg.evaluation.clicks import evaluate_prompted_model

        result["metrics"], _ = evaluate_prompted_model(model, dataset, config.get("evaluation"),
                                                       device=str(_device(device)))
    else:
        result["metrics"] = evaluate_reconstruction(model, dataset, device=device)
    result["provenance"] = collect_provenance({"data_fingerprint": prepared.report.fingerprint})
    # results on other data go beside the run's own, never over them
    suffix = f"-data-{prepared.report.fingerprint}" if other_data else ""
    path = checkpoint.parent / f"eval-{split}-{checkpoint.stem}{suffix}.json"
    result["written_to"] = str(path)
    path.write_text(json.dumps(to_jsonable(result), indent=1))
    return to_jsonable(result)
