"""VL-BERT and ImageBERT through the shared collator, the pretrain CLI, overfitting, and remote-code export."""

from __future__ import annotations

import json
import os
import textwrap

import numpy as np
import pytest
import torch
from helpers.fresh_process import run_fresh_process
from helpers.single_stream_factories import INPUT_NAMES, single_stream_batch, subset, tiny_image_bert_config, tiny_vl_bert_config
from safetensors.torch import load_file, save_file

from vlpretrain import ImageBertForPreTraining, VlBertForPreTraining, VlBertForQuestionAnswering
from vlpretrain.cli import main as cli_main
from vlpretrain.data.collators import collator_for_config
from vlpretrain.training.sources import default_tokenizer

VL_BERT_TARGETS = ("labels", "masked_regions", "region_class_targets", "matched_labels", "text_only")
IMAGE_BERT_TARGETS = ("labels", "masked_regions", "region_object_labels", "region_feature_targets", "matched_labels")


@pytest.fixture(scope="module")
def tokenizer():
    return default_tokenizer()


def _example(tokenizer, caption: str, image: int, regions: int = 3) -> dict:
    generator = np.random.default_rng(image)
    return {
        "input_ids": tokenizer(caption)["input_ids"],
        "image_id": str(image),
        "region_features": generator.random((regions, 12), dtype=np.float32) + 0.1,
        "region_boxes": np.array([[0.0, 0.0, 0.5, 0.5], [0.2, 0.2, 0.9, 0.9], [0.1, 0.4, 0.3, 0.8]][:regions], np.float32),
        "region_class_targets": np.full((regions, 9), 1 / 9, np.float32),
    }


def test_collator_mixes_text_only_rows_with_whole_word_masking(tokenizer):
    config = tiny_vl_bert_config(vocab_size=len(tokenizer), text_only_probability=0.0)
    collator = collator_for_config(config, tokenizer, seed=0)
    assert collator.maskers.tokens.whole_word and collator.maskers.regions.zero_probability == 0.9
    corpus_segment = {"input_ids": tokenizer("a segment of any text corpus")["input_ids"], "text_only": True}
    examples = [_example(tokenizer, "a red circle", 0), corpus_segment, _example(tokenizer, "a blue square", 1)]
    batch = collator(examples)
    assert batch["text_only"].tolist() == [False, True, False]
    assert batch["region_attention_mask"][1].tolist() == [1, 0, 0]  # one whole-image placeholder region
    assert batch["region_boxes"][1, 0].tolist() == [0.0, 0.0, 1.0, 1.0]
    output = VlBertForPreTraining(config)(**batch)
    assert torch.isfinite(output.loss) and output.text_mlm_loss is not None
    mixing = collator_for_config(tiny_vl_bert_config(vocab_size=len(tokenizer), text_only_probability=1.0), tokenizer)
    assert mixing([_example(tokenizer, "a red circle", 0)])["text_only"].tolist() == [True]
    only_text = collator_for_config(config, tokenizer)([corpus_segment, dict(corpus_segment)])
    assert only_text["region_features"].shape == (2, 1, 12) and only_text["text_only"].all()


def test_text_corpus_adds_one_segment_per_caption_to_every_batch(tokenizer):
    config = tiny_vl_bert_config(vocab_size=len(tokenizer))
    captions = [_example(tokenizer, text, image) for image, text in enumerate(("a red circle", "a blue square", "two dots"))]
    without_corpus = collator_for_config(config, tokenizer, seed=0)(captions)
    assert config.text_only_probability == 0.0 and not without_corpus["text_only"].any()  # captions stay multimodal
    segments = [tokenizer(text)["input_ids"] for text in ("a page of a novel", "an encyclopedia entry", "more prose")]
    collator = collator_for_config(config, tokenizer, seed=0, text_corpus=segments)
    state = collator.state_dict()
    batch = collator(captions)
    assert batch["text_only"].tolist() == [False] * 3 + [True] * 3  # as many segments as image-caption pairs
    unmasked = torch.where(batch["labels"] != -100, batch["labels"], batch["input_ids"])
    for row in range(3, 6):
        assert unmasked[row][batch["attention_mask"][row].bool()].tolist() in segments
    assert not batch["region_attention_mask"][3:, 1:].any()
    resumed = collator_for_config(config, tokenizer, seed=5, text_corpus=segments)
    resumed.load_state_dict(state)
    again = resumed(captions)
    assert all(torch.equal(value, again[key]) for key, value in batch.items())
    output = VlBertForPreTraining(config)(**batch)
    assert torch.isfinite(output.text_mlm_loss) and torch.isfinite(output.mlm_loss)
    with pytest.raises(ValueError, match="text_corpus: the collator has no text_mlm objective"):
        collator_for_config(tiny_image_bert_config(), tokenizer, text_corpus=segments)


def test_pretraining_without_a_corpus_switches_text_mlm_off(tokenizer, tmp_path):
    from vlpretrain.training.recipes import DataArguments, _text_corpus

    config = tiny_vl_bert_config(vocab_size=len(tokenizer))
    assert _text_corpus(DataArguments(), config, tokenizer, "vl-bert") == {}
    assert config.loss_weights["text_mlm"] == 0.0 and config.loss_weights["mlm"] == 1.0
    assert collator_for_config(config, tokenizer).maskers.text_only is None
    (tmp_path / "corpus.txt").write_text("one line of a book\nanother line\n")
    corpus = _text_corpus(DataArguments(text_corpus=str(tmp_path / "corpus.txt")), tiny_vl_bert_config(), tokenizer, "vl-bert")
    assert corpus["text_corpus"] == [tokenizer("one line of a book")["input_ids"], tokenizer("another line")["input_ids"]]
    with pytest.raises(ValueError, match="text_corpus: image-bert has no text_mlm objective"):
        _text_corpus(DataArguments(text_corpus=str(tmp_path / "corpus.txt")), tiny_image_bert_config(), tokenizer, "image-bert")


@pytest.mark.parametrize(
    ("model_class", "config_factory", "targets"),
    [(VlBertForPreTraining, tiny_vl_bert_config, VL_BERT_TARGETS), (ImageBertForPreTraining, tiny_image_bert_config, IMAGE_BERT_TARGETS)],
)
def test_every_objective_loss_falls_on_a_fixed_batch(model_class, config_factory, targets):
    config = config_factory(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = model_class(config).train()
    batch = subset(single_stream_batch(config, batch=4, seed=1), (*INPUT_NAMES, *targets))
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    first = None
    for _ in range(25):
        output = model(**batch)
        losses = {key: float(value.detach()) for key, value in output.items() if key.endswith("_loss")}
        first = first or losses
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
    assert set(first) == {f"{name}_loss" for name in config.loss_weights}
    for name, value in losses.items():
        assert value < 0.7 * first[name], (name, first[name], value)


@pytest.mark.parametrize("model", ["vl-bert", "image-bert"])
def test_pretrain_command_runs_on_shapes(tmp_path, capsys, model):
    """A few steps of ``vlpretrain pretrain``; that every loss falls is checked on a fixed batch above."""
    arguments = ["pretrain", "--model", model, "--dataset", "shapes", "--model_size", "tiny", "--num_images", "8",
                 "--eval_images", "4", "--max_steps", "2", "--per_device_train_batch_size", "8", "--logging_steps", "1",
                 "--output_dir", str(tmp_path), "--report_to", "none", "--save_strategy", "no"]
    if model == "vl-bert":  # text-only segments of any corpus are mixed in for text-only MLM
        (tmp_path / "corpus.txt").write_text("the quick brown fox jumps over the lazy dog\nan unrelated sentence\n")
        arguments += ["--text_corpus", str(tmp_path / "corpus.txt")]
    assert cli_main(arguments) == 0
    printed = capsys.readouterr().out.split("saved to")[0]
    metrics = json.loads(printed[printed.rindex("\n{\n") + 1 :])
    expected = ("eval_mlm_loss", "eval_text_mlm_loss", "eval_region_class_loss") if model == "vl-bert" else (
        "eval_mlm_loss", "eval_region_object_loss", "eval_region_feature_loss", "eval_matching_loss")
    assert all(np.isfinite(metrics[name]) for name in expected), metrics
    assert (tmp_path / "final" / "config.json").exists()


FRESH_PROCESS = textwrap.dedent(
    """
    import sys
    sys.modules["vlpretrain"] = None  # the package must not be importable here
    import torch, transformers
    from safetensors.torch import load_file, save_file

    inputs = load_file(sys.argv[-2])
    outputs = {}
    for auto_name, folder in [(auto_name, folder) for folder in sys.argv[1:-2] for auto_name in
                              ("AutoModel", "AutoModelForPreTraining", "AutoModelForSequenceClassification")]:
        model = getattr(transformers, auto_name).from_pretrained(folder, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
        with torch.no_grad():
            result = model(**inputs)
        for key in ("pooled_output", "prediction_logits", "logits"):
            if result.get(key) is not None:
                outputs[f"{folder[-3:]}.{auto_name}.{key}"] = result[key].contiguous()
    vqa = transformers.AutoModelForVisualQuestionAnswering.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    with torch.no_grad():
        outputs["vqa.logits"] = vqa(**inputs).logits.contiguous()
    save_file(outputs, sys.argv[-1])
    """
)


@pytest.mark.slow
def test_exports_load_with_transformers_alone(tmp_path):
    vl_bert = VlBertForPreTraining(tiny_vl_bert_config()).eval()
    with torch.no_grad():
        vl_bert.vl_bert.embeddings.visual_ln_object.weight.fill_(1.0)
    image_bert = ImageBertForPreTraining(tiny_image_bert_config()).eval()
    vl_bert.save_pretrained(tmp_path / "vlb", remote_code=True)
    image_bert.save_pretrained(tmp_path / "imb", remote_code=True)
    vqa = VlBertForQuestionAnswering(tiny_vl_bert_config(id2label={0: "yes", 1: "no"})).eval()
    vqa.save_pretrained(tmp_path / "vqa", remote_code=True)
    assert {"modeling_vl_bert.py", "configuration_vl_bert.py", "utils_roi.py"} <= set(os.listdir(tmp_path / "vlb"))
    inputs = {name: value.contiguous() for name, value in single_stream_batch(vl_bert.config, labels=False).items()}
    save_file(inputs, tmp_path / "inputs.safetensors")
    run_fresh_process(
        FRESH_PROCESS, tmp_path, tmp_path / "vqa", tmp_path / "vlb", tmp_path / "imb", tmp_path / "inputs.safetensors",
        tmp_path / "outputs.safetensors",
    )
    remote = load_file(tmp_path / "outputs.safetensors")
    with torch.no_grad():
        for folder, model in (("vlb", vl_bert), ("imb", image_bert)):
            local = model(**inputs)
            torch.testing.assert_close(remote[f"{folder}.AutoModelForPreTraining.prediction_logits"], local.prediction_logits)
            torch.testing.assert_close(remote[f"{folder}.AutoModel.pooled_output"], local.pooled_output)
        torch.testing.assert_close(remote["vqa.logits"], vqa(**inputs).logits)
        torch.testing.assert_close(remote["imb.AutoModelForSequenceClassification.logits"], image_bert(**inputs).matching_logits)
