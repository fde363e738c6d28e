"""VideoBERT's visual-word tokenizer: deterministic hierarchical k-means, save/load, CLI, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers.actbert_videobert_factories import clip_features, fitted_tokenizer

from vlpretrain.cli import main as cli_main
from vlpretrain.processing.frames import FrameRecord
from vlpretrain.processing.store import write_feature_store
from vlpretrain.processing.visual_words import VisualWordTokenizer


def test_fit_is_deterministic_for_a_seed_and_differs_across_seeds():
    first, second, other = fitted_tokenizer(seed=3), fitted_tokenizer(seed=3), fitted_tokenizer(seed=4)
    assert first.vocab_size == 9 and first.centroids.shape == (9, 16)
    for a, b in zip(first.level_centroids, second.level_centroids):
        assert torch.equal(a, b)
    assert not torch.equal(first.centroids, other.centroids)


def test_default_is_four_levels_of_twelve():
    assert VisualWordTokenizer().vocab_size == 20736


def test_clips_map_to_a_nearby_leaf_and_tree_nests():
    tokenizer = fitted_tokenizer()
    features = clip_features()
    ids = tokenizer.encode(features)
    distances = ((torch.from_numpy(features)[:, None] - tokenizer.centroids[None]) ** 2).sum(-1)
    assert torch.equal(ids, distances.argmin(-1))
    assert len(torch.unique(ids)) >= 6  # the six blobs get their own words
    # Level 0 centre of node n is near the mean of its children at level 1.
    children = tokenizer.level_centroids[1].reshape(3, 3, -1).mean(1)
    assert torch.allclose(children, tokenizer.level_centroids[0], atol=3.0)


def test_save_load_round_trip_is_plain_json_and_safetensors(tmp_path):
    tokenizer = fitted_tokenizer()
    tokenizer.save_pretrained(tmp_path)
    settings = json.loads((tmp_path / "visual_words.json").read_text())
    assert settings["num_levels"] == 2 and settings["feature_size"] == 16
    loaded = VisualWordTokenizer.from_pretrained(tmp_path)
    features = clip_features(seed=5)
    assert torch.equal(loaded.encode(features), tokenizer.encode(features))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["visual_words.json", "visual_words.safetensors"]


def test_memmap_input_gives_the_same_fit(tmp_path):
    features = clip_features()
    np.save(tmp_path / "clips.npy", features)
    mapped = np.load(tmp_path / "clips.npy", mmap_mode="r")
    a = VisualWordTokenizer(2, 3, batch_size=64).fit(features)
    b = VisualWordTokenizer(2, 3, batch_size=64).fit(mapped)
    assert torch.equal(a.centroids, b.centroids)


def test_bad_input_is_named():
    tokenizer = fitted_tokenizer()
    with pytest.raises(ValueError, match="not fitted"):
        VisualWordTokenizer().encode(np.zeros((2, 16), np.float32))
    with pytest.raises(ValueError, match="clip features of size 16"):
        tokenizer.encode(np.zeros((2, 15), np.float32))
    with pytest.raises(ValueError, match=r"ids in \[0, 9\)"):
        tokenizer.decode(torch.tensor([0, 9]))
    with pytest.raises(ValueError, match="finite"):
        VisualWordTokenizer(2, 3).fit(np.full((10, 4), np.nan, np.float32))
    with pytest.raises(ValueError, match="num_clusters"):
        VisualWordTokenizer(num_clusters=1)
    with pytest.raises(ValueError, match="expected finite clip features"):
        tokenizer.encode(np.full((2, 16), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"ids in \[0, 9\)"):
        tokenizer.nearest_clips(torch.tensor([-1]), clip_features())
    with pytest.raises(ValueError, match="clip_features: expected clip features of size 16"):
        tokenizer.nearest_clips(torch.tensor([1]), np.zeros((3, 4), np.float32))


def test_a_damaged_saved_tokenizer_is_refused_by_name(tmp_path):
    fitted_tokenizer().save_pretrained(tmp_path)
    config = tmp_path / "visual_words.json"
    settings = json.loads(config.read_text())
    config.write_text(json.dumps({**settings, "num_levels": 3}))
    with pytest.raises(ValueError, match="centroid shapes"):
        VisualWordTokenizer.from_pretrained(tmp_path)
    config.write_text(json.dumps({**settings, "colour": 1}))
    with pytest.raises(ValueError, match="expected the settings"):
        VisualWordTokenizer.from_pretrained(tmp_path)
    config.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        VisualWordTokenizer.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="lacks visual_words.json"):
        VisualWordTokenizer.from_pretrained(tmp_path / "missing")


def test_nearest_clips_show_generated_words():
    tokenizer = fitted_tokenizer()
    gallery = clip_features(seed=9)
    indices = tokenizer.nearest_clips(torch.tensor([[0, 4]]), gallery)
    assert indices.shape == (1, 2)
    expected = ((torch.from_numpy(gallery) - tokenizer.centroids[4]) ** 2).sum(-1).argmin()
    assert int(indices[0, 1]) == int(expected)


def test_cli_fits_on_a_frame_store_and_on_npy(tmp_path):
    features = clip_features(count=120)
    records = [FrameRecord(video_id=f"v{i}", features=features[i * 12 : (i + 1) * 12], clip_seconds=1.5, duration=18.0)
               for i in range(10)]
    write_feature_store(records, tmp_path / "store", kind="frames")
    assert cli_main(["visual-words", "fit", "--features", str(tmp_path / "store"), "--output-dir", str(tmp_path / "vw"),
                     "--num-levels", "2", "--num-clusters", "3", "--batch-size", "32"]) == 0
    from_store = VisualWordTokenizer.from_pretrained(tmp_path / "vw")
    np.save(tmp_path / "clips.npy", features)
    assert cli_main(["visual-words", "fit", "--features", str(tmp_path / "clips.npy"), "--output-dir", str(tmp_path / "vw2"),
                     "--num-levels", "2", "--num-clusters", "3", "--batch-size", "32"]) == 0
    assert torch.equal(VisualWordTokenizer.from_pretrained(tmp_path / "vw2").centroids, from_store.centroids)
