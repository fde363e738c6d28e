"""Converters for the two-stream co-attention family: ViLBERT (PyTorch ``.bin``) and ERNIE-ViL (Paddle parameters).

Both map onto the same package modules (ViLBERT: facebookresearch/vilbert-multi-task ``vilbert/vilbert.py``;
ERNIE-ViL: PaddlePaddle/ERNIE, branch ``repro``, ``ernie-vil/model/vl_transformer_encoder.py``). Checkpoints are read without unpickling
(``load_state_dict`` uses ``weights_only=True``; Paddle files are parsed as raw tensors), every key is renamed,
query/key/value matrices are fused, and ``write_converted`` checks that every tensor of the target model is
provided with the right shape before anything is written.
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

import numpy as np
import torch

from ...configuration.ernie_vil import ErnieVilConfig
from ...configuration.vilbert import VilbertConfig
from ...modeling.ernie_vil import ErnieVilForQuestionAnswering, ErnieVilModel
from ...modeling.vilbert import VilbertForPreTraining, VilbertForQuestionAnswering, VilbertForReferringExpressions
from ...utils.bert_keys import fuse_qkv, rename_bert_layer_key
from ...utils.log import get_logger
from .common import (
    embedding_sizes,
    layer_count,
    load_npz,
    load_state_dict,
    placeholder_labels,
    rename_by_table,
    rename_gamma_beta,
    swap_matching_rows,
    write_converted,
)

logger = get_logger(__name__)
# ViLBERT (vilbert_beta / vilbert-multi-task ``.bin`` state dicts) -------------------------------------------

_VILBERT_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^bert\.embeddings\.LayerNorm\.", "vilbert.embeddings.norm."),
    (r"^bert\.embeddings\.(word|position|token_type)_embeddings\.", r"vilbert.embeddings.\1_embeddings."),
    (r"^bert\.v_embeddings\.image_embeddings\.", "vilbert.region_embeddings.feature_proj."),
    (r"^bert\.v_embeddings\.image_location_embeddings\.", "vilbert.region_embeddings.box_proj."),
    (r"^bert\.v_embeddings\.LayerNorm\.", "vilbert.region_embeddings.norm."),
    (r"^bert\.t_pooler\.dense\.", "vilbert.text_pooler.dense."),
    (r"^bert\.v_pooler\.dense\.", "vilbert.visual_pooler.dense."),
    (r"^cls\.predictions\.bias$", "mlm_head.bias"),
    (r"^cls\.predictions\.transform\.dense\.", "mlm_head.transform.dense."),
    (r"^cls\.predictions\.transform\.LayerNorm\.", "mlm_head.transform.norm."),
    (r"^cls\.predictions\.decoder\.weight$", "mlm_head.decoder.weight"),
    (r"^cls\.bi_seq_relationship\.", "matching_head."),
    (r"^cls\.imagePredictions\.transform\.dense\.", "region_head.transform.dense."),
    (r"^cls\.imagePredictions\.transform\.LayerNorm\.", "region_head.transform.norm."),
    (r"^cls\.imagePredictions\.decoder\.", "region_head.decoders.class."),
)

_VILBERT_CO_LAYER_RENAMES: tuple[tuple[str, str], ...] = (
    ("biattention.query1.", "visual_attention.qkv.query."),
    ("biattention.key1.", "visual_attention.qkv.key."),
    ("biattention.value1.", "visual_attention.qkv.value."),
    ("biattention.query2.", "text_attention.qkv.query."),
    ("biattention.key2.", "text_attention.qkv.key."),
    ("biattention.value2.", "text_attention.qkv.value."),
    ("biOutput.dense1.", "visual_attention.output.dense."),
    ("biOutput.LayerNorm1.", "visual_attention.output.norm."),
    ("biOutput.dense2.", "text_attention.output.dense."),
    ("biOutput.LayerNorm2.", "text_attention.output.norm."),
    ("v_intermediate.dense.", "visual_ffn.fc_in."),
    ("v_output.dense.", "visual_ffn.output.dense."),
    ("v_output.LayerNorm.", "visual_ffn.output.norm."),
    ("t_intermediate.dense.", "text_ffn.fc_in."),
    ("t_output.dense.", "text_ffn.output.dense."),
    ("t_output.LayerNorm.", "text_ffn.output.norm."),
)

# Parameters of the original that this package does not build: the never-used ``q_dense`` projections of the
# co-layers, and fine-tuning heads of tasks without a model class here (12-in-1 heads, token-level logit,
# the 4-way multiple-choice ``vil_logit``, the referring ``vision_logit`` is kept by a referring conversion).
_VILBERT_DROPPED = re.compile(
    r"^bert\.encoder\.c_layer\.\d+\.biOutput\.q_dense[12]\.|^linguisic_logit\.|^vil_logit\.|^vil_prediction_gqa\.|"
    r"^vil_binary_prediction\.|^vil_tri_prediction\.|^vil_prediction\.logit_fc\.|^bert\.embeddings\.position_ids$"
)


def convert_vilbert_state_dict(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename an original ViLBERT state dict to the package layout; returns it and the dropped keys.

    LayerNorm ``gamma``/``beta`` become ``weight``/``bias``; query/key/value are fused; the alignment head's two
    rows are swapped (original: 0 = aligned; here: 1 = matched); vilbert_beta's weight-normed VQA classifier
    (``vil_prediction.main.{0,3}``) is folded into plain weights (``weight_g * weight_v / ||weight_v||``, the norm
    over the whole matrix as ``weight_norm(dim=None)``); ``vision_logit`` becomes the referring head.
    """
    renamed: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    unknown: list[str] = []
    norms: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        key = key.removeprefix("module.")
        key = rename_gamma_beta(key) if "LayerNorm" in key else key
        if key == "bert.embeddings.task_embeddings.weight":
            raise ValueError(
                "checkpoint: has 12-in-1 task embeddings (multi_task_model.bin with task_specific_tokens); only "
                "checkpoints without task tokens (pretrained_model.bin, vilbert_beta) can be converted"
            )
        if _VILBERT_DROPPED.search(key):
            dropped.append(key)
            continue
        match = re.match(r"^vil_prediction\.main\.(0|3)\.(weight_g|weight_v|bias)$", key)
        if match:
            layer = "vqa_head.fc_in" if match.group(1) == "0" else "vqa_head.fc_out"
            if match.group(2) == "bias":
                renamed[f"{layer}.bias"] = tensor
            else:
                norms.setdefault(layer, {})[match.group(2)] = tensor
            continue
        if key.startswith("vision_logit."):
            renamed["region_scorer." + key[len("vision_logit.") :]] = tensor
            continue
        mapped = rename_by_table(key, _VILBERT_RENAMES)
        layer_match = re.match(r"^bert\.encoder\.(layer|v_layer)\.(\d+)\.(.*)$", key)
        if layer_match:
            inner = rename_bert_layer_key(layer_match.group(3))
            stream = "text_layers" if layer_match.group(1) == "layer" else "visual_layers"
            mapped = None if inner is None else f"vilbert.encoder.{stream}.{layer_match.group(2)}.{inner}"
        co_match = re.match(r"^bert\.encoder\.c_layer\.(\d+)\.(.*)$", key)
        if co_match:
            for old, new in _VILBERT_CO_LAYER_RENAMES:
                if co_match.group(2).startswith(old):
                    mapped = f"vilbert.encoder.co_layers.{co_match.group(1)}.{new}{co_match.group(2)[len(old):]}"
        if mapped is None:
            unknown.append(key)
        else:
            renamed[mapped] = tensor
    if unknown:
        raise ValueError(f"checkpoint: {len(unknown)} keys have no ViLBERT counterpart, e.g. {unknown[:5]}")
    for layer, parts in norms.items():
        if set(parts) != {"weight_g", "weight_v"}:
            raise ValueError(f"checkpoint: {layer} has {sorted(parts)}; expected both weight_g and weight_v")
        renamed[f"{layer}.weight"] = parts["weight_g"] * parts["weight_v"] / parts["weight_v"].norm()
    swap_matching_rows(renamed)
    return fuse_qkv(renamed), dropped


def _two_stream_sizes(state: dict[str, torch.Tensor], prefix: str) -> dict:
    """Sizes of a ViLBERT-family encoder read off its (package-layout) tensors.

    Head counts are not stored: 64-wide text heads and 128-wide visual / co-attention heads are assumed (every
    release). The co-layer placement is not stored either: the releases put co-layer k after text layer
    ``T - K + k`` and before visual layer k, which is what is assumed; override ``t_biattention_id`` /
    ``v_biattention_id`` for other placements.
    """
    text_layers = layer_count(state, f"{prefix}.encoder.text_layers.")
    visual_layers = layer_count(state, f"{prefix}.encoder.visual_layers.")
    co_layers = layer_count(state, f"{prefix}.encoder.co_layers.")
    visual_size = state[f"{prefix}.region_embeddings.feature_proj.weight"].shape[0]
    co_size = state[f"{prefix}.encoder.co_layers.0.visual_attention.qkv.weight"].shape[0] // 3
    return {
        **embedding_sizes(state, f"{prefix}.embeddings"),
        "num_hidden_layers": text_layers,
        "region_feature_size": state[f"{prefix}.region_embeddings.feature_proj.weight"].shape[1],
        "v_hidden_size": visual_size,
        "v_num_hidden_layers": visual_layers,
        "v_num_attention_heads": max(1, visual_size // 128),
        "v_intermediate_size": state[f"{prefix}.encoder.co_layers.0.visual_ffn.fc_in.weight"].shape[0],
        "t_biattention_id": list(range(text_layers - co_layers, text_layers)),
        "v_biattention_id": list(range(co_layers)),
        "co_size": co_size,
        "text_intermediate_size": state[f"{prefix}.encoder.co_layers.0.text_ffn.fc_in.weight"].shape[0],
    }


def convert_vilbert(source: str | os.PathLike, output_dir: str | os.PathLike, **config_overrides) -> Path:
    """Convert a vilbert_beta / vilbert-multi-task checkpoint (``pytorch_model_N.bin``, ``pretrained_model.bin``).

    The target class follows the checkpoint: a VQA classifier gives [`VilbertForQuestionAnswering`], a
    ``vision_logit`` head gives [`VilbertForReferringExpressions`], otherwise [`VilbertForPreTraining`] (whose
    decoder is re-tied to the word embeddings). Dropped parameters (``q_dense``, heads of other tasks) are logged.
    """
    state, dropped = convert_vilbert_state_dict(load_state_dict(source))
    if dropped:
        logger.warning("vilbert: dropped %d parameters the package does not build, e.g. %s", len(dropped), dropped[:4])
    sizes = _two_stream_sizes(state, "vilbert")
    values = {key: value for key, value in sizes.items() if key not in ("co_size", "text_intermediate_size")}
    values.update(bi_hidden_size=sizes["co_size"], bi_num_attention_heads=max(1, sizes["co_size"] // 128),
                  intermediate_size=sizes["text_intermediate_size"])
    if "vqa_head.fc_out.weight" in state:
        values["vqa_hidden_size"] = state["vqa_head.fc_in.weight"].shape[0]
        answers = state["vqa_head.fc_out.weight"].shape[0]
        values["id2label"] = placeholder_labels(answers)
        model_class = VilbertForQuestionAnswering
        keep = ("vilbert.", "vqa_head.")
    elif "region_scorer.weight" in state:
        model_class = VilbertForReferringExpressions
        keep = ("vilbert.", "region_scorer.")
    else:
        values["num_object_labels"] = state["region_head.decoders.class.weight"].shape[0]
        state.setdefault("mlm_head.decoder.weight", state["vilbert.embeddings.word_embeddings.weight"])
        model_class = VilbertForPreTraining
        keep = ("vilbert.", "mlm_head.", "region_head.", "matching_head.")
    left_out = sorted(key for key in state if not key.startswith(keep))
    if left_out:
        logger.warning("vilbert: %d parameters of other heads are not part of %s, e.g. %s", len(left_out),
                       model_class.__name__, left_out[:4])
    state = {key: value for key, value in state.items() if key.startswith(keep)}
    values.update(config_overrides)
    return write_converted(model_class(VilbertConfig(**values)), state, output_dir)


# ERNIE-ViL (Paddle Fluid 1.x persistables: one file per parameter) ------------------------------------------

_PADDLE_DTYPES = {0: np.bool_, 1: np.int16, 2: np.int32, 3: np.int64, 4: np.float16, 5: np.float32, 6: np.float64}


def _varint(data: bytes, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if offset >= len(data):
            raise ValueError("truncated varint")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, offset


def read_paddle_tensor(path: str | os.PathLike) -> np.ndarray:
    """Read one parameter file written by Paddle Fluid 1.x ``save`` / ``save_persistables`` (no pickle).

    Layout (``SerializeToStream`` of a LoDTensor): uint32 version 0; uint64 LoD level count, then per level a
    uint64 byte size and that many bytes of offsets; uint32 tensor version 0; int32 size of a ``TensorDesc``
    protobuf (field 1: data type, field 2: dims) and the protobuf; then the raw little-endian data.
    The released tarballs' format is inferred from their loading scripts (PaddlePaddle/ERNIE ``ernie-vil/run_finetuning.sh``:
    Fluid 1.8 persistables, one file per parameter) and was not checked against
    a downloaded file here; parameters exported some other way can be converted from a ``.npz`` archive.
    """
    data = Path(path).read_bytes()
    try:
        offset = 0
        (version,) = struct.unpack_from("<I", data, offset)
        offset += 4
        if version != 0:
            raise ValueError(f"LoDTensor version {version}, expected 0")
        (levels,) = struct.unpack_from("<Q", data, offset)
        offset += 8
        for _ in range(levels):
            (size,) = struct.unpack_from("<Q", data, offset)
            offset += 8 + size
        (tensor_version,) = struct.unpack_from("<I", data, offset)
        offset += 4
        if tensor_version != 0:
            raise ValueError(f"tensor version {tensor_version}, expected 0")
        (desc_size,) = struct.unpack_from("<i", data, offset)
        offset += 4
        desc, offset = data[offset : offset + desc_size], offset + desc_size
        dtype, dims, position = None, [], 0
        while position < len(desc):
            tag, position = _varint(desc, position)
            if tag == 0x08:
                dtype, position = _varint(desc, position)
            elif tag == 0x10:
                dim, position = _varint(desc, position)
                dims.append(dim)
            elif tag == 0x12:
                length, position = _varint(desc, position)
                end = position + length
                while position < end:
                    dim, position = _varint(desc, position)
                    dims.append(dim)
            else:
                raise ValueError(f"unexpected TensorDesc field tag {tag}")
        if dtype not in _PADDLE_DTYPES:
            raise ValueError(f"unsupported data type {dtype}")
        array = np.frombuffer(data, dtype=_PADDLE_DTYPES[dtype], count=int(np.prod(dims)), offset=offset)
    except (struct.error, ValueError) as error:
        raise ValueError(f"{path}: not a Paddle Fluid 1.x parameter file ({error})") from error
    return array.reshape(dims).copy()


def load_paddle_parameters(source: str | os.PathLike) -> dict[str, np.ndarray]:
    """Paddle parameters from a folder of per-parameter files (Fluid 1.x) or a ``.npz`` archive (name -> array).

    Optimizer state that ``save_persistables`` also writes (moments, ``*_pow_acc_*``, learning-rate counters)
    is skipped.
    """
    source = Path(source)
    if source.is_file() and source.suffix == ".npz":
        return load_npz(source)
    if not source.is_dir():
        raise ValueError(f"{source}: expected a folder of Paddle parameter files or a .npz archive")
    optimizer_state = re.compile(r"moment\d|_pow_acc|learning_rate|LR_DECAY|@")
    parameters = {}
    for path in sorted(source.iterdir()):
        skipped = path.name.startswith(".") or path.suffix in (".json", ".txt") or optimizer_state.search(path.name)
        if path.is_file() and not skipped:
            parameters[path.name] = read_paddle_tensor(path)
    if not parameters:
        raise ValueError(f"{source}: no parameter files found")
    return parameters


_ERNIE_VIL_LAYER_PARTS: tuple[tuple[str, str], ...] = (
    ("multi_head_att_query_fc", "attention.qkv.query"),
    ("multi_head_att_key_fc", "attention.qkv.key"),
    ("multi_head_att_value_fc", "attention.qkv.value"),
    ("multi_head_att_output_fc", "attention.output.dense"),
    ("post_att_layer_norm", "attention.output.norm"),
    ("ffn_fc_0", "ffn.fc_in"),
    ("ffn_fc_1", "ffn.output.dense"),
    ("post_ffn_layer_norm", "ffn.output.norm"),
)

# Co-layer k (ernie-vil/model/vl_transformer_encoder.py, parameters ``encoder_colayer_k_*``): the text-query attention
# takes its keys/values from the visual stream and vice versa.
_ERNIE_VIL_CO_LAYER_PARTS: tuple[tuple[str, str], ...] = (
    ("vl_multi_head_att_query_fc", "visual_attention.qkv.query"),
    ("vl_multi_head_att_key_fc", "text_attention.qkv.key"),
    ("vl_multi_head_att_value_fc", "text_attention.qkv.value"),
    ("vl_multi_head_att_output_fc", "visual_attention.output.dense"),
    ("vl_post_att_layer_norm", "visual_attention.output.norm"),
    ("vl_ffn_fc_0", "visual_ffn.fc_in"),
    ("vl_ffn_fc_1", "visual_ffn.output.dense"),
    ("vl_post_ffn_layer_norm", "visual_ffn.output.norm"),
    ("multi_head_att_query_fc", "text_attention.qkv.query"),
    ("multi_head_att_key_fc", "visual_attention.qkv.key"),
    ("multi_head_att_value_fc", "visual_attention.qkv.value"),
    ("multi_head_att_output_fc", "text_attention.output.dense"),
    ("post_att_layer_norm", "text_attention.output.norm"),
    ("ffn_fc_0", "text_ffn.fc_in"),
    ("ffn_fc_1", "text_ffn.output.dense"),
    ("post_ffn_layer_norm", "text_ffn.output.norm"),
)

_ERNIE_VIL_FIXED: dict[str, str] = {
    "word_embedding": "ernie_vil.embeddings.word_embeddings.weight",
    "pos_embedding": "ernie_vil.embeddings.position_embeddings.weight",
    "sent_embedding": "ernie_vil.embeddings.token_type_embeddings.weight",
    "pre_encoder_layer_norm_scale": "ernie_vil.embeddings.norm.weight",
    "pre_encoder_layer_norm_bias": "ernie_vil.embeddings.norm.bias",
    "image_emb.w_0": "ernie_vil.region_embeddings.feature_proj.weight",
    "image_emb.b_0": "ernie_vil.region_embeddings.feature_proj.bias",
    "image_loc.w_0": "ernie_vil.region_embeddings.box_proj.weight",
    "image_loc.b_0": "ernie_vil.region_embeddings.box_proj.bias",
    "vl_pre_encoder_layer_norm_scale": "ernie_vil.region_embeddings.norm.weight",
    "vl_pre_encoder_layer_norm_bias": "ernie_vil.region_embeddings.norm.bias",
    "pooled_fc_text.w_0": "ernie_vil.text_pooler.dense.weight",
    "pooled_fc_text.b_0": "ernie_vil.text_pooler.dense.bias",
    "pooled_fc_image.w_0": "ernie_vil.visual_pooler.dense.weight",
    "pooled_fc_image.b_0": "ernie_vil.visual_pooler.dense.bias",
    "vqa_fc_w_0": "vqa_head.fc_in.weight",
    "vqa_fc_b_0": "vqa_head.fc_in.bias",
    "vqa_fc_w_1": "vqa_head.fc_out.weight",
    "vqa_fc_b_1": "vqa_head.fc_out.bias",
}


def _ernie_vil_suffix(paddle_suffix: str) -> str | None:
    """``.w_0`` / ``.b_0`` / ``_scale`` / ``_bias`` -> ``weight`` / ``bias``."""
    for ending, name in ((".w_0", "weight"), (".b_0", "bias"), ("_scale", "weight"), ("_bias", "bias")):
        if paddle_suffix.endswith(ending):
            return name
    return None


def _rename_ernie_vil_parameter(name: str) -> str | None:
    """Map one Paddle parameter name to the package layout (None: no counterpart)."""
    if name in _ERNIE_VIL_FIXED:
        return _ERNIE_VIL_FIXED[name]
    match = re.match(r"^encoder_(layer|vlayer|colayer)_(\d+)_(.*)$", name)
    if not match:
        return None
    kind, index, rest = match.groups()
    suffix = _ernie_vil_suffix(rest)
    if suffix is None:
        return None
    stem = rest[: -len(".w_0")] if rest.endswith((".w_0", ".b_0")) else rest.rsplit("_", 1)[0]
    parts = _ERNIE_VIL_CO_LAYER_PARTS if kind == "colayer" else _ERNIE_VIL_LAYER_PARTS
    stream = {"layer": "text_layers", "vlayer": "visual_layers", "colayer": "co_layers"}[kind]
    for old, new in parts:
        if stem == old:
            return f"ernie_vil.encoder.{stream}.{index}.{new}.{suffix}"
    return None


# Embedding tables are stored [vocab, hidden] like nn.Embedding; every other 2-d parameter is an fc [in, out].
_EMBEDDING_TABLES = ("word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight")


def convert_ernie_vil_parameters(parameters: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Rename ERNIE-ViL's Paddle parameters to the package layout; fc weights ([in, out]) are transposed."""
    state: dict[str, torch.Tensor] = {}
    unknown = []
    for name, array in parameters.items():
        mapped = _rename_ernie_vil_parameter(name)
        if mapped is None:
            unknown.append(name)
            continue
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if tensor.dim() == 2 and not mapped.endswith(_EMBEDDING_TABLES):
            tensor = tensor.t().contiguous()
        state[mapped] = tensor
    if unknown:
        raise ValueError(
            f"checkpoint: {len(unknown)} Paddle parameters have no ERNIE-ViL counterpart, e.g. {sorted(unknown)[:5]}"
        )
    return fuse_qkv(state)


_ERNIE_VIL_JSON_KEYS = {
    "vocab_size": "vocab_size", "hidden_size": "hidden_size", "num_hidden_layers": "num_hidden_layers",
    "num_attention_heads": "num_attention_heads", "v_hidden_size": "v_hidden_size",
    "v_num_attention_heads": "v_num_attention_heads", "v_intermediate_size": "v_intermediate_size",
    "co_hidden_size": "co_hidden_size", "co_num_attention_heads": "co_num_attention_heads",
    "max_position_embeddings": "max_position_embeddings", "sent_type_vocab_size": "type_vocab_size",
    "hidden_act": "hidden_act", "hidden_dropout_prob": "hidden_dropout_prob",
    "attention_probs_dropout_prob": "attention_probs_dropout_prob", "initializer_range": "initializer_range",
    "t_biattention_id": "t_biattention_id", "v_biattention_id": "v_biattention_id", "class_size": "num_object_labels",
}


def convert_ernie_vil(source: str | os.PathLike, output_dir: str | os.PathLike, **config_overrides) -> Path:
    """Convert an ERNIE-ViL Paddle parameter folder (or ``.npz``) into [`ErnieVilModel`] or, with the VQA head,
    [`ErnieVilForQuestionAnswering`].

    Sizes come from the tensors and, when present next to the parameters, from ``ernie_vil_config*.json``
    (``sent_type_vocab_size`` -> ``type_vocab_size``, ``class_size`` -> ``num_object_labels``). The released
    pretraining heads' names are not known, so pretraining checkpoints convert to the encoder; load it with
    ``ErnieVilForPreTraining.from_pretrained`` to add freshly initialised heads.
    """
    source = Path(source)
    state = convert_ernie_vil_parameters(load_paddle_parameters(source))
    sizes = _two_stream_sizes(state, "ernie_vil")
    values = {key: value for key, value in sizes.items() if key not in ("co_size", "text_intermediate_size")}
    values.update(co_hidden_size=sizes["co_size"], co_num_attention_heads=max(1, sizes["co_size"] // 128))
    folder = source if source.is_dir() else source.parent
    for config_path in sorted(folder.glob("ernie_vil_config*.json")):
        original = json.loads(config_path.read_text())
        values.update({ours: original[theirs] for theirs, ours in _ERNIE_VIL_JSON_KEYS.items() if theirs in original})
    if "vqa_head.fc_out.weight" in state:
        values["vqa_hidden_size"] = state["vqa_head.fc_in.weight"].shape[0]
        values["id2label"] = placeholder_labels(state["vqa_head.fc_out.weight"].shape[0])
        model = ErnieVilForQuestionAnswering(ErnieVilConfig(**{**values, **config_overrides}))
    else:
        model = ErnieVilModel(ErnieVilConfig(**{**values, **config_overrides}))
        state = {key[len("ernie_vil.") :]: value for key, value in state.items()}
    return write_converted(model, state, output_dir)

