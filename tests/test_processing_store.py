"""Feature stores: Arrow shards, memory-mapped and streamable, atomic writes, skip_corrupt accounting."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datasets.distributed import split_dataset_by_node
from helpers.processing import published_images, write_lxmert_tsv

from vlpretrain.processing.frames import FrameRecord
from vlpretrain.processing.readers import ReadStats, RegionRecord, read_tsv
from vlpretrain.processing.store import (
    STORE_METADATA_FILE,
    load_feature_store,
    read_batch,
    read_store_metadata,
    record_from_row,
    write_feature_store,
)


def _region(index: int, regions: int = 4, dim: int = 8) -> RegionRecord:
    rng = np.random.RandomState(index)
    corners = np.sort(rng.rand(regions, 2, 2), axis=1).reshape(regions, 4)
    return RegionRecord(f"img{index}", 100, 120, corners.astype(np.float32), rng.rand(regions, dim).astype(np.float32))


def test_tsv_to_store_keeps_every_field(tmp_path):
    images = published_images(count=5, boxes=4, dim=8)
    stats = ReadStats()
    summary = write_feature_store(
        read_tsv(write_lxmert_tsv(tmp_path / "f.tsv", images), stats=stats),
        tmp_path / "store", num_regions=4, reader_stats=stats, rows_per_shard=2, metadata={"source_format": "tsv"},
    )
    assert (summary.num_rows, summary.num_shards, summary.num_skipped) == (5, 3, 0)
    dataset = load_feature_store(tmp_path / "store")
    assert len(dataset) == 5 and all(str(tmp_path / "store") in item["filename"] for item in dataset.cache_files)
    batch = dataset.with_format("numpy")[1:4]
    assert batch["features"].shape == (3, 4, 8) and batch["features"].dtype == np.float32
    np.testing.assert_array_equal(batch["features"][0], images[1]["features"])
    np.testing.assert_array_equal(batch["attribute_ids"][2], images[3]["attrs_id"])
    assert batch["image_height"].tolist() == [110, 120, 130]
    record = record_from_row(dataset[4])
    np.testing.assert_allclose(record.boxes * np.array([record.image_width, record.image_height] * 2), images[4]["boxes"], rtol=1e-5)
    assert read_store_metadata(tmp_path / "store")["source_format"] == "tsv"


def test_streaming_shards_split_across_nodes(tmp_path):
    write_feature_store((_region(index) for index in range(6)), tmp_path / "store", rows_per_shard=2)
    streamed = load_feature_store(tmp_path / "store", streaming=True)
    assert streamed.num_shards == 3
    seen = []
    for rank in range(3):
        part = [row["id"] for row in split_dataset_by_node(streamed, rank=rank, world_size=3)]
        assert len(part) == 2
        seen += part
    assert sorted(seen) == [f"img{index}" for index in range(6)]
    mapped = load_feature_store(tmp_path / "store")
    assert sorted(split_dataset_by_node(mapped, rank=1, world_size=2)["id"]) == ["img3", "img4", "img5"]


def test_variable_region_counts_and_class_distributions(tmp_path):
    records = [_region(0, regions=3), _region(1, regions=5)]
    for record in records:
        record.class_probabilities = np.full((record.num_regions, 7), 1 / 7, dtype=np.float32)
    write_feature_store(records, tmp_path / "store")
    dataset = load_feature_store(tmp_path / "store").with_format("numpy")
    assert dataset[1]["features"].shape == (5, 8) and dataset[0]["class_probabilities"].shape == (3, 7)
    assert dataset[:]["num_regions"].tolist() == [3, 5]


def test_interrupted_conversion_leaves_the_old_store(tmp_path):
    target = tmp_path / "store"
    write_feature_store([_region(0)], target)
    before = (target / STORE_METADATA_FILE).read_text()

    def failing():
        yield _region(1)
        yield _region(2)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_feature_store(failing(), target, rows_per_shard=1)
    assert (target / STORE_METADATA_FILE).read_text() == before
    assert load_feature_store(target)["id"] == ["img0"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["store"]


def test_bad_records_raise_or_are_counted(tmp_path):
    records = [_region(0), _region(1, dim=6), _region(2)]
    with pytest.raises(ValueError, match="record 'img1': feature size 6 differs from the store's 8"):
        write_feature_store(records, tmp_path / "store")
    assert not (tmp_path / "store").exists()
    summary = write_feature_store(records, tmp_path / "store", skip_corrupt=True)
    metadata = read_store_metadata(tmp_path / "store")
    assert summary.num_rows == 2 and metadata["num_skipped"] == 1 and "img1" in metadata["errors"][0]
    outside = _region(3)
    outside.boxes[0, 2] = 1.5
    with pytest.raises(ValueError, match="record 'img3': boxes: box 0 .* outside \\[0, 1\\]"):
        write_feature_store([outside], tmp_path / "other")
    with pytest.raises(ValueError, match="exactly 36 per image"):
        write_feature_store([_region(0)], tmp_path / "other", num_regions=36)


def test_frame_store(tmp_path):
    records = [FrameRecord(f"v{index}", np.random.RandomState(index).rand(3 + index, 16).astype(np.float32), 1.5, 4.5) for index in range(3)]
    write_feature_store(records, tmp_path / "frames", kind="frames")
    dataset = load_feature_store(tmp_path / "frames").with_format("numpy")
    assert dataset[:]["num_frames"].tolist() == [3, 4, 5]
    np.testing.assert_array_equal(dataset[2]["features"], records[2].features)
    assert json.loads((tmp_path / "frames" / STORE_METADATA_FILE).read_text())["kind"] == "frames"
    with pytest.raises(ValueError, match="takes FrameRecord"):
        write_feature_store([_region(0)], tmp_path / "x", kind="frames")


def test_read_batch_matches_datasets_formatting(tmp_path):
    write_feature_store((_region(index) for index in range(7)), tmp_path / "fixed", num_regions=4, rows_per_shard=3)
    dataset = load_feature_store(tmp_path / "fixed")
    formatted = dataset.with_format("numpy")
    for start, stop in ((0, 3), (1, 6), (0, 7), (4, 4)):
        batch = read_batch(dataset, start, stop)
        np.testing.assert_array_equal(batch["features"], formatted[start:stop]["features"].reshape(-1, 4, 8))
        np.testing.assert_array_equal(batch["boxes"], formatted[start:stop]["boxes"].reshape(-1, 4, 4))
        assert batch["id"].tolist() == formatted[start:stop]["id"].tolist()
    single_shard = read_batch(dataset, 0, 3, columns=["features"])
    assert list(single_shard) == ["features"] and not single_shard["features"].flags.owndata  # a view of the memory map
    write_feature_store([_region(0, regions=2), _region(1, regions=5)], tmp_path / "variable")
    variable = read_batch(load_feature_store(tmp_path / "variable"), 0, 2)
    assert [item.shape for item in variable["features"]] == [(2, 8), (5, 8)]
    with pytest.raises(ValueError, match="flatten_indices"):
        read_batch(dataset.shuffle(seed=0), 0, 2)
    with pytest.raises(ValueError, match="unknown columns"):
        read_batch(dataset, 0, 2, columns=["pixels"])
