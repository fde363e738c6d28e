"""Converters from original and third-party checkpoints to the package's layout.

Every converter reads weights safely (safetensors, or ``torch.load(..., weights_only=True)``, which
refuses pickled objects other than tensors and plain containers), renames keys, joins query/key/value
matrices into the fused ``qkv`` projections, and checks that every tensor of the target model is
provided with the right shape before anything is written.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import torch

from ..configuration.lxmert import LxmertConfig
from ..configuration.vl_bert import VlBertConfig
from ..modeling.base import fuse_qkv, rename_bert_layer_key
from ..modeling.embeddings import zero_feature_embedding
from ..modeling.lxmert import LxmertForPreTraining, LxmertForQuestionAnswering
from ..modeling.vl_bert import VlBertForPreTraining
from ..utils.folders import replace_directory, staged_directory
from .export import check_model_output_folder


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint file or folder without unpickling arbitrary objects.

    Accepts ``.safetensors`` files, PyTorch ``.bin``/``.pth``/``.pt`` files (loaded with
    ``weights_only=True``) and folders holding ``model.safetensors`` or ``pytorch_model.bin``
    (sharded safetensors indexes included).
    """
    path = Path(path)
    if path.is_dir():
        for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"):
            if (path / name).exists():
                return load_state_dict(path / name)
        raise FileNotFoundError(f"{path}: no model.safetensors or pytorch_model.bin in this folder")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if path.name.endswith(".safetensors.index.json"):
        index = json.loads(path.read_text())
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(index["weight_map"].values())):
            state.update(load_state_dict(path.parent / shard))
        return state
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"{path}: not a plain tensor checkpoint; refusing to unpickle it (only weights_only=True loading "
            f"is allowed): {error}"
        ) from error
    if isinstance(loaded, dict) and "state_dict" in loaded and isinstance(loaded["state_dict"], dict):
        loaded = loaded["state_dict"]
    if isinstance(loaded, dict) and "model" in loaded and isinstance(loaded["model"], dict):
        loaded = loaded["model"]
    if not isinstance(loaded, dict) or not all(isinstance(value, torch.Tensor) for value in loaded.values()):
        raise ValueError(f"{path}: expected a state dict mapping parameter names to tensors")
    return loaded


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
    """Map one transformers-layout LXMERT key to the package layout (None: the key has no counterpart)."""
    for pattern, replacement in _LXMERT_RENAMES:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key)
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
    renamed: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in state.items():
        key = key.removeprefix("module.")
        if key.startswith("bert."):
            key = "lxmert." + key[len("bert.") :]
        if key.startswith("lxrt_encoder.model."):
            key = key[len("lxrt_encoder.model.") :].removeprefix("module.").replace("bert.", "lxmert.", 1)
        if key.startswith("logit_fc."):
            key = "answer_head." + key
        if key.endswith("position_ids"):
            continue
        mapped = _rename_lxmert_key(key)
        if mapped is None:
            unknown.append(key)
        else:
            renamed[mapped] = tensor
    if unknown:
        raise ValueError(f"checkpoint: {len(unknown)} keys have no LXMERT counterpart, e.g. {unknown[:5]}")
    return fuse_qkv(renamed)


def lxmert_config_from_state_dict(state: dict[str, torch.Tensor], **overrides) -> LxmertConfig:
    """Infer layer counts and head sizes of an LXMERT checkpoint from its (package-layout) tensors."""

    def count(prefix: str) -> int:
        indices = {int(m.group(1)) for key in state for m in [re.match(rf"^{re.escape(prefix)}(\d+)\.", key)] if m}
        return max(indices) + 1 if indices else 0

    words = state["lxmert.embeddings.word_embeddings.weight"]
    values = {
        "vocab_size": words.shape[0],
        "hidden_size": words.shape[1],
        "max_position_embeddings": state["lxmert.embeddings.position_embeddings.weight"].shape[0],
        "type_vocab_size": state["lxmert.embeddings.token_type_embeddings.weight"].shape[0],
        "num_text_layers": count("lxmert.text_layers."),
        "num_visual_layers": count("lxmert.visual_layers."),
        "num_cross_layers": count("lxmert.cross_layers."),
        "region_feature_size": state["lxmert.region_embeddings.feature_proj.weight"].shape[1],
        "region_box_size": state["lxmert.region_embeddings.box_proj.weight"].shape[1],
    }
    # The checkpoint does not record the head count; BERT-family models use 64-wide heads.
    values["num_attention_heads"] = max(1, words.shape[1] // 64)
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
        overrides.setdefault("id2label", {index: f"LABEL_{index}" for index in range(num_answers)})
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
    return _write_converted(model_class(config), state, output_dir)


def _write_converted(model: torch.nn.Module, state: dict[str, torch.Tensor], output_dir: str | os.PathLike) -> Path:
    """Load ``state`` into ``model`` strictly (every tensor accounted for) and save it atomically to ``output_dir``
    (which must be absent, empty or a model folder of this package)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"checkpoint does not fit {type(model).__name__}: missing {missing[:8]}, unexpected {unexpected[:8]}")
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise ValueError(f"checkpoint: {name} has shape {tuple(tensor.shape)}, expected {tuple(expected[name].shape)}")
    model.load_state_dict(state, strict=True)
    output_dir = check_model_output_folder(output_dir)
    with staged_directory(output_dir) as staged:
        model.save_pretrained(staged)
        check_model_output_folder(output_dir)
        replace_directory(staged, output_dir)
    return output_dir


CONVERTERS: dict[str, Callable[..., Path]] = {
    "lxmert-hf": lambda source, output_dir, **overrides: convert_lxmert(source, output_dir, False, overrides),
    "lxmert-original": lambda source, output_dir, **overrides: convert_lxmert(source, output_dir, True, overrides),
}


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


def convert_vl_bert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert a jackroos/VL-BERT pretraining state dict (``ResNetVLBERTForPretrainingMultitask``, "prec" models).

    The DDP prefix ``module.`` is optional. The end-to-end models' ResNet-101 keys
    (``image_feature_extractor.backbone.*``, ``roi_head_feature_extractor``, ``head``) have no counterpart in a
    transformers ``AutoBackbone`` and are rejected with an explicit error, as are fine-tuned VCR keys.
    """
    renamed: dict[str, torch.Tensor] = {}
    unknown, backbone = [], []
    for key, tensor in state.items():
        key = key.removeprefix("module.")
        if key.startswith(("image_feature_extractor.backbone.", "image_feature_extractor.roi_head_feature_extractor.",
                           "image_feature_extractor.head.")):
            backbone.append(key)
            continue
        match = re.match(r"^vlbert\.encoder\.layer\.(\d+)\.(.*)$", key)
        if match:
            mapped = rename_bert_layer_key(match.group(2))
            mapped = None if mapped is None else f"vl_bert.layers.{match.group(1)}.{mapped}"
        else:
            mapped = next((re.sub(pattern, new, key) for pattern, new in _VL_BERT_RENAMES if re.match(pattern, key)), None)
        if mapped is None:
            unknown.append(key)
        else:
            renamed[mapped] = tensor
    if backbone:
        raise ValueError(
            f"checkpoint: {len(backbone)} keys of the end-to-end ResNet-101 (e.g. {backbone[0]}) cannot be mapped onto a "
            "transformers AutoBackbone; convert a 'prec' checkpoint, or load the backbone separately"
        )
    if unknown:
        raise ValueError(f"checkpoint: {len(unknown)} keys have no VL-BERT counterpart, e.g. {unknown[:5]}")
    return fuse_qkv(renamed)


def vl_bert_config_from_state_dict(state: dict[str, torch.Tensor], **overrides) -> VlBertConfig:
    """Infer the sizes of a converted (package-layout) VL-BERT state dict; 64-wide heads are assumed."""
    words = state["vl_bert.embeddings.word_embeddings.weight"]
    layers = {int(m.group(1)) for key in state for m in [re.match(r"^vl_bert\.layers\.(\d+)\.", key)] if m}
    feature_size = state["vl_bert.embeddings.object_mask_visual_embedding.weight"].shape[1]
    values = {
        "vocab_size": words.shape[0],
        "hidden_size": words.shape[1],
        "num_attention_heads": max(1, words.shape[1] // 64),
        "num_hidden_layers": max(layers) + 1 if layers else 0,
        "intermediate_size": state["vl_bert.layers.0.ffn.fc_in.weight"].shape[0],
        "max_position_embeddings": state["vl_bert.embeddings.position_embeddings.weight"].shape[0],
        "type_vocab_size": state["vl_bert.embeddings.token_type_embeddings.weight"].shape[0],
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
    return _write_converted(VlBertForPreTraining(config), state, output_dir)


CONVERTERS["vl-bert"] = convert_vl_bert


def _two_stream_converter(name: str) -> Callable[..., Path]:
    """ViLBERT / ERNIE-ViL converters, imported on use (their module builds on this one)."""

    def convert(source: str | os.PathLike, output_dir: str | os.PathLike, **config_overrides) -> Path:
        from .two_stream_convert import convert_ernie_vil, convert_vilbert

        converter = convert_vilbert if name == "vilbert" else convert_ernie_vil
        return converter(source, output_dir, **config_overrides)

    return convert


CONVERTERS["vilbert"] = _two_stream_converter("vilbert")
CONVERTERS["ernie-vil"] = _two_stream_converter("ernie-vil")


def _video_converter(name: str) -> Callable[..., Path]:
    """UniVL / HERO converters, imported on use (their module builds on this one)."""

    def convert(source: str | os.PathLike, output_dir: str | os.PathLike, **config_overrides) -> Path:
        from .video_convert import VIDEO_CONVERTERS

        return VIDEO_CONVERTERS[name](source, output_dir, **config_overrides)

    return convert


CONVERTERS["univl"] = _video_converter("univl")
CONVERTERS["hero"] = _video_converter("hero")


def _convert_actbert(source: str | os.PathLike, output_dir: str | os.PathLike, **config_overrides) -> Path:
    """The PaddleVideo ActBERT port (``.npz`` export of ``ActBERT.pdparams``), imported on use."""
    from .actbert_convert import convert_actbert

    return convert_actbert(source, output_dir, **config_overrides)


CONVERTERS["actbert"] = _convert_actbert


def _convert_s3d_howto100m(source: str | os.PathLike, output_dir: str | os.PathLike, **config_overrides) -> Path:
    """The MIL-NCE HowTo100M S3D release (``s3d_howto100m.pth``), imported on use."""
    from .s3d_convert import convert_s3d_howto100m

    return convert_s3d_howto100m(source, output_dir, **config_overrides)


CONVERTERS["s3d-howto100m"] = _convert_s3d_howto100m


def _bottom_up_attention_converter(name: str) -> Callable[..., Path]:
    """The bottom-up-attention detector converters (``frcnn-vg``, ``bua-caffe``), imported on use."""

    def convert(source: str | os.PathLike, output_dir: str | os.PathLike, **options) -> Path:
        from .bottom_up_attention_convert import convert_bua_caffe, convert_frcnn_vg

        return (convert_frcnn_vg if name == "frcnn-vg" else convert_bua_caffe)(source, output_dir, **options)

    return convert


CONVERTERS["frcnn-vg"] = _bottom_up_attention_converter("frcnn-vg")
CONVERTERS["bua-caffe"] = _bottom_up_attention_converter("bua-caffe")
