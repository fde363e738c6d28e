"""ActBERT's processor: actions from the frame featurizer, regions from the region featurizer on sampled frames."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from helpers.actbert_videobert_factories import tiny_actbert_config
from helpers.processing import make_video, minilm_tokenizer, tiny_backbone, tiny_detector, tiny_frame_model

from vlpretrain.modeling.actbert import ActBertModel
from vlpretrain.processing.frames import FrameFeaturizer, FrameRecord, decode_video
from vlpretrain.processing.regions import RegionFeaturizer
from vlpretrain.processing.video_regions import VideoRegionLanguageProcessor, sampled_frame_indices
from vlpretrain.registry import get_architecture

FEATURE_SIZE = 16  # both tiny ResNets pool 16 channels


@pytest.fixture(scope="module")
def tokenizer():
    return minilm_tokenizer()


def frame_featurizer() -> FrameFeaturizer:
    return FrameFeaturizer.from_model(tiny_frame_model(), decode_fps=4, clip_seconds=1.0, shortest_edge=32, crop_size=32)


def region_featurizer(detector: bool = True) -> RegionFeaturizer:
    return RegionFeaturizer.from_models(backbone=tiny_backbone(), detector=tiny_detector() if detector else None,
                                        shortest_edge=64, longest_edge=112, num_regions=5)


@pytest.fixture(scope="module")
def processor(tokenizer):
    return VideoRegionLanguageProcessor.from_featurizers(tokenizer, frame_featurizer(), region_featurizer(), max_regions=12,
                                                         max_text_length=12)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("video") / "clip.mp4", seconds=2.0, fps=8)


def test_sampled_frames_are_evenly_spaced_with_both_ends():
    assert sampled_frame_indices(8, 4) == [0, 2, 5, 7]
    assert sampled_frame_indices(3, 4) == [0, 1, 2]
    assert sampled_frame_indices(10, 1) == [0]


def test_actbert_uses_this_processor():
    assert get_architecture("actbert").processor_class is VideoRegionLanguageProcessor


def test_a_video_gives_actions_and_regions_of_the_sampled_frames(processor, video):
    out = processor(text=["a man cooks"], videos=[video], return_region_class_targets=True)
    assert list(out) == processor.model_input_names + ["region_class_targets"]
    assert out["frame_features"].shape == (1, 2, FEATURE_SIZE)  # 2 s at decode_fps 4 = 8 frames = 2 clips
    frames, _ = decode_video(video, 4)
    np.testing.assert_allclose(out["frame_features"][0].numpy(),
                               processor.frame_featurizer.clip_features(processor.frame_featurizer.pixel_values(frames)).numpy())
    # 4 sampled frames (0, 2, 5, 7), at most ceil(12 / 4) = 3 regions each, in frame order
    assert out["region_features"].shape == (1, 12, FEATURE_SIZE) and out["region_attention_mask"].sum() == 12
    direct = processor.region_featurizer([frames[index] for index in (0, 2, 5, 7)])
    np.testing.assert_array_equal(out["region_features"][0, 3:6].numpy(), direct[1].features[:3])
    np.testing.assert_array_equal(out["region_boxes"][0, 9:12].numpy(), direct[3].boxes[:3])
    assert out["region_class_targets"].shape == (1, 12, 6)
    torch.testing.assert_close(out["region_class_targets"].sum(-1), torch.ones(1, 12))


def test_frames_without_a_detector_give_one_whole_frame_region_each(tokenizer, video):
    processor = VideoRegionLanguageProcessor.from_featurizers(tokenizer, frame_featurizer(), region_featurizer(detector=False),
                                                              region_frames=3)
    frames, _ = decode_video(video, 4)
    from_frames = processor(text=["x"], videos=[[np.asarray(frame) for frame in frames]])
    from_file = processor(text=["x"], videos=[video])
    assert from_frames["region_boxes"].tolist() == [[[0.0, 0.0, 1.0, 1.0]] * 3]
    for key in ("frame_features", "region_features"):
        torch.testing.assert_close(from_frames[key], from_file[key], rtol=0, atol=0)
    with pytest.raises(ValueError, match="region class distributions were requested"):
        processor(text=["x"], videos=[video], return_region_class_targets=True)
    first_clip = VideoRegionLanguageProcessor.from_featurizers(processor.tokenizer, processor.frame_featurizer,
                                                               processor.region_featurizer, region_frames=3, max_frames=1)
    out = first_clip(text=["x"], videos=[video])  # regions from the kept clip's 4 frames: 0, 2 (rounded from 1.5), 3
    assert out["frame_features"].shape == (1, 1, FEATURE_SIZE)
    direct = processor.region_featurizer([frames[0], frames[2], frames[3]], boxes=[np.array([[0, 0, 64, 48]], np.float32)] * 3)
    np.testing.assert_array_equal(out["region_features"][0].numpy(), np.concatenate([record.features for record in direct]))


def test_videos_without_regions_get_an_all_zero_mask_row_and_the_model_runs(tmp_path, processor, video, tokenizer):
    np.save(tmp_path / "clips.npy", np.ones((3, FEATURE_SIZE), np.float32))
    out = processor(text=["a", "b"], videos=[video, tmp_path / "clips.npy"])
    assert out["region_attention_mask"].tolist() == [[1] * 12, [0] * 12]
    assert out["frame_attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
    config = tiny_actbert_config(vocab_size=len(tokenizer), region_feature_size=FEATURE_SIZE, frame_feature_size=FEATURE_SIZE)
    encoded = ActBertModel(config).eval()(**out)
    assert torch.isfinite(encoded.pooled_output).all()

    precomputed = VideoRegionLanguageProcessor(tokenizer, region_feature_size=8)
    empty = precomputed(text=["a", "b"], frame_features=[np.ones((2, 4), np.float32)] * 2,
                        region_features=[np.zeros((0, 8), np.float32), np.ones((2, 8), np.float32)],
                        region_boxes=[np.zeros((0, 4), np.float32), np.full((2, 4), 0.5, np.float32)])
    assert empty["region_attention_mask"].tolist() == [[0, 0], [1, 1]]
    none_at_all = precomputed(text=["a"], frame_features=[FrameRecord("v", np.ones((2, 4), np.float32))])
    assert none_at_all["region_features"].shape == (1, 0, 8) and none_at_all["region_attention_mask"].shape == (1, 0)
    with pytest.raises(ValueError, match="region_feature_size: no video of the batch has regions"):
        VideoRegionLanguageProcessor(tokenizer)(text=["a"], frame_features=[np.ones((2, 4), np.float32)])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"text": ["a"], "frame_features": [np.ones((2, 4))], "region_features": [np.ones((2, 8))]}, "needs region_boxes"),
        ({"text": ["a"], "frame_features": [np.ones((2, 4))], "region_features": [np.ones((2, 8))],
          "region_boxes": [np.full((3, 4), 0.5)]}, "2 regions but region_boxes has 3"),
        ({"text": ["a"], "frame_features": [np.ones((2, 4))], "region_features": [np.ones((1, 6))],
          "region_boxes": [[[0, 0, 1, 1]]]}, r"region_features\[0\]: feature size 6, expected 8"),
        ({"text": ["a"], "frame_features": [np.ones((2, 4))], "region_features": [np.ones((1, 8))],
          "region_boxes": [[[0, 0, 2, 1]]]}, r"region_boxes\[0\].*outside \[0, 1\]"),
        ({"text": ["a", "b"], "frame_features": [np.ones((2, 4))]}, "frame_features has 1 examples but text has 2"),
        ({"text": ["a"], "videos": ["clip.mp4"]}, "needs frame_featurizer_config"),
        ({"text": ["a"], "region_features": [np.ones((1, 8))], "region_boxes": [[[0, 0, 1, 1]]]}, "pass videos or frame_features"),
    ],
)
def test_bad_input_is_rejected_before_compute(tokenizer, kwargs, message):
    with pytest.raises(ValueError, match=message):
        VideoRegionLanguageProcessor(tokenizer, region_feature_size=8)(**kwargs)


def test_frames_need_a_region_featurizer_unless_regions_are_given(tokenizer, video):
    processor = VideoRegionLanguageProcessor.from_featurizers(tokenizer, frame_featurizer(), None)
    with pytest.raises(ValueError, match="regions from frames need region_featurizer_config"):
        processor(text=["a"], videos=[video])
    out = processor(text=["a"], videos=[video], region_features=[np.ones((1, 3), np.float32)], region_boxes=[[[0, 0, 1, 1]]])
    assert out["region_features"].shape == (1, 1, 3) and out["frame_features"].shape == (1, 2, FEATURE_SIZE)


def test_save_and_load_round_trip(tmp_path, processor, video):
    expected = processor(text=["a photo"], videos=[video], return_region_class_targets=True)
    processor.save_pretrained(tmp_path / "saved", remote_code=True)
    config = json.loads((tmp_path / "saved" / "processor_config.json").read_text())
    assert config["auto_map"] == {"AutoProcessor": "processing_video_regions.VideoRegionLanguageProcessor"}
    assert config["frame_featurizer_config"]["backbone"]["source"] == "saved"
    assert config["region_featurizer_config"]["detector"]["source"] == "saved" and config["max_regions"] == 12
    for folder in ("frame_backbone", "region_detector", "region_backbone"):
        assert (tmp_path / "saved" / folder / "model.safetensors").is_file()
    assert {"processing_video_regions.py", "processing_processor.py"} <= set(os.listdir(tmp_path / "saved"))
    assert processor.region_featurizer_config["detector"] == {"source": "memory"}
    loaded = VideoRegionLanguageProcessor.from_pretrained(tmp_path / "saved")
    assert loaded.region_frames == 4 and loaded.max_text_length == 12
    actual = loaded(text=["a photo"], videos=[video], return_region_class_targets=True)
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0)


REMOTE_SCRIPT = """
import sys
sys.modules["vlpretrain"] = None
import torch
from transformers import AutoProcessor

folder = sys.argv[1]
processor = AutoProcessor.from_pretrained(folder + "/saved", trust_remote_code=True)
assert type(processor).__module__.startswith("transformers_modules."), type(processor).__module__
outputs = dict(processor(text=["cook"], videos=[folder + "/clip.mp4"], return_region_class_targets=True))
torch.save(outputs, folder + "/remote_outputs.pt")
print("remote ok", type(processor).__name__)
"""


@pytest.mark.slow
def test_remote_code_load_in_a_fresh_process(tmp_path, processor):
    video = make_video(tmp_path / "clip.mp4", seconds=2.0, fps=8)
    processor.save_pretrained(tmp_path / "saved", remote_code=True)
    expected = processor(text=["cook"], videos=[video], return_region_class_targets=True)
    script = tmp_path / "remote_load.py"
    script.write_text(textwrap.dedent(REMOTE_SCRIPT))
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "HF_MODULES_CACHE")}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"), OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, str(script), str(tmp_path)], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "remote ok VideoRegionLanguageProcessor" in result.stdout
    remote = torch.load(tmp_path / "remote_outputs.pt", weights_only=True)
    assert sorted(remote) == sorted(expected)
    for key, value in expected.items():  # the fresh process runs one thread: float sums may round differently
        torch.testing.assert_close(remote[key], value, rtol=0, atol=1e-5)
