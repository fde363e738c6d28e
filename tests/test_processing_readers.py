"""Readers of published region-feature files: TSV, npz (two layouts), HDF5 (two layouts), LMDB (UNITER)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.processing import (
    normalised,
    published_images,
    write_butd_pytorch_npz,
    write_butd_vqa_hdf5,
    write_group_hdf5,
    write_lxmert_tsv,
    write_uniter_lmdb,
    write_uniter_npz,
)

from vlpretrain.processing.readers import (
    CorruptRecordError,
    ReadStats,
    RegionRecord,
    normalize_boxes,
    read_hdf5,
    read_lmdb,
    read_npz,
    read_regions,
    read_tsv,
    write_tsv,
)


@pytest.fixture
def images():
    return published_images(count=3, boxes=4, dim=8)


def _check_full(record: RegionRecord, image: dict) -> None:
    assert record.image_id == image["img_id"]
    assert (record.image_height, record.image_width) == (image["img_h"], image["img_w"])
    np.testing.assert_allclose(record.boxes, normalised(image), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(record.features, image["features"])
    assert record.features.dtype == np.float32 and record.boxes.dtype == np.float32


def test_tsv_round_trip_of_the_published_layout(tmp_path, images):
    path = write_lxmert_tsv(tmp_path / "train_obj36.tsv", images)
    records = list(read_tsv(path, feature_size=8))
    assert len(records) == 3
    for record, image in zip(records, images):
        _check_full(record, image)
        np.testing.assert_array_equal(record.object_ids, image["objects_id"])
        np.testing.assert_array_equal(record.attribute_confidences, image["attrs_conf"])
    # the package's own writer produces a file the reader (and peers) read back identically
    write_tsv(tmp_path / "again.tsv", records)
    again = list(read_tsv(tmp_path / "again.tsv"))
    np.testing.assert_allclose(again[1].boxes, records[1].boxes, atol=1e-6)
    np.testing.assert_array_equal(again[1].attribute_ids, records[1].attribute_ids)


def test_tsv_truncated_line_names_file_and_row(tmp_path, images):
    path = write_lxmert_tsv(tmp_path / "feats.tsv", images)
    lines = path.read_text().splitlines()
    lines[1] = lines[1][: len(lines[1]) // 2]  # cut the second image in the middle of its features
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CorruptRecordError, match=r"feats\.tsv, row 2 \(img_id='COCO_000000000001'\)"):
        list(read_tsv(path))
    stats = ReadStats()
    kept = list(read_tsv(path, skip_corrupt=True, stats=stats))
    assert [record.image_id for record in kept] == ["COCO_000000000000", "COCO_000000000002"]
    assert stats.read == 2 and stats.skipped == 1 and "row 2" in stats.errors[0]


def test_tsv_wrong_feature_size_and_boxes_outside_image(tmp_path, images):
    path = write_lxmert_tsv(tmp_path / "feats.tsv", images)
    with pytest.raises(CorruptRecordError, match="row 1.*feature size 8 differs from the expected 2048"):
        list(read_tsv(path, feature_size=2048))
    images[2]["boxes"][1, 2] = images[2]["img_w"] + 50
    write_lxmert_tsv(path, images)
    with pytest.raises(CorruptRecordError, match=r"row 3.*box 1 .*outside the 180x120 image"):
        list(read_tsv(path))
    with pytest.raises(FileNotFoundError, match="missing.tsv"):
        read_tsv(tmp_path / "missing.tsv")


def test_normalize_boxes_rejects_inverted_boxes():
    with pytest.raises(ValueError, match="x2 < x1"):
        normalize_boxes(np.array([[10.0, 0.0, 5.0, 4.0]]), 20, 20)
    np.testing.assert_allclose(normalize_boxes(np.array([[0.0, 0.0, 20.0, 10.0]]), 20, 10), [[0, 0, 1, 1]])


def test_npz_bottom_up_attention_pytorch_layout_refuses_pickle_unless_trusted(tmp_path, images):
    folder = write_butd_pytorch_npz(tmp_path / "npz", images)
    with pytest.raises(CorruptRecordError, match="pickled Python dict; pass pickled_info='trust'"):
        list(read_npz(folder))
    ignored = list(read_npz(folder, pickled_info="ignore"))
    _check_full(ignored[0], images[0])
    assert ignored[0].object_ids is None
    trusted = list(read_npz(folder, pickled_info="trust"))
    for record, image in zip(trusted, images):
        _check_full(record, image)
        np.testing.assert_array_equal(record.attribute_ids, image["attrs_id"])
        np.testing.assert_array_equal(record.class_probabilities, image["cls_prob"])


def test_npz_uniter_layout(tmp_path, images):
    records = list(read_npz(write_uniter_npz(tmp_path / "uniter", images)))
    assert [record.image_id for record in records] == [image["img_id"] for image in images]
    np.testing.assert_allclose(records[0].boxes, normalised(images[0]), atol=1e-3)
    np.testing.assert_allclose(records[0].features, images[0]["features"], atol=1e-3)
    assert records[0].image_height is None and records[0].class_probabilities.shape == (4, 7)
    # soft_labels put the background class first, so labels are argmax over the real classes (1..C-1)
    np.testing.assert_array_equal(records[0].object_ids, images[0]["cls_prob"].astype(np.float16)[:, 1:].argmax(1) + 1)


def test_npz_corrupt_file_is_named_and_skippable(tmp_path, images):
    folder = write_uniter_npz(tmp_path / "uniter", images)
    (folder / "broken.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CorruptRecordError, match="broken.npz"):
        list(read_npz(folder))
    stats = ReadStats()
    assert len(list(read_npz(folder, skip_corrupt=True, stats=stats))) == 3 and stats.skipped == 1


def test_hdf5_bottom_up_attention_vqa_layout(tmp_path, images):
    path = write_butd_vqa_hdf5(tmp_path / "trainval36.hdf5", images)
    records = list(read_hdf5(path))
    for record, image in zip(records, images):
        _check_full(record, image)
    without_ids = write_butd_vqa_hdf5(tmp_path / "noids.hdf5", images, with_ids=False)
    ids_file = tmp_path / "imgid2idx.json"
    ids_file.write_text('{"b": 1, "a": 0, "c": 2}')
    assert [record.image_id for record in read_hdf5(without_ids, image_ids=ids_file)] == ["a", "b", "c"]


def test_hdf5_group_layout(tmp_path, images):
    records = list(read_regions("hdf5", write_group_hdf5(tmp_path / "groups.h5", images)))
    by_id = {record.image_id: record for record in records}
    _check_full(by_id[images[1]["img_id"]], images[1])
    np.testing.assert_array_equal(by_id[images[1]["img_id"]].class_probabilities, images[1]["cls_prob"])


@pytest.mark.parametrize("compress", [False, True])
def test_lmdb_uniter_image_db(tmp_path, images, compress):
    path = write_uniter_lmdb(tmp_path / "feat_th0.2_max100_min10", images, compress=compress)
    records = list(read_lmdb(path))
    assert sorted(record.image_id for record in records) == sorted(image["img_id"] for image in images)
    first = next(record for record in records if record.image_id == images[0]["img_id"])
    np.testing.assert_allclose(first.features, images[0]["features"], atol=1e-3)
    np.testing.assert_allclose(first.object_confidences, images[0]["objects_conf"], atol=1e-3)


def test_lmdb_refuses_pickled_msgpack_arrays(tmp_path):
    import lmdb
    import msgpack

    environment = lmdb.open(str(tmp_path / "db"), map_size=1 << 22)
    with environment.begin(write=True) as transaction:
        value = {"features": {b"nd": True, b"type": "|O", b"kind": b"O", b"shape": [1], b"data": b"\x80\x04."}}
        transaction.put(b"img.npz", msgpack.dumps(value, use_bin_type=True))
    environment.close()
    with pytest.raises(CorruptRecordError, match="key 'img.npz'.*refusing"):
        list(read_lmdb(tmp_path / "db"))
