"""LoRA through peft's own API on every registered architecture, and ``finetune --lora`` end to end."""

from __future__ import annotations

import dataclasses
import inspect
import json

import pytest
import torch
from helpers.factories import image_text_batch
from helpers.univl_hero_factories import hero_batch
from peft import PeftModel
from transformers import HfArgumentParser, TrainingArguments

import vlpretrain
from vlpretrain.training.lora import add_lora, load_lora_model, lora_modules_to_save, lora_target_modules
from vlpretrain.training.recipes import DataArguments, ModelArguments, finetune, pretrain

# Data-decided sizes kept small; each is set only where the architecture's config declares it.
SMALL_SIZES = dict(vocab_size=64, max_position_embeddings=32, region_feature_size=12, frame_feature_size=10, num_object_labels=7,
                   num_attribute_labels=5, num_qa_labels=6, num_labels=4)

CASES = [
    (name, task)
    for name, architecture in sorted(vlpretrain.MODEL_REGISTRY.items())
    for task in sorted(architecture.models)
]


def tiny_config(architecture, task: str = "base"):
    fields = {item.name for item in dataclasses.fields(architecture.config_class)}
    values = {key: value for key, value in SMALL_SIZES.items() if key in fields}
    # Special token ids (e.g. VL-BERT's [MASK] / [SEP]) must lie inside the small vocabulary.
    special = sorted(name for name in fields if name.endswith("_token_id") and name != "pad_token_id")
    values.update({name: 1 + position for position, name in enumerate(special)})
    config = architecture.config_class(**{**architecture.preset("tiny"), **values})
    retrieval = architecture.model_class(task).hub_auto_class == "AutoModelForSequenceClassification"
    config.num_labels = 2 if retrieval else SMALL_SIZES["num_labels"]  # retrieval heads score matched / not matched
    return config


TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def model_inputs(model, config, task: str) -> dict:
    """Random inputs by the model's forward arguments (text, region and/or frame features); multiple-choice heads
    get two text choices per example."""
    parameters = inspect.signature(model.forward).parameters
    if "subtitle_input_ids" in parameters and task == "video_qa":  # HERO: candidate answers (batch, choices, length) over subtitled videos
        video = hero_batch(config, targets=False)
        candidates = torch.randint(5, config.vocab_size, (video["input_ids"].shape[0], 2, 4))
        return dict(input_ids=candidates, subtitle_input_ids=video["input_ids"],
                    **{name: video[name] for name in ("frame_features", "frame_attention_mask", "text_subtitle_index",
                                                      "frame_subtitle_index")})
    if "frame_features" not in parameters and hasattr(config, "num_visual_words"):  # VideoBERT generation
        ids = torch.randint(5, config.vocab_size + config.num_visual_words, (2, 8))
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if "region_features" not in parameters and "frame_features" not in parameters:
        pytest.skip(f"{type(model).__name__}: no inputs builder for this modality yet")
    if "region_features" in parameters:
        inputs = image_text_batch(config, batch=2, text_length=6, regions=4, labels=False)
    else:
        inputs = {"input_ids": torch.randint(5, config.vocab_size, (2, 6)), "attention_mask": torch.ones(2, 6, dtype=torch.long),
                  "token_type_ids": torch.zeros(2, 6, dtype=torch.long)}
    if "decoder_input_ids" in parameters:
        inputs["decoder_input_ids"] = torch.randint(5, config.vocab_size, (2, 5))
    if "frame_features" in parameters:
        inputs["frame_features"] = torch.randn(2, 3, config.frame_feature_size)
        inputs["frame_attention_mask"] = torch.tensor([[1, 1, 1], [1, 1, 0]])
    if "visual_word_ids" in parameters:  # VideoBERT: visual words directly (a random model has no fitted tokenizer)
        inputs.pop("frame_features")
        inputs["visual_word_ids"] = torch.randint(0, config.num_visual_words, (2, 3))
    if task == "multiple_choice":
        inputs.update({name: torch.stack([inputs[name], inputs[name].flip(0)], 1) for name in TEXT_INPUTS})
    return {name: value for name, value in inputs.items() if name in parameters}


def float_outputs(output) -> dict[str, torch.Tensor]:
    return {key: value for key, value in output.items() if isinstance(value, torch.Tensor) and value.is_floating_point()}


@pytest.mark.parametrize("name,task", CASES)
def test_lora_adapter_round_trip(tmp_path, name, task):
    """Adapter save -> reload and merge_and_unload reproduce the adapted model's outputs exactly."""
    architecture = vlpretrain.MODEL_REGISTRY[name]
    config = tiny_config(architecture, task)
    model_class = architecture.model_class(task)
    base = model_class(config).eval()
    base.save_pretrained(tmp_path / "base")
    inputs = model_inputs(base, config, task)
    try:
        with torch.no_grad():
            plain = float_outputs(base(**inputs))
    except ValueError as error:  # e.g. a model that needs a fitted tokenizer of its own first
        pytest.skip(f"{type(base).__name__} rejects the generic random inputs: {error}")

    adapted = add_lora(model_class.from_pretrained(tmp_path / "base"), rank=4)
    assert adapted.peft_config["default"].target_modules == lora_target_modules(base)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter_name, parameter in adapted.named_parameters():
            if "lora_B" in parameter_name or "modules_to_save" in parameter_name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    adapted.eval()
    with torch.no_grad():
        expected = float_outputs(adapted(**inputs))
    assert expected and any(not torch.allclose(expected[key], plain[key]) for key in expected), "the adapter changes nothing"
    adapted.save_pretrained(tmp_path / "adapter")
    saved = {path.name for path in (tmp_path / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= saved and "model.safetensors" not in saved

    reloaded = PeftModel.from_pretrained(model_class.from_pretrained(tmp_path / "base"), str(tmp_path / "adapter")).eval()
    merged = PeftModel.from_pretrained(model_class.from_pretrained(tmp_path / "base"), str(tmp_path / "adapter")).merge_and_unload().eval()
    assert type(merged) is model_class and not any("lora" in key for key in merged.state_dict())
    with torch.no_grad():
        again = float_outputs(reloaded(**inputs))
        merged_outputs = float_outputs(merged(**inputs))
    for key, value in expected.items():
        torch.testing.assert_close(again[key], value, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(merged_outputs[key], value, rtol=1e-5, atol=1e-5)


def test_default_targets_cover_the_encoder_layers_not_the_heads():
    config = tiny_config(vlpretrain.MODEL_REGISTRY["lxmert"])
    model = vlpretrain.LxmertForQuestionAnswering(config)
    adapted = add_lora(model, rank=2)
    adapted_names = {name.rsplit(".lora_A", 1)[0] for name, _ in adapted.named_parameters() if ".lora_A" in name}
    assert any(".text_layers.0.attention.qkv" in name for name in adapted_names)
    assert any(".cross_layers.0.cross_attention.qkv" in name for name in adapted_names)
    assert any(".visual_layers.0.ffn.fc_in" in name for name in adapted_names)
    assert any(".ffn.output.dense" in name for name in adapted_names)
    assert not any("vqa_head" in name for name in adapted_names)
    assert lora_modules_to_save(model) == ["vqa_head"]
    pretraining = vlpretrain.LxmertForPreTraining(config)
    assert "mlm_head" not in lora_modules_to_save(pretraining)  # holds the tied output embeddings
    trainable = {name for name, parameter in adapted.named_parameters() if parameter.requires_grad}
    assert trainable and all("lora_" in name or "vqa_head" in name for name in trainable)


def test_bad_lora_arguments_are_rejected():
    model = vlpretrain.LxmertForImageTextRetrieval(tiny_config(vlpretrain.MODEL_REGISTRY["lxmert"], "retrieval"))
    with pytest.raises(ValueError, match="lora_rank"):
        add_lora(model, rank=0)
    with pytest.raises(ValueError, match="lora_dropout"):
        add_lora(model, dropout=1.5)


def training_arguments(output_dir) -> TrainingArguments:
    return TrainingArguments(output_dir=str(output_dir), per_device_train_batch_size=8, per_device_eval_batch_size=16,
                             max_steps=2, learning_rate=1e-2, save_strategy="no", report_to=[], use_cpu=True, seed=0,
                             disable_tqdm=True)


def test_finetune_with_lora_saves_only_the_adapter_and_reloads_it(tmp_path):
    data = DataArguments(dataset="shapes", num_images=32, eval_images=8, gallery_size=8, max_text_length=12)
    base = pretrain(ModelArguments(model="lxmert", model_size="tiny"), data, training_arguments(tmp_path / "pretrain"))
    parsed = HfArgumentParser(ModelArguments).parse_args_into_dataclasses(
        args=["--model", base["model_dir"], "--lora", "--lora_rank", "4"]
    )[0]
    assert parsed.lora and parsed.lora_rank == 4
    result = finetune("vqa", parsed, data, training_arguments(tmp_path / "vqa"))
    final = tmp_path / "vqa" / "final"
    files = {path.name for path in final.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "lora_base.json"} <= files
    assert "model.safetensors" not in files
    record = json.loads((final / "lora_base.json").read_text())
    assert record["task"] == "vqa" and "id2label" in record["config"]

    trained = result["trainer"].model.eval()
    inputs = image_text_batch(trained.config, batch=2, text_length=6, regions=4, labels=False)
    with torch.no_grad():
        expected = trained(**inputs).logits
        reloaded = load_lora_model(final).eval()(**inputs).logits
        merged_model = load_lora_model(final, merge=True).eval()
        merged = merged_model(**inputs).logits
    assert isinstance(merged_model, vlpretrain.LxmertForQuestionAnswering)
    torch.testing.assert_close(reloaded, expected, rtol=0, atol=0)
    torch.testing.assert_close(merged, expected, rtol=1e-5, atol=1e-5)


def test_lora_needs_a_pretrained_folder(tmp_path):
    data = DataArguments(dataset="shapes", num_images=16, eval_images=8, max_text_length=12)
    with pytest.raises(ValueError, match="--lora needs a pretrained model folder"):
        finetune("vqa", ModelArguments(model="lxmert", model_size="tiny", lora=True), data, training_arguments(tmp_path))


FAMILY_BASES = [(name, "base") for name in sorted(vlpretrain.MODEL_REGISTRY)]


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name,task", FAMILY_BASES)
def test_lora_with_reentrant_checkpointing_trains_every_stream(name, task):
    """With frozen embeddings, reentrant activation checkpointing backpropagates into a checkpointed layer only if its
    input requires grad: the hooks of enable_input_require_grads must cover the region / frame / action embeddings too,
    so every LoRA matrix (text, visual and cross layers) gets a gradient."""
    architecture = vlpretrain.MODEL_REGISTRY[name]
    config = tiny_config(architecture, task)
    model = architecture.model_class(task)(config)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": True})
    adapted = add_lora(model, rank=2)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter_name, parameter in adapted.named_parameters():
            if "lora_B" in parameter_name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    adapted.train()
    ran = set()
    for module_name, module in adapted.named_modules():
        if hasattr(module, "lora_A") and not module_name.endswith(("lora_A", "lora_B")):
            module.register_forward_hook(lambda module, args, output, module_name=module_name: ran.add(module_name))
    inputs = model_inputs(model, config, task)
    outputs = adapted(**inputs)
    total = sum(value.float().pow(2).mean() for value in float_outputs(outputs).values() if value.requires_grad)
    total.backward()
    lora = {key: parameter for key, parameter in adapted.named_parameters()
            if "lora_" in key and key.split(".lora_")[0] in ran}
    assert len(ran) >= 4 and len(lora) == 2 * len(ran)
    without = sorted(key for key, parameter in lora.items() if parameter.grad is None or not parameter.grad.abs().sum() > 0)
    assert not without, f"{len(without)} of {len(lora)} LoRA matrices got no gradient, e.g. {without[:4]}"
