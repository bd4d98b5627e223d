"""How fast does the data pipeline feed a model on this machine? Images per second, stage by stage.

    .venv/bin/python benchmarks/data_throughput.py --size 256
    .venv/bin/python benchmarks/data_throughput.py --size 512 --n 200 --repeats 3

Stages: JPEG decode only; + resize/pad; + augmentation; reading the preprocessed cache; the cache +
augmentation; a torch DataLoader over the cache with augmentation (num_workers 0 and 2); plus the time
to build the cache. See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from petseg.config_files import data_settings
from petseg.data.cache import CACHE_ENV, PreprocessedCache, build_cache
from petseg.data.dataset import PetSegDataset
from petseg.data.layout import (
    DATA_ENV,
    DatasetIndex,
    DatasetNotFoundError,
    Sample,
    find_dataset_root,
    index_dataset,
)
from petseg.data.transforms import CheckedAugmentation, resize_and_pad
from petseg.data.validate import BadFileError, ValidationReport, fingerprint, load_pair

DEFAULT_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "oxford-iiit-pet-sample"


@dataclass
class Result:
    """One row of the table: images per second over ``repeats`` timed passes of ``images`` images."""

    stage: str
    images: int
    seconds: list[float]

    @property
    def rates(self) -> list[float]:
        return [self.images / s for s in self.seconds]

    @property
    def median_rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def best_rate(self) -> float:
        return max(self.rates)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default=os.environ.get(DATA_ENV) or str(DEFAULT_SAMPLE),
                        help=f"dataset folder (default: ${DATA_ENV}, else the shared 600-image sample)")
    parser.add_argument("--size", type=int, default=256, help="square image size after resize/pad")
    parser.add_argument("--n", type=int, default=200, help="number of images timed per pass")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per stage (best and median shown)")
    parser.add_argument("--batch-size", type=int, default=16, help="DataLoader batch size")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader num_workers to time")
    parser.add_argument("--cache-dir", type=Path,
                        help=f"keep the cache here (default: a temporary folder under ${CACHE_ENV} or /tmp)")
    parser.add_argument("--torch-threads", type=int,
                        help="torch.set_num_threads in the main process (default: torch's own choice)")
    parser.add_argument("--opencv-threads", type=int, help="cv2.setNumThreads (default: OpenCV's own choice)")
    parser.add_argument("--seed", type=int, default=0, help="which images are picked, and augmentation seeds")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    return parser.parse_args(argv)


# --------------------------------------------------------------------------------------------- header


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_info() -> dict[str, str]:
    """Hardware, thread settings and library versions (printed at the top of the report)."""
    import albumentations
    import cv2
    import PIL
    import torch

    import petseg

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cpu_count": f"{os.cpu_count()} (usable by this process: {usable})",
        "torch_threads": str(torch.get_num_threads()),
        "opencv_threads": str(cv2.getNumThreads()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "opencv": cv2.__version__,
        "albumentations": albumentations.__version__,
        "petseg": getattr(petseg, "__version__", "?"),
    }


# ---------------------------------------------------------------------------------------------- stages


def pick_samples(samples: list[Sample], n: int, seed: int) -> tuple[list[Sample], int]:
    """``n`` decodable samples in a seeded random order (this pass also warms the OS file cache)."""
    order = np.random.default_rng(seed).permutation(len(samples))
    picked, skipped = [], 0
    for i in order:
        if len(picked) == n:
            break
        try:
            load_pair(samples[i])
        except BadFileError:
            skipped += 1
            continue
        picked.append(samples[i])
    return picked, skipped


def time_interleaved(stages: list[tuple[str, Callable[[], int]]], repeats: int) -> list[Result]:
    """Time every stage once per round, ``repeats`` rounds: a burst of load from other processes then
    slows one round of every stage rather than all passes of one stage. ``work`` returns its image count."""
    results = [Result(name, 0, []) for name, _ in stages]
    for _ in range(repeats):
        for result, (_, work) in zip(results, stages, strict=True):
            start = time.perf_counter()
            result.images = work()
            result.seconds.append(time.perf_counter() - start)
    return results


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def run(args: argparse.Namespace, cache_dir: Path) -> tuple[list[Result], dict]:
    import torch
    from torch.utils.data import DataLoader, Subset

    try:
        root = find_dataset_root(args.data)
    except DatasetNotFoundError as error:
        raise SystemExit(f"data_throughput: {error} (pass --data or set {DATA_ENV})") from None
    index = index_dataset(root)
    samples, skipped = pick_samples(index.samples, args.n, args.seed)
    if not samples:
        raise SystemExit(f"no decodable image/mask pairs under {root}")
    config = data_settings("quick")
    augmentation = CheckedAugmentation(strength=config["augmentation_strength"])
    size, repeats = args.size, args.repeats
    heights, widths = zip(*(load_pair(s).image.shape[:2] for s in samples[:50]), strict=True)
    info = {
        "data": str(root), "layout": index.layout, "images_timed": len(samples),
        "skipped_undecodable": skipped, "size": size, "repeats": repeats, "batch_size": args.batch_size,
        "median_source_size": f"{int(np.median(widths))}x{int(np.median(heights))} (w x h)",
        "augmentation": ", ".join(augmentation.names()), "augmentation_strength": config["augmentation_strength"],
        "cache_dir": str(cache_dir),
    }
    stages: list[tuple[str, Callable[[], int]]] = []

    def decode() -> int:
        for sample in samples:
            load_pair(sample)
        return len(samples)

    def decode_resize() -> int:
        for sample in samples:
            pair = load_pair(sample)
            resize_and_pad(pair.image, pair.labels, size)
        return len(samples)

    def decode_resize_augment() -> int:
        for i, sample in enumerate(samples):
            pair = load_pair(sample)
            image, mask = resize_and_pad(pair.image, pair.labels, size)
            augmentation(image, mask, seed=args.seed + i)
        return len(samples)

    stages.append(("(a) JPEG decode only (load_pair)", decode))
    stages.append((f"(b) decode + resize/pad to {size}", decode_resize))
    stages.append(("(c) decode + resize/pad + augment", decode_resize_augment))

    # cache build (one pass: a second build would only reopen the finished cache)
    sub_index = DatasetIndex(root=index.root, layout=index.layout, samples=samples)
    report = ValidationReport(root=str(root), layout=index.layout, fingerprint=fingerprint(sub_index),
                              usable=samples, repaired={}, rejected=[], stray_files=[], notes=[])
    start = time.perf_counter()
    cache: PreprocessedCache = build_cache(report, size, cache_dir, progress=False)
    build_seconds = time.perf_counter() - start
    cache_bytes = sum(f.stat().st_size for f in cache.path.iterdir())
    info["cache_build"] = {"seconds": round(build_seconds, 2), "images_per_s": round(len(samples) / build_seconds, 1),
                           "megabytes": round(cache_bytes / 2**20, 1), "path": str(cache.path)}

    stems = [s.stem for s in samples]
    plain = PetSegDataset(cache, stems, seed=args.seed)
    # multipliers 2 for every species: copy 1 of each sample is always augmented, copy 0 never
    doubled = PetSegDataset(cache, stems, augmentation=augmentation,
                            multipliers={name: 2 for name in set(plain.species)}, seed=args.seed)
    augmented = Subset(doubled, [i for i, (_, copy) in enumerate(doubled.items) if copy > 0])
    mix = config["species_multipliers"] if isinstance(config["species_multipliers"], dict) else None
    training = PetSegDataset(cache, stems, augmentation=augmentation, multipliers=mix, seed=args.seed)

    def read_all(dataset) -> Callable[[], int]:
        def work() -> int:
            for i in range(len(dataset)):
                dataset[i]
            return len(dataset)
        return work

    stages.append(("(d) cache -> tensors, no augmentation", read_all(plain)))
    stages.append(("(e) cache -> tensors, every item augmented", read_all(augmented)))
    if mix:
        label = ", ".join(f"{k} {v}x" for k, v in sorted(mix.items()))
        stages.append((f"(e') cache, training mix ({label}; copy 0 plain)", read_all(training)))

    for workers in args.workers:
        def load(workers: int = workers) -> int:
            loader = DataLoader(augmented, batch_size=args.batch_size, shuffle=False, num_workers=workers)
            count = 0
            for images, _masks in loader:
                count += images.shape[0]
            return count

        stages.append((f"(f) DataLoader, augmented, batch {args.batch_size}, workers {workers}", load))
    info["load_average_before"] = load_average()
    results = time_interleaved(stages, repeats)
    info["load_average_after"] = load_average()
    info["torch_threads_after"] = torch.get_num_threads()
    return results, info


# --------------------------------------------------------------------------------------------- output


def print_report(env: dict[str, str], info: dict, results: list[Result]) -> None:
    print("petseg data throughput")
    for key, value in env.items():
        print(f"  {key:<20} {value}")
    for key in ("data", "layout", "images_timed", "skipped_undecodable", "median_source_size", "size",
                "repeats", "augmentation_strength", "load_average_before", "load_average_after"):
        print(f"  {key:<20} {info[key]}")
    print()
    width = max(len(r.stage) for r in results)
    print(f"{'stage':<{width}}  {'best img/s':>10}  {'ms/image':>8}  {'median img/s':>12}  {'worst img/s':>11}")
    print("-" * (width + 50))
    for r in results:
        print(f"{r.stage:<{width}}  {r.best_rate:>10.1f}  {1000 / r.best_rate:>8.2f}  {r.median_rate:>12.1f}  "
              f"{min(r.rates):>11.1f}")
    build = info["cache_build"]
    print(f"\ncache build: {build['seconds']:.2f} s for {info['images_timed']} images "
          f"({build['images_per_s']:.1f} images/s), {build['megabytes']:.1f} MB on disk")
    print(f"({info['repeats']} interleaved passes of {info['images_timed']} images per stage; best = least "
          f"disturbed by other processes; DataLoader passes include starting the workers)")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.torch_threads is not None:
        import torch

        torch.set_num_threads(args.torch_threads)
    if args.opencv_threads is not None:
        import cv2

        cv2.setNumThreads(args.opencv_threads)
    env = environment_info()
    if args.cache_dir is not None:
        results, info = run(args, args.cache_dir)
    else:
        parent = os.environ.get(CACHE_ENV)
        if parent:
            Path(parent).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="petseg-bench-", dir=parent or None) as tmp:
            results, info = run(args, Path(tmp))
    print_report(env, info, results)
    if args.json:
        payload = {"environment": env, "info": info,
                   "results": [{**asdict(r), "best_images_per_s": r.best_rate, "median_images_per_s": r.median_rate}
                               for r in results]}
        args.json.write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
