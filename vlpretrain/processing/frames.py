"""Frame (clip) features of videos: decode with PyAV, run a transformers backbone, pool to fixed-rate clips.

The published video-language models consume one feature vector per fixed stretch of time: UniVL and
VideoBERT one S3D vector per second (16 fps, 16-frame chunks), HERO one per 1.5 s. ``FrameFeaturizer``
reproduces that layout with any transformers model: frames are decoded at ``decode_fps`` (the most recent
frame at each sampling instant, like ffmpeg's ``fps`` filter), resized and centre-cropped, grouped into
non-overlapping clips of ``clip_seconds``, and each clip becomes one vector:

- an image backbone (``backbone_input="image"``, e.g. ResNet) embeds every frame; a clip is the mean of its frames;
- a video backbone (``backbone_input="video"``, e.g. VideoMAE) receives ``config.num_frames`` frames sampled
  uniformly from the clip (the last clip is padded by repeating its last frame).

At most ``max_clips`` clips are kept (the start of the video, as UniVL and HERO truncate). Precomputed
per-video features (``.npy`` / ``.npz``) are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import copy
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .featurizer_models import hub_spec, load_model, save_model, validate_spec
from .optional import optional_import

DEFAULT_FRAME_CONFIG = {
    "backbone": None,
    "backbone_input": "image",
    "decode_fps": 16.0,
    "clip_seconds": 1.0,
    "max_clips": 100,
    "shortest_edge": 224,
    "crop_size": 224,
    "colour_order": "RGB",
    "rescale_factor": 1.0 / 255.0,
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "batch_size": 32,
}


@dataclass
class FrameRecord:
    """The clip features of one video: (num_clips, D) float32, with the clip length and video duration."""

    video_id: str
    features: np.ndarray
    clip_seconds: float | None = None
    duration: float | None = None


def read_frame_features(path: str | os.PathLike, key: str | None = None, feature_size: int | None = None) -> FrameRecord:
    """Read one video's precomputed (num_clips, D) features from ``.npy`` or ``.npz`` (no pickle)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"frame feature file not found: {path}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise ValueError(f"{path}: cannot read without unpickling ({error}); refusing to unpickle") from error
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: not a readable .npy/.npz file ({error})") from error
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            names = loaded.files
            if key is None:
                key = "features" if "features" in names else (names[0] if len(names) == 1 else None)
            if key is None or key not in names:
                raise ValueError(f"{path}: cannot tell which array holds the features (keys {names}); pass key=")
            try:
                features = loaded[key]
            except ValueError as error:
                raise ValueError(f"{path}: array {key!r} needs pickle; refusing to unpickle") from error
    else:
        features = loaded
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"{path}: features must have shape (num_clips >= 1, D), got {features.shape}")
    if not np.issubdtype(features.dtype, np.floating) or not np.isfinite(features).all():
        raise ValueError(f"{path}: features must be finite floating point values, got dtype {features.dtype}")
    if feature_size is not None and features.shape[1] != feature_size:
        raise ValueError(f"{path}: feature size {features.shape[1]} differs from the expected {feature_size}")
    return FrameRecord(video_id=path.stem, features=features.astype(np.float32))


def decode_video(
    path: str | os.PathLike, fps: float, max_frames: int | None = None
) -> tuple[list[Image.Image], float]:
    """Decode ``path`` at ``fps`` frames per second (most recent frame at each instant); return frames, duration."""
    av = optional_import("av")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video file not found: {path}")
    if fps <= 0:
        raise ValueError(f"decode fps must be positive, got {fps}")
    frames: list[Image.Image] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path}: no video stream")
            stream = container.streams.video[0]
            known_duration = None
            if stream.duration is not None and stream.time_base is not None:
                known_duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                known_duration = container.duration / av.time_base
            previous = None
            previous_time = 0.0
            for frame in container.decode(stream):
                time = float(frame.time) if frame.time is not None else previous_time
                while previous is not None and len(frames) / fps < time - 1e-6:
                    frames.append(previous)
                    if max_frames is not None and len(frames) >= max_frames:
                        return frames, known_duration or time
                previous = frame.to_image()
                previous_time = time
            if previous is None:
                raise ValueError(f"{path}: the video stream has no decodable frames")
            rate = float(stream.average_rate) if stream.average_rate else fps
            end = previous_time + 1.0 / rate
            while len(frames) / fps < end - 1e-6 and (max_frames is None or len(frames) < max_frames):
                frames.append(previous)
    except av.FFmpegError as error:
        raise ValueError(f"{path}: cannot decode video ({error})") from error
    return frames, known_duration or end


class FrameFeaturizer:
    """Turn video files into :class:`FrameRecord` objects with a transformers image or video backbone."""

    def __init__(
        self,
        config: dict | None = None,
        backbone: torch.nn.Module | None = None,
        base_path: str | os.PathLike | None = None,
        hub_kwargs: dict | None = None,
    ) -> None:
        settings = dict(DEFAULT_FRAME_CONFIG)
        unknown = sorted(set(config or {}) - set(settings))
        if unknown:
            raise ValueError(f"frame featurizer config: unknown keys {unknown}; expected a subset of {sorted(settings)}")
        settings.update(config or {})
        settings["backbone"] = validate_spec(settings["backbone"], "backbone")
        if backbone is not None:
            settings["backbone"] = settings["backbone"] or {"source": "memory"}
        if settings["backbone_input"] not in ("image", "video"):
            raise ValueError(f"backbone_input must be 'image' or 'video', got {settings['backbone_input']!r}")
        if settings["colour_order"] not in ("RGB", "BGR"):
            raise ValueError(f"colour_order must be 'RGB' or 'BGR', got {settings['colour_order']!r}")
        frames_per_clip = settings["decode_fps"] * settings["clip_seconds"]
        if settings["decode_fps"] <= 0 or settings["clip_seconds"] <= 0 or abs(frames_per_clip - round(frames_per_clip)) > 1e-6:
            raise ValueError(
                f"decode_fps * clip_seconds must be a positive whole number of frames, got "
                f"{settings['decode_fps']} * {settings['clip_seconds']} = {frames_per_clip}"
            )
        if int(settings["max_clips"]) <= 0:
            raise ValueError(f"max_clips must be positive, got {settings['max_clips']}")
        self.config = settings
        self.base_path = base_path
        self.hub_kwargs = dict(hub_kwargs or {})
        self.device = torch.device("cpu")
        self._backbone = backbone.eval() if backbone is not None else None

    @classmethod
    def from_model(cls, backbone: torch.nn.Module, **settings) -> FrameFeaturizer:
        """Featurizer over a model object; it is saved with the processor as safetensors."""
        return cls(settings, backbone=backbone)

    @classmethod
    def from_pretrained_model(cls, backbone: str, revision: str | None = None, **settings) -> FrameFeaturizer:
        """Featurizer over published weights, loaded by name on first use."""
        settings["backbone"] = hub_spec(backbone, revision)
        return cls(settings)

    def __deepcopy__(self, memo: dict) -> FrameFeaturizer:
        duplicate = type(self)(copy.deepcopy(self.config, memo), self._backbone, self.base_path, self.hub_kwargs)
        duplicate.device = self.device
        return duplicate

    def to(self, device: str | torch.device) -> FrameFeaturizer:
        """Run the backbone on ``device`` (results always come back as CPU numpy arrays)."""
        self.device = torch.device(device)
        if self._backbone is not None:
            self._backbone.to(self.device)
        return self

    def to_dict(self) -> dict:
        """The JSON settings (provenance) of this featurizer."""
        return copy.deepcopy(self.config)

    def save_models(self, folder: str | os.PathLike) -> dict:
        """Save a backbone without Hub weights under ``folder``; return the config pointing at it."""
        config = self.to_dict()
        if config["backbone"] is not None and config["backbone"]["source"] != "hub":
            config["backbone"] = save_model(self.backbone, folder, "frame_backbone")
        return config

    @property
    def frames_per_clip(self) -> int:
        """Decoded frames per clip (``decode_fps * clip_seconds``)."""
        return round(self.config["decode_fps"] * self.config["clip_seconds"])

    @property
    def backbone(self) -> torch.nn.Module:
        """The frame or clip backbone (loaded on first access)."""
        if self._backbone is None:
            if self.config["backbone"] is None:
                raise ValueError("the frame featurizer has no backbone; set 'backbone' in its config or use from_model")
            self._backbone = load_model(self.config["backbone"], "AutoModel", self.base_path, self.hub_kwargs).to(self.device)
        return self._backbone

    def pixel_values(self, frames: list[Image.Image]) -> torch.Tensor:
        """Resize the short side, centre-crop, reorder channels and normalise frames to (T, 3, S, S)."""
        edge, crop = self.config["shortest_edge"], self.config["crop_size"]
        tensors = []
        for frame in frames:
            width, height = frame.size
            scale = edge / min(width, height)
            resized = frame.convert("RGB").resize((max(crop, round(width * scale)), max(crop, round(height * scale))), Image.BILINEAR)
            left, top = (resized.width - crop) // 2, (resized.height - crop) // 2
            cropped = resized.crop((left, top, left + crop, top + crop))
            tensors.append(torch.from_numpy(np.asarray(cropped, dtype=np.float32).copy()).permute(2, 0, 1))
        pixels = torch.stack(tensors)
        if self.config["colour_order"] == "BGR":
            pixels = pixels.flip(1)
        mean = torch.tensor(self.config["image_mean"], dtype=torch.float32)[None, :, None, None]
        std = torch.tensor(self.config["image_std"], dtype=torch.float32)[None, :, None, None]
        return (pixels * self.config["rescale_factor"] - mean) / std

    @staticmethod
    def _pool(outputs) -> torch.Tensor:
        pooled = getattr(outputs, "pooler_output", None)
        if pooled is not None:
            return pooled.flatten(1)
        hidden = outputs.last_hidden_state
        return hidden.mean(dim=(2, 3)) if hidden.ndim == 4 else hidden.mean(dim=1)

    @torch.inference_mode()
    def clip_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(num_clips, D) features from (T, 3, S, S) frames decoded at ``decode_fps``."""
        per_clip = self.frames_per_clip
        num_clips = math.ceil(len(pixel_values) / per_clip)
        backbone = self.backbone
        if self.config["backbone_input"] == "image":
            frame_features = torch.cat(
                [
                    self._pool(backbone(pixel_values=batch.to(self.device))).float().cpu()
                    for batch in pixel_values.split(self.config["batch_size"])
                ]
            )
            return torch.stack([chunk.mean(dim=0) for chunk in frame_features.split(per_clip)])
        frames_per_input = int(getattr(backbone.config, "num_frames", per_clip))
        clips = []
        for index in range(num_clips):
            chunk = pixel_values[index * per_clip : (index + 1) * per_clip]
            if len(chunk) < per_clip:
                chunk = torch.cat([chunk, chunk[-1:].expand(per_clip - len(chunk), -1, -1, -1)])
            picks = torch.from_numpy(np.linspace(0, per_clip - 1, frames_per_input).round().astype(np.int64))
            clips.append(self._pool(backbone(pixel_values=chunk[picks][None].to(self.device))).float()[0].cpu())
        return torch.stack(clips)

    def featurize_video(self, path: str | os.PathLike, video_id: str | None = None) -> FrameRecord:
        """Clip features of one video file (at most ``max_clips`` clips from its start)."""
        max_frames = int(self.config["max_clips"]) * self.frames_per_clip
        frames, duration = decode_video(path, self.config["decode_fps"], max_frames)
        features = self.clip_features(self.pixel_values(frames))
        return FrameRecord(
            video_id=video_id if video_id is not None else Path(path).stem,
            features=features.numpy().astype(np.float32),
            clip_seconds=float(self.config["clip_seconds"]),
            duration=float(duration),
        )

    def __call__(self, videos: list[str | os.PathLike], video_ids: list[str] | None = None) -> list[FrameRecord]:
        """Clip features of each video file."""
        if video_ids is not None and len(video_ids) != len(videos):
            raise ValueError(f"video_ids has {len(video_ids)} entries for {len(videos)} videos")
        return [self.featurize_video(video, None if video_ids is None else video_ids[index]) for index, video in enumerate(videos)]
