"""The report's shared logic: collect the runs of catalog models over seeds, and tabulate them.

Chapters 6-8 compare every model of :mod:`petseg.catalog` on the same test split. This module trains or
reuses the runs (``spec.run(profile, data, seed)``; nothing trains twice), flattens their ``results.json``
into one tidy table (one row per model and seed), summarises it over seeds (mean, standard deviation, min,
max, n), joins breeds to the per-image results, quotes the original study beside our numbers, exports and
loads a *reference run* (the small result files of a ``full``-profile build, e.g. on a GPU) and writes the
appendix's environment and execution-time page.

How many seeds each model gets is decided per profile by :data:`SEEDS` (see :func:`seeds_for`).
"""

from __future__ import annotations

import json
import platform
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from petseg.catalog import ModelSpec
from petseg.data.labels import CLASS_NAMES
from petseg.experiment import Run
from petseg.reporting.study import STUDY_RESULTS

# Seeds per profile and model key ("*" = every other model). quick: extra seeds only for the cheapest model,
# so chapters 6-8 stay inside the CI budget (measured times in the chapter); full: 3 seeds for every model.
SEEDS: dict[str, dict[str, tuple[int, ...]]] = {
    "quick": {"unet": (0, 1, 2), "*": (0,)},
    "standard": {"*": (0,)},
    "full": {"*": (0, 1, 2)},
}
# Which row of the study's table a catalog model is compared with (by experiment name or task). The study's rows
# keep the study's own names: our global-vector fusion UNet (experiment fusion_unet) is compared with the row
# the study called "CLIP+UNet", kept under the key clip_unet (petseg.reporting.study), whichever global encoder
# our run used (the catalog's label says which).
STUDY_KEYS = {"unet": "unet", "ae_unet": "ae_unet", "fusion_unet": "clip_unet", "sam2": "sam2"}
SUMMARY_METRICS = ("miou", "mdice", "accuracy", "pet_iou", "pet_dice")
METRIC_LABELS = {"miou": "mIoU", "mdice": "mDice", "accuracy": "pixel accuracy", "pet_iou": "pet IoU",
                 "pet_dice": "pet Dice", "binary_miou": "binary mIoU", "binary_mdice": "binary mDice",
                 "binary_accuracy": "binary accuracy"}
ENVIRONMENT_PAGE = "environment.md"


def seeds_for(key: str, profile: str, seeds: Mapping[str, Sequence[int]] | None = None) -> tuple[int, ...]:
    """The seeds of model ``key`` under ``profile`` (``seeds`` overrides :data:`SEEDS`'s entry)."""
    table = dict(seeds) if seeds is not None else SEEDS.get(profile)
    if table is None:
        raise ValueError(f"no seeds defined for profile {profile!r}; profiles: {', '.join(SEEDS)}")
    chosen = tuple(table.get(key, table.get("*", ())))
    if not chosen:
        raise ValueError(f"no seeds for model {key!r} under profile {profile!r}")
    return chosen


@dataclass(frozen=True)
class ModelRun:
    """One catalog model trained (or reused) with one seed."""

    spec: ModelSpec
    seed: int
    run: Run


def collect_runs(specs: Iterable[ModelSpec], profile: str, data: str | Path | None = None,
                 seeds: Mapping[str, Sequence[int]] | None = None, base_seed: int = 0,
                 **run_kwargs: Any) -> list[ModelRun]:
    """Train or reuse every ``spec`` for each of its seeds (:func:`seeds_for`, offset by ``base_seed``, the
    book's seed, so seed offset 0 is the run the model's own chapter made); keyword arguments go to
    ``spec.run`` (e.g. ``progress=False``)."""
    return [ModelRun(spec, base_seed + offset, spec.run(profile, data, base_seed + offset, **run_kwargs))
            for spec in specs for offset in seeds_for(spec.key, profile, seeds)]


def flat_metrics(results: Mapping[str, Any], task: str = "segmentation") -> dict[str, float]:
    """A run's test metrics flattened: ``miou``, ``mdice``, ``accuracy``, ``iou_<class>``, ``dice_<class>``
    and the pet-vs-background ``pet_iou``, ``pet_dice``, ``binary_miou``, ``binary_mdice``,
    ``binary_accuracy``. A prompted (binary) model has NaN for the 3-class entries."""
    test = results.get("test", results)
    nan = float("nan")
    row: dict[str, float] = {}
    binary = test.get("binary")
    if binary is None and len(test.get("iou") or []) == 2:  # a binary model's own metrics
        binary = test
    three_class = test if task != "prompted" and len(test.get("iou") or []) == len(CLASS_NAMES) else None
    row["miou"] = float(three_class["miou"]) if three_class else nan
    row["mdice"] = float(three_class["mdice"]) if three_class else nan
    row["accuracy"] = float(three_class["pixel_accuracy"]) if three_class else nan
    for index, name in enumerate(CLASS_NAMES):
        for metric in ("iou", "dice"):
            value = three_class[metric][index] if three_class else None
            row[f"{metric}_{name}"] = nan if value is None else float(value)
    for key, source in (("pet_iou", ("iou", 1)), ("pet_dice", ("dice", 1))):
        value = binary[source[0]][source[1]] if binary else None
        row[key] = nan if value is None else float(value)
    for key, source in (("binary_miou", "miou"), ("binary_mdice", "mdice"), ("binary_accuracy", "pixel_accuracy")):
        row[key] = float(binary[source]) if binary and binary.get(source) is not None else nan
    return row


def seed_table(model_runs: Iterable[ModelRun]) -> pd.DataFrame:
    """One row per (model, seed): key, label, task, seed, run directory, whether reused, and the metrics."""
    rows = []
    for item in model_runs:
        rows.append({"key": item.spec.key, "model": item.spec.label, "task": item.spec.task, "seed": item.seed,
                     "run": item.run.path.name, "reused": item.run.reused,
                     "train_seconds": item.run.results.get("train_seconds"),
                     **flat_metrics(item.run.results, item.spec.task)})
    return pd.DataFrame(rows)


def seed_summary(table: pd.DataFrame, metrics: Sequence[str] = SUMMARY_METRICS) -> pd.DataFrame:
    """Per model (in table order) and metric: n seeds, mean, sample standard deviation (NaN for n = 1),
    min and max. Long format: columns ``model``, ``metric``, ``n``, ``mean``, ``std``, ``min``, ``max``."""
    rows = []
    for model, group in table.groupby("model", sort=False):
        for metric in metrics:
            values = group[metric].dropna()
            if values.empty:
                continue
            rows.append({"model": model, "metric": metric, "n": len(values), "mean": values.mean(),
                         "std": values.std(ddof=1) if len(values) > 1 else float("nan"),
                         "min": values.min(), "max": values.max()})
    return pd.DataFrame(rows)


def mean_pm_std(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as a readable table: rows = models, columns = metrics, cells "mean ± std (n)"."""
    def cell(row: pd.Series) -> str:
        if row["n"] == 1:
            return f"{row['mean']:.3f} (1 seed)"
        return f"{row['mean']:.3f} ± {row['std']:.3f} (n={row['n']})"

    frame = summary.assign(cell=summary.apply(cell, axis=1))
    wide = frame.pivot(index="model", columns="metric", values="cell")
    order = [m for m in summary.model.unique()]
    columns = [m for m in SUMMARY_METRICS if m in wide.columns] + [m for m in wide.columns if m not in SUMMARY_METRICS]
    return wide.loc[order, columns].rename(columns=METRIC_LABELS).fillna("—")


def overlapping(summary: pd.DataFrame, metric: str = "miou") -> list[tuple[str, str]]:
    """Pairs of models whose [min, max] ranges over seeds of ``metric`` overlap: rankings not settled."""
    rows = summary[summary.metric == metric].reset_index(drop=True)
    pairs = []
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            a, b = rows.iloc[i], rows.iloc[j]
            if a["min"] <= b["max"] and b["min"] <= a["max"]:
                pairs.append((a["model"], b["model"]))
    return pairs


def per_image_with_breeds(run: Run, breeds: Mapping[str, str], species: Mapping[str, str]) -> pd.DataFrame:
    """The run's per-image test table with ``breed`` and ``species`` columns joined by stem."""
    frame = run.per_image()
    missing = sorted(set(frame.stem) - set(breeds))
    if missing:
        raise KeyError(f"{len(missing)} test stem(s) without a breed, e.g. {missing[:3]}")
    return frame.assign(breed=frame.stem.map(breeds), species=frame.stem.map(species))


def breed_lookup(prepared: Any) -> tuple[dict[str, str], dict[str, str]]:
    """stem -> breed and stem -> species of every usable image of a PreparedData."""
    usable = prepared.report.usable
    return {s.stem: s.breed for s in usable}, {s.stem: s.species for s in usable}


def _per_image_frames(model_runs: Iterable[ModelRun], breeds: Mapping[str, str], species: Mapping[str, str]
                      ) -> Iterator[tuple[ModelRun, pd.DataFrame]]:
    """Each run that has a per-image test table, with that table (breed and species joined)."""
    for item in model_runs:
        if (item.run.path / "per_image_test.csv").exists():
            yield item, per_image_with_breeds(item.run, breeds, species)


def per_breed(model_runs: Iterable[ModelRun], breeds: Mapping[str, str], species: Mapping[str, str],
              metric: str = "miou") -> pd.DataFrame:
    """Mean per-image ``metric`` per breed (rows, with species and test images) and model (columns),
    averaged over each model's seeds."""
    frames = [frame.assign(model=item.spec.label, seed=item.seed)
              for item, frame in _per_image_frames(model_runs, breeds, species)]
    if not frames:
        raise ValueError("no run has a per-image test table")
    data = pd.concat(frames, ignore_index=True)
    per_seed = data.groupby(["species", "breed", "model", "seed"], sort=False)[metric].mean().reset_index()
    table = per_seed.groupby(["species", "breed", "model"], sort=False)[metric].mean().unstack("model")
    models = list(dict.fromkeys(f.model.iloc[0] for f in frames))
    counts = data[data.seed == data.seed.min()].groupby(["species", "breed"]).stem.nunique()
    return table[models].assign(**{"test images": counts}).round(3)


def species_confusion(model_runs: Iterable[ModelRun], breeds: Mapping[str, str], species: Mapping[str, str]
                      ) -> pd.DataFrame:
    """Per breed (rows, with species) and model (columns): the share of the breed's true pet pixels that the
    model calls the *other* species (a Bombay cat's pixels called dog), over all test images of the breed and
    the model's seeds. Needs the ``pet_as_*`` columns of the per-image tables (runs made by this version)."""
    rows = []
    for item, frame in _per_image_frames(model_runs, breeds, species):
        if "pet_as_cat" not in frame:
            continue
        other = np.where(frame.species == "cat", frame.pet_as_dog, frame.pet_as_cat)
        total = frame[["pet_as_background", "pet_as_cat", "pet_as_dog"]].sum(axis=1)
        rows.append(pd.DataFrame({"species": frame.species, "breed": frame.breed, "model": item.spec.label,
                                  "other": other, "total": total}))
    if not rows:
        raise ValueError("no run has the per-image pet pixel counts (pet_as_*)")
    data = pd.concat(rows, ignore_index=True).groupby(["species", "breed", "model"], sort=False)[["other", "total"]].sum()
    share = (data["other"] / data["total"]).unstack("model")
    return share[list(dict.fromkeys(frame.model.iloc[0] for frame in rows))].round(3)


def worst_breeds(table: pd.DataFrame, model: str, n: int = 3) -> list[tuple[str, str]]:
    """The ``n`` (species, breed) rows of a :func:`per_breed` table with the lowest score for ``model``."""
    return list(table[model].astype(float).nsmallest(n).index)


def breed_findings(scores: pd.DataFrame, confusion: pd.DataFrame, model: str, n: int = 3) -> str:
    """Markdown sentences on ``model``'s per-breed results: best and worst breeds (:func:`per_breed`), the mean
    over cat and over dog breeds, and the breeds most often taken for the other species
    (:func:`species_confusion`)."""
    column = scores[model].astype(float)
    worst, best = column.nsmallest(n), column.nlargest(n)

    def named(series: pd.Series) -> str:
        return ", ".join(f"{breed} ({species}, {value:.2f})" for (species, breed), value in series.items())

    by_species = column.groupby(level="species").mean()
    text = (f"For **{model}** (mean per-image mIoU per breed), the worst breeds are {named(worst)} and the best "
            f"{named(best)}; cat breeds average {by_species.get('cat', float('nan')):.2f}, dog breeds "
            f"{by_species.get('dog', float('nan')):.2f}.")
    if model in confusion:
        taken = confusion[model].astype(float).nlargest(n)
        text += (" The breeds whose pixels it most often gives to the other species: "
                 + ", ".join(f"{breed} ({species}, {value:.0%} of its pet pixels)"
                             for (species, breed), value in taken.items()) + ".")
    return text


def study_key(spec: ModelSpec) -> str | None:
    """The study's row a catalog model is compared with (None if the study had no such model)."""
    if spec.task == "prompted":
        return "sam2"
    for prefix, key in STUDY_KEYS.items():
        if spec.experiment.startswith(prefix) or spec.key.startswith(prefix):
            return key
    return None


def study_comparison(specs: Iterable[ModelSpec], summary: pd.DataFrame) -> pd.DataFrame:
    """Our mean over seeds beside the study's reported mIoU / mDice / accuracy, one row per catalog model.

    For a prompted (binary) model both sides are pet-vs-background numbers; for the others 3-class.
    """
    rows = []
    for spec in specs:
        ours = summary[summary.model == spec.label].set_index("metric")
        if ours.empty:
            continue
        binary = spec.task == "prompted"
        names = ("binary_miou", "binary_mdice", "binary_accuracy") if binary else ("miou", "mdice", "accuracy")
        key = study_key(spec)
        study = STUDY_RESULTS.get(key, {}) if key else {}
        row = {"model": spec.label, "scored as": "pet vs background" if binary else "3 classes",
               "seeds": int(ours["n"].max())}
        for name, label in zip(names, ("mIoU", "mDice", "accuracy"), strict=True):
            row[f"{label} (ours)"] = ours["mean"].get(name, float("nan"))
            row[f"{label} (study)"] = study.get(label, float("nan"))
        row["study's model"] = study.get("model", "—")
        rows.append(row)
    return pd.DataFrame(rows).set_index("model").round(3)


# --------------------------------------------------------------------------------- the reference run


def export_reference(table: pd.DataFrame, folder: Path | str, extra: Mapping[str, pd.DataFrame] | None = None,
                     note: str = "") -> Path:
    """Write the seed table (and ``extra`` named tables) as CSV + a provenance JSON into ``folder``.

    Meant for a ``full``-profile build (e.g. on a GPU): the few KB of results are committed under
    :data:`petseg.paths.RECORDED_RUNS_DIR` and shown by the book beside the quick build's numbers (no checkpoints).
    """
    from petseg.provenance import collect_provenance

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "seeds.csv", index=False)
    for name, frame in (extra or {}).items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    meta = {"note": note, "tables": ["seeds", *(extra or {})], "provenance": collect_provenance()}
    (folder / "reference.json").write_text(json.dumps(meta, indent=1, default=str))
    return folder


def load_reference(folder: Path | str) -> tuple[pd.DataFrame, dict] | None:
    """The reference run's seed table and metadata, or None if none was recorded."""
    folder = Path(folder)
    if not (folder / "seeds.csv").is_file() or not (folder / "reference.json").is_file():
        return None
    return pd.read_csv(folder / "seeds.csv"), json.loads((folder / "reference.json").read_text())


# ------------------------------------------------------------------------------------------ appendix


def environment() -> dict[str, Any]:
    """Python, platform, CPU/GPU, torch and key package versions, git commit: what built this book."""
    from petseg.provenance import collect_provenance

    info = collect_provenance()
    return {"python": info["python"], "platform": info["platform"], "machine": platform.machine(),
            "cpu_count": info["cpu_count"], "cpus_usable": info["cpus_usable"], "torch": info.get("torch"),
            "device": ", ".join(info.get("gpu_names") or []) or f"CPU only ({info.get('device_name')})",
            "git_commit": info["git"].get("commit"), "git_dirty": info["git"].get("dirty"),
            "packages": {k: v for k, v in info["packages"].items() if v}}


BOOK_PACKAGES = ("torch", "torchvision", "numpy", "pandas", "matplotlib", "seaborn", "albumentations",
                 "torchmetrics", "timm", "sam2", "open_clip_torch", "papermill", "jupyter-book")


def environment_markdown(times: Mapping[str, Mapping[str, Any]]) -> str:
    """The appendix's Markdown: one row per executed chapter (seconds, profile, when, host) and the environment."""
    env = environment()
    lines = ["| chapter | execution time | profile | finished (UTC) | host CPUs |", "|---|---|---|---|---|"]
    total = 0.0
    for name, record in sorted(times.items()):
        seconds = float(record.get("seconds") or 0.0)
        total += seconds
        lines.append(f"| `{name}` | {seconds / 60:.1f} min ({seconds:.0f} s) | {record.get('profile')} | "
                     f"{record.get('finished', '?')} | {record.get('host', {}).get('cpu_count', '?')} |")
    lines.append(f"| **total** | **{total / 60:.1f} min** | | | |")
    from petseg.provenance import package_versions

    installed = {name: version for name, version in package_versions(BOOK_PACKAGES).items() if version}
    versions = {**installed, **env["packages"]}
    lines += ["", "| | |", "|---|---|",
              f"| Python | {env['python']} |", f"| platform | `{env['platform']}` ({env['machine']}) |",
              f"| CPUs | {env['cpu_count']} ({env['cpus_usable']} usable) |", f"| accelerator | {env['device']} |",
              f"| git commit | `{env['git_commit']}`{' (with uncommitted changes)' if env['git_dirty'] else ''} |"]
    lines += [f"| {name} | {version} |" for name, version in sorted(versions.items())]
    return "\n".join(lines) + "\n"


def write_environment_page(root: Path | str, times_file: str = "execution_times.json") -> Path:
    """Write ``book/generated/environment.md`` from the book's recorded execution times (see petseg.book)."""
    folder = Path(root) / "book" / "generated"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        times = json.loads((folder / times_file).read_text())
    except (OSError, ValueError):
        times = {}
    path = folder / ENVIRONMENT_PAGE
    path.write_text(environment_markdown(times))
    return path

