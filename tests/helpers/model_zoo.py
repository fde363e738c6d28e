"""One tiny config and one random batch per architecture, for the checks that run over all nine families
(input fuzzing, compile and export, resizing, initialisation)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from helpers.actbert_videobert_factories import actbert_batch, fitted_tokenizer, tiny_actbert_config, tiny_videobert_config
from helpers.actbert_videobert_factories import video_text_batch as videobert_batch
from helpers.factories import image_text_batch, tiny_lxmert_config
from helpers.single_stream_factories import single_stream_batch, tiny_image_bert_config, tiny_vl_bert_config
from helpers.univl_hero_factories import hero_batch, tiny_hero_config, tiny_univl_config
from helpers.univl_hero_factories import video_text_batch as univl_batch
from helpers.vilbert_factories import tiny_ernie_vil_config, tiny_vilbert_config, two_stream_batch
from vlpretrain.registry import MODEL_REGISTRY


@dataclass(frozen=True)
class Family:
    """A registry architecture with a tiny config and a batch builder (``labels`` adds pretraining targets)."""

    name: str
    config: Callable
    batch: Callable

    def model(self, task: str, seed: int = 0, **config_overrides) -> torch.nn.Module:
        """A seeded ``task`` model of this family in eval mode (VideoBERT's with a fitted visual-word tokenizer)."""
        torch.manual_seed(seed)
        model = MODEL_REGISTRY[self.name].model_class(task)(self.config(**config_overrides))
        if self.name == "videobert":
            model.set_visual_word_tokenizer(fitted_tokenizer())
        return model.eval()

    def inputs(self, model: torch.nn.Module, labels: bool = False) -> dict:
        """The batch entries ``model.forward`` accepts (its inputs, and the pretraining targets when ``labels``)."""
        accepted = inspect.signature(model.forward).parameters
        batch = self.batch(model.config, labels)
        inputs = {name: value for name, value in batch.items() if name in accepted}
        if "decoder_input_ids" in accepted:
            inputs["decoder_input_ids"] = batch["input_ids"][:, :4]
        if model.hub_auto_class == "AutoModelForMultipleChoice":
            text = batch["input_ids"].shape[1]
            inputs = {name: value for name, value in inputs.items() if name not in ("attention_mask", "token_type_ids")}
            if "subtitle_input_ids" in accepted:
                inputs["subtitle_input_ids"] = batch["input_ids"]
            inputs["input_ids"] = torch.randint(3, 40, (batch["input_ids"].shape[0], 2, text), generator=torch.Generator().manual_seed(0))
        if labels and "labels" in accepted and model.hub_auto_class != "AutoModelForPreTraining":
            inputs["labels"] = head_labels(model, inputs)
        return inputs


def head_labels(model: torch.nn.Module, inputs: dict) -> torch.Tensor | None:
    """Valid ``labels`` of a task head: answer ids, 0/1 match labels, choice indices or region scores in [0, 1]."""
    batch = inputs["input_ids"].shape[0]
    generator = torch.Generator().manual_seed(1)
    kind = model.hub_auto_class
    if kind == "AutoModelForVisualQuestionAnswering":
        return torch.randint(0, model.config.num_labels, (batch,), generator=generator)
    if kind == "AutoModelForSequenceClassification":
        return (torch.arange(batch) + 1) % 2
    if kind == "AutoModelForMultipleChoice":
        return torch.randint(0, inputs["input_ids"].shape[1], (batch,), generator=generator)
    if "region_features" in inputs and "ReferringExpressions" in type(model).__name__:
        return (torch.rand(inputs["region_features"].shape[:2], generator=generator) > 0.5).float()
    return None


FAMILIES = {
    family.name: family
    for family in (
        Family("lxmert", tiny_lxmert_config, lambda config, labels: image_text_batch(config, labels=labels)),
        Family("vilbert", tiny_vilbert_config, lambda config, labels: two_stream_batch(config, labels=labels)),
        Family("ernie-vil", tiny_ernie_vil_config, lambda config, labels: two_stream_batch(config, labels=labels)),
        Family("vl-bert", tiny_vl_bert_config, lambda config, labels: single_stream_batch(config, labels=labels)),
        Family("image-bert", tiny_image_bert_config, lambda config, labels: single_stream_batch(config, labels=labels)),
        Family("univl", tiny_univl_config, lambda config, labels: univl_batch(config, targets=labels)),
        Family("hero", tiny_hero_config, lambda config, labels: hero_batch(config, targets=labels)),
        Family("actbert", tiny_actbert_config, lambda config, labels: actbert_batch(config, labels=labels)),
        Family("videobert", tiny_videobert_config, lambda config, labels: videobert_batch(config, labels=labels)),
    )
}
