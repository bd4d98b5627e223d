"""The chapters' sentences about this build's numbers: what was run, on which split, what the numbers say.

Each function takes the tables and results a chapter already holds and returns Markdown, so a code cell is
one call (``display(Markdown(seeds_words(table, profile)))``) and the wording is tested here. Checks that must
stop a chapter (e.g. models tested on different splits) raise here too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from petseg.paths import RECORDED_RUNS_DIR
from petseg.reporting.study import STUDY_AUTOENCODER, STUDY_RESULTS
from petseg.reporting.tables import METRIC_LABELS, ModelRun, overlapping

if TYPE_CHECKING:
    from petseg.data.pipeline import PreparedData
    from petseg.data.split import Split
    from petseg.experiment import Run

FULL_TARGET_MIOU = 0.80  # the `full` profile's quality target for the UNet (chapter 2), on this book's split
STUDY_IMAGE_SIZE = 512  # the resolution the original study trained and tested at (its report)


def _folders(runs: Iterable[Run]) -> str:
    return ", ".join(f"`{run.path.name}`" for run in runs)


# every chapter: which test images this build scores


def scored_images(prepared: PreparedData, split: str = "test") -> str:
    """The images of ``split`` a build scores: "a breed-stratified subset of 510 of the 3,292 test images"
    when the profile caps the split (``max_test_images``), else "all 3,292 test images"."""
    return prepared.subset_note(split) or f"all {prepared.split.sizes()[split]:,} {split} images"


def scored_images_words(prepared: PreparedData) -> str:
    """Which test images every number of this build is computed on, and (for a capped split) that the
    ``standard`` reference run tests the whole split."""
    text = (f"In this build (profile `{prepared.config['profile']}`) every test number is computed on "
            f"**{scored_images(prepared)}**")
    if prepared.subset_note("test"):
        return (text + ", the same images for every model; the recorded `standard` reference run tests the "
                "whole split.")
    return text + "."


# chapter 1: data


def split_words(split: Split, split_path: Path) -> str:
    """Where the test split comes from, which images are in no split, and where the split file is saved."""
    unsplit = ", ".join(split.unsplit) or "none"
    return (f"Test split: {split.test_source}; outside every split ({len(split.unsplit)}): {unsplit}. "
            f"The split is saved beside the cache as `{split_path.parent.name}/{split_path.name}`.")


# chapter 2: UNet


def full_target_words(target: float = FULL_TARGET_MIOU) -> str:
    """The `full` profile's quality target for the UNet, and the study's UNet mIoU (not ranked against it)."""
    study = STUDY_RESULTS["unet"]["mIoU"]
    return (f"The quality target for it is **a test mIoU of at least {target:.2f} on this book's test "
            f"split**. The study's UNet reached mIoU {study:.2f} on the *full* dataset (37 breeds, its own "
            "split): the two are different data and should not be ranked against each other.")


def _data_copy(data: Mapping[str, Any]) -> str:
    """'the 256 px copy of 37 breeds (folder `oxford-iiit-pet-256`, 6,997 usable images)' from a record's
    ``data``: the copy's size is read from the folder name's ``-<px>`` ending, which names resized copies."""
    folder = Path(str(data.get("root", ""))).name
    size = folder.rsplit("-", 1)[-1] if "-" in folder else ""
    what = f"the {size} px copy" if size.isdigit() else "a copy"
    images = data.get("usable_pairs")
    details = [f"folder `{folder}`"] if folder else []
    details += [f"{images:,} usable images"] if isinstance(images, int) else []
    return f"{what} of {data.get('breeds', '?')} breeds" + (f" ({', '.join(details)})" if details else "")


def reference_beside_study_words(record: Mapping[str, Any] | None, experiment: str = "unet",
                                 name: str = "UNet", profile: str = "standard",
                                 study_size: int = STUDY_IMAGE_SIZE) -> str:
    """The recorded reference run's test mIoU beside the study's for ``experiment``, and what differs between
    them: the data copy, the training resolution and the epochs (``record``: one record of
    :func:`~petseg.reporting.recorded.load_reference_results`, None when none is recorded)."""
    study = STUDY_RESULTS[experiment]["mIoU"]
    if record is None:
        return (f"No `{profile}` reference run of the {name} is recorded yet, so only this build's numbers "
                f"stand beside the study's mIoU {study:.2f}.")
    data, summary = record.get("data", {}), record.get("train_summary", {})
    split = data.get("split", {})
    whole = split.get("test", 0)
    tested = (data.get("evaluated") or {}).get("test", whole)
    tested = f"all {whole:,}" if tested >= whole else f"{tested:,} of the {whole:,}"
    return (f"**The recorded `{profile}` reference run** of the {name} reaches test mIoU "
            f"**{float(record['test']['miou']):.3f}**, beside the study's **{study:.2f}**. What differs: "
            f"*data*: {_data_copy(data)}, tested on {tested} test images of this book's split (the study: "
            f"the full dataset, its own split); *resolution*: {data.get('image_size')} px training (the "
            f"study: {study_size} px); *training*: {summary.get('epochs_completed')} epochs over "
            f"{split.get('train', 0):,} training images. Neither number ranks the other.")


# chapter 3: autoencoder


def reconstruction_words(ssim: float, profile: str, epochs: int, image_size: int, margin: float = 0.05) -> str:
    """The autoencoder's test SSIM against the study's; when it is more than ``margin`` below, why (short
    training at a small size through a 4 x 4 bottleneck) and what that means for the chapter."""
    study = STUDY_AUTOENCODER["SSIM"]
    if ssim >= study - margin:
        return f"The autoencoder reaches SSIM {ssim:.2f} (the study reported {study:.2f})."
    return (
        f"**This build does not reproduce the study's reconstruction quality** (SSIM {ssim:.2f} against "
        f"{study:.2f}): with the `{profile}` profile the autoencoder trains for only {epochs} epochs at "
        f"{image_size} px, and its 6-stage encoder squeezes each image through a 4 x 4 bottleneck, so it keeps "
        "the coarse layout and little else. The segmentation results below therefore test a *weak* "
        "reconstruction pre-training; the `full` profile (512 px, 40 epochs) is the one to compare with the study.")


# chapter 5: prompted segmentation


def _scored(results: Mapping[str, Any]) -> str:
    """'the 510 test images scored (of 3,292)' from a run's ``results["data"]`` ('the test images scored' when
    the results do not say)."""
    data = results.get("data") or {}
    whole = (data.get("split") or {}).get("test")
    used = (data.get("evaluated") or {}).get("test", whole)
    if used is None:
        return "the test images scored"
    return f"the {used:,} test images scored" + (f" (of {whole:,})" if whole and used < whole else "")


def one_click_words(results: Mapping[str, Mapping[str, Any]], margin: float = 0.05) -> str:
    """For prompted runs (label -> ``results.json``): which test images the 20-click protocol ran on, then per
    model its 1-click pet-vs-background mIoU against predicting background everywhere (the first run's
    baseline), and whether it has learned anything a click can use (more than ``margin`` above that floor)."""
    if not results:
        return ""
    subsets = "; ".join(f"**{name}**: {r['test'].get('interactive_subset', 'all')} of {_scored(r)}"
                        for name, r in results.items())
    paragraphs = [f"The 20-click protocol ran on: {subsets} (the profile's budget, "
                  "`evaluation.interactive_images`; the 1-click and box metrics use every test image "
                  "scored)."]
    floor = next(iter(results.values()))["baselines"]["all_background"]["binary"]["miou"]
    for name, r in results.items():
        miou = r["test"]["one_click"]["miou"]
        verdict = ("it has not learned to segment: a click tells it nothing it can use yet" if miou < floor + margin
                   else "it segments the pet from the click")
        paragraphs.append(f"**{name}** ({r['train_summary']['epochs_completed']} epochs in this profile): 1-click "
                          f"pet-vs-background mIoU {miou:.3f}, against {floor:.3f} for predicting background "
                          f"everywhere: {verdict}.")
    return "\n\n".join(paragraphs)


# chapter 6: evaluation over seeds


def seeds_words(table: pd.DataFrame, profile: str) -> str:
    """Which seeds each model has in this build, from the seed table (columns ``model`` and ``seed``)."""
    parts = [f"**{model}**: {len(group)} seed{'s' if len(group) > 1 else ''} ({', '.join(map(str, group.seed))})"
             for model, group in table.groupby("model", sort=False)]
    return f"Seeds in this build (profile `{profile}`): {'; '.join(parts)}."


def same_split_words(model_runs: Sequence[ModelRun], seed: int) -> str:
    """That every model was scored on the same test split (its size and split file) and at which input size
    (from the runs with ``seed``); raises ``RuntimeError`` when the runs were tested on different splits."""
    test_sizes = {item.run.results["data"]["split"]["test"] for item in model_runs}
    split_files = {Path(item.run.results["data"]["split_file"]).name for item in model_runs}
    if len(test_sizes) != 1 or len(split_files) != 1:
        raise RuntimeError(f"the models were not tested on one split: {test_sizes}, {split_files}")
    sizes = {item.spec.label: item.run.results["data"]["image_size"] for item in model_runs if item.seed == seed}
    return (f"Every model is scored on the same **{test_sizes.pop()} test images** (split `{split_files.pop()}`), "
            "each at its own input size: " + ", ".join(f"{name} {size} px" for name, size in sizes.items()) + ". "
            "Label 255 (the trimap border and the padding) is ignored everywhere.")


def overlap_words(summary: pd.DataFrame, metric: str = "miou") -> str:
    """Which models' ranges over seeds of ``metric`` overlap (no ranking between them), and which models have
    one seed only, from :func:`~petseg.reporting.tables.seed_summary`'s table."""
    name = METRIC_LABELS.get(metric, metric)
    pairs = overlapping(summary, metric)
    rows = summary[summary.metric == metric]
    several, single = rows[rows.n > 1].model.tolist(), rows[rows.n == 1].model.tolist()
    if pairs:
        text = [f"**Not conclusive** ({name} ranges over seeds overlap): "
                + "; ".join(f"{a} vs {b}" for a, b in pairs) + "."]
    else:
        text = [f"No two models' {name} ranges over seeds overlap in this build."]
    if single:
        text.append(f"Trained with one seed only in this build: {', '.join(single)}. Their position is one draw; "
                    "a difference to another model smaller than the spread seen for the models with several seeds "
                    f"({', '.join(several) or 'none'}) is not a ranking.")
    return " ".join(text)


def breed_count_words(breed_table: pd.DataFrame) -> str:
    """How many breeds this build's data has (one row each) and how many test images a per-breed number rests on."""
    counts = breed_table["test images"]
    return (f"This build's data has **{breed_table.shape[0]} breed(s)**; the full dataset has 37. A per-breed "
            f"number here rests on {int(counts.min())}-{int(counts.max())} test images per breed.")


def written_reference_words(what: str, name: str = "") -> str:
    """Said by a ``full`` build that wrote its ``what`` (file ``name``) to the recorded-runs folder."""
    return f"This is a `full` build: its {what} was written to `{RECORDED_RUNS_DIR}/{name}`."


def no_reference_words(profile: str) -> str:
    """Said when no ``full``-profile reference run has been recorded: every number is this build's."""
    return ("**No reference run has been recorded yet**: no `full`-profile build has been run on a GPU for this "
            f"version. All numbers on this page are from this build's `{profile}` profile.")


def reference_run_words(meta: Mapping[str, Any]) -> str:
    """Where and when the recorded reference run was made (``meta`` of
    :func:`~petseg.reporting.tables.load_reference`: its ``provenance`` and ``note``)."""
    origin = meta["provenance"]
    gpus = ", ".join(origin.get("gpu_names") or []) or "CPU"
    return (f"Reference run: profile `full`, recorded {origin.get('utc_time')} on {gpus} (host "
            f"`{origin.get('hostname')}`, commit `{(origin.get('git') or {}).get('commit')}`). "
            f"{meta.get('note', '')}")


# chapter 7: failure analysis


def runs_words(description: str, seed: int, runs: Iterable[Run]) -> str:
    """The data description followed by the run folders a chapter uses with ``seed``."""
    return f"{description} Runs with seed {seed}: {_folders(runs)}."


def ssim_words(rho: float, by_species: pd.DataFrame) -> str:
    """The rank correlation between reconstruction SSIM and segmentation mIoU in words, and the mean of both
    per species (``by_species``: index species, columns ``ssim`` and ``miou``)."""
    size = abs(rho)
    strength = ("no useful" if size < 0.2 else "a weak" if size < 0.4 else "a moderate" if size < 0.6
                else "a strong")
    return (f"In this build the rank correlation between an image's reconstruction SSIM and the frozen-encoder "
            f"model's mIoU on it is **{rho:.2f}**: {strength} relation. Mean reconstruction SSIM per species is "
            + ", ".join(f"{sp} {row.ssim:.2f}" for sp, row in by_species.iterrows())
            + "; mean mIoU " + ", ".join(f"{sp} {row.miou:.2f}" for sp, row in by_species.iterrows()) + ".")


def fusion_drop_words(label: str, drop: pd.Series) -> str:
    """Heading for a fusion model's worst images: on how many test images it is below the UNet from scratch
    (``drop``: UNet mIoU minus the model's, per image)."""
    return (f"**{label}**: where it falls furthest below the UNet from scratch "
            f"(on {int((drop > 0).sum())} of {len(drop)} test images it is worse).")


def overfitting_words(label: str, sign: Mapping[str, Any]) -> str:
    """A model's validation-loss curve in words, from :func:`petseg.evaluation.failures.overfitting_signs`."""
    verdict = "rose after its minimum" if sign["val_loss_rise"] > 0 else "did not rise after its minimum"
    return (f"**{label}**: validation loss lowest at epoch {sign['best_val_loss_epoch']} of {sign['epochs']}, "
            f"then {verdict} (by {sign['val_loss_rise']:.3f}); final validation - training loss gap "
            f"{sign['final_gap']:.3f}.")


def overfitting_scale_words(train_images: int, trainable: Mapping[str, int]) -> str:
    """How many training images this build has and how many trainable parameters each model fits to them
    (label -> count), most first: the ratio a memorising model exploits."""
    ranked = sorted(trainable.items(), key=lambda item: item[1], reverse=True)
    return (f"This build trains on **{train_images:,} training images**. Trainable parameters, most first: "
            + "; ".join(f"{label} {count:,} ({count / max(train_images, 1):,.0f} per training image)"
                        for label, count in ranked) + ".")


# chapter 8: robustness


def input_size_words(sizes: Mapping[str, int], shown: int) -> str:
    """At which size the perturbation examples are drawn (``shown`` px) and each model's own input size
    (label -> px), to which the perturbed photograph is resized and padded."""
    return (f"Drawn at {shown} x {shown} px. Every model gets the perturbed photograph resized and padded to "
            "its own input size: " + ", ".join(f"{label} {size} px" for label, size in sizes.items()) + ".")


def sweep_words(description: str, note: str, seed: int, runs: Iterable[Run], profile: str,
                left_out: Sequence[str] = ()) -> str:
    """What the robustness sweep runs on: the data, its images (``note``), the run folders with ``seed``, and
    the models ``left_out`` of this profile's sweep (labels)."""
    text = (f"{description} The sweep uses **{note}**; models: the runs with seed {seed} ({_folders(runs)}).")
    if left_out:
        text += (f" Not in this `{profile}` sweep: {', '.join(left_out)} (random weights, a CPU smoke run at "
                 "chance even on clean images; the `full` profile includes it).")
    return text


def sweep_size_words(table: pd.DataFrame, models: int, seconds: float) -> str:
    """The sweep table's size (rows, models x perturbations x levels) and how long this build took for it."""
    levels = table.groupby("perturbation").level_index.nunique().max()
    return (f"{len(table)} rows ({models} models x {table.perturbation.nunique()} perturbations x {levels} "
            f"levels) in {seconds:.0f} s in this build (stored sweeps are reused; model time summed over "
            f"conditions when computed: {table.seconds.sum():.0f} s).")


def robustness_words(summary: pd.DataFrame, note: str) -> str:
    """The perturbation that costs most mean Dice on average and the model with the highest mean Dice over
    all conditions, from :func:`petseg.evaluation.robustness.summary`'s table (its ``drop`` and
    ``mean over levels`` columns); ``note`` says which images."""
    from petseg.evaluation.robustness import LEVELS

    order = [name for name in LEVELS if name in set(summary.perturbation)]
    drops = summary.pivot(index="perturbation", columns="model", values="drop").loc[order]
    mean_over_levels = summary.pivot(index="perturbation", columns="model", values="mean over levels").loc[order]
    hardest = drops.mean(axis=1).idxmax()
    most_robust = mean_over_levels.mean(axis=0).idxmax()
    conditions = sum(len(LEVELS[name]) for name in order)
    return (f"In this build the perturbation that costs the models most mean Dice on average is "
            f"**{hardest.replace('_', ' ')}** (mean drop {drops.loc[hardest].mean():.3f}); the model with the "
            f"highest mean Dice averaged over all {conditions} conditions is **{most_robust}** "
            f"({mean_over_levels[most_robust].mean():.3f}). These are {note}, one seed per model.")


def no_sweep_reference_words(profile: str, note: str) -> str:
    """Said when no ``full``-profile robustness sweep has been recorded: every curve is this build's."""
    return ("**No reference run has been recorded yet**: every curve on this page is from this build's "
            f"`{profile}` profile ({note}).")
