"""SAM 2 (Meta's ``sam2`` package) for prompted pet-vs-background segmentation.

Two variants, both genuine ``sam2.modeling.sam2_base.SAM2Base`` models (SAM 2.1 prompt encoder and mask
decoder, SAM 2.1 FPN neck), usable through sam2's own :class:`~sam2.sam2_image_predictor.SAM2ImagePredictor`:

* ``trunk="hiera"``: the SAM 2.1 Hiera image encoder of the chosen size (``tiny``, ``small``, ``base_plus``,
  ``large``), built from sam2's own config files. Without ``checkpoint`` every weight is random (the
  original study's route: SAM 2 trained from scratch); with an official SAM 2.1 checkpoint file it is
  fine-tuned from Meta's weights.
* ``trunk="efficientnet_lite0"``: the Hiera trunk replaced by the ImageNet EfficientNet-Lite0 packaged with
  petseg (:mod:`petseg.models.pretrained`, strides 4-32), frozen by default; neck, prompt encoder and mask
  decoder are SAM 2.1's and train from random weights. This is the variant that learns in minutes on a CPU.

``image_size`` (a multiple of 64; SAM 2.1 uses 1024) is the side of the square model input; masks come out
at ``image_size / 4`` and are up-sampled. The video-memory modules of SAM2Base are built (the class needs
them) but unused on single images, so they are frozen (``requires_grad=False``).

Training contract (see :func:`petseg.training.loop.train`, ``task="prompted"``): ``forward(images [B, 3, S, S] in
[0, 1], masks [B, S, S] labels, rng=None)`` simulates one prompt per image from its mask
(:func:`petseg.data.prompts.simulate_training_prompt` with ``rng`` in training; the most interior pet point in
eval mode) and returns ``{"logits" [B, 4, S, S], "iou_predictions" [B, 4], "candidates" bool [B, 4]}``:
all four SAM mask outputs (0 = single-mask output, 1-3 = the multimask outputs) and which of them answer
this prompt (1-3 for a single click, 0 otherwise), as SAM 2 itself chooses.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from petseg.data.prompts import Prompt, interior_point, next_click, pet_and_valid, simulate_training_prompt
from petseg.models.pretrained import EFFICIENTNET_LITE0_MEAN, EFFICIENTNET_LITE0_STD, load_efficientnet_lite0

__all__ = [
    "HIERA_SIZES",
    "OFFICIAL_BASE_URL",
    "OFFICIAL_CHECKPOINTS",
    "SAM2_CONFIG_FILES",
    "EfficientNetLite0Trunk",
    "PromptedSAM2",
    "Sam2CheckpointError",
    "build_sam2_base",
    "build_sam2_model",
    "fetch_official_checkpoint",
    "load_sam2_predictor",
    "make_predictor",
]

HIERA_SIZES = ("tiny", "small", "base_plus", "large")
SAM2_CONFIG_FILES = {
    "tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}
# facebookresearch/sam2, checkpoints/download_ckpts.sh (SAM 2.1 release of 2024-09-28)
OFFICIAL_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
OFFICIAL_CHECKPOINTS = {size: f"sam2.1_hiera_{size}.pt" for size in HIERA_SIZES}
# Hiera blocks per size (sum of the config's ``stages``): how an official file's size is recognised.
_HIERA_BLOCKS = {"tiny": 12, "small": 16, "base_plus": 24, "large": 48}
TRUNKS = ("hiera", "efficientnet_lite0")
_SAM2_IMAGE_MEAN = (0.485, 0.456, 0.406)  # what SAM2Transforms normalises with
_SAM2_IMAGE_STD = (0.229, 0.224, 0.225)
# build_sam2's post-processing overrides (used by SAM2ImagePredictor at inference)
_POSTPROCESSING = [
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
]


class Sam2CheckpointError(RuntimeError):
    """An official SAM 2.1 checkpoint cannot be obtained or verified (one-line message)."""


# ------------------------------------------------------------------------------------------- models


class EfficientNetLite0Trunk(nn.Module):
    """SAM 2 image-encoder trunk: ImageNet EfficientNet-Lite0 feature maps at strides 4, 8, 16, 32.

    Takes images normalised as SAM 2 does (ImageNet mean/std, :class:`sam2.utils.transforms.SAM2Transforms`)
    and re-normalises them to the statistics the Lite0 weights expect. ``channel_list`` is coarse-first, as
    ``sam2.modeling.backbones.image_encoder.FpnNeck`` wants. ``frozen`` keeps the weights fixed and the
    BatchNorm statistics in eval mode.
    """

    channel_list = [320, 112, 40, 24]

    def __init__(self, pretrained: bool = True, frozen: bool = True) -> None:
        super().__init__()
        self.body = load_efficientnet_lite0(pretrained=pretrained, features_only=True, out_indices=(1, 2, 3, 4))
        self.frozen = frozen
        for parameter in self.body.parameters():
            parameter.requires_grad_(not frozen)
        sam_mean, sam_std = torch.tensor(_SAM2_IMAGE_MEAN), torch.tensor(_SAM2_IMAGE_STD)
        lite_mean, lite_std = torch.tensor(EFFICIENTNET_LITE0_MEAN), torch.tensor(EFFICIENTNET_LITE0_STD)
        # x_lite = (x_sam * sam_std + sam_mean - lite_mean) / lite_std = x_sam * scale + shift
        self.register_buffer("scale", (sam_std / lite_std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", ((sam_mean - lite_mean) / lite_std).view(1, 3, 1, 1), persistent=False)
        self.train(True)

    def train(self, mode: bool = True) -> EfficientNetLite0Trunk:
        super().train(mode)
        if self.frozen:
            self.body.eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = x * self.scale + self.shift
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            return list(self.body(x))


def _compose_config(config_file: str, image_size: int, overrides: Sequence[str] = ()) -> Any:
    import sam2  # noqa: F401  (initialises hydra's config search path)
    from hydra import compose
    from omegaconf import OmegaConf

    cfg = compose(config_name=config_file,
                  overrides=[f"++model.image_size={image_size}", *_POSTPROCESSING, *overrides])
    OmegaConf.resolve(cfg)
    return cfg


def check_image_size(image_size: int) -> None:
    """Raise ValueError unless ``image_size`` is a positive multiple of 64 (the model's input side)."""
    if image_size < 64 or image_size % 64:
        raise ValueError(f"image_size must be a positive multiple of 64 (SAM 2 uses 1024), got {image_size}")


def build_sam2_base(hiera_size: str = "tiny", image_size: int = 1024, trunk: str = "hiera",
                    pretrained_trunk: bool = True, freeze_trunk: bool = True) -> nn.Module:
    """A SAM2Base from sam2's SAM 2.1 config of ``hiera_size`` at ``image_size`` px, random weights, eval
    mode. ``trunk="efficientnet_lite0"`` swaps the Hiera trunk for :class:`EfficientNetLite0Trunk`."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    if hiera_size not in SAM2_CONFIG_FILES:
        raise ValueError(f"hiera_size must be one of {HIERA_SIZES}, got {hiera_size!r}")
    if trunk not in TRUNKS:
        raise ValueError(f"trunk must be one of {TRUNKS}, got {trunk!r}")
    check_image_size(image_size)
    cfg = _compose_config(SAM2_CONFIG_FILES[hiera_size], image_size)
    if trunk == "efficientnet_lite0":
        cfg.model.image_encoder.trunk = OmegaConf.create({
            "_target_": f"{__name__}.EfficientNetLite0Trunk", "pretrained": pretrained_trunk,
            "frozen": freeze_trunk})
        cfg.model.image_encoder.neck.backbone_channel_list = list(EfficientNetLite0Trunk.channel_list)
    model = instantiate(cfg.model, _recursive_=True)
    return model.eval()


class PromptedSAM2(nn.Module):
    """A SAM2Base (``self.sam``) with the training/validation forward described in the module docstring.

    ``checkpoint``: an official SAM 2.1 checkpoint file (``hiera`` trunk only) to fine-tune from, or
    ``"download"`` to fetch the official file of ``hiera_size`` (checksum-verified,
    :func:`fetch_official_checkpoint`). Prompt simulation settings: see
    :func:`petseg.data.prompts.simulate_training_prompt`. ``corrective_rounds`` > 0 adds SAM's iterative training:
    per batch, 0..``corrective_rounds`` rounds (drawn with the training ``rng``) each predict without
    gradient and add to every prompt the click of the interactive protocol (:func:`petseg.data.prompts.next_click`:
    the interior of the largest error region) before the prediction that is trained on.
    """

    task = "prompted"

    def __init__(self, trunk: str = "hiera", hiera_size: str = "tiny", image_size: int = 256,
                 pretrained_trunk: bool = True, freeze_trunk: bool = True, checkpoint: str | None = None,
                 box_probability: float = 0.3, max_extra_clicks: int = 3, box_jitter: float = 0.1,
                 interior_probability: float = 0.5, corrective_rounds: int = 0) -> None:
        super().__init__()
        self.sam = build_sam2_base(hiera_size, image_size, trunk, pretrained_trunk, freeze_trunk)
        self.trunk_name, self.image_size = trunk, image_size
        self.prompt_settings = {"box_probability": box_probability, "max_extra_clicks": max_extra_clicks,
                                "box_jitter": box_jitter, "interior_probability": interior_probability}
        if corrective_rounds < 0:
            raise ValueError(f"corrective_rounds must be >= 0, got {corrective_rounds}")
        self.corrective_rounds = corrective_rounds
        if checkpoint is not None:
            if trunk != "hiera":
                raise ValueError("an official SAM 2.1 checkpoint only fits trunk='hiera'")
            path = fetch_official_checkpoint(hiera_size) if checkpoint == "download" else Path(checkpoint)
            load_official_weights(self.sam, path, hiera_size)
        used = ("image_encoder", "sam_prompt_encoder", "sam_mask_decoder", "no_mem_embed")
        for name, parameter in self.sam.named_parameters():
            if not name.startswith(used):
                parameter.requires_grad_(False)  # video memory: unused on single images
        self.register_buffer("mean", torch.tensor(_SAM2_IMAGE_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_SAM2_IMAGE_STD).view(1, 3, 1, 1), persistent=False)
        self.train(True)

    def image_features(self, images: torch.Tensor) -> dict[str, Any]:
        """Image embedding and high-resolution features of ``images [B, 3, S, S]`` in [0, 1], computed exactly
        as ``SAM2ImagePredictor.set_image`` does (resize to ``image_size``, ImageNet normalisation)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got shape {tuple(images.shape)}")
        x = images.float()
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        backbone_out = self.sam.forward_image(x)
        _, vision_feats, _, sizes = self.sam._prepare_backbone_features(backbone_out)
        if self.sam.directly_add_no_mem_embed:
            vision_feats[-1] = vision_feats[-1] + self.sam.no_mem_embed
        batch = images.shape[0]
        feats = [feat.permute(1, 2, 0).reshape(batch, -1, *size) for feat, size in zip(vision_feats, sizes,
                                                                                         strict=True)]
        return {"image_embed": feats[-1], "high_res_feats": feats[:-1]}

    def decode(self, features: dict[str, Any], points: torch.Tensor,
               labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All four mask logits ``[B, 4, image_size/4, image_size/4]`` and IoU predictions ``[B, 4]`` for
        prompts given as points in model-input pixels (labels 1/0 clicks, 2/3 box corners, -1 padding)."""
        sparse, dense = self.sam.sam_prompt_encoder(points=(points, labels), boxes=None, masks=None)
        masks, iou, _, _ = self.sam.sam_mask_decoder.predict_masks(
            image_embeddings=features["image_embed"], image_pe=self.sam.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, repeat_image=False,
            high_res_features=features["high_res_feats"])
        return masks, iou

    def simulate_prompts(self, masks: torch.Tensor, rng: np.random.Generator | None) -> list[Prompt]:
        """One prompt per mask: random (``rng``) in training, the most interior pet click otherwise."""
        prompts = []
        for mask in masks.cpu().numpy():
            if rng is not None:
                prompts.append(simulate_training_prompt(mask, rng, **self.prompt_settings))
                continue
            pet, _ = pet_and_valid(mask)
            point = interior_point(pet) or (0, 0)
            prompts.append(Prompt(np.array([point], np.float32), np.array([1 if pet.any() else 0], np.int32)))
        return prompts

    def _batch_prompts(self, prompts: list[Prompt], scale: float,
                       device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        rows = []
        for prompt in prompts:
            points, labels = prompt.points, prompt.labels
            if prompt.box is not None:
                points = np.concatenate([prompt.box.reshape(2, 2), points])
                labels = np.concatenate([np.array([2, 3], np.int32), labels])
            rows.append((points * scale, labels))
        length = max(len(labels) for _, labels in rows)
        points = np.zeros((len(rows), length, 2), np.float32)
        labels = -np.ones((len(rows), length), np.int32)
        for index, (row_points, row_labels) in enumerate(rows):
            points[index, :len(row_labels)] = row_points
            labels[index, :len(row_labels)] = row_labels
        return torch.from_numpy(points).to(device), torch.from_numpy(labels).to(device)

    def forward(self, images: torch.Tensor, masks: torch.Tensor,
                rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
        if masks.shape[-2:] != images.shape[-2:]:
            raise ValueError(f"masks {tuple(masks.shape)} and images {tuple(images.shape)} differ in size")
        training = self.training and rng is not None
        prompts = self.simulate_prompts(masks, rng if training else None)
        scale = self.image_size / images.shape[-1]
        features = self.image_features(images)
        rounds = int(rng.integers(0, self.corrective_rounds + 1)) if training and self.corrective_rounds else 0
        masks_np = masks.cpu().numpy() if rounds else None
        for _ in range(rounds):  # SAM's iterative training: add the protocol's corrective click, no gradient
            with torch.no_grad():
                low_res, iou = self.decode(features, *self._batch_prompts(prompts, scale, images.device))
                chosen = self._chosen_masks(low_res, iou, prompts, images.shape[-2:])
            for index, prompt in enumerate(prompts):
                click = next_click(chosen[index], masks_np[index])
                if click is not None:
                    prompts[index] = Prompt(np.concatenate([prompt.points, [[click.x, click.y]]]).astype(np.float32),
                                            np.concatenate([prompt.labels, [click.label]]).astype(np.int32),
                                            prompt.box)
        points, labels = self._batch_prompts(prompts, scale, images.device)
        low_res, iou = self.decode(features, points, labels)
        logits = F.interpolate(low_res.float(), size=images.shape[-2:], mode="bilinear", align_corners=False)
        multimask = torch.tensor([p.multimask for p in prompts], device=images.device)
        candidates = torch.zeros(len(prompts), 4, dtype=torch.bool, device=images.device)
        candidates[:, 1:] = multimask[:, None]
        candidates[:, 0] = ~multimask
        return {"logits": logits, "iou_predictions": iou.float(), "candidates": candidates}


    @staticmethod
    def _chosen_masks(low_res: torch.Tensor, iou: torch.Tensor, prompts: list[Prompt],
                      size: tuple[int, int]) -> np.ndarray:
        """Boolean masks ``[B, H, W]`` SAM 2 would output: best-scored of 1-3 for one click, else mask 0."""
        best = iou[:, 1:].argmax(dim=1) + 1
        index = torch.tensor([int(b) if p.multimask else 0 for b, p in zip(best, prompts, strict=True)])
        chosen = low_res[torch.arange(len(prompts)), index][:, None].float()
        return (F.interpolate(chosen, size=size, mode="bilinear", align_corners=False)[:, 0] > 0).cpu().numpy()


def build_sam2_model(config: dict[str, Any]) -> PromptedSAM2:
    """``build_model`` for the SAM 2 variants: ``{"name": "sam2_hiera" | "sam2_effnet", ...}``."""
    from petseg.models import build_model

    return build_model(config)


# -------------------------------------------------------------------------------------- checkpoints


def _cache_dir() -> Path:
    from petseg.data.cache import default_cache_dir

    return default_cache_dir() / "sam2"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_official_checkpoint(hiera_size: str = "tiny", cache_dir: str | Path | None = None,
                              download: bool = True, timeout: float = 1.0) -> Path:
    """Path of the official SAM 2.1 checkpoint ``sam2.1_hiera_<size>.pt``, downloading it if needed.

    Meta publishes no checksums for these files, so integrity is checked against the size and sha256
    recorded at the first download (``<file>.sha256.json`` beside it): a later mismatch raises
    :class:`Sam2CheckpointError`. Offline, raises it within about ``timeout`` seconds with a one-line message
    saying where to put a file obtained elsewhere.
    """
    from petseg.data.fetch import DownloadError, check_reachable, download_file

    if hiera_size not in OFFICIAL_CHECKPOINTS:
        raise ValueError(f"hiera_size must be one of {HIERA_SIZES}, got {hiera_size!r}")
    name = OFFICIAL_CHECKPOINTS[hiera_size]
    directory = Path(cache_dir) if cache_dir is not None else _cache_dir()
    path, record = directory / name, directory / f"{name}.sha256.json"
    url = OFFICIAL_BASE_URL + name
    if path.is_file():
        if record.is_file():
            expected = json.loads(record.read_text())
            if path.stat().st_size != expected["size"] or _sha256(path) != expected["sha256"]:
                raise Sam2CheckpointError(f"{path} does not match the size/sha256 recorded at its download "
                                          f"({record}); delete both and download again")
        return path
    hint = f"download {url} by hand and pass its path (or put it at {path})"
    if not download:
        raise Sam2CheckpointError(f"SAM 2.1 checkpoint {name} not found at {path}; {hint}")
    try:
        check_reachable(url, timeout=timeout)
        download_file(url, path, md5=None, progress=True)
    except DownloadError as error:
        reason = str(error).split(":", 1)[-1].split(". To work offline")[0].strip()
        raise Sam2CheckpointError(f"cannot download SAM 2.1 checkpoint {name} ({reason}); {hint}") from None
    record.write_text(json.dumps({"url": url, "size": path.stat().st_size, "sha256": _sha256(path)}, indent=1))
    return path


def _official_state(path: Path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint.get("model") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not any(key.startswith("image_encoder.trunk.") for key in state):
        raise ValueError(f"{path} is not an official SAM 2 checkpoint (no 'model' dict with image_encoder "
                         "weights)")
    return state


def hiera_size_of(state: dict[str, torch.Tensor]) -> str:
    """The Hiera size (``tiny``...) of an official SAM 2.1 state dict, from its number of trunk blocks."""
    blocks = {int(key.split(".")[3]) for key in state if key.startswith("image_encoder.trunk.blocks.")}
    for size, count in _HIERA_BLOCKS.items():
        if len(blocks) == count:
            return size
    raise ValueError(f"unrecognised SAM 2 trunk with {len(blocks)} Hiera blocks")


def load_official_weights(sam: nn.Module, path: str | Path, hiera_size: str | None = None) -> None:
    """Load an official SAM 2.1 checkpoint file into a SAM2Base (strict), checking the Hiera size first."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no SAM 2 checkpoint at {path}")
    state = _official_state(path)
    found = hiera_size_of(state)
    if hiera_size is not None and found != hiera_size:
        raise ValueError(f"{path} holds SAM 2 Hiera-{found} weights, but the model is Hiera-{hiera_size}")
    sam.load_state_dict(state, strict=True)


# ---------------------------------------------------------------------------------------- predictor


def make_predictor(sam: nn.Module, mask_threshold: float = 0.0) -> Any:
    """``SAM2ImagePredictor`` for a SAM2Base of any ``image_size`` (the predictor assumes 1024 px
    feature sizes; they are set from the model's image size here)."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = SAM2ImagePredictor(sam.eval(), mask_threshold=mask_threshold)
    size = int(sam.image_size)
    predictor._bb_feat_sizes = [(size // 4, size // 4), (size // 8, size // 8), (size // 16, size // 16)]
    return predictor


def load_sam2_predictor(source: str | os.PathLike[str], device: str = "cpu") -> Any:
    """A ``sam2.sam2_image_predictor.SAM2ImagePredictor`` from a petseg run directory, a checkpoint written
    by the training core (``best.pt``/``last.pt``) or an official SAM 2.1 checkpoint file.

    Raises FileNotFoundError if nothing is at ``source`` (or a run directory has no ``best.pt``) and
    ValueError if the file is neither a SAM 2 run checkpoint nor an official SAM 2 checkpoint.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "best.pt").is_file():
            raise FileNotFoundError(f"{path} is a directory without best.pt (not a finished petseg run)")
        path = path / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no SAM 2 checkpoint or run directory at {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({type(error).__name__})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        raise ValueError(f"{path} is not a SAM 2 checkpoint (no 'model' state dict)")
    model_config = checkpoint.get("model_config")
    if model_config:
        if not str(model_config.get("name", "")).startswith("sam2_"):
            raise ValueError(f"{path} is a checkpoint of model {model_config.get('name')!r}, not of SAM 2")
        from petseg.models import build_model

        config = {**model_config, "checkpoint": None}  # every weight comes from this file
        if config["name"] == "sam2_effnet":
            config["pretrained_trunk"] = False
        model = build_model(config)
        model.load_state_dict(checkpoint["model"], strict=True)
        sam = model.sam
    else:
        state = checkpoint["model"]
        if not any(key.startswith("image_encoder.trunk.") for key in state):
            raise ValueError(f"{path} is neither a petseg SAM 2 run checkpoint nor an official SAM 2 checkpoint")
        sam = build_sam2_base(hiera_size_of(state), 1024, "hiera")
        sam.load_state_dict(state, strict=True)
    return make_predictor(sam.to(device).eval())
