"""How fast the demo answers: image upload (decode + embedding) and the round trip of one more click,
measured from a client through the app's HTTP API, beside the server's own timings.

A click is timed two ways. ``http``: what a browser does, one kept-alive connection that posts the click
straight to ``/gradio_api/run/click`` (prompt events skip the queue) and fetches the returned picture.
``gradio_client``: the Python client, which joins the queue, polls its event stream every 50 ms and opens a new
connection per request, so its round trips come in 50 ms steps. Uploads always go through ``gradio_client``
(its session is the one the direct clicks use)."""

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


def click_pauses(users: int, clicks: int, pause_seconds: float, seed: int = 0) -> list[np.ndarray]:
    """Per user, the seconds it looks at each answer before its next click: uniform between 0.5x and 1.5x
    ``pause_seconds`` (seeded per user; all 0 when ``pause_seconds`` is 0)."""
    if pause_seconds < 0:
        raise ValueError(f"pause_seconds must be >= 0, got {pause_seconds}")
    return [np.random.default_rng([seed, n]).uniform(0.5, 1.5, clicks) * pause_seconds for n in range(users)]


def upload(client: Any, image_path: str | Path, model_key: str) -> dict:
    """Upload ``image_path`` in ``client``'s session (a ``gradio_client.Client``): the reply's details; raises
    RuntimeError on an error the app reports."""
    from gradio_client import handle_file

    _, message, details = client.predict(handle_file(str(image_path)), model_key, api_name="/upload")
    if details.get("error"):
        raise RuntimeError(f"upload failed: {message}")
    return details


class DirectClicker:
    """Clicks for one ``gradio_client`` session sent as a browser sends them: a POST to ``/gradio_api/run/click``
    on one kept-alive ``httpx`` connection, then a GET of the picture in the reply."""

    def __init__(self, url: str, session_hash: str) -> None:
        import httpx

        self.base = url.rstrip("/")
        self.session_hash = session_hash
        self.http = httpx.Client(timeout=60)

    def click(self, x: float, y: float, model_key: str) -> tuple[str, dict]:
        """The reply's status message and details; raises RuntimeError on an HTTP error, an error the app
        reports or a missing picture."""
        reply = self.http.post(f"{self.base}/gradio_api/run/click", json={
            "data": [x, y, "point", "auto", model_key, None], "session_hash": self.session_hash})  # None: the session state, kept by the server
        if reply.status_code != 200:
            raise RuntimeError(f"click failed: HTTP {reply.status_code} {reply.text[:200]}")
        picture, message, details = reply.json()["data"][:3]
        if details.get("error"):
            raise RuntimeError(f"click failed: {message}")
        if not picture or not picture.get("url"):
            raise RuntimeError(f"click failed: no picture in the reply ({message})")
        fetched = self.http.get(picture["url"])
        if fetched.status_code != 200 or not fetched.content:
            raise RuntimeError(f"click failed: the picture could not be fetched (HTTP {fetched.status_code})")
        return message, details

    def close(self) -> None:
        self.http.close()


def measure_latency(url: str, image_path: str | Path, model_key: str, clicks: int = 10) -> dict[str, Any]:
    """Upload ``image_path`` twice (the second time its embedding is cached), then add ``clicks`` point
    prompts one by one; every figure is wall-clock seconds seen by the client, except the ``server_*`` ones."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    start = time.perf_counter()
    first = upload(client, image_path, model_key)
    upload_seconds = time.perf_counter() - start
    start = time.perf_counter()
    _, _, cached = client.predict(handle_file(str(image_path)), model_key, api_name="/upload")
    upload_cached = time.perf_counter() - start
    size, details = first["image"], first
    # the direct clicks get a session of their own, so each session's prompts are one plain click sequence
    browser = Client(url, verbose=False)
    upload(browser, image_path, model_key)
    direct = DirectClicker(url, browser.session_hash)
    round_trips, server, client_round_trips = [], [], []
    try:
        for x, y in click_grid(size["width"], size["height"], clicks):
            start = time.perf_counter()
            _, details = direct.click(x, y, model_key)
            round_trips.append(time.perf_counter() - start)
            server.append(details["predict_seconds"])
            start = time.perf_counter()  # the same click position in the other session, through gradio_client
            _, message, details = client.predict(x, y, "point", "auto", model_key, api_name="/click")
            client_round_trips.append(time.perf_counter() - start)
            if details.get("error"):
                raise RuntimeError(f"click failed: {message}")
    finally:
        direct.close()
        browser.close()
        client.close()
    return {
        "image": f"{size['width']}x{size['height']}", "model": details["model"],
        "upload_seconds": upload_seconds, "server_embedding_seconds": first.get("embedding_seconds"),
        "upload_cached_seconds": upload_cached, "embedding_was_cached": bool(cached.get("embedding_cached")),
        "click_round_trip_seconds": round_trips, "server_predict_seconds": server,
        "click_median_ms": 1000 * float(np.median(round_trips)), "click_p90_ms": 1000 * float(np.percentile(round_trips, 90)),
        "click_p95_ms": 1000 * float(np.percentile(round_trips, 95)),
        "server_predict_median_ms": 1000 * float(np.median(server)),
        "gradio_client_click_median_ms": 1000 * float(np.median(client_round_trips)),
        "gradio_client_click_p95_ms": 1000 * float(np.percentile(client_round_trips, 95)),
        "host": f"{platform.node()} ({platform.processor() or platform.machine()})",
    }


def measure_concurrent_clicks(url: str, image_path: str | Path, model_key: str, users: int = 1,
                              clicks: int = 20, pause_seconds: float = 0.0, seed: int = 0) -> dict[str, Any]:
    """``users`` browser sessions (one ``gradio_client.Client`` each) upload ``image_path`` one after another
    (embedded once, then cached) and click once, untimed (warm-up). Then each, in its own thread, adds
    ``clicks`` point prompts sent directly (:class:`DirectClicker`, as a browser does) and waits for its own
    answer before the next. ``pause_seconds == 0`` (the worst case): in rounds, every user clicks at the same
    moment (a barrier). ``pause_seconds > 0`` (people at work): before each click a user looks at the picture
    for a random time, uniform between 0.5x and 1.5x ``pause_seconds`` (seeded per user), so clicks collide
    only by chance. Returns every click's round trip (seconds, all users together) with their median and 95th
    percentile (ms), the wall-clock seconds of the whole click phase (pauses included) and the load average at
    the end.

    Each user clicks its own pixels: Gradio stores a reply's picture under a hash of its bytes, and two replies
    with identical pictures at the same moment (same image, same clicks) race on that one file (a download can
    find it truncated). For the same reason the uploads are not simultaneous."""
    pauses = click_pauses(users, clicks, pause_seconds, seed)
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client

    clients, clickers, grids = [], [], []
    for n in range(users):
        client = Client(url, verbose=False)
        size = upload(client, image_path, model_key)["image"]
        grid = click_grid(size["width"], size["height"], (clicks + 1) * users)[n::users]
        direct = DirectClicker(url, client.session_hash)
        direct.click(*grid[0], model_key)  # warm-up, untimed
        clients.append(client)
        clickers.append(direct)
        grids.append(grid[1:])
    barrier = threading.Barrier(users)

    def user(direct: DirectClicker, grid: list[tuple[int, int]], waits: np.ndarray) -> list[float]:
        try:
            times = []
            for (x, y), wait in zip(grid, waits, strict=True):
                if pause_seconds > 0:
                    time.sleep(float(wait))
                else:
                    barrier.wait(timeout=300)
                start = time.perf_counter()
                direct.click(x, y, model_key)
                times.append(time.perf_counter() - start)
            return times
        except BaseException:
            barrier.abort()  # the other users stop waiting for this one
            raise

    try:
        start = time.perf_counter()
        with ThreadPoolExecutor(users) as pool:
            per_user = list(pool.map(user, clickers, grids, pauses))
        phase_seconds = time.perf_counter() - start
    finally:
        for client, direct in zip(clients, clickers, strict=True):
            direct.close()
            client.close()
    round_trips = [t for times in per_user for t in times]
    return {"users": users, "clicks_per_user": clicks, "pause_seconds": pause_seconds,
            "click_round_trip_seconds": round_trips, "click_phase_seconds": phase_seconds,
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
        "one more click via gradio_client (median)": (result["gradio_client_click_median_ms"], float("nan")),
    }
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["round trip (ms)", "server: model call (ms)"])
    met = result["click_p95_ms"] < aim_ms
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    text = (f"{result['model']}, image {result['image']}, measured on {result['host']} with {os.cpu_count()} "
            f"CPU cores (load average {load:.1f} while measuring; other work on the machine slows every figure). "
            f"An extra click sent as a browser sends it took {result['click_median_ms']:.0f} ms (median), "
            f"{result['click_p95_ms']:.0f} ms (95th percentile): the {aim_ms:.0f} ms aim for the 95th percentile is "
            f"{'met' if met else 'not met on this machine'}. Through the Python client, which polls for its "
            f"answer every 50 ms, the median was {result['gradio_client_click_median_ms']:.0f} ms.")
    return {"table": table.round(0), "text": text}
