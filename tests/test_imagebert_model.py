"""ImageBERT: embeddings, the four objectives, task heads, kernels, checkpointing, save/load and input checks."""

from __future__ import annotations

import pytest
import torch
import transformers
from helpers.single_stream_factories import INPUT_NAMES, single_stream_batch, subset, tiny_image_bert_config

from vlpretrain import (
    ImageBertConfig,
    ImageBertForImageTextRetrieval,
    ImageBertForPreTraining,
    ImageBertForQuestionAnswering,
    ImageBertModel,
)
from vlpretrain.modeling.losses import IGNORE_INDEX

PRETRAINING_NAMES = (
    *INPUT_NAMES, "labels", "masked_regions", "region_object_labels", "region_feature_targets", "matched_labels",
)


@pytest.fixture
def config():
    return tiny_image_bert_config()


@pytest.fixture
def batch(config):
    return single_stream_batch(config)


def test_base_size_parameter_count():
    with torch.device("meta"):
        model = ImageBertForPreTraining(ImageBertConfig())
    count = sum(parameter.numel() for parameter in model.parameters())
    # BERT-base with pooler (109.5M) + feature/box projections (1.58M) + MLM head (0.62M) + MOC/MRFR head and ITM.
    assert round(count / 1e6, 2) == 115.08
    assert model.image_bert.embeddings.token_type_embeddings.weight.shape[0] == 2


def test_regions_share_the_dummy_position_and_the_image_segment(config, batch):
    model = ImageBertModel(config).eval()
    inputs = subset(batch, INPUT_NAMES)
    output = model(**inputs)
    size, length = batch["input_ids"].shape
    assert output.last_hidden_state.shape == (size, length + 5, 32)
    assert output.visual_last_hidden_state.shape == (size, 5, 32)
    # Regions carry no order: permuting them permutes their outputs and leaves the text unchanged.
    order = torch.tensor([3, 0, 4, 1, 2])
    permuted = dict(inputs, **{name: inputs[name][:, order] for name in ("region_features", "region_boxes", "region_attention_mask")})
    output_permuted = model(**permuted)
    torch.testing.assert_close(output_permuted.visual_last_hidden_state, output.visual_last_hidden_state[:, order], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(output_permuted.text_last_hidden_state, output.text_last_hidden_state, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        model.embeddings.position_embeddings.weight[config.dummy_region_position] += 1.0
    assert not torch.allclose(model(**inputs).visual_last_hidden_state, output.visual_last_hidden_state)
    assert config.dummy_region_position == config.max_position_embeddings - 1


def test_pretraining_returns_every_objective_and_their_weighted_sum(config, batch):
    model = ImageBertForPreTraining(config).eval()
    output = model(**subset(batch, PRETRAINING_NAMES))
    names = ("mlm", "region_object", "region_feature", "matching")
    losses = {name: output[f"{name}_loss"] for name in names}
    assert all(value is not None and torch.isfinite(value) and value > 0 for value in losses.values())
    torch.testing.assert_close(output.loss, sum(config.loss_weights[name] * value for name, value in losses.items()))
    selected = batch["masked_regions"] & batch["region_attention_mask"].bool()
    logits = output.region_object_logits[selected]
    torch.testing.assert_close(output.region_object_loss,
                               torch.nn.functional.cross_entropy(logits, batch["region_object_labels"][selected]))
    squared = (output.region_feature_predictions - batch["region_feature_targets"]).pow(2).mean(-1)
    torch.testing.assert_close(output.region_feature_loss, squared[selected].mean())
    assert output.prediction_logits.shape == ((batch["labels"] != IGNORE_INDEX).sum(), config.vocab_size)


def test_objectives_can_be_switched_off_and_weighted(batch):
    model = ImageBertForPreTraining(tiny_image_bert_config(loss_weights={"mlm": 2.0, "region_feature": 0.5})).eval()
    assert model.matching_head is None and "object" not in model.region_head.decoders
    output = model(**subset(batch, PRETRAINING_NAMES))
    assert output.matching_loss is None and output.region_object_loss is None
    torch.testing.assert_close(output.loss, 2.0 * output.mlm_loss + 0.5 * output.region_feature_loss)
    with pytest.raises(ValueError, match="loss_weights.*unknown objectives"):
        tiny_image_bert_config(loss_weights={"region_class": 1.0})


def test_activation_checkpointing_gives_the_same_gradients(batch):
    config = tiny_image_bert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    plain = ImageBertForPreTraining(config).train()
    checkpointed = ImageBertForPreTraining(config).train()
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.activation_checkpointing_enable()
    for model in (plain, checkpointed):
        model(**subset(batch, PRETRAINING_NAMES)).loss.backward()
    for (name, first), (_, second) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        if first.grad is not None:
            torch.testing.assert_close(first.grad, second.grad, atol=1e-6, rtol=1e-5, msg=name)


def test_task_models_and_checkpoint_reuse(tmp_path, config, batch):
    inputs = subset(batch, INPUT_NAMES)
    pretrained = ImageBertForPreTraining(config).eval()
    pretrained.save_pretrained(tmp_path)
    retrieval = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert isinstance(retrieval, ImageBertForImageTextRetrieval)
    output = retrieval(**inputs, labels=torch.tensor([1, 0, 1]))
    torch.testing.assert_close(output.logits, pretrained(**inputs).matching_logits)
    torch.testing.assert_close(output.scores, output.logits[:, 1] - output.logits[:, 0])
    vqa = ImageBertForQuestionAnswering(tiny_image_bert_config(id2label={0: "a", 1: "b"})).eval()
    assert vqa(**inputs, labels=torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.3, 0.0]])).logits.shape == (3, 2)
    assert isinstance(transformers.AutoModel.from_pretrained(tmp_path), ImageBertModel)
    assert isinstance(transformers.AutoConfig.for_model("vlpretrain-image-bert"), ImageBertConfig)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("region_boxes", lambda b: b["region_boxes"][..., :3], r"region_boxes: expected shape \(3, 5, 4\)"),
        ("region_object_labels", lambda b: b["region_object_labels"].float(), "region_object_labels: expected integer"),
        ("region_feature_targets", lambda b: b["region_feature_targets"][:, :2], "region_feature_targets: expected shape"),
        ("input_ids", lambda b: torch.ones(3, 40, dtype=torch.long), "input_ids: 40 tokens"),
        ("matched_labels", lambda b: torch.ones(2, dtype=torch.long), r"matched_labels: expected shape \(3,\)"),
    ],
)
def test_bad_inputs_raise_a_clear_error(config, batch, name, value, message):
    inputs = subset(batch, PRETRAINING_NAMES)
    inputs[name] = value(batch)
    if name == "input_ids":
        inputs = {key: item for key, item in inputs.items() if key not in ("attention_mask", "token_type_ids", "labels")}
    with pytest.raises(ValueError, match=message):
        ImageBertForPreTraining(config)(**inputs)
    masked = subset(batch, PRETRAINING_NAMES)
    masked.pop("masked_regions")
    with pytest.raises(ValueError, match="masked_regions: required"):
        ImageBertForPreTraining(config)(**masked)
