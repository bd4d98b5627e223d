"""One call from a data path to ready Datasets: :func:`prepare_data`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from petseg.config_files import check_data_settings, data_settings, merge
from petseg.data.cache import PreprocessedCache, build_cache, default_cache_dir
from petseg.data.dataset import PetSegDataset, balancing_multipliers
from petseg.data.labels import check_species_multipliers
from petseg.data.layout import DatasetNotFoundError, data_root_from_env, find_dataset_root, index_dataset
from petseg.data.split import Split, make_split, stratified_subset
from petseg.data.transforms import CheckedAugmentation
from petseg.data.validate import LoadedPair, ValidationReport, check_dataset, load_pair

OFFICIAL_TEST_IMAGES = 3669  # lines of the official annotations/test.txt
# A size lowered to the data's own resolution (``cap_at_data_size``) is rounded down to a multiple of this, so
# that every model's encoder takes it (the UNets need multiples of 32, 64 with the strided stem).
DATA_SIZE_MULTIPLE = 64


def default_download_dir() -> Path:
    return default_cache_dir() / "oxford-iiit-pet"


def resolve_data_root(data: str | Path | None = None, download: bool = True) -> Path:
    """Where the dataset is: ``data``, else ``$PETSEG_DATA``, else the download folder.

    With neither given and no finished download, downloads the official archives when ``download``
    is true (online), and raises :class:`petseg.data.fetch.OfflineError` at once when offline.
    """
    from petseg.data import download as dl

    explicit = data_root_from_env(data)
    if explicit is not None:
        return find_dataset_root(explicit)
    target = default_download_dir()
    if dl.is_complete_download(target):
        return find_dataset_root(target)
    if not download:
        raise DatasetNotFoundError(
            f"no dataset given: set PETSEG_DATA or pass --data (or allow the download into {target})"
        )
    return find_dataset_root(dl.download_dataset(target))


@dataclass
class PreparedData:
    """A checked, split and preprocessed dataset, ready to hand out Datasets."""

    root: Path
    config: dict
    report: ValidationReport
    split: Split
    split_path: Path
    cache: PreprocessedCache
    multipliers: dict[str, int] = field(default_factory=dict)
    subsets: dict[str, list[str]] = field(default_factory=dict)  # capped val/test stems (max_*_images)
    # why the preprocessed size differs from the profile's ``image_size`` ("" when it does not): see
    # :func:`data_image_size`
    image_size_note: str = ""

    def stems(self, split: str) -> list[str]:
        """The stems a model sees of ``split``: the whole split, or the stratified subset the profile caps it
        to (``max_val_images``, ``max_test_images`` in configs/data.yaml)."""
        return self.subsets.get(split, self.split[split])

    def subset_note(self, split: str = "test") -> str:
        """``""`` when ``split`` is evaluated whole, else a phrase naming the subset, e.g. "a breed-stratified
        subset of 500 of the 3,292 test images"."""
        used, whole = len(self.stems(split)), len(self.split[split])
        return "" if used == whole else f"a breed-stratified subset of {used:,} of the {whole:,} {split} images"

    def dataset(self, split: str, augment: bool | None = None) -> PetSegDataset:
        """The Dataset of ``split``; training data is augmented and multiplied unless ``augment=False``."""
        augment = (split == "train") if augment is None else augment
        if not augment:
            return PetSegDataset(self.cache, self.stems(split), seed=self.config["seed"])
        augmentation = CheckedAugmentation(strength=self.config["augmentation_strength"])
        return PetSegDataset(self.cache, self.stems(split), augmentation=augmentation,
                             multipliers=self.multipliers, seed=self.config["seed"])

    def original(self, stem: str) -> LoadedPair:
        """The decoded, checked original image and label mask of ``stem`` (full resolution)."""
        return load_pair(next(s for s in self.report.usable if s.stem == stem))

    def preprocessed(self, stem: str) -> tuple[np.ndarray, np.ndarray]:
        """The resized and padded image and mask of ``stem`` from the cache."""
        position = self.cache.position(stem)
        return np.array(self.cache.images[position]), np.array(self.cache.masks[position])

    def split_table(self) -> pd.DataFrame:
        """Images per breed (rows, with species) and split (columns), with totals."""
        breed_of = {s.stem: (s.species, s.breed) for s in self.report.usable}
        rows = [(*breed_of[stem], name) for name in ("train", "val", "test") for stem in self.split[name]]
        frame = pd.DataFrame(rows, columns=["species", "breed", "split"])
        table = pd.crosstab([frame.species, frame.breed], frame.split, margins=True, margins_name="total")
        return table[["train", "val", "test", "total"]]

    def balance_table(self, schemes: dict[str, dict[str, int] | None]) -> pd.DataFrame:
        """Training items per epoch and species under each multiplier scheme (None = no multiplication)."""
        species = [self.cache.species[self.cache.position(s)] for s in self.split.train]
        rows = {}
        for name, multipliers in schemes.items():
            rows[name] = {sp: species.count(sp) * ((multipliers or {}).get(sp, 1)) for sp in sorted(set(species))}
        return pd.DataFrame.from_dict(rows, orient="index")

    def describe(self) -> str:
        """One Markdown paragraph saying which data and settings this build used (no machine paths)."""
        totals = self.report.summary()["totals"]
        breeds = sorted({s.breed for s in self.report.usable})
        species = self.report.summary()["species"]
        sizes = self.split.sizes()
        longest = max((max(size) for size in self.cache.original_sizes), default=0)
        resized = (f" Its images are at most {longest} px on their longest side: a resized copy, not the official "
                   "download (whose photos are mostly 300-500 px)." if 0 < longest <= 256 else "")
        test = f"{sizes['test']:,} test images"
        if self.split.test_source == "official test list":
            test += (f" (the official test list, which names {OFFICIAL_TEST_IMAGES:,}: the others are not in this "
                     "copy or were rejected)" if sizes["test"] < OFFICIAL_TEST_IMAGES else " (the official test list)")
        evaluated = [note for note in (self.subset_note("val"), self.subset_note("test")) if note]
        caps = (f" Profile `{self.config['profile']}` validates and tests on " + " and ".join(evaluated) + "."
                if evaluated else "")
        duplicates = (f" {len(self.report.duplicates)} groups of duplicate photographs were found; each stays on one "
                      f"side of the split ({len(self.split.dropped_duplicates)} trainval copies of test photographs "
                      "left out)." if self.report.duplicates else "")
        return (
            f"This build used **{totals['usable_pairs']:,} usable images of {len(breeds)} breeds** "
            f"({', '.join(f'{n:,} {k}s' for k, n in species.items())}) of the Oxford-IIIT Pet dataset "
            f"(Parkhi et al., CVPR 2012, CC BY-SA 4.0; folder `{Path(self.root).name}`, {self.report.layout} layout, "
            f"data fingerprint `{self.report.fingerprint}`), split into {sizes['train']:,} train / "
            f"{sizes['val']:,} validation / {test}, preprocessed to {self.cache.size} x {self.cache.size} px "
            f"(profile `{self.config['profile']}`).{resized}{self._size_sentence()}{caps}{duplicates}"
        )

    def _size_sentence(self) -> str:
        note = self.image_size_note
        return f" Preprocessed at {note}." if note else ""


def prepare_data(data: str | Path | None = None, profile: str = "quick", *, image_size: int | None = None,
                 seed: int | None = None, cache_dir: Path | None = None, download: bool = True,
                 progress: bool = True, overrides: dict | None = None) -> PreparedData:
    """Find (or download) the data, check every file, split it, and build the preprocessed cache.

    ``overrides`` is merged over ``configs/data.yaml`` (e.g. a model config's ``data`` section).
    """
    check_data_settings(overrides)  # ConfigError naming the setting: unknown key, wrong type, out of range
    check_species_multipliers((overrides or {}).get("species_multipliers"))
    config = merge(data_settings(profile), overrides)
    if image_size is not None:
        config["image_size"] = image_size
    if seed is not None:
        config["seed"] = seed
    root = resolve_data_root(data, download=download)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    report = check_dataset(index_dataset(root), progress=progress, cache_dir=cache_dir)
    if not report.usable:
        raise ValueError(f"no usable image/mask pairs under {root}")
    split = make_split(report.usable, val_fraction=config["val_fraction"], seed=config["seed"],
                       test_fraction=config["test_fraction"], duplicates=report.duplicates)
    split_path = cache_dir / "splits" / f"{report.fingerprint}-seed{config['seed']}-val{config['val_fraction']}.json"
    split_path.parent.mkdir(parents=True, exist_ok=True)
    split.save(split_path)
    size, size_note = config["image_size"], ""
    if config["cap_at_data_size"]:
        size, size_note = data_image_size(config["image_size"], report)
    cache = build_cache(report, size, cache_dir, progress=progress)
    multipliers = config["species_multipliers"]
    if multipliers == "balance":
        train_species = [cache.species[cache.position(s)] for s in split.train]
        counts = {name: train_species.count(name) for name in sorted(set(train_species))}
        multipliers = balancing_multipliers(counts) if counts else {}
    breed_of = {s.stem: s.breed for s in report.usable}
    subsets = {}
    for name in ("val", "test"):
        stems = stratified_subset(split[name], [breed_of[s] for s in split[name]], config[f"max_{name}_images"],
                                  config["seed"])
        if len(stems) < len(split[name]):
            subsets[name] = stems
    return PreparedData(root=root, config=config, report=report, split=split, split_path=split_path,
                        cache=cache, multipliers=dict(multipliers or {}), subsets=subsets,
                        image_size_note=size_note)


def longest_image_side(report: ValidationReport) -> int:
    """The longest side, in px, of the dataset's largest usable image (read from the file headers only)."""
    from PIL import Image

    longest = 0
    for sample in report.usable:
        with Image.open(sample.image_path) as image:
            longest = max(longest, *image.size)
    return longest


def data_image_size(requested: int, report: ValidationReport) -> tuple[int, str]:
    """``(size, note)``: the size to preprocess ``report``'s images to when upsampling is to be avoided
    (``cap_at_data_size``), and why it is not ``requested`` ("" when it is).

    When every image is smaller than ``requested`` on its longest side, the data's own resolution: that side,
    rounded down to a multiple of ``DATA_SIZE_MULTIPLE`` (e.g. 256 for the 256 px copy under the full profile's
    512; at least ``DATA_SIZE_MULTIPLE``); otherwise ``requested``.
    """
    longest = longest_image_side(report)
    size = max(DATA_SIZE_MULTIPLE, longest // DATA_SIZE_MULTIPLE * DATA_SIZE_MULTIPLE)
    if longest >= requested or size >= requested:
        return requested, ""
    if size <= longest:
        return size, (f"{size} px, the data's own resolution, instead of the configured {requested} px: every image "
                      f"is at most {longest} px on its longest side, so none was upsampled")
    return size, (f"{size} px instead of the configured {requested} px: every image is at most {longest} px on its "
                  f"longest side, and {size} px is the smallest size this rule gives")
