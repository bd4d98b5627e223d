"""Where does a training step of petseg's UNet spend its time? One step under ``torch.profiler``.

    .venv/bin/python benchmarks/train_profile.py                          # quick UNet, 256 px, batch 8, fp32
    .venv/bin/python benchmarks/train_profile.py --size 128 --stem strided --amp bf16 --by-shape

Builds the UNet of ``petseg/configs/unet.yaml`` for ``--config`` (random weights and data, as
``train_throughput.py`` does), runs ``--warmup`` untimed steps (forward, CrossEntropy(ignore_index=255),
backward, AdamW), times ``--iters`` steps, then profiles one more and prints the operators by self CPU time;
``--by-shape`` splits them by input shape (which convolution, which norm). See benchmarks/README.md,
"Where the time goes".
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Sequence

import petseg  # noqa: F401  (first: makes torchvision importable)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=("quick", "full"), default="quick", help="unet.yaml profile")
    parser.add_argument("--size", type=int, default=256, help="square input size (px)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--stem", choices=("full", "strided"), help="override the config's stem")
    parser.add_argument("--amp", choices=("off", "bf16"), default="off", help="bf16 autocast on the CPU")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--rows", type=int, default=20, help="operators to print")
    parser.add_argument("--by-shape", action="store_true", help="group the operators by input shape")
    args = parser.parse_args(argv)
    if min(args.size, args.batch, args.warmup, args.iters, args.rows) < 1:
        parser.error("--size, --batch, --warmup, --iters and --rows must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    from torch.profiler import ProfilerActivity, profile

    from petseg.experiment import load_experiment_config
    from petseg.models import build_model

    config = dict(load_experiment_config("unet", args.config)["model"])
    if args.stem:
        config["stem"] = args.stem
    torch.manual_seed(0)
    model = build_model(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.randn(args.batch, 3, args.size, args.size)
    targets = torch.randint(0, 3, (args.batch, args.size, args.size))
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if args.amp == "bf16"
                else contextlib.nullcontext())

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            logits = model(images)
        torch.nn.functional.cross_entropy(logits.float(), targets, ignore_index=255).backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.iters):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    print(f"# petseg UNet ({args.config}, stem {config.get('stem', 'full')}), {args.size} px, batch {args.batch}, "
          f"{'bf16 autocast' if args.amp == 'bf16' else 'fp32'}, {torch.get_num_threads()} threads, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"median step {1000 * statistics.median(times):.0f} ms over {args.iters} steps "
          f"({args.batch / statistics.median(times):.2f} img/s)")
    with profile(activities=[ProfilerActivity.CPU], record_shapes=args.by_shape) as profiler:
        step()
    averages = profiler.key_averages(group_by_input_shape=args.by_shape)
    print(averages.table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=36,
                         max_shapes_column_width=80))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
