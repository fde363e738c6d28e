"""Converting jackroos/VL-BERT checkpoints: random tensors laid out like the originals land in place."""

from __future__ import annotations

import pytest
import torch
from helpers.single_stream_factories import INPUT_NAMES, single_stream_batch, subset

from vlpretrain import VlBertForPreTraining
from vlpretrain.cli import main as cli_main
from vlpretrain.hub.convert.vl_bert import convert_vl_bert_state_dict

HIDDEN, LAYERS, FFN, VOCAB, POSITIONS, FEATURES, GEOMETRY, CLASSES = 32, 2, 48, 64, 40, 12, 16, 9


def original_state_dict(relationship: bool = False) -> dict[str, torch.Tensor]:
    """A random ``ResNetVLBERTForPretrainingMultitask`` (prec) state dict with the original key names (DDP prefix)."""
    generator = torch.Generator().manual_seed(0)
    shapes = {
        "vlbert.word_embeddings.weight": (VOCAB, HIDDEN),
        "vlbert.end_embedding.weight": (1, HIDDEN),
        "vlbert.position_embeddings.weight": (POSITIONS, HIDDEN),
        "vlbert.token_type_embeddings.weight": (3, HIDDEN),
        "vlbert.embedding_LayerNorm.weight": (HIDDEN,),
        "vlbert.embedding_LayerNorm.bias": (HIDDEN,),
        "vlbert.visual_ln_text.weight": (HIDDEN,),
        "vlbert.visual_ln_text.bias": (HIDDEN,),
        "vlbert.visual_ln_object.weight": (HIDDEN,),
        "vlbert.visual_ln_object.bias": (HIDDEN,),
        "vlbert.mlm_head.predictions.bias": (VOCAB,),
        "vlbert.mlm_head.predictions.transform.dense.weight": (HIDDEN, HIDDEN),
        "vlbert.mlm_head.predictions.transform.dense.bias": (HIDDEN,),
        "vlbert.mlm_head.predictions.transform.LayerNorm.weight": (HIDDEN,),
        "vlbert.mlm_head.predictions.transform.LayerNorm.bias": (HIDDEN,),
        "vlbert.mvrc_head.transform.dense.weight": (HIDDEN, HIDDEN),
        "vlbert.mvrc_head.transform.dense.bias": (HIDDEN,),
        "vlbert.mvrc_head.region_cls_pred.weight": (CLASSES, HIDDEN),
        "vlbert.mvrc_head.region_cls_pred.bias": (CLASSES,),
        "object_linguistic_embeddings.weight": (1, HIDDEN),
        "object_mask_word_embedding.weight": (1, HIDDEN),
        "object_mask_visual_embedding.weight": (1, FEATURES),
        "aux_text_visual_embedding.weight": (1, HIDDEN),
        "image_feature_extractor.obj_downsample.1.weight": (HIDDEN, GEOMETRY + FEATURES),
        "image_feature_extractor.obj_downsample.1.bias": (HIDDEN,),
    }
    for layer in range(LAYERS):
        prefix = f"vlbert.encoder.layer.{layer}."
        for part in ("query", "key", "value"):
            shapes[f"{prefix}attention.self.{part}.weight"] = (HIDDEN, HIDDEN)
            shapes[f"{prefix}attention.self.{part}.bias"] = (HIDDEN,)
        for name, shape in (("attention.output.dense", (HIDDEN, HIDDEN)), ("intermediate.dense", (FFN, HIDDEN)),
                            ("output.dense", (HIDDEN, FFN))):
            shapes[f"{prefix}{name}.weight"] = shape
            shapes[f"{prefix}{name}.bias"] = (shape[0],)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[f"{prefix}{name}.weight"] = (HIDDEN,)
            shapes[f"{prefix}{name}.bias"] = (HIDDEN,)
    if relationship:
        shapes["vlbert.pooler.dense.weight"] = (HIDDEN, HIDDEN)
        shapes["vlbert.pooler.dense.bias"] = (HIDDEN,)
        shapes["vlbert.relationsip_head.caption_image_relationship.weight"] = (2, HIDDEN)
        shapes["vlbert.relationsip_head.caption_image_relationship.bias"] = (2,)
    state = {f"module.{name}": torch.randn(shape, generator=generator) for name, shape in shapes.items()}
    state["module.vlbert.mlm_head.predictions.decoder.weight"] = state["module.vlbert.word_embeddings.weight"]
    return state


@pytest.mark.parametrize("relationship", [False, True])
def test_every_original_tensor_lands_in_place(tmp_path, relationship):
    original = original_state_dict(relationship)
    torch.save({"state_dict": original, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-7}]}}, tmp_path / "vl-bert-prec.model")
    assert cli_main(["convert", "--from", "vl-bert", str(tmp_path / "vl-bert-prec.model"), "--output-dir", str(tmp_path / "out"),
                     "--config-overrides", '{"num_attention_heads": 4}']) == 0
    model = VlBertForPreTraining.from_pretrained(tmp_path / "out").eval()
    config = model.config
    assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size, config.region_feature_size,
            config.geometry_size, config.num_object_labels) == (HIDDEN, LAYERS, FFN, FEATURES, GEOMETRY, CLASSES)
    assert config.objective_enabled("matching") == relationship
    ours = model.state_dict()
    o = {name.removeprefix("module."): tensor for name, tensor in original.items()}
    expected = {
        "vl_bert.embeddings.word_embeddings.weight": o["vlbert.word_embeddings.weight"],
        "vl_bert.embeddings.end_embedding.weight": o["vlbert.end_embedding.weight"],
        "vl_bert.embeddings.token_type_embeddings.weight": o["vlbert.token_type_embeddings.weight"],
        "vl_bert.embeddings.norm.bias": o["vlbert.embedding_LayerNorm.bias"],
        "vl_bert.embeddings.visual_ln_text.weight": o["vlbert.visual_ln_text.weight"],
        "vl_bert.embeddings.visual_ln_object.bias": o["vlbert.visual_ln_object.bias"],
        "vl_bert.embeddings.object_linguistic_embedding.weight": o["object_linguistic_embeddings.weight"],
        "vl_bert.embeddings.object_mask_visual_embedding.weight": o["object_mask_visual_embedding.weight"],
        "vl_bert.embeddings.aux_text_visual_embedding.weight": o["aux_text_visual_embedding.weight"],
        "vl_bert.embeddings.region_projection.weight": o["image_feature_extractor.obj_downsample.1.weight"],
        "vl_bert.layers.1.attention.output.norm.weight": o["vlbert.encoder.layer.1.attention.output.LayerNorm.weight"],
        "vl_bert.layers.0.ffn.fc_in.weight": o["vlbert.encoder.layer.0.intermediate.dense.weight"],
        "vl_bert.layers.0.ffn.output.norm.bias": o["vlbert.encoder.layer.0.output.LayerNorm.bias"],
        "mlm_head.bias": o["vlbert.mlm_head.predictions.bias"],
        "mlm_head.transform.norm.weight": o["vlbert.mlm_head.predictions.transform.LayerNorm.weight"],
        "mlm_head.decoder.weight": o["vlbert.word_embeddings.weight"],
        "region_class_head.dense.weight": o["vlbert.mvrc_head.transform.dense.weight"],
        "region_class_head.decoder.bias": o["vlbert.mvrc_head.region_cls_pred.bias"],
    }
    for layer in range(LAYERS):
        prefix = f"vlbert.encoder.layer.{layer}.attention.self."
        expected[f"vl_bert.layers.{layer}.attention.qkv.weight"] = torch.cat(
            [o[f"{prefix}{part}.weight"] for part in ("query", "key", "value")]
        )
    if relationship:
        expected["relationship_head.weight"] = o["vlbert.relationsip_head.caption_image_relationship.weight"]
        expected["vl_bert.pooler.dense.bias"] = o["vlbert.pooler.dense.bias"]
    for name, tensor in expected.items():
        assert torch.equal(ours[name], tensor), name
    # Every converted tensor is accounted for (the converter loads strictly), and the model runs.
    converted = convert_vl_bert_state_dict(original)
    assert set(converted) | {"mlm_head.decoder.weight"} == set(ours)
    batch = single_stream_batch(config, labels=False)
    # The original's whole-image box is (0, 0, W - 1, H - 1) in pixels, so a converted model needs the image sizes.
    assert config.image_box_style == "pixels"
    with pytest.raises(ValueError, match="image_sizes"):
        model(**subset(batch, INPUT_NAMES))
    sizes = torch.tensor([[480, 640], [375, 500], [600, 800]])
    assert torch.isfinite(model(**subset(batch, INPUT_NAMES), image_sizes=sizes).prediction_logits).all()


def test_end_to_end_backbone_and_unknown_keys_are_rejected():
    state = original_state_dict()
    with pytest.raises(ValueError, match="end-to-end ResNet-101"):
        convert_vl_bert_state_dict(dict(state, **{"module.image_feature_extractor.backbone.conv1.weight": torch.zeros(1)}))
    with pytest.raises(ValueError, match="no VL-BERT counterpart"):
        convert_vl_bert_state_dict(dict(state, **{"module.final_mlp.0.weight": torch.zeros(1)}))


def test_converted_relationship_head_keeps_row_one_as_matched(tmp_path):
    """jackroos/VL-BERT labels a matching caption 1 (``relationship_label``, pretrain/data/datasets/
    conceptual_captions.py), as the package does: the rows are copied unchanged."""
    original = original_state_dict(relationship=True)
    original["module.vlbert.relationsip_head.caption_image_relationship.weight"].zero_()
    original["module.vlbert.relationsip_head.caption_image_relationship.bias"].copy_(torch.tensor([-5.0, 5.0]))
    torch.save({"state_dict": original}, tmp_path / "vl-bert-prec.model")
    assert cli_main(["convert", "--from", "vl-bert", str(tmp_path / "vl-bert-prec.model"), "--output-dir", str(tmp_path / "out"),
                     "--config-overrides", '{"num_attention_heads": 4}']) == 0
    model = VlBertForPreTraining.from_pretrained(tmp_path / "out").eval()
    batch = single_stream_batch(model.config, labels=False)
    with torch.no_grad():
        image_sizes = torch.tensor([[480, 640]] * batch["input_ids"].shape[0])  # converted: the original's pixel box
        logits = model(**subset(batch, INPUT_NAMES), image_sizes=image_sizes).matching_logits
    assert (logits[:2, 1] > logits[:2, 0]).all()  # the image-caption rows (row 2 is text-only)
    assert model.vl_bert.embeddings.norm.eps == 1e-12  # BertLayerNorm(eps=1e-12) of the original
