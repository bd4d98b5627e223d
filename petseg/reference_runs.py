"""Recorded results of runs the book cannot repeat on every build (the ``full`` profile needs a GPU).

The quick profile trains every model inside CI; the ``full`` profile (512 px, 60 epochs) is for a GPU. A
machine with one runs ``petseg record KEY ... --profile full`` once: every catalog model is trained and
tested as usual (:func:`petseg.experiment.run_experiment`), and its small results file (test metrics,
baselines, per-epoch history, config, provenance: command, commit, data fingerprint, hardware) is copied to
``book/reference_run/<profile>/<key>-s<seed>.json``, which is committed. Weights stay out of git. The
chapters read these files with :func:`load_reference_results` and show them beside the numbers of the
build they are part of, with the hardware that produced them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["REFERENCE_DIR", "load_reference_results", "record_reference_runs", "record_run",
           "recorded_summary", "reference_table"]

logger = logging.getLogger(__name__)

REFERENCE_DIR = Path(__file__).resolve().parent.parent / "book" / "reference_run"
RECORD_FORMAT = 1


def _record_path(out_dir: Path, profile: str, key: str, seed: int) -> Path:
    return Path(out_dir) / profile / f"{key}-s{seed}.json"


def record_run(run_dir: str | Path, key: str, out_dir: str | Path = REFERENCE_DIR,
               overrides: Mapping[str, Any] | None = None) -> Path:
    """Copy a finished run's results (with its config and epoch history) to ``out_dir/<profile>/<key>-s<seed>.json``.

    ``overrides``: what was changed from the profile for this recording (shown beside the numbers).
    Raises FileNotFoundError when the run has no ``results.json`` (it did not finish).
    """
    run_dir = Path(run_dir)
    results_file = run_dir / "results.json"
    if not results_file.is_file():
        raise FileNotFoundError(f"{run_dir} has no results.json: the run did not finish, nothing to record")
    results = json.loads(results_file.read_text())
    config_file = run_dir / "config.json"
    record = {"format": RECORD_FORMAT, "key": key, "run_name": run_dir.name,
              "config": json.loads(config_file.read_text()) if config_file.is_file() else None,
              "recorded_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "overrides": dict(overrides or {}), **results}
    record.get("train_summary", {}).pop("last_checkpoint", None)  # paths on the machine that trained
    record.get("train_summary", {}).pop("best_checkpoint", None)
    path = _record_path(Path(out_dir), str(results["profile"]), key, int(results["seed"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(temporary, path)
    return path


def record_reference_runs(keys: Sequence[str], profile: str = "full", data: str | Path | None = None,
                          seed: int = 0, out_dir: str | Path = REFERENCE_DIR, *,
                          overrides: Mapping[str, Any] | None = None, budget_seconds: float | None = None,
                          **run_kwargs: Any) -> dict[str, Path | None]:
    """Train + test each catalog model of ``keys`` (in order) with ``profile`` and record its results.

    ``overrides`` are merged over each model's own (e.g. ``{"train": {"num_workers": 12}}``: they change
    the run's config, so they are recorded with it). ``budget_seconds``: no model is *started* once this much
    time has passed (one already running finishes); those skipped map to None and are logged. A model
    pre-trained by another run (the AE+UNet's autoencoder) is recorded too, under that experiment's name. Keyword
    arguments go to :func:`petseg.experiment.run_experiment` (``runs_dir``, ``device``, ``force`` ...).
    """
    from petseg import catalog
    from petseg.experiment import deep_merge, overrides_for_upstream, run_experiment

    specs = [catalog.get(key) for key in keys]  # unknown keys fail before anything trains
    start = time.monotonic()
    written: dict[str, Path | None] = {}
    for spec in specs:
        elapsed = time.monotonic() - start
        if budget_seconds is not None and elapsed >= budget_seconds:
            logger.warning("skipped %s: %.0f s of the %.0f s budget used", spec.key, elapsed, budget_seconds)
            written[spec.key] = None
            continue
        merged = deep_merge(dict(spec.overrides), dict(overrides or {}))
        run = run_experiment(spec.experiment, profile, data, seed, tag=spec.tag, overrides=merged, **run_kwargs)
        written[spec.key] = record_run(run.path, spec.key, out_dir, overrides)
        logger.info("recorded %s -> %s", spec.key, written[spec.key])
        upstream = run.config.get("upstream_run")  # the pre-trained autoencoder of an AE+UNet
        if upstream and run.config.get("pretrained_from") not in written:
            name = str(run.config["pretrained_from"])
            written[name] = record_run(run.path.parent / upstream, name, out_dir, overrides_for_upstream(overrides))
    return written


def load_reference_results(profile: str = "full", root: str | Path = REFERENCE_DIR) -> dict[str, dict[str, Any]]:
    """The recorded results of ``profile``, keyed ``"<key>-s<seed>"``, in file-name order ({} if none)."""
    folder = Path(root) / profile
    if not folder.is_dir():
        return {}
    records = {}
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text())
        if record.get("format") != RECORD_FORMAT:
            raise ValueError(f"{path}: unknown record format {record.get('format')!r} (expected {RECORD_FORMAT})")
        records[path.stem] = record
    return records


def reference_table(records: Mapping[str, Mapping[str, Any]], keys: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per record: test mIoU/mDice/accuracy (or SSIM/PSNR), epochs, image size, time and hardware."""
    rows = {}
    for name, record in records.items():
        if keys is not None and record.get("key") not in keys:
            continue
        test, provenance = record.get("test", {}), record.get("provenance", {})
        summary, data = record.get("train_summary", {}), record.get("data", {})
        gpus = provenance.get("gpu_names") or []
        row: dict[str, Any] = {}
        for column, metric in (("mIoU", "miou"), ("mDice", "mdice"), ("accuracy", "pixel_accuracy"),
                               ("SSIM", "ssim"), ("PSNR", "psnr")):
            if metric in test:
                row[column] = round(float(test[metric]), 3)
        row.update({"epochs": summary.get("epochs_completed"), "image px": data.get("image_size"),
                    "changed from the profile": _changes(record.get("overrides") or {}) or "nothing",
                    "train s": record.get("train_seconds"),
                    "hardware": ", ".join(gpus) or f"CPU ({provenance.get('cpu_count')} cores)",
                    "commit": (provenance.get("git", {}).get("commit") or "unknown")[:10],
                    "data fingerprint": provenance.get("data_fingerprint")})
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    metrics = [column for column in ("mIoU", "mDice", "accuracy", "SSIM", "PSNR") if column in table]
    return table[metrics + [column for column in table if column not in metrics]]


# settings that change how fast a run goes, not what it computes
_SPEED_ONLY = {("train", "num_workers"), ("train", "device")}


def _changes(overrides: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> str:
    """``{"train": {"epochs": 1}}`` -> ``"train.epochs=1"`` (speed-only settings left out)."""
    parts = []
    for key, value in overrides.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping):
            parts.append(_changes(value, path))
        elif path not in _SPEED_ONLY:
            parts.append(f"{'.'.join(path)}={value}")
    return ", ".join(part for part in parts if part)


def recorded_summary(keys: Sequence[str], profile: str = "full", root: str | Path = REFERENCE_DIR,
                     fingerprint: str | None = None) -> tuple[str, pd.DataFrame | None]:
    """Words and a table for a chapter: what the recorded ``profile`` runs of ``keys`` reached, or that none
    is recorded yet and how to record them. ``fingerprint``: the data of the page's own runs; records made
    on other data are flagged."""
    records = load_reference_results(profile, root)
    table = reference_table(records, keys)
    from petseg.catalog import CATALOG

    # an upstream run (the autoencoder) is recorded with the catalog model that uses it
    command = f"petseg record {' '.join(key for key in keys if key in CATALOG)} --profile {profile}"
    if table.empty:
        return (f"**No `{profile}`-profile run of {', '.join(keys)} is recorded yet.** The `full` profile (512 px, "
                f"60 epochs) needs a GPU; `{command}` on a machine with one writes the results to "
                f"`book/reference_run/{profile}/` (scripts/gpu/README.md shows how, for a GPU machine without "
                f"internet), and this section then shows them.", None)
    words = (f"Recorded `{profile}`-profile results (`{command}`), with the hardware, commit and data they "
             f"came from. They are committed files, not re-run by this build.")
    others = sorted({str(value) for value in table["data fingerprint"] if value != fingerprint})
    if fingerprint is not None and others:
        words += (f" **Data differs from this page's** (fingerprint {', '.join(others)} vs {fingerprint}): "
                  f"compare with care.")
    return words, table
