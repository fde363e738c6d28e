"""ViLBERT: released sizes, co-attention schedule, objectives, heads, kernels, checkpointing, saving and input checks."""

from __future__ import annotations

import pytest
import torch
import transformers
from helpers.vilbert_factories import tiny_vilbert_config, two_stream_batch

from vlpretrain import (
    VilbertConfig,
    VilbertForImageTextRetrieval,
    VilbertForPreTraining,
    VilbertForQuestionAnswering,
    VilbertForReferringExpressions,
    VilbertModel,
)
from vlpretrain.configuration.vilbert import VILBERT_RELEASED_CONFIGS

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids", "region_features", "region_boxes", "region_attention_mask")


def model_inputs(batch: dict) -> dict:
    return {name: batch[name] for name in INPUT_NAMES}


def count(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def test_six_layer_release_with_heads_has_the_original_parameter_count():
    """The original counts 258,557,371 parameters for vilbert_beta's 6-layer ``VILBertForVLTasks`` (spec §1.7).

    That model is our encoder + pretraining heads + VQA head, plus parameters we do not build: six co-layers'
    unused ``q_dense1`` (1024x1024+1024) and ``q_dense2`` (768x1024+768), the two scalar ``weight_g`` of the
    weight-normed VQA head (folded by the converter), and the 1-logit heads ``vil_logit`` (retrieval as multiple
    choice), ``vision_logit`` (referring) and ``linguisic_logit`` (unused).
    """
    with torch.device("meta"):
        config = VilbertConfig(id2label={index: str(index) for index in range(3129)})
        pretraining = VilbertForPreTraining(config)
        vqa_head = VilbertForQuestionAnswering(config).vqa_head
        referring_head = VilbertForReferringExpressions(config).region_scorer
    q_dense = 6 * ((1024 * 1024 + 1024) + (768 * 1024 + 768))
    vil_logit, linguisic_logit, weight_g = 1024 + 1, 768 + 1, 2
    total = count(pretraining) + count(vqa_head) + count(referring_head) + q_dense + vil_logit + linguisic_logit + weight_g
    assert count(pretraining) == 239_023_229
    assert total == 258_557_371


@pytest.mark.parametrize("name", sorted(VILBERT_RELEASED_CONFIGS))
def test_released_configurations_build_with_their_schedules(name):
    config = VilbertConfig.released(name)
    with torch.device("meta"):
        model = VilbertModel(config)
    encoder = model.encoder
    assert len(encoder.co_layers) == len(config.v_biattention_id)
    assert encoder.visual_layers[0].attention.qkv.weight.shape == (3 * 1024, 1024)
    assert encoder.co_layers[0].text_attention.qkv.weight.shape == (3 * 1024, config.hidden_size)
    assert model.text_pooler.dense.weight.shape == (1024, config.hidden_size)


def test_six_layer_schedule_is_followed_layer_by_layer():
    """Spec §1.2: text t0..t5 -> c0 -> t6 -> c1 ... -> c5 -> t11; visual c0 -> v0 -> c1 -> ... -> c5 -> v5."""
    config = VilbertConfig(hidden_size=16, num_attention_heads=2, intermediate_size=16, v_hidden_size=8,
                           v_num_attention_heads=2, v_intermediate_size=8, bi_hidden_size=8, bi_num_attention_heads=2,
                           vocab_size=40, region_feature_size=6, max_position_embeddings=16, num_object_labels=5)
    assert config.t_biattention_id == list(range(6, 12)) and config.v_biattention_id == list(range(6))
    model = VilbertModel(config).eval()
    calls: list[str] = []
    for kind, layers in (("t", model.encoder.text_layers), ("v", model.encoder.visual_layers), ("c", model.encoder.co_layers)):
        for index, layer in enumerate(layers):
            layer.register_forward_hook(lambda module, args, output, name=f"{kind}{index}": calls.append(name))
    model(**two_stream_batch(config, labels=False))
    text = [name for name in calls if name[0] in "tc"]
    visual = [name for name in calls if name[0] in "vc"]
    assert text == [f"t{i}" for i in range(6)] + [x for k in range(6) for x in (f"c{k}", f"t{6 + k}")]
    assert visual == [x for k in range(6) for x in (f"c{k}", f"v{k}")]


def test_outputs_global_token_and_widths():
    config = tiny_vilbert_config()
    model = VilbertModel(config).eval()
    batch = two_stream_batch(config, labels=False)
    output = model(**batch, output_hidden_states=True, output_attentions=True)
    assert output.text_last_hidden_state.shape == (3, 7, 32)
    assert output.visual_last_hidden_state.shape == (3, 6, 24)  # the global image token comes first
    assert output.pooled_output.shape == (3, 16)
    assert len(output.cross_attentions) == 2
    text_to_visual, visual_to_text = output.cross_attentions[0]
    assert text_to_visual.shape == (3, 2, 7, 6) and visual_to_text.shape == (3, 2, 6, 7)
    assert text_to_visual[1, :, :, -2:].abs().max() == 0  # padded regions get no weight
    assert visual_to_text[0, :, :, -2:].abs().max() == 0  # padded tokens get no weight
    # Fused vector = ReLU text pool x ReLU visual pool of the global token.
    expected = torch.relu(model.text_pooler.dense(output.text_last_hidden_state[:, 0])) * torch.relu(
        model.visual_pooler.dense(output.visual_last_hidden_state[:, 0])
    )
    torch.testing.assert_close(output.pooled_output, expected)
    no_global = VilbertModel(tiny_vilbert_config(add_global_image_token=False)).eval()
    assert no_global(**batch).visual_last_hidden_state.shape == (3, 5, 24)


def test_global_image_token_is_the_mean_of_valid_regions_with_whole_image_box():
    from vlpretrain.modeling.embeddings import prepend_global_image_token

    features = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [0.0, 0.0]]])
    boxes = torch.tensor([[[0.1, 0.1, 0.2, 0.2], [0.3, 0.3, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0]]])
    mask = torch.tensor([[1, 1, 0]])
    new_features, new_boxes, new_mask = prepend_global_image_token(features, boxes, mask)
    torch.testing.assert_close(new_features[0, 0], torch.tensor([2.0, 3.0]))
    torch.testing.assert_close(new_boxes[0, 0], torch.tensor([0.0, 0.0, 1.0, 1.0]))
    assert new_mask.tolist() == [[1, 1, 1, 0]]


def test_every_objective_returns_its_loss_and_the_total_is_weighted():
    config = tiny_vilbert_config(loss_weights={"mlm": 1.0, "region_class": 2.0, "matching": 0.5})
    model = VilbertForPreTraining(config).eval()
    batch = two_stream_batch(config)
    output = model(**batch)
    for name in ("mlm_loss", "region_class_loss", "matching_loss"):
        assert output[name].ndim == 0 and output[name] > 0
    torch.testing.assert_close(output.loss, output.mlm_loss + 2.0 * output.region_class_loss + 0.5 * output.matching_loss)
    assert output.prediction_logits.shape == (3, config.vocab_size)  # one labelled token per sample
    assert output.region_class_logits.shape == (3, 5, 7)  # given regions only, not the global token
    assert output.matching_logits.shape == (3, 2)
    # KL to the detector distribution over the masked, valid regions only.
    log_probs = torch.log_softmax(output.region_class_logits, -1)
    targets = batch["region_class_targets"]
    per_region = (targets * (targets.log() - log_probs)).sum(-1)
    selected = batch["masked_regions"] & batch["region_attention_mask"].bool()
    torch.testing.assert_close(output.region_class_loss, per_region[selected].mean())


def test_objectives_switch_off_and_their_heads_are_not_built():
    config = tiny_vilbert_config(loss_weights={"mlm": 1.0})
    model = VilbertForPreTraining(config).eval()
    assert model.region_head is None and model.matching_head is None
    output = model(**two_stream_batch(config))
    assert output.region_class_loss is None and output.matching_loss is None
    torch.testing.assert_close(output.loss, output.mlm_loss)
    with pytest.raises(ValueError, match="unknown objectives"):
        tiny_vilbert_config(loss_weights={"qa": 1.0})


def test_no_masked_region_gives_zero_region_loss_not_nan():
    config = tiny_vilbert_config()
    batch = two_stream_batch(config)
    batch["masked_regions"][:] = False
    output = VilbertForPreTraining(config)(**batch)
    assert output.region_class_loss == 0 and torch.isfinite(output.loss)


def test_activation_checkpointing_gives_the_same_gradients():
    config = tiny_vilbert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    batch = two_stream_batch(config)
    plain = VilbertForPreTraining(config).train()
    checkpointed = VilbertForPreTraining(config).train()
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.activation_checkpointing_enable()
    assert checkpointed.vilbert.encoder.co_layers[0].gradient_checkpointing
    plain(**batch).loss.backward()
    checkpointed(**batch).loss.backward()
    for (name, first), (_, second) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        torch.testing.assert_close(first.grad, second.grad, atol=1e-6, rtol=1e-5, msg=name)


def test_task_heads_shapes_losses_and_label_conventions():
    config = tiny_vilbert_config(id2label={0: "yes", 1: "no", 2: "red"})
    batch = two_stream_batch(config, labels=False)
    vqa = VilbertForQuestionAnswering(config).eval()
    scores = torch.zeros(3, 3)
    scores[:, 1] = 1.0
    output = vqa(**batch, labels=scores)
    assert output.logits.shape == (3, 3)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(output.logits, scores) * 3
    torch.testing.assert_close(output.loss, expected)
    assert vqa(**batch, labels=torch.tensor([0, 1, 2])).loss > 0

    retrieval = VilbertForImageTextRetrieval(tiny_vilbert_config()).eval()
    output = retrieval(**batch, labels=torch.tensor([1, 0, 1]))
    assert output.logits.shape == (3, 2) and output.scores.shape == (3,)
    torch.testing.assert_close(output.scores, output.logits[:, 1] - output.logits[:, 0])

    referring = VilbertForReferringExpressions(config).eval()
    targets = torch.zeros(3, 5)
    targets[:, 0] = 0.8
    output = referring(**batch, labels=targets)
    assert output.logits.shape == (3, 5)
    assert (output.logits[1, -2:] == -10000).all()  # padded regions of sample 1
    assert output.loss > 0


def test_pretraining_checkpoint_loads_into_task_models(tmp_path):
    config = tiny_vilbert_config()
    pretraining = VilbertForPreTraining(config).eval()
    pretraining.save_pretrained(tmp_path)
    batch = two_stream_batch(config, labels=False)
    retrieval = VilbertForImageTextRetrieval.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(retrieval(**batch).logits, pretraining(**batch).matching_logits)
    referring = VilbertForReferringExpressions.from_pretrained(tmp_path)
    torch.testing.assert_close(referring.vilbert.text_pooler.dense.weight, pretraining.vilbert.text_pooler.dense.weight)


def test_save_load_auto_classes_and_tied_decoder(tmp_path):
    config = tiny_vilbert_config()
    model = VilbertForPreTraining(config).eval()
    assert model.mlm_head.decoder.weight is model.vilbert.embeddings.word_embeddings.weight
    model.save_pretrained(tmp_path)
    batch = two_stream_batch(config)
    for auto_class in (transformers.AutoModelForPreTraining, transformers.AutoModel):
        loaded = auto_class.from_pretrained(tmp_path).eval()
        assert type(loaded).__module__ == "vlpretrain.modeling.vilbert"
    loaded = transformers.AutoModelForPreTraining.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(loaded(**batch).loss, model(**batch).loss)
    assert loaded.mlm_head.decoder.weight is loaded.vilbert.embeddings.word_embeddings.weight
    assert transformers.AutoConfig.from_pretrained(tmp_path).t_biattention_id == [1, 2]


def test_bad_inputs_raise_value_errors_naming_the_argument():
    config = tiny_vilbert_config()
    model = VilbertForPreTraining(config)
    batch = two_stream_batch(config)
    cases = [
        (dict(region_features=batch["region_features"][..., :5]), "region_features"),
        (dict(region_boxes=batch["region_boxes"] * 3), "region_boxes"),
        (dict(region_class_targets=batch["region_class_targets"][..., :3]), "region_class_targets"),
        (dict(region_class_targets=batch["region_class_targets"].long()), "region_class_targets"),
        (dict(matched_labels=torch.tensor([1.0, 0.0, 1.0])), "matched_labels"),
        (dict(labels=batch["labels"][:, :3]), "labels"),
        (dict(masked_regions=None), "masked_regions"),
    ]
    for change, name in cases:
        with pytest.raises(ValueError, match=name):
            model(**{**batch, **change})
    with pytest.raises(ValueError, match="labels"):
        VilbertForReferringExpressions(config)(**model_inputs(batch), labels=torch.full((3, 5), 2.0))
    with pytest.raises(ValueError, match="t_biattention_id"):
        tiny_vilbert_config(t_biattention_id=[2, 1])
    with pytest.raises(ValueError, match="one entry per co-layer"):
        tiny_vilbert_config(t_biattention_id=[1])
    with pytest.raises(ValueError, match="name"):
        VilbertConfig.released("3-layer")


def test_text_stream_initialises_from_bert():
    bert = transformers.BertModel(transformers.BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48,
        max_position_embeddings=32,
    ))
    model = VilbertForPreTraining(tiny_vilbert_config())
    loaded = model.load_text_encoder_from_bert(bert)
    assert "vilbert.encoder.text_layers.2.attention.qkv.weight" in loaded
    torch.testing.assert_close(model.vilbert.embeddings.word_embeddings.weight, bert.embeddings.word_embeddings.weight)
    query = bert.encoder.layer[1].attention.self.query.weight
    torch.testing.assert_close(model.vilbert.encoder.text_layers[1].attention.qkv.weight[:32], query)


def test_shared_processor_feeds_both_architectures():
    import numpy as np
    from helpers.processing import minilm_tokenizer
    from helpers.vilbert_factories import tiny_ernie_vil_config

    from vlpretrain import ErnieVilModel, VisionLanguageProcessor

    tokenizer = minilm_tokenizer()
    processor = VisionLanguageProcessor(tokenizer, region_feature_size=12)
    features = [np.ones((3, 12), np.float32), np.full((5, 12), 2.0, np.float32)]
    boxes = [np.array([[0, 0, 50, 40]] * 3, np.float32), np.array([[10, 20, 100, 80]] * 5, np.float32)]
    inputs = processor(text=["a dog", "a man rides a horse"], region_features=features, region_boxes=boxes,
                       image_sizes=[(80, 100), (80, 100)])
    for model in (VilbertModel(tiny_vilbert_config(vocab_size=len(tokenizer))),
                  ErnieVilModel(tiny_ernie_vil_config(vocab_size=len(tokenizer)))):
        output = model.eval()(**inputs)
        assert output.visual_last_hidden_state.shape[:2] == (2, 6) and output.pooled_output.shape == (2, 16)


def test_records_follow_the_co_attention_schedule_in_every_head():
    """Hidden states are the embeddings, then each stream's layer outputs in schedule order (co-layers included);
    attentions are the stream layers' own, the co-layers' go to ``cross_attentions``; heads record the same."""
    config = tiny_vilbert_config(t_biattention_id=[1, 3], v_biattention_id=[0, 1])
    model = VilbertModel(config).eval()
    outputs: dict[str, list[torch.Tensor]] = {"text": [], "visual": []}
    for layer in model.encoder.text_layers:
        layer.register_forward_hook(lambda module, args, output: outputs["text"].append(output[0]))
    for layer in model.encoder.visual_layers:
        layer.register_forward_hook(lambda module, args, output: outputs["visual"].append(output[0]))

    def record_both(module, args, output) -> None:
        outputs["text"].append(output[0])
        outputs["visual"].append(output[1])

    for layer in model.encoder.co_layers:
        layer.register_forward_hook(record_both)
    batch = two_stream_batch(config, labels=False)
    output = model(**batch, output_hidden_states=True, output_attentions=True)
    for stream, layers in (("text", config.num_hidden_layers), ("visual", config.v_num_hidden_layers)):
        states = getattr(output, f"{stream}_hidden_states")
        assert len(states) == 1 + layers + 2 and len(getattr(output, f"{stream}_attentions")) == layers
        assert all(recorded is computed for recorded, computed in zip(states[1:], outputs[stream], strict=True))
        assert states[-1] is getattr(output, f"{stream}_last_hidden_state")
    assert len(output.cross_attentions) == 2
    head = VilbertForReferringExpressions(config).eval()
    head.vilbert.load_state_dict(model.state_dict())
    recorded = head(**batch, output_hidden_states=True, output_attentions=True)
    for name in ("text_hidden_states", "visual_hidden_states", "text_attentions", "visual_attentions"):
        for mine, base in zip(getattr(recorded, name), getattr(output, name), strict=True):
            torch.testing.assert_close(mine, base)
