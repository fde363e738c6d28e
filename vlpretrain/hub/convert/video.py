"""Converters of the video-text checkpoints: UniVL's ``univl.pretrained.bin`` and HERO's ``hero-tv-ht100.pt``.

Both are plain ``torch.save``d state dicts read with ``weights_only=True``. A converted UniVL records the features
it was trained on (``config.feature_provenance``: the MIL-NCE S3D with UniVL's extraction settings). Tied tensors that the originals store
several times (word embeddings in the MLM and decoder heads, the decoder's copies of the text tables) are read
once from their owner and re-tied by the model; ``gamma``/``beta`` names of old checkpoints become
``weight``/``bias``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ...configuration.hero import HeroConfig
from ...configuration.univl import UnivlConfig
from ...modeling.hero import HeroForPreTraining
from ...modeling.univl import UnivlForPreTraining
from ...processing.frames import preset_provenance
from ...utils.bert_keys import fuse_projections, fuse_qkv, rename_bert_layer_key
from .common import (
    embedding_sizes,
    layer_count,
    load_state_dict,
    rename_by_table,
    rename_gamma_beta,
    rename_state_dict,
    write_converted,
)

_UNIVL_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^bert\.embeddings\.LayerNorm\.", "univl.embeddings.norm."),
    (r"^bert\.embeddings\.(word_embeddings|position_embeddings|token_type_embeddings)\.", r"univl.embeddings.\1."),
    (r"^normalize_video\.visual_norm2d\.", "univl.video_norm."),
    (r"^visual\.embeddings\.word_embeddings\.", "univl.visual_embeddings.proj."),
    (r"^visual\.embeddings\.position_embeddings\.", "univl.visual_embeddings.position_embeddings."),
    (r"^visual\.embeddings\.LayerNorm\.", "univl.visual_embeddings.norm."),
    (r"^cross\.embeddings\.(position_embeddings|token_type_embeddings)\.", r"univl.cross_embeddings.\1."),
    (r"^cross\.embeddings\.LayerNorm\.", "univl.cross_embeddings.norm."),
    (r"^cross\.pooler\.dense\.", "univl.pooler.dense."),
    (r"^decoder\.embeddings\.LayerNorm\.", "univl.decoder.norm."),
    (r"^cls\.predictions\.transform\.dense\.", "mlm_head.transform.dense."),
    (r"^cls\.predictions\.transform\.LayerNorm\.", "mlm_head.transform.norm."),
    (r"^cls\.predictions\.bias$", "mlm_head.bias"),
    (r"^decoder\.classifier\.cls\.predictions\.transform\.dense\.", "decoder_head.transform.dense."),
    (r"^decoder\.classifier\.cls\.predictions\.transform\.LayerNorm\.", "decoder_head.transform.norm."),
    (r"^decoder\.classifier\.cls\.predictions\.bias$", "decoder_head.bias"),
    (r"^cls_visual\.predictions\.transform\.dense\.", "frame_head.transform.dense."),
    (r"^cls_visual\.predictions\.transform\.LayerNorm\.", "frame_head.transform.norm."),
    (r"^cls_visual\.predictions\.bias$", "frame_head.bias"),
    (r"^similarity_dense\.", "alignment_head."),
)

# Copies of tensors owned elsewhere (tied in the original) and modules the package does not build.
_UNIVL_DROPPED = (
    r"^decoder\.embeddings\.(word_embeddings|position_embeddings)\.weight$",
    r"^cls\.predictions\.decoder\.weight$",
    r"^decoder\.classifier\.cls\.predictions\.decoder\.weight$",
    r"^cls_visual\.predictions\.weight$",
    r"^(bert|visual)\.pooler\.dense\.",
)

_UNIVL_DECODER_LAYER = (
    ("slf_attn.att.query.", "attention.qkv.query."),
    ("slf_attn.att.key.", "attention.qkv.key."),
    ("slf_attn.att.value.", "attention.qkv.value."),
    ("slf_attn.output.dense.", "attention.output.dense."),
    ("slf_attn.output.LayerNorm.", "attention.output.norm."),
    ("enc_attn.att.query.", "cross_attention.query."),
    ("enc_attn.att.key.", "cross_attention.key_value.key."),
    ("enc_attn.att.value.", "cross_attention.key_value.value."),
    ("enc_attn.output.dense.", "cross_attention.output.dense."),
    ("enc_attn.output.LayerNorm.", "cross_attention.output.norm."),
    ("intermediate.dense.", "ffn.fc_in."),
    ("output.dense.", "ffn.output.dense."),
    ("output.LayerNorm.", "ffn.output.norm."),
)


def _rename_univl_key(key: str) -> str | None:
    """Map one microsoft/UniVL key to the package layout ("" = dropped, None = unknown)."""
    key = rename_gamma_beta(key)
    if any(re.match(pattern, key) for pattern in _UNIVL_DROPPED):
        return ""
    match = re.match(r"^(bert|visual|cross)\.encoder\.layer\.(\d+)\.(.*)$", key)
    if match:
        stream = {"bert": "text_layers", "visual": "visual_layers", "cross": "cross_layers"}[match.group(1)]
        mapped = rename_bert_layer_key(match.group(3))
        return None if mapped is None else f"univl.{stream}.{match.group(2)}.{mapped}"
    match = re.match(r"^decoder\.decoder\.layer\.(\d+)\.(.*)$", key)
    if match:
        for old, new in _UNIVL_DECODER_LAYER:
            if match.group(2).startswith(old):
                return f"univl.decoder.layers.{match.group(1)}.{new}{match.group(2)[len(old):]}"
        return None
    return rename_by_table(key, _UNIVL_RENAMES)


def convert_univl_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert a microsoft/UniVL state dict (stage I or II; ``module.`` prefixes allowed) to ``UnivlForPreTraining``."""
    renamed = rename_state_dict(state, _rename_univl_key, "UniVL")
    return fuse_projections(fuse_qkv(renamed), "key_value", ("key", "value"))


def univl_config_from_state_dict(state: dict[str, torch.Tensor], **overrides) -> UnivlConfig:
    """Infer the sizes of a converted (package-layout) UniVL state dict; 64-wide heads are assumed."""
    stage_two = "univl.cross_embeddings.position_embeddings.weight" in state
    values = {
        **embedding_sizes(state, "univl.embeddings"),
        "intermediate_size": state["univl.text_layers.0.ffn.fc_in.weight"].shape[0],
        "num_text_layers": layer_count(state, "univl.text_layers."),
        "num_visual_layers": layer_count(state, "univl.visual_layers."),
        "frame_feature_size": state["univl.visual_embeddings.proj.weight"].shape[1],
        "max_frames": state["univl.visual_embeddings.position_embeddings.weight"].shape[0],
        "stage": 2 if stage_two else 1,
    }
    if stage_two:
        values.update(
            num_cross_layers=layer_count(state, "univl.cross_layers."),
            num_decoder_layers=layer_count(state, "univl.decoder.layers."),
            max_cross_positions=state["univl.cross_embeddings.position_embeddings.weight"].shape[0],
            # the release pads every text to max_words = 48, so its frames start there
            frame_position_offset=min(48, values["max_position_embeddings"]),
        )
    values.update(overrides)
    return UnivlConfig(**values)


def convert_univl(source: str | os.PathLike, output_dir: str | os.PathLike, **config_overrides) -> Path:
    """Convert ``univl.pretrained.bin`` (microsoft/UniVL release v0) into a ``UnivlForPreTraining`` folder."""
    state = convert_univl_state_dict(load_state_dict(source))
    config = univl_config_from_state_dict(state, **config_overrides)
    model = UnivlForPreTraining(config)
    for name in list(model._tied_weights_keys):
        state.setdefault(name, state["univl.embeddings.word_embeddings.weight"])
    model.config.feature_provenance = preset_provenance("univl-s3d")
    return write_converted(model, state, output_dir)


_HERO_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^v_encoder\.f_encoder\.embeddings\.LayerNorm\.", "hero.embeddings.norm."),
    (r"^v_encoder\.f_encoder\.embeddings\.(word_embeddings|position_embeddings|token_type_embeddings)\.", r"hero.embeddings.\1."),
    (r"^v_encoder\.f_encoder\.img_embeddings\.img_linear\.", "hero.frame_embeddings.proj."),
    (r"^v_encoder\.f_encoder\.img_embeddings\.img_LayerNorm\.", "hero.frame_embeddings.input_norm."),
    (r"^v_encoder\.f_encoder\.img_embeddings\.position_embeddings\.", "hero.frame_embeddings.position_embeddings."),
    (r"^v_encoder\.f_encoder\.img_embeddings\.LayerNorm\.", "hero.frame_embeddings.norm."),
    (r"^v_encoder\.f_encoder\.img_embeddings\.mask_embedding\.", "hero.frame_mask_embedding."),
    (r"^v_encoder\.f_encoder\.lm_head\.dense\.", "mlm_head.transform.dense."),
    (r"^v_encoder\.f_encoder\.lm_head\.LayerNorm\.", "mlm_head.transform.norm."),
    (r"^v_encoder\.f_encoder\.lm_head\.bias$", "mlm_head.bias"),
    (r"^v_encoder\.frame_transform\.LayerNorm\.", "hero.frame_transform.norm."),
    (r"^v_encoder\.frame_transform\.net\.1\.", "hero.frame_transform.proj."),
    (r"^v_encoder\.c_encoder\.embeddings\.position_embeddings\.", "hero.temporal_position_embeddings."),
    (r"^v_encoder\.c_encoder\.embeddings\.LayerNorm\.", "hero.temporal_norm."),
    (r"^v_encoder\.feat_regress\.net\.0\.", "frame_head.transform.dense."),
    (r"^v_encoder\.feat_regress\.net\.2\.", "frame_head.transform.norm."),
    (r"^v_encoder\.feat_regress\.net\.3\.", "frame_head.decoder."),
    (r"^v_encoder\.mask_embedding\.", "hero.residual_mask_embedding."),
    (r"^v_encoder\.fom_output\.linear_1\.", "frame_order_head.fc_in."),
    (r"^v_encoder\.fom_output\.LayerNorm\.", "frame_order_head.norm."),
    (r"^v_encoder\.fom_output\.linear_2\.", "frame_order_head.fc_out."),
    (r"^video_query_linear\.", "matching_heads.video_query_linear."),
    (r"^video_st_predictor\.", "matching_heads.start_predictor."),
    (r"^video_ed_predictor\.", "matching_heads.end_predictor."),
    (r"^q_feat_attn\.query_input_proj\.LayerNorm\.", "matching_heads.query_encoder.input_norm."),
    (r"^q_feat_attn\.query_input_proj\.net\.1\.", "matching_heads.query_encoder.input_proj."),
    (r"^q_feat_attn\.query_pos_embed\.position_embeddings\.", "matching_heads.query_encoder.position_embeddings."),
    (r"^q_feat_attn\.query_pos_embed\.LayerNorm\.", "matching_heads.query_encoder.position_norm."),
    (r"^q_feat_attn\.modular_vector_mapping\.", "matching_heads.query_encoder.pool."),
)

# Buffers, the tied MLM decoder and the poolers the package does not build.
_HERO_DROPPED = (
    r"^v_encoder\.(f_encoder\.)?pad$",
    r"^v_encoder\.f_encoder\.lm_head\.decoder\.weight$",
    r"^v_encoder\.[fc]_encoder\.pooler\.",
)


def _rename_hero_key(key: str) -> str | None:
    """Map one linjieli222/HERO ``HeroForPretraining`` key to the package layout ("" = dropped, None = unknown)."""
    key = rename_gamma_beta(key)
    if any(re.match(pattern, key) for pattern in _HERO_DROPPED):
        return ""
    match = re.match(r"^v_encoder\.([fc])_encoder\.encoder\.layer\.(\d+)\.(.*)$", key)
    if match:
        stream = "cross_layers" if match.group(1) == "f" else "temporal_layers"
        mapped = rename_bert_layer_key(match.group(3))
        return None if mapped is None else f"hero.{stream}.{match.group(2)}.{mapped}"
    match = re.match(r"^q_feat_attn\.query_self_attention\.(.*)$", key)
    if match:
        mapped = rename_bert_layer_key(match.group(1).replace("self.", "attention.self.", 1).replace("output.", "attention.output.", 1))
        return None if mapped is None else f"matching_heads.query_encoder.self_attention.{mapped.removeprefix('attention.')}"
    return rename_by_table(key, _HERO_RENAMES)


def convert_hero_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert a linjieli222/HERO pretraining state dict to ``HeroForPreTraining`` (fp16 tensors become fp32)."""
    renamed = rename_state_dict(state, _rename_hero_key, "HERO pretraining")
    return fuse_qkv({name: tensor.float() if tensor.is_floating_point() else tensor for name, tensor in renamed.items()})


def hero_config_from_state_dict(state: dict[str, torch.Tensor], **overrides) -> HeroConfig:
    """Infer the sizes of a converted (package-layout) HERO state dict (64-wide heads are assumed) and set the
    release's fixed values (subtitle-embedding eps, RoBERTa's ``<pad>`` / ``<s>`` ids)."""
    values = {
        **embedding_sizes(state, "hero.embeddings"),
        "intermediate_size": state["hero.cross_layers.0.ffn.fc_in.weight"].shape[0],
        "num_cross_layers": layer_count(state, "hero.cross_layers."),
        "num_temporal_layers": layer_count(state, "hero.temporal_layers."),
        "frame_feature_size": state["hero.frame_embeddings.proj.weight"].shape[1],
        "max_frames": state["hero.frame_embeddings.position_embeddings.weight"].shape[0],
        # the release's subtitle embeddings normalise with eps 1e-5 (model/embed.py SubEmbeddings); RoBERTa ids
        "embedding_layer_norm_eps": 1e-5,
        "pad_token_id": 1,
        "bos_token_id": 0,
    }
    values.update(overrides)
    return HeroConfig(**values)


def convert_hero(source: str | os.PathLike, output_dir: str | os.PathLike, **config_overrides) -> Path:
    """Convert ``hero-tv-ht100.pt`` (linjieli222/HERO) into a ``HeroForPreTraining`` folder (vocabulary kept padded)."""
    # the release also stores its padded vocabulary size (``vocab_padded``), which is not a tensor
    state = convert_hero_state_dict(load_state_dict(source, tensors_only=True))
    model = HeroForPreTraining(hero_config_from_state_dict(state, **config_overrides))
    for name, owner in model._tied_weights_keys.items():
        state.setdefault(name, state[owner])
    state.setdefault("task_step", torch.zeros((), dtype=torch.long))
    return write_converted(model, state, output_dir)

