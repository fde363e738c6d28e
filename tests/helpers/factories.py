"""Builders of tiny configs and random batches used across the test suite."""

from __future__ import annotations

import torch

from vlpretrain.configuration.lxmert import LxmertConfig


def tiny_lxmert_config(**overrides) -> LxmertConfig:
    """An LXMERT config small enough for CPU tests, with every objective switched on."""
    values = dict(
        vocab_size=64,
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=48,
        num_text_layers=2,
        num_visual_layers=1,
        num_cross_layers=2,
        max_position_embeddings=32,
        region_feature_size=12,
        num_object_labels=9,
        num_attribute_labels=5,
        num_qa_labels=6,
    )
    values.update(overrides)
    return LxmertConfig(**values)


def random_boxes(batch: int, regions: int, generator: torch.Generator) -> torch.Tensor:
    """Valid (x1, y1, x2, y2) boxes inside [0, 1]."""
    corners = torch.rand(batch, regions, 2, 2, generator=generator)
    low, high = corners.min(dim=2).values, corners.max(dim=2).values
    return torch.cat([low, high], dim=-1)


def image_text_batch(config, batch: int = 3, text_length: int = 7, regions: int = 5, seed: int = 0, labels: bool = True) -> dict:
    """Random model inputs and pretraining targets; sample 0 has padded tokens, sample 1 padded regions."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, config.vocab_size, (batch, text_length), generator=generator)
    attention_mask = torch.ones(batch, text_length, dtype=torch.long)
    attention_mask[0, text_length - 2 :] = 0
    input_ids[0, text_length - 2 :] = 0
    region_attention_mask = torch.ones(batch, regions, dtype=torch.long)
    if batch > 1:
        region_attention_mask[1, regions - 2 :] = 0
    region_features = torch.randn(batch, regions, config.region_feature_size, generator=generator)
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
    inputs.update(
        labels=mlm_labels,
        masked_regions=masked_regions,
        region_feature_targets=region_features.clone(),
        region_object_labels=torch.randint(0, config.num_object_labels, (batch, regions), generator=generator),
        region_object_confidences=torch.rand(batch, regions, generator=generator),
        region_attribute_labels=torch.randint(0, config.num_attribute_labels, (batch, regions), generator=generator),
        region_attribute_confidences=torch.rand(batch, regions, generator=generator),
        matched_labels=torch.tensor([1, 0, 1][:batch] + [1] * max(0, batch - 3)),
        answer_labels=torch.tensor([2, -100, 4][:batch] + [0] * max(0, batch - 3)),
    )
    return inputs
