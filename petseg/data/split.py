"""Train / validation / test split.

- test = the official ``test.txt`` (never touched by training or model selection);
- validation = ``val_fraction`` of the official ``trainval.txt``, drawn per breed (so the species ratio
  is kept too), seeded; train = the rest of trainval.

A dataset without official split lists (course layout without ``TrainVal``/``Test`` folders) gets a
stratified 20 % test split first. Images listed in neither official file stay out of every split.

Duplicate photographs (:mod:`petseg.data.duplicates`) never straddle two splits: a group is drawn as one
unit when validation (or a missing test list) is held out, and where the *official* lists put copies of one
photograph in both trainval and test, the test list is kept as it is and the trainval copies are left out
of training and validation (``Split.dropped_duplicates``): the test split stays the official one.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from petseg.data.layout import Sample

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    """Lists of sample stems per split, plus how they were drawn."""

    train: list[str]
    val: list[str]
    test: list[str]
    seed: int
    val_fraction: float
    test_source: str  # "official test.txt" or "stratified <fraction> of all"
    unsplit: list[str] = field(default_factory=list)
    dropped_duplicates: list[str] = field(default_factory=list)  # trainval copies of a test photograph

    def __getitem__(self, name: str) -> list[str]:
        if name not in SPLITS:
            raise KeyError(f"split must be one of {SPLITS}, got {name!r}")
        return getattr(self, name)

    def sizes(self) -> dict[str, int]:
        return {name: len(self[name]) for name in SPLITS}

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> Split:
        return cls(**json.loads(Path(path).read_text()))


def stratified_holdout(stems: list[str], strata: list[str], fraction: float, seed: int,
                       groups: Mapping[str, str] | None = None) -> tuple[list[str], list[str]]:
    """Split ``stems`` into (kept, held out) with ``fraction`` of every stratum held out.

    Each stratum holds out ``round(fraction * n)`` items (at least one when n >= 2), chosen by a
    seeded shuffle of its sorted stems, so the result does not depend on input order. ``groups`` maps a
    stem to its duplicate group's name (:func:`petseg.data.duplicates.group_of`): a group is one item,
    kept or held out whole.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if len(stems) != len(strata):
        raise ValueError("stems and strata differ in length")
    groups = groups or {}
    members: dict[str, list[str]] = defaultdict(list)
    stratum_of: dict[str, str] = {}
    for stem, stratum in zip(stems, strata, strict=True):
        unit = groups.get(stem, stem)
        members[unit].append(stem)
        stratum_of.setdefault(unit, stratum)
    by_stratum: dict[str, list[str]] = defaultdict(list)
    for unit, stratum in stratum_of.items():
        by_stratum[stratum].append(unit)
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for stratum in sorted(by_stratum):
        units = sorted(by_stratum[stratum])
        order = rng.permutation(len(units))
        n_held = round(fraction * len(units))
        if len(units) >= 2:
            n_held = min(max(n_held, 1), len(units) - 1)
        held += [stem for i in order[:n_held] for stem in members[units[i]]]
        kept += [stem for i in order[n_held:] for stem in members[units[i]]]
    return sorted(kept), sorted(held)


def stratified_subset(stems: list[str], strata: list[str], max_count: int | None, seed: int) -> list[str]:
    """At most ``max_count`` of ``stems``, the same fraction of every stratum (all of them when they fit or
    ``max_count`` is None); seeded, sorted."""
    if max_count is None or len(stems) <= max_count:
        return sorted(stems)
    if max_count < 1:
        raise ValueError(f"max_count must be >= 1 or None, got {max_count}")
    return stratified_holdout(stems, strata, max_count / len(stems), seed)[1]


def make_split(samples: list[Sample], val_fraction: float = 0.2, seed: int = 0, test_fraction: float = 0.2,
               duplicates: Sequence[Sequence[str]] = ()) -> Split:
    """Split usable samples (see module doc); the result is checked with :func:`check_disjoint`."""
    from petseg.data.duplicates import group_of

    groups = group_of(duplicates)
    has_official = any(s.official_split is not None for s in samples)
    dropped: list[str] = []
    if has_official:
        trainval = [s for s in samples if s.official_split == "trainval"]
        test = sorted(s.stem for s in samples if s.official_split == "test")
        unsplit = sorted(s.stem for s in samples if s.official_split is None)
        test_source = "official test list"
        in_test = {groups[stem] for stem in test if stem in groups}
        left_out = {s.stem for s in trainval if groups.get(s.stem) in in_test}
        dropped = sorted(left_out)
        trainval = [s for s in trainval if s.stem not in left_out]
    else:
        rest, test = stratified_holdout([s.stem for s in samples], [s.breed for s in samples], test_fraction, seed,
                                        groups)
        keep = set(rest)
        trainval = [s for s in samples if s.stem in keep]
        unsplit = []
        test_source = f"stratified {test_fraction:.0%} of all (no official split in this dataset)"
    if trainval:
        train, val = stratified_holdout([s.stem for s in trainval], [s.breed for s in trainval], val_fraction, seed,
                                        groups)
    else:  # a test-only dataset (e.g. a user's own labelled photos to score a checkpoint on)
        train, val = [], []
    split = Split(train=train, val=val, test=test, seed=seed, val_fraction=val_fraction,
                  test_source=test_source, unsplit=unsplit, dropped_duplicates=dropped)
    check_disjoint(split)
    check_groups(split, duplicates)
    return split


def check_groups(split: Split, duplicates: Sequence[Sequence[str]]) -> None:
    """Raise ValueError if copies of one photograph are in two splits."""
    where = {stem: name for name in SPLITS for stem in split[name]}
    for group in duplicates:
        names = {where[stem] for stem in group if stem in where}
        if len(names) > 1:
            raise ValueError(f"duplicate photographs {list(group)} are split across {sorted(names)}")


def check_disjoint(split: Split) -> None:
    """Raise ValueError if any stem appears in two splits (or twice in one)."""
    seen: dict[str, str] = {}
    for name in SPLITS:
        for stem in split[name]:
            if stem in seen:
                raise ValueError(f"{stem!r} is in both {seen[stem]!r} and {name!r}: the splits leak")
            seen[stem] = name
