"""VL-BERT: the end-to-end backbone's frozen stages and BatchNorms, and VCR's auxiliary object classification."""

from __future__ import annotations

import pytest
import torch
from helpers.single_stream_factories import INPUT_NAMES, single_stream_batch, subset, tiny_vl_bert_config

from vlpretrain import VlBertForMultipleChoice, VlBertForPreTraining
from vlpretrain.modeling.losses import IGNORE_INDEX

BACKBONE = {"model_type": "resnet", "embedding_size": 8, "hidden_sizes": [8, 12], "depths": [1, 1],
            "layer_type": "basic", "out_features": ["stage2"]}
TARGETS = ("labels", "masked_regions", "region_class_targets", "text_only")


def _end_to_end_step(config, steps: int = 1) -> tuple[VlBertForPreTraining, dict, dict]:
    """One AdamW step of an end-to-end model; returns it, the parameters and the buffers from before the step."""
    torch.manual_seed(0)
    model = VlBertForPreTraining(config).train()
    with torch.no_grad():  # at initialisation the visual gains are 0, so no gradient reaches the features yet
        model.vl_bert.embeddings.visual_ln_object.weight.fill_(1.0)
    before = {name: value.detach().clone() for name, value in model.vl_bert.backbone.named_parameters()}
    buffers = {name: value.clone() for name, value in model.vl_bert.backbone.named_buffers()}
    inputs = subset(single_stream_batch(config, regions=3), (*INPUT_NAMES, *TARGETS))
    inputs.pop("region_features")
    inputs["pixel_values"] = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.AdamW([parameter for parameter in model.parameters() if parameter.requires_grad], lr=0.1)
    for _ in range(steps):
        model(**inputs).loss.backward()
        optimizer.step()
    return model, before, buffers


def test_end_to_end_freezes_the_stem_the_first_stage_and_batch_norm(tmp_path):
    config = tiny_vl_bert_config(backbone_config=BACKBONE, region_feature_size=12, roi_output_size=2)
    assert config.backbone_frozen_stages == 2 and config.backbone_frozen_batch_norm
    model, before, buffers = _end_to_end_step(config)
    backbone = model.vl_bert.backbone
    frozen_prefixes = ("embedder.", "encoder.stages.0.")
    norms = {name for name, module in backbone.named_modules() if isinstance(module, torch.nn.BatchNorm2d)}
    assert norms and all(not backbone.get_submodule(name).training for name in norms)
    for name, parameter in backbone.named_parameters():
        frozen = name.startswith(frozen_prefixes) or name.rsplit(".", 1)[0] in norms
        if frozen:
            assert not parameter.requires_grad and parameter.grad is None, name
            assert torch.equal(parameter, before[name]), name
        else:
            assert float(parameter.grad.abs().sum()) > 0, name
            assert not torch.equal(parameter, before[name]), name
    trained = [name for name in before if not name.startswith(frozen_prefixes) and name.rsplit(".", 1)[0] not in norms]
    assert any(name.startswith("encoder.stages.1.") for name in trained)
    for name, value in backbone.named_buffers():
        assert torch.equal(value, buffers[name]), f"{name} changed: BatchNorm statistics must stay fixed"
    model.eval().train()
    assert all(not backbone.get_submodule(name).training for name in norms)
    model.save_pretrained(tmp_path)
    reloaded = VlBertForPreTraining.from_pretrained(tmp_path)
    assert not reloaded.vl_bert.backbone.embedder.embedder.convolution.weight.requires_grad


def test_end_to_end_backbone_can_train_whole():
    config = tiny_vl_bert_config(backbone_config=BACKBONE, region_feature_size=12, roi_output_size=2,
                                 backbone_frozen_stages=0, backbone_frozen_batch_norm=False)
    model, before, buffers = _end_to_end_step(config)
    backbone = model.vl_bert.backbone
    assert float(backbone.embedder.embedder.convolution.weight.grad.abs().sum()) > 0
    assert float(backbone.embedder.embedder.normalization.weight.grad.abs().sum()) > 0
    assert not torch.equal(backbone.embedder.embedder.normalization.running_mean, buffers["embedder.embedder.normalization.running_mean"])
    with pytest.raises(ValueError, match="backbone_frozen_stages: the backbone has 3 stages"):
        VlBertForPreTraining(tiny_vl_bert_config(backbone_config=BACKBONE, region_feature_size=12, backbone_frozen_stages=4))
    with pytest.raises(ValueError, match="backbone_frozen_stages must be 0 or more"):
        tiny_vl_bert_config(backbone_frozen_stages=-1)


def _choices(batch: dict, choices: int = 4) -> dict:
    ids = batch["input_ids"][:, None].repeat(1, choices, 1)
    ids[:, :, 2] = torch.arange(5, 5 + choices)  # the choices differ
    return dict(input_ids=ids, attention_mask=batch["attention_mask"][:, None].repeat(1, choices, 1),
                region_features=batch["region_features"], region_boxes=batch["region_boxes"],
                region_attention_mask=batch["region_attention_mask"], labels=torch.tensor([0, 3, 1]))


def test_multiple_choice_adds_the_object_classification_loss():
    config = tiny_vl_bert_config(vcr_num_object_labels=7)
    batch = single_stream_batch(config, labels=False)
    model = VlBertForMultipleChoice(config).eval()
    object_labels = torch.tensor([[1, 2, 3, 4, 5], [6, 0, 1, 2, 3], [IGNORE_INDEX, 2, 2, 4, 0]])
    output = model(**_choices(batch), region_object_labels=object_labels)
    assert output.object_logits.shape == (3, 4, 5, 7)
    # Every valid, labelled region of every choice counts (sample 1's last two regions are padding).
    counted = batch["region_attention_mask"].bool() & (object_labels != IGNORE_INDEX)
    counted = counted[:, None].expand(3, 4, 5)
    expected = torch.nn.functional.cross_entropy(output.object_logits[counted], object_labels[:, None].expand(3, 4, 5)[counted])
    torch.testing.assert_close(output.object_loss, expected)
    torch.testing.assert_close(output.loss, output.choice_loss + output.object_loss)
    choice_only = model(**_choices(batch))
    assert choice_only.object_loss is None
    torch.testing.assert_close(choice_only.loss, output.choice_loss)
    weighted = VlBertForMultipleChoice(tiny_vl_bert_config(vcr_num_object_labels=7, vcr_object_loss_weight=0.5)).eval()
    weighted.load_state_dict(model.state_dict())
    torch.testing.assert_close(weighted(**_choices(batch), region_object_labels=object_labels).loss,
                               output.choice_loss + 0.5 * output.object_loss)
    model.train()
    model(**_choices(batch), region_object_labels=object_labels).loss.backward()
    assert float(model.region_class_head.object_scores.weight.grad.abs().sum()) > 0
    assert float(model.vl_bert.layers[0].attention.qkv.weight.grad.abs().sum()) > 0


def test_multiple_choice_object_head_starts_from_the_pretraining_transform(tmp_path):
    config = tiny_vl_bert_config(vcr_num_object_labels=7)
    pretrained = VlBertForPreTraining(config)
    pretrained.save_pretrained(tmp_path)
    model = VlBertForMultipleChoice.from_pretrained(tmp_path)
    torch.testing.assert_close(model.region_class_head.dense.weight, pretrained.region_class_head.dense.weight)
    torch.testing.assert_close(model.region_class_head.dense.bias, pretrained.region_class_head.dense.bias)
    assert model.region_class_head.object_scores.weight.shape == (7, 32)


def test_multiple_choice_object_labels_are_checked():
    config = tiny_vl_bert_config(vcr_num_object_labels=7)
    inputs = _choices(single_stream_batch(config, labels=False))
    with pytest.raises(ValueError, match=r"region_object_labels: expected shape \(3, 5\) \(integer object classes\)"):
        VlBertForMultipleChoice(config)(**inputs, region_object_labels=torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"region_object_labels: expected ids in \[0, 7\) \(config.vcr_num_object_labels\)"):
        VlBertForMultipleChoice(config)(**inputs, region_object_labels=torch.full((3, 5), 7))
    without_head = VlBertForMultipleChoice(tiny_vl_bert_config(vcr_object_loss_weight=0.0))
    assert without_head.region_class_head is None
    with pytest.raises(ValueError, match="region_object_labels: config.vcr_object_loss_weight is 0"):
        without_head(**inputs, region_object_labels=torch.zeros(3, 5, dtype=torch.long))
