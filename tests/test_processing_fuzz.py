"""A seeded fuzz of the processors and feature-file readers: every generated bad input (images, texts, region
features and boxes, frame features, subtitles, TSV / npz / HDF5 files, store records) must raise a ``ValueError``
or ``TypeError`` whose message names the argument or file and the offending example / row, before compute; the
valid edge cases (one token, one region, one frame, batch of one) must run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.processing import (
    minilm_tokenizer,
    published_images,
    tiny_backbone,
    tiny_detector,
    write_butd_pytorch_npz,
    write_butd_vqa_hdf5,
    write_group_hdf5,
    write_lxmert_tsv,
)

from vlpretrain.processing.processor import VideoLanguageProcessor, VisionLanguageProcessor
from vlpretrain.processing.readers import RegionRecord, read_regions
from vlpretrain.processing.regions import RegionFeaturizer
from vlpretrain.processing.store import write_feature_store

SEED = 0
CASES_PER_KIND = 12
DIM, FRAME_DIM = 8, 16
COUNTS: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    """Print how many bad inputs the fuzz generated per family (all of them raised a named error)."""
    yield
    print(f"\nprocessor / reader fuzz: {sum(COUNTS.values())} bad inputs, each a named error: {dict(sorted(COUNTS.items()))}")


@pytest.fixture(scope="module")
def tokenizer():
    return minilm_tokenizer()


@pytest.fixture(scope="module")
def image_processor(tokenizer):
    featurizer = RegionFeaturizer.from_models(
        backbone=tiny_backbone(), detector=tiny_detector(), shortest_edge=64, longest_edge=112, num_regions=4
    )
    return VisionLanguageProcessor.from_featurizer(tokenizer, featurizer, max_text_length=8)


def assert_named_error(call, needles: list[str], kind: str) -> None:
    with pytest.raises((ValueError, TypeError)) as caught:
        call()
    message = str(caught.value)
    for needle in needles:
        assert needle in message, f"{kind}: {needle!r} not in {message!r}"
    COUNTS[kind.split(":")[0]] += 1


# ----------------------------------------------------------------------------- precomputed regions


def valid_regions(rng: np.random.RandomState) -> dict:
    batch = rng.randint(1, 4)
    counts = rng.randint(1, 6, batch)
    features = [rng.rand(count, DIM).astype(np.float32) for count in counts]
    boxes = []
    for count in counts:
        low, high = rng.uniform(0.0, 0.4, (count, 2)), rng.uniform(0.6, 1.0, (count, 2))
        boxes.append(np.concatenate([low, high], axis=1).astype(np.float32))
    return {"text": [f"caption {index}" for index in range(batch)], "region_features": features, "region_boxes": boxes}


def region_mutation(kind: str, inputs: dict, rng: np.random.RandomState) -> list[str]:
    """Break ``inputs`` in place one way; return the substrings the error must contain."""
    batch = len(inputs["text"])
    index = rng.randint(batch)
    features, boxes = inputs["region_features"], inputs["region_boxes"]
    row = rng.randint(len(features[index]))
    if kind in ("nan feature", "inf feature"):
        features[index][row, rng.randint(DIM)] = np.nan if kind == "nan feature" else rng.choice([np.inf, -np.inf])
        return [f"region_features[{index}]", f"region {row}"]
    if kind == "nan box":
        boxes[index][row, rng.randint(4)] = np.nan
        return [f"region_boxes[{index}]", f"box {row}"]
    if kind == "box outside [0, 1]":
        boxes[index][row, rng.randint(4)] = rng.choice([-0.5, 1.5, 40.0])
        return [f"region_boxes[{index}]", f"box {row}"]
    if kind == "inverted box":
        boxes[index][row] = boxes[index][row][[2, 1, 0, 3]]
        return [f"region_boxes[{index}]", f"box {row}"]
    if kind == "box width":
        boxes[index] = np.zeros((len(features[index]), rng.choice([3, 5])), np.float32)
        return [f"region_boxes[{index}]"]
    if kind == "box count":
        boxes[index] = np.concatenate([boxes[index], boxes[index][:1]])
        return [f"example {index}", "region_boxes"]
    if kind == "missing example":
        features.pop()
        return ["region_features has", "text has"]
    if kind == "integer features":
        features[index] = features[index].astype(np.int64)
        return [f"region_features[{index}]", "floating point"]
    if kind == "1-d features":
        features[index] = features[index][0]
        return [f"region_features[{index}]", "dimensions"]
    if kind == "feature size":
        features[index] = np.ones((len(features[index]), DIM - 2), np.float32)
        return [f"example {index}", "feature size"]
    if kind == "zero regions":
        features[index], boxes[index] = np.ones((0, DIM), np.float32), np.zeros((0, 4), np.float32)
        return [f"example {index}", "R >= 1"]
    if kind == "empty text":
        inputs["text"] = []
        return ["text", "empty"]
    if kind == "non-string text":
        inputs["text"][index] = [None, 3, b"bytes"][rng.randint(3)]
        return [f"text[{index}]"]
    if kind == "bad image size":
        inputs["image_sizes"] = [(100, 100)] * batch
        inputs["image_sizes"][index] = [(np.nan, 100), (0, 100), (100, -5)][rng.randint(3)]
        return [f"image_sizes[{index}]"]
    if kind == "box outside the image":
        inputs["image_sizes"] = [(100, 100)] * batch
        inputs["region_boxes"] = [box * 100 for box in boxes]
        inputs["region_boxes"][index][row, 2] = 150.0
        return [f"region_boxes[{index}]", f"box {row}"]
    if kind == "class target rows":
        inputs["region_class_targets"] = [np.ones((len(item), 3), np.float32) for item in features]
        inputs["region_class_targets"][index] = np.ones((len(features[index]) + 1, 3), np.float32)
        return [f"region_class_targets[{index}]"]
    raise AssertionError(kind)


REGION_KINDS = [
    "nan feature", "inf feature", "nan box", "box outside [0, 1]", "inverted box", "box width", "box count",
    "missing example", "integer features", "1-d features", "feature size", "zero regions", "empty text",
    "non-string text", "bad image size", "box outside the image", "class target rows",
]


def test_fuzz_precomputed_regions(tokenizer):
    processor = VisionLanguageProcessor(tokenizer, region_feature_size=DIM)
    rng = np.random.RandomState(SEED)
    for kind in REGION_KINDS:
        for _ in range(CASES_PER_KIND):
            inputs = valid_regions(rng)
            needles = region_mutation(kind, inputs, rng)
            assert_named_error(lambda: processor(**inputs), needles, f"regions: {kind}")


def test_fuzz_region_records(tokenizer):
    """Records passed as ``regions=`` (from a reader or a store) are checked like arrays."""
    processor = VisionLanguageProcessor(tokenizer)
    rng = np.random.RandomState(SEED + 1)
    for _ in range(CASES_PER_KIND * 2):
        inputs = valid_regions(rng)
        records = [RegionRecord(image_id=f"img{index}", image_height=None, image_width=None, boxes=boxes, features=features)
                   for index, (features, boxes) in enumerate(zip(inputs["region_features"], inputs["region_boxes"]))]
        index = rng.randint(len(records))
        row = rng.randint(records[index].num_regions)
        target = records[index].features if rng.rand() < 0.5 else records[index].boxes
        target[row, 0] = np.nan
        assert_named_error(lambda: processor(text=inputs["text"], regions=records), [f"'img{index}'", f"region {row}"], "records")


def test_fuzz_images(image_processor, tmp_path):
    rng = np.random.RandomState(SEED + 2)
    undecodable = tmp_path / "broken.jpg"
    undecodable.write_bytes(rng.bytes(64))
    for _ in range(CASES_PER_KIND * 6):
        batch = rng.randint(1, 4)
        images = [np.zeros((rng.randint(20, 60), rng.randint(20, 60), 3), np.uint8) for _ in range(batch)]
        index = rng.randint(batch)
        kind = ["empty", "thin", "float", "channels", "not an image", "undecodable"][rng.randint(6)]
        if kind == "empty":
            shape = [(0, 0, 3), (0, rng.randint(1, 50), 3), (rng.randint(1, 50), 0, 3)][rng.randint(3)]
            images[index], needles = np.zeros(shape, np.uint8), ["empty"]
        elif kind == "thin":
            thin, long = rng.randint(1, 4), rng.randint(2000, 3001)
            images[index] = np.zeros((thin, long, 3) if rng.rand() < 0.5 else (long, thin, 3), np.uint8)
            needles = ["resizes to"]
        elif kind == "float":
            images[index], needles = np.full((30, 30, 3), np.nan, np.float32), ["uint8"]
        elif kind == "channels":
            images[index], needles = np.zeros([(30, 30), (30, 30, 1), (30, 30, 4)][rng.randint(3)], np.uint8), ["(H, W, 3)"]
        elif kind == "not an image":
            images[index], needles = [None, 3, {"a": 1}][rng.randint(3)], ["expected an image"]
        else:
            images[index], needles = str(undecodable), ["broken.jpg", "cannot decode"]
        assert_named_error(lambda: image_processor(text=["x"] * batch, images=images), [f"images[{index}]", *needles], f"images: {kind}")
    assert_named_error(lambda: image_processor(text=["a", "b"], images=[images[0]]), ["images has 1", "text has 2"], "images: count")


# ----------------------------------------------------------------------------- frames and subtitles


def test_fuzz_frame_features(tokenizer):
    processor = VideoLanguageProcessor(tokenizer, frame_feature_size=FRAME_DIM)
    rng = np.random.RandomState(SEED + 3)
    kinds = ["nan", "inf", "zero frames", "integer", "1-d", "size", "missing example", "empty text"]
    for kind in kinds:
        for _ in range(CASES_PER_KIND):
            batch = rng.randint(1, 4)
            clips = [rng.rand(rng.randint(1, 6), FRAME_DIM).astype(np.float32) for _ in range(batch)]
            texts = [f"video {index}" for index in range(batch)]
            index, frame = rng.randint(batch), 0
            frame = rng.randint(len(clips[index]))
            if kind in ("nan", "inf"):
                clips[index][frame, rng.randint(FRAME_DIM)] = np.nan if kind == "nan" else np.inf
                needles = [f"frame_features[{index}]", f"frame {frame}"]
            elif kind == "zero frames":
                clips[index], needles = np.ones((0, FRAME_DIM), np.float32), [f"frame_features[{index}]"]
            elif kind == "integer":
                clips[index], needles = clips[index].astype(np.int32), [f"frame_features[{index}]", "floating point"]
            elif kind == "1-d":
                clips[index], needles = clips[index][0], [f"frame_features[{index}]"]
            elif kind == "size":
                clips[index], needles = np.ones((2, FRAME_DIM + 1), np.float32), [f"frame_features[{index}]", "feature size"]
            elif kind == "missing example":
                clips.pop()
                needles = ["frame_features has"]
            else:
                texts, needles = [], ["text", "empty"]
            assert_named_error(lambda: processor(text=texts, frame_features=clips), needles, f"frames: {kind}")
    assert_named_error(lambda: processor(frame_features=[]), ["frame_features", "empty"], "frames: empty list")


def test_fuzz_subtitles(tokenizer):
    processor = VideoLanguageProcessor(tokenizer)
    rng = np.random.RandomState(SEED + 4)
    kinds = ["lengths", "end before start", "nan time", "missing key", "non-string text", "all empty", "not a mapping"]
    for kind in kinds:
        for _ in range(CASES_PER_KIND):
            batch = rng.randint(1, 4)
            subtitles = []
            for _ in range(batch):
                count = rng.randint(1, 4)
                starts = sorted(rng.uniform(0, 6, count).round(2).tolist())
                subtitles.append({"text": [f"line {k}" for k in range(count)], "start": starts, "end": [s + 1.0 for s in starts]})
            clips = [rng.rand(5, FRAME_DIM).astype(np.float32) for _ in range(batch)]
            index = rng.randint(batch)
            entry = subtitles[index]
            line = rng.randint(len(entry["text"]))
            needles = [f"subtitles[{index}]"]
            if kind == "lengths":
                entry[["text", "start", "end"][rng.randint(3)]].pop()
                needles.append("one of each")
            elif kind == "end before start":
                entry["end"][line] = entry["start"][line] - 0.5
                needles.append(f"subtitle {line}")
            elif kind == "nan time":
                entry["start"][line] = float("nan")
                needles.append(f"subtitle {line}")
            elif kind == "missing key":
                del entry[["text", "start", "end"][rng.randint(3)]]
            elif kind == "non-string text":
                entry["text"][line] = None
                needles.append(f"text[{line}]")
            elif kind == "all empty":
                entry["text"] = [" "] * len(entry["text"])
                needles.append("no non-empty subtitle")
            else:
                subtitles[index] = ["line 0"]
            assert_named_error(lambda: processor.encode_subtitled_videos(subtitles, clips), needles, f"subtitles: {kind}")
    assert_named_error(lambda: processor.encode_subtitled_videos([], []), ["subtitles", "non-empty"], "subtitles: empty")


# ----------------------------------------------------------------------------- feature files and stores


def _read(format_name: str, path: Path, **options) -> list:
    return list(read_regions(format_name, path, False, None, None, **options))


def test_fuzz_feature_files(tmp_path):
    rng = np.random.RandomState(SEED + 5)
    for case in range(CASES_PER_KIND):
        images = published_images(count=rng.randint(2, 5), boxes=rng.randint(1, 5), dim=DIM, seed=case)
        row = rng.randint(len(images))
        folder = tmp_path / f"case{case}"
        folder.mkdir()

        nan = [dict(image) for image in images]
        nan[row]["features"] = nan[row]["features"].copy()
        nan[row]["features"][rng.randint(len(nan[row]["features"])), 0] = np.nan
        tsv = write_lxmert_tsv(folder / "nan.tsv", nan)
        assert_named_error(lambda: _read("tsv", tsv), ["nan.tsv", f"row {row + 1}", "NaN"], "files: tsv nan")
        empty = [dict(image) for image in images]
        empty[row].update(num_boxes=0, boxes=np.zeros((0, 4), np.float32), features=np.zeros((0, DIM), np.float32))
        for key in ("objects_id", "objects_conf", "attrs_id", "attrs_conf"):
            empty[row][key] = empty[row][key][:0]
        tsv = write_lxmert_tsv(folder / "empty.tsv", empty)
        assert_named_error(lambda: _read("tsv", tsv), ["empty.tsv", f"row {row + 1}"], "files: tsv 0 regions")
        truncated = write_lxmert_tsv(folder / "cut.tsv", images)
        lines = truncated.read_bytes().splitlines()
        lines[row] = lines[row][: rng.randint(10, len(lines[row]) - 5)]
        truncated.write_bytes(b"\n".join(lines) + b"\n")
        assert_named_error(lambda: _read("tsv", truncated), ["cut.tsv", f"row {row + 1}"], "files: tsv truncated")

        npz_folder = write_butd_pytorch_npz(folder / "npz", nan, with_info=False)
        assert_named_error(lambda: _read("npz", npz_folder), [f"{images[row]['img_id']}.npz", "NaN"], "files: npz nan")
        np.savez(npz_folder / f"{images[row]['img_id']}.npz", x=images[row]["features"])
        assert_named_error(lambda: _read("npz", npz_folder), [f"{images[row]['img_id']}.npz"], "files: npz missing key")

        flat = write_butd_vqa_hdf5(folder / "flat.h5", images)
        _hdf5_case(flat, rng, row, len(images))
        groups = write_group_hdf5(folder / "groups.h5", images)
        _hdf5_group_case(groups, rng, images[row]["img_id"])


def _hdf5_case(path: Path, rng: np.random.RandomState, row: int, count: int) -> None:
    import h5py

    kind = ["missing dataset", "too few columns", "zero regions", "nan"][rng.randint(4)]
    with h5py.File(path, "a") as handle:
        if kind == "missing dataset":
            name = ["image_bb", "spatial_features"][rng.randint(2)]
            del handle[name]
            needles = [name]
        elif kind == "too few columns":
            spatial = handle["spatial_features"][()]
            del handle["spatial_features"]
            handle["spatial_features"] = spatial[..., : rng.randint(1, 4)]
            needles = ["spatial_features", "at least 4 columns"]
        elif kind == "zero regions":
            total = handle["image_features"].shape[1]
            ranges = np.stack([np.arange(count) * total, (np.arange(count) + 1) * total], 1)
            ranges[row, 1] = ranges[row, 0]
            for name in ("image_features", "image_bb", "spatial_features"):
                flat = handle[name][()].reshape(count * total, -1)
                del handle[name]
                handle[name] = flat
            handle["pos_boxes"] = ranges
            needles = [f"row {row}", "0 regions"]
        else:
            features = handle["image_features"][()]
            features[row, 0, 0] = np.nan
            handle["image_features"][...] = features
            needles = [f"row {row}", "NaN"]
    assert_named_error(lambda: _read("hdf5", path), [path.name, *needles], f"files: hdf5 {kind}")


def _hdf5_group_case(path: Path, rng: np.random.RandomState, image_id: str) -> None:
    import h5py

    kind = ["missing boxes", "box columns", "missing size"][rng.randint(3)]
    with h5py.File(path, "a") as handle:
        group = handle[image_id]
        if kind == "missing boxes":
            del group["boxes"]
        elif kind == "box columns":
            boxes = group["boxes"][()]
            del group["boxes"]
            group["boxes"] = boxes[:, :3]
        else:
            del group.attrs["image_h"]
    assert_named_error(lambda: _read("hdf5", path), [path.name, repr(image_id)], f"files: hdf5 group {kind}")


def test_fuzz_store_records(tmp_path):
    rng = np.random.RandomState(SEED + 6)
    for case in range(CASES_PER_KIND):
        records = []
        for index in range(rng.randint(2, 5)):
            count = rng.randint(1, 4)
            records.append(RegionRecord(image_id=f"img{index}", image_height=10, image_width=10,
                                        boxes=np.tile([0.1, 0.1, 0.9, 0.9], (count, 1)).astype(np.float32),
                                        features=rng.rand(count, DIM).astype(np.float32)))
        bad = rng.randint(len(records))
        if case % 2:
            records[bad].features[0, 0] = np.inf
            needles = ["NaN or infinite"]
        else:
            records[bad] = RegionRecord(image_id=f"img{bad}", image_height=10, image_width=10,
                                        boxes=np.zeros((0, 4), np.float32), features=np.zeros((0, DIM), np.float32))
            needles = ["0 regions"]
        output = tmp_path / f"store{case}"
        assert_named_error(lambda: write_feature_store(records, output), [f"'img{bad}'", *needles], "store")
        assert not output.exists()
        summary = write_feature_store(records, output, skip_corrupt=True)
        assert (summary.num_rows, summary.num_skipped) == (len(records) - 1, 1)


# ----------------------------------------------------------------------------- valid edge cases and the count


def test_valid_edge_cases_run(tokenizer, image_processor):
    processor = VisionLanguageProcessor(tokenizer, region_feature_size=DIM)
    one = processor(text="a", region_features=[np.ones((1, DIM), np.float32)], region_boxes=[[[0.0, 0.0, 1.0, 1.0]]])
    assert one["region_features"].shape == (1, 1, DIM) and one["input_ids"].shape[0] == 1
    assert image_processor(text="a", images=[np.zeros((40, 200, 3), np.uint8)])["region_features"].shape[:2] == (1, 4)
    video = VideoLanguageProcessor(tokenizer)
    out = video(text="a", frame_features=[np.ones((1, FRAME_DIM), np.float32)])
    assert out["frame_features"].shape == (1, 1, FRAME_DIM)
    subtitled = video.encode_subtitled_videos([{"text": ["hi"], "start": [0.0], "end": [1.0]}], [np.ones((1, FRAME_DIM), np.float32)])
    assert subtitled["frame_subtitle_index"].tolist() == [[0]]
    assert torch.equal(one["region_attention_mask"], torch.ones(1, 1, dtype=torch.long))
