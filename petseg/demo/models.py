"""Which models the demo offers: SAM 2 (prompted) and the finished full-image runs of the book's catalog.

SAM 2 comes from, in this order: a path given on the command line (a petseg run directory, its
``best.pt``, or an official SAM 2.1 checkpoint), the newest finished run of a catalog model with task
``"prompted"``, or, when there is none, SAM 2.1 hiera-tiny with **random weights**, labelled as such
everywhere it appears (it shows the app's mechanics; its masks mean nothing).

Full-image models are the finished runs (``results.json`` + ``best.pt``) found under the runs directory
whose name matches a catalog model with task ``"segmentation"``: the newest run per model and profile.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from petseg.profiles import PROFILES

RANDOM_SAM2_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


@dataclass
class ModelOption:
    """One entry of the model selector; ``load()`` builds its engine (called once, on first use)."""

    key: str
    label: str
    kind: str  # "prompted" (SAM 2) or "segmentation" (full image, 3 classes)
    load: Callable[[], Any]
    description: str
    random_weights: bool = False
    loaded: Any = field(default=None, repr=False)  # the engine, once loaded (shared by every controller)


@dataclass(frozen=True)
class FinishedRun:
    spec_key: str
    label: str
    path: Path
    profile: str
    seed: int
    results: dict


def find_finished_runs(runs_dir: str | Path, task: str, profile: str | None = None) -> list[FinishedRun]:
    """The newest finished run per (catalog model, profile) of ``task`` under ``runs_dir``, catalog order;
    only ``profile``'s runs when it is given."""
    from petseg import catalog
    from petseg.config import former_experiment_names

    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    found: list[FinishedRun] = []
    for spec in catalog.models(task):
        names = [spec.experiment, *former_experiment_names(spec.experiment)]  # runs trained before a rename too
        prefixes = "|".join(re.escape(f"{name}-{spec.tag}" if spec.tag else name) for name in names)
        pattern = re.compile(rf"^(?:{prefixes})-({'|'.join(PROFILES)})-s(\d+)-[0-9a-f]{{10}}$")
        newest: dict[str, tuple[float, FinishedRun]] = {}
        for path in runs_dir.iterdir():
            match = pattern.match(path.name)
            if not match or not (path / "results.json").is_file() or not (path / "best.pt").is_file():
                continue
            try:
                results = json.loads((path / "results.json").read_text())
            except (OSError, ValueError):
                continue
            run = FinishedRun(spec.key, spec.label, path, match[1], int(match[2]), results)
            mtime = (path / "results.json").stat().st_mtime
            if match[1] not in newest or mtime > newest[match[1]][0]:
                newest[match[1]] = (mtime, run)
        found += [newest[p][1] for p in PROFILES if p in newest and profile in (None, p)]
    return found


def run_image_size(run_dir: Path) -> int:
    """The input size a run was trained at (from its ``experiment.json``)."""
    recorded = json.loads((Path(run_dir) / "experiment.json").read_text())
    return int(recorded["data"]["image_size"])


def full_image_option(run: FinishedRun, device: str = "cpu") -> ModelOption:
    def load() -> Any:
        from petseg.demo.engines import FullImageEngine
        from petseg.training.checkpoints import load_model_from_checkpoint

        model = load_model_from_checkpoint(run.path / "best.pt", map_location=device)
        return FullImageEngine(model, run_image_size(run.path))

    miou = run.results.get("test", {}).get("miou")
    score = f", test mIoU {miou:.3f}" if isinstance(miou, int | float) else ""
    return ModelOption(
        key=f"run:{run.path.name}", label=f"{run.label} ({run.profile} profile{score})", kind="segmentation",
        load=load, description=f"Full-image model **{run.label}**, run `{run.path.name}` ({run.profile} profile, "
                               f"seed {run.seed}{score}). It needs no prompts: clicks are ignored.")


def random_sam2_predictor(image_size: int = 1024, device: str = "cpu") -> Any:
    """SAM 2.1 hiera-tiny with random weights at ``image_size`` px (for the app's mechanics only)."""
    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    model = build_sam2(RANDOM_SAM2_CONFIG, ckpt_path=None, device=device,
                       hydra_overrides_extra=[f"++model.image_size={image_size}"])
    predictor = SAM2ImagePredictor(model)
    # the predictor assumes 1024 px (backbone maps of 256/128/64); other sizes scale them
    predictor._bb_feat_sizes = [(image_size // 4,) * 2, (image_size // 8,) * 2, (image_size // 16,) * 2]
    return predictor


def load_trained_sam2(source: str | Path, device: str = "cpu") -> Any:
    """A SAM2ImagePredictor from a petseg run directory / checkpoint or an official SAM 2.1 checkpoint."""
    try:
        from petseg.models.sam2 import load_sam2_predictor
    except ImportError as error:
        raise RuntimeError(f"cannot load SAM 2 from {source}: petseg.models.sam2 is not available ({error})") from None
    return load_sam2_predictor(source, device=device)


def sam2_options(source: str | Path | None, runs_dir: str | Path, device: str = "cpu",
                 random_image_size: int = 1024, profile: str | None = None) -> list[ModelOption]:
    """The SAM 2 entries: ``source`` if given, else finished prompted runs, else random weights."""
    from petseg.demo.engines import PromptEngine

    if source is not None:
        path = Path(source).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"--sam2: nothing at {path}")
        name = path.name if path.is_dir() else f"{path.parent.name}/{path.name}"
        return [ModelOption(key="sam2:given", label=f"SAM 2 ({name})", kind="prompted",
                            load=lambda: PromptEngine(load_trained_sam2(path, device)),
                            description=f"SAM 2 loaded from `{path}`.")]
    options = [
        ModelOption(key=f"run:{run.path.name}", label=f"{run.label} ({run.profile} profile)", kind="prompted",
                    load=lambda run=run: PromptEngine(load_trained_sam2(run.path, device)),
                    description=f"SAM 2 run **{run.label}**, `{run.path.name}` ({run.profile} profile, seed "
                                f"{run.seed}).")
        for run in find_finished_runs(runs_dir, "prompted", profile)
    ]
    if options:
        return options
    return [ModelOption(
        key="sam2:random", label=f"SAM 2.1 hiera-tiny, RANDOM WEIGHTS ({random_image_size} px)", kind="prompted",
        load=lambda: PromptEngine(random_sam2_predictor(random_image_size, device)), random_weights=True,
        description=("**SAM 2.1 hiera-tiny with random weights**: no trained SAM 2 checkpoint was given "
                     "(`--sam2`) or found among the finished runs, so the masks below mean nothing; the app's "
                     "mechanics (prompts, embedding cache, latency) are real."))]


def demo_options(sam2: str | Path | None = None, runs_dir: str | Path | None = None, device: str = "cpu",
                 random_image_size: int = 1024, profile: str | None = None) -> list[ModelOption]:
    """Every model the demo offers: SAM 2 first, then the full-image runs (only ``profile``'s, if given)."""
    from petseg.experiment import default_runs_dir

    runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    full = [full_image_option(run, device) for run in find_finished_runs(runs_dir, "segmentation", profile)]
    return sam2_options(sam2, runs_dir, device, random_image_size, profile) + full


def options_table(options: list[ModelOption]) -> Any:
    """The model selector's entries as a DataFrame (label, what it needs, weights)."""
    import pandas as pd

    return pd.DataFrame([{"model": o.label, "input": "point/box prompts" if o.kind == "prompted" else "image only",
                          "weights": "random (untrained)" if o.random_weights else "trained"} for o in options])
