"""How fast does the demo answer? Image upload (decode + SAM 2 embedding) and each extra click's round trip.

    .venv/bin/python benchmarks/demo_latency.py                                  # random SAM 2, 1024 and 256 px
    .venv/bin/python benchmarks/demo_latency.py --sam2 runs/<sam2 run> --clicks 20
    .venv/bin/python benchmarks/demo_latency.py --device cuda --json demo_latency.json

For each SAM 2 (a trained one with ``--sam2``, else SAM 2.1 hiera-tiny with random weights at the
``--sizes`` given: the same network cost as trained weights) it starts ``petseg demo`` on 127.0.0.1 in a
child process and measures, through its HTTP API: the first upload of a real image (decode + embedding +
response, through ``gradio_client``), the same upload again (embedding from the cache), and ``--clicks``
point prompts one after another (prompt encoder + mask decoder + drawing + JPEG + HTTP), each sent as a
browser sends it (one kept-alive connection, straight to ``/gradio_api/run/click``, then the picture fetched)
and again through ``gradio_client`` (queue, 50 ms polling). Beside them: the server's own embedding and
per-click prediction times, and the predictor alone (``predict`` on a set image, no app). Then, for each
``--users`` count N, N browser sessions (each its own session and connection) click ``--clicks`` times,
twice: all at the same moment (the worst case), then as people do, each looking at the answer for a random
0.5-1.5x ``--pause`` seconds before the next click (so clicks collide only by chance). For each: the median
and 95th percentile of a click's round trip per N, and the ratio of the largest N to one user (users must not
wait for each other). The aim: p95 under 100 ms per click for one
user, and 5 users no worse than 2x one user. See benchmarks/README.md.

    .venv/bin/python benchmarks/demo_latency.py --sizes 1024 --users 1 5 --clicks 40
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch


def predictor_only(predictor, image: np.ndarray, clicks: list[tuple[int, int]]) -> dict[str, float]:
    """``set_image`` once, then ``predict`` one more point at a time: seconds (median over clicks)."""
    start = time.perf_counter()
    with torch.inference_mode():
        predictor.set_image(image)
    embed = time.perf_counter() - start
    times, points = [], []
    for click in clicks:
        points.append(click)
        start = time.perf_counter()
        with torch.inference_mode():
            predictor.predict(point_coords=np.asarray(points, np.float32), point_labels=np.ones(len(points)),
                              multimask_output=len(points) == 1)
        times.append(time.perf_counter() - start)
    return {"set_image_seconds": embed, "predict_median_ms": 1000 * statistics.median(times)}


def sample_image(data: str | None) -> Path:
    from petseg.data.layout import data_root_from_env, find_dataset_root

    root = data_root_from_env(data)
    if root is None:
        raise SystemExit("give --data or set PETSEG_DATA (a real image is uploaded)")
    images = sorted((find_dataset_root(root) / "images").glob("*.jpg"))
    if not images:
        raise SystemExit(f"no JPEG images under {root}/images")
    return images[len(images) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sam2", help="a trained SAM 2 (run directory / checkpoint); default: random weights")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 256],
                        help="input sizes of the random-weight SAM 2 (ignored with --sam2)")
    parser.add_argument("--clicks", type=int, default=10, help="clicks per measurement (per user)")
    parser.add_argument("--users", type=int, nargs="+", default=[1, 5],
                        help="numbers of concurrent users clicking at once (0 skips the concurrent part)")
    parser.add_argument("--pause", type=float, default=0.5,
                        help="also measure users who look at each answer for 0.5x-1.5x this many seconds before "
                             "clicking again (0: only the worst case, every user clicking at the same moment)")
    parser.add_argument("--data", help="dataset folder (default: $PETSEG_DATA)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.pause < 0:
        parser.error(f"--pause must be >= 0 seconds, got {args.pause}")

    from petseg.demo.app import serve_subprocess
    from petseg.demo.latency import click_grid, measure_concurrent_clicks, measure_latency
    from petseg.demo.models import sam2_options
    from petseg.demo.session import load_upload

    image_path = sample_image(args.data)
    image, _ = load_upload(image_path)
    empty_runs = Path(os.devnull)  # no run discovery: only the SAM 2 asked for
    variants = [(None, size) for size in args.sizes] if args.sam2 is None else [(args.sam2, None)]
    rows = []
    for source, size in variants:
        options = sam2_options(source, empty_runs, device=args.device, random_image_size=size or 1024)
        flags = ["--sam2", str(source)] if source else ["--random-image-size", str(size)]
        with serve_subprocess(*flags, "--runs", str(empty_runs), "--device", args.device) as url:
            result = measure_latency(url, image_path, options[0].key, clicks=args.clicks)
            pauses = [0.0] + ([args.pause] if args.pause > 0 else [])
            result["concurrent"] = [measure_concurrent_clicks(url, image_path, options[0].key, users=n,
                                                              clicks=args.clicks, pause_seconds=pause)
                                    for pause in pauses for n in args.users if n > 0]
        engine = options[0].load()
        # in a worker thread, as the app's handlers run: on a busy machine torch's OpenMP threads were far
        # slower from the main thread (measured here: 2 threads, load 11, 256 px: 165 vs 23 ms per predict)
        with ThreadPoolExecutor(1) as pool:
            result.update(pool.submit(predictor_only, engine.predictor, image,
                                      click_grid(image.shape[1], image.shape[0], args.clicks)).result())
        result.update(device=args.device, threads=torch.get_num_threads())
        rows.append(result)
        print(f"{result['model']} on {args.device}, image {result['image']} ({image_path.name}):")
        print(f"  upload + embedding   {result['upload_seconds']:.2f} s (server embedding "
              f"{result['server_embedding_seconds']:.2f} s; predictor alone {result['set_image_seconds']:.2f} s)")
        print(f"  same image again     {result['upload_cached_seconds']:.2f} s (embedding cached: "
              f"{result['embedding_was_cached']})")
        print(f"  per extra click      median {result['click_median_ms']:.0f} ms, p95 {result['click_p95_ms']:.0f} ms "
              f"round trip (direct HTTP, as a browser); server predict {result['server_predict_median_ms']:.0f} ms; "
              f"predictor alone {result['predict_median_ms']:.0f} ms  ({args.clicks} clicks)")
        print(f"  via gradio_client    median {result['gradio_client_click_median_ms']:.0f} ms, p95 "
              f"{result['gradio_client_click_p95_ms']:.0f} ms (queue join + 50 ms polling + a new connection per request)")
        result["concurrency_ratio"] = []
        for pause in sorted({row["pause_seconds"] for row in result["concurrent"]}):
            how = "clicking at the same moment" if pause == 0 else f"pausing {0.5 * pause:.2g}-{1.5 * pause:.2g} s between clicks"
            by_users = {row["users"]: row for row in result["concurrent"] if row["pause_seconds"] == pause}
            print(f"  users {how}:")
            for row in by_users.values():
                print(f"    {row['users']} user{'s' if row['users'] > 1 else ' '}  click median {row['click_median_ms']:.0f} ms, "
                      f"p95 {row['click_p95_ms']:.0f} ms round trip ({row['users']} x {row['clicks_per_user']} clicks; "
                      f"load average {row['load_average']:.2f})")
            if 1 in by_users and len(by_users) > 1:
                most = by_users[max(by_users)]
                ratio = {"users": most["users"], "pause_seconds": pause,
                         "median": most["click_median_ms"] / by_users[1]["click_median_ms"],
                         "p95": most["click_p95_ms"] / by_users[1]["click_p95_ms"]}
                result["concurrency_ratio"].append(ratio)
                print(f"    {most['users']} users / 1 user  median x{ratio['median']:.2f}, p95 x{ratio['p95']:.2f} "
                      "(aim: at most x2)")
    print(f"host: {platform.node()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    if args.json:
        for row in rows:
            row.pop("click_round_trip_seconds", None)
            row.pop("server_predict_seconds", None)
            for concurrent in row["concurrent"]:
                concurrent.pop("click_round_trip_seconds", None)
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
