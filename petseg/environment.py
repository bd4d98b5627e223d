"""Set-up helpers run by ``bootstrap.sh``: the torchvision fix and an import check of the whole stack.

``python -m petseg.environment install`` checks, in a fresh interpreter, whether ``import torchvision``
works. If it fails with the CUDA-linked-wheel error (see :mod:`petseg._torchvision_shim`), it copies the
shim into site-packages with a ``.pth`` line that activates it in every interpreter of the environment.
Where torchvision imports normally it removes any earlier shim, so the step is a no-op there.
``python -m petseg.environment check`` imports every library the book uses and prints their versions.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

SHIM_MODULE = "_petseg_torchvision_shim"
SHIM_PTH = "petseg-torchvision-shim.pth"
STACK = ["torch", "torchvision", "sam2", "open_clip", "timm", "albumentations", "cv2", "gradio",
         "papermill", "jupyter_book", "torchmetrics", "segmentation_models_pytorch", "pandas", "seaborn"]


def _site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def _fresh_import(module: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)


def torchvision_needs_shim() -> bool:
    """True if ``import torchvision`` fails in a fresh interpreter *without* the shim."""
    site = _site_packages()
    pth = site / SHIM_PTH
    disabled = site / (SHIM_PTH + ".disabled")
    if pth.exists():
        pth.rename(disabled)
    try:
        result = _fresh_import("torchvision")
    finally:
        if disabled.exists():
            disabled.rename(pth)
    if result.returncode == 0:
        return False
    if "torchvision::nms does not exist" in result.stderr:
        return True
    raise RuntimeError(f"torchvision fails to import for another reason:\n{result.stderr[-2000:]}")


def install_torchvision_shim() -> str:
    """Install (or remove) the shim as needed; return what was done."""
    site = _site_packages()
    if not torchvision_needs_shim():
        for name in (SHIM_PTH, SHIM_MODULE + ".py"):
            (site / name).unlink(missing_ok=True)
        return "torchvision loads normally: no shim needed"
    shutil.copyfile(Path(__file__).with_name("_torchvision_shim.py"), site / f"{SHIM_MODULE}.py")
    (site / SHIM_PTH).write_text(f"import {SHIM_MODULE}; {SHIM_MODULE}.install()\n")
    check = _fresh_import("torchvision")
    if check.returncode != 0:
        raise RuntimeError(f"torchvision still fails after installing the shim:\n{check.stderr[-2000:]}")
    return f"torchvision shim installed in {site} (CUDA-linked torchvision wheel beside CPU torch)"


def check_stack() -> dict[str, str]:
    """Import every library of the stack in this interpreter; return name -> version."""
    import importlib

    versions = {}
    for name in STACK:
        module = importlib.import_module(name)
        versions[name] = str(getattr(module, "__version__", "?"))
    return versions


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["install"]:
        print(f"[petseg.environment] {install_torchvision_shim()}")
        result = subprocess.run([sys.executable, "-m", "petseg.environment", "check"])
        return result.returncode
    if args[:1] == ["check"]:
        versions = check_stack()
        print("[petseg.environment] imports ok: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
        return 0
    print("usage: python -m petseg.environment install|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
