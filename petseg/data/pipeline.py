"""One call from a data path to ready Datasets: :func:`prepare_data`."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from petseg.data.cache import PreprocessedCache, build_cache, default_cache_dir
from petseg.data.dataset import PetSegDataset, balancing_multipliers
from petseg.data.layout import DatasetNotFoundError, data_root_from_env, find_dataset_root, index_dataset
from petseg.data.split import Split, make_split
from petseg.data.transforms import CheckedAugmentation
from petseg.data.validate import ValidationReport, check_dataset

PROFILES = ("quick", "full")


def load_config(name: str, profile: str) -> dict:
    """Read ``petseg/configs/<name>.yaml`` and merge the chosen profile's keys over the top level."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    text = resources.files("petseg").joinpath("configs", f"{name}.yaml").read_text()
    config = yaml.safe_load(text)
    profiles = config.pop("profiles", {})
    return {**config, **profiles.get(profile, {}), "profile": profile}


def default_download_dir() -> Path:
    return default_cache_dir() / "oxford-iiit-pet"


def resolve_data_root(data: str | Path | None = None, download: bool = True) -> Path:
    """Where the dataset is: ``data``, else ``$PETSEG_DATA``, else the download folder.

    With neither given and no finished download, downloads the official archives when ``download``
    is true (online), and raises :class:`petseg.data.download.OfflineError` at once when offline.
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

    def dataset(self, split: str, augment: bool | None = None) -> PetSegDataset:
        """The Dataset of ``split``; training data is augmented and multiplied unless ``augment=False``."""
        augment = (split == "train") if augment is None else augment
        if not augment:
            return PetSegDataset(self.cache, self.split[split], seed=self.config["seed"])
        augmentation = CheckedAugmentation(strength=self.config["augmentation_strength"])
        return PetSegDataset(self.cache, self.split[split], augmentation=augmentation,
                             multipliers=self.multipliers, seed=self.config["seed"])


def prepare_data(data: str | Path | None = None, profile: str = "quick", *, image_size: int | None = None,
                 seed: int | None = None, cache_dir: Path | None = None, download: bool = True,
                 progress: bool = True) -> PreparedData:
    """Find (or download) the data, check every file, split it, and build the preprocessed cache."""
    config = load_config("data", profile)
    if image_size is not None:
        config["image_size"] = image_size
    if seed is not None:
        config["seed"] = seed
    root = resolve_data_root(data, download=download)
    report = check_dataset(index_dataset(root), progress=progress)
    if not report.usable:
        raise ValueError(f"no usable image/mask pairs under {root}")
    split = make_split(report.usable, val_fraction=config["val_fraction"], seed=config["seed"],
                       test_fraction=config["test_fraction"])
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    split_path = cache_dir / "splits" / f"{report.fingerprint}-seed{config['seed']}-val{config['val_fraction']}.json"
    split_path.parent.mkdir(parents=True, exist_ok=True)
    split.save(split_path)
    cache = build_cache(report, config["image_size"], cache_dir, progress=progress)
    multipliers = config["species_multipliers"]
    if multipliers == "balance":
        train_species = [cache.species[cache.position(s)] for s in split.train]
        counts = {name: train_species.count(name) for name in sorted(set(train_species))}
        multipliers = balancing_multipliers(counts)
    return PreparedData(root=root, config=config, report=report, split=split, split_path=split_path,
                        cache=cache, multipliers=dict(multipliers or {}))
