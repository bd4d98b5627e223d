"""Decode every image/mask pair; repair what can be repaired, reject the rest with a reason.

Images are decoded strictly with PIL (a truncated JPEG is an error, not a grey stripe) and, for JPEG and
PNG, checked a second time with OpenCV. Repairs: any colour mode (palette/GIF, RGBA, grayscale, CMYK,
16-bit) -> 8-bit RGB; a mask stored with 3 identical channels -> one channel. Rejections: empty,
unreadable, truncated files; missing masks; image/mask size mismatch; mask values outside the expected
set; masks with no pet pixels.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageSequence, UnidentifiedImageError

from petseg.data.labels import (
    CAT,
    DOG,
    TRIMAP_VALUES,
    check_labels,
    trimap_to_labels,
)
from petseg.data.layout import DatasetIndex, Sample, index_dataset

ImageFile.LOAD_TRUNCATED_IMAGES = False
Image.MAX_IMAGE_PIXELS = 100_000_000  # refuse decompression bombs, allow real photos


class BadFileError(ValueError):
    """A file that cannot be used; ``str(error)`` is the reason shown in reports."""


@dataclass
class LoadedPair:
    """A decoded, checked pair: RGB uint8 image (H, W, 3), label mask uint8 (H, W), repairs made."""

    image: np.ndarray
    labels: np.ndarray
    repairs: list[str] = field(default_factory=list)


def load_rgb(path: Path) -> tuple[np.ndarray, list[str]]:
    """Decode ``path`` to an RGB uint8 array; return it and the repairs made. Raises BadFileError."""
    path = Path(path)
    data = path.read_bytes()
    if not data:
        raise BadFileError("empty file")
    repairs: list[str] = []
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format or "unknown"
            n_frames = getattr(img, "n_frames", 1)
            frame = next(ImageSequence.Iterator(img)) if n_frames > 1 else img
            frame.load()
            mode = frame.mode
            if n_frames > 1:
                repairs.append(f"{fmt} with {n_frames} frames: first frame used")
            if mode != "RGB":
                if mode in ("I;16", "I;16B", "I;16L", "I"):
                    arr = np.asarray(frame, dtype=np.float64)
                    frame = Image.fromarray((255 * arr / max(arr.max(), 1)).astype(np.uint8))
                rgb = frame.convert("RGB")
                repairs.append(f"{mode} -> RGB" + (" (alpha dropped)" if "A" in mode else ""))
            else:
                rgb = frame
            image = np.asarray(rgb, dtype=np.uint8).copy()
    except (UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise BadFileError(f"not a readable image ({type(error).__name__})") from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise BadFileError(f"truncated or corrupt image ({error})") from error
    suffix = path.suffix.lower().lstrip(".")
    expected = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG"}.get(suffix)
    if expected and fmt != expected:
        repairs.insert(0, f"file is really {fmt}, not {expected}")
    if fmt in ("JPEG", "PNG"):
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if decoded is None:
            raise BadFileError("OpenCV cannot decode it")
        if decoded.shape[:2] != image.shape[:2]:
            raise BadFileError(f"PIL and OpenCV disagree on its size ({image.shape[:2]} vs {decoded.shape[:2]})")
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise BadFileError(f"unexpected image shape {image.shape}")
    return image, repairs


def load_mask_array(path: Path) -> tuple[np.ndarray, list[str]]:
    """Decode a mask PNG to a 2-D uint8 array of its stored values (palette indices stay indices)."""
    data = Path(path).read_bytes()
    if not data:
        raise BadFileError("mask: empty file")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            array = np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        raise BadFileError(f"mask: not a readable image ({type(error).__name__})") from error
    repairs = []
    if array.ndim == 3:
        channels = array[..., :3]
        if not (np.array_equal(channels[..., 0], channels[..., 1]) and np.array_equal(channels[..., 0], channels[..., 2])):
            raise BadFileError("mask: colour image whose channels differ")
        array = channels[..., 0]
        repairs.append("mask: 3 identical channels -> 1")
    if array.dtype != np.uint8:
        if array.max(initial=0) > 255 or array.min(initial=0) < 0:
            raise BadFileError("mask: values beyond 0-255")
        array = array.astype(np.uint8)
    return array, repairs


def load_pair(sample: Sample) -> LoadedPair:
    """Decode and check one sample; raises BadFileError with the reason it is unusable."""
    if sample.mask_path is None:
        raise BadFileError("no mask for this image")
    try:
        image, repairs = load_rgb(sample.image_path)
    except BadFileError as error:
        raise BadFileError(f"image: {error}") from error
    mask, mask_repairs = load_mask_array(sample.mask_path)
    repairs += mask_repairs
    if mask.shape != image.shape[:2]:
        raise BadFileError(
            f"image is {image.shape[1]}x{image.shape[0]} but mask is {mask.shape[1]}x{mask.shape[0]}"
        )
    if sample.mask_format == "trimap":
        unexpected = sorted(set(np.unique(mask).tolist()) - TRIMAP_VALUES)
        if unexpected:
            raise BadFileError(f"mask: trimap values outside {{1, 2, 3}}: {unexpected[:10]}")
        labels = trimap_to_labels(mask, sample.species)
    else:
        try:
            check_labels(mask)
        except ValueError as error:
            raise BadFileError(f"mask: {error}") from error
        labels = mask
    if not np.isin(labels, (CAT, DOG)).any():
        raise BadFileError("mask has no pet pixels")
    return LoadedPair(image=image, labels=labels, repairs=repairs)


def file_digest(path: Path, block: int = 1 << 16) -> str:
    """Cheap content digest: size + BLAKE2 of the first and last 64 KiB."""
    size = path.stat().st_size
    h = hashlib.blake2b(digest_size=16)
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(block))
        if size > block:
            f.seek(max(size - block, block))
            h.update(f.read(block))
    return h.hexdigest()


def fingerprint(index: DatasetIndex) -> str:
    """A 16-hex-digit fingerprint of every file the dataset's samples depend on (names, sizes, content)."""
    h = hashlib.sha256()
    for path in index.files():
        h.update(path.relative_to(index.root).as_posix().encode())
        h.update(file_digest(path).encode())
    return h.hexdigest()[:16]


@dataclass
class Rejection:
    stem: str
    path: str
    reason: str


@dataclass
class ValidationReport:
    """What a dataset holds and which of it is usable (see :func:`check_dataset`)."""

    root: str
    layout: str
    fingerprint: str
    usable: list[Sample]
    repaired: dict[str, list[str]]
    rejected: list[Rejection]
    stray_files: list[tuple[str, str]]
    notes: list[str]
    duplicates: list[list[str]] = field(default_factory=list)  # see petseg.data.duplicates

    def summary(self) -> dict:
        """JSON-ready totals, rejections with reasons, counts per species and breed."""
        species = Counter(s.species for s in self.usable)
        breeds = Counter(s.breed for s in self.usable)
        return {
            "root": self.root,
            "layout": self.layout,
            "fingerprint": self.fingerprint,
            "totals": {
                "images_found": len(self.usable) + len(self.rejected),
                "usable_pairs": len(self.usable),
                "repaired": len(self.repaired),
                "rejected": len(self.rejected),
                "stray_files": len(self.stray_files),
            },
            "species": dict(sorted(species.items())),
            "breeds": dict(sorted(breeds.items())),
            "rejected": [asdict(r) for r in self.rejected],
            "repaired": self.repaired,
            "stray_files": [{"path": p, "reason": r} for p, r in self.stray_files],
            "notes": self.notes,
            "duplicates": self.duplicate_table(),
        }

    def duplicate_table(self) -> list[dict]:
        """Each duplicate group with the official list of every member, flagged when it crosses lists."""
        where = {s.stem: s.official_split or "none" for s in self.usable}
        rows = []
        for group in self.duplicates:
            lists = {stem: where.get(stem, "none") for stem in group}
            rows.append({"stems": group, "lists": lists,
                         "crosses_trainval_test": {"trainval", "test"} <= set(lists.values())})
        return rows


CHECK_FORMAT = 1
_CHECKS: dict[str, dict] = {}  # fingerprint -> per-file results, for this process


def _check_files(index: DatasetIndex, progress: bool) -> dict:
    """Decode every pair: per-stem ``status``/``reason``/``repairs``, and the duplicate groups."""
    from petseg.data.duplicates import difference_hash, duplicate_groups, thumbnail

    results: dict[str, dict] = {}
    hashes, thumbnails = {}, {}
    samples = index.samples
    if progress:
        from tqdm import tqdm

        samples = tqdm(samples, desc="checking files", unit="img")
    for sample in samples:
        try:
            pair = load_pair(sample)
        except BadFileError as error:
            results[sample.stem] = {"status": "rejected", "path": sample.image_path.relative_to(index.root).as_posix(),
                                    "reason": str(error)}
            continue
        except OSError as error:  # permissions, vanished files, ...
            results[sample.stem] = {"status": "rejected", "path": str(sample.image_path),
                                    "reason": f"cannot read file ({error})"}
            continue
        results[sample.stem] = {"status": "usable", "repairs": pair.repairs}
        hashes[sample.stem], thumbnails[sample.stem] = difference_hash(pair.image), thumbnail(pair.image)
    return {"format": CHECK_FORMAT, "files": results, "duplicates": duplicate_groups(hashes, thumbnails)}


def check_dataset(root_or_index: str | Path | DatasetIndex, progress: bool = False,
                  cache_dir: Path | None = None) -> ValidationReport:
    """Decode and check every pair of a dataset, and find duplicate photographs; never raises for a bad file.

    The per-file results depend only on the files, so they are kept by data fingerprint: in this process, and
    in ``cache_dir/checks/<fingerprint>.json`` when ``cache_dir`` is given (a changed file changes the
    fingerprint, and everything is checked again).
    """
    index = root_or_index if isinstance(root_or_index, DatasetIndex) else index_dataset(root_or_index)
    digest = fingerprint(index)
    stored = Path(cache_dir) / "checks" / f"{digest}.json" if cache_dir is not None else None
    checked = _CHECKS.get(digest)
    if checked is None and stored is not None and stored.is_file():
        with contextlib.suppress(ValueError, OSError):
            checked = json.loads(stored.read_text())
        if checked is not None and (checked.get("format") != CHECK_FORMAT
                                    or set(checked["files"]) != {s.stem for s in index.samples}):
            checked = None
    if checked is None:
        checked = _check_files(index, progress)
    if stored is not None and not stored.is_file():
        stored.parent.mkdir(parents=True, exist_ok=True)
        partial = stored.with_name(f".partial-{os.getpid()}-{stored.name}")
        partial.write_text(json.dumps(checked))
        os.replace(partial, stored)
    _CHECKS[digest] = checked
    usable, rejected, repaired = [], [], {}
    for sample in index.samples:
        result = checked["files"][sample.stem]
        if result["status"] == "rejected":
            rejected.append(Rejection(sample.stem, result["path"], result["reason"]))
            continue
        usable.append(sample)
        if result["repairs"]:
            repaired[sample.stem] = result["repairs"]
    return ValidationReport(
        root=str(index.root), layout=index.layout, fingerprint=digest, usable=usable,
        repaired=repaired, rejected=rejected, stray_files=index.stray_files, notes=index.notes,
        duplicates=[list(group) for group in checked["duplicates"]],
    )


__all__ = ["BadFileError", "LoadedPair", "ValidationReport", "check_dataset", "fingerprint",
           "load_pair", "load_rgb"]
