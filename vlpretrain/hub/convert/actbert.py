"""Converter of the PaddleVideo ActBERT port's parameters (``ActBERT.pdparams``) to [`ActBertForPreTraining`].

Reading without Paddle and without unpickling: a ``.pdparams`` file is a pickle, which the package never loads.
Export it once where Paddle is installed, as plain arrays::

    import numpy as np, paddle
    np.savez("ActBERT.npz", **{name: value.numpy() for name, value in paddle.load("ActBERT.pdparams").items()})

and convert the ``.npz`` (read with ``allow_pickle=False``); a safetensors file with the same names works too.
Paddle's ``nn.Linear`` stores weights as [in, out], so every 2-D weight except the embedding tables and the tied
``cls.predictions.decoder_weight`` is transposed. The port's ``value_at`` is copied into ``value_av`` as well (the
port uses ``value_at`` for both contexts; see ``TangledLayer``), and its unused ``value_av`` is dropped. The matching
head's two rows are swapped: the port's label 0 means the caption matches the video (``RandomCap`` in
``paddlevideo/loader/pipelines/multimodal.py``), the package's 1.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ...configuration.actbert import ActBertConfig
from ...modeling.actbert import ActBertForPreTraining
from ...utils.bert_keys import fuse_qkv, rename_bert_layer_key
from .common import embedding_sizes, layer_count, load_npz, load_state_dict, rename_by_table, swap_matching_rows, write_converted

_NO_TRANSPOSE = re.compile(r"(word_embeddings|position_embeddings|token_type_embeddings)\.weight$|decoder_weight$")
_STREAMS = {"layer": "text_layers", "v_layer": "region_layers", "a_layer": "action_layers"}
_ENT_QKV = {"1": "region_qkv", "2": "text_qkv", "3": "action_qkv"}
_ENT_OUTPUT = {"1": "region_output", "2": "text_output", "3": "action_output"}
_ENT_FFN = {"v": "region_ffn", "t": "text_ffn", "a": "action_ffn"}
_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^bert\.embeddings\.LayerNorm\.", "actbert.embeddings.norm."),
    (r"^bert\.embeddings\.", "actbert.embeddings."),
    (r"^bert\.v_embeddings\.image_embeddings\.", "actbert.region_embeddings.feature_proj."),
    (r"^bert\.v_embeddings\.image_location_embeddings\.", "actbert.region_embeddings.box_proj."),
    (r"^bert\.v_embeddings\.LayerNorm\.", "actbert.region_embeddings.norm."),
    (r"^bert\.a_embeddings\.action_embeddings\.", "actbert.action_embeddings.feature_proj."),
    (r"^bert\.a_embeddings\.LayerNorm\.", "actbert.action_embeddings.norm."),
    (r"^bert\.t_pooler\.dense\.", "actbert.text_pooler.dense."),
    (r"^bert\.v_pooler\.dense\.", "actbert.region_pooler.dense."),
    (r"^bert\.a_pooler\.dense\.", "actbert.action_pooler.dense."),
    (r"^cls\.predictions\.transform\.dense\.", "mlm_head.transform.dense."),
    (r"^cls\.predictions\.transform\.LayerNorm\.", "mlm_head.transform.norm."),
    (r"^cls\.predictions\.decoder_weight$", "mlm_head.decoder.weight"),
    (r"^cls\.predictions\.decoder_bias$", "mlm_head.bias"),
    (r"^cls\.seq_relationship\.", "matching_head."),
    (r"^cls\.imagePredictions\.transform\.dense\.", "region_head.transform.dense."),
    (r"^cls\.imagePredictions\.transform\.LayerNorm\.", "region_head.transform.norm."),
    (r"^cls\.imagePredictions\.decoder\.", "region_head.decoders.object."),
    (r"^cls\.actionPredictions\.transform\.dense\.", "action_head.transform.dense."),
    (r"^cls\.actionPredictions\.transform\.LayerNorm\.", "action_head.transform.norm."),
    (r"^cls\.actionPredictions\.decoder\.", "action_head.decoders.action."),
)


def read_paddle_parameters(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Parameters of the port exported as ``.npz`` (``allow_pickle=False``) or safetensors; ``.pdparams`` is refused."""
    path = Path(path)
    if path.suffix == ".pdparams":
        raise ValueError(
            f"{path}: .pdparams files are pickles and are never unpickled here; export them once with Paddle as "
            "np.savez('ActBERT.npz', **{k: v.numpy() for k, v in paddle.load(path).items()}) and convert the .npz"
        )
    if path.suffix == ".npz":
        return {name: torch.from_numpy(array) for name, array in load_npz(path).items()}
    return load_state_dict(path)


def _rename(key: str) -> str | None:
    match = re.match(r"^bert\.encoder\.(layer|v_layer|a_layer)\.(\d+)\.(.+)$", key)
    if match:
        inner = rename_bert_layer_key(match.group(3))
        return None if inner is None else f"actbert.{_STREAMS[match.group(1)]}.{match.group(2)}.{inner}"
    match = re.match(r"^bert\.encoder\.c_layer\.(\d+)\.(.+)$", key)
    if match:
        block, rest = f"actbert.tangled_layers.{match.group(1)}", match.group(2)
        found = re.match(r"^ent_attention\.(query|key|value)([123])\.(weight|bias)$", rest)
        if found:
            return f"{block}.{_ENT_QKV[found.group(2)]}.{found.group(1)}.{found.group(3)}"
        found = re.match(r"^ent_attention\.(key_at|value_at|key_av)\.(weight|bias)$", rest)
        if found:
            return f"{block}.{found.group(1)}.{found.group(2)}"
        found = re.match(r"^ent_output\.(dense|LayerNorm)([123])\.(weight|bias)$", rest)
        if found:
            part = "dense" if found.group(1) == "dense" else "norm"
            return f"{block}.{_ENT_OUTPUT[found.group(2)]}.{part}.{found.group(3)}"
        found = re.match(r"^([vta])_(intermediate|output)\.(dense|LayerNorm)\.(weight|bias)$", rest)
        if found:
            stream = _ENT_FFN[found.group(1)]
            part = "fc_in" if found.group(2) == "intermediate" else ("output.dense" if found.group(3) == "dense" else "output.norm")
            return f"{block}.{stream}.{part}.{found.group(4)}"
        return None
    return rename_by_table(key, _RENAMES)


def convert_actbert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename, transpose and fuse the port's parameters into the package layout; unknown keys raise ``ValueError``."""
    renamed: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in state.items():
        if key.endswith("ent_attention.value_av.weight") or key.endswith("ent_attention.value_av.bias"):
            continue  # unused by the port; value_av takes the port's value_at below
        target = _rename(key)
        if target is None:
            unknown.append(key)
            continue
        tensor = torch.as_tensor(tensor).float()
        if tensor.dim() == 2 and not _NO_TRANSPOSE.search(key):
            tensor = tensor.T.contiguous()
        renamed[target] = tensor
        if ".value_at." in target:
            renamed[target.replace(".value_at.", ".value_av.")] = tensor.clone()
    if unknown:
        raise ValueError(f"checkpoint: keys not in the ActBERT port's layout: {sorted(unknown)[:8]}")
    fused = fuse_qkv(renamed)  # the tangled blocks' region_qkv, text_qkv, action_qkv as well
    if "mlm_head.decoder.weight" not in fused and "actbert.embeddings.word_embeddings.weight" in fused:
        fused["mlm_head.decoder.weight"] = fused["actbert.embeddings.word_embeddings.weight"]
    swap_matching_rows(fused)  # port: row 0 = matched; package: row 1 = matched
    bias = fused.get("actbert.action_embeddings.feature_proj.bias")
    if bias is not None:  # the port's masked action is its zeroed feature, i.e. the projection's bias
        fused["actbert.action_embeddings.mask_embedding.weight"] = bias[None].clone()
    return fused


def actbert_config_from_state_dict(state: dict[str, torch.Tensor], **overrides) -> ActBertConfig:
    """Sizes of a converted (package-layout) ActBERT state dict; head counts and the tangled placement come from the
    defaults (the port's) unless ``overrides`` give them."""
    values = dict(
        **embedding_sizes(state, "actbert.embeddings", head_width=None),
        num_hidden_layers=layer_count(state, "actbert.text_layers."),
        v_num_hidden_layers=layer_count(state, "actbert.region_layers."),
        a_num_hidden_layers=layer_count(state, "actbert.action_layers."),
        v_hidden_size=state["actbert.region_embeddings.feature_proj.weight"].shape[0],
        region_feature_size=state["actbert.region_embeddings.feature_proj.weight"].shape[1],
        a_hidden_size=state["actbert.action_embeddings.feature_proj.weight"].shape[0],
        frame_feature_size=state["actbert.action_embeddings.feature_proj.weight"].shape[1],
        bi_hidden_size=state["actbert.text_pooler.dense.weight"].shape[0],
        num_object_labels=state["region_head.decoders.object.weight"].shape[0],
        num_action_labels=state["action_head.decoders.action.weight"].shape[0],
        intermediate_size=state["actbert.text_layers.0.ffn.fc_in.weight"].shape[0],
    )
    if values["v_num_hidden_layers"]:
        values["v_intermediate_size"] = state["actbert.region_layers.0.ffn.fc_in.weight"].shape[0]
    if values["a_num_hidden_layers"]:
        values["a_intermediate_size"] = state["actbert.action_layers.0.ffn.fc_in.weight"].shape[0]
    values.update(overrides)
    return ActBertConfig(**values)


def convert_actbert(source: str | os.PathLike, output_dir: str | os.PathLike, **config_overrides) -> Path:
    """Convert the port's parameters (``.npz`` export or safetensors) into an ``ActBertForPreTraining`` folder."""
    state = convert_actbert_state_dict(read_paddle_parameters(source))
    config = actbert_config_from_state_dict(state, **config_overrides)
    return write_converted(ActBertForPreTraining(config), state, output_dir)
