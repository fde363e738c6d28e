"""Embedded default data: rendered shapes (images) and moving shapes (videos), generated offline and deterministically.

``shapes`` holds images of 1-4 coloured geometric objects with captions, question-answer pairs, ground-truth
boxes and object / colour / size labels; ``shapes-video`` holds short clips of one moving shape with captions,
timed subtitles and action labels. Both come with featurizers that need no pretrained weights (a small colour
thumbnail plus geometry), so a model trained on a CPU can learn colour, shape, size and motion from them.
Every item is drawn from a generator seeded by ``(seed, index)``, so a smaller dataset is a prefix of a larger one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
import numpy as np
from PIL import Image, ImageDraw

SHAPE_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
COLOR_NAMES: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "cyan")
SIZE_NAMES: tuple[str, ...] = ("small", "large")
ACTION_NAMES: tuple[str, ...] = ("moving left", "moving right", "moving up", "moving down", "growing", "shrinking")
COUNT_NAMES: tuple[str, ...] = ("1", "2", "3", "4")
ANSWER_NAMES: tuple[str, ...] = COLOR_NAMES + SHAPE_NAMES + SIZE_NAMES + COUNT_NAMES + ("yes", "no")
QUESTION_TYPES: tuple[str, ...] = ("attribute", "count", "exists")

_COLOR_RGB = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 80, 230),
    "yellow": (235, 215, 40),
    "purple": (150, 60, 200),
    "cyan": (40, 210, 220),
}
_BACKGROUND = (30, 30, 30)
_THUMBNAIL = 8
_DETECTOR_SMOOTHING = 0.15
_CAPTION_TEMPLATES = ("list", "count", "relation")
_ACTION_VERBS = ("moves left", "moves right", "moves up", "moves down", "grows", "shrinks")
_ACTION_SUBTITLES = (
    "it moves to the left",
    "it moves to the right",
    "it moves up",
    "it moves down",
    "it gets bigger",
    "it gets smaller",
)


def shapes_vocabularies() -> dict[str, list[str]]:
    """The label vocabularies of both datasets (index = label id)."""
    return {
        "objects": list(SHAPE_NAMES),
        "attributes": list(COLOR_NAMES),
        "colors": list(COLOR_NAMES),
        "sizes": list(SIZE_NAMES),
        "answers": list(ANSWER_NAMES),
        "actions": list(ACTION_NAMES),
        "question_types": list(QUESTION_TYPES),
    }


def _item_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(index)])


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: Sequence[float], color: tuple[int, int, int]) -> None:
    x1, y1, x2, y2 = box
    if shape == "circle":
        draw.ellipse([x1, y1, x2, y2], fill=color)
    elif shape == "square":
        draw.rectangle([x1, y1, x2, y2], fill=color)
    elif shape == "triangle":
        draw.polygon([((x1 + x2) / 2, y1), (x2, y2), (x1, y2)], fill=color)
    elif shape == "diamond":
        draw.polygon([((x1 + x2) / 2, y1), (x2, (y1 + y2) / 2), ((x1 + x2) / 2, y2), (x1, (y1 + y2) / 2)], fill=color)
    else:
        raise ValueError(f"shape must be one of {SHAPE_NAMES}, got {shape!r}")


def _object_phrase(obj: dict[str, Any], with_size: bool = True) -> str:
    size = f"{SIZE_NAMES[obj['size']]} " if with_size else ""
    return f"a {size}{COLOR_NAMES[obj['color']]} {SHAPE_NAMES[obj['shape']]}"


def _caption(objects: list[dict[str, Any]], template: str) -> str:
    phrases = [_object_phrase(obj) for obj in objects]
    listed = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    if template == "count":
        noun = "shape" if len(objects) == 1 else "shapes"
        return f"{len(objects)} {noun}: {listed}"
    if template == "relation":
        by_x = sorted(objects, key=lambda obj: obj["box"][0] + obj["box"][2])
        left, right = by_x[0], by_x[-1]
        if left["box"][2] < right["box"][0]:
            return f"{_object_phrase(left, False)} to the left of {_object_phrase(right, False)}"
    return listed


def _attribute_question(objects: list[dict[str, Any]], rng: np.random.Generator) -> tuple[str, str]:
    """A colour, shape or size question (kind drawn uniformly) about an object the question identifies uniquely."""

    def count(**attributes: int) -> int:
        return sum(all(obj[key] == value for key, value in attributes.items()) for obj in objects)

    kinds = {
        "color": [obj for obj in objects if count(shape=obj["shape"]) == 1],
        "shape": [obj for obj in objects if count(color=obj["color"]) == 1],
        "size": [obj for obj in objects if count(shape=obj["shape"], color=obj["color"]) == 1],
    }
    order = rng.permutation(list(kinds)).tolist()
    kind = next(name for name in order if kinds[name]) if any(kinds.values()) else None
    if kind is None:
        raise ValueError("cannot ask an unambiguous attribute question: objects repeat the same colour and shape")
    target = kinds[kind][int(rng.integers(len(kinds[kind])))]
    shape, color = SHAPE_NAMES[target["shape"]], COLOR_NAMES[target["color"]]
    if kind == "color":
        return f"what color is the {shape}?", color
    if kind == "shape":
        return f"what shape is the {color} object?", shape
    return f"what size is the {color} {shape}?", SIZE_NAMES[target["size"]]


def _exists_question(objects: list[dict[str, Any]], rng: np.random.Generator) -> tuple[str, str]:
    """A yes/no question with (about) balanced answers: half the time about something that is present."""
    present_shapes = {obj["shape"] for obj in objects}
    present_colors = {obj["color"] for obj in objects}
    ask_color = bool(rng.integers(2))
    names, present = (COLOR_NAMES, present_colors) if ask_color else (SHAPE_NAMES, present_shapes)
    absent = [i for i in range(len(names)) if i not in present]
    want_yes = bool(rng.integers(2)) or not absent
    choice = sorted(present)[int(rng.integers(len(present)))] if want_yes else absent[int(rng.integers(len(absent)))]
    question = f"is there a {names[choice]} object?" if ask_color else f"is there a {names[choice]}?"
    return question, "yes" if want_yes else "no"


def render_shapes_image(seed: int, index: int, image_size: int = 64) -> tuple[Image.Image, list[dict[str, Any]]]:
    """Render one image of 1-4 non-overlapping objects (one per image quadrant, no two with the same colour and
    shape, so every object can be named unambiguously); return it and its objects
    (``shape``, ``color``, ``size`` ids and the pixel ``box`` x1, y1, x2, y2)."""
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 pixels, got {image_size}")
    rng = _item_rng(seed, index)
    count = int(rng.integers(1, 5))
    cell = image_size // 2
    extents = (round(cell * 0.4), round(cell * 0.75))
    image = Image.new("RGB", (image_size, image_size), _BACKGROUND)
    draw = ImageDraw.Draw(image)
    objects = []
    kinds = rng.choice(len(SHAPE_NAMES) * len(COLOR_NAMES), size=count, replace=False).tolist()
    for quadrant, kind in zip(sorted(rng.choice(4, size=count, replace=False).tolist()), kinds):
        size = int(rng.integers(2))
        extent = extents[size]
        left = (quadrant % 2) * cell + int(rng.integers(1, cell - extent))
        top = (quadrant // 2) * cell + int(rng.integers(1, cell - extent))
        obj = {
            "shape": kind // len(COLOR_NAMES),
            "color": kind % len(COLOR_NAMES),
            "size": size,
            "box": [float(left), float(top), float(left + extent), float(top + extent)],
        }
        _draw_shape(draw, SHAPE_NAMES[obj["shape"]], obj["box"], _COLOR_RGB[COLOR_NAMES[obj["color"]]])
        objects.append(obj)
    return image, objects


def featurize_regions(image: Image.Image, boxes: Sequence[Sequence[float]]) -> np.ndarray:
    """Deterministic region features without pretrained weights: each box crop resized to an 8x8 RGB thumbnail
    (values in [0, 1], flattened) followed by the normalised box x1, y1, x2, y2 and its area; shape (R, 197)."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    width, height = image.size
    if len(boxes) and (boxes.min() < 0 or (boxes[:, [0, 2]] > width).any() or (boxes[:, [1, 3]] > height).any()):
        raise ValueError(f"boxes must lie inside the {width}x{height} image, got {boxes.tolist()}")
    rows = []
    for x1, y1, x2, y2 in boxes:
        crop = image.crop((int(x1), int(y1), max(int(np.ceil(x2)), int(x1) + 1), max(int(np.ceil(y2)), int(y1) + 1)))
        thumbnail = np.asarray(crop.convert("RGB").resize((_THUMBNAIL, _THUMBNAIL), Image.BILINEAR), np.float32) / 255.0
        geometry = [x1 / width, y1 / height, x2 / width, y2 / height, (x2 - x1) * (y2 - y1) / (width * height)]
        rows.append(np.concatenate([thumbnail.reshape(-1), np.asarray(geometry, np.float32)]))
    return np.stack(rows) if rows else np.zeros((0, 3 * _THUMBNAIL**2 + 5), np.float32)


def detector_distribution(labels: Sequence[int], num_classes: int) -> np.ndarray:
    """A soft "detector" class distribution per region: the true class gets most of the mass, the rest is spread
    uniformly (smoothing 0.15); shape (R, num_classes), rows sum to 1."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be class ids in [0, {num_classes}), got {labels.tolist()}")
    targets = np.full((len(labels), num_classes), _DETECTOR_SMOOTHING / num_classes, np.float32)
    targets[np.arange(len(labels)), labels] += 1.0 - _DETECTOR_SMOOTHING
    return targets


def _shapes_features(featurize: bool) -> datasets.Features:
    columns = {
        "image_id": datasets.Value("int64"),
        "image": datasets.Image(),
        "caption": datasets.Value("string"),
        "captions": datasets.Sequence(datasets.Value("string")),
        "questions": datasets.Sequence(datasets.Value("string")),
        "answers": datasets.Sequence(datasets.Value("string")),
        "answer_ids": datasets.Sequence(datasets.ClassLabel(names=list(ANSWER_NAMES))),
        "question_types": datasets.Sequence(datasets.ClassLabel(names=list(QUESTION_TYPES))),
        "boxes": datasets.Sequence(datasets.Sequence(datasets.Value("float32"), length=4)),
        "object_labels": datasets.Sequence(datasets.ClassLabel(names=list(SHAPE_NAMES))),
        "color_labels": datasets.Sequence(datasets.ClassLabel(names=list(COLOR_NAMES))),
        "size_labels": datasets.Sequence(datasets.ClassLabel(names=list(SIZE_NAMES))),
    }
    if featurize:
        columns.update(
            region_features=datasets.Array2D((None, 3 * _THUMBNAIL**2 + 5), "float32"),
            region_boxes=datasets.Array2D((None, 4), "float32"),
            region_class_targets=datasets.Array2D((None, len(SHAPE_NAMES)), "float32"),
            region_object_labels=datasets.Sequence(datasets.Value("int64")),
            region_object_confidences=datasets.Sequence(datasets.Value("float32")),
            region_attribute_labels=datasets.Sequence(datasets.Value("int64")),
            region_attribute_confidences=datasets.Sequence(datasets.Value("float32")),
        )
    return datasets.Features(columns)


def make_shapes_dataset(
    num_images: int = 2000, seed: int = 0, image_size: int = 64, featurize: bool = True
) -> datasets.Dataset:
    """Generate the ``shapes`` image dataset: one row per image with two captions, three questions (attribute,
    count, yes/no), pixel boxes and labels, and (``featurize``) the region feature columns the collators read."""
    if num_images < 1:
        raise ValueError(f"num_images must be at least 1, got {num_images}")
    rows: dict[str, list[Any]] = {name: [] for name in _shapes_features(featurize)}
    for index in range(num_images):
        image, objects = render_shapes_image(seed, index, image_size)
        rng = _item_rng(seed + 1, index)
        templates = rng.permutation(_CAPTION_TEMPLATES).tolist()
        captions = list(dict.fromkeys(_caption(objects, template) for template in templates))[:2]
        qa = [_attribute_question(objects, rng), ("how many shapes are there?", str(len(objects)))]
        qa.append(_exists_question(objects, rng))
        boxes = [obj["box"] for obj in objects]
        rows["image_id"].append(index)
        rows["image"].append(image)
        rows["caption"].append(captions[0])
        rows["captions"].append(captions)
        rows["questions"].append([question for question, _ in qa])
        rows["answers"].append([answer for _, answer in qa])
        rows["answer_ids"].append([ANSWER_NAMES.index(answer) for _, answer in qa])
        rows["question_types"].append(list(range(len(QUESTION_TYPES))))
        rows["boxes"].append(boxes)
        rows["object_labels"].append([obj["shape"] for obj in objects])
        rows["color_labels"].append([obj["color"] for obj in objects])
        rows["size_labels"].append([obj["size"] for obj in objects])
        if featurize:
            object_targets = detector_distribution(rows["object_labels"][-1], len(SHAPE_NAMES))
            color_targets = detector_distribution(rows["color_labels"][-1], len(COLOR_NAMES))
            rows["region_features"].append(featurize_regions(image, boxes))
            rows["region_boxes"].append(np.asarray(boxes, np.float32) / image_size)
            rows["region_class_targets"].append(object_targets)
            rows["region_object_labels"].append(rows["object_labels"][-1])
            rows["region_object_confidences"].append(object_targets.max(1).tolist())
            rows["region_attribute_labels"].append(rows["color_labels"][-1])
            rows["region_attribute_confidences"].append(color_targets.max(1).tolist())
    return datasets.Dataset.from_dict(rows, features=_shapes_features(featurize))


def render_shapes_clip(
    seed: int, index: int, num_frames: int = 8, frame_size: int = 32
) -> tuple[list[Image.Image], dict[str, Any]]:
    """Render one clip of a single shape performing one action; return its frames and its labels
    (``shape``, ``color``, ``action`` ids and the per-frame pixel ``boxes``)."""
    if num_frames < 2:
        raise ValueError(f"num_frames must be at least 2, got {num_frames}")
    if frame_size < 16:
        raise ValueError(f"frame_size must be at least 16 pixels, got {frame_size}")
    rng = _item_rng(seed, index)
    shape, color, action = (int(rng.integers(n)) for n in (len(SHAPE_NAMES), len(COLOR_NAMES), len(ACTION_NAMES)))
    progress = np.linspace(0.0, 1.0, num_frames)
    small, large = frame_size * 0.2, frame_size * 0.7
    if action < 4:
        extent = np.full(num_frames, frame_size * 0.3)
        travel = frame_size - extent[0] - 2
        along = 1 + travel * (progress if action in (1, 3) else 1 - progress)
        across = np.full(num_frames, 1 + rng.uniform(0, frame_size - extent[0] - 2))
        left, top = (along, across) if action < 2 else (across, along)
    else:
        extent = small + (large - small) * (progress if action == 4 else 1 - progress)
        center = rng.uniform(large / 2 + 1, frame_size - large / 2 - 1, size=2)
        left, top = center[0] - extent / 2, center[1] - extent / 2
    frames, boxes = [], []
    for step in range(num_frames):
        frame = Image.new("RGB", (frame_size, frame_size), _BACKGROUND)
        box = [float(left[step]), float(top[step]), float(left[step] + extent[step]), float(top[step] + extent[step])]
        _draw_shape(ImageDraw.Draw(frame), SHAPE_NAMES[shape], box, _COLOR_RGB[COLOR_NAMES[color]])
        frames.append(frame)
        boxes.append(box)
    return frames, {"shape": shape, "color": color, "action": action, "boxes": boxes}


def featurize_frames(frames: Sequence[Image.Image]) -> np.ndarray:
    """Deterministic frame features without pretrained weights: an 8x8 RGB thumbnail of each frame (values in
    [0, 1]) followed by the normalised centroid x, y and the area of the non-background pixels; shape (F, 195)."""
    rows = []
    for frame in frames:
        pixels = np.asarray(frame.convert("RGB"), np.float32)
        foreground = np.abs(pixels - np.asarray(_BACKGROUND, np.float32)).sum(-1) > 30
        height, width = foreground.shape
        ys, xs = np.nonzero(foreground)
        centroid = [xs.mean() / width, ys.mean() / height] if len(xs) else [0.5, 0.5]
        thumbnail = (
            np.asarray(frame.convert("RGB").resize((_THUMBNAIL, _THUMBNAIL), Image.BILINEAR), np.float32) / 255.0
        )
        rows.append(np.concatenate([thumbnail.reshape(-1), np.asarray(centroid + [foreground.mean()], np.float32)]))
    return np.stack(rows)


def _video_features(num_frames: int, featurize: bool) -> datasets.Features:
    columns = {
        "video_id": datasets.Value("int64"),
        "frames": datasets.Sequence(datasets.Image()),
        "fps": datasets.Value("float32"),
        "duration": datasets.Value("float32"),
        "caption": datasets.Value("string"),
        "subtitles": datasets.Sequence(
            {"text": datasets.Value("string"), "start": datasets.Value("float32"), "end": datasets.Value("float32")}
        ),
        "action_label": datasets.ClassLabel(names=list(ACTION_NAMES)),
        "object_label": datasets.ClassLabel(names=list(SHAPE_NAMES)),
        "color_label": datasets.ClassLabel(names=list(COLOR_NAMES)),
        "boxes": datasets.Sequence(datasets.Sequence(datasets.Value("float32"), length=4), length=num_frames),
    }
    if featurize:
        columns["frame_features"] = datasets.Array2D((num_frames, 3 * _THUMBNAIL**2 + 3), "float32")
    return datasets.Features(columns)


def make_shapes_video_dataset(
    num_videos: int = 1000,
    seed: int = 0,
    num_frames: int = 8,
    frame_size: int = 32,
    fps: float = 2.0,
    featurize: bool = True,
) -> datasets.Dataset:
    """Generate the ``shapes-video`` dataset: one row per clip with its frames, a caption ("a red circle moves
    left"), two timed subtitles (start / end in seconds), the action label and (``featurize``) frame features."""
    if num_videos < 1:
        raise ValueError(f"num_videos must be at least 1, got {num_videos}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    features = _video_features(num_frames, featurize)
    rows: dict[str, list[Any]] = {name: [] for name in features}
    duration = num_frames / fps
    for index in range(num_videos):
        frames, clip = render_shapes_clip(seed, index, num_frames, frame_size)
        subject = f"{COLOR_NAMES[clip['color']]} {SHAPE_NAMES[clip['shape']]}"
        rows["video_id"].append(index)
        rows["frames"].append(frames)
        rows["fps"].append(fps)
        rows["duration"].append(duration)
        rows["caption"].append(f"a {subject} {_ACTION_VERBS[clip['action']]}")
        rows["subtitles"].append(
            {
                "text": [f"look at the {subject}", _ACTION_SUBTITLES[clip["action"]]],
                "start": [0.0, duration / 2],
                "end": [duration / 2, duration],
            }
        )
        rows["action_label"].append(clip["action"])
        rows["object_label"].append(clip["shape"])
        rows["color_label"].append(clip["color"])
        rows["boxes"].append(clip["boxes"])
        if featurize:
            rows["frame_features"].append(featurize_frames(frames))
    return datasets.Dataset.from_dict(rows, features=features)


def explode_questions(dataset: datasets.Dataset) -> datasets.Dataset:
    """One row per (image, question) of a ``shapes`` dataset, for VQA: the image's columns are repeated and
    ``questions`` / ``answers`` / ``answer_ids`` / ``question_types`` become ``question``, ``answer``,
    ``answer_label`` (id in ``ANSWER_NAMES``) and ``question_type``."""
    per_question = ("questions", "answers", "answer_ids", "question_types")
    missing = [column for column in per_question if column not in dataset.column_names]
    if missing:
        raise ValueError(f"dataset is missing the columns {missing}; expected a shapes dataset")
    features = dict(dataset.features)
    renamed = {
        "questions": "question",
        "answers": "answer",
        "answer_ids": "answer_label",
        "question_types": "question_type",
    }
    for column, name in renamed.items():
        features[name] = features.pop(column).feature

    def explode(batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {name: [] for name in features}
        for row in range(len(batch["questions"])):
            for position in range(len(batch["questions"][row])):
                for column in batch:
                    value = batch[column][row]
                    out[renamed.get(column, column)].append(value[position] if column in per_question else value)
        return out

    return dataset.map(
        explode, batched=True, batch_size=64, remove_columns=dataset.column_names, features=datasets.Features(features)
    )


DATASET_BUILDERS = {"shapes": make_shapes_dataset, "shapes-video": make_shapes_video_dataset}


def load_dataset_by_name(name: str, **kwargs: Any) -> datasets.Dataset:
    """Build an embedded dataset by name (``shapes`` or ``shapes-video``); ``kwargs`` go to its builder."""
    if name not in DATASET_BUILDERS:
        raise ValueError(f"unknown dataset {name!r}; the embedded datasets are {sorted(DATASET_BUILDERS)}")
    return DATASET_BUILDERS[name](**kwargs)


def clip_regions(frames: Sequence[Image.Image], boxes: Sequence[Sequence[float]], shape: int, frame_stride: int = 2) -> dict[str, np.ndarray]:
    """Region columns of a ``shapes-video`` clip for models that read regions from sampled frames (ActBERT): the
    region featurizer (:func:`featurize_regions`) run on every ``frame_stride``-th frame at the shape's box, with
    normalised boxes and the soft "detector" class distribution of the shape; one region per sampled frame."""
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be at least 1, got {frame_stride}")
    sampled = range(0, len(frames), frame_stride)
    features = [featurize_regions(frames[index], [boxes[index]])[0] for index in sampled]
    width, height = frames[0].size
    scale = np.asarray([width, height, width, height], np.float32)
    return {
        "region_features": np.stack(features).astype(np.float32),
        "region_boxes": np.clip(np.asarray([boxes[index] for index in sampled], np.float32) / scale, 0.0, 1.0),
        "region_class_targets": detector_distribution([shape] * len(features), len(SHAPE_NAMES)),
    }
