"""Turning the visual side of pipeline inputs into processor keyword arguments, for any processor modality.

A visual item is either raw (an image: path, PIL image or (H, W, 3) uint8 array, or a video file) and then goes to
the processor's ``images=`` or ``videos=`` argument, whichever it has; or a dict of precomputed features whose
keys are processor arguments (``region_features`` + ``region_boxes`` (+ ``image_sizes``) for image processors,
``frame_features`` for video processors). One batch holds one kind.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from ..processing.provenance import feature_provenance, warn_if_features_differ

RAW_INPUT_NAMES = ("images", "videos")


def check_processor_features(model, processor) -> None:
    """Warn, naming both extractors, when the processor's featurizer of the model's feature kind makes features
    other than those the model expects (``model.config.feature_provenance``)."""
    expected = getattr(model.config, "feature_provenance", None)
    for name in ("frame_featurizer", "region_featurizer"):
        featurizer = getattr(processor, name, None)
        if expected and featurizer is not None:
            found = feature_provenance(featurizer)
            if found.get("kind") == expected.get("kind"):
                warn_if_features_differ(expected, found, f"processor {name}")


def processor_arguments(processor) -> set[str]:
    """The keyword arguments of the processor's ``__call__``."""
    if processor is None:
        raise ValueError("processor: this pipeline needs the model's processor (save it next to the model)")
    return set(inspect.signature(processor.__call__).parameters)


def visual_processor_kwargs(processor, items: Sequence[Any], where: str) -> dict[str, list]:
    """Processor keyword arguments for a batch of visual items (see the module docstring)."""
    if len(items) == 0:
        raise ValueError(f"{where}: expected at least one image, video or feature dict, got none")
    accepted = processor_arguments(processor)
    is_dict = [isinstance(item, dict) for item in items]
    if all(is_dict):
        keys = set(items[0])
        unknown = sorted(keys - (accepted - {"text"}))
        if unknown or not keys:
            raise ValueError(
                f"{where}[0]: feature keys {unknown or '(none)'} are not arguments of {type(processor).__name__}; "
                f"expected precomputed features such as region_features/region_boxes or frame_features"
            )
        for index, item in enumerate(items):
            if set(item) != keys:
                raise ValueError(f"{where}[{index}]: has keys {sorted(item)}, but {where}[0] has {sorted(keys)}")
        return {key: [item[key] for item in items] for key in sorted(keys)}
    if any(is_dict):
        raise ValueError(f"{where}: mixes precomputed feature dicts with raw images or videos; give one kind per call")
    raw_names = [name for name in RAW_INPUT_NAMES if name in accepted]
    if not raw_names:
        raise ValueError(f"{where}: {type(processor).__name__} takes no raw images or videos; give feature dicts")
    return {raw_names[0]: list(items)}


def text_batch(texts: Any, where: str) -> list[str]:
    """A non-empty list of non-empty strings (a single string becomes a list of one)."""
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, Sequence) or len(texts) == 0:
        raise ValueError(f"{where}: expected a string or a non-empty list of strings, got {type(texts).__name__}")
    for index, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{where}[{index}]: expected a non-empty string, got {text!r}")
    return list(texts)
