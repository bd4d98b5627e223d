"""Find a dataset on disk and index its samples.

Two layouts are read:

- **official** (the Oxford download): ``images/*.jpg``, ``annotations/trimaps/*.png``,
  ``annotations/list.txt`` (with or without its ``#`` header), ``trainval.txt``, ``test.txt``.
- **course** (a layout some course handouts use): ``color/*.jpg`` + ``label/*.png`` with labels
  already 0/1/2/255, either directly under the root or under ``TrainVal/`` and ``Test/``.

Indexing only lists files; decoding and checking them is :mod:`petseg.data.validate`'s job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from petseg.data.labels import breed_from_stem, species_from_breed
from petseg.errors import MissingInputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DATA_ENV = "PETSEG_DATA"


@dataclass(frozen=True)
class Sample:
    """One image and its mask, as found on disk (not yet decoded)."""

    stem: str
    image_path: Path
    mask_path: Path | None
    breed: str
    species: str  # "cat" or "dog"
    mask_format: str  # "trimap" (official 1/2/3) or "labels" (course 0/1/2/255)
    official_split: str | None = None  # "trainval", "test" or None when the dataset names none
    listed: bool = True  # official layout: present in annotations/list.txt


@dataclass
class DatasetIndex:
    """Everything found under a dataset root."""

    root: Path
    layout: str
    samples: list[Sample]
    stray_files: list[tuple[str, str]] = field(default_factory=list)  # (relative path, why)
    notes: list[str] = field(default_factory=list)

    @property
    def has_official_split(self) -> bool:
        return any(s.official_split is not None for s in self.samples)

    def files(self) -> list[Path]:
        """Every file the index depends on (for fingerprinting)."""
        paths = [s.image_path for s in self.samples] + [s.mask_path for s in self.samples if s.mask_path]
        if self.layout == "official":
            paths += [p for p in (self.root / "annotations").glob("*.txt")]
        return sorted(set(paths))


class DatasetNotFoundError(MissingInputError):
    """No dataset of a known layout at the given path (a :class:`~petseg.errors.UserError`)."""


def detect_layout(root: Path) -> str | None:
    """Return "official", "course" or None for a folder."""
    root = Path(root)
    if (root / "images").is_dir() and (root / "annotations" / "trimaps").is_dir():
        return "official"
    if _course_parts(root):
        return "course"
    return None


def find_dataset_root(path: str | os.PathLike) -> Path:
    """The dataset root at ``path`` or one level below it (e.g. ``path/oxford-iiit-pet``)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetNotFoundError(f"{path} does not exist")
    if not path.is_dir():
        raise DatasetNotFoundError(f"{path} is a file, not a dataset folder (give the folder that holds images/ "
                                   "and annotations/, or color/ and label/)")
    candidates = [path] + sorted(p for p in path.iterdir() if p.is_dir())
    for candidate in candidates:
        if detect_layout(candidate):
            return candidate
    raise DatasetNotFoundError(
        f"{path} holds neither the official layout (images/ + annotations/trimaps/) "
        "nor the course layout (color/ + label/)"
    )


def data_root_from_env(data: str | os.PathLike | None = None) -> Path | None:
    """The path given explicitly, else ``$PETSEG_DATA``, else None."""
    value = data if data not in (None, "") else os.environ.get(DATA_ENV) or None
    return Path(value).expanduser() if value is not None else None


def parse_list_file(path: Path) -> tuple[dict[str, tuple[int, int, int]], list[str]]:
    """Parse ``list.txt``/``trainval.txt``/``test.txt``: stem -> (class id, species id, breed id).

    Lines starting with ``#`` (the official header) and blank lines are skipped; malformed lines are
    returned as problems instead of raising.
    """
    entries: dict[str, tuple[int, int, int]] = {}
    problems: list[str] = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split()
        try:
            class_id, species_id, breed_id = (int(p) for p in parts[1:4])
            if species_id not in (1, 2) or len(parts) != 4:
                raise ValueError
        except ValueError:
            problems.append(f"{path.name}:{number}: malformed line {text[:60]!r}")
            continue
        entries[parts[0]] = (class_id, species_id, breed_id)
    return entries, problems


def index_dataset(root: str | os.PathLike) -> DatasetIndex:
    """Index the dataset under ``root`` (either layout)."""
    root = find_dataset_root(root)
    if detect_layout(root) == "official":
        return _index_official(root)
    return _index_course(root)


def _species_and_breed(stem: str, listed_species: int | None) -> tuple[str, str]:
    breed = breed_from_stem(stem)
    if listed_species is not None:
        return ("cat" if listed_species == 1 else "dog"), breed
    return species_from_breed(breed), breed


def _not_an_image(path: Path) -> str | None:
    """Why a file in an image folder is not a candidate image (None if it is one)."""
    if path.name.startswith("._"):
        return "macOS metadata file"
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return f"not an image file ({path.suffix or 'no extension'})"
    return None


def _index_official(root: Path) -> DatasetIndex:
    annotations = root / "annotations"
    notes: list[str] = []
    listed: dict[str, tuple[int, int, int]] = {}
    if (annotations / "list.txt").exists():
        listed, problems = parse_list_file(annotations / "list.txt")
        notes += problems
    else:
        notes.append("annotations/list.txt missing: species taken from file names")
    split_of: dict[str, str] = {}
    for split_name in ("trainval", "test"):
        split_file = annotations / f"{split_name}.txt"
        if split_file.exists():
            entries, problems = parse_list_file(split_file)
            notes += problems
            for stem in entries:
                split_of.setdefault(stem, split_name)

    listed_species = {stem: entry[1] for stem, entry in listed.items()}
    found, stray = _scan_images(root / "images", root, listed_species)
    samples = [
        Sample(stem=stem, image_path=path, breed=breed, species=species, mask_format="trimap",
               mask_path=_existing(annotations / "trimaps" / f"{stem}.png"),
               official_split=split_of.get(stem), listed=stem in listed)
        for path, stem, species, breed in found
    ]
    unlisted = [s.stem for s in samples if not s.listed]
    if listed and unlisted:
        notes.append(f"{len(unlisted)} image(s) not in list.txt (species from file name): {', '.join(unlisted[:10])}")
    return DatasetIndex(root=root, layout="official", samples=samples, stray_files=stray, notes=notes)


def _course_parts(root: Path) -> list[tuple[Path, str | None]]:
    """(folder holding color/ + label/, official split name or None) for the course layout."""
    def has_pair(folder: Path) -> bool:
        return (folder / "color").is_dir() and (folder / "label").is_dir()

    if has_pair(root):
        return [(root, None)]
    parts = []
    for child in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        name = child.name.lower()
        split = "trainval" if name in ("trainval", "train") else "test" if name == "test" else None
        if split and has_pair(child):
            parts.append((child, split))
    return parts


def _index_course(root: Path) -> DatasetIndex:
    samples: list[Sample] = []
    stray: list[tuple[str, str]] = []
    for folder, split in _course_parts(root):
        found, folder_stray = _scan_images(folder / "color", root, {})
        stray += folder_stray
        samples += [
            Sample(stem=stem, image_path=path, breed=breed, species=species, mask_format="labels",
                   mask_path=_existing(folder / "label" / f"{stem}.png"), official_split=split)
            for path, stem, species, breed in found
        ]
    return DatasetIndex(root=root, layout="course", samples=samples, stray_files=stray)


def _existing(path: Path) -> Path | None:
    return path if path.exists() else None


def _scan_images(folder: Path, root: Path, listed_species: dict[str, int]
                 ) -> tuple[list[tuple[Path, str, str, str]], list[tuple[str, str]]]:
    """Candidate images of ``folder`` as (path, stem, species, breed); other files as (relative path, why).

    Species comes from ``listed_species`` (stem -> 1 cat / 2 dog) where listed, else from the file name.
    """
    found, stray = [], []
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        relative = path.relative_to(root).as_posix()
        why = _not_an_image(path)
        if why:
            stray.append((relative, why))
            continue
        try:
            species, breed = _species_and_breed(path.stem, listed_species.get(path.stem))
        except ValueError as error:
            stray.append((relative, str(error)))
            continue
        found.append((path, path.stem, species, breed))
    return found, stray
