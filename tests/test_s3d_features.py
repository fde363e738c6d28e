"""S3D clip features from video files with UniVL's extraction settings, their provenance (processor, store, model,
model card), bad videos, and the end-to-end path MP4 -> S3D -> converted UniVL -> caption."""

from __future__ import annotations

import json
import warnings

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.processing import make_video, minilm_tokenizer, tiny_frame_model
from helpers.s3d_factories import TINY_FEATURE_SIZE, converted_tiny_s3d
from helpers.univl_hero_factories import original_univl_state_dict, tiny_univl_config
from transformers import pipeline

from vlpretrain import FrameFeaturizer, UnivlForCaptioning, VideoLanguageProcessor
from vlpretrain.cli import main as cli_main
from vlpretrain.hub.export import export_model
from vlpretrain.modeling.s3d import S3DModel
from vlpretrain.processing.featurizer_models import file_sha256
from vlpretrain.processing.frames import decode_video
from vlpretrain.processing.provenance import provenance_differences
from vlpretrain.processing.store import check_feature_provenance, read_store_metadata

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL_FRAMES = {"shortest_edge": 64, "crop_size": 64}  # UniVL's settings at 64 px instead of 224, for speed


@pytest.fixture(scope="module")
def s3d_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("s3d")
    return converted_tiny_s3d(folder)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("videos") / "clip.mp4", seconds=2.5, fps=10, height=72, width=96)


def univl_featurizer(s3d_folder, **settings) -> FrameFeaturizer:
    return FrameFeaturizer.from_pretrained_model(str(s3d_folder), preset="univl-s3d", **{**SMALL_FRAMES, **settings})


def test_univl_preset_gives_one_normalised_half_precision_s3d_feature_per_second(s3d_folder, video):
    featurizer = univl_featurizer(s3d_folder, batch_size=2)
    record = featurizer.featurize_video(video)
    assert record.features.shape == (3, TINY_FEATURE_SIZE) and record.clip_seconds == 1.0
    np.testing.assert_allclose(np.linalg.norm(record.features, axis=1), 1.0, atol=2e-3)
    np.testing.assert_array_equal(record.features, record.features.astype(np.float16).astype(np.float32))

    frames, _ = decode_video(video, fps=16)
    assert len(frames) == 40  # 2.5 s at 16 fps: two full clips, the third padded with 8 black frames
    pixels = featurizer.pixel_values(frames)
    assert 0.0 <= pixels.min() and pixels.max() <= 1.0  # / 255, no mean or std
    clips = torch.cat([pixels, torch.zeros(8, *pixels.shape[1:])]).view(3, 16, *pixels.shape[1:]).transpose(1, 2)
    model = S3DModel.from_pretrained(s3d_folder).eval()
    with torch.no_grad():
        expected = F.normalize(model(pixel_values_videos=clips).pooler_output, dim=1).half().float()
    np.testing.assert_allclose(record.features, expected.numpy(), atol=1e-3)
    alone = univl_featurizer(s3d_folder, batch_size=1).featurize_video(video).features
    np.testing.assert_allclose(alone, record.features, atol=1e-3)


def write_frameless_video(path) -> str:
    """An MP4 whose video stream got no frames (the muxer then drops the stream)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        container.start_encoding()
    return str(path)


def test_bad_videos_name_the_file_or_are_skipped(s3d_folder, video, tmp_path):
    featurizer = univl_featurizer(s3d_folder)
    folder = tmp_path / "videos"
    folder.mkdir()
    make_video(folder / "short.mp4", seconds=0.5, fps=10)
    write_frameless_video(folder / "empty.mp4")
    (folder / "broken.mp4").write_bytes(b"\x00" * 300)
    with pytest.raises(ValueError, match=r"short.mp4: the video is shorter than one clip \(8 frames at 16.0 fps"):
        featurizer.featurize_video(folder / "short.mp4")
    with pytest.raises(ValueError, match="empty.mp4: no video stream"):
        featurizer.featurize_video(folder / "empty.mp4")
    with pytest.raises(ValueError, match="broken.mp4: cannot decode video"):
        featurizer.featurize_video(folder / "broken.mp4")
    (folder / "clip.mp4").write_bytes(video.read_bytes())
    arguments = ["features", "extract", "--videos", str(folder), "--output-dir", str(tmp_path / "store"),
                 "--backbone", str(s3d_folder), "--preset", "univl-s3d"]
    with pytest.raises(ValueError, match="broken.mp4"):
        cli_main(arguments)
    assert cli_main(arguments + ["--skip-corrupt"]) == 0
    metadata = read_store_metadata(tmp_path / "store")
    assert metadata["num_rows"] == 1 and metadata["num_skipped"] == 3
    provenance = metadata["provenance"]
    assert provenance["extractor"] == "vlpretrain-s3d" and provenance["kind"] == "frames"
    assert provenance["weights"]["backbone"]["sha256"] == file_sha256(s3d_folder / "model.safetensors")
    assert provenance["settings"]["decode_fps"] == 16.0 and provenance["settings"]["l2_normalize"] is True
    with pytest.raises(ValueError, match="--preset applies to --videos with --backbone only"):
        cli_main(["features", "extract", "--images", str(folder), "--output-dir", str(tmp_path / "x"), "--backbone", "b", "--preset", "univl-s3d"])


def converted_univl_captioner(tmp_path, tokenizer):
    config = tiny_univl_config(vocab_size=len(tokenizer), frame_feature_size=TINY_FEATURE_SIZE)
    torch.save(original_univl_state_dict(config), tmp_path / "univl.pretrained.bin")
    overrides = json.dumps({"bos_token_id": tokenizer.cls_token_id, "eos_token_id": tokenizer.sep_token_id,
                            "pad_token_id": tokenizer.pad_token_id, "num_beams": 2, "max_caption_length": 6})
    assert cli_main(["convert", "--from", "univl", str(tmp_path / "univl.pretrained.bin"), "--output-dir",
                     str(tmp_path / "univl"), "--config-overrides", overrides]) == 0
    return UnivlForCaptioning.from_pretrained(tmp_path / "univl").eval()


def test_mp4_to_s3d_to_converted_univl_caption_with_provenance(s3d_folder, video, tmp_path):
    tokenizer = minilm_tokenizer()
    model = converted_univl_captioner(tmp_path, tokenizer)
    assert model.config.feature_provenance["extractor"] == "vlpretrain-s3d"
    assert model.config.feature_provenance["settings"]["clip_seconds"] == 1.0
    processor = VideoLanguageProcessor(
        tokenizer, frame_featurizer_config=univl_featurizer(s3d_folder).to_dict(), frame_feature_size=TINY_FEATURE_SIZE,
    )
    # Same extractor and frame rate as the release, but 64-px crops: named in the warning.
    with pytest.warns(UserWarning, match=r"the model expects frames from vlpretrain-s3d .*\(crop_size 224 vs 64\)"):
        captioner = pipeline("vlpretrain-video-captioning", model=model, processor=processor)
    caption = captioner(str(video))
    features = processor(videos=[str(video)])
    assert features["frame_features"].shape == (1, 3, TINY_FEATURE_SIZE)
    expected = tokenizer.batch_decode(model.generate(**features), skip_special_tokens=True)[0].strip()
    assert caption == [{"generated_text": expected}] and expected

    processor.save_pretrained(tmp_path / "univl")
    saved = json.loads((tmp_path / "univl" / "processor_config.json").read_text())["feature_provenance"]["frame_featurizer_config"]
    assert saved["extractor"] == "vlpretrain-s3d" and saved["settings"]["decode_fps"] == 16.0
    assert saved["weights"]["backbone"]["sha256"] == file_sha256(tmp_path / "univl" / "frame_backbone" / "model.safetensors")
    assert provenance_differences(model.config.feature_provenance, saved) == ["crop_size 224 vs 64"]
    export_model(tmp_path / "univl", tmp_path / "export")
    card = (tmp_path / "export" / "README.md").read_text()
    assert "## Input features" in card and "**vlpretrain-s3d**" in card and "`decode_fps`: 16.0" in card

    resnet = FrameFeaturizer.from_model(tiny_frame_model(), decode_fps=16, **SMALL_FRAMES)
    with pytest.warns(UserWarning, match=r"expects frames from vlpretrain-s3d .* features are frames from resnet"):
        pipeline("vlpretrain-video-captioning", model=model, processor=VideoLanguageProcessor.from_featurizer(tokenizer, resnet))


def test_training_warns_by_name_on_a_store_of_another_extractor(s3d_folder, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    make_video(folder / "a.mp4", seconds=1.0)
    assert cli_main(["features", "extract", "--videos", str(folder), "--output-dir", str(tmp_path / "s3d_store"),
                     "--backbone", str(s3d_folder), "--preset", "univl-s3d"]) == 0
    tiny_frame_model().save_pretrained(tmp_path / "resnet")
    assert cli_main(["features", "extract", "--videos", str(folder), "--output-dir", str(tmp_path / "resnet_store"),
                     "--backbone", str(tmp_path / "resnet")]) == 0
    model = UnivlForCaptioning(tiny_univl_config())
    check_feature_provenance(model, str(tmp_path / "s3d_store"))
    assert model.config.feature_provenance["extractor"] == "vlpretrain-s3d"  # a model without a record takes the store's
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_feature_provenance(model, str(tmp_path / "s3d_store"))
    with pytest.warns(UserWarning, match=r"resnet_store: the model expects frames from vlpretrain-s3d .*frames from resnet"):
        check_feature_provenance(model, str(tmp_path / "resnet_store"))
