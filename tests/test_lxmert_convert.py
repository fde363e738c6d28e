"""Conversion of transformers-format and original (airsplay) LXMERT checkpoints, with output parity."""

from __future__ import annotations

import collections

import pytest
import torch
import transformers
from helpers.factories import tiny_lxmert_config

from vlpretrain import LxmertForPreTraining, LxmertForQuestionAnswering
from vlpretrain.cli import main as cli_main
from vlpretrain.hub.convert import load_state_dict


def tiny_hf_config(**overrides) -> transformers.LxmertConfig:
    values = dict(vocab_size=99, hidden_size=32, num_attention_heads=4, intermediate_size=37, l_layers=2, r_layers=2,
                  x_layers=3, visual_feat_dim=16, num_object_labels=11, num_attr_labels=7, num_qa_labels=5)
    values.update(overrides)
    return transformers.LxmertConfig(**values)


def hf_inputs(seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    corners = torch.rand(2, 4, 2, 2, generator=generator)
    boxes = torch.cat([corners.min(2).values, corners.max(2).values], -1)
    return dict(
        input_ids=torch.randint(1, 99, (2, 6), generator=generator),
        attention_mask=torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]),
        token_type_ids=torch.zeros(2, 6, dtype=torch.long),
        features=torch.randn(2, 4, 16, generator=generator),
        boxes=boxes,
    )


def run_hf(model, inputs):
    return model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                 token_type_ids=inputs["token_type_ids"], visual_feats=inputs["features"], visual_pos=inputs["boxes"])


def run_ours(model, inputs, **kwargs):
    return model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                 token_type_ids=inputs["token_type_ids"], region_features=inputs["features"],
                 region_boxes=inputs["boxes"], **kwargs)


def assert_pretraining_parity(theirs, ours, inputs):
    with torch.no_grad():
        reference = run_hf(theirs, inputs)
        encoded = theirs.lxmert(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                token_type_ids=inputs["token_type_ids"], visual_feats=inputs["features"],
                                visual_pos=inputs["boxes"])
        converted = run_ours(ours, inputs, output_hidden_states=True)
    pairs = {
        "text hidden states": (encoded.language_output, converted.text_hidden_states[-1]),
        "visual hidden states": (encoded.vision_output, converted.visual_hidden_states[-1]),
        "pooled output": (encoded.pooled_output, converted.pooled_output),
        "MLM logits": (reference.prediction_logits, converted.prediction_logits),
        "matching logits": (reference.cross_relationship_score, converted.matching_logits),
        "QA logits": (reference.question_answering_score, converted.answer_logits),
    }
    for name, (expected, actual) in pairs.items():
        assert (expected - actual).abs().max() <= 1e-5, name


def test_transformers_lxmert_for_pretraining_converts_with_identical_outputs(tmp_path):
    torch.manual_seed(1)
    theirs = transformers.LxmertForPreTraining(tiny_hf_config()).eval()
    theirs.save_pretrained(tmp_path / "hf")
    assert cli_main(["convert", "--from", "lxmert-hf", str(tmp_path / "hf"), "--output-dir", str(tmp_path / "ours")]) == 0
    ours = LxmertForPreTraining.from_pretrained(tmp_path / "ours").eval()
    assert ours.config.num_text_layers == 2 and ours.config.num_cross_layers == 3 and ours.config.num_qa_labels == 5
    assert_pretraining_parity(theirs, ours, hf_inputs())


def test_every_tensor_lands_in_place(tmp_path):
    torch.manual_seed(2)
    theirs = transformers.LxmertForPreTraining(tiny_hf_config()).eval()
    theirs.save_pretrained(tmp_path / "hf")
    cli_main(["convert", "--from", "lxmert-hf", str(tmp_path / "hf"), "--output-dir", str(tmp_path / "ours")])
    ours = load_state_dict(tmp_path / "ours")
    source = theirs.state_dict()
    layer = source["lxmert.encoder.x_layers.1.visual_attention.att.key.weight"]
    assert torch.equal(ours["lxmert.cross_layers.1.cross_attention.qkv.weight"][32:64], layer)
    assert torch.equal(ours["lxmert.visual_layers.1.ffn.fc_in.bias"], source["lxmert.encoder.r_layers.1.intermediate.dense.bias"])
    assert torch.equal(ours["region_head.decoders.attribute.weight"], source["obj_predict_head.decoder_dict.attr.weight"])
    assert torch.equal(ours["answer_head.norm.weight"], source["answer_head.logit_fc.2.weight"])


def test_transformers_lxmert_for_question_answering_converts(tmp_path):
    torch.manual_seed(3)
    config = tiny_hf_config(num_qa_labels=4)
    theirs = transformers.LxmertForQuestionAnswering(config).eval()
    theirs.save_pretrained(tmp_path / "hf")
    cli_main(["convert", "--from", "lxmert-hf", str(tmp_path / "hf"), "--output-dir", str(tmp_path / "ours")])
    ours = LxmertForQuestionAnswering.from_pretrained(tmp_path / "ours").eval()
    inputs = hf_inputs(1)
    with torch.no_grad():
        expected = run_hf(theirs, inputs).question_answering_score
        actual = run_ours(ours, inputs).logits
    assert ours.config.num_labels == 4
    assert (expected - actual).abs().max() <= 1e-5


def test_original_airsplay_checkpoint_with_module_prefix_converts(tmp_path):
    torch.manual_seed(4)
    theirs = transformers.LxmertForPreTraining(tiny_hf_config()).eval()
    original = collections.OrderedDict(
        ("module." + key.replace("lxmert.", "bert.", 1), value.clone()) for key, value in theirs.state_dict().items()
    )
    torch.save(original, tmp_path / "model_LXRT.pth")
    cli_main(["convert", "--from", "lxmert-original", str(tmp_path / "model_LXRT.pth"), "--output-dir", str(tmp_path / "ours"),
              "--config-overrides", '{"num_attention_heads": 4}'])
    ours = LxmertForPreTraining.from_pretrained(tmp_path / "ours").eval()
    assert_pretraining_parity(theirs, ours, hf_inputs(2))


class NotATensor:
    pass


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"weight": NotATensor()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="refusing to unpickle"):
        load_state_dict(tmp_path / "evil.pth")


def test_unknown_keys_are_reported(tmp_path):
    torch.manual_seed(5)
    state = transformers.LxmertForPreTraining(tiny_hf_config()).state_dict()
    state["bert.something_else.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match="no LXMERT counterpart.*something_else"):
        cli_main(["convert", "--from", "lxmert-original", str(tmp_path / "odd.pth"), "--output-dir", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such checkpoint file"):
        load_state_dict(tmp_path / "absent.pth")


def test_converted_matching_head_keeps_row_one_as_matched(tmp_path):
    """airsplay/lxmert labels a matched pair 1 (``is_matched``, src/pretrain/lxmert_data.py), as the package does:
    the converted head scores the original's matched row as matched."""
    theirs = transformers.LxmertForPreTraining(tiny_hf_config()).eval()
    original = {"module." + key.replace("lxmert.", "bert.", 1): value.clone() for key, value in theirs.state_dict().items()}
    original["module.cls.seq_relationship.weight"].zero_()
    original["module.cls.seq_relationship.bias"].copy_(torch.tensor([-5.0, 5.0]))  # original row 1: matched
    torch.save(original, tmp_path / "model_LXRT.pth")
    cli_main(["convert", "--from", "lxmert-original", str(tmp_path / "model_LXRT.pth"), "--output-dir", str(tmp_path / "ours"),
              "--config-overrides", '{"num_attention_heads": 4}'])
    ours = LxmertForPreTraining.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        logits = run_ours(ours, hf_inputs()).matching_logits
    assert (logits[:, 1] > logits[:, 0]).all()
    assert ours.lxmert.embeddings.norm.eps == 1e-12  # BertLayerNorm(eps=1e-12) in src/lxrt/modeling.py


def hf_keyword_inputs(inputs: dict) -> dict:
    return dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                token_type_ids=inputs["token_type_ids"], visual_feats=inputs["features"], visual_pos=inputs["boxes"],
                visual_attention_mask=torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]))


def test_transformers_lxmert_names_are_accepted_and_returned(tmp_path):
    """Code written for transformers' LXMERT (visual_feats=, visual_pos=, obj_labels=, language_output, ...) runs on
    the converted model and reads the same values."""
    torch.manual_seed(4)
    theirs = transformers.LxmertForPreTraining(tiny_hf_config()).eval()
    theirs.save_pretrained(tmp_path / "hf")
    cli_main(["convert", "--from", "lxmert-hf", str(tmp_path / "hf"), "--output-dir", str(tmp_path / "ours")])
    ours = LxmertForPreTraining.from_pretrained(tmp_path / "ours").eval()
    inputs = hf_keyword_inputs(hf_inputs(2))
    with torch.no_grad():
        expected = theirs(**inputs, output_attentions=True, output_hidden_states=True)
        encoded = theirs.lxmert(**inputs)
        actual = ours(**inputs, output_attentions=True, output_hidden_states=True, return_transformers_output=True)
        base = ours.lxmert(**inputs, return_transformers_output=True)
        plain = ours.lxmert(**inputs)
    assert type(actual) is transformers.models.lxmert.modeling_lxmert.LxmertForPreTrainingOutput
    assert type(base) is transformers.models.lxmert.modeling_lxmert.LxmertModelOutput
    for name in ("prediction_logits", "cross_relationship_score", "question_answering_score"):
        torch.testing.assert_close(actual[name], expected[name], atol=1e-5, rtol=0, msg=name)
    for name in ("language_output", "vision_output", "pooled_output"):
        torch.testing.assert_close(base[name], encoded[name], atol=1e-5, rtol=0, msg=name)
    torch.testing.assert_close(base.vision_output, plain.visual_last_hidden_state)
    for mine, reference in zip(actual.cross_encoder_attentions, expected.cross_encoder_attentions):
        torch.testing.assert_close(mine, reference, atol=1e-5, rtol=0)
    assert len(actual.cross_encoder_attentions) == 3 and isinstance(ours.lxmert(**inputs, return_dict=False,
                                                                              return_transformers_output=True), tuple)


def test_transformers_lxmert_target_names_give_the_same_losses():
    ours = LxmertForPreTraining(tiny_lxmert_config(vocab_size=99, region_feature_size=16, num_object_labels=11,
                                                   num_attribute_labels=7, num_qa_labels=5)).eval()
    inputs = hf_inputs(3)
    generator = torch.Generator().manual_seed(0)
    objects = torch.randint(0, 11, (2, 4), generator=generator)
    attributes = torch.randint(0, 7, (2, 4), generator=generator)
    weights = torch.rand(2, 4, generator=generator)
    mask = torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 0]])
    labels = torch.full((2, 6), -100).index_fill(1, torch.tensor([2]), 5)
    theirs_names = dict(hf_keyword_inputs(inputs), labels=labels, matched_label=torch.tensor([1, 0]), ans=torch.tensor([2, 1]),
                        obj_labels={"obj": (objects, weights), "attr": (attributes, weights), "feat": (inputs["features"], mask)})
    our_names = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                     token_type_ids=inputs["token_type_ids"], region_features=inputs["features"],
                     region_boxes=inputs["boxes"], region_attention_mask=theirs_names["visual_attention_mask"],
                     labels=labels, matched_labels=torch.tensor([1, 0]), answer_labels=torch.tensor([2, 1]),
                     region_object_labels=objects, region_object_confidences=weights, region_attribute_labels=attributes,
                     region_attribute_confidences=weights, region_feature_targets=inputs["features"], masked_regions=mask.bool())
    with torch.no_grad():
        aliased, direct = ours(**theirs_names), ours(**our_names)
    for name in ("loss", "mlm_loss", "region_object_loss", "region_attribute_loss", "region_feature_loss", "matching_loss", "qa_loss"):
        assert direct[name] is not None and torch.equal(aliased[name], direct[name]), name
    with pytest.raises(ValueError, match="region_features: given twice"):
        ours(**theirs_names, region_features=inputs["features"])


def test_transformers_lxmert_names_for_question_answering(tmp_path):
    torch.manual_seed(5)
    theirs = transformers.LxmertForQuestionAnswering(tiny_hf_config(num_qa_labels=4)).eval()
    theirs.save_pretrained(tmp_path / "hf")
    cli_main(["convert", "--from", "lxmert-hf", str(tmp_path / "hf"), "--output-dir", str(tmp_path / "ours")])
    ours = LxmertForQuestionAnswering.from_pretrained(tmp_path / "ours").eval()
    inputs = hf_keyword_inputs(hf_inputs(4))
    with torch.no_grad():
        expected = theirs(**inputs).question_answering_score
        actual = ours(**inputs, return_transformers_output=True)
    assert type(actual) is transformers.models.lxmert.modeling_lxmert.LxmertForQuestionAnsweringOutput
    torch.testing.assert_close(actual.question_answering_score, expected, atol=1e-5, rtol=0)
