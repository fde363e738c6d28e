"""Tiny ViLBERT / ERNIE-ViL configs, batches, and random checkpoints laid out like the original releases."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch

from helpers.factories import image_text_batch
from vlpretrain.configuration.ernie_vil import ErnieVilConfig
from vlpretrain.configuration.vilbert import VilbertConfig

# Text 32 wide, visual 24 wide, co-attention 16 wide: three different widths, as in the release (768/1024/1024).
_TWO_STREAM_SIZES = dict(
    vocab_size=64, hidden_size=32, num_attention_heads=4, num_hidden_layers=3, max_position_embeddings=32,
    region_feature_size=12, v_hidden_size=24, v_num_attention_heads=2, v_intermediate_size=20, v_num_hidden_layers=2,
    t_biattention_id=[1, 2], v_biattention_id=[0, 1], num_object_labels=7, vqa_hidden_size=40,
)


def tiny_vilbert_config(**overrides) -> VilbertConfig:
    """A ViLBERT config for CPU tests with every objective on: 3 text, 2 visual, 2 co-layers."""
    values = dict(_TWO_STREAM_SIZES, intermediate_size=48, bi_hidden_size=16, bi_num_attention_heads=2)
    values.update(overrides)
    return VilbertConfig(**values)


def tiny_ernie_vil_config(**overrides) -> ErnieVilConfig:
    """An ERNIE-ViL config for CPU tests with every objective on (text FFN is 4 x 32 = 128)."""
    values = dict(_TWO_STREAM_SIZES, co_hidden_size=16, co_num_attention_heads=2)
    values.update(overrides)
    return ErnieVilConfig(**values)


def two_stream_batch(config, batch: int = 3, text_length: int = 7, regions: int = 5, seed: int = 0,
                     labels: bool = True) -> dict:
    """Model inputs (sample 0 with padded tokens, sample 1 with padded regions) and ViLBERT-family targets."""
    base = image_text_batch(config, batch, text_length, regions, seed, labels=False)
    if not labels:
        return base
    generator = torch.Generator().manual_seed(seed + 1)
    mlm = torch.full((batch, text_length), -100)
    mlm[:, 1] = base["input_ids"][:, 1]
    masked_regions = torch.zeros(batch, regions, dtype=torch.bool)
    masked_regions[:, 0] = True
    masked_regions[2 % batch, 2] = True
    targets = torch.softmax(torch.randn(batch, regions, config.num_object_labels, generator=generator) * 3, -1)
    base.update(labels=mlm, masked_regions=masked_regions, region_class_targets=targets,
                matched_labels=torch.tensor([1, 0, 1][:batch] + [1] * max(0, batch - 3)))
    if isinstance(config, ErnieVilConfig):
        for column, name in ((2, "scene_object_labels"), (3, "scene_attribute_labels"), (4, "scene_relation_labels")):
            scene = torch.full((batch, text_length), -100)
            scene[1:, column] = base["input_ids"][1:, column]
            base[name] = scene
    return base


def original_vilbert_state_dict(config: VilbertConfig, heads: str = "pretraining", seed: int = 0,
                                layer_norm_names: tuple[str, str] = ("weight", "bias")) -> dict[str, torch.Tensor]:
    """Random tensors under vilbert_beta's key names and [out, in] shapes (spec §1.7) for ``config``'s sizes.

    ``heads``: ``pretraining`` (``cls.*``) or ``vqa`` (``VILBertForVLTasks``: ``cls.*``, the weight-normed
    ``vil_prediction.main``, ``vil_logit``, ``vision_logit``, ``linguisic_logit``). Every co-layer has the unused
    ``q_dense1`` / ``q_dense2``.
    """
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    weight_name, bias_name = layer_norm_names

    def linear(name: str, out_size: int, in_size: int) -> None:
        state[f"{name}.weight"] = torch.randn(out_size, in_size, generator=generator)
        state[f"{name}.bias"] = torch.randn(out_size, generator=generator)

    def norm(name: str, size: int) -> None:
        state[f"{name}.{weight_name}"] = torch.randn(size, generator=generator)
        state[f"{name}.{bias_name}"] = torch.randn(size, generator=generator)

    def bert_layer(prefix: str, hidden: int, intermediate: int) -> None:
        for part in ("query", "key", "value"):
            linear(f"{prefix}.attention.self.{part}", hidden, hidden)
        linear(f"{prefix}.attention.output.dense", hidden, hidden)
        norm(f"{prefix}.attention.output.LayerNorm", hidden)
        linear(f"{prefix}.intermediate.dense", intermediate, hidden)
        linear(f"{prefix}.output.dense", hidden, intermediate)
        norm(f"{prefix}.output.LayerNorm", hidden)

    t, v, bi = config.hidden_size, config.v_hidden_size, config.bi_hidden_size
    state["bert.embeddings.word_embeddings.weight"] = torch.randn(config.vocab_size, t, generator=generator)
    state["bert.embeddings.position_embeddings.weight"] = torch.randn(config.max_position_embeddings, t, generator=generator)
    state["bert.embeddings.token_type_embeddings.weight"] = torch.randn(config.type_vocab_size, t, generator=generator)
    norm("bert.embeddings.LayerNorm", t)
    linear("bert.v_embeddings.image_embeddings", v, config.region_feature_size)
    linear("bert.v_embeddings.image_location_embeddings", v, 5)
    norm("bert.v_embeddings.LayerNorm", v)
    for index in range(config.num_hidden_layers):
        bert_layer(f"bert.encoder.layer.{index}", t, config.intermediate_size)
    for index in range(config.v_num_hidden_layers):
        bert_layer(f"bert.encoder.v_layer.{index}", v, config.v_intermediate_size)
    for index in range(len(config.t_biattention_id)):
        prefix = f"bert.encoder.c_layer.{index}"
        for part in ("query1", "key1", "value1"):
            linear(f"{prefix}.biattention.{part}", bi, v)
        for part in ("query2", "key2", "value2"):
            linear(f"{prefix}.biattention.{part}", bi, t)
        linear(f"{prefix}.biOutput.dense1", v, bi)
        norm(f"{prefix}.biOutput.LayerNorm1", v)
        linear(f"{prefix}.biOutput.q_dense1", v, bi)
        linear(f"{prefix}.biOutput.dense2", t, bi)
        norm(f"{prefix}.biOutput.LayerNorm2", t)
        linear(f"{prefix}.biOutput.q_dense2", t, bi)
        linear(f"{prefix}.v_intermediate.dense", config.v_intermediate_size, v)
        linear(f"{prefix}.v_output.dense", v, config.v_intermediate_size)
        norm(f"{prefix}.v_output.LayerNorm", v)
        linear(f"{prefix}.t_intermediate.dense", config.intermediate_size, t)
        linear(f"{prefix}.t_output.dense", t, config.intermediate_size)
        norm(f"{prefix}.t_output.LayerNorm", t)
    linear("bert.t_pooler.dense", bi, t)
    linear("bert.v_pooler.dense", bi, v)
    state["cls.predictions.bias"] = torch.randn(config.vocab_size, generator=generator)
    linear("cls.predictions.transform.dense", t, t)
    norm("cls.predictions.transform.LayerNorm", t)
    state["cls.predictions.decoder.weight"] = state["bert.embeddings.word_embeddings.weight"]
    linear("cls.bi_seq_relationship", 2, bi)
    linear("cls.imagePredictions.transform.dense", v, v)
    norm("cls.imagePredictions.transform.LayerNorm", v)
    linear("cls.imagePredictions.decoder", config.num_object_labels, v)
    if heads == "vqa":
        hidden, answers = config.vqa_hidden_size, 5
        for index, (out_size, in_size) in (("0", (hidden, bi)), ("3", (answers, hidden))):
            state[f"vil_prediction.main.{index}.weight_g"] = torch.rand((), generator=generator) + 0.5
            state[f"vil_prediction.main.{index}.weight_v"] = torch.randn(out_size, in_size, generator=generator)
            state[f"vil_prediction.main.{index}.bias"] = torch.randn(out_size, generator=generator)
        linear("vil_logit", 1, bi)
        linear("vision_logit", 1, v)
        linear("linguisic_logit", 1, t)
    return state


def paddle_parameter_bytes(array: np.ndarray) -> bytes:
    """Serialise a float32 array like Paddle Fluid 1.x ``save``: LoDTensor header, TensorDesc protobuf, raw data."""

    def varint(value: int) -> bytes:
        out = bytearray()
        while True:
            byte = value & 0x7F
            value >>= 7
            out.append(byte | (0x80 if value else 0))
            if not value:
                return bytes(out)

    desc = b"\x08" + varint(5) + b"".join(b"\x10" + varint(dim) for dim in array.shape)
    header = struct.pack("<I", 0) + struct.pack("<Q", 0) + struct.pack("<I", 0) + struct.pack("<i", len(desc))
    return header + desc + np.ascontiguousarray(array, dtype="<f4").tobytes()


def original_ernie_vil_parameters(config: ErnieVilConfig, vqa_answers: int = 0, seed: int = 0) -> dict[str, np.ndarray]:
    """Random parameters under ERNIE-ViL's Paddle names (spec §3.5); fc weights are [in, out]."""
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {}

    def fc(name: str, in_size: int, out_size: int, w: str = ".w_0", b: str = ".b_0") -> None:
        params[f"{name}{w}"] = rng.standard_normal((in_size, out_size)).astype(np.float32)
        params[f"{name}{b}"] = rng.standard_normal(out_size).astype(np.float32)

    def norm(name: str, size: int) -> None:
        params[f"{name}_scale"] = rng.standard_normal(size).astype(np.float32)
        params[f"{name}_bias"] = rng.standard_normal(size).astype(np.float32)

    def layer(prefix: str, hidden: int, intermediate: int) -> None:
        for part in ("query", "key", "value", "output"):
            fc(f"{prefix}_multi_head_att_{part}_fc", hidden, hidden)
        norm(f"{prefix}_post_att_layer_norm", hidden)
        fc(f"{prefix}_ffn_fc_0", hidden, intermediate)
        fc(f"{prefix}_ffn_fc_1", intermediate, hidden)
        norm(f"{prefix}_post_ffn_layer_norm", hidden)

    t, v, co = config.hidden_size, config.v_hidden_size, config.co_hidden_size
    params["word_embedding"] = rng.standard_normal((config.vocab_size, t)).astype(np.float32)
    params["pos_embedding"] = rng.standard_normal((config.max_position_embeddings, t)).astype(np.float32)
    params["sent_embedding"] = rng.standard_normal((config.type_vocab_size, t)).astype(np.float32)
    norm("pre_encoder_layer_norm", t)
    fc("image_emb", config.region_feature_size, v)
    fc("image_loc", 5, v)
    norm("vl_pre_encoder_layer_norm", v)
    for index in range(config.num_hidden_layers):
        layer(f"encoder_layer_{index}", t, 4 * t)
    for index in range(config.v_num_hidden_layers):
        layer(f"encoder_vlayer_{index}", v, config.v_intermediate_size)
    for index in range(len(config.t_biattention_id)):
        prefix = f"encoder_colayer_{index}"
        fc(f"{prefix}_multi_head_att_query_fc", t, co)
        fc(f"{prefix}_multi_head_att_key_fc", v, co)
        fc(f"{prefix}_multi_head_att_value_fc", v, co)
        fc(f"{prefix}_multi_head_att_output_fc", co, t)
        norm(f"{prefix}_post_att_layer_norm", t)
        fc(f"{prefix}_vl_multi_head_att_query_fc", v, co)
        fc(f"{prefix}_vl_multi_head_att_key_fc", t, co)
        fc(f"{prefix}_vl_multi_head_att_value_fc", t, co)
        fc(f"{prefix}_vl_multi_head_att_output_fc", co, v)
        norm(f"{prefix}_vl_post_att_layer_norm", v)
        fc(f"{prefix}_ffn_fc_0", t, 4 * t)
        fc(f"{prefix}_ffn_fc_1", 4 * t, t)
        norm(f"{prefix}_post_ffn_layer_norm", t)
        fc(f"{prefix}_vl_ffn_fc_0", v, config.v_intermediate_size)
        fc(f"{prefix}_vl_ffn_fc_1", config.v_intermediate_size, v)
        norm(f"{prefix}_vl_post_ffn_layer_norm", v)
    fc("pooled_fc_text", t, co)
    fc("pooled_fc_image", v, co)
    if vqa_answers:
        params["vqa_fc_w_0"] = rng.standard_normal((co, config.vqa_hidden_size)).astype(np.float32)
        params["vqa_fc_b_0"] = rng.standard_normal(config.vqa_hidden_size).astype(np.float32)
        params["vqa_fc_w_1"] = rng.standard_normal((config.vqa_hidden_size, vqa_answers)).astype(np.float32)
        params["vqa_fc_b_1"] = rng.standard_normal(vqa_answers).astype(np.float32)
    return params


def write_paddle_folder(params: dict[str, np.ndarray], folder: Path) -> Path:
    """Write one Paddle parameter file per variable, plus optimizer state files a real save also contains."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in params.items():
        (folder / name).write_bytes(paddle_parameter_bytes(array))
    (folder / "word_embedding_moment1_0").write_bytes(paddle_parameter_bytes(params["word_embedding"]))
    (folder / "learning_rate_0").write_bytes(paddle_parameter_bytes(np.zeros(1, np.float32)))
    return folder
