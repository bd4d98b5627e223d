"""How many test images per second does each model family score? Evaluation throughput, as a run scores.

    .venv/bin/python benchmarks/eval_throughput.py                        # every catalog model, 200 test images
    .venv/bin/python benchmarks/eval_throughput.py --models unet efficientnet_unet --images 500

For each catalog model (``petseg.catalog``) it builds the model of its ``quick`` config (random weights where
weights would be trained: speed does not depend on them; the pretrained EfficientNet-Lite0 encoder is loaded
as the config says), prepares the quick profile's test split capped to ``--images`` breed-stratified images at
the model's own input size, and times what a run does after training, in fp32:
:func:`petseg.experiment.evaluate_segmentation` (3-class metrics and the per-image table) for full-image
models, :func:`petseg.evaluation.clicks.evaluate_prompted_model` (1 click, a box and the interactive protocol
on the config's ``interactive_images``) for SAM 2. One fresh process per model. Needs ``PETSEG_DATA``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def measure(key: str, images: int, threads: int) -> dict:
    import torch

    from petseg import catalog
    from petseg.data.pipeline import prepare_data
    from petseg.experiment import evaluate_segmentation, load_experiment_config
    from petseg.models import build_model

    if threads:
        torch.set_num_threads(threads)
    spec = catalog.get(key)
    config = load_experiment_config(spec.experiment, "quick", spec.overrides)
    data = dict(config.get("data") or {}, max_test_images=images)
    prepared = prepare_data(None, "quick", overrides=data, progress=False)
    torch.manual_seed(0)
    model_config = {k: v for k, v in config["model"].items() if k != "autoencoder_checkpoint"}
    if model_config["name"] == "ae_unet":  # the AE+UNet is a UNet with the autoencoder's encoder: same cost
        model_config["name"] = "unet"
        model_config.pop("freeze_encoder", None)
    model = build_model(model_config).eval()
    test_set = prepared.dataset("test", augment=False)
    start = time.perf_counter()
    if spec.task == "prompted":
        from petseg.evaluation.clicks import evaluate_prompted_model

        _, per_image = evaluate_prompted_model(model, test_set, config.get("evaluation"), device="cpu")
        protocol = f"1 click + box on all, interactive on {(config.get('evaluation') or {}).get('interactive_images')}"
    else:
        _, per_image = evaluate_segmentation(model, test_set, device="cpu")
        protocol = "3-class metrics + per-image table"
    seconds = time.perf_counter() - start
    return {"model": key, "task": spec.task, "image_px": prepared.cache.size, "test_images": len(test_set),
            "seconds": round(seconds, 1), "images_per_s": round(len(test_set) / seconds, 1), "protocol": protocol,
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", help="catalog keys (default: every model of the catalog)")
    parser.add_argument("--images", type=int, default=200, help="test images per model (breed-stratified)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one model in this process
    args = parser.parse_args()
    if args.images < 1:
        parser.error("--images must be >= 1")
    if args.one:
        print(json.dumps(measure(args.one, args.images, args.threads)))
        return
    from petseg import catalog

    keys = args.models or [spec.key for spec in catalog.models()]
    unknown = sorted(set(keys) - {spec.key for spec in catalog.models()})
    if unknown:
        sys.exit(f"eval_throughput: unknown model(s) {', '.join(unknown)}; choose from "
                 f"{', '.join(spec.key for spec in catalog.models())}")
    print(f"# evaluation throughput, fp32, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| model | task | px | test images | s | **img/s** | protocol |\n|---|---|---:|---:|---:|---:|---|")
    rows = []
    for key in keys:
        out = subprocess.run([sys.executable, __file__, "--one", key, "--images", str(args.images),
                              "--threads", str(args.threads)], capture_output=True, text=True,
                             env={**os.environ, "PETSEG_PROGRESS": "0"})
        if out.returncode != 0:
            sys.exit(f"eval_throughput: {key} failed:\n{out.stderr[-2000:]}")
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"| {row['model']} | {row['task']} | {row['image_px']} | {row['test_images']} | {row['seconds']} "
              f"| **{row['images_per_s']}** | {row['protocol']} |", flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
