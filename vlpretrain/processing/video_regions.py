"""ActBERT's processor: actions from the frame featurizer and regions from the region featurizer on sampled frames.

``VideoRegionLanguageProcessor(text=..., videos=...)`` returns ``input_ids``, ``attention_mask``,
``token_type_ids``, the actions ``frame_features`` (B, F, D) / ``frame_attention_mask`` (B, F), and the regions
``region_features`` (B, R, D'), ``region_boxes`` (B, R, 4: normalised x1, y1, x2, y2) / ``region_attention_mask``
(B, R); with ``return_region_class_targets=True`` also the detector's class distributions ``region_class_targets``
(B, R, C), ActBERT's masked-object targets.

How a video becomes both (ActBERT's frame rate and frames per region set are unverified, see the spec):

- it is decoded once, at the frame featurizer's ``decode_fps`` (at most ``max_clips`` clips, and ``max_frames``
  when set, from its start); the :class:`FrameFeaturizer` turns the frames into one clip feature per
  ``clip_seconds`` (the actions);
- ``region_frames`` frames (default 4) are sampled from the same decoded frames at evenly spaced instants, first
  and last frame included (every frame when the video has fewer), and the :class:`RegionFeaturizer` runs on each;
- a video's regions are its sampled frames' regions concatenated in time order, each frame's in the detector's
  order (most confident first). Each frame keeps at most ``ceil(max_regions / sampled frames)`` so that every
  sampled frame is represented, and a video at most ``max_regions`` (36, the port's cap; None keeps all). Boxes
  are normalised to the frame;
- a region featurizer without a detector gives one whole-frame box per sampled frame (the frame's RoI feature).

Videos may also be given as lists of frames (PIL images or (H, W, 3) uint8 arrays, taken as decoded at
``decode_fps``) or as ``.npy`` / ``.npz`` clip-feature files; precomputed inputs are ``frame_features`` with
``region_features`` / ``region_boxes`` (normalised) / ``region_class_targets``, one array per video.

**A video with no region** (a clip-feature file, which has no frames to detect on; or precomputed regions with zero
rows) gets an all-zero ``region_attention_mask`` row, never an error: ActBERT then encodes it with its global
region token alone (see ``ActBertConfig``). When no video of a batch has a region, the tensors have zero regions
(B, 0, D') and D' comes from ``region_feature_size``, which must then be set.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import BatchFeature

from .frames import FrameFeaturizer, FrameRecord, decode_video, read_frame_features
from .processor import (
    VideoLanguageProcessor,
    _encode_text,
    _per_example,
    _RegionInputs,
    _text_batch,
    region_records_from_arrays,
)
from .readers import RegionRecord
from .regions import RegionFeaturizer, load_image

VideoInput = str | os.PathLike | Sequence[Image.Image | np.ndarray]


def sampled_frame_indices(num_frames: int, count: int) -> list[int]:
    """``count`` evenly spaced frame indices in [0, num_frames), first and last included (all when fewer)."""
    if num_frames <= count:
        return list(range(num_frames))
    if count == 1:
        return [0]
    return [round(index * (num_frames - 1) / (count - 1)) for index in range(count)]


class VideoRegionLanguageProcessor(_RegionInputs, VideoLanguageProcessor):
    """Tokenizer + clip features (actions) + region features from sampled frames, for ActBERT (module docstring).

    Args:
        tokenizer: any transformers tokenizer (BERT WordPiece for ActBERT).
        frame_featurizer_config: JSON settings of the :class:`FrameFeaturizer` (the actions); None: only
            precomputed clip features are accepted.
        region_featurizer_config: JSON settings of the :class:`RegionFeaturizer` run on sampled frames; None: regions
            only from precomputed arrays.
        max_text_length / max_frames / frame_feature_size: as for :class:`VideoLanguageProcessor`.
        region_frames: frames sampled per video for regions.
        max_regions: regions kept per video (None: all).
        region_feature_size: when set, region features of another size are rejected.
    """

    def __init__(
        self,
        tokenizer=None,
        frame_featurizer_config: dict | None = None,
        region_featurizer_config: dict | None = None,
        max_text_length: int | None = None,
        max_frames: int | None = None,
        frame_feature_size: int | None = None,
        region_frames: int = 4,
        max_regions: int | None = 36,
        region_feature_size: int | None = None,
    ) -> None:
        super().__init__(tokenizer, frame_featurizer_config, max_text_length, max_frames, frame_feature_size)
        if int(region_frames) <= 0:
            raise ValueError(f"region_frames must be positive, got {region_frames}")
        self._init_regions(region_featurizer_config, max_regions, region_feature_size)
        self.region_frames = int(region_frames)

    @classmethod
    def from_featurizers(
        cls, tokenizer, frame_featurizer: FrameFeaturizer | None, region_featurizer: RegionFeaturizer | None, **kwargs
    ) -> VideoRegionLanguageProcessor:
        """A processor around existing featurizers (e.g. ones holding your own models)."""
        processor = cls(
            tokenizer,
            frame_featurizer_config=None if frame_featurizer is None else frame_featurizer.to_dict(),
            region_featurizer_config=None if region_featurizer is None else region_featurizer.to_dict(),
            **kwargs,
        )
        processor._frame_featurizer = frame_featurizer
        processor._region_featurizer = region_featurizer
        return processor

    @property
    def model_input_names(self) -> list[str]:
        """The names of the model inputs this processor returns by default."""
        return ["input_ids", "attention_mask", "token_type_ids", "frame_features", "frame_attention_mask",
                "region_features", "region_boxes", "region_attention_mask"]

    def _featurizer_configs_for_save(self, folder: Path) -> dict[str, dict | None]:
        return {
            "frame_featurizer_config": None if self._frame_featurizer is None else self._frame_featurizer.save_models(folder),
            "region_featurizer_config": None if self._region_featurizer is None else self._region_featurizer.save_models(folder),
        }

    def _bind_location(self, location: str, hub_kwargs: dict) -> None:
        super()._bind_location(location, hub_kwargs)
        self._bind_region_location(location, hub_kwargs)

    def __call__(
        self,
        text: str | list[str] | None = None,
        videos: Sequence[VideoInput] | None = None,
        frame_features: Sequence | torch.Tensor | np.ndarray | None = None,
        region_features: Sequence | None = None,
        region_boxes: Sequence | None = None,
        region_class_targets: Sequence | None = None,
        return_region_class_targets: bool = False,
        return_tensors: str | None = "pt",
        **tokenizer_kwargs,
    ) -> BatchFeature:
        """Tokenize ``text``; batch each video's clip features and its regions, padded, with masks.

        ``videos``: video files, ``.npy`` / ``.npz`` clip-feature files, or lists of frames (one entry per video).
        ``frame_features``: precomputed (F, D) clip features per video (arrays or ``FrameRecord``).
        ``region_features`` (R, D') with ``region_boxes`` (R, 4, normalised) and optionally ``region_class_targets``
        (R, C) give the regions instead of the region featurizer (R may be 0).
        """
        if return_tensors not in ("pt", None):
            raise ValueError(f"return_tensors must be 'pt' (or None for the same tensors), got {return_tensors!r}")
        texts = _text_batch(text)
        if videos is not None and frame_features is not None:
            raise ValueError("give the frames once: got both videos and frame_features")
        if videos is None and frame_features is None:
            if region_features is not None:
                raise ValueError("region_features: ActBERT's regions go with actions; pass videos or frame_features too")
            return super().__call__(text=texts, return_tensors=return_tensors, **tokenizer_kwargs)
        if region_features is None and (region_boxes is not None or region_class_targets is not None):
            raise ValueError("region_boxes and region_class_targets go with region_features")
        if isinstance(videos, (str, os.PathLike)):
            videos = [videos]
        count = len(videos) if videos is not None else len(frame_features)
        if texts is not None and count != len(texts):
            name = "videos" if videos is not None else "frame_features"
            raise ValueError(f"{name} has {count} examples but text has {len(texts)}")
        if texts is None and tokenizer_kwargs:
            raise ValueError(f"tokenizer arguments {sorted(tokenizer_kwargs)} given without text")
        given_regions = None
        if region_features is not None:
            given_regions = region_records_from_arrays(region_features, region_boxes, region_class_targets, count)
        if videos is not None:
            self._check_featurizers(videos, need_regions=given_regions is None)
            clips, records = [], []
            for index, video in enumerate(videos):
                clip, record = self._featurize_video(video, index, need_regions=given_regions is None)
                clips.append(clip)
                records.append(record)
            if given_regions is not None:
                records = given_regions
        else:
            if isinstance(frame_features, Sequence) and all(isinstance(item, FrameRecord) for item in frame_features):
                clips = [np.asarray(item.features) for item in frame_features]
            else:
                clips = _per_example(frame_features, "frame_features", count, 2)
            records = given_regions if given_regions is not None else [None] * count
        data = {}
        if texts is not None:
            data.update(_encode_text(self.tokenizer, texts, self.max_text_length, tokenizer_kwargs))
        data.update(self._pad_frames(clips))
        data.update(self._pad_video_regions(records, return_region_class_targets))
        return BatchFeature(data=data, tensor_type=None)

    @staticmethod
    def _is_feature_file(video: VideoInput) -> bool:
        return isinstance(video, (str, os.PathLike)) and Path(video).suffix in (".npy", ".npz")

    def _check_featurizers(self, videos: Sequence[VideoInput], need_regions: bool) -> None:
        """Before decoding anything: the featurizers the videos need are there."""
        for index, video in enumerate(videos):
            if self._is_feature_file(video):
                continue
            if self._frame_featurizer is None:
                raise ValueError(f"videos[{index}]: decoding videos or frames needs frame_featurizer_config")
            if need_regions and self._region_featurizer is None:
                raise ValueError(f"videos[{index}]: regions from frames need region_featurizer_config (or pass region_features)")

    def _featurize_video(self, video: VideoInput, index: int, need_regions: bool) -> tuple[np.ndarray, RegionRecord | None]:
        """Clip features and regions of one video (regions None for a clip-feature file)."""
        if self._is_feature_file(video):
            return read_frame_features(video, feature_size=self.frame_feature_size).features, None
        featurizer = self._frame_featurizer
        if isinstance(video, (str, os.PathLike)):
            max_frames = int(featurizer.config["max_clips"]) * featurizer.frames_per_clip
            frames, _ = decode_video(video, featurizer.config["decode_fps"], max_frames)
            where = f"videos[{index}] ({video})"
        elif isinstance(video, Sequence) and len(video) > 0:
            frames = [load_image(frame, f"videos[{index}][{position}]") for position, frame in enumerate(video)]
            where = f"videos[{index}]"
        else:
            raise ValueError(f"videos[{index}]: expected a video file, a clip-feature file or a non-empty list of frames")
        if self.max_frames is not None:  # regions come from the kept clips only
            frames = frames[: self.max_frames * featurizer.frames_per_clip]
        clip = featurizer.clip_features(featurizer.pixel_values(frames)).numpy().astype(np.float32)
        if not need_regions:
            return clip, None
        return clip, self._frame_regions(frames, where)

    def _frame_regions(self, frames: list[Image.Image], where: str) -> RegionRecord:
        """The regions of the sampled frames, concatenated under the per-frame and per-video caps."""
        featurizer = self._region_featurizer
        picks = sampled_frame_indices(len(frames), self.region_frames)
        sampled = [frames[index] for index in picks]
        boxes = None
        if featurizer.detector is None:
            boxes = [np.asarray([[0.0, 0.0, frame.width, frame.height]], np.float32) for frame in sampled]
        records = featurizer(sampled, image_ids=[f"{where} frame {index}" for index in picks], boxes=boxes)
        per_frame = None if self.max_regions is None else math.ceil(self.max_regions / len(records))
        merged = {}
        for name in ("features", "boxes", "class_probabilities"):
            parts = [getattr(record, name) for record in records]
            merged[name] = None if any(part is None for part in parts) else np.concatenate(
                [part[:per_frame] for part in parts]
            )[: self.max_regions]
        return RegionRecord(
            image_id=where, image_height=frames[0].height, image_width=frames[0].width, boxes=merged["boxes"],
            features=merged["features"], class_probabilities=merged["class_probabilities"],
        )

    def _pad_video_regions(self, records: list[RegionRecord | None], with_targets: bool) -> dict:
        """Pad the videos' regions; a video without regions keeps an all-zero mask row (module docstring)."""
        present = [record for record in records if record is not None and record.num_regions > 0]
        sizes = {record.features.shape[1] for record in records if record is not None}
        if self.region_feature_size is not None:
            for index, record in enumerate(records):
                if record is not None and record.features.shape[1] != self.region_feature_size:
                    raise ValueError(
                        f"region_features[{index}]: feature size {record.features.shape[1]}, expected {self.region_feature_size}"
                    )
            sizes = {self.region_feature_size}
        if len(sizes) > 1:
            raise ValueError(f"region feature sizes differ within the batch: {sorted(sizes)}")
        if not sizes:
            raise ValueError(
                "region_feature_size: no video of the batch has regions, so the region feature size is unknown; "
                "set region_feature_size on the processor"
            )
        counts = self._region_counts(records)
        output = self._pad_region_records(records, counts, sizes.pop())
        if with_targets:
            missing = [index for index, record in enumerate(records) if record is not None and record.num_regions
                       and record.class_probabilities is None]
            if missing or not present:
                raise ValueError(
                    f"region class distributions were requested but examples {missing or list(range(len(records)))} have "
                    "none (they come from a detector or region_class_targets)"
                )
            output["region_class_targets"] = self._pad_matrix(records, counts, max(counts), "class_probabilities")
        return output
