"""The embedded shapes / shapes-video datasets: determinism, label and box consistency, answer balance."""

import collections
import os
import re
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

from vlpretrain.data.shapes import (
    ACTION_NAMES,
    ANSWER_NAMES,
    COLOR_NAMES,
    SHAPE_NAMES,
    SIZE_NAMES,
    detector_distribution,
    explode_questions,
    featurize_regions,
    load_dataset_by_name,
    make_shapes_dataset,
    make_shapes_video_dataset,
    shapes_vocabularies,
)

RGB = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 80, 230),
    "yellow": (235, 215, 40),
    "purple": (150, 60, 200),
    "cyan": (40, 210, 220),
}


@pytest.fixture(scope="module")
def default_shapes():
    start = time.perf_counter()
    dataset = make_shapes_dataset()
    return dataset, time.perf_counter() - start


@pytest.fixture(scope="module")
def small_video():
    return make_shapes_video_dataset(num_videos=120, seed=3)


def test_default_size_generates_quickly(default_shapes):
    dataset, seconds = default_shapes
    assert len(dataset) >= 1000
    assert seconds < 20, f"default shapes took {seconds:.1f}s"


def test_shapes_is_deterministic_and_prefix_stable():
    one, two = make_shapes_dataset(12, seed=5), make_shapes_dataset(12, seed=5)
    other, longer = make_shapes_dataset(12, seed=6), make_shapes_dataset(20, seed=5)
    for column in ("caption", "questions", "answers", "boxes", "object_labels", "region_features"):
        assert one[column] == two[column]
        assert one[column] == longer[column][:12]
    assert [np.asarray(image).tobytes() for image in one["image"]] == [
        np.asarray(image).tobytes() for image in two["image"]
    ]
    assert one["caption"] != other["caption"]


def test_boxes_labels_and_pixels_agree(default_shapes):
    dataset, _ = default_shapes
    rows = dataset.select(range(300))
    counts = collections.Counter()
    for row in rows:
        image = np.asarray(row["image"])
        height, width, _ = image.shape
        boxes = np.asarray(row["boxes"])
        n = len(boxes)
        counts[n] += 1
        assert 1 <= n <= 4
        assert len(row["object_labels"]) == len(row["color_labels"]) == len(row["size_labels"]) == n
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        for box, color in zip(boxes, row["color_labels"]):
            x, y = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
            assert tuple(image[y, x]) == RGB[COLOR_NAMES[color]], "the box centre does not show the labelled colour"
        pairs = list(zip(row["object_labels"], row["color_labels"]))
        assert len(set(pairs)) == n, "two objects share colour and shape"
    assert set(counts) == {1, 2, 3, 4}


def test_questions_answer_from_labels(default_shapes):
    dataset, _ = default_shapes
    for row in dataset.select(range(400)):
        shapes = [SHAPE_NAMES[i] for i in row["object_labels"]]
        colors = [COLOR_NAMES[i] for i in row["color_labels"]]
        sizes = [SIZE_NAMES[i] for i in row["size_labels"]]
        for question, answer, answer_id in zip(row["questions"], row["answers"], row["answer_ids"]):
            assert ANSWER_NAMES[answer_id] == answer
            if question == "how many shapes are there?":
                assert answer == str(len(shapes))
            elif match := re.fullmatch(r"is there a (\w+) object\?", question):
                assert answer == ("yes" if match[1] in colors else "no")
            elif match := re.fullmatch(r"is there a (\w+)\?", question):
                assert answer == ("yes" if match[1] in shapes else "no")
            elif match := re.fullmatch(r"what color is the (\w+)\?", question):
                assert shapes.count(match[1]) == 1 and answer == colors[shapes.index(match[1])]
            elif match := re.fullmatch(r"what shape is the (\w+) object\?", question):
                assert colors.count(match[1]) == 1 and answer == shapes[colors.index(match[1])]
            elif match := re.fullmatch(r"what size is the (\w+) (\w+)\?", question):
                hits = [s for c, sh, s in zip(colors, shapes, sizes) if (c, sh) == (match[1], match[2])]
                assert hits == [answer]
            else:
                pytest.fail(f"unexpected question {question!r}")
        for caption in row["captions"]:
            assert all(shape in caption for shape in shapes) or "to the left of" in caption


def test_answers_are_balanced_enough_to_beat_majority(default_shapes):
    dataset, _ = default_shapes
    answers = collections.Counter(answer for row in dataset["answers"] for answer in row)
    total = sum(answers.values())
    majority = max(answers.values()) / total
    assert majority < 0.25, answers.most_common(3)
    assert abs(answers["yes"] / (answers["yes"] + answers["no"]) - 0.5) < 0.05
    assert set(answers) == set(ANSWER_NAMES)


def test_region_features_and_detector_targets(default_shapes):
    dataset, _ = default_shapes
    columns = [name for name in dataset.column_names if name.startswith("region_") or name.endswith("labels")]
    rows = dataset.select(range(400)).select_columns(columns + ["boxes"]).with_format("numpy")
    colors, thumbs = [], []
    for row in rows:
        features, boxes = row["region_features"], row["region_boxes"]
        n = len(row["object_labels"])
        assert features.shape == (n, 197) and boxes.shape == (n, 4)
        assert features.min() >= 0 and features.max() <= 1
        np.testing.assert_allclose(boxes, np.asarray(row["boxes"]) / 64, atol=1e-6)
        np.testing.assert_allclose(features[:, 192:196], boxes, atol=1e-6)
        targets = row["region_class_targets"]
        np.testing.assert_allclose(targets.sum(1), 1, atol=1e-5)
        assert (targets.argmax(1) == row["region_object_labels"]).all()
        np.testing.assert_allclose(row["region_object_confidences"], targets.max(1), atol=1e-6)
        assert (row["region_attribute_labels"] == row["color_labels"]).all()
        colors.extend(row["color_labels"].tolist())
        thumbs.extend(features[:, :192].reshape(n, 64, 3).max(1))
    colors, thumbs = np.asarray(colors), np.asarray(thumbs)
    centroids = np.stack([thumbs[colors == c].mean(0) for c in range(len(COLOR_NAMES))])
    predicted = np.argmin(((thumbs[:, None] - centroids[None]) ** 2).sum(-1), 1)
    assert (predicted == colors).mean() > 0.9, "colour is not recoverable from the region features"


def test_featurizer_helpers_validate():
    with pytest.raises(ValueError, match="inside the 64x64 image"):
        featurize_regions(make_shapes_dataset(1)[0]["image"], [[0, 0, 70, 10]])
    with pytest.raises(ValueError, match="class ids"):
        detector_distribution([5], 4)
    with pytest.raises(ValueError, match="num_images"):
        make_shapes_dataset(0)


def test_video_clips_match_their_labels(small_video):
    video = small_video
    assert len(video) == 120 and set(video["action_label"]) == set(range(len(ACTION_NAMES)))
    for row in video.with_format("numpy").select(range(60)):
        features = row["frame_features"]
        assert features.shape == (8, 195)
        x, y, area = features[:, 192], features[:, 193], features[:, 194]
        action = ACTION_NAMES[row["action_label"]]
        trend = {
            "moving left": -x,
            "moving right": x,
            "moving up": -y,
            "moving down": y,
            "growing": area,
            "shrinking": -area,
        }[action]
        assert (np.diff(trend) >= 0).all() and trend[-1] - trend[0] > 0.1, f"features do not show {action}"
        assert COLOR_NAMES[row["color_label"]] in row["caption"] and SHAPE_NAMES[row["object_label"]] in row["caption"]
        subtitles = row["subtitles"]
        starts, ends = np.asarray(subtitles["start"]), np.asarray(subtitles["end"])
        assert starts[0] == 0 and ends[-1] == pytest.approx(float(row["duration"]))
        assert (starts < ends).all() and (starts[1:] == ends[:-1]).all()
        boxes = np.asarray(row["boxes"])
        assert (boxes >= 0).all() and (boxes <= 32).all()
    first = video[0]
    assert len(first["frames"]) == 8 and first["frames"][0].size == (32, 32)


def test_video_is_deterministic(small_video):
    again = make_shapes_video_dataset(num_videos=120, seed=3)
    assert again["caption"] == small_video["caption"]
    assert np.array_equal(np.asarray(again["frame_features"]), np.asarray(small_video["frame_features"]))


def test_load_dataset_by_name():
    dataset = load_dataset_by_name("shapes", num_images=3, featurize=False)
    assert len(dataset) == 3 and "region_features" not in dataset.column_names
    assert len(load_dataset_by_name("shapes-video", num_videos=2, num_frames=4)[0]["frames"]) == 4
    with pytest.raises(ValueError, match=r"unknown dataset 'coco'.*\['shapes', 'shapes-video'\]"):
        load_dataset_by_name("coco")
    vocabularies = shapes_vocabularies()
    assert vocabularies["objects"] == list(SHAPE_NAMES) and vocabularies["answers"] == list(ANSWER_NAMES)
    features = dataset.features
    assert features["object_labels"].feature.names == list(SHAPE_NAMES)


def test_explode_questions_one_row_per_question():
    dataset = make_shapes_dataset(5, seed=2)
    rows = explode_questions(dataset)
    assert len(rows) == 15
    assert rows["question"][:3] == dataset[0]["questions"] and rows["answer_label"][:3] == dataset[0]["answer_ids"]
    assert rows["image_id"][:4] == [0, 0, 0, 1]
    assert rows.features["answer_label"].names == list(ANSWER_NAMES)
    with pytest.raises(ValueError, match="missing the columns"):
        explode_questions(dataset.remove_columns("answers"))
