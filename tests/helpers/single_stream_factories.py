"""Tiny VL-BERT / ImageBERT configs and random single-stream batches for the tests."""

from __future__ import annotations

import torch

from vlpretrain.configuration.image_bert import ImageBertConfig
from vlpretrain.configuration.vl_bert import VlBertConfig

from .factories import random_boxes

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids", "region_features", "region_boxes", "region_attention_mask")
_SIZES = dict(
    vocab_size=64,
    hidden_size=32,
    num_attention_heads=4,
    intermediate_size=48,
    num_hidden_layers=2,
    max_position_embeddings=40,
    region_feature_size=12,
    num_object_labels=9,
)


def tiny_vl_bert_config(**overrides) -> VlBertConfig:
    """A VL-BERT config small enough for CPU tests, with every objective (matching included) switched on."""
    values = dict(_SIZES, geometry_size=16, mask_token_id=3, sep_token_id=2,
                  loss_weights={"mlm": 1.0, "text_mlm": 1.0, "region_class": 1.0, "matching": 1.0})
    values.update(overrides)
    return VlBertConfig(**values)


def tiny_image_bert_config(**overrides) -> ImageBertConfig:
    """An ImageBERT config small enough for CPU tests, with every objective switched on."""
    values = dict(_SIZES)
    values.update(overrides)
    return ImageBertConfig(**values)


def single_stream_batch(config, batch: int = 3, text_length: int = 7, regions: int = 5, seed: int = 0, labels: bool = True) -> dict:
    """Random inputs and targets of every VL-BERT / ImageBERT objective; sample 0 has padded tokens, sample 1 padded
    regions, sample 2 is a text-only row (``text_only``), region 0 of every sample is masked (zeroed)."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, config.vocab_size, (batch, text_length), generator=generator)
    attention_mask = torch.ones(batch, text_length, dtype=torch.long)
    attention_mask[0, text_length - 2 :] = 0
    input_ids[0, text_length - 2 :] = 0
    region_attention_mask = torch.ones(batch, regions, dtype=torch.long)
    if batch > 1:
        region_attention_mask[1, regions - 2 :] = 0
    region_features = torch.randn(batch, regions, config.region_feature_size, generator=generator).abs()
    region_boxes = random_boxes(batch, regions, generator)
    region_features[region_attention_mask == 0] = 0
    region_boxes[region_attention_mask == 0] = 0
    inputs = dict(
        input_ids=input_ids,
        attention_mask=attention_mask,
        token_type_ids=torch.zeros(batch, text_length, dtype=torch.long),
        region_features=region_features,
        region_boxes=region_boxes,
        region_attention_mask=region_attention_mask,
    )
    if not labels:
        return inputs
    mlm_labels = torch.full((batch, text_length), -100)
    mlm_labels[:, 1] = input_ids[:, 1]
    mlm_labels[:, 3] = input_ids[:, 3]
    masked_regions = torch.zeros(batch, regions, dtype=torch.bool)
    masked_regions[:, 0] = True
    masked_regions[:, 2] = True
    targets = region_features.clone()
    inputs["region_features"] = region_features.masked_fill(masked_regions[..., None], 0.0)
    distribution = torch.softmax(3 * torch.randn(batch, regions, config.num_object_labels, generator=generator), -1)
    inputs.update(
        labels=mlm_labels,
        masked_regions=masked_regions,
        region_class_targets=distribution,
        region_feature_targets=targets,
        region_object_labels=distribution.argmax(-1),
        matched_labels=torch.tensor([1, 0, 1][:batch] + [1] * max(0, batch - 3)),
        text_only=torch.tensor([False, False, True][:batch] + [False] * max(0, batch - 3)),
    )
    return inputs


def subset(batch: dict, names) -> dict:
    """The entries of ``batch`` named in ``names`` (those present)."""
    return {name: batch[name] for name in names if name in batch}
