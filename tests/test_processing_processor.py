"""VisionLanguageProcessor / VideoLanguageProcessor: outputs, bad input, save/load and remote-code load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from helpers.processing import (
    make_video,
    minilm_tokenizer,
    published_images,
    random_image,
    tiny_backbone,
    tiny_detector,
    tiny_frame_model,
    write_lxmert_tsv,
)

from vlpretrain.processing.frames import FrameFeaturizer
from vlpretrain.processing.processor import VideoLanguageProcessor, VisionLanguageProcessor
from vlpretrain.processing.readers import read_tsv
from vlpretrain.processing.regions import RegionFeaturizer

IMAGE_TEXT_KEYS = ["input_ids", "attention_mask", "token_type_ids", "region_features", "region_boxes", "region_attention_mask"]
VIDEO_TEXT_KEYS = ["input_ids", "attention_mask", "frame_features", "frame_attention_mask"]


@pytest.fixture(scope="module")
def tokenizer():
    return minilm_tokenizer()


@pytest.fixture(scope="module")
def vision_processor(tokenizer):
    featurizer = RegionFeaturizer.from_models(
        backbone=tiny_backbone(), detector=tiny_detector(), shortest_edge=64, longest_edge=112, num_regions=12
    )
    return VisionLanguageProcessor.from_featurizer(tokenizer, featurizer, max_text_length=12)


def test_precomputed_regions_are_padded_with_masks(tokenizer):
    processor = VisionLanguageProcessor(tokenizer, region_feature_size=8)
    features = [np.ones((3, 8), np.float32), np.full((5, 8), 2.0, np.float32)]
    boxes = [np.array([[0, 0, 50, 40]] * 3, np.float32), np.array([[10, 20, 100, 80]] * 5, np.float32)]
    out = processor(text=["a dog", "a man rides a horse"], region_features=features, region_boxes=boxes, image_sizes=[(80, 100), (80, 100)])
    assert list(out.keys()) == IMAGE_TEXT_KEYS
    assert out["region_features"].shape == (2, 5, 8) and out["region_features"].dtype == torch.float32
    assert out["region_attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1] * 5]
    torch.testing.assert_close(out["region_boxes"][1, 0], torch.tensor([0.1, 0.25, 1.0, 1.0]))
    assert (out["region_features"][0, 3:] == 0).all() and (out["region_boxes"][0, 3:] == 0).all()
    assert out["input_ids"][0, 0].item() == tokenizer.cls_token_id and out["token_type_ids"].shape == out["input_ids"].shape
    batched = processor(text=["x", "y"], region_features=torch.ones(2, 4, 8), region_boxes=torch.full((2, 4, 4), 0.5))
    assert batched["region_attention_mask"].sum().item() == 8


def test_published_tsv_to_model_inputs_with_labels(tmp_path, tokenizer):
    images = published_images(count=2, boxes=4, dim=8)
    records = list(read_tsv(write_lxmert_tsv(tmp_path / "f.tsv", images)))
    processor = VisionLanguageProcessor(tokenizer, max_regions=3)
    out = processor(text=["one", "two"], regions=records, return_region_labels=True)
    assert out["region_features"].shape == (2, 3, 8)
    assert out["region_object_labels"].tolist() == [image["objects_id"][:3].tolist() for image in images]
    torch.testing.assert_close(out["region_attribute_confidences"][1], torch.from_numpy(images[1]["attrs_conf"][:3]))
    with pytest.raises(ValueError, match="class distributions were requested"):
        processor(text=["one", "two"], regions=records, return_region_class_targets=True)


def test_images_through_the_featurizer(vision_processor):
    images = [random_image(seed=1), random_image(40, 60, seed=2)]
    out = vision_processor(text=["a b", "c"], images=images, return_region_class_targets=True, return_region_labels=True)
    assert set(IMAGE_TEXT_KEYS) <= set(out) and out["region_features"].shape == (2, 12, 16)
    assert out["region_class_targets"].shape == (2, 12, 6) and out["region_object_labels"].shape == (2, 12)
    direct = vision_processor.region_featurizer([images[1]])[0]
    np.testing.assert_array_equal(out["region_features"][1].numpy(), direct.features)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"text": ["a", "b"], "region_features": [np.ones((2, 8))], "region_boxes": [np.zeros((2, 4))]}, "region_features has 1 examples but text has 2"),
        ({"text": ["a"], "region_features": [np.ones((2, 8))]}, "region_features needs region_boxes"),
        ({"text": ["a"], "region_features": [np.ones((2, 8))], "region_boxes": [np.zeros((3, 4))]}, "2 regions but region_boxes has 3"),
        ({"text": ["a"], "region_features": [np.ones((2, 8))], "region_boxes": [np.full((2, 4), 2.0)]}, r"region_boxes\[0\].*outside \[0, 1\]"),
        ({"text": ["a"], "region_features": [np.ones((1, 8))], "region_boxes": [[[0, 0, 120, 10]]], "image_sizes": [(50, 100)]}, "outside the 100x50 image"),
        ({"text": ["a"], "region_features": [np.ones((2, 6))], "region_boxes": [np.zeros((2, 4))]}, "region feature size 6, expected 8"),
        ({"text": ["a"], "region_features": [np.ones((2, 8), np.int64)], "region_boxes": [np.zeros((2, 4))]}, "expected floating point"),
        ({"text": ["a"], "images": [random_image()]}, "needs a region featurizer"),
        ({"text": 3}, "expected a string or a list of strings"),
    ],
)
def test_bad_input_is_rejected_before_compute(tokenizer, kwargs, message):
    processor = VisionLanguageProcessor(tokenizer, region_feature_size=8)
    with pytest.raises(ValueError, match=message):
        processor(**kwargs)


def test_video_processor_outputs_and_errors(tmp_path, tokenizer):
    processor = VideoLanguageProcessor(tokenizer, max_frames=4)
    out = processor(text=["cook pasta", "boil"], frame_features=[np.ones((6, 16), np.float32), np.ones((2, 16), np.float32)])
    assert list(out.keys()) == VIDEO_TEXT_KEYS
    assert out["frame_features"].shape == (2, 4, 16) and out["frame_attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    np.save(tmp_path / "v.npy", np.zeros((3, 16), np.float32))
    assert processor(text="x", videos=[tmp_path / "v.npy"])["frame_features"].shape == (1, 3, 16)
    with pytest.raises(ValueError, match="frame feature sizes differ"):
        processor(text=["a", "b"], frame_features=[np.ones((2, 16)), np.ones((2, 8))])
    with pytest.raises(ValueError, match="decoding videos needs frame_featurizer_config"):
        processor(text="a", videos=[tmp_path / "v.mp4"])


def test_local_save_and_load_round_trip(tmp_path, vision_processor, tokenizer):
    image = random_image(seed=3)
    expected = vision_processor(text=["a photo"], images=[image], return_region_class_targets=True)
    vision_processor.save_pretrained(tmp_path / "vl", remote_code=True)
    config = json.loads((tmp_path / "vl" / "processor_config.json").read_text())
    assert config["auto_map"] == {"AutoProcessor": "processing_processor.VisionLanguageProcessor"}
    provenance = config["region_featurizer_config"]
    assert provenance["detector"]["source"] == "saved" and provenance["num_regions"] == 12 and provenance["colour_order"] == "RGB"
    assert (tmp_path / "vl" / "region_detector" / "model.safetensors").is_file()
    assert vision_processor.region_featurizer_config["detector"] == {"source": "memory"}
    loaded = VisionLanguageProcessor.from_pretrained(tmp_path / "vl")
    assert loaded.max_text_length == 12
    actual = loaded(text=["a photo"], images=[image], return_region_class_targets=True)
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0)
    weights = tmp_path / "vl" / "region_backbone" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\x00\x00\x00\x00")
    with pytest.raises(ValueError, match="checksum differs"):
        VisionLanguageProcessor.from_pretrained(tmp_path / "vl")(text=["a"], images=[image])


REMOTE_SCRIPT = """
import sys
sys.modules["vlpretrain"] = None
import numpy as np, torch
from transformers import AutoProcessor

folder = sys.argv[1]
vision = AutoProcessor.from_pretrained(folder + "/vl", trust_remote_code=True)
video = AutoProcessor.from_pretrained(folder + "/video", trust_remote_code=True)
assert type(vision).__module__.startswith("transformers_modules."), type(vision).__module__
image = np.load(folder + "/image.npy")
outputs = dict(vision(text=["a photo", "b"], images=[image, image[:30]], return_region_class_targets=True))
outputs.update({"video_" + key: value for key, value in video(text=["cook"], videos=[folder + "/clip.mp4"]).items()})
vision.save_pretrained(folder + "/vl_again", remote_code=True)
again = AutoProcessor.from_pretrained(folder + "/vl_again", trust_remote_code=True)
outputs["again_region_features"] = again(text=["a photo"], images=[image])["region_features"]
torch.save(outputs, folder + "/remote_outputs.pt")
print("remote ok", type(vision).__name__, type(video).__name__)
"""


@pytest.mark.slow
def test_remote_code_load_in_a_fresh_process(tmp_path, vision_processor, tokenizer):
    image = random_image(seed=4)
    np.save(tmp_path / "image.npy", image)
    video = make_video(tmp_path / "clip.mp4", seconds=2.0, fps=8)
    frame_featurizer = FrameFeaturizer.from_model(tiny_frame_model(), decode_fps=4, clip_seconds=1.0, shortest_edge=32, crop_size=32)
    video_processor = VideoLanguageProcessor.from_featurizer(tokenizer, frame_featurizer, max_frames=8)
    vision_processor.save_pretrained(tmp_path / "vl", remote_code=True)
    video_processor.save_pretrained(tmp_path / "video", remote_code=True)
    expected = dict(vision_processor(text=["a photo", "b"], images=[image, image[:30]], return_region_class_targets=True))
    expected.update({"video_" + key: value for key, value in video_processor(text=["cook"], videos=[video]).items()})
    script = tmp_path / "remote_load.py"
    script.write_text(textwrap.dedent(REMOTE_SCRIPT))
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "HF_MODULES_CACHE")}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    result = subprocess.run([sys.executable, str(script), str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "remote ok VisionLanguageProcessor VideoLanguageProcessor" in result.stdout
    remote = torch.load(tmp_path / "remote_outputs.pt", weights_only=True)
    assert sorted(remote) == sorted(list(expected) + ["again_region_features"])
    for key, value in expected.items():
        torch.testing.assert_close(remote[key], value, rtol=0, atol=0)
    torch.testing.assert_close(remote["again_region_features"], expected["region_features"][:1], rtol=0, atol=0)


def test_hub_models_are_recorded_by_name_and_local_folders_are_saved(tmp_path, tokenizer):
    tiny_backbone().save_pretrained(tmp_path / "my_backbone")
    featurizer = RegionFeaturizer.from_pretrained_models(backbone=str(tmp_path / "my_backbone"), detector="facebook/detr-resnet-50", revision="main")
    processor = VisionLanguageProcessor.from_featurizer(tokenizer, featurizer, max_text_length=5)
    processor.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "processor_config.json").read_text())["region_featurizer_config"]
    assert config["detector"] == {"source": "hub", "name_or_path": "facebook/detr-resnet-50", "revision": "main"}
    assert config["backbone"]["source"] == "saved" and (tmp_path / "saved" / "region_backbone" / "model.safetensors").is_file()
    assert not (tmp_path / "saved" / "region_detector").exists()
    out = processor(text=["a very long caption that the processor must cut short"], region_features=[np.ones((1, 4))], region_boxes=[[[0, 0, 1, 1]]])
    assert out["input_ids"].shape == (1, 5) and out["input_ids"][0, -1].item() == tokenizer.sep_token_id
