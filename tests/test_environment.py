"""The environment stays reproducible: pins agree everywhere, torch stays CPU 2.13.0, torchvision imports."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import sysconfig
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
TORCH_PIN = "2.13.0"
# The one documented difference between requirements.txt and environment.yml's pip list: sam2 is a
# source distribution built with SAM2_BUILD_CUDA=0 and --no-build-isolation after the env exists.
YML_EXCEPTIONS = {"sam2"}


def read_pins(path: Path) -> list[tuple[str, str]]:
    """(canonical name, version) of every ``name==version`` line of a requirements-style file, in order."""
    pins = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        pins.append(_pin(line, path))
    return pins


def _pin(line: str, where: Path) -> tuple[str, str]:
    requirement = Requirement(line)
    specs = list(requirement.specifier)
    assert len(specs) == 1 and specs[0].operator == "==", f"{where.name}: {line!r} is not pinned with =="
    return canonicalize_name(requirement.name), specs[0].version


def environment_yml() -> tuple[dict, list[str], list[tuple[str, str]]]:
    """The parsed environment.yml, its pip options (``-c ...``) and its pip pins in order."""
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml needs exactly one pip: section"
    options = [entry for entry in pip_sections[0] if entry.startswith("-")]
    pins = [_pin(entry, REPO / "environment.yml") for entry in pip_sections[0] if not entry.startswith("-")]
    return env, options, pins


# ----------------------------------------------------------------------------------------------- pins


def test_requirements_are_pinned_once() -> None:
    pins = read_pins(REPO / "requirements.txt")
    names = [name for name, _ in pins]
    assert len(names) == len(set(names)), "requirements.txt names a package twice"
    assert ("torch", TORCH_PIN) in pins


def test_environment_yml_mirrors_requirements() -> None:
    env, options, yml_pins = environment_yml()
    assert env["name"] == "petseg"
    assert env["channels"] == ["conda-forge"]
    conda_specs = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in conda_specs and "pip" in conda_specs

    requirements = read_pins(REPO / "requirements.txt")
    expected = [pin for pin in requirements if pin[0] not in YML_EXCEPTIONS]
    assert yml_pins == expected, "environment.yml's pip list must be requirements.txt (same order and pins)"
    left_out = {name for name, _ in requirements} - {name for name, _ in yml_pins}
    assert left_out == YML_EXCEPTIONS, f"only sam2 may be missing from environment.yml, missing: {left_out}"

    # the exception is documented with the exact command, at the exact pin
    text = (REPO / "environment.yml").read_text()
    sam2 = dict(requirements)["sam2"]
    assert re.search(rf"SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2=={re.escape(sam2)}", text)
    assert "2.13.0" in text and "CPU" in text and "download.pytorch.org/whl/cpu" in text
    assert options == ["-c constraints.txt"], "the pip section should install under the full lock"
    assert (REPO / "constraints.txt").is_file()


def test_requirements_agree_with_constraints() -> None:
    constraints = read_pins(REPO / "constraints.txt")
    names = [name for name, _ in constraints]
    assert len(names) == len(set(names)), "constraints.txt names a package twice"
    lock = dict(constraints)
    assert lock.get("torch") == TORCH_PIN, "constraints.txt must pin torch==2.13.0 (the CPU build)"
    for name, version in read_pins(REPO / "requirements.txt"):
        assert name in lock, f"{name} is in requirements.txt but not in constraints.txt"
        assert lock[name] == version, f"{name}: requirements.txt pins {version}, constraints.txt {lock[name]}"


def test_installed_versions_match_requirements() -> None:
    """The running environment is the pinned one (local labels like ``+cpu`` aside)."""
    wrong = {}
    for name, version in read_pins(REPO / "requirements.txt"):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "not installed"
        if installed.split("+", 1)[0] != version:
            wrong[name] = f"{installed} (pinned {version})"
    assert not wrong, f"environment differs from requirements.txt (run bash bootstrap.sh setup): {wrong}"
    assert metadata.version("torch").split("+", 1)[0] == TORCH_PIN


def test_bootstrap_constrains_every_pip_call_and_pins_torch() -> None:
    lines = (REPO / "bootstrap.sh").read_text().splitlines()
    code = [line.split("#", 1)[0] for line in lines]
    export = [i for i, line in enumerate(code) if re.search(r'^\s*export PIP_CONSTRAINT="?\$PWD/constraints\.txt"?', line)]
    pip_calls = [i for i, line in enumerate(code) if re.search(r"\bpip install\b", line)]
    assert export, "bootstrap.sh must export PIP_CONSTRAINT=$PWD/constraints.txt"
    assert pip_calls and export[0] < pip_calls[0], "PIP_CONSTRAINT must be exported before the first pip call"
    assert any(re.search(rf"pip install .*\btorch=={re.escape(TORCH_PIN)}(\s|$)", code[i]) for i in pip_calls)
    requirements_call = [code[i] for i in pip_calls if "-r requirements.txt" in code[i]]
    assert requirements_call and "SAM2_BUILD_CUDA=0" in requirements_call[0]
    assert "--no-build-isolation" in requirements_call[0]


# ------------------------------------------------------------------------------------ torchvision shim


def run_python(code: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *flags, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=180, cwd=REPO)


def run_without_site(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` with ``python -S`` (no .pth files, so no shim) but with site-packages and the repo on the path."""
    prelude = f"import sys; sys.path.append({sysconfig.get_paths()['purelib']!r}); sys.path.insert(0, {str(REPO)!r})\n"
    return run_python(prelude + textwrap.dedent(code), "-S")


@pytest.fixture(scope="module")
def plain_torchvision_imports() -> bool:
    """Whether ``import torchvision`` works in this environment *without* the shim."""
    result = run_without_site("import torchvision")
    if result.returncode != 0:
        assert "torchvision::nms does not exist" in result.stderr, result.stderr[-2000:]
    return result.returncode == 0


def test_torchvision_and_v2_import_in_the_venv() -> None:
    result = run_python("""
        import torchvision
        from torchvision.transforms import v2
        print(torchvision.__version__, v2.Compose.__name__)
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Compose" in result.stdout


def test_shim_is_installed_in_site_packages_when_needed(plain_torchvision_imports: bool) -> None:
    from petseg.environment import SHIM_MODULE, SHIM_PTH

    site = Path(sysconfig.get_paths()["purelib"])
    if plain_torchvision_imports:
        assert not (site / SHIM_PTH).exists(), "torchvision is healthy here: the shim should have been removed"
        return
    assert (site / SHIM_PTH).read_text().strip() == f"import {SHIM_MODULE}; {SHIM_MODULE}.install()"
    installed = (site / f"{SHIM_MODULE}.py").read_text()
    assert installed == (REPO / "petseg" / "_torchvision_shim.py").read_text(), (
        "the shim copy in site-packages is stale: run python -m petseg.environment install"
    )


def test_shim_hook_makes_torchvision_import_in_a_fresh_interpreter(plain_torchvision_imports: bool) -> None:
    result = run_without_site("""
        import json, sys
        import petseg._torchvision_shim as shim
        assert "torchvision" not in sys.modules and "torch" not in sys.modules
        shim.install()
        shim.install()  # idempotent: still one hook
        hooks = sum(isinstance(f, shim._TorchvisionFinder) for f in sys.meta_path)
        import torchvision
        from torchvision.transforms import v2
        v2.Compose([v2.RandomHorizontalFlip()])
        left = any(isinstance(f, shim._TorchvisionFinder) for f in sys.meta_path)
        shim.install()  # after the import: a no-op
        again = any(isinstance(f, shim._TorchvisionFinder) for f in sys.meta_path)
        print(json.dumps({"hooks": hooks, "left": left, "again": again, "applied": shim.applied,
                          "declare": [shim.declare_missing_ops(), shim.declare_missing_ops()]}))
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    state = json.loads(result.stdout.strip().splitlines()[-1])
    assert state["hooks"] == 1
    assert state["left"] is False and state["again"] is False, "the hook is one-shot"
    assert state["applied"] is (not plain_torchvision_imports), "the shim must act only where torchvision is broken"
    assert state["declare"] == [False, False]


def test_declare_missing_ops_is_idempotent(plain_torchvision_imports: bool) -> None:
    result = run_without_site("""
        import json
        import torch
        from petseg._torchvision_shim import declare_missing_ops
        first, second = declare_missing_ops(), declare_missing_ops()
        import torchvision
        print(json.dumps([first, second, hasattr(torch.ops.torchvision, "nms")]))
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    first, second, has_nms = json.loads(result.stdout.strip().splitlines()[-1])
    assert second is False
    assert first is (not plain_torchvision_imports)
    assert has_nms


@pytest.mark.slow  # about 14 s on 2 idle cores (imports gradio, sam2, jupyter_book ...); bootstrap.sh runs it too
def test_environment_check_imports_the_whole_stack() -> None:
    result = subprocess.run([sys.executable, "-m", "petseg.environment", "check"], capture_output=True,
                            text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "imports ok" in result.stdout
    assert f"torch {TORCH_PIN}" in result.stdout
