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

``FRAME_PRESETS["univl-s3d"]`` are the settings UniVL's features were extracted with (ArrowLuo/VideoFeatureExtractor
``extract.py --type s3dg``, ``video_loader.py``, ``preprocessing.py``): 16 fps, short side 224 and a 224 x 224 centre
crop, pixels / 255 without mean or std, non-overlapping 16-frame clips (one per second) with the last one padded
by black frames, the 1024-d pooled ``mixed_5c`` of the MIL-NCE S3D, L2-normalised and rounded to float16. Use
them with the converted ``s3d_howto100m.pth`` (``vlpretrain convert --from s3d-howto100m``):
``FrameFeaturizer.from_pretrained_model(folder, preset="univl-s3d")``. The original resizes with ffmpeg's ``scale``
filter, which ffmpeg-python passes in a ``-filter_complex`` graph, where FFmpeg's default scaler was bilinear until
FFmpeg commit 9f14396 ("lavfi/vf_scale: use default swscale flags", bicubic since; the FFmpeg version UniVL's
authors used is not recorded). Here frames are resized with PIL (bilinear), so pixels differ slightly.
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
from .provenance import provenance_from_config

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
    "resample": "bilinear",
    "last_clip_padding": "repeat",
    "l2_normalize": False,
    "half_precision": False,
    "batch_size": 32,
}

FRAME_PRESETS: dict[str, dict] = {
    "univl-s3d": {
        "backbone_input": "video",
        "decode_fps": 16.0,
        "clip_seconds": 1.0,
        "shortest_edge": 224,
        "crop_size": 224,
        "colour_order": "RGB",
        "rescale_factor": 1.0 / 255.0,
        "image_mean": [0.0, 0.0, 0.0],
        "image_std": [1.0, 1.0, 1.0],
        "resample": "bilinear",
        "last_clip_padding": "zeros",
        "l2_normalize": True,
        "half_precision": True,
    },
}

# The extractor and released weights each preset was published with.
PRESET_EXTRACTORS: dict[str, tuple[str, str]] = {"univl-s3d": ("vlpretrain-s3d", "s3d_howto100m.pth")}


def preset_provenance(preset: str) -> dict:
    """The provenance of features published with a preset (what a model converted from its authors expects)."""
    if preset not in FRAME_PRESETS:
        raise ValueError(f"preset must be one of {sorted(FRAME_PRESETS)}, got {preset!r}")
    extractor, weights = PRESET_EXTRACTORS[preset]
    record = provenance_from_config("frames", {**DEFAULT_FRAME_CONFIG, **FRAME_PRESETS[preset], "backbone": None})
    return {**record, "extractor": extractor, "weights": {"backbone": {"source": "release", "name_or_path": weights}}}


_RESAMPLING = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


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
        if settings["resample"] not in _RESAMPLING:
            raise ValueError(f"resample must be one of {sorted(_RESAMPLING)}, got {settings['resample']!r}")
        if settings["last_clip_padding"] not in ("repeat", "zeros"):
            raise ValueError(f"last_clip_padding must be 'repeat' or 'zeros', got {settings['last_clip_padding']!r}")
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
    def from_pretrained_model(
        cls, backbone: str, revision: str | None = None, preset: str | None = None, **settings
    ) -> FrameFeaturizer:
        """Featurizer over published weights (a Hub name or a local folder), loaded on first use.

        ``preset`` starts from named settings (``FRAME_PRESETS``, e.g. ``"univl-s3d"``); ``settings`` override them.
        """
        if preset is not None and preset not in FRAME_PRESETS:
            raise ValueError(f"preset must be one of {sorted(FRAME_PRESETS)}, got {preset!r}")
        settings = {**FRAME_PRESETS.get(preset, {}), **settings, "backbone": hub_spec(backbone, revision)}
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
        """The JSON settings of this featurizer."""
        return copy.deepcopy(self.config)

    def provenance(self) -> dict:
        """Which extractor, weights and settings produce this featurizer's features (see :mod:`provenance`)."""
        return provenance_from_config("frames", self.config, {"backbone": self._backbone})

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
            size = (max(crop, round(width * scale)), max(crop, round(height * scale)))
            resized = frame.convert("RGB").resize(size, _RESAMPLING[self.config["resample"]])
            left, top = (resized.width - crop) // 2, (resized.height - crop) // 2
            cropped = resized.crop((left, top, left + crop, top + crop))
            tensors.append(torch.from_numpy(np.asarray(cropped, dtype=np.float32).copy()).permute(2, 0, 1))
        pixels = torch.stack(tensors)
        if self.config["colour_order"] == "BGR":
            pixels = pixels.flip(1)
        return self._normalise(pixels)

    def _normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """(T, 3, S, S) pixel values (0-255) rescaled, minus the mean, over the std."""
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

    def _padding_frame(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The frame that pads the last clip: its last frame (``repeat``) or a black frame, normalised (``zeros``)."""
        if self.config["last_clip_padding"] == "repeat":
            return pixel_values[-1:]
        return self._normalise(torch.zeros_like(pixel_values[-1:]))

    def _video_clips(self, pixel_values: torch.Tensor, frames_per_input: int) -> torch.Tensor:
        """(num_clips, frames_per_input, 3, S, S): non-overlapping clips, the last padded, sampled uniformly."""
        per_clip = self.frames_per_clip
        num_clips = math.ceil(len(pixel_values) / per_clip)
        missing = num_clips * per_clip - len(pixel_values)
        if missing:
            pixel_values = torch.cat([pixel_values, self._padding_frame(pixel_values).expand(missing, -1, -1, -1)])
        clips = pixel_values.view(num_clips, per_clip, *pixel_values.shape[1:])
        if frames_per_input == per_clip:
            return clips
        picks = torch.from_numpy(np.linspace(0, per_clip - 1, frames_per_input).round().astype(np.int64))
        return clips[:, picks]

    def _finish(self, features: torch.Tensor) -> torch.Tensor:
        """L2-normalise and round to float16 when the settings ask for it (UniVL's stored features are both)."""
        features = features.float()
        if self.config["l2_normalize"]:
            features = torch.nn.functional.normalize(features, dim=1)
        if self.config["half_precision"]:
            features = features.half().float()
        return features

    @torch.inference_mode()
    def clip_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(num_clips, D) features from (T, 3, S, S) frames decoded at ``decode_fps``.

        A video backbone gets ``config.num_frames`` frames of each clip (all of them when its config does not say),
        ``batch_size`` clips per call, in the layout it declares: ``video_input_layout = "channels_first"`` (S3D:
        (B, C, T, H, W) under its ``main_input_name``) or, by default, transformers' (B, T, C, H, W) ``pixel_values``.
        """
        per_clip = self.frames_per_clip
        backbone = self.backbone
        batch_size = self.config["batch_size"]
        if self.config["backbone_input"] == "image":
            frame_features = torch.cat(
                [self._pool(backbone(pixel_values=batch.to(self.device))).float().cpu() for batch in pixel_values.split(batch_size)]
            )
            return self._finish(torch.stack([chunk.mean(dim=0) for chunk in frame_features.split(per_clip)]))
        clips = self._video_clips(pixel_values, int(getattr(backbone.config, "num_frames", per_clip)))
        channels_first = getattr(backbone, "video_input_layout", None) == "channels_first"
        input_name = backbone.main_input_name if channels_first else "pixel_values"
        features = []
        for batch in clips.split(batch_size):
            batch = batch.transpose(1, 2) if channels_first else batch
            features.append(self._pool(backbone(**{input_name: batch.to(self.device)})).float().cpu())
        return self._finish(torch.cat(features))

    def featurize_video(self, path: str | os.PathLike, video_id: str | None = None) -> FrameRecord:
        """Clip features of one video file (at most ``max_clips`` clips from its start)."""
        max_frames = int(self.config["max_clips"]) * self.frames_per_clip
        frames, duration = decode_video(path, self.config["decode_fps"], max_frames)
        if len(frames) < self.frames_per_clip:
            raise ValueError(
                f"{path}: the video is shorter than one clip ({len(frames)} frames at {self.config['decode_fps']} fps, "
                f"{duration:.3f} s; one clip is {self.frames_per_clip} frames, {self.config['clip_seconds']} s)"
            )
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
