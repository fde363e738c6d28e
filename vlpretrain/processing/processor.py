"""Processors that turn text plus images / region features (or videos / frame features) into model inputs.

``VisionLanguageProcessor(text=..., images=...)`` or ``(text=..., region_features=..., region_boxes=...,
image_sizes=...)`` returns ``input_ids``, ``attention_mask``, ``token_type_ids``, ``region_features``
(B, R, D float32), ``region_boxes`` (B, R, 4: normalised x1, y1, x2, y2) and ``region_attention_mask`` (B, R);
on request also ``region_class_targets`` (B, R, C), ``region_object_labels`` / ``region_object_confidences``
and ``region_attribute_labels`` / ``region_attribute_confidences`` (B, R; padded labels are -100).

``VideoLanguageProcessor(text=..., videos=...)`` or ``(text=..., frame_features=...)`` returns ``input_ids``,
``attention_mask``, ``frame_features`` (B, F, D) and ``frame_attention_mask`` (B, F).

Both are transformers ``ProcessorMixin`` subclasses: the tokenizer is the only sub-processor; the featurizer
settings are plain JSON ``__init__`` values (transformers v5 serialises exactly those) and the featurizer
object is rebuilt from them. ``save_pretrained`` also writes the weights of featurizer models that are not on
the Hub, a flat copy of this module and its dependencies, and the ``auto_map`` entry, so the saved folder
loads with ``AutoProcessor.from_pretrained(folder, trust_remote_code=True)`` where this package is absent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import BatchFeature, ProcessorMixin

from ..utils.folders import atomic_write_text, staged_save
from ..utils.remote_code import auto_map_reference, write_flat_modules
from .frames import FrameFeaturizer, FrameRecord, read_frame_features
from .provenance import provenance_from_config
from .readers import RegionRecord, check_finite, normalize_boxes, validate_normalized_boxes
from .regions import RegionFeaturizer
from .subtitles import align_subtitles_to_frames, non_empty_subtitles, subtitle_token_layout, tokenize_subtitles

PROCESSOR_CONFIG_NAME = "processor_config.json"
IGNORE_INDEX = -100
_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision")


def _as_array(value, where: str, ndim: int) -> np.ndarray:
    """A numpy float view of a tensor / array / nested list, checked for its number of dimensions."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except ValueError as error:
        raise ValueError(f"{where}: not a rectangular array ({error})") from error
    if array.ndim != ndim:
        raise ValueError(f"{where}: expected {ndim} dimensions, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{where}: expected numbers, got dtype {array.dtype}")
    return array


def _per_example(value, name: str, batch_size: int, ndim: int) -> list[np.ndarray]:
    """Split a batched (B, ...) array or a list of per-example arrays into a list of ``ndim``-d arrays."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        batched = _as_array(value, name, ndim + 1)
        items = list(batched)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        items = [_as_array(item, f"{name}[{index}]", ndim) for index, item in enumerate(value)]
    else:
        raise ValueError(f"{name}: expected a list of per-example arrays or a batched array, got {type(value).__name__}")
    if len(items) != batch_size:
        raise ValueError(f"{name} has {len(items)} examples, but the batch has {batch_size}")
    return items


def _text_batch(text) -> list[str] | None:
    if text is None:
        return None
    if isinstance(text, str):
        return [text]
    if isinstance(text, Sequence) and all(isinstance(item, str) for item in text):
        if not text:
            raise ValueError("text: an empty list; expected at least one string (or text=None)")
        return list(text)
    bad = next((index for index, item in enumerate(text) if not isinstance(item, str)), None) if isinstance(text, Sequence) else None
    detail = f" (text[{bad}] is a {type(text[bad]).__name__})" if bad is not None else ""
    raise ValueError(f"text: expected a string or a list of strings, got {type(text).__name__}{detail}")


def _encode_text(tokenizer, texts: list[str], max_length: int | None, tokenizer_kwargs: dict) -> dict:
    """``input_ids``, ``attention_mask`` and ``token_type_ids`` (zeros when the tokenizer gives none), padded and
    truncated to ``max_length`` unless ``tokenizer_kwargs`` say otherwise."""
    options = {"padding": True, "truncation": True, "max_length": max_length}
    options.update(tokenizer_kwargs)
    encoded = tokenizer(texts, return_tensors="pt", **options)
    return {
        "input_ids": encoded["input_ids"],
        "attention_mask": encoded["attention_mask"],
        "token_type_ids": encoded.get("token_type_ids", torch.zeros_like(encoded["input_ids"])),
    }


def region_records_from_arrays(
    region_features,
    region_boxes,
    region_class_targets,
    count: int,
    image_sizes=None,
    normalised_hint: str = "",
) -> list[RegionRecord]:
    """One :class:`RegionRecord` per example from precomputed arrays: ``region_features`` (R, D) and
    ``region_boxes`` (R, 4: x1, y1, x2, y2, in pixels when ``image_sizes`` gives each (height, width), else
    normalised), optionally ``region_class_targets`` (R, C). ``normalised_hint`` is added to the name in errors
    about normalised boxes. Every mismatch raises ``ValueError`` naming the argument and example."""
    if region_boxes is None:
        raise ValueError("region_features needs region_boxes (each (R, 4): x1, y1, x2, y2)")
    features = _per_example(region_features, "region_features", count, 2)
    boxes = _per_example(region_boxes, "region_boxes", count, 2)
    sizes = None
    if image_sizes is not None:
        sizes = _per_example(image_sizes, "image_sizes", count, 1)
        for index, size in enumerate(sizes):
            if size.shape != (2,) or not (np.isfinite(size).all() and (size > 0).all()):
                raise ValueError(f"image_sizes[{index}]: expected a positive (height, width) pair, got {size.tolist()}")
    targets = None if region_class_targets is None else _per_example(region_class_targets, "region_class_targets", count, 2)
    records = []
    for index in range(count):
        where = f"region_boxes[{index}]"
        if features[index].shape[0] != boxes[index].shape[0]:
            raise ValueError(
                f"example {index}: region_features has {features[index].shape[0]} regions but region_boxes has {boxes[index].shape[0]}"
            )
        if sizes is not None:
            height, width = (int(value) for value in sizes[index])
            normalised = normalize_boxes(boxes[index], width, height, where=where)
        else:
            height = width = None
            normalised = validate_normalized_boxes(boxes[index], where=f"{where}{normalised_hint}")
        if not np.issubdtype(features[index].dtype, np.floating):
            raise ValueError(f"region_features[{index}]: expected floating point features, got {features[index].dtype}")
        check_finite(features[index], f"region_features[{index}]", "region")
        if targets is not None and targets[index].shape[0] != features[index].shape[0]:
            raise ValueError(f"region_class_targets[{index}] has {targets[index].shape[0]} rows for {features[index].shape[0]} regions")
        records.append(
            RegionRecord(
                image_id=str(index),
                image_height=height,
                image_width=width,
                boxes=normalised,
                features=features[index].astype(np.float32, copy=False),
                class_probabilities=None if targets is None else targets[index].astype(np.float32),
            )
        )
    return records


class _SavesFlatModules:
    """``save_pretrained`` / ``from_pretrained`` shared by both processors (see the module docstring)."""

    def _featurizer_config_for_save(self, folder: Path) -> dict | None:
        raise NotImplementedError

    def _featurizer_attribute(self) -> str:
        raise NotImplementedError

    def _featurizer_configs_for_save(self, folder: Path) -> dict[str, dict | None]:
        """Each featurizer settings attribute with the value to save (a processor may hold several featurizers)."""
        return {self._featurizer_attribute(): self._featurizer_config_for_save(folder)}

    def save_pretrained(
        self, save_directory: str | os.PathLike, push_to_hub: bool = False, remote_code: bool = False, **kwargs
    ) -> list[str]:
        """Save tokenizer, settings and featurizer weights (and, with ``remote_code=True`` or from ``push_to_hub``, the
        flat remote code and ``auto_map``) into a hidden sibling folder swapped in place of ``save_directory`` in one
        rename (files already there that this save does not write are kept)."""
        if push_to_hub:
            raise ValueError("save_pretrained(push_to_hub=True) is not supported here; call processor.push_to_hub(repo_id)")
        remote_code = remote_code or getattr(self, "_pushing_to_hub", False)
        save_directory = Path(save_directory)
        in_memory_configs = {}
        try:
            with staged_save(save_directory) as staging:
                for attribute, saved_config in self._featurizer_configs_for_save(staging).items():
                    in_memory_configs[attribute] = getattr(self, attribute)
                    setattr(self, attribute, saved_config)
                self._auto_class = None  # the flat export below replaces transformers' own copying of this file
                ProcessorMixin.save_pretrained(self, str(staging), **kwargs)
                config_file = staging / PROCESSOR_CONFIG_NAME
                config = json.loads(config_file.read_text(encoding="utf-8"))
                config.pop("auto_map", None)
                if remote_code:
                    write_flat_modules([type(self).__module__], staging)
                    config["auto_map"] = {"AutoProcessor": auto_map_reference(type(self))}
                provenance = {
                    attribute: provenance_from_config("regions" if "region" in attribute else "frames", saved)
                    for attribute, saved in config.items()
                    if attribute in in_memory_configs and saved
                }
                if provenance:
                    config["feature_provenance"] = provenance
                atomic_write_text(config_file, json.dumps(config, indent=2, sort_keys=True) + "\n")
        finally:
            for attribute, in_memory_config in in_memory_configs.items():
                setattr(self, attribute, in_memory_config)
            self.__dict__.pop("_auto_class", None)
        return [str(save_directory / PROCESSOR_CONFIG_NAME)]

    def push_to_hub(self, *args, **kwargs):
        """transformers' ``push_to_hub``, with the flat remote code (see ``save_pretrained``)."""
        self._pushing_to_hub = True
        try:
            return ProcessorMixin.push_to_hub(self, *args, **kwargs)
        finally:
            del self._pushing_to_hub

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        """Load like any processor; featurizer weights saved with it are found relative to its location."""
        processor = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        hub_kwargs = {key: kwargs[key] for key in _HUB_KWARGS if kwargs.get(key) is not None}
        processor._bind_location(str(pretrained_model_name_or_path), hub_kwargs)
        return processor


class _RegionInputs:
    """The region side shared by :class:`VisionLanguageProcessor` and ActBERT's processor: the region featurizer and
    its settings, the per-example region cap, and padding records into batched tensors."""

    def _init_regions(self, region_featurizer_config: dict | None, max_regions: int | None, region_feature_size: int | None) -> None:
        if max_regions is not None and max_regions <= 0:
            raise ValueError(f"max_regions must be positive or None, got {max_regions}")
        self.region_featurizer_config = region_featurizer_config
        self.max_regions = max_regions
        self.region_feature_size = region_feature_size
        self._region_featurizer = RegionFeaturizer(region_featurizer_config) if region_featurizer_config else None

    @property
    def region_featurizer(self) -> RegionFeaturizer | None:
        """The featurizer that turns images (or sampled video frames) into regions; None when the processor only
        takes precomputed region features."""
        return self._region_featurizer

    def _bind_region_location(self, location: str, hub_kwargs: dict) -> None:
        if self._region_featurizer is not None:
            self._region_featurizer.base_path = location
            self._region_featurizer.hub_kwargs = hub_kwargs

    def _region_counts(self, records: list[RegionRecord | None]) -> list[int]:
        """Regions kept per example under ``max_regions`` (0 for an example without a record)."""
        return [0 if record is None else min(record.num_regions, self.max_regions or record.num_regions) for record in records]

    @staticmethod
    def _pad_region_records(records: list[RegionRecord | None], counts: list[int], dim: int) -> dict:
        """``region_features`` / ``region_boxes`` / ``region_attention_mask`` with the first ``counts[i]`` regions
        of each record; an example with count 0 keeps an all-padding row."""
        length = max(counts, default=0)
        features = torch.zeros(len(records), length, dim, dtype=torch.float32)
        boxes = torch.zeros(len(records), length, 4, dtype=torch.float32)
        mask = torch.zeros(len(records), length, dtype=torch.long)
        for index, (record, count) in enumerate(zip(records, counts)):
            if count:
                features.numpy()[index, :count] = record.features[:count]
                boxes.numpy()[index, :count] = record.boxes[:count]
                mask[index, :count] = 1
        return {"region_features": features, "region_boxes": boxes, "region_attention_mask": mask}

    @staticmethod
    def _pad_matrix(records: list[RegionRecord | None], counts: list[int], length: int, attribute: str) -> torch.Tensor:
        """A per-region matrix ``attribute`` (e.g. the class distributions) of every example with regions, padded."""
        kept = [(index, record, count) for index, (record, count) in enumerate(zip(records, counts)) if count]
        missing = [record.image_id for _, record, _ in kept if getattr(record, attribute) is None]
        if missing:
            raise ValueError(f"region class distributions were requested but examples {missing} have none")
        classes = {getattr(record, attribute).shape[1] for _, record, _ in kept}
        if len(classes) > 1:
            raise ValueError(f"region class distributions have different class counts in one batch: {sorted(classes)}")
        padded = torch.zeros(len(records), length, classes.pop(), dtype=torch.float32)
        for index, record, count in kept:
            padded.numpy()[index, :count] = getattr(record, attribute)[:count]
        return padded


class VisionLanguageProcessor(_RegionInputs, _SavesFlatModules, ProcessorMixin):
    """Tokenizer + region features for the image-text models (LXMERT, ViLBERT, VL-BERT, ...).

    Args:
        tokenizer: any transformers tokenizer (BERT WordPiece for the released models).
        region_featurizer_config: JSON settings of the :class:`RegionFeaturizer` used for ``images=`` (None:
            only precomputed features are accepted). Also the provenance record of extracted features.
        max_text_length: truncate text to this many tokens (None: the tokenizer's model_max_length).
        max_regions: keep at most this many regions per image (the first ones, i.e. the most confident in
            published files); None keeps all.
        region_feature_size: when set, region features of another size are rejected.
    """

    def __init__(
        self,
        tokenizer=None,
        region_featurizer_config: dict | None = None,
        max_text_length: int | None = None,
        max_regions: int | None = None,
        region_feature_size: int | None = None,
    ) -> None:
        super().__init__(tokenizer)
        self._init_regions(region_featurizer_config, max_regions, region_feature_size)
        self.max_text_length = max_text_length

    @classmethod
    def from_featurizer(cls, tokenizer, featurizer: RegionFeaturizer, **kwargs) -> VisionLanguageProcessor:
        """A processor around an existing featurizer (e.g. one holding your own detector)."""
        processor = cls(tokenizer, region_featurizer_config=featurizer.to_dict(), **kwargs)
        processor._region_featurizer = featurizer
        return processor

    @property
    def model_input_names(self) -> list[str]:
        """The names of the model inputs this processor returns by default."""
        return ["input_ids", "attention_mask", "token_type_ids", "region_features", "region_boxes", "region_attention_mask"]

    def _featurizer_attribute(self) -> str:
        return "region_featurizer_config"

    def _featurizer_config_for_save(self, folder: Path) -> dict | None:
        return None if self._region_featurizer is None else self._region_featurizer.save_models(folder)

    def _bind_location(self, location: str, hub_kwargs: dict) -> None:
        self._bind_region_location(location, hub_kwargs)

    def __call__(
        self,
        text: str | list[str] | None = None,
        images: Sequence | None = None,
        region_features: Sequence | torch.Tensor | np.ndarray | None = None,
        region_boxes: Sequence | torch.Tensor | np.ndarray | None = None,
        image_sizes: Sequence[tuple[int, int]] | None = None,
        regions: Sequence[RegionRecord] | None = None,
        region_class_targets: Sequence | torch.Tensor | np.ndarray | None = None,
        boxes: Sequence | None = None,
        masked_regions: Sequence | None = None,
        return_region_class_targets: bool = False,
        return_region_labels: bool = False,
        return_tensors: str | None = "pt",
        **tokenizer_kwargs,
    ) -> BatchFeature:
        """Tokenize ``text`` and batch the regions of each example, padded, with masks.

        Give the regions as exactly one of: ``images`` (extracted with the region featurizer; ``boxes`` and
        ``masked_regions`` are passed to it), ``regions`` (records from the readers or a store), or
        ``region_features`` (each (R, D)) with ``region_boxes`` (each (R, 4) x1, y1, x2, y2; in pixels when
        ``image_sizes`` gives each image's (height, width), else already normalised to [0, 1]).
        """
        if return_tensors not in ("pt", None):
            raise ValueError(f"return_tensors must be 'pt' (or None for the same tensors), got {return_tensors!r}")
        texts = _text_batch(text)
        given = [name for name, value in (("images", images), ("regions", regions), ("region_features", region_features)) if value is not None]
        if len(given) > 1:
            raise ValueError(f"give the regions once: got {', '.join(given)}")
        if texts is None and not given:
            raise ValueError("nothing to process: pass text and/or images, regions or region_features")
        if (boxes is not None or masked_regions is not None) and images is None:
            raise ValueError("boxes and masked_regions apply to images=; precomputed regions are used as they are")
        if region_features is None and (region_boxes is not None or image_sizes is not None or region_class_targets is not None):
            raise ValueError("region_boxes, image_sizes and region_class_targets go with region_features")
        batch_size = len(texts) if texts is not None else None
        records = None
        if images is not None:
            images = list(images) if isinstance(images, (list, tuple)) else [images]
            if not images:
                raise ValueError("images: an empty list; expected at least one image")
            self._check_batch("images", len(images), batch_size)
            if self._region_featurizer is None:
                raise ValueError("images= needs a region featurizer; this processor was built without region_featurizer_config")
            records = self._region_featurizer(images, boxes=boxes, masked_regions=masked_regions)
        elif regions is not None:
            records = list(regions)
            self._check_batch("regions", len(records), batch_size)
            if not all(isinstance(record, RegionRecord) for record in records):
                raise ValueError("regions: expected RegionRecord objects (from the readers, a featurizer or store.record_from_row)")
        elif region_features is not None:
            records = self._records_from_arrays(region_features, region_boxes, image_sizes, region_class_targets, batch_size)
        data = {}
        if texts is not None:
            data.update(_encode_text(self.tokenizer, texts, self.max_text_length, tokenizer_kwargs))
        elif tokenizer_kwargs:
            raise ValueError(f"tokenizer arguments {sorted(tokenizer_kwargs)} given without text")
        if records is not None:
            data.update(self._pad_regions(records, return_region_class_targets, return_region_labels))
        return BatchFeature(data=data, tensor_type=None)

    @staticmethod
    def _check_batch(name: str, count: int, batch_size: int | None) -> None:
        if batch_size is not None and count != batch_size:
            raise ValueError(f"{name} has {count} examples but text has {batch_size}")

    def _records_from_arrays(self, region_features, region_boxes, image_sizes, class_targets, batch_size) -> list[RegionRecord]:
        count = len(region_features)
        if region_boxes is not None:
            self._check_batch("region_features", count, batch_size)
        return region_records_from_arrays(
            region_features, region_boxes, class_targets, count, image_sizes,
            normalised_hint=" (normalised, since image_sizes is None)",
        )

    def _pad_regions(self, records: list[RegionRecord], with_targets: bool, with_labels: bool) -> dict:
        if not records:
            raise ValueError("no regions to process")
        sizes = {record.features.shape[1] for record in records}
        expected = self.region_feature_size
        for index, record in enumerate(records):
            if record.features.ndim != 2 or record.num_regions == 0:
                raise ValueError(f"example {index} ({record.image_id!r}): region features must be (R >= 1, D), got {record.features.shape}")
            check_finite(record.features, f"example {index} ({record.image_id!r}): region features", "region")
            check_finite(np.asarray(record.boxes, dtype=np.float64), f"example {index} ({record.image_id!r}): region boxes", "region")
            if expected is not None and record.features.shape[1] != expected:
                raise ValueError(
                    f"example {index} ({record.image_id!r}): region feature size {record.features.shape[1]}, expected {expected}"
                )
        if len(sizes) > 1:
            raise ValueError(f"region feature sizes differ within the batch: {sorted(sizes)}")
        counts = self._region_counts(records)
        length = max(counts)
        output = self._pad_region_records(records, counts, sizes.pop())
        if with_targets:
            output["region_class_targets"] = self._pad_matrix(records, counts, length, "class_probabilities")
        if with_labels:
            output.update(self._pad_labels(records, counts, length))
        return output

    @classmethod
    def _pad_labels(cls, records: list[RegionRecord], counts: list[int], length: int) -> dict:
        """Object labels (always) and attribute labels (when every record has them), padded with -100 / 0."""
        output = {}
        for family, label_key, confidence_key in (
            ("object", "object_ids", "object_confidences"),
            ("attribute", "attribute_ids", "attribute_confidences"),
        ):
            present = [getattr(record, label_key) is not None for record in records]
            if family == "attribute" and not any(present):
                continue
            if not all(present):
                missing = [record.image_id for record, has in zip(records, present) if not has]
                raise ValueError(f"region labels were requested but examples {missing} have no {family} labels")
            output[f"region_{family}_labels"] = cls._pad_vector(records, counts, length, label_key, torch.long, IGNORE_INDEX)
            output[f"region_{family}_confidences"] = cls._pad_vector(records, counts, length, confidence_key, torch.float32, 0.0)
        return output

    @staticmethod
    def _pad_vector(records: list[RegionRecord], counts: list[int], length: int, attribute: str, dtype: torch.dtype, fill: float) -> torch.Tensor:
        if any(getattr(record, attribute) is None for record in records):
            raise ValueError(f"region labels were requested but some examples have no {attribute}")
        padded = torch.full((len(records), length), fill, dtype=dtype)
        for index, (record, count) in enumerate(zip(records, counts)):
            padded.numpy()[index, :count] = getattr(record, attribute)[:count]
        return padded


class VideoLanguageProcessor(_SavesFlatModules, ProcessorMixin):
    """Tokenizer + clip features for the video-text models (UniVL, HERO, VideoBERT, ...).

    Args:
        tokenizer: any transformers tokenizer.
        frame_featurizer_config: JSON settings of the :class:`FrameFeaturizer` used for ``videos=`` (None:
            only precomputed features are accepted); also the provenance of extracted features.
        max_text_length: truncate text to this many tokens (None: the tokenizer's model_max_length).
        max_frames: keep at most this many clips per video (the first ones); None keeps all.
        frame_feature_size: when set, features of another size are rejected.
    """

    def __init__(
        self,
        tokenizer=None,
        frame_featurizer_config: dict | None = None,
        max_text_length: int | None = None,
        max_frames: int | None = None,
        frame_feature_size: int | None = None,
    ) -> None:
        super().__init__(tokenizer)
        if max_frames is not None and max_frames <= 0:
            raise ValueError(f"max_frames must be positive or None, got {max_frames}")
        self.frame_featurizer_config = frame_featurizer_config
        self.max_text_length = max_text_length
        self.max_frames = max_frames
        self.frame_feature_size = frame_feature_size
        self._frame_featurizer = FrameFeaturizer(frame_featurizer_config) if frame_featurizer_config else None

    @classmethod
    def from_featurizer(cls, tokenizer, featurizer: FrameFeaturizer, **kwargs) -> VideoLanguageProcessor:
        """A processor around an existing frame featurizer."""
        processor = cls(tokenizer, frame_featurizer_config=featurizer.to_dict(), **kwargs)
        processor._frame_featurizer = featurizer
        return processor

    @property
    def frame_featurizer(self) -> FrameFeaturizer | None:
        """The featurizer used for ``videos=`` (None when only precomputed features are accepted)."""
        return self._frame_featurizer

    @property
    def model_input_names(self) -> list[str]:
        """The names of the model inputs this processor returns."""
        return ["input_ids", "attention_mask", "frame_features", "frame_attention_mask"]

    def _featurizer_attribute(self) -> str:
        return "frame_featurizer_config"

    def _featurizer_config_for_save(self, folder: Path) -> dict | None:
        return None if self._frame_featurizer is None else self._frame_featurizer.save_models(folder)

    def _bind_location(self, location: str, hub_kwargs: dict) -> None:
        if self._frame_featurizer is not None:
            self._frame_featurizer.base_path = location
            self._frame_featurizer.hub_kwargs = hub_kwargs

    def __call__(
        self,
        text: str | list[str] | None = None,
        videos: Sequence[str | os.PathLike] | None = None,
        frame_features: Sequence | torch.Tensor | np.ndarray | None = None,
        return_tensors: str | None = "pt",
        **tokenizer_kwargs,
    ) -> BatchFeature:
        """Tokenize ``text`` and batch each video's clip features, padded, with masks.

        ``videos`` are video files (decoded and featurized) or precomputed ``.npy`` / ``.npz`` feature files;
        ``frame_features`` are arrays (each (F, D)) or ``FrameRecord`` objects.
        """
        if return_tensors not in ("pt", None):
            raise ValueError(f"return_tensors must be 'pt' (or None for the same tensors), got {return_tensors!r}")
        texts = _text_batch(text)
        if videos is not None and frame_features is not None:
            raise ValueError("give the frames once: got both videos and frame_features")
        if texts is None and videos is None and frame_features is None:
            raise ValueError("nothing to process: pass text and/or videos or frame_features")
        batch_size = len(texts) if texts is not None else None
        clips = None
        if videos is not None:
            videos = [videos] if isinstance(videos, (str, os.PathLike)) else list(videos)
            if batch_size is not None and len(videos) != batch_size:
                raise ValueError(f"videos has {len(videos)} examples but text has {batch_size}")
            clips = [self._video_features(video, index) for index, video in enumerate(videos)]
        elif frame_features is not None:
            count = len(frame_features)
            if batch_size is not None and count != batch_size:
                raise ValueError(f"frame_features has {count} examples but text has {batch_size}")
            if isinstance(frame_features, Sequence) and all(isinstance(item, FrameRecord) for item in frame_features):
                clips = [np.asarray(item.features) for item in frame_features]
            else:
                clips = _per_example(frame_features, "frame_features", count, 2)
        data = {}
        if texts is not None:
            encoded = _encode_text(self.tokenizer, texts, self.max_text_length, tokenizer_kwargs)
            data["input_ids"], data["attention_mask"] = encoded["input_ids"], encoded["attention_mask"]
        elif tokenizer_kwargs:
            raise ValueError(f"tokenizer arguments {sorted(tokenizer_kwargs)} given without text")
        if clips is not None:
            data.update(self._pad_frames(clips))
        return BatchFeature(data=data, tensor_type=None)

    def _video_features(self, video: str | os.PathLike, index: int) -> np.ndarray:
        path = Path(video)
        if path.suffix in (".npy", ".npz"):
            return read_frame_features(path, feature_size=self.frame_feature_size).features
        if self._frame_featurizer is None:
            raise ValueError(f"videos[{index}] ({path}): decoding videos needs frame_featurizer_config")
        return self._frame_featurizer.featurize_video(path).features

    def _pad_frames(self, clips: list[np.ndarray]) -> dict:
        if not clips:
            raise ValueError("no videos to process: frame_features / videos is an empty list")
        for index, clip in enumerate(clips):
            if clip.ndim != 2 or clip.shape[0] == 0:
                raise ValueError(f"frame_features[{index}]: expected (F >= 1, D), got {clip.shape}")
            if not np.issubdtype(clip.dtype, np.floating):
                raise ValueError(f"frame_features[{index}]: expected floating point features, got {clip.dtype}")
            if self.frame_feature_size is not None and clip.shape[1] != self.frame_feature_size:
                raise ValueError(f"frame_features[{index}]: feature size {clip.shape[1]}, expected {self.frame_feature_size}")
            check_finite(clip, f"frame_features[{index}]", "frame")
        sizes = {clip.shape[1] for clip in clips}
        if len(sizes) > 1:
            raise ValueError(f"frame feature sizes differ within the batch: {sorted(sizes)}")
        counts = [min(len(clip), self.max_frames or len(clip)) for clip in clips]
        features = torch.zeros(len(clips), max(counts), sizes.pop(), dtype=torch.float32)
        mask = torch.zeros(len(clips), max(counts), dtype=torch.long)
        for index, (clip, count) in enumerate(zip(clips, counts)):
            features.numpy()[index, :count] = clip[:count]
            mask[index, :count] = 1
        return {"frame_features": features, "frame_attention_mask": mask}

    def encode_subtitled_videos(
        self,
        subtitles: Sequence[Mapping[str, Sequence]],
        frame_features: Sequence | torch.Tensor | np.ndarray,
        frame_interval: float = 1.5,
        max_subtitle_length: int = 60,
    ) -> BatchFeature:
        """HERO inputs: every video's subtitles tokenized one by one (each the separator token followed by its words, as
        the release feeds them: :func:`tokenize_subtitles`) and concatenated, with the subtitle of each token
        (``text_subtitle_index``) and of each frame (``frame_subtitle_index``, -1 = none), aligned from timestamps.

        ``subtitles[b]`` holds parallel ``text`` / ``start`` / ``end`` lists (seconds); frame i covers
        [i * ``frame_interval``, (i + 1) * ``frame_interval``). The rule and its edge cases (times outside the video
        clipped, overlaps to the larger IoU, empty subtitles dropped, ``end < start`` an error) are documented in
        :mod:`subtitles`. A video without any non-empty subtitle is an error (HERO needs text per video).
        """
        if isinstance(subtitles, (str, Mapping)) or not isinstance(subtitles, Sequence) or not subtitles:
            raise ValueError("subtitles: expected a non-empty list with one {'text', 'start', 'end'} mapping per video")
        clips = _per_example(frame_features, "frame_features", len(subtitles), 2)
        frames = self._pad_frames(clips)
        rows, owners, frame_index = [], [], []
        for index, (entry, clip) in enumerate(zip(subtitles, clips)):
            if not isinstance(entry, Mapping) or any(key not in entry for key in ("text", "start", "end")):
                found = sorted(entry) if isinstance(entry, Mapping) else type(entry).__name__
                raise ValueError(f"subtitles[{index}]: expected a mapping with 'text', 'start' and 'end' lists, got {found}")
            texts, starts, ends = non_empty_subtitles(entry["text"], entry["start"], entry["end"], where=f"subtitles[{index}]")
            if not texts:
                raise ValueError(f"subtitles[{index}]: no non-empty subtitle; expected at least one line of text")
            row, owner = subtitle_token_layout(tokenize_subtitles(self.tokenizer, texts, max_subtitle_length))
            rows.append(row)
            owners.append(owner)
            count = min(len(clip), self.max_frames or len(clip))
            frame_index.append(align_subtitles_to_frames(starts, ends, count, frame_interval, where=f"subtitles[{index}]"))
        length = max(len(row) for row in rows)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(rows), length), pad, dtype=torch.long)
        attention_mask = torch.zeros(len(rows), length, dtype=torch.long)
        text_index = torch.full((len(rows), length), -1, dtype=torch.long)
        frame_subtitle_index = torch.full(frames["frame_attention_mask"].shape, -1, dtype=torch.long)
        for b, (row, owner, aligned) in enumerate(zip(rows, owners, frame_index)):
            input_ids[b, : len(row)] = torch.tensor(row)
            attention_mask[b, : len(row)] = 1
            text_index[b, : len(row)] = torch.tensor(owner)
            frame_subtitle_index[b, : len(aligned)] = torch.from_numpy(aligned)
        data = dict(
            frames, input_ids=input_ids, attention_mask=attention_mask, text_subtitle_index=text_index,
            frame_subtitle_index=frame_subtitle_index,
        )
        return BatchFeature(data=data, tensor_type=None)
