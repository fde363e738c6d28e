"""Region features from images, in process: detector boxes + RoIAlign over a backbone feature map.

Boxes come from any transformers ``AutoModelForObjectDetection`` (DETR-style outputs ``logits`` and
``pred_boxes``) or from the caller; features are RoIAlign (plain torch, bilinear sampling, ``aligned=True``
semantics as in torchvision / detectron2) over one ``AutoBackbone`` feature map, averaged to one vector per
region. The detector's full class distribution per kept box is returned as the region-classification target.
Boxes are chosen by class-agnostic NMS (plain torch), then either a fixed number (36, as LXMERT's
``obj36``) or 10-100 by confidence (the adaptive sets of bottom-up attention). VL-BERT's masked-RoI rule is
available: the pixels of chosen regions are zeroed (in normalised pixel space) before the backbone runs.

With the bottom-up-attention detector (``model_type`` "bottom_up_attention", converted with ``vlpretrain convert
--from frcnn-vg | bua-caffe``) and no backbone, the detector does everything as the released extractors did: its
own preprocessing (BGR, 600 / 1000 resize), proposals, RoI pooling and res5 head; region features are its 2048-d
pooled res5 features and boxes, classes, attributes and the region count follow its ``box_selection`` rules
(``num_regions``, ``min_regions``, ``max_regions``, thresholds and the image settings here do not apply).

Images are processed one at a time, so a region's features never depend on the other images of a batch
(batched padding was the cause of the LXMERT demo's feature mismatch, huggingface/transformers#8769).
Every setting that changes the features (models, thresholds, colour order, image size, normalisation, RoI
geometry) lives in a JSON-able config recorded with the processor as provenance.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..utils.roi import roi_align
from .bottom_up_attention import BottomUpAttentionImageProcessor
from .featurizer_models import hub_spec, load_model, save_model, validate_spec
from .provenance import provenance_from_config
from .readers import RegionRecord, normalize_boxes

DEFAULT_REGION_CONFIG = {
    "detector": None,
    "backbone": None,
    "feature_map_index": -1,
    "num_regions": 36,
    "min_regions": 10,
    "max_regions": 100,
    "confidence_threshold": 0.2,
    "nms_threshold": 0.3,
    "shortest_edge": 600,
    "longest_edge": 1000,
    "colour_order": "RGB",
    "rescale_factor": 1.0 / 255.0,
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "roi_output_size": 7,
    "roi_sampling_ratio": 2,
    "roi_aligned": True,
    "box_selection": None,
}

ImageInput = Image.Image | np.ndarray | str | os.PathLike
# The short side an image must keep after resizing: below one stride-16 patch, backbones and detectors fail
# inside their first convolution (a 1x3000 image resizes to 1 pixel high).
MIN_RESIZED_EDGE = 16
BOTTOM_UP_MODEL_TYPE = "bottom_up_attention"
BOTTOM_UP_BOX_SELECTIONS = ("bottom-up", "transformers-demo")


def box_iou(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of two sets of (x1, y1, x2, y2) boxes."""
    area_a = (boxes_a[:, 2] - boxes_a[:, 0]).clamp(min=0) * (boxes_a[:, 3] - boxes_a[:, 1]).clamp(min=0)
    area_b = (boxes_b[:, 2] - boxes_b[:, 0]).clamp(min=0) * (boxes_b[:, 3] - boxes_b[:, 1]).clamp(min=0)
    top_left = torch.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = torch.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    intersection = (bottom_right - top_left).clamp(min=0).prod(dim=-1)
    union = area_a[:, None] + area_b[None, :] - intersection
    return torch.where(union > 0, intersection / union.clamp(min=1e-12), torch.zeros_like(union))


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression; returns kept indices by decreasing score (ties keep input order)."""
    if boxes.ndim != 2 or boxes.shape[-1] != 4 or scores.shape != boxes.shape[:1]:
        raise ValueError(f"nms: expected boxes (N, 4) and scores (N,), got {tuple(boxes.shape)} and {tuple(scores.shape)}")
    order = torch.argsort(scores, descending=True, stable=True)
    overlaps = box_iou(boxes[order], boxes[order]) > iou_threshold
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for position in range(len(order)):
        if suppressed[position]:
            continue
        keep.append(position)
        suppressed |= overlaps[position]
    return order[torch.tensor(keep, dtype=torch.long)]


def load_image(image: ImageInput, where: str) -> Image.Image:
    """Open an image (path, PIL image or HxWx3 uint8 array) as RGB; raise ``ValueError`` naming bad input."""
    picture = _open_image(image, where)
    if min(picture.size) < 1:
        raise ValueError(f"{where}: the image is empty ({picture.size[0]}x{picture.size[1]} pixels)")
    return picture


def _open_image(image: ImageInput, where: str) -> Image.Image:
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"{where}: image file not found: {path}")
        try:
            with Image.open(path) as opened:
                opened.load()
                return opened.convert("RGB")
        except (UnidentifiedImageError, OSError, SyntaxError) as error:
            raise ValueError(f"{where}: cannot decode image file {path} ({error})") from error
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"{where}: an array image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        return Image.fromarray(image)
    raise ValueError(f"{where}: expected an image path, PIL image or (H, W, 3) uint8 array, got {type(image).__name__}")


class RegionFeaturizer:
    """Turn images into :class:`RegionRecord` objects with a detector and a backbone.

    Build it with :meth:`from_models` (model objects, e.g. tiny random ones or your own trained detector) or
    :meth:`from_pretrained_models` (Hub names); settings are plain JSON (``to_dict``) so a processor can save
    them. Models described by a spec are loaded on first use.
    """

    def __init__(
        self,
        config: dict | None = None,
        detector: torch.nn.Module | None = None,
        backbone: torch.nn.Module | None = None,
        base_path: str | os.PathLike | None = None,
        hub_kwargs: dict | None = None,
    ) -> None:
        settings = dict(DEFAULT_REGION_CONFIG)
        unknown = sorted(set(config or {}) - set(settings))
        if unknown:
            raise ValueError(f"region featurizer config: unknown keys {unknown}; expected a subset of {sorted(settings)}")
        settings.update(config or {})
        settings["detector"] = validate_spec(settings["detector"], "detector")
        settings["backbone"] = validate_spec(settings["backbone"], "backbone")
        if detector is not None:
            settings["detector"] = settings["detector"] or {"source": "memory"}
        if backbone is not None:
            settings["backbone"] = settings["backbone"] or {"source": "memory"}
        self._check_settings(settings)
        self.config = settings
        self.base_path = base_path
        self.hub_kwargs = dict(hub_kwargs or {})
        self.device = torch.device("cpu")
        self._detector = detector.eval() if detector is not None else None
        self._backbone = backbone.eval() if backbone is not None else None
        self._bottom_up_processor: BottomUpAttentionImageProcessor | None = None

    @staticmethod
    def _check_settings(settings: dict) -> None:
        if settings["num_regions"] is not None and int(settings["num_regions"]) <= 0:
            raise ValueError(f"num_regions must be positive or None (adaptive), got {settings['num_regions']}")
        if not 0 < settings["min_regions"] <= settings["max_regions"]:
            raise ValueError(f"need 0 < min_regions <= max_regions, got {settings['min_regions']}, {settings['max_regions']}")
        if settings["colour_order"] not in ("RGB", "BGR"):
            raise ValueError(f"colour_order must be 'RGB' or 'BGR', got {settings['colour_order']!r}")
        for name in ("image_mean", "image_std"):
            if len(settings[name]) != 3:
                raise ValueError(f"{name} must have 3 values (one per channel), got {settings[name]}")
        if not 0.0 <= settings["nms_threshold"] <= 1.0:
            raise ValueError(f"nms_threshold must be in [0, 1], got {settings['nms_threshold']}")
        if settings["box_selection"] not in (None, *BOTTOM_UP_BOX_SELECTIONS):
            raise ValueError(f"box_selection must be None or one of {BOTTOM_UP_BOX_SELECTIONS}, got {settings['box_selection']!r}")

    @classmethod
    def from_models(
        cls, backbone: torch.nn.Module, detector: torch.nn.Module | None = None, **settings
    ) -> RegionFeaturizer:
        """Featurizer over model objects; they are saved with the processor as safetensors."""
        return cls(settings, detector=detector, backbone=backbone)

    @classmethod
    def from_pretrained_models(
        cls, backbone: str | None = None, detector: str | None = None, revision: str | None = None, **settings
    ) -> RegionFeaturizer:
        """Featurizer over published weights, loaded by name (Hub id or local folder) on first use.

        Without a backbone the detector must be the bottom-up-attention detector, whose own res5 features are the
        region features; ``box_selection`` ("bottom-up" or "transformers-demo") then overrides its config's rules.
        """
        if backbone is None and detector is None:
            raise ValueError("from_pretrained_models needs a backbone, a bottom-up-attention detector, or both")
        settings["backbone"] = hub_spec(backbone, revision) if backbone else None
        settings["detector"] = hub_spec(detector, revision) if detector else None
        return cls(settings)

    def __deepcopy__(self, memo: dict) -> RegionFeaturizer:
        # Models are read-only after loading: copies share them instead of duplicating weights.
        duplicate = type(self)(copy.deepcopy(self.config, memo), self._detector, self._backbone, self.base_path, self.hub_kwargs)
        duplicate.device = self.device
        return duplicate

    def to(self, device: str | torch.device) -> RegionFeaturizer:
        """Run the models on ``device`` (results always come back as CPU numpy arrays)."""
        self.device = torch.device(device)
        for model in (self._detector, self._backbone):
            if model is not None:
                model.to(self.device)
        return self

    def to_dict(self) -> dict:
        """The JSON settings (provenance) of this featurizer."""
        return copy.deepcopy(self.config)

    def save_models(self, folder: str | os.PathLike) -> dict:
        """Save models without Hub weights under ``folder``; return the config pointing at them."""
        config = self.to_dict()
        for key, subfolder in (("detector", "region_detector"), ("backbone", "region_backbone")):
            spec = config[key]
            if spec is None or spec["source"] == "hub":
                continue
            model = self.detector if key == "detector" else self.backbone
            config[key] = save_model(model, folder, subfolder)
            if key == "detector" and self.uses_bottom_up_detector:
                self.bottom_up_image_processor.save_pretrained(Path(folder) / subfolder)
        return config

    @property
    def detector(self) -> torch.nn.Module | None:
        """The detection model (loaded on first access), or None when boxes must be given."""
        if self._detector is None and self.config["detector"] is not None:
            self._detector = load_model(self.config["detector"], "AutoModelForObjectDetection", self.base_path, self.hub_kwargs).to(self.device)
        return self._detector

    @property
    def backbone(self) -> torch.nn.Module:
        """The backbone whose feature map is pooled (loaded on first access)."""
        if self._backbone is None:
            if self.config["backbone"] is None:
                raise ValueError("the region featurizer has no backbone; set 'backbone' in its config or use from_models")
            self._backbone = load_model(self.config["backbone"], "AutoBackbone", self.base_path, self.hub_kwargs).to(self.device)
        return self._backbone

    # ------------------------------------------------------------------ bottom-up attention

    @property
    def uses_bottom_up_detector(self) -> bool:
        """True when the bottom-up-attention detector alone (no backbone) produces the regions."""
        if self.config["backbone"] is not None or self.config["detector"] is None:
            return False
        return getattr(self.detector.config, "model_type", None) == BOTTOM_UP_MODEL_TYPE

    def _box_selection(self) -> str:
        return self.config["box_selection"] or self.detector.config.box_selection

    @property
    def bottom_up_image_processor(self) -> BottomUpAttentionImageProcessor:
        """The detector's image processor (its folder's ``preprocessor_config.json`` when there is one), with the
        resize rule of the box selection in use."""
        if self._bottom_up_processor is None:
            spec = self.config["detector"]
            folder = spec.get("local_path")
            if spec["source"] == "saved" and self.base_path is not None:
                folder = Path(self.base_path) / spec["subfolder"]
            if folder and (Path(folder) / "preprocessor_config.json").is_file():
                processor = BottomUpAttentionImageProcessor.from_pretrained(folder)
            else:
                processor = BottomUpAttentionImageProcessor()
            self._bottom_up_processor = processor
        self._bottom_up_processor.resize_rule = "opencv" if self._box_selection() == "bottom-up" else "torch"
        return self._bottom_up_processor

    def _featurize_bottom_up(self, picture: Image.Image, image_id: str, where: str) -> RegionRecord:
        inputs = self.bottom_up_image_processor.preprocess([picture], where=where)
        outputs = self.detector(**{key: value.to(self.device) for key, value in inputs.items()}, box_selection=self._box_selection())
        count = int(outputs.num_boxes[0])

        def array(name: str, dtype: type) -> np.ndarray:
            return getattr(outputs, name)[0, :count].cpu().numpy().astype(dtype)

        height, width = inputs["original_sizes"][0].tolist()
        return RegionRecord(
            image_id=image_id,
            image_height=height,
            image_width=width,
            boxes=array("normalized_boxes", np.float32),
            features=array("features", np.float32),
            object_ids=array("object_ids", np.int64),
            object_confidences=array("object_confidences", np.float32),
            attribute_ids=array("attribute_ids", np.int64),
            attribute_confidences=array("attribute_confidences", np.float32),
            class_probabilities=array("class_probabilities", np.float32),
        )

    def fixed_num_regions(self) -> int | None:
        """The fixed region count of every image (None: it varies or boxes come from the caller)."""
        if self.uses_bottom_up_detector:
            detector_config = self.detector.config
            return detector_config.max_boxes if detector_config.min_boxes == detector_config.max_boxes else None
        return self.config["num_regions"] if self.config["detector"] else None

    def provenance(self) -> dict:
        """The shared provenance record (``processing.provenance``: extractor, weights and their SHA-256, settings);
        with the bottom-up-attention detector its test-time settings, box-selection rule and image processor join
        the settings."""
        record = provenance_from_config("regions", self.to_dict())
        if self.uses_bottom_up_detector:
            record["extractor"] = BOTTOM_UP_MODEL_TYPE
            record["settings"].update(
                self.detector.extractor_settings(),
                box_selection=self._box_selection(),
                image_processor=self.bottom_up_image_processor.to_dict(),
            )
        return record

    # ------------------------------------------------------------------ preprocessing

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after scaling the short side to ``shortest_edge`` with the long side capped."""
        scale = self.config["shortest_edge"] / min(width, height)
        if max(width, height) * scale > self.config["longest_edge"]:
            scale = self.config["longest_edge"] / max(width, height)
        return max(1, round(width * scale)), max(1, round(height * scale))

    def _check_resized_size(self, image: Image.Image, where: str) -> tuple[int, int]:
        """The resized (width, height) of ``image``; ``ValueError`` when a side ends below ``MIN_RESIZED_EDGE``."""
        size = self.resized_size(*image.size)
        if min(size) < MIN_RESIZED_EDGE:
            raise ValueError(
                f"{where}: the image of width {image.size[0]} and height {image.size[1]} resizes to {size[0]}x{size[1]} "
                f"pixels (shortest_edge {self.config['shortest_edge']}, longest_edge {self.config['longest_edge']}); both "
                f"sides must keep at least {MIN_RESIZED_EDGE} pixels, so crop or pad images this narrow"
            )
        return size

    def pixel_values(self, image: Image.Image, where: str = "image") -> torch.Tensor:
        """Resize, reorder channels and normalise one RGB image to a (1, 3, H, W) float tensor; an image whose short
        side would end below ``MIN_RESIZED_EDGE`` pixels (an extreme aspect ratio) raises ``ValueError``."""
        resized = image.resize(self._check_resized_size(image, where), Image.BILINEAR)
        pixels = torch.from_numpy(np.asarray(resized, dtype=np.float32).copy()).permute(2, 0, 1)
        if self.config["colour_order"] == "BGR":
            pixels = pixels.flip(0)
        pixels = pixels * self.config["rescale_factor"]
        mean = torch.tensor(self.config["image_mean"], dtype=torch.float32)[:, None, None]
        std = torch.tensor(self.config["image_std"], dtype=torch.float32)[:, None, None]
        return ((pixels - mean) / std)[None]

    # ------------------------------------------------------------------ detection

    def detect(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the detector; return normalised boxes (Q, 4), scores, labels and class distributions (Q, K)."""
        detector = self.detector
        if detector is None:
            raise ValueError("no detector configured: pass boxes, or build the featurizer with a detector")
        outputs = detector(pixel_values=pixel_values.to(self.device))
        if getattr(outputs, "logits", None) is None or getattr(outputs, "pred_boxes", None) is None:
            raise ValueError(
                f"{type(detector).__name__} does not return DETR-style 'logits' and 'pred_boxes'; "
                "use a DETR-family AutoModelForObjectDetection or pass boxes"
            )
        logits, pred_boxes = outputs.logits[0].float().cpu(), outputs.pred_boxes[0].float().cpu()
        num_labels = detector.config.num_labels
        if logits.shape[-1] == num_labels + 1:
            distribution = logits.softmax(-1)
            class_scores = distribution[:, :num_labels]
        elif logits.shape[-1] == num_labels:
            distribution = logits.sigmoid()
            class_scores = distribution
        else:
            raise ValueError(f"detector logits have {logits.shape[-1]} classes; expected num_labels ({num_labels}) or num_labels + 1")
        scores, labels = class_scores.max(dim=-1)
        centre, size = pred_boxes[:, :2], pred_boxes[:, 2:]
        boxes = torch.cat([centre - size / 2, centre + size / 2], dim=-1).clamp(0.0, 1.0)
        return boxes, scores, labels, distribution

    def select(self, boxes: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Indices of the kept boxes: NMS, then a fixed count or ``min_regions``..``max_regions`` by confidence."""
        kept = nms(boxes, scores, self.config["nms_threshold"])
        fixed = self.config["num_regions"]
        if fixed is not None:
            count = int(fixed)
        else:
            confident = int((scores[kept] >= self.config["confidence_threshold"]).sum())
            count = min(max(confident, self.config["min_regions"]), self.config["max_regions"])
        if count > len(scores):
            raise ValueError(f"the detector proposes {len(scores)} boxes, fewer than the {count} regions required")
        if len(kept) < count:
            # Too few boxes survive NMS: fill up with the best suppressed ones, as fixed-size sets need.
            suppressed = torch.ones(len(scores), dtype=torch.bool)
            suppressed[kept] = False
            candidates = torch.nonzero(suppressed).flatten()
            candidates = candidates[torch.argsort(scores[candidates], descending=True, stable=True)]
            kept = torch.cat([kept, candidates[: count - len(kept)]])
        return kept[:count]

    # ------------------------------------------------------------------ features

    @torch.inference_mode()
    def featurize_image(
        self,
        image: ImageInput,
        image_id: str | None = None,
        boxes: np.ndarray | None = None,
        masked_regions: Sequence[int] | None = None,
        where: str = "image",
    ) -> RegionRecord:
        """Regions of one image; ``boxes`` are pixel (x1, y1, x2, y2) boxes of the original image."""
        if image_id is None:
            image_id = Path(image).stem if isinstance(image, (str, os.PathLike)) else where
        masked = [] if masked_regions is None else list(masked_regions)
        known_count = len(boxes) if boxes is not None else self.config["num_regions"]
        if any(not isinstance(index, (int, np.integer)) or index < 0 or (known_count and index >= known_count) for index in masked):
            raise ValueError(f"{where}: masked_regions {masked} must index the {known_count or 'detected'} regions")
        picture = load_image(image, where)
        if self.uses_bottom_up_detector:
            if boxes is not None or masked:
                raise ValueError(f"{where}: boxes and masked_regions are not supported with the bottom-up-attention detector")
            return self._featurize_bottom_up(picture, str(image_id), where)
        width, height = picture.size
        pixel_values = self.pixel_values(picture, where)
        object_ids = object_confidences = probabilities = None
        if boxes is not None:
            normalised = torch.from_numpy(normalize_boxes(boxes, width, height, where=f"{where}: boxes"))
            if len(normalised) == 0:
                raise ValueError(f"{where}: boxes is empty; give at least one box")
        else:
            candidate_boxes, scores, labels, distribution = self.detect(pixel_values)
            kept = self.select(candidate_boxes, scores)
            normalised = candidate_boxes[kept]
            object_ids, object_confidences = labels[kept].numpy(), scores[kept].numpy()
            probabilities = distribution[kept].numpy()
        input_height, input_width = pixel_values.shape[-2:]
        input_boxes = normalised * torch.tensor([input_width, input_height, input_width, input_height], dtype=torch.float32)
        if masked:
            if any(index >= len(input_boxes) for index in masked):
                raise ValueError(f"{where}: masked_regions {masked} must index the {len(input_boxes)} regions")
            pixel_values = pixel_values.clone()
            for index in masked:
                x1, y1, x2, y2 = input_boxes[index].tolist()
                pixel_values[..., math.floor(y1) : math.ceil(y2), math.floor(x1) : math.ceil(x2)] = 0.0
        feature_maps = self.backbone(pixel_values=pixel_values.to(self.device)).feature_maps
        feature_map = feature_maps[self.config["feature_map_index"]][0].float()
        scale = (feature_map.shape[-1] / input_width, feature_map.shape[-2] / input_height)
        pooled = roi_align(
            feature_map,
            input_boxes,
            self.config["roi_output_size"],
            scale,
            self.config["roi_sampling_ratio"],
            self.config["roi_aligned"],
        ).mean(dim=(2, 3)).cpu()
        return RegionRecord(
            image_id=str(image_id),
            image_height=height,
            image_width=width,
            boxes=normalised.numpy().astype(np.float32),
            features=pooled.numpy().astype(np.float32),
            object_ids=object_ids,
            object_confidences=object_confidences,
            class_probabilities=probabilities,
        )

    def __call__(
        self,
        images: Sequence[ImageInput],
        image_ids: Sequence[str] | None = None,
        boxes: Sequence[np.ndarray | None] | None = None,
        masked_regions: Sequence[Sequence[int] | None] | None = None,
    ) -> list[RegionRecord]:
        """Regions of each image (one at a time, so results never depend on batch composition). Every image is
        opened and its size checked before any model runs, so a bad image fails the batch before compute."""
        count = len(images)
        for name, value in (("image_ids", image_ids), ("boxes", boxes), ("masked_regions", masked_regions)):
            if value is not None and len(value) != count:
                raise ValueError(f"{name} has {len(value)} entries for {count} images")
        places = [f"images[{index}]" + (f" ({image})" if isinstance(image, (str, os.PathLike)) else "") for index, image in enumerate(images)]
        pictures = [load_image(image, where) for image, where in zip(images, places)]
        for picture, where in zip(pictures, places):
            self._check_resized_size(picture, where)
        return [
            self.featurize_image(
                picture,
                image_id=(Path(image).stem if isinstance(image, (str, os.PathLike)) else str(index))
                if image_ids is None
                else image_ids[index],
                boxes=None if boxes is None else boxes[index],
                masked_regions=None if masked_regions is None else masked_regions[index],
                where=where,
            )
            for index, (image, picture, where) in enumerate(zip(images, pictures, places))
        ]
