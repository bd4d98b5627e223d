"""Two builds of one cache at once: neither deletes the other's partial folder (issue 13)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import petseg.data.cache as cache_module
from petseg.data.cache import build_cache, cache_key
from petseg.data.validate import check_dataset


def test_partials_of_running_builds_are_kept_stale_ones_removed(official_dataset, tmp_path):
    report = check_dataset(official_dataset)
    cache_dir = tmp_path / "c"
    cache_dir.mkdir()
    name = cache_key(report.fingerprint, 32)
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        theirs = cache_dir / f".{name}.partial-{running.pid}"  # another petseg data prepare, still writing
        theirs.mkdir()
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
        stale = cache_dir / f".{name}.partial-{int(dead.stdout)}"  # a killed build
        stale.mkdir()
        built = build_cache(report, 32, cache_dir, progress=False)
        assert built.path == cache_dir / name
        assert theirs.is_dir() and not stale.exists()
    finally:
        running.kill()
        running.wait()


def test_a_cache_finished_meanwhile_by_another_build_is_used(official_dataset, tmp_path, monkeypatch):
    report = check_dataset(official_dataset)
    elsewhere = build_cache(report, 32, tmp_path / "elsewhere", progress=False)
    cache_dir = tmp_path / "c"
    real_write = cache_module._write_arrays

    def other_process_finishes_first(samples, size, folder, progress):
        shutil.copytree(elsewhere.path, cache_dir / elsewhere.path.name)  # renamed into place by the other
        real_write(samples, size, folder, progress)

    monkeypatch.setattr(cache_module, "_write_arrays", other_process_finishes_first)
    built = build_cache(report, 32, cache_dir, progress=False)
    assert built.path == cache_dir / elsewhere.path.name
    assert sorted(p.name for p in cache_dir.iterdir()) == [built.path.name]  # our partial is gone
    assert os.path.getsize(built.path / "images.npy") > 0
