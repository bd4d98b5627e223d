"""How fast does petseg's custom UNet train, compared with a segmentation_models_pytorch UNet of similar size?

    .venv/bin/python benchmarks/train_throughput.py                        # quick + full, 256 and 512 px
    .venv/bin/python benchmarks/train_throughput.py --config quick --sizes 256 --batch 8 --iters 10
    .venv/bin/python benchmarks/train_throughput.py --device cuda --batch 16 --json train_throughput.json

For every (config, size, model) it times full training steps (forward + CrossEntropy(ignore_index=255) +
backward + AdamW step) on random data, after a few warm-up steps, and reports the median images per
second and the peak memory. Every measurement runs in a fresh subprocess (this script with ``--single``),
so each peak RSS belongs to that measurement alone. On CUDA the step runs under mixed precision (bf16
autocast where supported, else fp16 + GradScaler) and the peak is ``torch.cuda.max_memory_allocated``.
The headline figure is ours / reference (images/s) per config and size. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import petseg  # noqa: F401  (first: makes torchvision importable; smp and timm import it)

IGNORE_INDEX = 255  # petseg.data.labels.IGNORE_INDEX (kept literal so the --single child stays lean)
NUM_CLASSES = 3  # background, cat, dog

# The smp reference per petseg profile: a ResNet-family encoder (plain conv/BN/ReLU, like ours) with random
# weights, and decoder channels picked so the parameter count is within ~30% of ours (checked at run time).
REFERENCES: dict[str, dict[str, Any]] = {
    "quick": {"encoder_name": "tu-resnet10t", "decoder_channels": [128, 64, 32, 16, 8]},
    "full": {"encoder_name": "resnet18", "decoder_channels": [512, 256, 128, 64, 32]},
}
PARAM_TOLERANCE = 0.30


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", choices=("quick", "full", "both"), default="both",
                        help="which petseg unet.yaml profile(s) to benchmark")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="square input sizes (px)")
    parser.add_argument("--batch", type=int, default=4, help="batch size")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (AdamW state, allocator)")
    parser.add_argument("--iters", type=int, default=5, help="timed steps; the median step time is reported")
    parser.add_argument("--max-seconds", type=float, default=40.0,
                        help="time budget per row: warm-up stops early (after >= 1 step) once it has used a "
                             "third of it, timing stops early (after >= --min-iters steps) once it has used it "
                             "all; 0 = always run --warmup and --iters steps")
    parser.add_argument("--min-iters", type=int, default=2, help="timed steps always run, whatever the budget")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: cuda when available, else cpu")
    parser.add_argument("--amp", choices=("auto", "bf16", "fp16", "off"), default="auto",
                        help="mixed precision on CUDA (auto: bf16 if supported, else fp16); on a CPU fp32 "
                             "unless bf16 (autocast, both models; needs AVX-512 BF16 or AMX)")
    parser.add_argument("--stem", choices=("full", "strided"),
                        help="override the petseg UNet's stem (default: the config's; see petseg/models/unet.py)")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads in each run (0: default)")
    parser.add_argument("--ref-encoder", help="override the smp encoder of the reference (e.g. resnet34)")
    parser.add_argument("--ref-decoder", type=int, nargs=5, metavar="C",
                        help="override the reference's decoder_channels (5 values)")
    parser.add_argument("--variants", nargs="*", default=[], metavar="KEY",
                        help="also time these petseg.catalog models (their config's profile = --config), e.g. "
                             "fusion_concat fusion_film efficientnet_unet; reported beside the plain UNet")
    parser.add_argument("--no-flops", action="store_true", help="skip counting forward FLOPs per image")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and random data")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("--single", help=argparse.SUPPRESS)  # internal: one measurement, spec as JSON
    args = parser.parse_args(argv)
    if min(args.warmup, args.iters, args.batch, args.min_iters) < 1:
        parser.error("--warmup, --iters, --min-iters and --batch must be >= 1")
    args.min_iters = min(args.min_iters, args.iters)
    return args


# ------------------------------------------------------------------------------------ one measurement


def _current_rss_mib() -> float:
    """Resident set size now (Linux /proc; falls back to the peak where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return _peak_rss_mib()


def _peak_rss_mib() -> float:
    """Peak resident set size of this process so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def build(spec: dict[str, Any]):
    """The model described by ``spec`` (``kind`` "ours"/"variant": petseg build_model config; "ref": smp.Unet
    kwargs)."""
    if spec["kind"] in ("ours", "variant"):
        from petseg.models import build_model

        return build_model(spec["model"])
    import segmentation_models_pytorch as smp

    return smp.Unet(**spec["model"])


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_gflops(model, size: int, device) -> float | None:
    """Forward FLOPs for one image (torch's FlopCounterMode: 2 per multiply-add), in GFLOP."""
    import torch

    try:
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:  # pragma: no cover - old torch
        return None
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, size, size, device=device))
    model.train(was_training)
    return counter.get_total_flops() / 1e9


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Time training steps of one model at one size (``warmup`` + ``iters``, fewer if over the time budget
    ``max_seconds``, see --max-seconds); returns a JSON-able dict."""
    import torch

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    device = torch.device(spec["device"])
    use_cuda = device.type == "cuda"
    if use_cuda:
        torch.backends.cudnn.benchmark = True
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(spec["amp"])  # CPU: bf16 or None

    model = build(spec).to(device).train()
    parameters = count_parameters(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    batch, size = spec["batch"], spec["size"]
    generator = torch.Generator().manual_seed(spec["seed"])
    images = torch.randn(batch, 3, size, size, generator=generator).to(device)
    targets = torch.randint(0, NUM_CLASSES, (batch, size, size), generator=generator)
    targets[torch.rand(batch, size, size, generator=generator) < 0.1] = IGNORE_INDEX  # ~ trimap border
    targets = targets.to(device)

    def autocast():
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=amp_dtype)

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = loss_fn(model(images).float(), targets)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss.detach()

    def sync() -> None:
        if use_cuda:
            torch.cuda.synchronize(device)

    budget = spec["max_seconds"] or float("inf")
    rss_before = _current_rss_mib()
    warmup_times = []
    while len(warmup_times) < spec["warmup"] and sum(warmup_times) < budget / 3:
        start = time.perf_counter()
        step()
        sync()
        warmup_times.append(time.perf_counter() - start)
    if use_cuda:
        torch.cuda.reset_peak_memory_stats(device)
    times: list[float] = []
    while len(times) < spec["iters"] and (len(times) < spec["min_iters"] or sum(times) < budget):
        start = time.perf_counter()
        loss = step()
        sync()
        times.append(time.perf_counter() - start)
    if not torch.isfinite(loss):
        raise RuntimeError(f"non-finite loss {float(loss)} for {spec['label']}")
    peak_rss = _peak_rss_mib()
    cuda_peak = torch.cuda.max_memory_allocated(device) / 2**20 if use_cuda else None
    gflops = None if spec["no_flops"] else forward_gflops(model, size, device)
    rates = [batch / t for t in times]
    return {
        "config": spec["config"], "size": size, "kind": spec["kind"], "label": spec["label"],
        "model": spec["model"], "parameters": parameters, "batch": batch, "device": str(device),
        "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else "off",
        "warmup": len(warmup_times), "iters": len(times), "threads": torch.get_num_threads(),
        "warmup_seconds": warmup_times, "step_seconds": times, "median_step_s": statistics.median(times),
        "img_per_s": batch / statistics.median(times), "min_img_per_s": min(rates), "max_img_per_s": max(rates),
        "rss_before_mib": rss_before, "peak_rss_mib": peak_rss, "rss_delta_mib": peak_rss - rss_before,
        "cuda_peak_allocated_mib": cuda_peak, "fwd_gflop_per_img": gflops, "final_loss": float(loss),
    }


def run_single(spec_json: str) -> int:
    print(json.dumps(measure(json.loads(spec_json))), flush=True)
    return 0


# --------------------------------------------------------------------------------------------- driver


def environment_info(device: str, amp: str) -> dict[str, str]:
    import segmentation_models_pytorch as smp
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cpu_count": str(os.cpu_count()),
        "cpus_usable": str(len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else "?",
        "torch_threads": str(torch.get_num_threads()),
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else cpu,
        "amp": amp if device == "cuda" else ("bf16 autocast on CPU" if amp == "bf16" else "off (fp32 on CPU)"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "segmentation_models_pytorch": smp.__version__,
        "platform": platform.platform(),
    }
    try:
        import timm

        info["timm"] = timm.__version__
    except ImportError:
        pass
    return info


def resolve_device(choice: str) -> str:
    import torch

    if choice == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available here")
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return choice


def resolve_amp(choice: str, device: str) -> str:
    if device != "cuda":  # CPU: fp32 unless bf16 is asked for (both models, never for the headline ratio)
        if choice == "fp16":
            raise SystemExit("--amp fp16 is CUDA only; on a CPU use --amp bf16 or off")
        if choice == "bf16":
            from petseg.training.config import cpu_bf16_supported

            if not cpu_bf16_supported():
                raise SystemExit("--amp bf16: this CPU has no native bf16 (AVX-512 BF16 or AMX)")
            return "bf16"
        return "off"
    if choice == "off":
        return "off"
    if choice == "auto":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return choice


def specs_for(args: argparse.Namespace, device: str, amp: str) -> list[dict[str, Any]]:
    """One spec per (config, size, model); ours and the reference alternate so load drift hits both."""
    from petseg.experiment import load_experiment_config

    configs = ["quick", "full"] if args.config == "both" else [args.config]
    common = {"batch": args.batch, "warmup": args.warmup, "iters": args.iters, "min_iters": args.min_iters,
              "max_seconds": args.max_seconds, "device": device, "amp": amp, "threads": args.threads,
              "seed": args.seed, "no_flops": args.no_flops}
    specs = []
    for config in configs:
        ours = dict(load_experiment_config("unet", config)["model"], n_classes=NUM_CLASSES)
        if args.stem:
            ours["stem"] = args.stem
        ref = dict(REFERENCES[config], encoder_weights=None, in_channels=3, classes=NUM_CLASSES)
        if args.ref_encoder:
            ref["encoder_name"] = args.ref_encoder
        if args.ref_decoder:
            ref["decoder_channels"] = list(args.ref_decoder)
        ours_label = (f"petseg UNet (w{ours['base_width']}-{ours['max_width']}, depth {ours['depth']}"
                      f"{', strided stem' if ours.get('stem') == 'strided' else ''})")
        ref_label = f"smp.Unet {ref['encoder_name']} (dec {'-'.join(map(str, ref['decoder_channels']))})"
        variants = []
        for key in args.variants:
            from petseg import catalog

            spec = catalog.get(key)
            model = dict(load_experiment_config(spec.experiment, config, spec.overrides)["model"])
            variants.append((f"{spec.label} [{key}]", model))
        for size in args.sizes:
            specs.append(dict(common, config=config, size=size, kind="ours", label=ours_label, model=ours))
            specs.append(dict(common, config=config, size=size, kind="ref", label=ref_label, model=ref))
            specs += [dict(common, config=config, size=size, kind="variant", label=label, model=model)
                      for label, model in variants]
    return specs


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--single", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        sys.stderr.write(done.stderr)
        raise RuntimeError(f"measurement failed ({spec['config']}, {spec['size']} px, {spec['label']}), "
                           f"exit code {done.returncode}")
    return json.loads(lines[-1])


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def memory_figure(row: dict[str, Any]) -> str:
    if row["cuda_peak_allocated_mib"] is not None:
        return f"{row['cuda_peak_allocated_mib']:.0f}"
    return f"{row['peak_rss_mib']:.0f} (+{row['rss_delta_mib']:.0f})"


def markdown_tables(rows: list[dict[str, Any]], device: str) -> str:
    memory_header = "peak CUDA alloc MiB" if device == "cuda" else "peak RSS MiB (+ during training)"
    lines = [f"| config | size | model | params (M) | fwd GFLOP/img | steps (warm-up+timed) | img/s (median) "
             f"| img/s min-max | ms/step | achieved GFLOP/s | {memory_header} |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        gflops = "-" if row["fwd_gflop_per_img"] is None else f"{row['fwd_gflop_per_img']:.1f}"
        # a training step costs about 3x the forward FLOPs (forward, gradient of the input, of the weights)
        achieved = "-" if row["fwd_gflop_per_img"] is None else f"{3 * row['fwd_gflop_per_img'] * row['img_per_s']:.0f}"
        lines.append(f"| {row['config']} | {row['size']} | {row['label']} | {row['parameters'] / 1e6:.2f} "
                     f"| {gflops} | {row['warmup']}+{row['iters']} | {row['img_per_s']:.2f} | {row['min_img_per_s']:.2f}-{row['max_img_per_s']:.2f} "
                     f"| {row['median_step_s'] * 1000:.0f} | {achieved} | {memory_figure(row)} |")
    variant_rows = variant_ratios(rows)
    if variant_rows:
        lines += ["", "| config | size | model | img/s | **img/s / plain UNet** | memory / plain UNet |",
                  "|---|---:|---|---:|---:|---:|"]
        lines += [f"| {v['config']} | {v['size']} | {v['label']} | {v['img_per_s']:.2f} | **{v['speed_ratio']:.2f}** "
                  f"| {v['memory_ratio']:.2f} |" for v in variant_rows]
    lines += ["", "| config | size | ours img/s | reference img/s | **ours / reference** | params ours / ref "
              "| memory ours / ref |", "|---|---:|---:|---:|---:|---:|---:|"]
    for ratio in ratios(rows):
        lines.append(f"| {ratio['config']} | {ratio['size']} | {ratio['ours_img_per_s']:.2f} "
                     f"| {ratio['ref_img_per_s']:.2f} | **{ratio['speed_ratio']:.2f}** "
                     f"| {ratio['param_ratio']:.2f} | {ratio['memory_ratio']:.2f} |")
    return "\n".join(lines)


def _training_memory(row: dict[str, Any]) -> float:
    if row["cuda_peak_allocated_mib"] is not None:
        return row["cuda_peak_allocated_mib"]
    return max(row["rss_delta_mib"], 1e-9)


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_key = {(row["config"], row["size"], row["kind"]): row for row in rows}
    out = []
    for (config, size, kind), ours in by_key.items():
        ref = by_key.get((config, size, "ref"))
        if kind != "ours" or ref is None:
            continue
        out.append({"config": config, "size": size, "ours_img_per_s": ours["img_per_s"],
                    "ref_img_per_s": ref["img_per_s"], "speed_ratio": ours["img_per_s"] / ref["img_per_s"],
                    "param_ratio": ours["parameters"] / ref["parameters"],
                    "memory_ratio": _training_memory(ours) / _training_memory(ref)})
    return out


def variant_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each ``--variants`` row against the plain petseg UNet of the same config and size."""
    plain = {(row["config"], row["size"]): row for row in rows if row["kind"] == "ours"}
    out = []
    for row in rows:
        base = plain.get((row["config"], row["size"]))
        if row["kind"] != "variant" or base is None:
            continue
        out.append({"config": row["config"], "size": row["size"], "label": row["label"],
                    "img_per_s": row["img_per_s"], "speed_ratio": row["img_per_s"] / base["img_per_s"],
                    "memory_ratio": _training_memory(row) / _training_memory(base)})
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.single:
        return run_single(args.single)
    device = resolve_device(args.device)
    amp = resolve_amp(args.amp, device)
    info = environment_info(device, amp)
    print("# Training throughput: petseg UNet vs segmentation_models_pytorch UNet")
    for key, value in info.items():
        print(f"{key:>28}: {value}")
    budget = f"budget {args.max_seconds:g} s/row, >= {args.min_iters} timed" if args.max_seconds else "no budget"
    print(f"{'setup':>28}: batch {args.batch}, up to {args.warmup} warm-up + {args.iters} timed steps "
          f"({budget}; median reported), AdamW, CrossEntropy(ignore_index={IGNORE_INDEX}), random data, "
          f"one subprocess per row")
    load_before = load_average()
    print(f"{'load average before':>28}: {load_before}", flush=True)

    specs = specs_for(args, device, amp)
    rows = []
    started = time.perf_counter()
    for index, spec in enumerate(specs, 1):
        print(f"[{index}/{len(specs)}] {spec['config']} {spec['size']} px  {spec['label']} ...", end=" ",
              flush=True)
        row = run_child(spec)
        rows.append(row)
        print(f"{row['parameters'] / 1e6:.2f} M params, {row['warmup']}+{row['iters']} steps, "
              f"{row['img_per_s']:.2f} img/s, "
              f"{row['median_step_s']:.2f} s/step, peak {memory_figure(row)} MiB", flush=True)
    load_after = load_average()
    print(f"{'load average after':>28}: {load_after}  (total {time.perf_counter() - started:.0f} s)")

    for ratio in ratios(rows):
        off = abs(1 / ratio["param_ratio"] - 1)
        if off > PARAM_TOLERANCE:
            print(f"warning: {ratio['config']}: reference has {1 / ratio['param_ratio']:.2f}x our parameters "
                  f"(more than {PARAM_TOLERANCE:.0%} off); pick another --ref-encoder/--ref-decoder")
    print()
    print(markdown_tables(rows, device))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"environment": info, "load_average": {"before": load_before, "after": load_after},
                   "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                            if k != "single"},
                   "results": rows, "ratios": ratios(rows), "variant_ratios": variant_ratios(rows)}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
