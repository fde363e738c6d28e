"""``vlpretrain features import`` / ``extract`` through the package's CLI entry point."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.processing import (
    make_video,
    minilm_tokenizer,
    published_images,
    random_image,
    tiny_backbone,
    tiny_detector,
    tiny_frame_model,
    write_lxmert_tsv,
    write_uniter_lmdb,
)
from PIL import Image

from vlpretrain.cli import main
from vlpretrain.processing.frames import FrameFeaturizer
from vlpretrain.processing.processor import VideoLanguageProcessor, VisionLanguageProcessor
from vlpretrain.processing.regions import RegionFeaturizer
from vlpretrain.processing.store import load_feature_store, read_store_metadata


def test_import_tsv_and_lmdb(tmp_path, capsys):
    images = published_images(count=4, boxes=3, dim=8)
    tsv = write_lxmert_tsv(tmp_path / "f.tsv", images)
    assert main(["features", "import", "--format", "tsv", str(tsv), "--output-dir", str(tmp_path / "store"), "--num-regions", "3"]) == 0
    assert "wrote 4 rows (0 skipped)" in capsys.readouterr().out
    dataset = load_feature_store(tmp_path / "store").with_format("numpy")
    np.testing.assert_array_equal(dataset[:]["features"], np.stack([image["features"] for image in images]))
    lmdb_path = write_uniter_lmdb(tmp_path / "img_db", images)
    assert main(["features", "import", "--format", "lmdb", str(lmdb_path), "--output-dir", str(tmp_path / "from_lmdb")]) == 0
    assert read_store_metadata(tmp_path / "from_lmdb")["num_rows"] == 4


def test_import_truncated_tsv_fails_or_skips(tmp_path, capsys):
    tsv = write_lxmert_tsv(tmp_path / "f.tsv", published_images(count=3, boxes=3, dim=8))
    lines = tsv.read_text().splitlines()
    tsv.write_text("\n".join([lines[0], lines[1][:40], lines[2]]) + "\n")
    with pytest.raises(ValueError, match=r"f\.tsv, row 2"):
        main(["features", "import", "--format", "tsv", str(tsv), "--output-dir", str(tmp_path / "store")])
    assert not (tmp_path / "store").exists()
    assert main(["features", "import", "--format", "tsv", str(tsv), "--output-dir", str(tmp_path / "store"), "--skip-corrupt"]) == 0
    metadata = read_store_metadata(tmp_path / "store")
    assert metadata["num_rows"] == 2 and metadata["num_skipped"] == 1 and "row 2" in metadata["errors"][0]


def test_extract_images_and_videos_with_a_saved_processor(tmp_path, capsys):
    tokenizer = minilm_tokenizer()
    featurizer = RegionFeaturizer.from_models(backbone=tiny_backbone(), detector=tiny_detector(), shortest_edge=64, longest_edge=112, num_regions=10)
    VisionLanguageProcessor.from_featurizer(tokenizer, featurizer).save_pretrained(tmp_path / "vl")
    (tmp_path / "images").mkdir()
    for index in range(2):
        Image.fromarray(random_image(seed=index)).save(tmp_path / "images" / f"im{index}.png")
    (tmp_path / "images" / "bad.jpg").write_bytes(b"garbage")
    arguments = ["features", "extract", "--images", str(tmp_path / "images"), "--output-dir", str(tmp_path / "regions"), "--processor", str(tmp_path / "vl")]
    with pytest.raises(ValueError, match="bad.jpg"):
        main(arguments)
    assert main(arguments + ["--skip-corrupt"]) == 0
    dataset = load_feature_store(tmp_path / "regions").with_format("numpy")
    assert dataset[:]["id"].tolist() == ["im0", "im1"] and dataset[0]["features"].shape == (10, 16)
    expected = featurizer.featurize_image(tmp_path / "images" / "im1.png")
    np.testing.assert_array_equal(dataset[1]["features"], expected.features)
    metadata = read_store_metadata(tmp_path / "regions")
    assert metadata["num_skipped"] == 1 and metadata["featurizer"]["detector"]["source"] == "saved"

    frames = FrameFeaturizer.from_model(tiny_frame_model(), decode_fps=4, clip_seconds=1.5, shortest_edge=32, crop_size=32)
    VideoLanguageProcessor.from_featurizer(tokenizer, frames).save_pretrained(tmp_path / "video")
    (tmp_path / "videos").mkdir()
    make_video(tmp_path / "videos" / "a.mp4", seconds=3.0)
    (tmp_path / "videos" / "broken.mp4").write_bytes(b"\x00" * 256)
    assert main(["features", "extract", "--videos", str(tmp_path / "videos"), "--output-dir", str(tmp_path / "clips"),
                 "--processor", str(tmp_path / "video"), "--skip-corrupt"]) == 0
    clips = load_feature_store(tmp_path / "clips").with_format("numpy")
    assert clips[:]["id"].tolist() == ["a"] and clips[0]["features"].shape == (2, 16)
    assert read_store_metadata(tmp_path / "clips")["num_skipped"] == 1
    with pytest.raises(ValueError, match="needs --processor DIR or --backbone NAME"):
        main(["features", "extract", "--videos", str(tmp_path / "videos"), "--output-dir", str(tmp_path / "x")])
