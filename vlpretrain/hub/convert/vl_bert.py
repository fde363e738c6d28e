"""Converter of jackroos/VL-BERT pretraining checkpoints (``ResNetVLBERTForPretrainingMultitask`` in
``pretrain/modules/resnet_vlbert_for_pretraining_multitask.py``; the "prec" models, on precomputed region features).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ...configuration.vl_bert import VlBertConfig
from ...modeling.vl_bert import VlBertForPreTraining
from ...utils.bert_keys import fuse_qkv, rename_bert_layer_key
from .common import embedding_sizes, layer_count, load_state_dict, rename_by_table, rename_state_dict, write_converted

_VL_BERT_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^vlbert\.embedding_LayerNorm\.", "vl_bert.embeddings.norm."),
    (r"^vlbert\.(word_embeddings|end_embedding|position_embeddings|token_type_embeddings)\.", r"vl_bert.embeddings.\1."),
    (r"^vlbert\.(visual_ln_text|visual_ln_object)\.", r"vl_bert.embeddings.\1."),
    (r"^vlbert\.pooler\.dense\.", "vl_bert.pooler.dense."),
    (r"^vlbert\.mlm_head\.predictions\.bias$", "mlm_head.bias"),
    (r"^vlbert\.mlm_head\.predictions\.transform\.dense\.", "mlm_head.transform.dense."),
    (r"^vlbert\.mlm_head\.predictions\.transform\.LayerNorm\.", "mlm_head.transform.norm."),
    (r"^vlbert\.mlm_head\.predictions\.decoder\.weight$", "mlm_head.decoder.weight"),
    (r"^vlbert\.mvrc_head\.transform\.dense\.", "region_class_head.dense."),
    (r"^vlbert\.mvrc_head\.region_cls_pred\.", "region_class_head.decoder."),
    (r"^vlbert\.relationsip_head\.caption_image_relationship\.", "relationship_head."),
    (r"^object_linguistic_embeddings\.", "vl_bert.embeddings.object_linguistic_embedding."),
    (r"^(object_mask_word_embedding|object_mask_visual_embedding|aux_text_visual_embedding)\.", r"vl_bert.embeddings.\1."),
    (r"^image_feature_extractor\.obj_downsample\.1\.", "vl_bert.embeddings.region_projection."),
)

# The end-to-end models' ResNet-101 (``FastRCNN``, jackroos/VL-BERT ``common/fast_rcnn.py``), kept under ``image_feature_extractor``.
_BACKBONE_PREFIXES = (
    "image_feature_extractor.backbone.",
    "image_feature_extractor.roi_head_feature_extractor.",
    "image_feature_extractor.head.",
)


def _rename_vl_bert_key(key: str) -> str | None:
    """Map one jackroos/VL-BERT key to the package layout (None: no counterpart)."""
    match = re.match(r"^vlbert\.encoder\.layer\.(\d+)\.(.*)$", key)
    if match:
        mapped = rename_bert_layer_key(match.group(2))
        return None if mapped is None else f"vl_bert.layers.{match.group(1)}.{mapped}"
    return rename_by_table(key, _VL_BERT_RENAMES)


def convert_vl_bert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert a jackroos/VL-BERT pretraining state dict (``ResNetVLBERTForPretrainingMultitask``, "prec" models).

    The DDP prefix ``module.`` is optional. The end-to-end models' ResNet-101 keys
    (``image_feature_extractor.backbone.*``, ``roi_head_feature_extractor``, ``head``) have no counterpart in a
    transformers ``AutoBackbone`` and are rejected with an explicit error, as are fine-tuned VCR keys.
    """
    backbone = [key for key in (key.removeprefix("module.") for key in state) if key.startswith(_BACKBONE_PREFIXES)]
    if backbone:
        raise ValueError(
            f"checkpoint: {len(backbone)} keys of the end-to-end ResNet-101 (e.g. {backbone[0]}) cannot be mapped onto a "
            "transformers AutoBackbone; convert a 'prec' checkpoint, or load the backbone separately"
        )
    return fuse_qkv(rename_state_dict(state, _rename_vl_bert_key, "VL-BERT"))


def vl_bert_config_from_state_dict(state: dict[str, torch.Tensor], **overrides) -> VlBertConfig:
    """Infer the sizes of a converted (package-layout) VL-BERT state dict; 64-wide heads are assumed."""
    feature_size = state["vl_bert.embeddings.object_mask_visual_embedding.weight"].shape[1]
    values = {
        **embedding_sizes(state, "vl_bert.embeddings"),
        "num_hidden_layers": layer_count(state, "vl_bert.layers."),
        "intermediate_size": state["vl_bert.layers.0.ffn.fc_in.weight"].shape[0],
        "region_feature_size": feature_size,
        "geometry_size": state["vl_bert.embeddings.region_projection.weight"].shape[1] - feature_size,
        # the original's whole-image box is (0, 0, W - 1, H - 1) in pixels; the model then needs image_sizes
        "image_box_style": "pixels",
    }
    weights = {"mlm": 1.0, "text_mlm": 1.0, "region_class": 0.0, "matching": 0.0}
    if "region_class_head.decoder.weight" in state:
        values["num_object_labels"] = state["region_class_head.decoder.weight"].shape[0]
        weights["region_class"] = 1.0
    if "relationship_head.weight" in state:
        weights["matching"] = 1.0
    values["loss_weights"] = weights
    values.update(overrides)
    return VlBertConfig(**values)


def convert_vl_bert(source: str | os.PathLike, output_dir: str | os.PathLike, **config_overrides) -> Path:
    """Convert a jackroos/VL-BERT ``.model`` file (weights under ``state_dict``) into a ``VlBertForPreTraining`` folder."""
    state = convert_vl_bert_state_dict(load_state_dict(source))
    if "mlm_head.decoder.weight" not in state and "mlm_head.bias" in state:
        state["mlm_head.decoder.weight"] = state["vl_bert.embeddings.word_embeddings.weight"]
    config = vl_bert_config_from_state_dict(state, **config_overrides)
    return write_converted(VlBertForPreTraining(config), state, output_dir)
