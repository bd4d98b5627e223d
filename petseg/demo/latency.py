"""How fast the demo answers: image upload (decode + embedding) and the round trip of one more click,
measured from a client through the app's HTTP API (``gradio_client``), beside the server's own timings."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np


def click_grid(width: int, height: int, n: int) -> list[tuple[int, int]]:
    """``n`` click positions spread over the middle of a ``width`` x ``height`` image (deterministic)."""
    rng = np.random.default_rng(0)
    xs = rng.uniform(0.2, 0.8, n) * width
    ys = rng.uniform(0.2, 0.8, n) * height
    return [(int(x), int(y)) for x, y in zip(xs, ys, strict=True)]


def measure_latency(url: str, image_path: str | Path, model_key: str, clicks: int = 10) -> dict[str, Any]:
    """Upload ``image_path`` twice (the second time its embedding is cached), then add ``clicks`` point
    prompts one by one; every figure is wall-clock seconds seen by the client, except the ``server_*`` ones."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    start = time.perf_counter()
    _, message, first = client.predict(handle_file(str(image_path)), model_key, api_name="/upload")
    upload = time.perf_counter() - start
    if first.get("error"):
        raise RuntimeError(f"upload failed: {message}")
    start = time.perf_counter()
    _, _, cached = client.predict(handle_file(str(image_path)), model_key, api_name="/upload")
    upload_cached = time.perf_counter() - start
    size, details = first["image"], first
    round_trips, server = [], []
    for x, y in click_grid(size["width"], size["height"], clicks):
        start = time.perf_counter()
        _, message, details = client.predict(x, y, "point", "auto", model_key, api_name="/click")
        round_trips.append(time.perf_counter() - start)
        if details.get("error"):
            raise RuntimeError(f"click failed: {message}")
        server.append(details["predict_seconds"])
    return {
        "image": f"{size['width']}x{size['height']}", "model": details["model"],
        "upload_seconds": upload, "server_embedding_seconds": first.get("embedding_seconds"),
        "upload_cached_seconds": upload_cached, "embedding_was_cached": bool(cached.get("embedding_cached")),
        "click_round_trip_seconds": round_trips, "server_predict_seconds": server,
        "click_median_ms": 1000 * float(np.median(round_trips)), "click_p90_ms": 1000 * float(np.percentile(round_trips, 90)),
        "click_p95_ms": 1000 * float(np.percentile(round_trips, 95)),
        "server_predict_median_ms": 1000 * float(np.median(server)),
        "host": f"{platform.node()} ({platform.processor() or platform.machine()})",
    }


def measure_concurrent_clicks(url: str, image_path: str | Path, model_key: str, users: int = 1,
                              clicks: int = 20) -> dict[str, Any]:
    """``users`` browser sessions (one ``gradio_client.Client`` each) upload ``image_path`` one after another
    (embedded once, then cached) and click once, untimed (warm-up). Then each, in its own thread, adds
    ``clicks`` point prompts in rounds: in each round every user clicks at the same moment (a barrier) and waits
    for its own answer. Returns every click's round trip (seconds, all users together) with their median and
    95th percentile (ms) and the load average at the end.

    Each user clicks its own pixels: Gradio stores a reply's picture under a hash of its bytes, and two replies
    with identical pictures at the same moment (same image, same clicks) race on that one file (a download can
    find it truncated). For the same reason the uploads are not simultaneous."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client, handle_file

    clients, grids = [], []
    for n in range(users):
        client = Client(url, verbose=False)
        _, message, details = client.predict(handle_file(str(image_path)), model_key, api_name="/upload")
        if details.get("error"):
            raise RuntimeError(f"upload failed: {message}")
        size = details["image"]
        grid = click_grid(size["width"], size["height"], (clicks + 1) * users)[n::users]
        client.predict(*grid[0], "point", "auto", model_key, api_name="/click")  # warm-up, untimed
        clients.append(client)
        grids.append(grid[1:])
    barrier = threading.Barrier(users)

    def user(client: Any, grid: list[tuple[int, int]]) -> list[float]:
        try:
            times = []
            for x, y in grid:
                barrier.wait(timeout=300)
                start = time.perf_counter()
                _, message, details = client.predict(x, y, "point", "auto", model_key, api_name="/click")
                times.append(time.perf_counter() - start)
                if details.get("error"):
                    raise RuntimeError(f"click failed: {message}")
            return times
        except BaseException:
            barrier.abort()  # the other users stop waiting for this one
            raise

    try:
        with ThreadPoolExecutor(users) as pool:
            per_user = list(pool.map(user, clients, grids))
    finally:
        for client in clients:
            client.close()
    round_trips = [t for times in per_user for t in times]
    return {"users": users, "clicks_per_user": clicks, "click_round_trip_seconds": round_trips,
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
            "click_median_ms": 1000 * float(np.median(round_trips)),
            "click_p95_ms": 1000 * float(np.percentile(round_trips, 95))}


def latency_summary(result: dict[str, Any], aim_ms: float = 100) -> dict[str, Any]:
    """A table of :func:`measure_latency`'s figures and a sentence saying where and under what load they
    were measured and whether the per-click aim was met."""
    import pandas as pd

    rows = {
        "upload + embedding (first time)": (1000 * result["upload_seconds"],
                                            1000 * (result["server_embedding_seconds"] or float("nan"))),
        "upload, embedding cached": (1000 * result["upload_cached_seconds"], 0.0),
        "one more click (median)": (result["click_median_ms"], result["server_predict_median_ms"]),
        "one more click (90th percentile)": (result["click_p90_ms"],
                                             1000 * float(np.percentile(result["server_predict_seconds"], 90))),
    }
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["round trip (ms)", "server: model call (ms)"])
    met = result["click_median_ms"] < aim_ms
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    text = (f"{result['model']}, image {result['image']}, measured on {result['host']} with {os.cpu_count()} "
            f"CPU cores (load average {load:.1f} while measuring; other work on the machine slows every figure). "
            f"The median extra click took {result['click_median_ms']:.0f} ms: the {aim_ms:.0f} ms aim is "
            f"{'met' if met else 'not met on this machine'}.")
    return {"table": table.round(0), "text": text}
