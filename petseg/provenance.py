"""Record where a result came from: command, code version, software and hardware.

``collect_provenance()`` is cheap (a couple of ``git`` calls) and never fails: a missing piece of
information is recorded as ``None``. Git is queried read-only (``--no-optional-locks``), so it is safe to
call while other processes use the repository.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import socket
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["collect_provenance", "git_state", "package_versions"]

GIT_COMMIT_ENV = "PETSEG_GIT_COMMIT"
_PACKAGES = ("numpy", "torchmetrics", "segmentation_models_pytorch", "timm", "albumentations", "sam2",
             "open_clip_torch")


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        result = subprocess.run(["git", "--no-optional-locks", *args], cwd=cwd, capture_output=True,
                                text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def git_state(path: str | Path | None = None) -> dict[str, Any]:
    """``{"commit", "dirty", "branch"}`` of the git checkout holding ``path`` (default: this package).

    ``dirty`` is True when tracked files differ from the commit (untracked files are not considered);
    every value is None outside a git checkout or without a commit. A copy of a checkout without ``.git``
    (a remote GPU machine) can name its commit in ``$PETSEG_GIT_COMMIT`` (and ``$PETSEG_GIT_DIRTY`` = 0/1);
    ``source`` then says so.
    """
    cwd = Path(path) if path is not None else Path(__file__).resolve().parent
    commit = _git(["rev-parse", "HEAD"], cwd)
    if commit is None and os.environ.get(GIT_COMMIT_ENV):
        dirty = os.environ.get("PETSEG_GIT_DIRTY")
        return {"commit": os.environ[GIT_COMMIT_ENV].strip(), "dirty": None if dirty not in ("0", "1") else dirty == "1",
                "branch": None, "source": f"${GIT_COMMIT_ENV} (a copy of the checkout without .git)"}
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd) if commit else None
    branch = _git(["rev-parse", "--abbrev-ref", "HEAD"], cwd) if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status), "branch": branch}


def package_versions(names: Sequence[str] = _PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution in ``names`` (None for one that is not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _device_info() -> dict[str, Any]:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return {"torch": None}
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpu_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "gpu_names": [],
        "mps_available": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
    }
    if info["cuda_available"]:
        info["gpu_names"] = [torch.cuda.get_device_name(index) for index in range(info["gpu_count"])]
        info["device_name"] = info["gpu_names"][0]
    elif info["mps_available"]:
        info["device_name"] = "Apple MPS"
    else:
        info["device_name"] = platform.processor() or platform.machine() or "cpu"
    return info


def collect_provenance(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return a JSON-serialisable dict describing this run; keys of ``extra`` are added (and win).

    Keys: ``command`` (shell-quoted ``sys.argv``), ``argv``, ``cwd``, ``git`` (commit, dirty, branch),
    ``python``, ``platform``, ``hostname``, ``cpu_count``, ``cpus_usable``, ``packages``, the torch/device
    entries (``torch``, ``cuda_available``, ``cuda_version``, ``gpu_count``, ``gpu_names``, ``device_name``,
    ...), ``world_size`` (from the torchrun environment) and ``utc_time`` (ISO 8601).
    """
    try:
        cpus_usable: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus_usable = os.cpu_count()
    provenance: dict[str, Any] = {
        "command": shlex.join(sys.argv) if sys.argv else None,
        "argv": list(sys.argv),
        "cwd": os.getcwd(),
        "git": git_state(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": cpus_usable,
        "packages": package_versions(),
        **_device_info(),
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "utc_time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    if extra:
        provenance.update(extra)
    return provenance
