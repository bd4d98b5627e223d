"""The ``petseg`` command line: ``data check``, ``data prepare`` (online-free), and the console script."""

from __future__ import annotations

import functools
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from petseg.cli import main

OFFLINE_HOST = "petseg-offline.invalid"  # RFC 6761: never resolves
OFFLINE_URL = f"http://{OFFLINE_HOST}/data/"
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
              "no_proxy", "NO_PROXY")


@pytest.fixture
def no_data_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """PETSEG_DATA unset, PETSEG_CACHE a fresh folder (so there is no finished download); returns the cache."""
    cache = tmp_path / "cache"
    monkeypatch.delenv("PETSEG_DATA", raising=False)
    monkeypatch.setenv("PETSEG_CACHE", str(cache))
    return cache


def damage(path: Path) -> None:
    """Cut a JPEG short, as an interrupted copy would."""
    path.write_bytes(path.read_bytes()[:200])


# ------------------------------------------------------------------------------------------ data check


def test_data_check_json_reports_totals_rejections_counts_and_split(
    official_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damage(official_dataset / "images" / "Bengal_3.jpg")  # a trainval image (i <= 5)
    assert main(["data", "check", str(official_dataset), "--json"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out)

    assert summary["layout"] == "official"
    assert summary["root"] == str(official_dataset)
    assert summary["totals"] == {"images_found": 30, "usable_pairs": 29, "repaired": 0, "rejected": 1,
                                 "stray_files": 0}
    [rejected] = summary["rejected"]
    assert rejected["stem"] == "Bengal_3" and rejected["path"] == "images/Bengal_3.jpg"
    assert "truncated or corrupt" in rejected["reason"]
    assert summary["species"] == {"cat": 19, "dog": 10}
    assert summary["breeds"] == {"Abyssinian": 10, "Bengal": 9, "beagle": 10}
    split = summary["split"]
    assert split["test"] == 15 and split["test_source"] == "official test list"
    assert split["train"] + split["val"] == 14  # 15 trainval lines minus the damaged one
    assert split["val"] >= 1 and split["unsplit"] == 0 and split["seed"] == 0


def test_data_check_text_names_the_rejected_file(official_dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    damage(official_dataset / "images" / "beagle_7.jpg")
    assert main(["data", "check", str(official_dataset)]) == 0
    out = capsys.readouterr().out
    assert "usable pairs 29" in out and "rejected 1" in out
    assert "rejected images/beagle_7.jpg: image: truncated or corrupt image" in out


def test_data_check_seed_option_changes_the_split_seed(official_dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", str(official_dataset), "--json", "--seed", "7"]) == 0
    assert json.loads(capsys.readouterr().out)["split"]["seed"] == 7


def test_data_check_without_root_or_env_says_what_to_do(no_data_env: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "check"])
    message = str(exit_info.value.code)
    assert "give ROOT or set PETSEG_DATA" in message


def test_data_check_reads_petseg_data(official_dataset: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PETSEG_DATA", str(official_dataset))
    assert main(["data", "check", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["usable_pairs"] == 30


def test_data_check_missing_folder_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", str(tmp_path / "nowhere"), "--json"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("petseg: ") and "does not exist" in err and len(err.splitlines()) == 1


# ---------------------------------------------------------------------------------------- data prepare


def test_data_prepare_builds_split_and_cache(official_dataset: Path, no_data_env: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "prepare", "--data", str(official_dataset), "--image-size", "32"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["root"] == str(official_dataset)
    assert result["image_size"] == 32
    assert result["split"]["test"] == 15 and result["split"]["train"] + result["split"]["val"] == 15
    cache = Path(result["cache"])
    assert cache.parent == no_data_env and cache.name.startswith("pets-32px-")
    assert json.loads((cache / "meta.json").read_text())["complete"] is True
    assert np.load(cache / "images.npy", mmap_mode="r").shape == (30, 32, 32, 3)
    assert np.load(cache / "masks.npy", mmap_mode="r").shape == (30, 32, 32)
    split_file = Path(result["split_file"])
    assert split_file.is_file() and split_file.is_relative_to(no_data_env)

    # a second run reuses the cache
    assert main(["data", "prepare", "--data", str(official_dataset), "--image-size", "32"]) == 0
    assert json.loads(capsys.readouterr().out)["cache"] == str(cache)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Point downloads at an unresolvable host and refuse every other lookup or connection.

    ``download_dataset`` binds ``OFFICIAL_BASE_URL`` as a default argument at import time, so patching the
    constant alone would not redirect it: the function itself is wrapped. The socket and urllib guards make
    sure that, even on a machine with internet, nothing reaches the Oxford server. Returns the blocked attempts.
    """
    from petseg.data import download as dl

    blocked: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def guarded_getaddrinfo(host, *args, **kwargs):
        if host != OFFLINE_HOST:
            blocked.append(f"lookup {host}")
            raise socket.gaierror(socket.EAI_NONAME, f"blocked by test: {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    def refuse_connect(self, address, *args, **kwargs):
        blocked.append(f"connect {address}")
        raise OSError("network blocked by test")

    def refuse_urlopen(url, *args, **kwargs):
        blocked.append(f"urlopen {getattr(url, 'full_url', url)}")
        raise OSError("network blocked by test")

    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", refuse_connect)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: refuse_connect(None, address))
    monkeypatch.setattr(urllib.request, "urlopen", refuse_urlopen)
    monkeypatch.setattr(dl, "OFFICIAL_BASE_URL", OFFLINE_URL)
    monkeypatch.setattr(dl, "download_dataset", functools.partial(dl.download_dataset, base_url=OFFLINE_URL))
    return blocked


def test_data_prepare_offline_fails_fast_with_one_line(no_data_env: Path, no_network: list[str],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import petseg.data.pipeline  # noqa: F401  (import torch & co. before the clock starts)

    start = time.perf_counter()
    code = main(["data", "prepare"])
    elapsed = time.perf_counter() - start
    captured = capsys.readouterr()

    assert code == 1
    assert elapsed < 2.0, f"offline failure took {elapsed:.1f} s"
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("petseg: ") and "PETSEG_DATA" in lines[0] and "--data" in lines[0]
    assert OFFLINE_HOST in lines[0]
    assert captured.out == ""
    assert no_network == [], f"a network access escaped the offline set-up: {no_network}"
    downloads = no_data_env / "downloads"
    assert not (no_data_env / "oxford-iiit-pet").exists()  # nothing half-made
    assert not downloads.exists() or not any(downloads.iterdir())


# ------------------------------------------------------------------------------------- console script


def test_console_script_help() -> None:
    script = shutil.which("petseg", path=str(Path(sys.executable).parent))
    assert script is not None, f"no petseg console script next to {sys.executable} (pip install -e .)"
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage: petseg")
    for command in ("data", "book"):
        assert command in result.stdout
    result = subprocess.run([script, "data", "prepare", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--image-size" in result.stdout
