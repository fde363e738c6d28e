"""ActBERT: tangled schedule and block, objectives, kernels, checkpointing, save/load, remote code, bad input."""

from __future__ import annotations

import pytest
import torch
from helpers.actbert_videobert_factories import actbert_batch, tiny_actbert_config
from transformers import AutoModel, AutoModelForPreTraining, AutoModelForSequenceClassification, AutoModelForVisualQuestionAnswering

from vlpretrain import (
    ActBertConfig,
    ActBertForPreTraining,
    ActBertForVideoQuestionAnswering,
    ActBertForVideoTextRetrieval,
    ActBertModel,
)
from vlpretrain.modeling.actbert import TangledLayer, tangled_schedule


def build(model_class, config=None, seed: int = 0):
    torch.manual_seed(seed)
    return model_class(config or tiny_actbert_config())


def test_default_schedule_matches_the_port():
    order = tangled_schedule(ActBertConfig())
    text = [step for step in order if step[0] in ("text", "tangled")]
    assert text == [("text", i) for i in range(10)] + [("tangled", 0), ("text", 10), ("tangled", 1), ("text", 11)]
    assert [s for s in order if s[0] in ("region", "tangled")] == [("tangled", 0), ("region", 0), ("tangled", 1), ("region", 1)]
    assert [s for s in order if s[0] in ("action", "tangled")] == [
        ("tangled", 0), ("action", 0), ("tangled", 1), ("action", 1), ("action", 2)]


def test_tangled_block_uses_value_av_for_the_word_values():
    config = tiny_actbert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    layer = TangledLayer(config).eval()
    text, regions, actions = torch.randn(2, 5, 32), torch.randn(2, 4, 24), torch.randn(2, 3, 16)
    before = layer(text, regions, actions, None, None, None)
    with torch.no_grad():
        layer.value_av.weight.add_(1.0)
    after = layer(text, regions, actions, None, None, None)
    assert not torch.allclose(before[0], after[0])  # words change: value_av is used (the port's bug is fixed)
    torch.testing.assert_close(before[1], after[1])  # regions use value_at only
    torch.testing.assert_close(before[2], after[2])  # actions are plain self-attention


def test_records_follow_each_stream_through_its_layers_and_the_tangled_blocks():
    """Each stream records its embeddings, every own layer and every tangled block (run_layers continues the record
    between blocks); attentions: the own layers' per stream, five weight tensors per tangled block."""
    config = tiny_actbert_config()
    model = build(ActBertModel).eval()
    output = model(**actbert_batch(config, labels=False), output_hidden_states=True, output_attentions=True)
    blocks = len(config.t_ent_attention_id)
    for stream, layers in (("text", config.num_hidden_layers), ("region", config.v_num_hidden_layers),
                           ("action", config.a_num_hidden_layers)):
        states = getattr(output, f"{stream}_hidden_states")
        assert len(states) == 1 + layers + blocks, stream
        assert states[-1] is getattr(output, f"{stream}_last_hidden_state")
        assert len(getattr(output, f"{stream}_attentions")) == layers
    assert len(output.tangled_attentions) == blocks and all(len(weights) == 5 for weights in output.tangled_attentions)
    # The text attends to itself first: layer 0's weights are (batch, heads, text, text).
    text_length = output.text_last_hidden_state.shape[1]
    assert output.text_attentions[0].shape[-2:] == (text_length, text_length)


def test_action_positions_are_optional_and_order_sensitive():
    batch = actbert_batch(tiny_actbert_config(), labels=False)
    reversed_batch = {**batch, "frame_features": batch["frame_features"].flip(1),
                      "frame_attention_mask": batch["frame_attention_mask"].flip(1)}
    plain = build(ActBertModel).eval()  # the port: the action stream only attends to itself, without positions
    torch.testing.assert_close(plain(**reversed_batch).action_last_hidden_state,
                               plain(**batch).action_last_hidden_state.flip(1), rtol=1e-4, atol=1e-5)
    ordered = build(ActBertModel, tiny_actbert_config(action_position_embeddings=True)).eval()
    assert not torch.allclose(ordered(**reversed_batch).action_last_hidden_state,
                              ordered(**batch).action_last_hidden_state.flip(1), atol=1e-3)


def test_objectives_are_returned_weighted_and_switchable():
    config = tiny_actbert_config(loss_weights={"mlm": 1.0, "masked_action": 2.0, "region_class": 0.5, "matching": 3.0})
    model = build(ActBertForPreTraining, config).eval()
    batch = actbert_batch(config)
    output = model(**batch)
    expected = output.mlm_loss + 2 * output.masked_action_loss + 0.5 * output.region_class_loss + 3 * output.matching_loss
    torch.testing.assert_close(output.loss, expected)
    assert output.prediction_logits.shape == (3, 120)
    assert output.region_object_logits.shape == (3, 3, 5) and output.action_logits.shape == (3, 4, 6)
    only_mlm = build(ActBertForPreTraining, tiny_actbert_config(loss_weights={"mlm": 1.0})).eval()
    result = only_mlm(**batch)
    assert only_mlm.region_head is None and only_mlm.action_head is None and only_mlm.matching_head is None
    torch.testing.assert_close(result.loss, result.mlm_loss)


def test_video_without_regions_uses_the_global_token_alone():
    model = build(ActBertModel).eval()
    batch = actbert_batch(model.config, labels=False)
    output = model(**batch)
    assert output.region_last_hidden_state.shape == (3, 4, 24) and torch.isfinite(output.pooled_output).all()
    empty = {**batch, "region_features": batch["region_features"][:, :0], "region_boxes": batch["region_boxes"][:, :0],
             "region_attention_mask": batch["region_attention_mask"][:, :0]}
    none = model(**empty)
    torch.testing.assert_close(none.text_last_hidden_state[2], output.text_last_hidden_state[2], rtol=1e-4, atol=1e-5)


def test_masked_actions_enter_as_the_mask_embedding_with_bounded_gradients():
    model = build(ActBertForPreTraining, tiny_actbert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    batch = actbert_batch(model.config)
    embeddings, masked = model.actbert.action_embeddings.eval(), batch["masked_frames"]
    kept = batch["frame_features"].masked_fill(masked[..., None], 5.0)
    with torch.no_grad():
        # Zeroed masked actions (the port's 90 %) enter as the mask embedding, kept ones (10 %) as themselves.
        zeroed = embeddings(batch["frame_features"], masked)
        torch.testing.assert_close(zeroed[masked], embeddings.norm(embeddings.mask_embedding.weight[0]).expand(int(masked.sum()), -1))
        torch.testing.assert_close(embeddings(kept, masked), embeddings(kept, None))
        assert not torch.allclose(embeddings(kept, masked)[masked], zeroed[masked])
    model.train()
    # A zeroed feature through the zero-initialised projection made the LayerNorm input constant: gradient ~1e6.
    model.zero_grad()
    model(**batch).masked_action_loss.backward()
    norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in model.parameters() if p.grad is not None))
    assert norm < 100, float(norm)
    assert model.actbert.action_embeddings.mask_embedding.weight.grad.abs().sum() > 0


def test_caption_negatives_come_from_other_videos():
    from helpers.processing import minilm_tokenizer

    from vlpretrain.data.collators import collator_for_config

    collator = collator_for_config(tiny_actbert_config(loss_weights={"matching": 1.0}), minilm_tokenizer(), seed=0)
    examples = [dict(input_ids=[101, 1000 + index, 102], video_id=index // 2, frame_features=torch.ones(2, 10),
                     region_features=torch.ones(1, 12), region_boxes=torch.tensor([[0.0, 0.0, 1.0, 1.0]]))
                for index in range(4)]
    swapped = 0
    for _ in range(10):
        batch = collator(examples)
        for index, (token, matched) in enumerate(zip(batch["input_ids"][:, 1].tolist(), batch["matched_labels"].tolist())):
            donor = token - 1000
            assert (donor // 2 != index // 2) if matched == 0 else donor == index
            swapped += matched == 0
    assert swapped > 0


def test_activation_checkpointing_keeps_gradients():
    batch = actbert_batch(tiny_actbert_config())

    def grads(checkpointing: bool) -> dict[str, torch.Tensor]:
        model = build(ActBertForPreTraining, tiny_actbert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
        model.train()
        if checkpointing:
            model.activation_checkpointing_enable()
        model(**batch).loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    plain, checkpointed = grads(False), grads(True)
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(plain[name], checkpointed[name], rtol=1e-4, atol=1e-6)


def test_loss_of_every_objective_falls_on_a_fixed_batch():
    model = build(ActBertForPreTraining)
    batch = actbert_batch(model.config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    keys = ("mlm_loss", "masked_action_loss", "region_class_loss", "matching_loss")
    model.eval()
    with torch.no_grad():
        first = {k: float(model(**batch)[k]) for k in keys}
    model.train()
    for _ in range(25):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        last = model(**batch)
    for key in keys:
        assert float(last[key]) < first[key], (key, first[key], float(last[key]))


def test_save_load_and_auto_classes(tmp_path):
    model = build(ActBertForPreTraining).eval()
    model.save_pretrained(tmp_path)
    batch = actbert_batch(model.config)
    reloaded = AutoModelForPreTraining.from_pretrained(tmp_path).eval()
    assert type(reloaded) is ActBertForPreTraining
    torch.testing.assert_close(reloaded(**batch).loss, model(**batch).loss)
    assert reloaded.mlm_head.decoder.weight.data_ptr() == reloaded.actbert.embeddings.word_embeddings.weight.data_ptr()
    assert type(AutoModel.from_pretrained(tmp_path)) is ActBertModel
    retrieval = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(retrieval) is ActBertForVideoTextRetrieval
    inputs = actbert_batch(model.config, labels=False)
    torch.testing.assert_close(retrieval(**inputs).logits, model(**inputs).matching_logits)
    qa = AutoModelForVisualQuestionAnswering.from_pretrained(tmp_path, id2label={0: "a", 1: "b"})
    assert type(qa) is ActBertForVideoQuestionAnswering and qa(**inputs, labels=torch.tensor([0, 1, 0])).loss is not None


def test_bad_inputs_raise_before_compute():
    model = build(ActBertForPreTraining)
    batch = actbert_batch(model.config)
    with pytest.raises(ValueError, match="region_features: ActBERT needs"):
        model(**{**batch, "region_features": None})
    with pytest.raises(ValueError, match="region_features: expected shape"):
        model(**{**batch, "region_features": batch["region_features"][..., :-1]})
    with pytest.raises(ValueError, match="frame_features: expected shape"):
        model(**{**batch, "frame_features": batch["frame_features"][..., :-1]})
    with pytest.raises(ValueError, match="region_boxes: expected normalised"):
        model(**{**batch, "region_boxes": batch["region_boxes"] + 2})
    with pytest.raises(ValueError, match="action_labels: expected ids"):
        model(**{**batch, "action_labels": torch.tensor([0, 99, 1])})
    with pytest.raises(ValueError, match="region_class_targets: expected shape"):
        model(**{**batch, "region_class_targets": batch["region_class_targets"][..., :-1]})
    with pytest.raises(ValueError, match="t/v/a_ent_attention_id"):
        tiny_actbert_config(a_ent_attention_id=[0])


def test_base_size_builds_on_meta():
    with torch.device("meta"):
        model = ActBertForPreTraining(ActBertConfig())
    assert len(model.actbert.text_layers) == 12 and len(model.actbert.tangled_layers) == 2
    assert model.actbert.tangled_layers[0].text_qkv.weight.shape == (3072, 768)


def test_collator_zeroes_90_percent_of_the_masked_actions_and_keeps_10():
    """The port's random_action: a masked action's feature is zeroed 90 % of the time and kept otherwise."""
    from helpers.processing import minilm_tokenizer

    from vlpretrain.data.collators import collator_for_config

    collator = collator_for_config(tiny_actbert_config(loss_weights={"masked_action": 1.0}), minilm_tokenizer(), seed=0,
                                   frame_mask_probability=0.5)
    generator = torch.Generator().manual_seed(0)
    examples = [dict(input_ids=[101, 1000, 102], video_id=index, action_label=index % 3,
                     frame_features=torch.rand(20, 10, generator=generator) + 0.1,
                     region_features=torch.ones(1, 12), region_boxes=torch.tensor([[0.0, 0.0, 1.0, 1.0]]))
                for index in range(40)]
    batch = collator(examples)
    masked = batch["masked_frames"]
    zeroed = (batch["frame_features"][masked] == 0).all(-1)
    kept = (batch["frame_features"][masked] == batch["frame_feature_targets"][masked]).all(-1)
    assert int(masked.sum()) > 300 and bool((zeroed | kept).all())
    assert abs(float(zeroed.float().mean()) - 0.9) < 0.05
