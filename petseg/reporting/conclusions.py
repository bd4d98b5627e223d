"""The conclusions chapter: one row per claim of the original study, with our reference number and a verdict.

Every number and ordering here is read from the recorded reference runs (``book/reference_run/<profile>/``):
a record's per-image table gives a 95% bootstrap interval (:mod:`petseg.reporting.evidence`), two records of
models scored on the same images give a paired comparison. A record without a per-image table (made before
record format 2) gives its point estimate only, and the verdict says that its interval is pending. The quick
build's numbers never decide a verdict; :func:`this_build_words` sets them beside it.

Verdicts: **reproduced**, **not reproduced**, **reversed** (the opposite holds, beyond the interval),
**exceeded** (our interval lies above the study's number by more than :data:`SAME_WITHIN`), **not testable
here** (and why), **pending** (the record needed is not recorded yet).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from petseg.reporting.evidence import Interval, compare, compare_words, has_confusion, interval
from petseg.reporting.recorded import _RECORDED, load_per_image, load_reference_results
from petseg.reporting.study import STUDY_AUTOENCODER, STUDY_RESULTS

__all__ = ["SAME_WITHIN", "Claim", "chapter_verdicts", "claims", "claims_table", "number_verdict",
           "study_row_problems", "this_build_words"]

# Our data (the 256 px copy, 128 px training) and the study's (512 px, its own split) differ, so a number within
# this much of the study's counts as the same result; the interval must lie beyond it to call it different.
SAME_WITHIN = 0.05


@dataclass(frozen=True)
class Claim:
    """One row of the conclusions table."""

    claim: str
    study: str
    ours: str
    verdict: str
    why: str


def number_verdict(study_value: float, ours: Interval, higher_is_better: bool = True) -> str:
    """'reproduced' when ``ours`` comes within :data:`SAME_WITHIN` of ``study_value``; 'exceeded' when its whole
    interval is better by more; 'not reproduced' when worse by more."""
    if ours.low > study_value + SAME_WITHIN:
        return "exceeded" if higher_is_better else "not reproduced"
    if ours.high < study_value - SAME_WITHIN:
        return "not reproduced" if higher_is_better else "exceeded"
    return "reproduced"


def study_row_problems(row: Mapping[str, float]) -> list[str]:
    """Internal inconsistencies of a quoted result row: a mean Dice below the mean IoU cannot happen
    (Dice >= IoU for every class, hence for their means)."""
    problems = []
    if "mIoU" in row and "mDice" in row and row["mDice"] < row["mIoU"]:
        problems.append(f"its mDice {row['mDice']:.2f} is below its mIoU {row['mIoU']:.2f}, which no set of "
                        "predictions can give (Dice >= IoU for every class)")
    return problems


class _Records:
    """The reference records of one profile and their per-image tables, looked up by catalog key (seed 0)."""

    def __init__(self, profile: str, root: str | Path) -> None:
        self.profile, self.root = profile, Path(root)
        self.records = load_reference_results(profile, root)

    def record(self, key: str, seed: int = 0) -> dict[str, Any] | None:
        return self.records.get(f"{key}-s{seed}")

    def table(self, key: str, seed: int = 0) -> pd.DataFrame | None:
        return load_per_image(f"{key}-s{seed}", self.profile, self.root) if self.record(key, seed) else None

    def seeds(self, key: str) -> list[int]:
        return sorted(int(r["seed"]) for r in self.records.values() if r.get("key") == key and not r.get("label"))

    def spread(self, key: str, metric: str = "miou") -> float | None:
        values = [float(r["test"][metric]) for r in self.records.values()
                  if r.get("key") == key and not r.get("label") and metric in r.get("test", {})]
        return max(values) - min(values) if len(values) >= 2 else None

    def metric(self, key: str, metric: str = "miou") -> tuple[Interval | None, float | None]:
        """(interval, None) from the per-image table, else (None, point estimate from the record), else (None, None)."""
        record, table = self.record(key), self.table(key)
        if record is None:
            return None, None
        if has_confusion(table) or (table is not None and metric in table):
            return interval(table, metric), None
        return None, _point(record, metric)


def _point(record: Mapping[str, Any], metric: str) -> float | None:
    test = record.get("test", {})
    if metric in test and not isinstance(test[metric], list):
        return float(test[metric])
    kind, _, name = metric.partition("_")
    names = test.get("class_names", [])
    if kind in ("iou", "dice") and name in names:
        return float(test[kind][names.index(name)])
    return None


def _ours(found: tuple[Interval | None, float | None], what: str) -> str:
    estimate, point = found
    if estimate is not None:
        return f"{what} {estimate.words()}"
    if point is not None:
        return f"{what} {point:.3f} (no interval recorded)"
    return "not recorded"


def _number_claim(claim: str, study_value: float, study_words: str, found: tuple[Interval | None, float | None],
                  what: str, why: str) -> Claim:
    estimate, point = found
    if estimate is not None:
        verdict = number_verdict(study_value, estimate)
    elif point is not None:
        provisional = number_verdict(study_value, Interval(point, point, point, 0))
        verdict = f"pending (point estimate alone: {provisional})"
    else:
        verdict = "pending (not recorded)"
    return Claim(claim, study_words, _ours(found, what), verdict, why)


def _ranking_claim(claim: str, study_words: str, records: _Records, better: str, worse: str, labels: Mapping[str, str],
                   why: str, metric: str = "miou") -> Claim:
    """'``better`` beats ``worse``' as the study claims: reproduced, reversed or not distinguishable."""
    table_better, table_worse = records.table(better), records.table(worse)
    if not (has_confusion(table_better) and has_confusion(table_worse)):
        missing = [labels[k] for k, t in ((better, table_better), (worse, table_worse)) if not has_confusion(t)]
        known = [_ours(found, labels[k]) for k in (better, worse) if (found := records.metric(k, metric)) != (None, None)]
        return Claim(claim, study_words, "; ".join(known) if known else "not recorded",
                     "pending (no per-image table for " + ", ".join(missing) + ")", why)
    spreads = [s for s in (records.spread(better, metric), records.spread(worse, metric)) if s is not None]
    comparison = compare(labels[better], table_better, labels[worse], table_worse, metric,
                         spread=max(spreads) if spreads else None)
    if comparison.winner == labels[better]:
        verdict = "reproduced"
    elif comparison.winner == labels[worse]:
        verdict = "reversed"
    else:
        verdict = "not reproduced (not distinguishable)"
    return Claim(claim, study_words, compare_words(comparison), verdict, why)


class _Labels(dict):
    """Catalog key -> the catalog's label for readers (one name per model everywhere)."""

    def __missing__(self, key: str) -> str:
        from petseg.catalog import CATALOG

        return CATALOG[key].label if key in CATALOG else key


LABELS = _Labels()
DIFFERENCES = ("our data is the 256 px copy of 37 breeds, trained at 128 px on 2 CPU cores; the study used the full "
               "dataset at 512 px")


def claims(profile: str = "standard", root: str | Path = _RECORDED) -> list[Claim]:
    """The study's claims, each with our reference evidence and a verdict (see the module docstring)."""
    records = _Records(profile, root)
    study = STUDY_RESULTS
    rows = [
        _number_claim(f"A custom 6-stage UNet reaches test mIoU {study['unet']['mIoU']:.2f}", study["unet"]["mIoU"],
                      f"mIoU {study['unet']['mIoU']:.2f}", records.metric("unet"), "mIoU", DIFFERENCES),
        _number_claim(f"The autoencoder reconstructs well (SSIM {STUDY_AUTOENCODER['SSIM']:.2f})", STUDY_AUTOENCODER["SSIM"],
                      f"SSIM {STUDY_AUTOENCODER['SSIM']:.2f}", records.metric("autoencoder", "ssim"), "SSIM",
                      f"the reference autoencoder trained for {_epochs(records, 'autoencoder')} epochs; " + DIFFERENCES),
        _ranking_claim("Reusing the autoencoder's encoder segments worse than training from scratch",
                       f"AE+UNet mIoU {study['ae_unet']['mIoU']:.2f} vs UNet {study['unet']['mIoU']:.2f}", records,
                       "unet", "ae_unet_frozen", LABELS, "paired bootstrap over the same test images"),
        _cat_dice_claim(records),
        _stand_in(_ranking_claim("Fusing a global image vector (CLIP) at the bottleneck does not help the UNet",
                       f"CLIP+UNet mIoU {study['clip_unet']['mIoU']:.2f} vs UNet {study['unet']['mIoU']:.2f}",
                       records, "unet", "fusion_concat", LABELS,
                       "not testable as stated: no CLIP weights here; tested with an ImageNet EfficientNet-Lite0 "
                       "vector instead, which nearly encodes species (about 20 of the 25 dog breeds are ImageNet "
                       "classes)")),
        Claim(f"SAM 2 with point and box prompts segments pets best (pet-vs-background mIoU {study['sam2']['mIoU']:.3f})",
              f"mIoU {study['sam2']['mIoU']:.3f}", _sam2_words(records), "not testable here",
              "no SAM 2 checkpoints on these machines; our SAM 2 decoder on an ImageNet trunk is another model"),
        _confusion_claim(records),
        Claim("Class-specific augmentation (cats 5x, dogs 2x) balances the species", "a design choice, no number",
              _ablation_words(root), "not testable at reference scale yet",
              "recorded only as quick-profile, one-seed ablations without per-image tables"),
        Claim("Robustness to perturbations", "Dice under noise, blur, contrast, occlusion",
              "no reference sweep recorded", "pending (not recorded)",
              "the sweep runs in the quick build only (chapter 8)"),
    ]
    return rows


def _epochs(records: _Records, key: str) -> str:
    """The epochs a record trained for, as words ('an unknown number of' when not recorded)."""
    epochs = ((records.record(key) or {}).get("train_summary") or {}).get("epochs_completed")
    return str(epochs) if epochs is not None else "an unknown number of"


def _stand_in(claim: Claim) -> Claim:
    """A claim tested with a stand-in model: the verdict says so."""
    return Claim(claim.claim, claim.study, claim.ours, f"not testable as stated; with the stand-in: {claim.verdict}",
                 claim.why)


def _cat_dice_claim(records: _Records) -> Claim:
    found = records.metric("ae_unet_frozen", "dice_cat")
    estimate, point = found
    value = estimate.low if estimate is not None else point
    if value is None:
        verdict = "pending (not recorded)"
    else:
        verdict = "not reproduced" if value > SAME_WITHIN else "reproduced"
        if estimate is None:
            verdict = f"pending (point estimate alone: {verdict})"
    return Claim(f"The AE+UNet never labels a cat (cat Dice {STUDY_AUTOENCODER['cat Dice']:.2f})", f"cat Dice {STUDY_AUTOENCODER['cat Dice']:.2f}",
                 _ours(found, "cat Dice"), verdict, "frozen encoder, the study's setting")


def _confusion_claim(records: _Records) -> Claim:
    table = records.table("unet")
    if not has_confusion(table):
        return Claim("Cats and dogs are confused with each other", "qualitative",
                     "the UNet's per-image table is not recorded yet", "pending (no per-image table)",
                     "the share of pet pixels given to the other species needs the per-image confusions")
    shares = table.assign(wrong=table["n_cat_as_dog"] + table["n_dog_as_cat"],
                          pet=table[[f"n_{t}_as_{p}" for t in ("cat", "dog") for p in ("background", "cat", "dog")]]
                          .sum(axis=1))
    estimate = interval(shares.assign(share=shares["wrong"] / shares["pet"].where(shares["pet"] > 0)), "share")
    verdict = "reproduced" if estimate.low > SAME_WITHIN else "not reproduced"
    return Claim("Cats and dogs are confused with each other", "qualitative",
                 f"UNet: mean share of an image's pet pixels given to the other species {estimate.words()}", verdict,
                 f"'confused' taken as more than {SAME_WITHIN:.0%} of the pet's pixels")


def _sam2_words(records: _Records) -> str:
    record = records.record("sam2_effnet")
    if record is None:
        return "not recorded"
    click = record.get("test", {}).get("one_click", {}).get("iou", [None, None])[1]
    return (f"stand-in (SAM 2 decoder on EfficientNet-Lite0): 1-click pet IoU {click:.3f}" if click is not None
            else "recorded without a 1-click IoU")


def _ablation_words(root: str | Path) -> str:
    ablations = {r.get("label"): r for r in load_reference_results("ablations", root).values() if r.get("key") == "unet"}
    study = ablations.get("study-multipliers")
    if study is None:
        return "no ablation recorded"
    return (f"quick ablation with the study's multipliers: mIoU {float(study['test']['miou']):.3f} "
            f"(one seed, {study.get('profile')} profile)")


CHAPTER_CLAIMS = {  # which claims (by their first words) each model chapter ends with
    "02_unet": ("A custom 6-stage UNet", "Cats and dogs are confused", "Class-specific augmentation"),
    "03_autoencoder": ("The autoencoder reconstructs", "Reusing the autoencoder", "The AE+UNet never labels"),
    "04_fusion_unet": ("Fusing a global image vector",),
    "05_sam2": ("SAM 2 with point and box",),
    "08_robustness": ("Robustness to perturbations",),
}


def chapter_verdicts(chapter: str, profile: str = "standard", root: str | Path = _RECORDED) -> str:
    """Markdown for the end of a model chapter: its rows of the conclusions table (claim, study, ours, verdict)."""
    starts = CHAPTER_CLAIMS.get(chapter)
    if not starts:
        raise ValueError(f"no claim of the study belongs to chapter {chapter!r}; known: {', '.join(CHAPTER_CLAIMS)}")
    rows = [c for c in claims(profile, root) if c.claim.startswith(starts)]
    lines = [f"- **{c.claim}** (study: {c.study}). Reference run: {c.ours.rstrip('.')}. **Verdict: {c.verdict}** "
             f"({c.why})."
             for c in rows]
    return ("**This chapter's rows of the conclusions table** (reference records of the `" + profile
            + "` profile; the full table and the rules for a verdict are in the conclusions chapter):\n\n"
            + "\n".join(lines))


def recorded_comparisons(pairs: Sequence[tuple[str, str]], metric: str = "miou", profile: str = "standard",
                         root: str | Path = _RECORDED) -> str:
    """Markdown: one line per pair of catalog models, the paired comparison of their reference records
    (:func:`petseg.reporting.evidence.compare_words`), or why there is none yet (no record, no per-image table)."""
    records = _Records(profile, root)
    lines = []
    for a, b in pairs:
        table_a, table_b = records.table(a), records.table(b)
        if has_confusion(table_a) and has_confusion(table_b):
            spreads = [s for s in (records.spread(a, metric), records.spread(b, metric)) if s is not None]
            comparison = compare(LABELS[a], table_a, LABELS[b], table_b, metric, max(spreads) if spreads else None)
            lines.append("- " + compare_words(comparison))
            continue
        points = {k: records.metric(k, metric)[1] for k in (a, b)}
        known = ", ".join(f"{LABELS[k]} {v:.3f}" for k, v in points.items() if v is not None)
        missing = [LABELS[k] for k, t in ((a, table_a), (b, table_b)) if not has_confusion(t)]
        lines.append(f"- {LABELS[a]} against {LABELS[b]}: **no verdict yet**: no per-image table recorded for "
                     f"{', '.join(missing)}" + (f" (point estimates only: {known}; without intervals they rank "
                                                "nothing)" if known else "") + ".")
    return "\n".join(lines)


def claims_table(profile: str = "standard", root: str | Path = _RECORDED) -> pd.DataFrame:
    """:func:`claims` as a table for the chapter."""
    return pd.DataFrame([asdict(c) for c in claims(profile, root)]).set_index("claim")


def this_build_words(reference: float | None, this_build: float | None, what: str, steps: str) -> str:
    """One line setting this build's number beside the reference: agrees within :data:`SAME_WITHIN` or not, and
    why it may not (``steps``: its training budget against the reference's)."""
    if this_build is None:
        return f"This build has no {what} to compare."
    if reference is None:
        return f"This build: {what} {this_build:.3f}; no reference recorded to compare it with."
    agrees = abs(this_build - reference) <= SAME_WITHIN
    return (f"This build: {what} {this_build:.3f} against the reference's {reference:.3f}: "
            + ("agrees." if agrees else f"does not agree ({steps})."))


def probe_table(profile: str = "standard", root: str | Path = _RECORDED) -> pd.DataFrame:
    """The linear species probe of every reference record that holds one: per model, the encoder before and after
    training, balanced accuracy (the mean of the cat and the dog accuracy) and accuracy with the bounds of their
    95% intervals, and the accuracy of always guessing the majority species (empty when none is recorded)."""
    rows = []
    for record in load_reference_results(profile, root).values():
        for stage, probe in (record.get("species_probe") or {}).items():
            low, high = probe.get("balanced_interval", [float("nan")] * 2)
            rows.append({"model": LABELS[record["key"]], "seed": record.get("seed"), "encoder": stage,
                         "what": probe["encoder"], "balanced accuracy": round(probe["balanced_accuracy"], 3),
                         "balanced low": round(low, 3), "balanced high": round(high, 3),
                         "accuracy": round(probe["accuracy"], 3), "accuracy low": round(probe["interval"][0], 3),
                         "accuracy high": round(probe["interval"][1], 3),
                         "always the majority": round(probe["majority_accuracy"], 3),
                         "test images": probe["test_images"]})
    columns = ["model", "seed", "encoder", "what", "balanced accuracy", "balanced low", "balanced high", "accuracy",
               "accuracy low", "accuracy high", "always the majority", "test images"]
    return pd.DataFrame(rows, columns=columns)


def _balanced_interval(row: pd.Series) -> str:
    """'0.509 to 0.539': a probe row's balanced-accuracy interval."""
    return f"{row['balanced low']:.3f} to {row['balanced high']:.3f}"


def probe_words(table: pd.DataFrame) -> str:
    """What the recorded species probe says about the paradox, in balanced accuracy (chance: 0.5): whether the
    autoencoder's encoder separates the species better than a random encoder of the same shape, and how the UNet's
    own encoder does (intervals that overlap rank nothing)."""
    if table.empty:
        return ("**No reference record holds the species probe yet.** `petseg record ae_unet_frozen unet "
                "--profile standard` records it with the models.")
    rows = table.set_index(["model", "encoder"])
    words = []
    autoencoder, unet = LABELS["autoencoder"], LABELS["unet"]
    if (autoencoder, "trained") in rows.index and (autoencoder, "initial") in rows.index:
        trained, initial = rows.loc[(autoencoder, "trained")], rows.loc[(autoencoder, "initial")]
        if trained["balanced low"] > initial["balanced high"]:
            relation = "**above** that of the same encoder with random weights"
        elif trained["balanced high"] < initial["balanced low"]:
            relation = "**below** that of the same encoder with random weights"
        else:
            relation = "**not distinguishable** from that of the same encoder with random weights (the intervals overlap)"
        words.append(f"The autoencoder's encoder tells cats from dogs with a balanced accuracy of "
                     f"{trained['balanced accuracy']:.3f} ({_balanced_interval(trained)}; chance is 0.5), {relation} "
                     f"({initial['balanced accuracy']:.3f}, {_balanced_interval(initial)}).")
    if (unet, "trained") in rows.index:
        words.append(f"The UNet's own encoder, trained to label cats and dogs, reaches "
                     f"{rows.loc[(unet, 'trained'), 'balanced accuracy']:.3f} "
                     f"({_balanced_interval(rows.loc[(unet, 'trained')])}).")
    return " ".join(words) or "The probe is recorded, but not for the autoencoder or the UNet."


def beyond_study_words(profile: str = "standard", root: str | Path = _RECORDED) -> str:
    """Markdown bullets: what the reference run measured that the study did not (the pretrained-encoder
    baseline, clicks to 90% IoU, calibration, the hardest breeds), each from the records or said to be missing."""
    records = _Records(profile, root)
    lines = ["- **A pretrained encoder.** " + recorded_comparisons([("efficientnet_unet", "unet")], "miou", profile,
                                                                  root)[2:]]
    sam2 = records.record("sam2_effnet")
    noc = (sam2 or {}).get("test", {}).get("interactive", {}).get("noc90")
    lines.append("- **Clicks to 90% IoU.** " + (f"The prompted {LABELS['sam2_effnet']} needs {float(noc):.2f} "
                                                "clicks on average (NoC@90, 20 at most) on the reference test split."
                                                if noc is not None else "No prompted model is recorded."))
    eces = {LABELS[r["key"]]: r["calibration"]["ece"] for r in records.records.values() if r.get("calibration")}
    lines.append("- **Calibration.** " + ("Expected calibration error on the reference test split: "
                                          + ", ".join(f"{k} {v:.3f}" for k, v in eces.items()) + "."
                                          if eces else "No record holds calibration bins yet."))
    key = next((k for k in ("efficientnet_unet", "unet") if has_confusion(records.table(k))), None)
    table = records.table(key) if key else None
    if table is not None and {"breed", "miou"} <= set(table.columns):
        worst = table.groupby("breed")["miou"].mean().nsmallest(3)
        lines.append(f"- **The hardest breeds** for the {LABELS[key]} (mean per-image mIoU on the reference test "
                     "split): " + ", ".join(f"{b} {v:.3f}" for b, v in worst.items()) + ".")
    else:
        lines.append("- **The hardest breeds.** No per-image table with breeds is recorded yet.")
    return "\n".join(lines)


def this_build_table(build: Mapping[str, Mapping[str, Any]], steps: Mapping[str, int] | None = None,
                     profile: str = "standard", root: str | Path = _RECORDED) -> pd.DataFrame:
    """This build's test mIoU (``build``: catalog key -> a run's ``results``) beside the reference record's, with
    one line each saying whether they agree within :data:`SAME_WITHIN` and why they may not (``steps``: this
    build's optimiser steps per key, against the reference's)."""
    records = _Records(profile, root)
    rows = []
    for key, results in build.items():
        ours = results.get("test", {}).get("miou")
        record = records.record(key)
        reference = _point(record, "miou") if record else None
        reference_steps = (record or {}).get("train_summary", {}).get("total_steps")
        budget = (f"{(steps or {}).get(key, '?')} optimiser steps in this build against {reference_steps} in the "
                  "reference" if reference_steps else "this build is trained for far fewer steps")
        rows.append({"model": LABELS[key], "reference mIoU": None if reference is None else round(reference, 3),
                     "this build mIoU": None if ours is None else round(float(ours), 3),
                     "agreement": this_build_words(reference, None if ours is None else float(ours), "mIoU", budget)})
    return pd.DataFrame(rows).set_index("model")
