"""Video captioning pipeline for the package's models with a text-captioning head (UniVL's ``UnivlForCaptioning``).

Registered on ``import vlpretrain`` as the task ``vlpretrain-video-captioning``; exported captioning model folders
list it in ``config.json`` ``custom_pipelines`` under the same name, so ``pipeline(model=folder,
trust_remote_code=True)`` works without the package.

Calls::

    captioner("clip.mp4")                                   # -> [{"generated_text": "..."}]
    captioner({"frame_features": features})                 # precomputed (frames, D) clip features
    captioner([frame0, frame1, ...])                        # one video as a list of PIL frames (at decode_fps)
    captioner(["a.mp4", "b.mp4"], batch_size=8, num_beams=3, max_new_tokens=20)   # -> one list per video

Video files and PIL frames need a processor with a frame featurizer; ``.npy`` / ``.npz`` feature files and feature
dicts do not. Keyword arguments other than ``batch_size`` go to ``model.generate`` and must be
``GenerationConfig`` fields (``num_beams``, ``max_new_tokens``, ``num_return_sequences``, ...). A captioning head
is a model whose ``generate`` takes ``frame_features``; any other model is refused with its class name.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import torch
from PIL import Image
from transformers import GenerationConfig, Pipeline

from .inputs import check_processor_features, visual_processor_kwargs

# What the pipeline passes on to ``generate``: the GenerationConfig fields, less those that change what it returns.
_RETURN_FORMAT_ARGUMENTS = {"return_dict_in_generate", "output_scores", "output_logits", "output_attentions",
                            "output_hidden_states", "transformers_version"}
GENERATION_ARGUMENTS = frozenset(
    {name for name in vars(GenerationConfig()) if not name.startswith("_")} - _RETURN_FORMAT_ARGUMENTS
    | {"generation_config"}
)


def check_captioning_model(model) -> None:
    """Raise ``ValueError`` unless ``model`` generates text from frame features (has a captioning head)."""
    generate = getattr(model, "generate", None)
    if generate is None or "frame_features" not in inspect.signature(generate).parameters:
        raise ValueError(
            f"model: {type(model).__name__} has no video captioning head (its generate() does not take "
            "frame_features); use a captioning model such as UnivlForCaptioning"
        )


def _is_frame_list(item: Any) -> bool:
    return isinstance(item, (list, tuple)) and len(item) > 0 and all(isinstance(frame, Image.Image) for frame in item)


def _is_single_video(inputs: Any) -> bool:
    """A video file, a feature dict or one list of PIL frames (as opposed to a list of those)."""
    return isinstance(inputs, (str, os.PathLike, dict)) or _is_frame_list(inputs)


class VideoCaptioningPipeline(Pipeline):
    """Captions ``[{"generated_text"}]`` of videos, frame lists or precomputed clip features."""

    _load_processor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_video_processor = False
    required_model_methods = ("generate",)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        check_captioning_model(self.model)
        check_processor_features(self.model, self.processor)

    def __call__(self, inputs: Any = None, **kwargs) -> list:
        """Caption one video (returns a list of ``{"generated_text"}``) or a list of videos (one list each)."""
        batch_size = kwargs.pop("batch_size", None)
        batch_size = (self._batch_size or 8) if batch_size is None else batch_size
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
        if inputs is None:
            raise ValueError("inputs: expected a video file, a list of PIL frames, a frame-feature dict, or a list of them")
        single = _is_single_video(inputs)
        videos = [inputs] if single else inputs
        if not isinstance(videos, (list, tuple)) or len(videos) == 0:
            raise ValueError(f"inputs: expected a video or a non-empty list of videos, got {type(inputs).__name__}")
        for index, video in enumerate(videos):
            if not _is_single_video(video):
                raise ValueError(
                    f"inputs[{index}]: expected a video file, a list of PIL frames or a dict with frame_features, "
                    f"got {type(video).__name__}"
                )
            if _is_frame_list(video) and getattr(self.processor, "frame_featurizer", None) is None:
                raise ValueError(
                    f"inputs[{index}]: PIL frames need a processor with a frame featurizer; give frame_features instead"
                )
        results = []
        for start in range(0, len(videos), batch_size):
            results.extend(super().__call__(tuple(videos[start : start + batch_size]), **kwargs))
        return results[0] if single else results

    def _sanitize_parameters(self, **generate_kwargs):
        unknown = sorted(set(generate_kwargs) - GENERATION_ARGUMENTS)
        if unknown:
            raise ValueError(
                f"unexpected arguments {unknown}; this pipeline takes batch_size= and GenerationConfig fields "
                "(num_beams=, max_new_tokens=, ...)"
            )
        returned = generate_kwargs.get("num_return_sequences", 1)
        if not isinstance(returned, int) or returned < 1:
            raise ValueError(f"num_return_sequences: expected a positive integer, got {returned!r}")
        return {}, {"generate_kwargs": generate_kwargs}, {"num_return_sequences": returned}

    def _frame_features(self, frames: list[Image.Image]) -> dict[str, Any]:
        """A feature dict for a video given as PIL frames (at the featurizer's ``decode_fps``)."""
        featurizer = self.processor.frame_featurizer
        return {"frame_features": featurizer.clip_features(featurizer.pixel_values(list(frames))).numpy()}

    def preprocess(self, videos: tuple) -> dict[str, torch.Tensor]:
        items = [self._frame_features(video) if _is_frame_list(video) else video for video in videos]
        return dict(self.processor(**visual_processor_kwargs(self.processor, items, "inputs")))

    def _forward(self, model_inputs: dict[str, torch.Tensor], generate_kwargs: dict | None = None) -> dict[str, torch.Tensor]:
        return {"sequences": self.model.generate(**model_inputs, **(generate_kwargs or {}))}

    def postprocess(self, model_outputs: dict[str, torch.Tensor], num_return_sequences: int = 1) -> list[list[dict[str, str]]]:
        texts = self.processor.tokenizer.batch_decode(model_outputs["sequences"], skip_special_tokens=True)
        return [
            [{"generated_text": text.strip()} for text in texts[start : start + num_return_sequences]]
            for start in range(0, len(texts), num_return_sequences)
        ]
