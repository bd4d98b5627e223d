"""CLIP weights for the global image encoder: which file or tag a config asks for, found offline or fetched.

``pretrained`` is a tag (``"openai"``, downloaded once into the Hugging Face cache), a local weights file, or
unset, in which case the file named by ``$PETSEG_CLIP_WEIGHTS`` is used, else the tag ``"openai"``;
``none``/``random`` mean random weights and ``checkpoint`` weights a petseg checkpoint loads right after.
With ``HF_HUB_OFFLINE`` set and the tag's weights not cached, :class:`ClipWeightsUnavailable` is raised at once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["CHECKPOINT_WEIGHTS", "CLIP_WEIGHTS_ENV", "DEFAULT_CLIP_TAG", "NO_WEIGHTS", "ClipWeightsUnavailable",
           "hub_offline", "requested_weights", "resolve_clip_weights", "weights_word"]

CLIP_WEIGHTS_ENV = "PETSEG_CLIP_WEIGHTS"
DEFAULT_CLIP_TAG = "openai"
CHECKPOINT_WEIGHTS = "checkpoint"
NO_WEIGHTS = {"none", "random", ""}


class ClipWeightsUnavailable(RuntimeError):
    """CLIP weights were asked for but cannot be had here (offline and not cached, or a missing file)."""


def hub_offline() -> bool:
    """True when Hugging Face Hub access is switched off (``HF_HUB_OFFLINE``, read now, not at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def requested_weights(pretrained: str | None) -> tuple[str, str]:
    """The CLIP weights asked for (``pretrained``, else ``$PETSEG_CLIP_WEIGHTS``, else the default tag) and
    words for where that choice came from."""
    if pretrained is not None:
        return str(pretrained), ""
    env_value = os.environ.get(CLIP_WEIGHTS_ENV)
    if env_value:
        return env_value, f" (from ${CLIP_WEIGHTS_ENV})"
    return DEFAULT_CLIP_TAG, " (the default tag)"


def weights_word(pretrained: str | None) -> str:
    """``pretrained`` as compared with the special values (``none``/``random``/``checkpoint``)."""
    return str(pretrained).strip().lower()


def resolve_clip_weights(model_name: str, pretrained: str | None, cache_dir: str | None = None
                         ) -> tuple[str | None, dict[str, Any], str]:
    """Where the weights of open_clip ``model_name`` come from: ``(file or None, tag config, source words)``.

    ``pretrained``: a tag, a file path, ``"none"`` (random weights, returns ``(None, {}, ...)``),
    ``"checkpoint"`` (nothing loaded here: a petseg checkpoint's weights follow; ``(None, {}, ...)``), or None
    (``$PETSEG_CLIP_WEIGHTS``, else :data:`DEFAULT_CLIP_TAG`). A tag is looked up locally first; offline
    (``HF_HUB_OFFLINE``) and not cached raises :class:`ClipWeightsUnavailable` without touching the network.
    Online, open_clip downloads it (Hugging Face cache, or ``~/.cache/clip`` for URL-only tags).
    """
    import open_clip

    pretrained, origin = requested_weights(pretrained)
    if weights_word(pretrained) in NO_WEIGHTS:
        return None, {}, "RANDOM weights (pretrained: none; not a pretrained CLIP)"
    if weights_word(pretrained) == CHECKPOINT_WEIGHTS:
        return None, {}, "weights from a petseg checkpoint"
    tag_config = open_clip.get_pretrained_cfg(model_name, str(pretrained))
    if not tag_config:
        path = Path(str(pretrained)).expanduser()
        if path.is_file():
            return str(path), {}, f"weights file {path}{origin}"
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(model_name)) or "none"
        raise ClipWeightsUnavailable(
            f"CLIP weights {pretrained!r}{origin} for {model_name}: no such file, and not a known open_clip tag "
            f"(tags for {model_name}: {tags}). Pass an existing weights file (model.global_encoder.pretrained "
            f"or ${CLIP_WEIGHTS_ENV}) or a tag.")
    source = f"open_clip tag {pretrained!r}{origin}"
    if hub_offline():
        cached = _cached_tag_file(tag_config, cache_dir)
        if cached is None:
            raise ClipWeightsUnavailable(
                f"CLIP {model_name} weights {pretrained!r} are not available offline: HF_HUB_OFFLINE is set and "
                f"they are not in the local cache. Either pass a local weights file (config "
                f"model.global_encoder.pretrained=/path/to/weights, or ${CLIP_WEIGHTS_ENV}=/path/to/weights), "
                f"or go online (unset HF_HUB_OFFLINE) so open_clip can download them once. On machines without "
                f"CLIP weights use backend efficientnet_lite0 (packaged ImageNet weights).")
        return cached, tag_config, source
    try:
        path = open_clip.download_pretrained(tag_config, cache_dir=cache_dir)
    except Exception as error:  # network errors come in many types; keep the cause attached
        raise ClipWeightsUnavailable(
            f"could not download CLIP {model_name} weights {pretrained!r}: {error}. Pass a local weights file "
            f"(model.global_encoder.pretrained or ${CLIP_WEIGHTS_ENV}) or set HF_HUB_OFFLINE=1 to fail fast.") from error
    return str(path), tag_config, source


def _cached_tag_file(tag_config: Mapping[str, Any], cache_dir: str | None) -> str | None:
    """The locally cached weights of an open_clip tag, looked up without any network access."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    if tag_config.get("file"):
        return tag_config["file"] if Path(tag_config["file"]).is_file() else None
    hub = tag_config.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo_id, filename = os.path.split(hub)
        names = [filename] if filename else [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
        if filename.endswith((".bin", ".pth", ".pt")):
            names.insert(0, filename.rsplit(".", 1)[0] + ".safetensors")
        for name in names:
            found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
            if isinstance(found, str) and Path(found).is_file():
                return found
    url = tag_config.get("url", "")
    if url:
        candidate = Path(cache_dir or Path.home() / ".cache" / "clip") / os.path.basename(url)
        if candidate.is_file():
            return str(candidate)
    return None
