"""Frame features: PyAV decoding at a chosen fps, clip pooling at fixed rates, precomputed feature files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.processing import make_video, tiny_frame_model, tiny_video_model

from vlpretrain.processing.frames import FrameFeaturizer, decode_video, read_frame_features


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("videos") / "clip.mp4", seconds=3.0, fps=10)


def test_decode_samples_the_most_recent_frame_at_each_instant(video):
    frames, duration = decode_video(video, fps=4)
    assert duration == pytest.approx(3.0, abs=0.11)
    assert len(frames) == 12
    # frame i of the 10 fps source is grey 8 * i; instant k / 4 s shows source frame floor(k * 10 / 4)
    expected = [8 * int(k * 10 / 4) for k in range(12)]
    observed = [int(np.asarray(frame)[10:20, 10:20].mean()) for frame in frames]
    assert max(abs(a - b) for a, b in zip(observed, expected)) <= 6
    assert len(decode_video(video, fps=4, max_frames=5)[0]) == 5


def test_image_backbone_clips_are_means_of_their_frames(video):
    model = tiny_frame_model()
    hero = FrameFeaturizer.from_model(model, decode_fps=4, clip_seconds=1.5, shortest_edge=32, crop_size=32)
    record = hero.featurize_video(video)
    assert record.video_id == "clip" and record.features.shape == (2, 16) and record.clip_seconds == 1.5
    frames, _ = decode_video(video, fps=4)
    with torch.no_grad():
        per_frame = model(pixel_values=hero.pixel_values(frames)).pooler_output.flatten(1)
    np.testing.assert_allclose(record.features[1], per_frame[6:12].mean(0).numpy(), rtol=1e-5, atol=1e-6)
    univl = FrameFeaturizer.from_model(model, decode_fps=4, clip_seconds=1.0, shortest_edge=32, crop_size=32, max_clips=2)
    assert univl.featurize_video(video).features.shape == (2, 16)
    assert FrameFeaturizer.from_model(model, decode_fps=4, clip_seconds=1.0, shortest_edge=32, crop_size=32).featurize_video(video).features.shape == (3, 16)


def test_video_backbone_gets_one_clip_per_call(video):
    featurizer = FrameFeaturizer.from_model(tiny_video_model(), backbone_input="video", decode_fps=4, clip_seconds=1.0, shortest_edge=32, crop_size=32)
    record = featurizer([video], video_ids=["v"])[0]
    assert record.video_id == "v" and record.features.shape == (3, 32)
    assert np.isfinite(record.features).all() and not np.allclose(record.features[0], record.features[2])


def test_undecodable_video_and_bad_settings(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 512)
    with pytest.raises(ValueError, match="broken.mp4: cannot decode video"):
        decode_video(broken, fps=4)
    with pytest.raises(FileNotFoundError, match="absent.mp4"):
        decode_video(tmp_path / "absent.mp4", fps=4)
    with pytest.raises(ValueError, match="whole number of frames"):
        FrameFeaturizer({"decode_fps": 10, "clip_seconds": 1.25})
    with pytest.raises(ValueError, match="backbone_input"):
        FrameFeaturizer({"backbone_input": "audio"})


def test_precomputed_feature_files(tmp_path):
    features = np.random.RandomState(0).rand(5, 12).astype(np.float32)
    np.save(tmp_path / "v1.npy", features)
    np.savez(tmp_path / "v2.npz", features=features, extra=np.arange(3))
    np.savez(tmp_path / "v3.npz", s3d=features)
    np.testing.assert_array_equal(read_frame_features(tmp_path / "v1.npy").features, features)
    assert read_frame_features(tmp_path / "v2.npz").video_id == "v2"
    np.testing.assert_array_equal(read_frame_features(tmp_path / "v3.npz").features, features)
    with pytest.raises(ValueError, match="feature size 12 differs from the expected 1024"):
        read_frame_features(tmp_path / "v1.npy", feature_size=1024)
    np.save(tmp_path / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickled.npy: cannot read without unpickling"):
        read_frame_features(tmp_path / "pickled.npy")
    np.save(tmp_path / "flat.npy", features[0])
    with pytest.raises(ValueError, match=r"shape \(num_clips >= 1, D\)"):
        read_frame_features(tmp_path / "flat.npy")
