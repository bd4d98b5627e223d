"""The book's models, one entry each: which experiment config, tag and overrides produce a variant.

Every chapter that compares models (evaluation, failure analysis, robustness, the demo's model selector)
iterates over :data:`CATALOG` instead of repeating experiment names, tags and overrides. A chapter that
trains a variant registers it here once; ``spec.run(profile, data, seed)`` then returns the same run
directory in every chapter (runs are keyed by config + data + seed, so nothing trains twice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from petseg.experiment import Run


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """One model variant of the book.

    ``key`` is the short id used in tables and on the command line, ``label`` the name shown to readers,
    ``experiment`` the config in ``petseg/configs/``, ``tag``/``overrides`` what distinguishes the variant,
    ``chapter`` the notebook that introduces it, ``task`` ``"segmentation"`` (3 classes, full image) or
    ``"prompted"`` (binary pet vs background from point/box prompts).
    """

    key: str
    label: str
    experiment: str
    chapter: str
    tag: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    task: str = "segmentation"

    def run(self, profile: str = "quick", data: str | Path | None = None, seed: int = 0, **kwargs: Any) -> Run:
        """Train (or reuse) this variant's run; keyword arguments go to :func:`run_experiment`."""
        from petseg.experiment import run_experiment

        return run_experiment(self.experiment, profile, data, seed, tag=self.tag, overrides=self.overrides,
                              **kwargs)


CATALOG: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to :data:`CATALOG` (error if its key is taken)."""
    if spec.key in CATALOG:
        raise ValueError(f"a model with key {spec.key!r} is already in the catalog")
    CATALOG[spec.key] = spec
    return spec


def get(key: str) -> ModelSpec:
    """The spec registered under ``key``; ValueError naming the valid keys otherwise."""
    if key not in CATALOG:
        raise ValueError(f"unknown model {key!r}; valid: {', '.join(CATALOG)}")
    return CATALOG[key]


def models(task: str | None = None) -> list[ModelSpec]:
    """Registered specs in registration (chapter) order, optionally only those of one ``task``."""
    return [spec for spec in CATALOG.values() if task is None or spec.task == task]


# chapter 2
register(ModelSpec("unet", "UNet from scratch", "unet", chapter="02_unet"))
# chapter 3
register(ModelSpec("ae_unet_frozen", "AE+UNet, frozen encoder", "ae_unet", chapter="03_autoencoder",
                   tag="frozen", overrides={"model": {"freeze_encoder": True}}))
register(ModelSpec("ae_unet_finetuned", "AE+UNet, fine-tuned encoder", "ae_unet", chapter="03_autoencoder",
                   tag="finetuned", overrides={"model": {"freeze_encoder": False}}))
# chapter 4 (pretrained semantics) and chapter 5 (SAM 2) register their variants below.
# chapter 4: the study's global-vector fusion (and FiLM) with the encoder whose weights exist on the build machines
# (EfficientNet-Lite0, ImageNet); CLIP runs through an override (petseg.models.fusion_unet, fusion_unet.yaml).
register(ModelSpec("fusion_concat", "global-vector fusion (EfficientNet-Lite0, concat)", "fusion_unet",
                   chapter="04_fusion_unet", tag="concat", overrides={"model": {"fusion": "concat"}}))
register(ModelSpec("fusion_film", "global-vector fusion (EfficientNet-Lite0, FiLM)", "fusion_unet",
                   chapter="04_fusion_unet", tag="film", overrides={"model": {"fusion": "film"}}))
register(ModelSpec("efficientnet_unet", "UNet on pretrained EfficientNet-Lite0 (ImageNet)", "efficientnet_unet",
                   chapter="04_fusion_unet"))
# chapter 5: SAM 2, prompted pet vs background (binary), evaluated with clicks and boxes
register(ModelSpec("sam2_effnet", "SAM 2 decoder on pretrained EfficientNet-Lite0 (frozen)", "sam2_effnet",
                   chapter="05_sam2", task="prompted"))
register(ModelSpec("sam2_hiera", "SAM 2.1 Hiera-tiny, random init", "sam2_hiera", chapter="05_sam2",
                   task="prompted"))
