"""How fast the demo answers: image upload (decode + embedding) and the round trip of one more click,
measured from a client through the app's HTTP API (``gradio_client``), beside the server's own timings."""

from __future__ import annotations

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
        "server_predict_median_ms": 1000 * float(np.median(server)),
        "host": f"{platform.node()} ({platform.processor() or platform.machine()})",
    }
