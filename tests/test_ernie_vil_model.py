"""ERNIE-ViL: base size, differences from ViLBERT, scene-graph objectives, heads, kernels, checkpointing and saving."""

from __future__ import annotations

import pytest
import torch
import transformers
from helpers.vilbert_factories import tiny_ernie_vil_config, two_stream_batch

from vlpretrain import (
    ErnieVilConfig,
    ErnieVilForImageTextRetrieval,
    ErnieVilForPreTraining,
    ErnieVilForQuestionAnswering,
    ErnieVilModel,
    VilbertConfig,
    VilbertModel,
)


def count(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def test_base_size_is_vilbert_with_four_token_types_and_paddle_layer_norms():
    config = ErnieVilConfig()
    assert config.t_biattention_id == list(range(6, 12)) and config.v_biattention_id == list(range(6))
    assert config.intermediate_size == 3072 and config.layer_norm_eps == 1e-5 and config.type_vocab_size == 4
    with torch.device("meta"):
        ernie, vilbert = ErnieVilModel(config), VilbertModel(VilbertConfig())
    # Same topology and widths; only the token-type table has two more rows of 768.
    assert count(ernie) - count(vilbert) == 2 * 768
    assert ernie.encoder.schedule == vilbert.encoder.schedule
    assert ernie.encoder.text_layers[0].attention.output.norm.eps == 1e-5


def test_config_enforces_one_layer_after_the_last_co_layer_and_text_ffn():
    with pytest.raises(ValueError, match="exactly one layer"):
        tiny_ernie_vil_config(t_biattention_id=[0, 1])
    with pytest.raises(ValueError, match="4 x hidden_size"):
        tiny_ernie_vil_config(intermediate_size=64)
    assert tiny_ernie_vil_config().bi_hidden_size == 16  # ViLBERT's name for co_hidden_size


def test_scene_graph_objectives_each_return_a_weighted_switchable_loss():
    weights = {"mlm": 1.0, "region_class": 1.0, "matching": 1.0, "scene_object": 2.0, "scene_attribute": 3.0,
               "scene_relation": 0.5}
    config = tiny_ernie_vil_config(loss_weights=weights)
    model = ErnieVilForPreTraining(config).eval()
    batch = two_stream_batch(config)
    output = model(**batch)
    losses = {name: output[f"{name}_loss"] for name in weights}
    assert all(value > 0 for value in losses.values())
    torch.testing.assert_close(output.loss, sum(weights[name] * losses[name] for name in weights))
    # The scene-graph heads are the masked-LM head: the object loss is its cross-entropy at the object tokens.
    encoded = model.ernie_vil(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids", "region_features",
                                                       "region_boxes", "region_attention_mask")})
    positions = batch["scene_object_labels"] != -100
    logits = model.mlm_head(encoded.text_last_hidden_state)[positions]
    torch.testing.assert_close(
        output.scene_object_loss, torch.nn.functional.cross_entropy(logits, batch["scene_object_labels"][positions])
    )

    off = ErnieVilForPreTraining(tiny_ernie_vil_config(loss_weights={"mlm": 1.0, "scene_attribute": 1.0})).eval()
    output = off(**batch)
    assert output.scene_object_loss is None and output.scene_relation_loss is None and output.scene_attribute_loss > 0
    # A batch without any relationship leaves that loss out instead of logging a zero.
    no_relation = dict(batch, scene_relation_labels=torch.full_like(batch["scene_relation_labels"], -100))
    assert model(**no_relation).scene_relation_loss is None


def test_activation_checkpointing_gives_the_same_gradients():
    config = tiny_ernie_vil_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    batch = two_stream_batch(config)
    plain = ErnieVilForPreTraining(config).train()
    checkpointed = ErnieVilForPreTraining(config).train()
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.activation_checkpointing_enable()
    plain(**batch).loss.backward()
    checkpointed(**batch).loss.backward()
    for (name, first), (_, second) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        torch.testing.assert_close(first.grad, second.grad, atol=1e-6, rtol=1e-5, msg=name)


def test_task_heads_and_auto_classes(tmp_path):
    config = tiny_ernie_vil_config(id2label={0: "yes", 1: "no"})
    batch = two_stream_batch(config, labels=False)
    vqa = ErnieVilForQuestionAnswering(config).eval()
    output = vqa(**batch, labels=torch.tensor([[1.0, 0.0]] * 3))
    assert output.logits.shape == (3, 2) and output.loss > 0
    assert isinstance(vqa.vqa_head.activation, torch.nn.ReLU)
    retrieval = ErnieVilForImageTextRetrieval(config).eval()
    output = retrieval(**batch, labels=torch.tensor([1, 0, 1]))
    assert output.scores.shape == (3,) and output.logits.shape == (3, 2)

    pretraining = ErnieVilForPreTraining(config).eval()
    pretraining.save_pretrained(tmp_path)
    loaded = transformers.AutoModelForPreTraining.from_pretrained(tmp_path).eval()
    assert type(loaded) is ErnieVilForPreTraining
    assert loaded.mlm_head.decoder.weight is loaded.ernie_vil.embeddings.word_embeddings.weight
    full = two_stream_batch(config)
    torch.testing.assert_close(loaded(**full).loss, pretraining(**full).loss)
    assert type(transformers.AutoModel.from_pretrained(tmp_path)) is ErnieVilModel
    assert transformers.AutoConfig.from_pretrained(tmp_path).layer_norm_eps == 1e-5


def test_bad_scene_labels_raise_before_compute():
    config = tiny_ernie_vil_config()
    batch = two_stream_batch(config)
    model = ErnieVilForPreTraining(config)
    with pytest.raises(ValueError, match="scene_object_labels"):
        model(**{**batch, "scene_object_labels": batch["scene_object_labels"][:, :4]})
    with pytest.raises(ValueError, match="scene_relation_labels"):
        model(**{**batch, "scene_relation_labels": batch["scene_relation_labels"].float()})
