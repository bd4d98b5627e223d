"""Does evaluation's memory grow with the number of test images? Peak memory of one evaluation, per size.

    .venv/bin/python benchmarks/eval_memory.py                      # 300 and 3,000 test images, 128 px
    .venv/bin/python benchmarks/eval_memory.py --sizes 100 1000 3000 --image-size 256

Each size runs in a fresh process: prepare the data (test split capped to N images, breed-stratified), build
a small random UNet, then score it exactly as a run does (:func:`petseg.experiment.evaluate_segmentation`,
per-image table included) together with the two baselines (:func:`petseg.evaluation.segmentation.baseline_metrics`).
Two figures: the process's peak resident memory (``ru_maxrss``, which also counts the pages of the memory-mapped
image cache that were read: file-backed, dropped by the OS under pressure) and the peak of its *anonymous*
memory (``RssAnon``, sampled every 5 ms: what the process itself holds), each before and during that step. Needs
``PETSEG_DATA`` with at least max(sizes) test images (the 37-breed copy has 3,292).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def anonymous_mib() -> float:
    """This process's anonymous resident memory (Linux /proc), MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class AnonymousPeak:
    """Samples :func:`anonymous_mib` in a thread while the ``with`` block runs; ``peak`` is the highest."""

    def __enter__(self) -> AnonymousPeak:
        import threading

        self.peak, self._stop = anonymous_mib(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, anonymous_mib())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(size: int, image_size: int) -> dict:
    import torch

    from petseg.data.pipeline import prepare_data
    from petseg.evaluation.segmentation import baseline_metrics
    from petseg.experiment import evaluate_segmentation
    from petseg.models import build_model

    torch.set_num_threads(2)
    prepared = prepare_data(None, "standard", image_size=image_size, progress=False,
                            overrides={"max_test_images": size})
    model = build_model({"name": "unet", "depth": 4, "base_width": 8, "max_width": 32}).eval()
    before, anonymous_before = peak_mib(), anonymous_mib()
    start = time.perf_counter()
    with AnonymousPeak() as anonymous:
        metrics, per_image = evaluate_segmentation(model, prepared.dataset("test", augment=False), device="cpu")
        baselines = baseline_metrics(prepared)
    return {"test_images": len(per_image), "image_px": image_size, "peak_rss_mib_before": round(before),
            "peak_rss_mib_after": round(peak_mib()), "anonymous_mib_before": round(anonymous_before),
            "anonymous_peak_mib": round(anonymous.peak), "grew_mib": round(anonymous.peak - anonymous_before),
            "seconds": round(time.perf_counter() - start, 1), "images_per_s": round(len(per_image) / (time.perf_counter() - start), 1),
            "baselines": sorted(baselines), "miou": round(metrics["miou"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[300, 3000])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size here
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.image_size)))
        return
    rows = []
    for size in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(size), "--image-size", str(args.image_size)],
                             capture_output=True, text=True, env={**os.environ, "PETSEG_PROGRESS": "0"})
        if out.returncode != 0:
            sys.exit(f"eval_memory: size {size} failed:\n{out.stderr[-2000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]))
    first, last = rows[0], rows[-1]
    print(f"\n{last['test_images'] / first['test_images']:.0f}x the test images: evaluation grew anonymous memory by "
          f"{first['grew_mib']} MiB at {first['test_images']} and {last['grew_mib']} MiB at {last['test_images']} "
          f"images ({first['image_px']} px)")


if __name__ == "__main__":
    main()
