"""Preprocessed arrays on disk, so training epochs never re-decode JPEGs.

A cache folder holds ``images.npy`` (N, S, S, 3) uint8, ``masks.npy`` (N, S, S) uint8 and ``meta.json``
(samples, sizes, the validation report). Its name is a key made of the data fingerprint, the image size
and the preprocessing version, so changed files or parameters make a new cache. It is written into a
temporary folder and renamed into place only when complete: a killed build leaves nothing that looks
like a finished cache (``meta.json`` with ``"complete": true`` is the mark).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from petseg.data.layout import Sample
from petseg.data.transforms import resize_and_pad
from petseg.data.validate import ValidationReport, load_pair

PREPROCESS_VERSION = 1  # bump when resize/pad or label mapping changes
CACHE_ENV = "PETSEG_CACHE"


def default_cache_dir() -> Path:
    """``$PETSEG_CACHE``, else ``~/.cache/petseg``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "petseg").expanduser()


def cache_key(fingerprint: str, size: int) -> str:
    h = hashlib.sha256(f"{fingerprint}|{size}|v{PREPROCESS_VERSION}".encode()).hexdigest()[:12]
    return f"pets-{size}px-{h}"


@dataclass
class PreprocessedCache:
    """Read-only view of a finished cache (arrays are memory-mapped)."""

    path: Path
    size: int
    fingerprint: str
    stems: list[str]
    species: list[str]
    breeds: list[str]
    original_sizes: list[tuple[int, int]]  # (height, width) before resizing
    images: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return len(self.stems)

    def position(self, stem: str) -> int:
        return self._positions[stem]

    def __post_init__(self) -> None:
        self._positions = {stem: i for i, stem in enumerate(self.stems)}

    @classmethod
    def open(cls, path: Path) -> PreprocessedCache:
        meta = json.loads((path / "meta.json").read_text())
        if not meta.get("complete"):
            raise FileNotFoundError(f"{path} is not a complete cache")
        return cls(
            path=path, size=meta["size"], fingerprint=meta["fingerprint"], stems=meta["stems"],
            species=meta["species"], breeds=meta["breeds"],
            original_sizes=[tuple(s) for s in meta["original_sizes"]],
            images=np.load(path / "images.npy", mmap_mode="r"), masks=np.load(path / "masks.npy", mmap_mode="r"),
        )


def _is_complete(path: Path) -> bool:
    try:
        return bool(json.loads((path / "meta.json").read_text()).get("complete"))
    except (OSError, ValueError):
        return False


def build_cache(report: ValidationReport, size: int, cache_dir: Path | None = None,
                progress: bool = True) -> PreprocessedCache:
    """Return the cache of ``report.usable`` at ``size`` px, building it first if needed."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = cache_dir / cache_key(report.fingerprint, size)
    if _is_complete(final):
        return PreprocessedCache.open(final)
    cache_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(cache_dir, final.name)
    partial = cache_dir / f".{final.name}.partial-{os.getpid()}"
    partial.mkdir()
    try:
        _write_arrays(report.usable, size, partial, progress)
        meta = {
            "size": size, "fingerprint": report.fingerprint, "preprocess_version": PREPROCESS_VERSION,
            "root": report.root, "layout": report.layout,
            "stems": [s.stem for s in report.usable], "species": [s.species for s in report.usable],
            "breeds": [s.breed for s in report.usable],
            "original_sizes": json.loads((partial / "sizes.json").read_text()),
            "report": report.summary(), "samples": [_sample_dict(s) for s in report.usable],
            "complete": True,
        }
        (partial / "meta.json").write_text(json.dumps(meta))
        if _is_complete(final):  # another process finished the same cache meanwhile: use that one
            shutil.rmtree(partial, ignore_errors=True)
            return PreprocessedCache.open(final)
        if final.exists():  # an incomplete leftover under the final name
            shutil.rmtree(final)
        try:
            os.replace(partial, final)
        except OSError:
            if not _is_complete(final):
                raise
            shutil.rmtree(partial, ignore_errors=True)  # another process renamed its copy into place first
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return PreprocessedCache.open(final)


def _remove_stale_partials(cache_dir: Path, name: str) -> None:
    """Delete ``.<name>.partial-<pid>`` folders of killed builds; those of running processes (another
    ``petseg data prepare`` building the same cache) are theirs and stay."""
    from petseg.data.download import _pid_alive

    prefix = f".{name}.partial-"
    for stale in cache_dir.glob(f"{prefix}*"):
        pid_text = stale.name[len(prefix):]
        pid = int(pid_text) if pid_text.isdigit() else -1
        if pid == os.getpid() or pid <= 0 or not _pid_alive(pid):
            shutil.rmtree(stale, ignore_errors=True)


def _sample_dict(sample: Sample) -> dict:
    d = asdict(sample)
    d["image_path"] = str(sample.image_path)
    d["mask_path"] = str(sample.mask_path)
    return d


def _write_arrays(samples: list[Sample], size: int, folder: Path, progress: bool) -> None:
    n = len(samples)
    images = np.lib.format.open_memmap(folder / "images.npy", mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    masks = np.lib.format.open_memmap(folder / "masks.npy", mode="w+", dtype=np.uint8, shape=(n, size, size))
    sizes = []
    iterator = enumerate(samples)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, total=n, desc=f"preprocessing to {size}px", unit="img")
    for i, sample in iterator:
        pair = load_pair(sample)  # the report already accepted it; a file changed since then raises
        sizes.append(pair.image.shape[:2])
        images[i], masks[i] = resize_and_pad(pair.image, pair.labels, size)
    images.flush()
    masks.flush()
    del images, masks
    (folder / "sizes.json").write_text(json.dumps(sizes))
