"""The ActBERT converter: random parameters laid out like the PaddleVideo port's, as a .npz export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.actbert_videobert_factories import actbert_batch, tiny_actbert_config

from vlpretrain import ActBertForPreTraining
from vlpretrain.cli import main as cli_main
from vlpretrain.hub.convert.actbert import convert_actbert_state_dict


def _bert_layer(prefix: str, hidden: int, intermediate: int, rng) -> dict[str, np.ndarray]:
    shapes = {"attention.self.query": (hidden, hidden), "attention.self.key": (hidden, hidden),
              "attention.self.value": (hidden, hidden), "attention.output.dense": (hidden, hidden),
              "intermediate.dense": (hidden, intermediate), "output.dense": (intermediate, hidden)}
    params = {}
    for name, (fan_in, fan_out) in shapes.items():
        params[f"{prefix}.{name}.weight"] = rng.standard_normal((fan_in, fan_out)).astype(np.float32)
        params[f"{prefix}.{name}.bias"] = rng.standard_normal(fan_out).astype(np.float32)
    for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
        params[f"{prefix}.{norm}.weight"] = rng.standard_normal(hidden).astype(np.float32)
        params[f"{prefix}.{norm}.bias"] = rng.standard_normal(hidden).astype(np.float32)
    return params


def paddle_parameters(config, seed: int = 0) -> dict[str, np.ndarray]:
    """Random parameters with the port's names and Paddle's [in, out] Linear layout."""
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {}

    def linear(name: str, fan_in: int, fan_out: int) -> None:
        params[f"{name}.weight"] = rng.standard_normal((fan_in, fan_out)).astype(np.float32)
        params[f"{name}.bias"] = rng.standard_normal(fan_out).astype(np.float32)

    def norm(name: str, size: int) -> None:
        params[f"{name}.weight"] = rng.standard_normal(size).astype(np.float32)
        params[f"{name}.bias"] = rng.standard_normal(size).astype(np.float32)

    h, v, a, bi = config.hidden_size, config.v_hidden_size, config.a_hidden_size, config.bi_hidden_size
    params["bert.embeddings.word_embeddings.weight"] = rng.standard_normal((config.vocab_size, h)).astype(np.float32)
    params["bert.embeddings.position_embeddings.weight"] = rng.standard_normal((config.max_position_embeddings, h)).astype(np.float32)
    params["bert.embeddings.token_type_embeddings.weight"] = rng.standard_normal((2, h)).astype(np.float32)
    norm("bert.embeddings.LayerNorm", h)
    linear("bert.v_embeddings.image_embeddings", config.region_feature_size, v)
    linear("bert.v_embeddings.image_location_embeddings", 5, v)
    norm("bert.v_embeddings.LayerNorm", v)
    linear("bert.a_embeddings.action_embeddings", config.frame_feature_size, a)
    norm("bert.a_embeddings.LayerNorm", a)
    for i in range(config.num_hidden_layers):
        params.update(_bert_layer(f"bert.encoder.layer.{i}", h, config.intermediate_size, rng))
    for i in range(config.v_num_hidden_layers):
        params.update(_bert_layer(f"bert.encoder.v_layer.{i}", v, config.v_intermediate_size, rng))
    for i in range(config.a_num_hidden_layers):
        params.update(_bert_layer(f"bert.encoder.a_layer.{i}", a, config.a_intermediate_size, rng))
    for k in range(len(config.t_ent_attention_id)):
        c = f"bert.encoder.c_layer.{k}"
        for part in ("query", "key", "value"):
            linear(f"{c}.ent_attention.{part}1", v, bi)
            linear(f"{c}.ent_attention.{part}2", h, bi)
            linear(f"{c}.ent_attention.{part}3", a, bi)
        for name in ("key_at", "value_at", "key_av", "value_av"):
            linear(f"{c}.ent_attention.{name}", bi, bi)
        for index, size in (("1", v), ("2", h), ("3", a)):
            linear(f"{c}.ent_output.dense{index}", bi, size)
            norm(f"{c}.ent_output.LayerNorm{index}", size)
        for stream, size, inner in (("v", v, config.v_intermediate_size), ("t", h, config.intermediate_size),
                                    ("a", a, config.a_intermediate_size)):
            linear(f"{c}.{stream}_intermediate.dense", size, inner)
            linear(f"{c}.{stream}_output.dense", inner, size)
            norm(f"{c}.{stream}_output.LayerNorm", size)
    linear("bert.t_pooler.dense", h, bi)
    linear("bert.v_pooler.dense", v, bi)
    linear("bert.a_pooler.dense", a, bi)
    linear("cls.predictions.transform.dense", h, h)
    norm("cls.predictions.transform.LayerNorm", h)
    params["cls.predictions.decoder_weight"] = params["bert.embeddings.word_embeddings.weight"]
    params["cls.predictions.decoder_bias"] = rng.standard_normal(config.vocab_size).astype(np.float32)
    linear("cls.seq_relationship", bi, 2)
    linear("cls.imagePredictions.transform.dense", v, v)
    norm("cls.imagePredictions.transform.LayerNorm", v)
    linear("cls.imagePredictions.decoder", v, config.num_object_labels)
    linear("cls.actionPredictions.transform.dense", a, a)
    norm("cls.actionPredictions.transform.LayerNorm", a)
    linear("cls.actionPredictions.decoder", a, config.num_action_labels)
    return params


def convert_with_cli(params: dict[str, np.ndarray], tmp_path) -> ActBertForPreTraining:
    """Save ``params`` as the port's .npz export, convert it with the CLI into ``tmp_path / "out"`` and load it."""
    np.savez(tmp_path / "ActBERT.npz", **params)
    overrides = ('{"num_attention_heads": 4, "v_num_attention_heads": 4, "a_num_attention_heads": 4, '
                 '"bi_num_attention_heads": 4, "t_ent_attention_id": [1, 2]}')
    assert cli_main(["convert", "--from", "actbert", str(tmp_path / "ActBERT.npz"), "--output-dir", str(tmp_path / "out"),
                     "--config-overrides", overrides]) == 0
    return ActBertForPreTraining.from_pretrained(tmp_path / "out").eval()


def test_converted_parameters_are_renamed_transposed_and_fused(tmp_path):
    config = tiny_actbert_config()
    params = paddle_parameters(config)
    model = convert_with_cli(params, tmp_path)
    layer = model.actbert.tangled_layers[1]
    bi = config.bi_hidden_size
    torch.testing.assert_close(layer.text_qkv.weight[:bi], torch.from_numpy(params["bert.encoder.c_layer.1.ent_attention.query2.weight"]).T)
    torch.testing.assert_close(layer.region_qkv.bias[2 * bi :], torch.from_numpy(params["bert.encoder.c_layer.1.ent_attention.value1.bias"]))
    port_value_at = torch.from_numpy(params["bert.encoder.c_layer.1.ent_attention.value_at.weight"]).T
    torch.testing.assert_close(layer.value_at.weight, port_value_at)
    torch.testing.assert_close(layer.value_av.weight, port_value_at)  # the port used value_at for both contexts
    torch.testing.assert_close(model.actbert.text_layers[2].ffn.fc_in.weight,
                               torch.from_numpy(params["bert.encoder.layer.2.intermediate.dense.weight"]).T)
    torch.testing.assert_close(model.actbert.region_embeddings.box_proj.weight,
                               torch.from_numpy(params["bert.v_embeddings.image_location_embeddings.weight"]).T)
    torch.testing.assert_close(model.mlm_head.decoder.weight, torch.from_numpy(params["bert.embeddings.word_embeddings.weight"]))
    # the port's masked action is its zeroed feature, i.e. the projection's bias
    torch.testing.assert_close(model.actbert.action_embeddings.mask_embedding.weight[0],
                               torch.from_numpy(params["bert.a_embeddings.action_embeddings.bias"]))
    torch.testing.assert_close(model.action_head.decoders["action"].weight,
                               torch.from_numpy(params["cls.actionPredictions.decoder.weight"]).T)
    assert model.config.num_hidden_layers == 3 and model.config.num_action_labels == 6
    assert torch.isfinite(model(**actbert_batch(model.config)).loss)


def test_pickled_paddle_files_and_foreign_keys_are_refused(tmp_path):
    (tmp_path / "ActBERT.pdparams").write_bytes(b"\x80\x04not read")
    with pytest.raises(ValueError, match="never unpickled"):
        cli_main(["convert", "--from", "actbert", str(tmp_path / "ActBERT.pdparams"), "--output-dir", str(tmp_path / "out")])
    params = {k: torch.from_numpy(v) for k, v in paddle_parameters(tiny_actbert_config()).items()}
    params["bert.encoder.extra.weight"] = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="keys not in the ActBERT port's layout"):
        convert_actbert_state_dict(params)


def test_converted_matching_head_scores_the_port_matched_row_as_matched(tmp_path):
    """The port labels a matching caption 0 (``RandomCap``: label 1 = a random caption); the package's row 1 =
    matched, so the converter swaps the rows and converted ActBERT ranks retrieval the right way round."""
    from vlpretrain import ActBertForVideoTextRetrieval

    config = tiny_actbert_config()
    params = paddle_parameters(config)
    params["cls.seq_relationship.weight"][:] = 0.0
    params["cls.seq_relationship.bias"][:] = [5.0, -5.0]  # port row 0: matched
    model = convert_with_cli(params, tmp_path)
    batch = actbert_batch(model.config, labels=False)
    with torch.no_grad():
        logits = model(**batch).matching_logits
        scores = ActBertForVideoTextRetrieval.from_pretrained(tmp_path / "out").eval()(**batch).scores
    assert (logits[:, 1] > logits[:, 0]).all() and (scores > 0).all()
    embeddings = model.actbert  # the port's embedding LayerNorms use epsilon 1e-12
    assert embeddings.embeddings.norm.eps == embeddings.action_embeddings.norm.eps == 1e-12
