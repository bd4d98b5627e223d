"""How fast does ``petseg`` say that there is no dataset on an offline machine? (issue 13: within 1 s)

    .venv/bin/python benchmarks/cli_offline.py              # 5 runs of each command
    .venv/bin/python benchmarks/cli_offline.py --repeats 10 --json cli_offline.json

Each command runs as a user runs it, a fresh ``python -m petseg`` process (interpreter start-up included),
with ``PETSEG_DATA`` unset, an empty ``PETSEG_CACHE`` and the network blocked inside the child (every name
lookup fails, as on a machine without network; nothing is downloaded even where there is one). It prints,
per command, the best and median wall-clock seconds, the exit status, the one line printed, and which heavy
modules (torch, albumentations, cv2, pandas) were imported before the line: none is the design.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = (["data", "prepare"], ["train", "unet"], ["record", "unet"], ["book"])
CHILD = """
import atexit, socket, sys

def no_network(*args, **kwargs):
    raise socket.gaierror(socket.EAI_NONAME, "blocked by benchmarks/cli_offline.py")

socket.getaddrinfo = no_network
socket.create_connection = no_network
atexit.register(lambda: print("HEAVY " + ",".join(m for m in ("torch", "albumentations", "cv2", "pandas")
                                                   if m in sys.modules), file=sys.stderr))
import runpy
sys.argv = ["petseg", *sys.argv[1:]]
runpy.run_module("petseg", run_name="__main__")
"""


def run_once(command: list[str], cache: str) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "PETSEG_DATA" and "proxy" not in key.lower()}
    env.update(PETSEG_CACHE=cache, PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", CHILD, *command], capture_output=True, text=True, env=env,
                            timeout=120)
    seconds = time.perf_counter() - start
    lines = result.stderr.strip().splitlines()
    heavy = next((line[5:].strip() for line in lines if line.startswith("HEAVY")), "")
    message = [line for line in lines if not line.startswith("HEAVY")]
    return {"seconds": seconds, "code": result.returncode, "lines": message, "heavy": heavy}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the timings to this file")
    args = parser.parse_args()
    report = {"python": sys.version.split()[0], "cpu_count": os.cpu_count(), "load_before": os.getloadavg(),
              "commands": {}}
    with tempfile.TemporaryDirectory() as cache:
        for command in COMMANDS:
            runs = [run_once(command, cache) for _ in range(args.repeats)]
            times = [run["seconds"] for run in runs]
            last = runs[-1]
            report["commands"][" ".join(command)] = {
                "best_s": round(min(times), 3), "median_s": round(statistics.median(times), 3),
                "exit_status": last["code"], "lines_printed": len(last["lines"]),
                "line": last["lines"][0] if last["lines"] else "", "heavy_imported": last["heavy"] or "none"}
    report["load_after"] = os.getloadavg()
    print(f"python {report['python']}, {report['cpu_count']} CPUs, load {report['load_before'][0]:.2f} -> "
          f"{report['load_after'][0]:.2f}; {args.repeats} runs each, fresh process, offline, no PETSEG_DATA")
    for command, row in report["commands"].items():
        print(f"petseg {command:<13} best {row['best_s']:.2f} s  median {row['median_s']:.2f} s  "
              f"exit {row['exit_status']}  lines {row['lines_printed']}  heavy imports: {row['heavy_imported']}")
    first = next(iter(report["commands"].values()))
    print(f"the line: {first['line']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
