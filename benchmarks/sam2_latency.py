"""How fast is SAM 2 interactive segmentation on this machine? Image-embedding time and per-click latency.

    .venv/bin/python benchmarks/sam2_latency.py                      # both variants, quick and full sizes
    .venv/bin/python benchmarks/sam2_latency.py --variants sam2_effnet --sizes 256 --clicks 50 --threads 2
    .venv/bin/python benchmarks/sam2_latency.py --json sam2_latency.json

For every (variant, image size) it builds the model (random weights: speed does not depend on them), wraps
it in sam2's ``SAM2ImagePredictor`` exactly as the app does (:func:`petseg.models.sam2.make_predictor`),
and times on a random 500 x 375 RGB image (a typical Oxford-IIIT Pet size; the predictor resizes it):

* ``set_image`` (the image embedding, computed once per image), ``--repeats`` times after one warm-up;
* ``predict`` for clicks 1..``--clicks`` on that embedding: click 1 multimask, every further click with all
  previous clicks (single mask), i.e. what one more click costs in the app.

It prints mean and median milliseconds, the thread count and the system load average (the build machines
are shared: a high load inflates every figure). Sizes default to each variant's ``quick`` and ``full``
profile image sizes from ``petseg/configs/<variant>.yaml``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Any

import petseg  # noqa: F401  (first: makes torchvision importable; sam2 imports it)

VARIANTS = ("sam2_effnet", "sam2_hiera")


def profile_sizes(variant: str) -> list[int]:
    from petseg.experiment import load_experiment_config

    sizes = [load_experiment_config(variant, profile)["model"]["image_size"] for profile in ("quick", "full")]
    return sorted(set(sizes))


def measure(variant: str, size: int, clicks: int, repeats: int, seed: int = 0) -> dict[str, Any]:
    import numpy as np
    import torch

    from petseg.models import build_model
    from petseg.models.sam2 import make_predictor

    torch.manual_seed(seed)
    model = build_model({"name": variant, "image_size": size})
    predictor = make_predictor(model.sam)
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)
    predictor.set_image(image)  # warm-up
    embed = []
    for _ in range(repeats):
        started = time.perf_counter()
        predictor.set_image(image)
        embed.append(time.perf_counter() - started)
    points = np.stack([rng.integers(0, 500, clicks), rng.integers(0, 375, clicks)], axis=1).astype(np.float32)
    labels = (rng.random(clicks) < 0.7).astype(np.int32)
    labels[0] = 1
    predictor.predict(point_coords=points[:1], point_labels=labels[:1])  # warm-up
    per_click = []
    for k in range(1, clicks + 1):
        started = time.perf_counter()
        predictor.predict(point_coords=points[:k], point_labels=labels[:k], multimask_output=k == 1)
        per_click.append(time.perf_counter() - started)
    return {
        "variant": variant, "image_size": size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "embed_ms_mean": 1000 * statistics.mean(embed), "embed_ms_median": 1000 * statistics.median(embed),
        "click_ms_mean": 1000 * statistics.mean(per_click), "click_ms_median": 1000 * statistics.median(per_click),
        "clicks": clicks, "repeats": repeats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--sizes", nargs="+", type=int, default=None,
                        help="image sizes (default: each variant's quick and full profile sizes)")
    parser.add_argument("--clicks", type=int, default=20, help="clicks per image (default 20)")
    parser.add_argument("--repeats", type=int, default=5, help="set_image repetitions (default 5)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average before "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    rows = []
    for variant in args.variants:
        for size in args.sizes or profile_sizes(variant):
            row = measure(variant, size, args.clicks, args.repeats)
            rows.append(row)
            print(f"{variant:12s} {size:5d} px  {row['parameters'] / 1e6:5.1f}M params  "
                  f"embedding {row['embed_ms_mean']:8.1f} ms (median {row['embed_ms_median']:8.1f})  "
                  f"per click {row['click_ms_mean']:7.1f} ms (median {row['click_ms_median']:7.1f})  "
                  f"{'OK' if row['click_ms_median'] < 100 else 'over'} the 100 ms aim", flush=True)
    print(f"load average after {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
