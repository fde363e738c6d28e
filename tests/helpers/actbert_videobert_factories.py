"""Tiny configs, fitted visual-word tokenizers and random batches for the ActBERT and VideoBERT tests."""

from __future__ import annotations

import numpy as np
import torch

from vlpretrain.configuration.video_bert import VideoBertConfig
from vlpretrain.processing.visual_words import VisualWordTokenizer

VIDEO_FEATURE_SIZE = 16


def clip_features(count: int = 300, size: int = VIDEO_FEATURE_SIZE, seed: int = 0) -> np.ndarray:
    """Random clip features drawn around a few centres, so k-means has structure to find."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((6, size)).astype(np.float32) * 4
    return (centres[rng.integers(0, 6, count)] + rng.standard_normal((count, size)).astype(np.float32)).astype(np.float32)


def fitted_tokenizer(levels: int = 2, clusters: int = 3, seed: int = 0) -> VisualWordTokenizer:
    return VisualWordTokenizer(num_levels=levels, num_clusters=clusters, batch_size=64, seed=seed).fit(clip_features())


def tiny_videobert_config(**overrides) -> VideoBertConfig:
    """A VideoBERT config small enough for CPU tests (2 x 3 = 9 visual words), every objective on."""
    values = dict(
        vocab_size=120, hidden_size=32, num_attention_heads=4, intermediate_size=48, num_hidden_layers=2,
        max_position_embeddings=40, frame_feature_size=VIDEO_FEATURE_SIZE, num_visual_levels=2, num_visual_clusters=3,
    )
    values.update(overrides)
    return VideoBertConfig(**values)


def fitted_videobert(model_class, config=None, seed: int = 0):
    """A model of ``model_class`` with a fitted tokenizer, weights seeded."""
    torch.manual_seed(seed)
    model = model_class(config or tiny_videobert_config())
    model.set_visual_word_tokenizer(fitted_tokenizer())
    return model


def video_text_batch(config, batch: int = 3, text_length: int = 6, frames: int = 5, seed: int = 0, labels: bool = True) -> dict:
    """Random text + frame inputs and targets; sample 0 has padded tokens, sample 1 padded frames."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 100, (batch, text_length), generator=generator)
    input_ids[:, 0] = 101
    attention_mask = torch.ones(batch, text_length, dtype=torch.long)
    attention_mask[0, -2:] = 0
    input_ids[0, -2:] = 0
    frame_attention_mask = torch.ones(batch, frames, dtype=torch.long)
    frame_attention_mask[min(1, batch - 1), -2:] = 0
    centres = torch.from_numpy(clip_features(count=batch * frames, seed=seed + 1))
    frame_features = centres.reshape(batch, frames, -1) * frame_attention_mask[..., None]
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, frame_features=frame_features,
                  frame_attention_mask=frame_attention_mask)
    if not labels:
        return inputs
    mlm = torch.full_like(input_ids, -100)
    mlm[:, 2] = input_ids[:, 2]
    input_ids = input_ids.clone()
    input_ids[:, 2] = config.mask_token_id
    masked = torch.zeros(batch, frames, dtype=torch.bool)
    masked[:, 1] = True
    masked_features = frame_features.clone()
    masked_features[masked] = 0
    inputs.update(input_ids=input_ids, labels=mlm, masked_frames=masked, frame_feature_targets=frame_features,
                  frame_features=masked_features, matched_labels=torch.arange(batch) % 2)
    return inputs


def tiny_actbert_config(**overrides):
    """An ActBERT config small enough for CPU tests: 3 text, 2 region, 2 action layers, 2 tangled blocks."""
    from vlpretrain.configuration.actbert import ActBertConfig

    values = dict(
        vocab_size=120, hidden_size=32, num_attention_heads=4, intermediate_size=48, num_hidden_layers=3,
        v_hidden_size=24, v_num_attention_heads=4, v_intermediate_size=24, v_num_hidden_layers=2,
        a_hidden_size=16, a_num_attention_heads=4, a_intermediate_size=32, a_num_hidden_layers=2,
        bi_hidden_size=24, bi_num_attention_heads=4, t_ent_attention_id=[1, 2], v_ent_attention_id=[0, 1],
        a_ent_attention_id=[0, 1], region_feature_size=12, frame_feature_size=10, num_object_labels=5,
        num_action_labels=6, max_position_embeddings=32,
    )
    values.update(overrides)
    return ActBertConfig(**values)


def actbert_batch(config, batch: int = 3, text_length: int = 6, frames: int = 4, regions: int = 3, seed: int = 0,
                  labels: bool = True) -> dict:
    """Random inputs and targets; sample 0 has padded tokens, sample 1 padded frames, sample 2 no region at all."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, config.vocab_size, (batch, text_length), generator=generator)
    attention_mask = torch.ones(batch, text_length, dtype=torch.long)
    attention_mask[0, -2:] = 0
    input_ids[0, -2:] = 0
    frame_attention_mask = torch.ones(batch, frames, dtype=torch.long)
    frame_attention_mask[1, -1] = 0
    frame_features = torch.randn(batch, frames, config.frame_feature_size, generator=generator) * frame_attention_mask[..., None]
    region_attention_mask = torch.ones(batch, regions, dtype=torch.long)
    region_attention_mask[2] = 0
    corners = torch.rand(batch, regions, 2, 2, generator=generator)
    region_boxes = torch.cat([corners.min(2).values, corners.max(2).values], -1) * region_attention_mask[..., None]
    region_features = torch.randn(batch, regions, config.region_feature_size, generator=generator) * region_attention_mask[..., None]
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, frame_features=frame_features,
                  frame_attention_mask=frame_attention_mask, region_features=region_features, region_boxes=region_boxes,
                  region_attention_mask=region_attention_mask)
    if not labels:
        return inputs
    mlm = torch.full_like(input_ids, -100)
    mlm[:, 1] = input_ids[:, 1]
    masked_frames = torch.zeros(batch, frames, dtype=torch.bool)
    masked_frames[:, 0] = True
    masked_regions = torch.zeros(batch, regions, dtype=torch.bool)
    masked_regions[:, 1] = True
    targets = torch.softmax(torch.randn(batch, regions, config.num_object_labels, generator=generator) * 3, -1)
    inputs.update(labels=mlm, masked_frames=masked_frames, action_labels=torch.arange(batch) % config.num_action_labels,
                  masked_regions=masked_regions, region_class_targets=targets, matched_labels=torch.arange(batch) % 2)
    inputs["frame_features"] = frame_features.masked_fill(masked_frames[..., None], 0.0)
    inputs["region_features"] = region_features.masked_fill(masked_regions[..., None], 0.0)
    return inputs
