"""transformers' model contract on every head of all nine families: resizing the vocabulary, the retrieval heads'
label count, initialisation of every parameter and buffer, and missing-key reports."""

from __future__ import annotations

import os

import pytest
import torch
from helpers.model_zoo import FAMILIES
from safetensors.torch import load_file, save_file

from vlpretrain.modeling.heads import MaskedLanguageModelingHead
from vlpretrain.registry import MODEL_REGISTRY

pytestmark = pytest.mark.usefixtures("one_thread")

ALL_HEADS = [(family, task) for family in sorted(FAMILIES) for task in MODEL_REGISTRY[family].models]


def mlm_heads(model: torch.nn.Module) -> list[MaskedLanguageModelingHead]:
    return [module for module in model.modules() if isinstance(module, MaskedLanguageModelingHead)]


@pytest.mark.parametrize("change", [7, -3])
@pytest.mark.parametrize(("family", "task"), ALL_HEADS)
def test_resize_token_embeddings_keeps_heads_tied_and_running(family, task, change):
    spec = FAMILIES[family]
    model = spec.model(task)
    table = model.get_input_embeddings().weight.detach().clone()
    heads = [(head, head.bias.detach().clone()) for head in mlm_heads(model) if head.decoder.weight is model.get_input_embeddings().weight]
    text_vocab = model.config.vocab_size
    model.resize_token_embeddings(text_vocab + change, mean_resizing=False)
    assert model.config.vocab_size == text_vocab + change
    resized = model.get_input_embeddings().weight
    kept = min(text_vocab, text_vocab + change)
    torch.testing.assert_close(resized[:kept], table[:kept])
    if family == "videobert":  # the visual words and [>] follow the text rows, unchanged
        assert resized.shape[0] == table.shape[0] + change
        torch.testing.assert_close(resized[text_vocab + change :], table[text_vocab:])
    for head, bias in heads:
        assert head.decoder.weight is resized
        assert head.bias.shape[0] == resized.shape[0]
        torch.testing.assert_close(head.bias[:kept], bias[:kept])
    inputs = spec.inputs(model, labels=task == "pretraining")
    output = model(**inputs)
    logits = getattr(output, "prediction_logits", None)
    if logits is not None:
        assert logits.shape[-1] == resized.shape[0]


@pytest.mark.parametrize(
    ("family", "task"),
    [(f, t) for f, t in ALL_HEADS if MODEL_REGISTRY[f].model_class(t).hub_auto_class == "AutoModelForSequenceClassification"],
)
def test_retrieval_heads_score_two_classes_whatever_num_labels(family, task):
    """The config may carry a VQA head's answers (num_labels 5): the retrieval head still takes 0/1 labels and
    refuses label 3 with a ValueError (it was an IndexError in the loss)."""
    spec = FAMILIES[family]
    model = spec.model(task, num_labels=5)
    inputs = spec.inputs(model, labels=True)
    inputs["labels"] = torch.full_like(inputs["labels"], 3)
    with pytest.raises(ValueError, match=r"labels: expected ids in \[0, 2\)"):
        model(**inputs)


@pytest.mark.parametrize(("family", "task"), ALL_HEADS)
def test_init_weights_covers_every_parameter_and_buffer(family, task):
    """Built on the meta device, materialised with garbage and initialised: nothing is left uninitialised."""
    spec = FAMILIES[family]
    with torch.device("meta"):
        model = MODEL_REGISTRY[family].model_class(task)(spec.config())
    model.to_empty(device="cpu")
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.fill_(float("nan") if tensor.is_floating_point() else -7)
            if hasattr(tensor, "_is_hf_initialized"):
                del tensor._is_hf_initialized
    model.init_weights()
    left = [
        name
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]
        if tensor.is_meta or (torch.isnan(tensor).any() if tensor.is_floating_point() else (tensor == -7).any())
    ]
    assert not left


def test_hero_token_type_table_is_reported_missing_and_initialised(tmp_path):
    model = FAMILIES["hero"].model("pretraining")
    model.save_pretrained(tmp_path)
    path = os.path.join(tmp_path, "model.safetensors")
    state = load_file(path)
    assert [name for name in state if "token_type" in name] == ["hero.embeddings.token_type_embeddings.weight"]
    del state["hero.embeddings.token_type_embeddings.weight"]
    save_file(state, path, metadata={"format": "pt"})
    loaded, info = type(model).from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == {"hero.embeddings.token_type_embeddings.weight"}
    assert not [name for name, tensor in loaded.state_dict().items() if tensor.is_meta]
    assert int(loaded.task_step) == 0
    inputs = FAMILIES["hero"].inputs(loaded, labels=True)
    assert torch.isfinite(loaded(**inputs).loss)
