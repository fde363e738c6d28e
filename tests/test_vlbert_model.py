"""VL-BERT: embeddings as the original, objectives, text-only rows, task heads, kernels, checkpointing, checks."""

from __future__ import annotations

import math

import pytest
import torch
import transformers
from helpers.single_stream_factories import INPUT_NAMES, single_stream_batch, subset, tiny_vl_bert_config

from vlpretrain import (
    VlBertConfig,
    VlBertForImageTextRetrieval,
    VlBertForMultipleChoice,
    VlBertForPreTraining,
    VlBertForQuestionAnswering,
    VlBertForReferringExpressions,
    VlBertModel,
)
from vlpretrain.modeling.embeddings import sinusoidal_box_embedding
from vlpretrain.modeling.losses import IGNORE_INDEX

PRETRAINING_NAMES = (*INPUT_NAMES, "labels", "masked_regions", "region_class_targets", "matched_labels", "text_only")


@pytest.fixture
def config():
    return tiny_vl_bert_config()


@pytest.fixture
def batch(config):
    return single_stream_batch(config)


def test_base_size_parameters_and_original_initialisation():
    with torch.device("meta"):
        model = VlBertForPreTraining(VlBertConfig())
    count = sum(parameter.numel() for parameter in model.parameters())
    # BERT-base without pooler (108.9M) + obj_downsample 4096->768 (3.15M) + MLM transform/bias + MVRC head (1.82M).
    assert round(count / 1e6, 2) == 114.49
    assert model.vl_bert.pooler is None and model.relationship_head is None
    assert model.vl_bert.embeddings.token_type_embeddings.weight.shape[0] == 3
    small = VlBertForPreTraining(tiny_vl_bert_config())
    embeddings = small.vl_bert.embeddings
    assert torch.all(embeddings.visual_ln_text.weight == 0) and torch.all(embeddings.visual_ln_object.weight == 0)
    assert torch.all(embeddings.object_mask_visual_embedding.weight == 0)
    assert small.mlm_head.decoder.weight is embeddings.word_embeddings.weight


def test_geometry_embedding_is_the_original_sinusoid():
    boxes = torch.tensor([[[0.1, 0.2, 0.5, 0.6]]])
    embedding = sinusoidal_box_embedding(boxes, size=2048)[0, 0]
    values = [0.3 * 100, 0.4 * 100, 0.4 * 100, 0.4 * 100]  # xc, yc, w, h times 100
    for block, value in enumerate(values):
        for i in (0, 5, 255):
            angle = value / 1000 ** (i / 256)
            assert math.isclose(embedding[block * 512 + i].item(), math.sin(angle), abs_tol=1e-5)
            assert math.isclose(embedding[block * 512 + 256 + i].item(), math.cos(angle), abs_tol=1e-5)


def test_base_model_outputs_follow_the_naming_table(config, batch):
    model = VlBertModel(config).eval()
    output = model(**subset(batch, INPUT_NAMES), output_hidden_states=True, output_attentions=True)
    size, length = batch["input_ids"].shape
    regions = batch["region_features"].shape[1]
    assert output.last_hidden_state.shape == (size, length + 1 + regions + 1, 32)
    assert output.text_last_hidden_state.shape == (size, length, 32)
    assert output.visual_last_hidden_state.shape == (size, regions, 32)
    assert torch.equal(output.visual_last_hidden_state, output.last_hidden_state[:, length + 1 : length + 1 + regions])
    assert output.pooled_output.shape == (size, 32)
    assert len(output.hidden_states) == 1 + config.num_hidden_layers and len(output.attentions) == config.num_hidden_layers
    weights = output.attentions[0]
    assert weights[0, :, :, length - 2 : length].abs().max() == 0  # padded text keys
    assert weights[1, :, :, length + 1 + regions - 2 : length + 1 + regions].abs().max() == 0  # padded regions


def test_recorded_states_under_padding_are_the_states_the_layers_computed(config, batch):
    """Recording keeps the packed path's results (zeros at padding) and records tensors on the computation's path."""
    model = VlBertModel(config).eval()
    inputs = subset(batch, (*INPUT_NAMES, "masked_regions", "text_only"))
    plain = model(**inputs)
    recorded = model(**inputs, output_hidden_states=True, output_attentions=True)
    torch.testing.assert_close(recorded.last_hidden_state, plain.last_hidden_state, atol=1e-6, rtol=1e-6)
    padded = plain.last_hidden_state.abs().sum(-1) == 0  # padded text, padded regions, the text-only row's regions
    assert padded.any() and len(recorded.hidden_states) == 1 + config.num_hidden_layers
    assert all(states[padded].abs().max() == 0 for states in recorded.hidden_states)
    middle = recorded.hidden_states[1]
    middle.retain_grad()
    recorded.pooled_output.sum().backward()
    assert middle.grad is not None and middle.grad[~padded].abs().sum() > 0


def test_pretraining_returns_every_objective_and_their_weighted_sum(config, batch):
    model = VlBertForPreTraining(config).eval()
    output = model(**subset(batch, PRETRAINING_NAMES))
    names = ("mlm", "text_mlm", "region_class", "matching")
    losses = {name: output[f"{name}_loss"] for name in names}
    assert all(value is not None and torch.isfinite(value) and value > 0 for value in losses.values())
    torch.testing.assert_close(output.loss, sum(config.loss_weights[name] * value for name, value in losses.items()))
    assert output.prediction_logits.shape == ((batch["labels"] != IGNORE_INDEX).sum(), config.vocab_size)
    selected = batch["masked_regions"] & batch["region_attention_mask"].bool() & ~batch["text_only"][:, None]
    assert output.region_class_logits.shape == (selected.sum(), config.num_object_labels)


def test_losses_read_at_the_predicted_positions_equal_the_full_logits_computation(config, batch):
    """With targets the model packs out padding, computes the last layer at the predicted positions only and runs
    the heads on those rows; without targets it returns every position's logits. Both give the same losses."""
    model = VlBertForPreTraining(config).eval()
    output = model(**subset(batch, PRETRAINING_NAMES))
    full = model(**subset(batch, (*INPUT_NAMES, "masked_regions", "text_only")))
    assert full.prediction_logits.shape == (*batch["labels"].shape, config.vocab_size)
    labelled = batch["labels"] != IGNORE_INDEX
    text_only = batch["text_only"][:, None].expand_as(labelled)
    torch.testing.assert_close(output.prediction_logits, full.prediction_logits[labelled], atol=1e-5, rtol=1e-5)
    cross_entropy = torch.nn.functional.cross_entropy
    torch.testing.assert_close(output.mlm_loss, cross_entropy(full.prediction_logits[labelled & ~text_only], batch["labels"][labelled & ~text_only]))
    torch.testing.assert_close(output.text_mlm_loss, cross_entropy(full.prediction_logits[labelled & text_only], batch["labels"][labelled & text_only]))
    # MVRC is the soft cross-entropy to the detector distribution over masked regions of image-text rows.
    selected = batch["masked_regions"] & batch["region_attention_mask"].bool() & ~batch["text_only"][:, None]
    torch.testing.assert_close(output.region_class_logits, full.region_class_logits[selected], atol=1e-5, rtol=1e-5)
    expected = -(batch["region_class_targets"] * full.region_class_logits.log_softmax(-1)).sum(-1)[selected].mean()
    torch.testing.assert_close(output.region_class_loss, expected)
    torch.testing.assert_close(output.pooled_output, full.pooled_output, atol=1e-5, rtol=1e-5)
    image_rows = ~batch["text_only"]
    torch.testing.assert_close(output.matching_loss, cross_entropy(full.matching_logits[image_rows], batch["matched_labels"][image_rows]))
    # Packing drops the padded positions from the work but no valid state: the unpadded batch agrees with its rows.
    hidden = model.vl_bert(**subset(batch, (*INPUT_NAMES, "masked_regions", "text_only")), output_hidden_states=True)
    assert torch.equal(hidden.last_hidden_state, hidden.hidden_states[-1])
    row = {name: value[1:2] for name, value in subset(batch, (*INPUT_NAMES, "masked_regions")).items()}
    alone = model.vl_bert(**row).last_hidden_state
    valid = hidden.last_hidden_state[1:2].abs().sum(-1) > 0
    torch.testing.assert_close(alone[valid], hidden.last_hidden_state[1:2][valid], atol=1e-5, rtol=1e-5)


def test_mlm_is_split_between_image_text_and_text_only_rows(config, batch):
    model = VlBertForPreTraining(config).eval()
    labels = batch["labels"].clone()
    labels[:2] = IGNORE_INDEX  # only the text-only row keeps labels
    output = model(**subset(dict(batch, labels=labels), PRETRAINING_NAMES))
    assert output.mlm_loss == 0 and output.text_mlm_loss > 0
    without_flag = model(**subset({k: v for k, v in batch.items() if k != "text_only"}, PRETRAINING_NAMES))
    assert without_flag.text_mlm_loss is None


def test_text_only_rows_ignore_regions_and_use_the_auxiliary_visual_clue(config, batch):
    model = VlBertModel(config).eval()
    with torch.no_grad():  # the visual gains start at 0 (visual input has no effect at initialisation)
        model.embeddings.visual_ln_text.weight.fill_(1.0)
        model.embeddings.visual_ln_object.weight.fill_(1.0)
    inputs = subset(batch, (*INPUT_NAMES, "text_only"))
    reference = model(**inputs).text_last_hidden_state
    changed = dict(inputs, region_features=inputs["region_features"] + 1.0)
    output = model(**changed).text_last_hidden_state
    torch.testing.assert_close(output[2], reference[2])
    assert not torch.allclose(output[0], reference[0])
    with torch.no_grad():
        model.embeddings.aux_text_visual_embedding.weight.normal_()
    assert not torch.allclose(model(**inputs).text_last_hidden_state[2], reference[2])


def test_masked_rois_use_the_mask_embeddings_and_leave_the_whole_image_mean(config, batch):
    model = VlBertModel(config).eval()
    with torch.no_grad():
        model.embeddings.object_mask_word_embedding.weight.normal_()
        model.embeddings.visual_ln_object.weight.fill_(1.0)
    inputs = subset(batch, (*INPUT_NAMES, "masked_regions"))
    masked = model(**inputs).visual_last_hidden_state
    unmasked = model(**dict(inputs, masked_regions=torch.zeros_like(inputs["masked_regions"]))).visual_last_hidden_state
    assert not torch.allclose(masked[0, 0], unmasked[0, 0])
    # Box 0 averages the unmasked regions only: a masked region's (zero) feature does not pull the mean down.
    valid = inputs["region_attention_mask"].bool() & ~inputs["masked_regions"]
    features = inputs["region_features"]
    appearance, boxes = model.region_appearance(features, inputs["region_boxes"], inputs["region_attention_mask"].bool(),
                                                inputs["masked_regions"], None)
    expected = (features * valid[..., None]).sum(1) / valid.sum(1, keepdim=True)
    torch.testing.assert_close(appearance[:, 0], expected)
    assert torch.equal(boxes[:, 0], torch.tensor([0.0, 0.0, 1.0, 1.0]).expand(3, 4))


def test_objectives_can_be_switched_off_and_weighted(batch):
    model = VlBertForPreTraining(tiny_vl_bert_config(loss_weights={"mlm": 2.0, "region_class": 0.5})).eval()
    assert model.relationship_head is None and model.vl_bert.pooler is None
    output = model(**subset(batch, PRETRAINING_NAMES))
    assert output.matching_loss is None and output.text_mlm_loss is None
    torch.testing.assert_close(output.loss, 2.0 * output.mlm_loss + 0.5 * output.region_class_loss)
    no_regions = VlBertForPreTraining(tiny_vl_bert_config(loss_weights={"mlm": 1.0})).eval()
    assert no_regions.region_class_head is None
    assert no_regions(**subset(batch, PRETRAINING_NAMES)).region_class_loss is None
    with pytest.raises(ValueError, match="loss_weights.*unknown objectives"):
        tiny_vl_bert_config(loss_weights={"mlm": 1.0, "region_feature": 1.0})


def test_activation_checkpointing_gives_the_same_gradients(batch):
    config = tiny_vl_bert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    plain = VlBertForPreTraining(config).train()
    checkpointed = VlBertForPreTraining(config).train()
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.activation_checkpointing_enable()
    assert all(layer.gradient_checkpointing for layer in checkpointed.vl_bert.layers)
    for model in (plain, checkpointed):
        model(**subset(batch, PRETRAINING_NAMES)).loss.backward()
    for (name, first), (_, second) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        if first.grad is not None:
            torch.testing.assert_close(first.grad, second.grad, atol=1e-6, rtol=1e-5, msg=name)


def test_task_models(config, batch):
    inputs = subset(batch, INPUT_NAMES)
    vqa = VlBertForQuestionAnswering(tiny_vl_bert_config(id2label={0: "yes", 1: "no", 2: "red"})).eval()
    scores = torch.tensor([[1.0, 0.0, 0.3], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    output = vqa(**inputs, labels=scores)
    assert output.logits.shape == (3, 3) and output.loss > 0
    assert vqa(**inputs, labels=torch.tensor([0, 1, 2])).loss > 0
    retrieval = VlBertForImageTextRetrieval(config).eval()
    output = retrieval(**inputs, labels=torch.tensor([1, 0, 1]))
    torch.testing.assert_close(output.scores, output.logits[:, 1] - output.logits[:, 0])
    referring = VlBertForReferringExpressions(config).eval()
    labels = torch.zeros(3, 5)
    labels[:, 1] = 1
    output = referring(**inputs, labels=labels)
    assert output.logits.shape == (3, 5) and torch.isfinite(output.loss)
    assert bool((output.logits[1, -2:] < -1e30).all())  # padded regions never win
    choice = VlBertForMultipleChoice(config).eval()
    ids = batch["input_ids"][:, None].repeat(1, 4, 1)
    regions = torch.full_like(ids, -1)
    regions[:, :, 2] = 1
    output = choice(input_ids=ids, attention_mask=batch["attention_mask"][:, None].repeat(1, 4, 1),
                    region_features=batch["region_features"], region_boxes=batch["region_boxes"],
                    region_attention_mask=batch["region_attention_mask"], token_region_ids=regions,
                    labels=torch.tensor([0, 3, 1]))
    assert output.logits.shape == (3, 4) and output.loss > 0


def test_pretraining_checkpoint_loads_into_task_models_and_auto_classes(tmp_path, config, batch):
    pretrained = VlBertForPreTraining(config).eval()
    pretrained.save_pretrained(tmp_path)
    retrieval = VlBertForImageTextRetrieval.from_pretrained(tmp_path)
    torch.testing.assert_close(retrieval.relationship_head.weight, pretrained.relationship_head.weight)
    base = transformers.AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(base, VlBertModel)
    torch.testing.assert_close(base(**subset(batch, INPUT_NAMES)).pooled_output,
                               pretrained.vl_bert(**subset(batch, INPUT_NAMES)).pooled_output)
    reloaded = transformers.AutoModelForPreTraining.from_pretrained(tmp_path).eval()
    assert isinstance(reloaded, VlBertForPreTraining)
    torch.testing.assert_close(reloaded(**subset(batch, PRETRAINING_NAMES)).loss, pretrained(**subset(batch, PRETRAINING_NAMES)).loss)
    assert torch.all(reloaded.vl_bert.embeddings.visual_ln_text.weight == pretrained.vl_bert.embeddings.visual_ln_text.weight)
    assert isinstance(transformers.AutoConfig.for_model("vlpretrain-vl-bert"), VlBertConfig)
    assert isinstance(transformers.AutoModelForMultipleChoice.from_config(config), VlBertForMultipleChoice)


def test_end_to_end_backbone_trains_with_the_model_and_masks_pixels():
    backbone = {"model_type": "resnet", "embedding_size": 8, "hidden_sizes": [8, 12], "depths": [1, 1],
                "layer_type": "basic", "out_features": ["stage2"]}
    config = tiny_vl_bert_config(backbone_config=backbone, region_feature_size=12, roi_output_size=2)
    model = VlBertForPreTraining(config).train()
    with torch.no_grad():  # at initialisation the visual gains are 0, so no gradient reaches the features yet
        model.vl_bert.embeddings.visual_ln_object.weight.fill_(1.0)
    batch = single_stream_batch(config, regions=3)
    inputs = subset(batch, PRETRAINING_NAMES)
    inputs.pop("region_features")
    inputs["pixel_values"] = torch.randn(3, 3, 32, 32)
    output = model(**inputs)
    output.loss.backward()
    # The stem and first stage are frozen by default (tests/test_vlbert_tasks.py); the last stage trains.
    gradients = [parameter.grad for name, parameter in model.vl_bert.backbone.named_parameters()
                 if name.startswith("encoder.stages.1.") and parameter.grad is not None]
    assert gradients and sum(float(gradient.abs().sum()) for gradient in gradients) > 0
    model.eval()
    pooled = model.vl_bert.pool_regions(inputs["pixel_values"], torch.tensor([[[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5]]]).expand(3, 2, 4),
                                        torch.tensor([[True], [False], [False]]))
    reference = model.vl_bert.pool_regions(inputs["pixel_values"], torch.tensor([[[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5]]]).expand(3, 2, 4),
                                           torch.zeros(3, 1, dtype=torch.bool))
    assert not torch.allclose(pooled[0], reference[0]) and torch.allclose(pooled[1:], reference[1:])
    with pytest.raises(ValueError, match="pixel_values"):
        model(**subset(batch, INPUT_NAMES))
    with pytest.raises(ValueError, match="region_feature_size"):
        VlBertModel(tiny_vl_bert_config(backbone_config=backbone, region_feature_size=7))


def test_end_to_end_kept_regions_keep_their_pixels_and_word_embedding():
    # The original zeroes the pixels (and gives the mask word) of mvrc_ops == 1 regions only; the 10 % "keep"
    # branch is a target with its pixels intact (jackroos/VL-BERT pretrain/data/datasets/conceptual_captions.py).
    backbone = {"model_type": "resnet", "embedding_size": 8, "hidden_sizes": [8, 12], "depths": [1, 1],
                "layer_type": "basic", "out_features": ["stage2"]}
    torch.manual_seed(0)
    model = VlBertModel(tiny_vl_bert_config(backbone_config=backbone, region_feature_size=12, roi_output_size=2)).eval()
    with torch.no_grad():
        model.embeddings.visual_ln_object.weight.fill_(1.0)
        model.embeddings.visual_ln_text.weight.fill_(1.0)
    inputs = subset(single_stream_batch(model.config, regions=3), INPUT_NAMES)
    inputs.pop("region_features")
    inputs["pixel_values"] = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    selected = torch.tensor([[True, False, True]] * 3)
    kept = torch.tensor([[False, False, True]] * 3)
    with torch.no_grad():
        with_kept = model(**inputs, masked_regions=selected, kept_regions=kept).last_hidden_state
        truly_masked = model(**inputs, masked_regions=selected & ~kept).last_hidden_state
        all_masked = model(**inputs, masked_regions=selected).last_hidden_state
    torch.testing.assert_close(with_kept, truly_masked)
    assert not torch.allclose(with_kept, all_masked, atol=1e-4)
    with pytest.raises(ValueError, match=r"kept_regions: expected shape \(3, 3\)"):
        model(**inputs, masked_regions=selected, kept_regions=kept[:, :2])


def original_coordinate_embedding(pixel_box, width, height, steps):
    """jackroos/VL-BERT common/utils/bbox.py coordinate_embeddings, written out for one pixel box."""
    x1, y1, x2, y2 = pixel_box
    position = torch.tensor([(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height]) * 100
    scale = 1000 ** (torch.arange(steps, dtype=torch.float32) / steps)
    angles = position[:, None] / scale
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten()


def test_pixel_image_box_is_the_originals_whole_image_box(config, batch):
    pixel = tiny_vl_bert_config(image_box_style="pixels")
    model = VlBertModel(pixel).eval()
    sizes = torch.tensor([[480, 640], [375, 500], [600, 800]])  # (height, width)
    inputs = subset(batch, INPUT_NAMES)
    valid = inputs["region_attention_mask"].bool()
    _, boxes = model.region_appearance(inputs["region_features"], inputs["region_boxes"], valid, torch.zeros_like(valid), None, sizes)
    geometry = sinusoidal_box_embedding(boxes[:, :1], pixel.geometry_size, pixel.geometry_wavelength, pixel.geometry_scale)
    for row, (height, width) in enumerate(sizes.tolist()):
        expected = original_coordinate_embedding((0.0, 0.0, width - 1.0, height - 1.0), width, height, pixel.geometry_size // 8)
        torch.testing.assert_close(geometry[row, 0], expected, atol=1e-5, rtol=1e-5)
    normalized = VlBertModel(config).eval()
    normalized.load_state_dict(model.state_dict())
    with torch.no_grad():
        normalized.embeddings.visual_ln_text.weight.fill_(1.0)
        model.embeddings.visual_ln_text.weight.fill_(1.0)
        moved = (model(**inputs, image_sizes=sizes).text_last_hidden_state - normalized(**inputs).text_last_hidden_state).abs().max()
    assert moved > 1e-3  # box 0 is every token's visual clue
    with pytest.raises(ValueError, match="image_sizes: expected each image's \\(height, width\\)"):
        model(**inputs)
    with pytest.raises(ValueError, match="image_sizes: expected \\(height, width\\) of at least 2 pixels"):
        model(**inputs, image_sizes=torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="image_box_style must be"):
        tiny_vl_bert_config(image_box_style="pixel")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("region_features", lambda b: b["region_features"][..., :5], "region_features: expected feature size 12"),
        ("region_boxes", lambda b: b["region_boxes"] * 3, r"region_boxes: expected coordinates normalised"),
        ("text_only", lambda b: torch.tensor([1.0, 0.0, 0.0]), "text_only: expected a boolean tensor"),
        ("masked_regions", lambda b: b["masked_regions"][:, :2], r"masked_regions: expected shape \(3, 5\)"),
        ("token_type_ids", lambda b: torch.full_like(b["input_ids"], 2), "token_type_ids: expected 0"),
        ("region_class_targets", lambda b: b["region_class_targets"][..., :4], r"region_class_targets: expected shape \(3, 5, 9\)"),
        ("labels", lambda b: b["labels"].float(), "labels: expected integer token ids"),
        ("pixel_values", lambda b: torch.zeros(3, 3, 8, 8), "pixel_values: this model takes precomputed"),
    ],
)
def test_bad_inputs_raise_a_clear_error(config, batch, name, value, message):
    model = VlBertForPreTraining(config)
    inputs = subset(batch, PRETRAINING_NAMES)
    inputs[name] = value(batch)
    with pytest.raises(ValueError, match=message):
        model(**inputs)


def test_bad_task_labels_raise(config, batch):
    with pytest.raises(ValueError, match="labels: expected choice indices"):
        VlBertForMultipleChoice(config)(input_ids=batch["input_ids"][:, None].repeat(1, 2, 1),
                                        region_features=batch["region_features"], region_boxes=batch["region_boxes"],
                                        region_attention_mask=batch["region_attention_mask"], labels=torch.tensor([0, 2, 1]))
    with pytest.raises(ValueError, match=r"labels: expected 0/1 region labels of shape \(3, 5\)"):
        VlBertForReferringExpressions(config)(**subset(batch, INPUT_NAMES), labels=torch.zeros(3, 4))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        VlBertModel(config)(**dict(subset(batch, INPUT_NAMES), input_ids=torch.ones(3, 39, dtype=torch.long),
                                   attention_mask=None, token_type_ids=None))
