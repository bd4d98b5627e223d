"""Train / validation / test split.

- test = the official ``test.txt`` (never touched by training or model selection);
- validation = ``val_fraction`` of the official ``trainval.txt``, drawn per breed (so the species ratio
  is kept too), seeded; train = the rest of trainval.

A dataset without official split lists (course layout without ``TrainVal``/``Test`` folders) gets a
stratified 20 % test split first. Images listed in neither official file stay out of every split.
"""

from __future__ import annotations

import json
from collections import defaultdict
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


def stratified_holdout(stems: list[str], strata: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Split ``stems`` into (kept, held out) with ``fraction`` of every stratum held out.

    Each stratum holds out ``round(fraction * n)`` items (at least one when n >= 2), chosen by a
    seeded shuffle of its sorted stems, so the result does not depend on input order.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if len(stems) != len(strata):
        raise ValueError("stems and strata differ in length")
    groups: dict[str, list[str]] = defaultdict(list)
    for stem, stratum in zip(stems, strata, strict=True):
        groups[stratum].append(stem)
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for stratum in sorted(groups):
        members = sorted(groups[stratum])
        order = rng.permutation(len(members))
        n_held = round(fraction * len(members))
        if len(members) >= 2:
            n_held = min(max(n_held, 1), len(members) - 1)
        held += [members[i] for i in order[:n_held]]
        kept += [members[i] for i in order[n_held:]]
    return sorted(kept), sorted(held)


def make_split(samples: list[Sample], val_fraction: float = 0.2, seed: int = 0, test_fraction: float = 0.2) -> Split:
    """Split usable samples (see module doc); the result is checked with :func:`check_disjoint`."""
    has_official = any(s.official_split is not None for s in samples)
    if has_official:
        trainval = [s for s in samples if s.official_split == "trainval"]
        test = sorted(s.stem for s in samples if s.official_split == "test")
        unsplit = sorted(s.stem for s in samples if s.official_split is None)
        test_source = "official test list"
    else:
        rest, test = stratified_holdout([s.stem for s in samples], [s.breed for s in samples], test_fraction, seed)
        keep = set(rest)
        trainval = [s for s in samples if s.stem in keep]
        unsplit = []
        test_source = f"stratified {test_fraction:.0%} of all (no official split in this dataset)"
    train, val = stratified_holdout([s.stem for s in trainval], [s.breed for s in trainval], val_fraction, seed)
    split = Split(train=train, val=val, test=test, seed=seed, val_fraction=val_fraction,
                  test_source=test_source, unsplit=unsplit)
    check_disjoint(split)
    return split


def check_disjoint(split: Split) -> None:
    """Raise ValueError if any stem appears in two splits (or twice in one)."""
    seen: dict[str, str] = {}
    for name in SPLITS:
        for stem in split[name]:
            if stem in seen:
                raise ValueError(f"{stem!r} is in both {seen[stem]!r} and {name!r}: the splits leak")
            seen[stem] = name
