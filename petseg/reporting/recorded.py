"""Recorded results of runs the book cannot repeat on every build (the ``full`` profile needs a GPU).

The quick profile trains every model inside CI; the ``full`` profile (512 px, 60 epochs) is for a GPU. A
machine with one runs ``petseg record KEY ... --profile full`` once: every catalog model is trained and
tested as usual (:func:`petseg.experiment.run_experiment`), and its small results file (test metrics,
baselines, per-epoch history, config, provenance: command, commit, data fingerprint, hardware) is copied to
``book/reference_run/<profile>/<key>-s<seed>.json``, which is committed. Weights stay out of git. The
chapters read these files with :func:`load_reference_results` and show them beside the numbers of the
build they are part of, with the hardware that produced them.

Ablations (``petseg record KEY --label NAME --set ...``: a profile with some settings changed, e.g. more
epochs) go to ``book/reference_run/ablations/<key>-<label>-s<seed>.json`` instead, whatever their profile, so
they can never stand in for a profile's own result; :func:`recorded_ablations` shows them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from petseg.paths import RECORDED_RUNS_DIR, recorded_runs_dir

__all__ = ["ABLATIONS", "load_per_image", "load_reference_results", "record_reference_runs", "record_run",
           "recorded_ablations", "recorded_summary", "reference_table", "without_machine_paths"]

logger = logging.getLogger(__name__)

_RECORDED = recorded_runs_dir()  # the records of the checkout petseg is imported from (the default everywhere)
RECORD_FORMAT = 2  # 2: + per-image table (<record>.per_image.csv.gz), mask panel, calibration; no machine paths
READABLE_FORMATS = (1, 2)
PER_IMAGE_SUFFIX = ".per_image.csv.gz"
# an absolute path inside a string (a folder of the machine that trained): kept as ".../<last part>"
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/])/(?:[^\s/'\"]+/)*([^\s/'\"]+)")
ABLATIONS = "ablations"  # the folder (beside the profiles' folders) of labelled records
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_label(label: str) -> str:
    """``label`` if it is a usable ablation name (letters, digits, ``_ . -``; not starting with a symbol)."""
    if not _LABEL.fullmatch(label):
        raise ValueError(f"ablation label {label!r}: use letters, digits, '_', '.' and '-' (e.g. 'epochs48')")
    return label


def _record_path(out_dir: Path, profile: str, key: str, seed: int, label: str | None = None) -> Path:
    if label is not None:  # checked by record_run
        return Path(out_dir) / ABLATIONS / f"{key}-{label}-s{seed}.json"
    return Path(out_dir) / profile / f"{key}-s{seed}.json"


def without_machine_paths(value: Any) -> Any:
    """``value`` (JSON-like) with every absolute path in its strings cut to ``.../<last part>``: a record says
    which dataset and run folder it came from, never where they lay on the machine that made it."""
    if isinstance(value, str):
        return _ABSOLUTE_PATH.sub(lambda match: f".../{match.group(1)}", value)
    if isinstance(value, Mapping):
        return {key: without_machine_paths(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [without_machine_paths(item) for item in value]
    return value


def record_run(run_dir: str | Path, key: str, out_dir: str | Path = _RECORDED,
               overrides: Mapping[str, Any] | None = None, label: str | None = None,
               prepared: Any = None, evidence: bool | None = None) -> Path:
    """Copy a finished run's results (with its config and epoch history) to ``out_dir/<profile>/<key>-s<seed>.json``
    or, with a ``label``, to ``out_dir/ablations/<key>-<label>-s<seed>.json``.

    ``overrides``: what was changed from the profile for this recording (shown beside the numbers).
    ``evidence``: also write the per-image table beside it (``<name>.per_image.csv.gz``) and put the mask panel
    and calibration bins in the record (:mod:`petseg.reporting.record_evidence`; needs the run's ``best.pt`` and
    the data: ``prepared``, else the data the run was trained on is prepared again; ``None``: when the run still
    has its ``best.pt`` and ``experiment.json``, with a warning when not). Absolute paths are cut
    (:func:`without_machine_paths`).
    Raises FileNotFoundError when the run has no ``results.json`` (it did not finish).
    """
    if label is not None:
        check_label(label)
    run_dir = Path(run_dir)
    results_file = run_dir / "results.json"
    if not results_file.is_file():
        raise FileNotFoundError(f"{run_dir} has no results.json: the run did not finish, nothing to record")
    results = json.loads(results_file.read_text())
    config_file = run_dir / "config.json"
    record = {"format": RECORD_FORMAT, "key": key, "label": label, "run_name": run_dir.name,
              "config": json.loads(config_file.read_text()) if config_file.is_file() else None,
              "recorded_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "overrides": dict(overrides or {}), **results}
    record.get("train_summary", {}).pop("last_checkpoint", None)  # paths on the machine that trained
    record.get("train_summary", {}).pop("best_checkpoint", None)
    record.get("train_summary", {}).pop("run_dir", None)
    record.get("data", {}).pop("split_file", None)
    path = _record_path(Path(out_dir), str(results["profile"]), key, int(results["seed"]), label)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = without_machine_paths(record)  # before the evidence: its encoded masks may contain "/"
    record["per_image"] = None
    if evidence is None:
        evidence = (run_dir / "best.pt").is_file() and (run_dir / "experiment.json").is_file()
        if not evidence:
            logger.warning("%s has no best.pt or experiment.json: recorded without per-image table, mask panel or calibration", run_dir)
    if evidence:
        from petseg.reporting.record_evidence import run_evidence

        if prepared is None:
            prepared = _prepared_for_run(run_dir)
        per_image, extra = run_evidence(run_dir, prepared)
        record.update(extra)
        if per_image is not None:
            per_image = _without_derived_columns(per_image)
            table_path = path.with_name(path.stem + PER_IMAGE_SUFFIX)
            per_image.round(5).to_csv(table_path.with_name(table_path.name + ".tmp"), index=False,
                                      compression={"method": "gzip", "mtime": 0})
            os.replace(table_path.with_name(table_path.name + ".tmp"), table_path)
            record["per_image"] = {"file": table_path.name, "rows": len(per_image)}
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(temporary, path)
    return path


_DERIVED = re.compile(r"(iou|dice)_.*|mdice|pixel_accuracy|valid_pixels|pet_as_.*")


def _without_derived_columns(per_image: pd.DataFrame) -> pd.DataFrame:
    """A segmentation table without what its confusion columns give again (per-class IoU/Dice, accuracy, pixel
    counts); ``miou`` and ``pet_iou`` stay, for reading by eye."""
    if not any(column.startswith("n_") for column in per_image.columns):
        return per_image
    return per_image[[c for c in per_image.columns if not _DERIVED.fullmatch(str(c))]]


def _prepared_for_run(run_dir: Path) -> Any:
    """The data a finished run was trained and tested on, prepared again from its ``experiment.json``."""
    from petseg.data.pipeline import prepare_data

    recorded = json.loads((run_dir / "experiment.json").read_text())
    config = recorded["config"]
    return prepare_data(recorded["data"]["root"], config["profile"], overrides=config.get("data"), progress=False)


def load_per_image(record_name: str, profile: str = "standard", root: str | Path = _RECORDED) -> pd.DataFrame | None:
    """The per-image table of record ``<profile>/<record_name>`` (e.g. ``"unet-s0"``), or None when that
    record has none (made before format 2, or a reconstruction model)."""
    path = Path(root) / profile / f"{record_name}{PER_IMAGE_SUFFIX}"
    return pd.read_csv(path) if path.is_file() else None


def record_reference_runs(keys: Sequence[str], profile: str = "full", data: str | Path | None = None,
                          seed: int = 0, out_dir: str | Path = _RECORDED, *,
                          overrides: Mapping[str, Any] | None = None, budget_seconds: float | None = None,
                          label: str | None = None, **run_kwargs: Any) -> dict[str, Path | None]:
    """Train + test each catalog model of ``keys`` (in order) with ``profile`` and record its results.

    ``overrides`` are merged over each model's own (e.g. ``{"train": {"num_workers": 12}}``: they change
    the run's config, so they are recorded with it). ``label`` makes the records ablations (see the module
    docstring) and is added to the runs' tags, so their run folders say what they are. ``budget_seconds``: no
    model is *started* once this much time has passed (one already running finishes); those skipped map to
    None and are logged. A model
    pre-trained by another run (the AE+UNet's autoencoder) is recorded too, under that experiment's name. Keyword
    arguments go to :func:`petseg.experiment.run_experiment` (``runs_dir``, ``device``, ``force`` ...).
    """
    from petseg import catalog
    from petseg.config import overrides_for_upstream
    from petseg.experiment import deep_merge, run_experiment

    specs = [catalog.get(key) for key in keys]  # unknown keys fail before anything trains
    if label is not None:
        check_label(label)
    start = time.monotonic()
    written: dict[str, Path | None] = {}
    for spec in specs:
        elapsed = time.monotonic() - start
        if budget_seconds is not None and elapsed >= budget_seconds:
            logger.warning("skipped %s: %.0f s of the %.0f s budget used", spec.key, elapsed, budget_seconds)
            written[spec.key] = None
            continue
        merged = deep_merge(dict(spec.overrides), dict(overrides or {}))
        tag = "-".join(part for part in (spec.tag, label) if part) or None
        run = run_experiment(spec.experiment, profile, data, seed, tag=tag, overrides=merged, **run_kwargs)
        written[spec.key] = record_run(run.path, spec.key, out_dir, overrides, label, prepared=run.prepared)
        logger.info("recorded %s -> %s", spec.key, written[spec.key])
        upstream = run.config.get("upstream_run")  # the pre-trained autoencoder of an AE+UNet
        if upstream and run.config.get("pretrained_from") not in written:
            name = str(run.config["pretrained_from"])
            written[name] = record_run(run.path.parent / upstream, name, out_dir, overrides_for_upstream(overrides),
                                       label, prepared=run.prepared)
    return written


def load_reference_results(profile: str = "full", root: str | Path = _RECORDED) -> dict[str, dict[str, Any]]:
    """The recorded results of ``profile``, keyed ``"<key>-s<seed>"``, in file-name order ({} if none); an experiment
    recorded under an old name is given its current one."""
    folder = Path(root) / profile
    if not folder.is_dir():
        return {}
    records = {}
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text())
        if record.get("format") not in READABLE_FORMATS:
            raise ValueError(f"{path}: unknown record format {record.get('format')!r} (readable: {READABLE_FORMATS})")
        records[path.stem] = _under_current_names(record)
    return records


def _under_current_names(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with a renamed experiment under its current name, in its results, provenance and config
    (:data:`petseg.config.RENAMED_EXPERIMENTS`: records made before issue 15 say ``clip_unet`` for ``fusion_unet``).
    The committed file is not changed, and run names and paths stay as they were: they name folders on the
    machine that trained."""
    from petseg.config import current_experiment_name

    for part in (record, record.get("provenance"), record.get("config")):
        if isinstance(part, dict) and isinstance(part.get("experiment"), str):
            part["experiment"] = current_experiment_name(part["experiment"])
    return record


def reference_table(records: Mapping[str, Mapping[str, Any]], keys: Sequence[str] | None = None,
                    per_class: bool = False) -> pd.DataFrame:
    """One row per record: test mIoU/mDice/accuracy (or SSIM/PSNR), pet-vs-background mIoU, epochs, image size,
    time and hardware; ``per_class`` adds the test IoU of every class. Labelled records (ablations) add the
    columns ``ablation`` and ``profile``."""
    labelled = any(record.get("label") for record in records.values())
    rows = {}
    for name, record in records.items():
        if keys is not None and record.get("key") not in keys:
            continue
        test, provenance = record.get("test", {}), record.get("provenance", {})
        summary, data = record.get("train_summary", {}), record.get("data", {})
        gpus = provenance.get("gpu_names") or []
        row: dict[str, Any] = {"ablation": record.get("label"), "profile": record.get("profile")} if labelled else {}
        for column, metric in (("mIoU", "miou"), ("mDice", "mdice"), ("accuracy", "pixel_accuracy"),
                               ("SSIM", "ssim"), ("PSNR", "psnr")):
            if metric in test:
                row[column] = round(float(test[metric]), 3)
        if "miou" in test.get("binary", {}):
            row["pet vs bg mIoU"] = round(float(test["binary"]["miou"]), 3)
        for column, part in (("1-click IoU pet", "one_click"), ("box IoU pet", "box")):  # prompted models
            if len(test.get(part, {}).get("iou", [])) == 2:
                row[column] = round(float(test[part]["iou"][1]), 3)
        if "noc90" in test.get("interactive", {}):
            row["NoC@90"] = round(float(test["interactive"]["noc90"]), 2)
        if per_class:
            for class_name, iou in zip(test.get("class_names", []), test.get("iou", []), strict=False):
                row[f"IoU {class_name}"] = round(float(iou), 3)
        row.update({"epochs": summary.get("epochs_completed"), "best epoch": summary.get("best_epoch"),
                    "image px": data.get("image_size"), "precision": summary.get("precision", "fp32"),
                    "changed from the profile": _changes(record.get("overrides") or {}) or "nothing",
                    "train s": record.get("train_seconds"),
                    "hardware": ", ".join(gpus) or f"CPU ({provenance.get('cpu_count')} cores)",
                    "commit": (provenance.get("git", {}).get("commit") or "unknown")[:10],
                    "data fingerprint": provenance.get("data_fingerprint")})
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    first = [column for column in ("ablation", "profile", "mIoU", "mDice", "accuracy", "SSIM", "PSNR")
             if column in table]
    return table[first + [column for column in table if column not in first]]


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


PROFILE_NOTES = {
    "standard": "The `standard` profile trains on every training image and tests on the whole test split, at "
                "128 px, each model in about an hour or less on 2 CPU cores.",
    "full": "The `full` profile (512 px, 60 epochs, the official download) needs a GPU.",
}


def recorded_summary(keys: Sequence[str], profile: str = "full", root: str | Path = _RECORDED,
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
        where = (PROFILE_NOTES.get(profile, "") + f" `{command}` writes the results to `{RECORDED_RUNS_DIR}/{profile}/`"
                 + (" (scripts/gpu/README.md shows how, for a GPU machine without internet)" if profile == "full" else "")
                 + ", and this section then shows them.")
        return f"**No `{profile}`-profile run of {', '.join(keys)} is recorded yet.** " + where.strip(), None
    words = (f"Recorded `{profile}`-profile results (`{command}`; {PROFILE_NOTES.get(profile, '').rstrip('.')}), "
             f"with the hardware, commit and data they came from. They are committed files, not re-run by this "
             f"build.")
    recorded = {record.get("key") for record in records.values() if not record.get("label")}
    missing = [key for key in keys if key not in recorded]
    if missing:
        words += f" Not recorded yet: {', '.join(missing)}."
    return words + _other_data_warning(table, fingerprint), table


def _other_data_warning(table: pd.DataFrame, fingerprint: str | None) -> str:
    """A sentence flagging the rows of ``table`` made on data other than ``fingerprint`` ('' if none)."""
    others = sorted({str(value) for value in table["data fingerprint"] if value != fingerprint})
    if fingerprint is None or not others:
        return ""
    return f" **Data differs from this page's** (fingerprint {', '.join(others)} vs {fingerprint}): compare with care."


def _data_words(data: Mapping[str, Any]) -> str:
    """'600 images of 3 breeds (fingerprint ...)' from a record's ``data``."""
    size = data.get("usable_pairs")
    breeds = data.get("breeds")
    what = f"{size:,} images" if isinstance(size, int) else "images"
    return what + (f" of {breeds} breeds" if breeds else "") + f" (fingerprint {data.get('fingerprint')})"


def recorded_ablations(key: str, root: str | Path = _RECORDED, fingerprint: str | None = None,
                       this_build: Mapping[str, Any] | None = None) -> tuple[str, pd.DataFrame | None]:
    """Words and a table (per-class IoU included) for a chapter: the recorded ablations of catalog model
    ``key`` (``petseg record KEY --label NAME --set ...``), best mIoU (autoencoders: SSIM) first. ``this_build``: the results of
    the page's own run, shown as the first row for comparison. ``fingerprint``: as in :func:`recorded_summary`."""
    records = {name: record for name, record in load_reference_results(ABLATIONS, root).items()
               if record.get("key") == key}
    if not records:
        return (f"**No ablation of `{key}` is recorded yet.** `petseg record {key} --profile quick --label NAME "
                f"--set SECTION.KEY=VALUE` trains one variant and writes it to `{RECORDED_RUNS_DIR}/{ABLATIONS}/`.",
                None)
    table = reference_table(records, per_class=True)
    score = next((column for column in ("mIoU", "SSIM") if column in table), None)  # segmentation, reconstruction
    if score is not None:
        table = table.sort_values(score, ascending=False)
    seeds = sorted({int(record["seed"]) for record in records.values()})
    words = (f"Recorded ablations of `{key}`: each row is the profile shown with the settings in *changed from "
             f"the profile* changed, trained once (seed {', '.join(map(str, seeds))}) on the hardware shown and "
             f"committed as a small results file; this build does not re-run them.")
    if score == "mIoU":
        words += (" One seed per row: differences of about 0.02 mIoU are within the seed-to-seed spread (chapter 6 "
                  "measures it).")
    other_data = {data.get("fingerprint"): data for data in (record.get("data", {}) for record in records.values())
                  if data.get("fingerprint") != fingerprint}  # one entry per dataset the rows were trained on
    same_data = table["data fingerprint"] == fingerprint
    if this_build is not None and fingerprint is not None and other_data and not same_data.any():
        described = "; ".join(_data_words(data) for data in other_data.values())
        return (words + f" **They were trained on other data than this page's** ({described}; this page: fingerprint "
                f"{fingerprint}), so they are compared with each other only, not with this build's run; "
                f"`petseg record {key} --label NAME --set ...` on this page's data gives comparable rows."), table
    if this_build is not None:
        own = reference_table({"this build": {**this_build, "key": key, "label": "none (this build)"}},
                              per_class=True)
        if fingerprint is not None and other_data:  # rows on this page's data first, then the others
            others, table = table[~same_data], table[same_data]
        else:
            others = table.iloc[0:0]
        table = pd.concat([own, table])  # this build's run first, then the best variant
        if score is not None and score in own:
            baseline, best = table[score].iloc[0], table.iloc[1]
            words += (f" The best recorded variant on this page's data, `{best['ablation']}` "
                      f"({best['changed from the profile']}), reaches {score} {best[score]:.3f}, "
                      f"{best[score] - baseline:+.3f} against this build's run.")
            table.insert(table.columns.get_loc(score) + 1, f"{score} change", (table[score] - baseline).round(3))
        if len(others):
            described = "; ".join(_data_words(data) for data in other_data.values())
            words += (f" The last {len(others)} row{'s were' if len(others) > 1 else ' was'} trained on other data "
                      f"({described}) and {'have' if len(others) > 1 else 'has'} no change figure: a difference "
                      "there would compare two datasets.")
            return words, pd.concat([table, others])
    return words + _other_data_warning(table, fingerprint), table


def ablation_target_words(table: pd.DataFrame | None, fingerprint: str | None, target: float) -> str:
    """'Against the full profile's target of mIoU 0.80: ...' over the rows of ``table`` (from
    :func:`recorded_ablations`) trained on this page's data ('' when there are none)."""
    if table is None or fingerprint is None or "mIoU" not in table:
        return ""
    rows = table[table["data fingerprint"] == fingerprint]
    if rows.empty:
        return ""
    best = float(rows["mIoU"].max())
    side = "short of" if best < target else "above"
    pet = rows["pet vs bg mIoU"] if "pet vs bg mIoU" in rows else pd.Series(dtype=float)
    span = (f"; their pet-vs-background mIoU spans {pet.min():.3f} to {pet.max():.3f}" if pet.notna().any() else "")
    return (f"Against the full profile's target of mIoU {target:.2f}: the best of the rows on this page's data "
            f"reaches {best:.3f}, {abs(target - best):.3f} {side} it{span}.")
