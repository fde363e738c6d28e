"""Converter of LXMERT checkpoints: transformers' ``LxmertForPreTraining`` / ``LxmertForQuestionAnswering`` folders
(``unc-nlp/lxmert-base-uncased``) and airsplay/lxmert's ``.pth`` files (``src/lxrt/modeling.py`` names).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import torch

from ...configuration.lxmert import LxmertConfig
from ...modeling.embeddings import zero_feature_embedding
from ...modeling.lxmert import LxmertForPreTraining, LxmertForQuestionAnswering
from ...utils.bert_keys import fuse_qkv, rename_bert_layer_key
from .common import embedding_sizes, layer_count, load_state_dict, placeholder_labels, rename_by_table, rename_state_dict, write_converted

_LXMERT_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^lxmert\.embeddings\.LayerNorm\.", "lxmert.embeddings.norm."),
    (r"^lxmert\.encoder\.visn_fc\.visn_fc\.", "lxmert.region_embeddings.feature_proj."),
    (r"^lxmert\.encoder\.visn_fc\.visn_layer_norm\.", "lxmert.region_embeddings.feature_norm."),
    (r"^lxmert\.encoder\.visn_fc\.box_fc\.", "lxmert.region_embeddings.box_proj."),
    (r"^lxmert\.encoder\.visn_fc\.box_layer_norm\.", "lxmert.region_embeddings.box_norm."),
    (r"^lxmert\.pooler\.dense\.", "lxmert.pooler.dense."),
    (r"^cls\.predictions\.transform\.dense\.", "mlm_head.transform.dense."),
    (r"^cls\.predictions\.transform\.LayerNorm\.", "mlm_head.transform.norm."),
    (r"^cls\.predictions\.bias$", "mlm_head.bias"),
    (r"^cls\.predictions\.decoder\.weight$", "mlm_head.decoder.weight"),
    (r"^cls\.seq_relationship\.", "matching_head."),
    (r"^obj_predict_head\.transform\.dense\.", "region_head.transform.dense."),
    (r"^obj_predict_head\.transform\.LayerNorm\.", "region_head.transform.norm."),
    (r"^obj_predict_head\.decoder_dict\.obj\.", "region_head.decoders.object."),
    (r"^obj_predict_head\.decoder_dict\.attr\.", "region_head.decoders.attribute."),
    (r"^obj_predict_head\.decoder_dict\.feat\.", "region_head.decoders.feature."),
    (r"^answer_head\.logit_fc\.0\.", "answer_head.fc_in."),
    (r"^answer_head\.logit_fc\.2\.", "answer_head.norm."),
    (r"^answer_head\.logit_fc\.3\.", "answer_head.fc_out."),
)

_LXMERT_CROSS_RENAMES: tuple[tuple[str, str], ...] = (
    ("visual_attention.att.", "cross_attention.qkv."),
    ("visual_attention.output.dense.", "cross_attention.output.dense."),
    ("visual_attention.output.LayerNorm.", "cross_attention.output.norm."),
    ("lang_self_att.self.", "text_self_attention.qkv."),
    ("lang_self_att.output.dense.", "text_self_attention.output.dense."),
    ("lang_self_att.output.LayerNorm.", "text_self_attention.output.norm."),
    ("visn_self_att.self.", "visual_self_attention.qkv."),
    ("visn_self_att.output.dense.", "visual_self_attention.output.dense."),
    ("visn_self_att.output.LayerNorm.", "visual_self_attention.output.norm."),
    ("lang_inter.dense.", "text_ffn.fc_in."),
    ("lang_output.dense.", "text_ffn.output.dense."),
    ("lang_output.LayerNorm.", "text_ffn.output.norm."),
    ("visn_inter.dense.", "visual_ffn.fc_in."),
    ("visn_output.dense.", "visual_ffn.output.dense."),
    ("visn_output.LayerNorm.", "visual_ffn.output.norm."),
)


def _rename_lxmert_key(key: str) -> str | None:
    """Map one transformers-layout or airsplay LXMERT key to the package layout ("" = dropped, None = unknown)."""
    if key.startswith("bert."):
        key = "lxmert." + key[len("bert.") :]
    if key.startswith("lxrt_encoder.model."):
        key = key[len("lxrt_encoder.model.") :].removeprefix("module.").replace("bert.", "lxmert.", 1)
    if key.startswith("logit_fc."):
        key = "answer_head." + key
    if key.endswith("position_ids"):
        return ""
    mapped = rename_by_table(key, _LXMERT_RENAMES)
    if mapped is not None:
        return mapped
    if key.startswith("lxmert.embeddings."):
        return key
    match = re.match(r"^lxmert\.encoder\.(layer|r_layers)\.(\d+)\.(.*)$", key)
    if match:
        stream = "text_layers" if match.group(1) == "layer" else "visual_layers"
        mapped = rename_bert_layer_key(match.group(3))
        return None if mapped is None else f"lxmert.{stream}.{match.group(2)}.{mapped}"
    match = re.match(r"^lxmert\.encoder\.x_layers\.(\d+)\.(.*)$", key)
    if match:
        rest = match.group(2)
        for old, new in _LXMERT_CROSS_RENAMES:
            if rest.startswith(old):
                return f"lxmert.cross_layers.{match.group(1)}.{new}{rest[len(old):]}"
    return None


def convert_lxmert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert a transformers ``LxmertForPreTraining``/``LxmertForQuestionAnswering`` state dict (or airsplay's)."""
    return fuse_qkv(rename_state_dict(state, _rename_lxmert_key, "LXMERT"))


def lxmert_config_from_state_dict(state: dict[str, torch.Tensor], **overrides) -> LxmertConfig:
    """Infer layer counts and head sizes of an LXMERT checkpoint from its (package-layout) tensors."""
    values = {
        **embedding_sizes(state, "lxmert.embeddings"),
        "num_text_layers": layer_count(state, "lxmert.text_layers."),
        "num_visual_layers": layer_count(state, "lxmert.visual_layers."),
        "num_cross_layers": layer_count(state, "lxmert.cross_layers."),
        "region_feature_size": state["lxmert.region_embeddings.feature_proj.weight"].shape[1],
        "region_box_size": state["lxmert.region_embeddings.box_proj.weight"].shape[1],
    }
    intermediate = "lxmert.text_layers.0.ffn.fc_in.weight"
    if intermediate in state:
        values["intermediate_size"] = state[intermediate].shape[0]
    weights = {}
    for objective, key, size_name in (
        ("region_object", "region_head.decoders.object.weight", "num_object_labels"),
        ("region_attribute", "region_head.decoders.attribute.weight", "num_attribute_labels"),
        ("qa", "answer_head.fc_out.weight", "num_qa_labels"),
    ):
        if key in state:
            values[size_name] = state[key].shape[0]
            weights[objective] = None
        else:
            weights[objective] = 0.0
    weights["region_feature"] = None if "region_head.decoders.feature.weight" in state else 0.0
    weights["matching"] = None if "matching_head.weight" in state else 0.0
    defaults = LxmertConfig().loss_weights
    values["loss_weights"] = {name: defaults[name] if weight is None else weight for name, weight in weights.items()}
    values["loss_weights"]["mlm"] = defaults["mlm"]
    values.update(overrides)
    return LxmertConfig(**values)


def _hf_lxmert_config_values(source: Path) -> dict:
    """Read the parts of a transformers ``LxmertConfig`` JSON that our config keeps under other names."""
    config_path = source / "config.json" if source.is_dir() else source.parent / "config.json"
    if not config_path.exists():
        return {}
    hf = json.loads(config_path.read_text())
    values = {
        "hidden_act": hf.get("hidden_act", "gelu"),
        "num_attention_heads": hf.get("num_attention_heads", 12),
        "hidden_dropout_prob": hf.get("hidden_dropout_prob", 0.1),
        "attention_probs_dropout_prob": hf.get("attention_probs_dropout_prob", 0.1),
        "initializer_range": hf.get("initializer_range", 0.02),
    }
    if hf.get("id2label") and "LxmertForQuestionAnswering" in hf.get("architectures", []):
        values["id2label"] = {int(k): v for k, v in hf["id2label"].items()}
    return values


def convert_lxmert(
    source: str | os.PathLike, output_dir: str | os.PathLike, original: bool = False, config_overrides: dict | None = None
) -> Path:
    """Convert a transformers-format LXMERT folder (``original=False``) or an airsplay ``.pth`` into a package folder.

    Sizes are read off the tensors; what tensors cannot tell (the head count, 64-wide heads assumed, and for
    transformers folders the values in their ``config.json``) can be set with ``config_overrides``.
    """
    source = Path(source)
    state = convert_lxmert_state_dict(load_state_dict(source))
    overrides = {} if original else _hf_lxmert_config_values(source)
    overrides.update(config_overrides or {})
    is_qa_model = "answer_head.fc_out.weight" in state and "mlm_head.bias" not in state
    if is_qa_model:
        state = {key.replace("answer_head.", "vqa_head.", 1): tensor for key, tensor in state.items()}
        num_answers = state["vqa_head.fc_out.weight"].shape[0]
        overrides.setdefault("id2label", placeholder_labels(num_answers))
        config = lxmert_config_from_state_dict(state, **overrides)
        model_class: Callable = LxmertForQuestionAnswering
    else:
        config = lxmert_config_from_state_dict(state, **overrides)
        model_class = LxmertForPreTraining
    if "mlm_head.decoder.weight" not in state and "mlm_head.bias" in state:
        state["mlm_head.decoder.weight"] = state["lxmert.embeddings.word_embeddings.weight"]
    state["lxmert.region_embeddings.zero_feature_embedding"] = zero_feature_embedding(
        state, "lxmert.region_embeddings", config.layer_norm_eps
    )
    return write_converted(model_class(config), state, output_dir)
