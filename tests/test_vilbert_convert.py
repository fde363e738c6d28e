"""Converters: random checkpoints laid out like vilbert_beta's ``.bin`` and ERNIE-ViL's Paddle files land in place."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers.vilbert_factories import (
    original_ernie_vil_parameters,
    original_vilbert_state_dict,
    paddle_parameter_bytes,
    tiny_ernie_vil_config,
    tiny_vilbert_config,
    two_stream_batch,
    write_paddle_folder,
)

from vlpretrain import (
    ErnieVilForQuestionAnswering,
    ErnieVilModel,
    VilbertForPreTraining,
    VilbertForQuestionAnswering,
)
from vlpretrain.cli import main as cli_main
from vlpretrain.hub.convert.two_stream import read_paddle_tensor

HEADS = {"num_attention_heads": 4, "v_num_attention_heads": 2, "bi_num_attention_heads": 2}


def split_qkv(fused: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return fused.chunk(3, dim=0)


def test_vilbert_pretraining_checkpoint_lands_in_place(tmp_path):
    config = tiny_vilbert_config()
    original = original_vilbert_state_dict(config, layer_norm_names=("gamma", "beta"))
    torch.save(original, tmp_path / "pytorch_model_9.bin")
    assert cli_main(["convert", "--from", "vilbert", str(tmp_path / "pytorch_model_9.bin"), "--output-dir",
                     str(tmp_path / "out"), "--config-overrides", json.dumps(HEADS)]) == 0
    model = VilbertForPreTraining.from_pretrained(tmp_path / "out")
    ours = model.state_dict()
    assert model.config.t_biattention_id == [1, 2] and model.config.v_biattention_id == [0, 1]
    assert model.config.num_object_labels == 7 and model.config.bi_hidden_size == 16

    # every original tensor except q_dense has one counterpart with identical values
    mapping = {
        "bert.embeddings.word_embeddings.weight": "vilbert.embeddings.word_embeddings.weight",
        "bert.embeddings.LayerNorm.gamma": "vilbert.embeddings.norm.weight",
        "bert.v_embeddings.image_embeddings.weight": "vilbert.region_embeddings.feature_proj.weight",
        "bert.v_embeddings.image_location_embeddings.weight": "vilbert.region_embeddings.box_proj.weight",
        "bert.v_embeddings.LayerNorm.beta": "vilbert.region_embeddings.norm.bias",
        "bert.encoder.layer.2.output.dense.weight": "vilbert.encoder.text_layers.2.ffn.output.dense.weight",
        "bert.encoder.v_layer.1.attention.output.LayerNorm.gamma": "vilbert.encoder.visual_layers.1.attention.output.norm.weight",
        "bert.encoder.c_layer.1.biOutput.dense1.weight": "vilbert.encoder.co_layers.1.visual_attention.output.dense.weight",
        "bert.encoder.c_layer.1.biOutput.LayerNorm2.beta": "vilbert.encoder.co_layers.1.text_attention.output.norm.bias",
        "bert.encoder.c_layer.0.v_intermediate.dense.weight": "vilbert.encoder.co_layers.0.visual_ffn.fc_in.weight",
        "bert.encoder.c_layer.0.t_output.dense.bias": "vilbert.encoder.co_layers.0.text_ffn.output.dense.bias",
        "bert.t_pooler.dense.weight": "vilbert.text_pooler.dense.weight",
        "bert.v_pooler.dense.bias": "vilbert.visual_pooler.dense.bias",
        "cls.predictions.bias": "mlm_head.bias",
        "cls.predictions.transform.LayerNorm.gamma": "mlm_head.transform.norm.weight",
        "cls.imagePredictions.decoder.weight": "region_head.decoders.class.weight",
        "cls.imagePredictions.transform.dense.bias": "region_head.transform.dense.bias",
    }
    for their_name, our_name in mapping.items():
        torch.testing.assert_close(ours[our_name], original[their_name], rtol=0, atol=0, msg=our_name)
    for index in range(2):
        co = f"bert.encoder.c_layer.{index}.biattention"
        ours_co = f"vilbert.encoder.co_layers.{index}"
        for stream, parts in (("visual_attention", ("query1", "key1", "value1")), ("text_attention", ("query2", "key2", "value2"))):
            for piece, part in zip(split_qkv(ours[f"{ours_co}.{stream}.qkv.weight"]), parts):
                torch.testing.assert_close(piece, original[f"{co}.{part}.weight"], rtol=0, atol=0)
            for piece, part in zip(split_qkv(ours[f"{ours_co}.{stream}.qkv.bias"]), parts):
                torch.testing.assert_close(piece, original[f"{co}.{part}.bias"], rtol=0, atol=0)
    for index in range(3):
        pieces = split_qkv(ours[f"vilbert.encoder.text_layers.{index}.attention.qkv.weight"])
        for piece, part in zip(pieces, ("query", "key", "value")):
            torch.testing.assert_close(piece, original[f"bert.encoder.layer.{index}.attention.self.{part}.weight"], rtol=0, atol=0)
    # The alignment head's rows are swapped: original row 0 (aligned) is our row 1 (matched).
    torch.testing.assert_close(ours["matching_head.weight"][1], original["cls.bi_seq_relationship.weight"][0], rtol=0, atol=0)
    torch.testing.assert_close(ours["matching_head.bias"][0], original["cls.bi_seq_relationship.bias"][1], rtol=0, atol=0)
    assert model.mlm_head.decoder.weight is model.vilbert.embeddings.word_embeddings.weight
    # Every original tensor but q_dense is somewhere in the model (fused q/k/v as chunks, the matching head flipped).
    found = set()
    for name, tensor in ours.items():
        pieces = split_qkv(tensor) if ".qkv." in name else (tensor.flip(0),) if name.startswith("matching_head") else (tensor,)
        found.update(piece.contiguous().numpy().tobytes() for piece in pieces)
    missing = [name for name, t in original.items() if "q_dense" not in name and t.numpy().tobytes() not in found]
    assert missing == []
    # Parameter totals: everything but the unused q_dense layers (and the tied decoder) was used.
    q_dense = sum(t.numel() for name, t in original.items() if "q_dense" in name)
    original_total = sum(t.numel() for name, t in original.items() if name != "cls.predictions.decoder.weight")
    assert sum(p.numel() for p in model.parameters()) == original_total - q_dense


def test_vilbert_beta_vqa_checkpoint_folds_weight_norm(tmp_path):
    config = tiny_vilbert_config()
    original = original_vilbert_state_dict(config, heads="vqa")
    torch.save(original, tmp_path / "vqa.bin")
    assert cli_main(["convert", "--from", "vilbert", str(tmp_path / "vqa.bin"), "--output-dir", str(tmp_path / "out"),
                     "--config-overrides", json.dumps(HEADS)]) == 0
    model = VilbertForQuestionAnswering.from_pretrained(tmp_path / "out").eval()
    assert model.config.num_labels == 5 and model.config.vqa_hidden_size == 40
    for index, layer in (("0", model.vqa_head.fc_in), ("3", model.vqa_head.fc_out)):
        g, v = original[f"vil_prediction.main.{index}.weight_g"], original[f"vil_prediction.main.{index}.weight_v"]
        torch.testing.assert_close(layer.weight, g * v / v.norm())
        torch.testing.assert_close(layer.bias, original[f"vil_prediction.main.{index}.bias"])
    assert model(**two_stream_batch(model.config, labels=False)).logits.shape == (3, 5)


def test_vilbert_converter_refuses_unknown_keys_and_task_tokens(tmp_path):
    config = tiny_vilbert_config()
    original = original_vilbert_state_dict(config)
    torch.save({**original, "bert.encoder.extra.weight": torch.zeros(1)}, tmp_path / "odd.bin")
    with pytest.raises(ValueError, match="no ViLBERT counterpart"):
        cli_main(["convert", "--from", "vilbert", str(tmp_path / "odd.bin"), "--output-dir", str(tmp_path / "x")])
    torch.save({**original, "bert.embeddings.task_embeddings.weight": torch.zeros(20, 32)}, tmp_path / "tasks.bin")
    with pytest.raises(ValueError, match="task embeddings"):
        cli_main(["convert", "--from", "vilbert", str(tmp_path / "tasks.bin"), "--output-dir", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()


def test_paddle_parameter_files_round_trip(tmp_path):
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    (tmp_path / "w").write_bytes(paddle_parameter_bytes(array))
    np.testing.assert_array_equal(read_paddle_tensor(tmp_path / "w"), array)
    (tmp_path / "bad").write_bytes(b"\x01\x00\x00\x00garbage")
    with pytest.raises(ValueError, match="not a Paddle Fluid 1.x parameter file"):
        read_paddle_tensor(tmp_path / "bad")


def test_ernie_vil_paddle_parameters_land_in_place_transposed(tmp_path):
    config = tiny_ernie_vil_config()
    params = original_ernie_vil_parameters(config)
    folder = write_paddle_folder(params, tmp_path / "params")
    (folder / "ernie_vil_config.base.json").write_text(json.dumps(
        {"num_attention_heads": 4, "v_num_attention_heads": 2, "co_num_attention_heads": 2, "sent_type_vocab_size": 4,
         "t_biattention_id": [1, 2], "v_biattention_id": [0, 1]}
    ))
    assert cli_main(["convert", "--from", "ernie-vil", str(folder), "--output-dir", str(tmp_path / "out")]) == 0
    model = ErnieVilModel.from_pretrained(tmp_path / "out")
    ours = model.state_dict()
    assert model.config.num_attention_heads == 4 and model.config.layer_norm_eps == 1e-5
    assert model.embeddings.norm.eps == model.region_embeddings.norm.eps == 1e-5  # Paddle's layer_norm default

    def check(our_name: str, paddle_name: str, transpose: bool) -> None:
        expected = torch.from_numpy(params[paddle_name])
        torch.testing.assert_close(ours[our_name], expected.t() if transpose else expected, rtol=0, atol=0, msg=our_name)

    check("embeddings.word_embeddings.weight", "word_embedding", False)
    check("embeddings.token_type_embeddings.weight", "sent_embedding", False)
    check("embeddings.norm.weight", "pre_encoder_layer_norm_scale", False)
    check("region_embeddings.feature_proj.weight", "image_emb.w_0", True)
    check("region_embeddings.box_proj.bias", "image_loc.b_0", False)
    check("region_embeddings.norm.bias", "vl_pre_encoder_layer_norm_bias", False)
    check("encoder.text_layers.2.attention.output.dense.weight", "encoder_layer_2_multi_head_att_output_fc.w_0", True)
    check("encoder.text_layers.0.ffn.fc_in.weight", "encoder_layer_0_ffn_fc_0.w_0", True)
    check("encoder.visual_layers.1.ffn.output.norm.weight", "encoder_vlayer_1_post_ffn_layer_norm_scale", False)
    check("encoder.co_layers.1.text_attention.output.dense.weight", "encoder_colayer_1_multi_head_att_output_fc.w_0", True)
    check("encoder.co_layers.1.visual_attention.output.norm.bias", "encoder_colayer_1_vl_post_att_layer_norm_bias", False)
    check("encoder.co_layers.0.visual_ffn.fc_in.weight", "encoder_colayer_0_vl_ffn_fc_0.w_0", True)
    check("encoder.co_layers.0.text_ffn.output.dense.bias", "encoder_colayer_0_ffn_fc_1.b_0", False)
    check("text_pooler.dense.weight", "pooled_fc_text.w_0", True)
    check("visual_pooler.dense.weight", "pooled_fc_image.w_0", True)
    for index in range(2):
        prefix = f"encoder_colayer_{index}"
        text_q, text_k, text_v = split_qkv(ours[f"encoder.co_layers.{index}.text_attention.qkv.weight"])
        visual_q, visual_k, visual_v = split_qkv(ours[f"encoder.co_layers.{index}.visual_attention.qkv.weight"])
        for ours_piece, paddle_name in (
            (text_q, "multi_head_att_query_fc"), (visual_k, "multi_head_att_key_fc"), (visual_v, "multi_head_att_value_fc"),
            (visual_q, "vl_multi_head_att_query_fc"), (text_k, "vl_multi_head_att_key_fc"), (text_v, "vl_multi_head_att_value_fc"),
        ):
            torch.testing.assert_close(ours_piece, torch.from_numpy(params[f"{prefix}_{paddle_name}.w_0"]).t(), rtol=0, atol=0)
    assert sum(p.numel() for p in model.parameters()) == sum(array.size for array in params.values())


def test_ernie_vil_vqa_parameters_from_npz(tmp_path):
    config = tiny_ernie_vil_config()
    params = original_ernie_vil_parameters(config, vqa_answers=6)
    np.savez(tmp_path / "params.npz", **params)
    assert cli_main(["convert", "--from", "ernie-vil", str(tmp_path / "params.npz"), "--output-dir", str(tmp_path / "out"),
                     "--config-overrides", json.dumps({"num_attention_heads": 4, "v_num_attention_heads": 2,
                                                       "co_num_attention_heads": 2})]) == 0
    model = ErnieVilForQuestionAnswering.from_pretrained(tmp_path / "out").eval()
    torch.testing.assert_close(model.vqa_head.fc_out.weight, torch.from_numpy(params["vqa_fc_w_1"]).t(), rtol=0, atol=0)
    assert model(**two_stream_batch(model.config, labels=False)).logits.shape == (3, 6)
    del params["pooled_fc_text.w_0"]
    params["unknown_fc.w_0"] = np.zeros((2, 2), np.float32)
    np.savez(tmp_path / "odd.npz", **params)
    with pytest.raises(ValueError, match="no ERNIE-ViL counterpart"):
        cli_main(["convert", "--from", "ernie-vil", str(tmp_path / "odd.npz"), "--output-dir", str(tmp_path / "x")])


def test_converted_matching_head_scores_the_original_aligned_row_as_matched(tmp_path):
    """ViLBERT labels an aligned pair 0; the package's row 1 = matched, so the converter swaps the rows."""
    from vlpretrain import VilbertForImageTextRetrieval

    config = tiny_vilbert_config()
    original = original_vilbert_state_dict(config)
    original["cls.bi_seq_relationship.weight"].zero_()
    original["cls.bi_seq_relationship.bias"].copy_(torch.tensor([5.0, -5.0]))  # original row 0: aligned
    torch.save(original, tmp_path / "pretrained_model.bin")
    assert cli_main(["convert", "--from", "vilbert", str(tmp_path / "pretrained_model.bin"), "--output-dir",
                     str(tmp_path / "out"), "--config-overrides", json.dumps(HEADS)]) == 0
    model = VilbertForPreTraining.from_pretrained(tmp_path / "out").eval()
    batch = two_stream_batch(model.config, labels=False)
    with torch.no_grad():
        logits = model(**batch).matching_logits
        scores = VilbertForImageTextRetrieval.from_pretrained(tmp_path / "out").eval()(**batch).scores
    assert (logits[:, 1] > logits[:, 0]).all() and (scores > 0).all()
    assert model.vilbert.embeddings.norm.eps == model.vilbert.region_embeddings.norm.eps == 1e-12  # BertLayerNorm
