"""Let ``import torchvision`` work next to a CPU-only torch whose torchvision wheel is CUDA-linked.

On the project's CPU machines the registry only has CUDA-linked torchvision wheels. Their compiled
extension (``torchvision/_C.so``) cannot load beside the CPU build of torch, and torchvision's import
then fails in ``torchvision/_meta_registrations.py`` with
``RuntimeError: operator torchvision::nms does not exist``.

This module installs a tiny import hook. The first time ``torchvision`` is imported it checks whether
the extension loads; only if it does not, it declares the two operator schemas torchvision's import
registers fake kernels for (``nms`` and ``qnms``), so the import succeeds. Transforms, models, datasets
and ``torchvision.utils`` then work; the compiled ops (``torchvision.ops.nms``, ``roi_align``, ...)
still raise torchvision's own "Couldn't load custom C++ ops" error, and image decoding through
``torchvision.io`` is unavailable (petseg decodes with PIL and OpenCV). Where torchvision is healthy
the hook does nothing.

``bootstrap.sh`` copies this file into the virtual environment's site-packages and adds a ``.pth``
line that calls :func:`install`, so every interpreter of the environment (notebooks, sam2, open_clip)
gets it. Importing it costs nothing: torch is only imported when torchvision is.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_libraries: list = []  # keep torch.library.Library objects alive
applied = False  # True once the schemas were declared in this process


def _extension_loads(spec) -> bool:
    import torch

    locations = list(spec.submodule_search_locations or [])
    for folder in locations:
        for name in ("_C.so", "_C.pyd"):
            path = f"{folder}/{name}"
            try:
                torch.ops.load_library(path)
                return True
            except OSError:
                continue
    return False


def declare_missing_ops() -> bool:
    """Declare torchvision's ``nms``/``qnms`` schemas if they are missing; return True if it did."""
    global applied
    import torch

    missing = [name for name in _SCHEMAS if not _op_exists(name)]
    if not missing:
        return False
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for name in missing:
        lib.define(_SCHEMAS[name])
    _libraries.append(lib)
    applied = True
    return True


def _op_exists(name: str) -> bool:
    import torch

    try:
        getattr(torch.ops.torchvision, name)
        return True
    except (AttributeError, RuntimeError):
        return False


class _TorchvisionFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torchvision":
            return None
        sys.meta_path.remove(self)  # one shot: look up the real spec, then step aside
        spec = importlib.util.find_spec("torchvision")
        if spec is not None and not _extension_loads(spec):
            declare_missing_ops()
        return spec


def install() -> None:
    """Register the import hook (idempotent, no-op once torchvision is imported)."""
    if "torchvision" in sys.modules:
        return
    if not any(isinstance(f, _TorchvisionFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TorchvisionFinder())
