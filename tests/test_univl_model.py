"""UniVL: objectives, stages, attention kernels, checkpointing, tying, causal decoder, generation and input checks."""

from __future__ import annotations

import pytest
import torch
from helpers.univl_hero_factories import original_univl_state_dict, tiny_univl_config, video_text_batch

from vlpretrain import UnivlConfig, UnivlForCaptioning, UnivlForPreTraining, UnivlForVideoTextRetrieval, UnivlModel
from vlpretrain.hub.convert.video import convert_univl_state_dict

INPUTS = ("input_ids", "attention_mask", "token_type_ids", "frame_features", "frame_attention_mask")
OBJECTIVES = ("contrastive", "mlm", "frame_feature", "alignment", "reconstruction")


pytestmark = pytest.mark.usefixtures("one_thread")


def test_base_size_parameter_count_matches_the_released_layout():
    config = UnivlConfig()
    with torch.device("meta"):
        model = UnivlForPreTraining(config)
    ours = sum(parameter.numel() for parameter in model.parameters())
    original = original_univl_state_dict(config, device="meta")
    unique = {id(tensor): tensor for key, tensor in original.items() if ".pooler." not in key or key.startswith("cross.")}
    assert ours == sum(tensor.numel() for tensor in unique.values())
    assert round(ours / 1e6, 1) == 198.4


def test_every_objective_is_returned_and_weighted():
    weights = {"contrastive": 1.0, "mlm": 0.5, "frame_feature": 2.0, "alignment": 0.25, "reconstruction": 3.0}
    model = UnivlForPreTraining(tiny_univl_config(loss_weights=weights)).eval()
    output = model(**video_text_batch(model.config))
    losses = {name: output[f"{name}_loss"] for name in OBJECTIVES}
    assert all(value is not None and torch.isfinite(value) for value in losses.values())
    torch.testing.assert_close(output.loss, sum(weights[name] * losses[name] for name in OBJECTIVES))
    assert output.joint_scores.shape == output.alignment_scores.shape == (3, 3)


def test_objectives_switch_off_and_stage_one_has_only_the_joint_objective():
    model = UnivlForPreTraining(tiny_univl_config(loss_weights={"mlm": 1.0, "alignment": 1.0})).eval()
    output = model(**video_text_batch(model.config))
    assert output.contrastive_loss is None and output.reconstruction_loss is None and output.frame_feature_loss is None
    torch.testing.assert_close(output.loss, output.mlm_loss + output.alignment_loss)

    stage_one = UnivlForPreTraining(tiny_univl_config(stage=1))
    assert stage_one.config.loss_weights == {"contrastive": 1.0, "mlm": 0.0, "frame_feature": 0.0, "alignment": 0.0, "reconstruction": 0.0}
    assert not hasattr(stage_one.univl, "cross_layers") and stage_one.mlm_head is None
    output = stage_one(**video_text_batch(stage_one.config))
    torch.testing.assert_close(output.loss, output.contrastive_loss)
    with pytest.raises(ValueError, match="stage 2"):
        tiny_univl_config(stage=1, loss_weights={"contrastive": 1.0, "mlm": 1.0})


def test_alignment_leaves_duplicate_videos_out_of_the_negatives():
    model = UnivlForPreTraining(tiny_univl_config(loss_weights={"alignment": 1.0})).eval()
    batch = video_text_batch(model.config)
    for name in ("frame_features", "frame_attention_mask", "masked_frames", "frame_feature_targets"):
        batch[name][1] = batch[name][0]  # examples 0 and 1: two captions of the same clip
    duplicates = torch.tensor([[True, True, False], [True, True, False], [False, False, True]])
    plain = model(**dict(batch, contrastive_positive_mask=torch.eye(3, dtype=torch.bool)))
    scores = plain.alignment_scores
    # Identical clips score alike for a text, so with the duplicate as a negative the loss cannot fall below log 2.
    torch.testing.assert_close(scores[:, 0], scores[:, 1])
    output = model(**dict(batch, contrastive_positive_mask=duplicates))
    expected = torch.stack([
        torch.nn.functional.cross_entropy(scores[0, [0, 2]], torch.tensor(0)),
        torch.nn.functional.cross_entropy(scores[1, [1, 2]], torch.tensor(0)),
        torch.nn.functional.cross_entropy(scores[2], torch.tensor(2)),
    ]).mean()
    torch.testing.assert_close(output.alignment_loss, expected)
    assert output.alignment_loss < plain.alignment_loss


def test_stage_two_from_a_stage_one_folder_initialises_the_new_heads(tmp_path):
    UnivlForPreTraining(tiny_univl_config(stage=1)).save_pretrained(tmp_path)
    weights = dict.fromkeys(OBJECTIVES, 1.0)
    model = UnivlForPreTraining.from_pretrained(tmp_path, stage=2, loss_weights=weights)
    assert torch.equal(model.frame_head.bias, torch.zeros_like(model.frame_head.bias))  # not left as empty memory
    assert all(torch.isfinite(parameter).all() for parameter in model.parameters())
    assert torch.isfinite(model(**video_text_batch(model.config)).loss)


def test_joint_objective_uses_unmasked_inputs():
    model = UnivlForPreTraining(tiny_univl_config(loss_weights={"contrastive": 1.0})).eval()
    batch = video_text_batch(model.config)
    clean = video_text_batch(model.config, targets=False)
    masked_output = model(**batch)
    clean_output = model(**{name: clean[name] for name in INPUTS})
    torch.testing.assert_close(masked_output.joint_scores, clean_output.joint_scores)


def test_enhanced_v_drops_the_text_in_training_only():
    model = UnivlForPreTraining(tiny_univl_config(enhance_visual_probability=1.0, loss_weights={"mlm": 1.0, "reconstruction": 1.0}))
    batch = video_text_batch(model.config)
    model.train()
    output = model(**batch)
    assert output.mlm_loss.item() == 0.0  # every sample's text (and its MLM targets) dropped
    assert output.reconstruction_loss.item() > 0.0  # the decoder still reconstructs the full caption
    model.eval()
    assert model(**batch).mlm_loss.item() > 0.0


def test_activation_checkpointing_gives_the_same_gradients():
    config = tiny_univl_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, enhance_visual_probability=0.0)
    batch = video_text_batch(config)
    plain = UnivlForPreTraining(config).train()
    checkpointed = UnivlForPreTraining(config).train()
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.activation_checkpointing_enable()
    plain(**batch).loss.backward()
    checkpointed(**batch).loss.backward()
    for (name, first), second in zip(plain.named_parameters(), checkpointed.parameters()):
        if first.grad is not None:
            torch.testing.assert_close(first.grad, second.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_heads_are_tied_and_the_decoder_is_causal():
    model = UnivlForCaptioning(tiny_univl_config()).eval()
    words = model.univl.embeddings.word_embeddings.weight
    assert model.decoder_head.decoder.weight is words
    pretraining = UnivlForPreTraining(tiny_univl_config())
    assert pretraining.mlm_head.decoder.weight is pretraining.univl.embeddings.word_embeddings.weight
    batch = video_text_batch(model.config, targets=False)
    caption = torch.randint(3, 60, (3, 6))
    changed = caption.clone()
    changed[:, 4:] = 7
    inputs = {name: batch[name] for name in ("frame_features", "frame_attention_mask")}
    first = model(**inputs, decoder_input_ids=caption).logits
    second = model(**inputs, decoder_input_ids=changed).logits
    torch.testing.assert_close(first[:, :4], second[:, :4])
    assert not torch.allclose(first[:, 4:], second[:, 4:])


def test_retrieval_in_both_modes():
    config = tiny_univl_config()
    batch = {name: value for name, value in video_text_batch(config, targets=False).items() if name in INPUTS}
    joint = UnivlForVideoTextRetrieval(config).eval()
    output = joint(**batch, return_loss=True)
    assert output.logits.shape == (3, 3) and output.logits.abs().max() <= 1.0 + 1e-5 and output.loss > 0
    align = UnivlForVideoTextRetrieval(tiny_univl_config(retrieval_mode="align")).eval()
    output = align(**batch, labels=torch.tensor([1, 0, 1]))
    assert output.logits.shape == (2, 2) and output.loss is not None
    with pytest.raises(ValueError, match="retrieval_mode"):
        tiny_univl_config(retrieval_mode="cosine")


def test_every_objective_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    config = tiny_univl_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, enhance_visual_probability=0.0)
    model = UnivlForPreTraining(config).train()
    batch = video_text_batch(config, batch=4)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        output = model(**batch)
        first = first or {name: output[f"{name}_loss"].item() for name in OBJECTIVES}
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
    last = {name: output[f"{name}_loss"].item() for name in OBJECTIVES}
    for name in OBJECTIVES:
        assert last[name] < 0.85 * first[name], (name, first[name], last[name])


def test_generate_uses_beam_search_and_stops_at_sep():
    model = UnivlForCaptioning(tiny_univl_config()).eval()
    assert model.can_generate() and model.generation_config.num_beams == 5
    batch = video_text_batch(model.config, targets=False)
    ids = model.generate(frame_features=batch["frame_features"], frame_attention_mask=batch["frame_attention_mask"])
    assert ids.dtype == torch.long and ids.shape[0] == 3 and ids.shape[1] <= model.config.max_caption_length
    assert (ids[:, 0] == model.config.bos_token_id).all()
    with_text = model.generate(**{name: batch[name] for name in INPUTS}, num_beams=2, max_length=4)
    assert with_text.shape[1] <= 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b.update(frame_features=b["frame_features"][..., :5]), "frame_feature_size"),
        (lambda b: b.update(frame_features=torch.zeros(3, 11, 12), frame_attention_mask=None), "more than the maximum"),
        (lambda b: b.update(frame_features=torch.zeros(3, 0, 12), frame_attention_mask=None), "shorter than one clip"),
        (lambda b: b["frame_attention_mask"].zero_(), "at least one valid"),
        (lambda b: b.update(attention_mask=b["attention_mask"][:, :3]), "attention_mask"),
        (lambda b: b.update(input_ids=b["input_ids"].float()), "input_ids"),
        (lambda b: b.update(labels=b["labels"][:, :3]), "labels"),
        (lambda b: b.update(contrastive_positive_mask=torch.ones(2, 2, dtype=torch.bool)), "contrastive_positive_mask"),
    ],
)
def test_bad_inputs_raise_before_compute(change, message):
    model = UnivlForPreTraining(tiny_univl_config())
    batch = video_text_batch(model.config)
    change(batch)
    with pytest.raises(ValueError, match=message):
        model(**batch)


def test_converter_puts_every_tensor_in_place():
    config = tiny_univl_config()
    original = original_univl_state_dict(config)
    converted = convert_univl_state_dict(original)
    model = UnivlForPreTraining(config)
    for name in model._tied_weights_keys:
        converted[name] = converted["univl.embeddings.word_embeddings.weight"]
    assert set(converted) == set(model.state_dict())
    model.load_state_dict(converted, strict=True)
    state = model.state_dict()
    hidden = config.hidden_size
    qkv = state["univl.text_layers.0.attention.qkv.weight"]
    torch.testing.assert_close(qkv[hidden : 2 * hidden], original["bert.encoder.layer.0.attention.self.key.weight"])
    key_value = state["univl.decoder.layers.0.cross_attention.key_value.weight"]
    torch.testing.assert_close(key_value[hidden:], original["decoder.decoder.layer.0.enc_attn.att.value.weight"])
    torch.testing.assert_close(state["univl.decoder.layers.0.cross_attention.query.bias"], original["decoder.decoder.layer.0.enc_attn.att.query.bias"])
    torch.testing.assert_close(state["univl.decoder.layers.0.attention.output.norm.weight"],
                               original["decoder.decoder.layer.0.slf_attn.output.LayerNorm.weight"])
    torch.testing.assert_close(state["univl.visual_embeddings.proj.weight"], original["cls_visual.predictions.weight"])
    torch.testing.assert_close(state["univl.video_norm.bias"], original["normalize_video.visual_norm2d.bias"])
    torch.testing.assert_close(state["decoder_head.bias"], original["decoder.classifier.cls.predictions.bias"])
    torch.testing.assert_close(state["alignment_head.weight"], original["similarity_dense.weight"])
    torch.testing.assert_close(state["univl.cross_embeddings.token_type_embeddings.weight"], original["cross.embeddings.token_type_embeddings.weight"])
    assert model.decoder_head.decoder.weight is model.univl.embeddings.word_embeddings.weight
    # microsoft/UniVL's BERT embeddings normalise with eps 1e-12 (HERO's subtitle embeddings: 1e-5).
    from vlpretrain.hub.convert.video import univl_config_from_state_dict

    assert UnivlForPreTraining(univl_config_from_state_dict(converted)).univl.embeddings.norm.eps == 1e-12
    renamed = {key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): value for key, value in original.items()}
    assert set(convert_univl_state_dict(renamed)) == set(convert_univl_state_dict(original))
    with pytest.raises(ValueError, match="no UniVL counterpart"):
        convert_univl_state_dict({**original, "extra.weight": torch.zeros(1)})


def test_model_returns_the_encoders_states_and_the_cross_encoders_under_distinct_names(tmp_path):
    """Stage II: ``text_/visual_encoder_last_hidden_state`` are the text / video encoders' outputs and
    ``text_/visual_last_hidden_state`` the cross encoder's slices; stage I has no cross encoder, so they coincide."""
    model = UnivlModel(tiny_univl_config()).eval()
    batch = {name: value for name, value in video_text_batch(model.config, targets=False).items() if name in INPUTS}
    with torch.no_grad():
        output = model(**batch)
        text = model.encode_text(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).last_hidden_state
        video = model.encode_video(batch["frame_features"], batch["frame_attention_mask"]).last_hidden_state
        joint = model.cross_encode(text, batch["attention_mask"], video, batch["frame_attention_mask"])[0].last_hidden_state
    length = batch["input_ids"].shape[1]
    torch.testing.assert_close(output.text_encoder_last_hidden_state, text)
    torch.testing.assert_close(output.visual_encoder_last_hidden_state, video)
    torch.testing.assert_close(output.text_last_hidden_state, joint[:, :length])
    torch.testing.assert_close(output.visual_last_hidden_state, joint[:, length:])
    assert not torch.allclose(output.text_last_hidden_state, output.text_encoder_last_hidden_state, atol=1e-3)
    # UniVL's own text embeddings keep BERT's eps (1e-12); HERO's subtitle embeddings use 1e-5.
    assert model.embeddings.norm.eps == 1e-12
    stage_one = UnivlModel(tiny_univl_config(stage=1)).eval()
    with torch.no_grad():
        first = stage_one(**batch)
    assert first.text_last_hidden_state is first.text_encoder_last_hidden_state
    assert first.visual_last_hidden_state is first.visual_encoder_last_hidden_state and first.last_hidden_state is None


def test_frame_nce_loss_on_selected_rows_matches_the_boolean_definition():
    """CMFM from ``select_rows`` indices: each masked valid frame against every valid frame of the batch, the
    positive its own frame; the same value as selecting with boolean masks; 0 with a graph when nothing is masked."""
    from vlpretrain.modeling.losses import frame_nce_loss, select_rows

    generator = torch.Generator().manual_seed(0)
    predictions = torch.randn(3, 5, 8, generator=generator, requires_grad=True)
    targets = torch.randn(3, 5, 8, generator=generator)
    valid = torch.ones(3, 5, dtype=torch.bool)
    valid[1, 3:] = False
    masked = torch.zeros(3, 5, dtype=torch.bool)
    masked[0, 1] = masked[1, 4] = masked[2, 0] = masked[2, 3] = True  # (1, 4) is padding: not a query
    masked_rows, valid_rows = select_rows(masked & valid, valid)
    loss = frame_nce_loss(predictions, targets, valid, masked_rows, valid_rows)
    logits = predictions[masked & valid] @ targets[valid].T
    positives = torch.tensor([1, 8, 11])  # the queries' own frames among the 13 valid ones
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, positives))
    nothing, _ = select_rows(torch.zeros_like(masked), valid)
    empty = frame_nce_loss(predictions, targets, valid, nothing, valid_rows)
    assert empty.item() == 0.0 and empty.requires_grad
