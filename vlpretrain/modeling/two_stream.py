"""The outputs and ``forward`` methods shared by the two-stream families (LXMERT, ViLBERT, ERNIE-ViL).

Each family's encoder provides ``encode(**image_text_inputs, output_attentions=..., output_hidden_states=...)``
returning a [`TwoStreamModelOutput`]; the base models and the task heads differ only in what they do with it, so
their input checks, encoding and output recording are written here once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from .base import check_answer_labels, check_image_text_inputs, check_match_labels
from .layers import key_padding_mask
from .losses import classification_loss, soft_score_loss
from .outputs import (
    ImageTextRetrievalOutput,
    RegionScoringOutput,
    StreamOutput,
    TwoStreamModelOutput,
    VisualQuestionAnsweringOutput,
)


@dataclass
class TwoStreamRecords(ModelOutput):
    """The per-layer records of a two-stream encoder (LXMERT, ViLBERT, ERNIE-ViL), as in [`TwoStreamModelOutput`].

    Listed as the *first* base of a task output (``class Output(TwoStreamRecords, TaskOutput)``) these fields come after
    the task's own, because dataclass fields follow the reversed method resolution order: ``loss`` stays first.

    Args:
        text_hidden_states / visual_hidden_states: with ``output_hidden_states=True``, the embeddings followed by the
            output of every layer that updates that stream.
        text_attentions / visual_attentions: with ``output_attentions=True``, the self-attention weights of every
            layer of that stream.
        cross_attentions: with ``output_attentions=True``, one (text-to-visual, visual-to-text) pair of weights per
            cross-modal layer.
    """

    text_hidden_states: tuple[torch.Tensor, ...] | None = None
    visual_hidden_states: tuple[torch.Tensor, ...] | None = None
    text_attentions: tuple[torch.Tensor, ...] | None = None
    visual_attentions: tuple[torch.Tensor, ...] | None = None
    cross_attentions: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None


def two_stream_records(encoded: TwoStreamModelOutput) -> dict[str, tuple | None]:
    """The record fields of an encoder output, to pass on to a task output built on a [`TwoStreamRecords`] base."""
    return {name: getattr(encoded, name) for name in TwoStreamRecords.__dataclass_fields__}


@dataclass
class TwoStreamPreTrainingOutput(ModelOutput):
    """What every two-stream pretraining model returns (each family's output adds its own objectives' fields).

    Every objective's loss is returned on its own (unweighted) and ``loss`` is their sum weighted by
    ``config.loss_weights``. ``prediction_logits`` is (batch, text_length, vocab) without ``labels``; with ``labels``
    it holds only the labelled positions, (num_labelled, vocab) in row-major order, because computing the vocabulary
    projection for every token is most of the head's cost. ``matching_logits`` (batch, 2): index 1 = matched.
    """

    loss: torch.Tensor | None = None
    mlm_loss: torch.Tensor | None = None
    matching_loss: torch.Tensor | None = None
    prediction_logits: torch.Tensor | None = None
    matching_logits: torch.Tensor | None = None
    pooled_output: torch.Tensor | None = None


@dataclass
class TwoStreamQuestionAnsweringOutput(TwoStreamRecords, VisualQuestionAnsweringOutput):
    """[`VisualQuestionAnsweringOutput`] of a two-stream model, with the encoder's records on request."""


@dataclass
class TwoStreamRetrievalOutput(TwoStreamRecords, ImageTextRetrievalOutput):
    """[`ImageTextRetrievalOutput`] of a two-stream model, with the encoder's records on request."""


@dataclass
class TwoStreamRegionScoringOutput(TwoStreamRecords, RegionScoringOutput):
    """[`RegionScoringOutput`] of a two-stream model, with the encoder's records on request."""


def checked_image_text_inputs(config, **inputs: torch.Tensor | None) -> dict[str, torch.Tensor | None]:
    """``inputs`` (the keyword inputs of an image-text forward) after ``check_image_text_inputs`` accepted them."""
    check_image_text_inputs(config, **inputs)
    return inputs


def batch_size(inputs: dict[str, torch.Tensor | None]) -> int:
    """The batch size of image-text ``inputs`` (from ``input_ids``, or ``inputs_embeds`` when there are none)."""
    text = inputs["input_ids"] if inputs["input_ids"] is not None else inputs["inputs_embeds"]
    return text.shape[0]


def weighted_loss(config, losses: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The sum of the objectives' losses weighted by ``config.loss_weights`` (None when there is none)."""
    if not losses:
        return None
    return sum(config.loss_weights[name] * value for name, value in losses.items())


def two_stream_model_output(
    text: StreamOutput, visual: StreamOutput, cross_attentions: tuple | None, pooled_output: torch.Tensor, **encoder_states
) -> TwoStreamModelOutput:
    """The [`TwoStreamModelOutput`] of the two streams after the last cross-modal layer (``encoder_states``: the
    ``*_encoder_last_hidden_state`` of models built of separate single-modality encoders)."""
    return TwoStreamModelOutput(
        text_last_hidden_state=text.last_hidden_state,
        visual_last_hidden_state=visual.last_hidden_state,
        pooled_output=pooled_output,
        text_hidden_states=text.hidden_states,
        visual_hidden_states=visual.hidden_states,
        text_attentions=text.attentions,
        visual_attentions=visual.attentions,
        cross_attentions=cross_attentions,
        **encoder_states,
    )


def output_flags(config, output_attentions: bool | None, output_hidden_states: bool | None) -> dict[str, bool]:
    """``output_attentions`` / ``output_hidden_states`` as keyword arguments, None replaced by the config's default."""
    return {
        "output_attentions": config.output_attentions if output_attentions is None else output_attentions,
        "output_hidden_states": config.output_hidden_states if output_hidden_states is None else output_hidden_states,
    }


class TwoStreamBaseModel:
    """``forward`` and ``encode`` of a two-stream base model, on the family's ``encode_text`` (text embeddings and the
    text layers before any cross-modal one), ``encode_regions`` (the same for the regions; returns the stream and its
    region mask) and ``cross_encode`` (the cross-modal layers and the pooler, continuing both streams' records)."""

    def key_mask(self, mask: torch.Tensor | None, states: torch.Tensor) -> torch.Tensor | None:
        """A (batch, length) 0/1 ``mask`` of ``states`` in the form the configured attention kernel takes."""
        return key_padding_mask(mask, states.dtype, self.config._attn_implementation)

    def encode(
        self,
        *,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        region_features: torch.Tensor,
        region_boxes: torch.Tensor,
        region_attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> TwoStreamModelOutput:
        """The forward pass on inputs already checked by ``check_image_text_inputs`` (the task heads call it)."""
        flags = output_flags(self.config, output_attentions, output_hidden_states)
        text = self.encode_text(
            input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, inputs_embeds=inputs_embeds, **flags
        )
        visual, region_attention_mask = self.encode_regions(
            region_features, region_boxes, region_attention_mask=region_attention_mask, **flags
        )
        return self.cross_encode(text, visual, attention_mask=attention_mask, region_attention_mask=region_attention_mask, **flags)

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        region_features: torch.Tensor | None = None, region_boxes: torch.Tensor | None = None, region_attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> TwoStreamModelOutput:
        """Encode captions/questions and region features.

        Inputs follow the package's naming table: ``input_ids`` (B, T), ``attention_mask`` (B, T),
        ``token_type_ids`` (B, T), ``region_features`` (B, R, D), ``region_boxes`` (B, R, 4) as (x1, y1, x2, y2)
        in [0, 1], ``region_attention_mask`` (B, R). Invalid inputs raise ``ValueError`` before any compute.
        """
        inputs = checked_image_text_inputs(
            self.config, input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, inputs_embeds=inputs_embeds,
            region_features=region_features, region_boxes=region_boxes, region_attention_mask=region_attention_mask,
        )
        return self.encode(**inputs, output_attentions=output_attentions, output_hidden_states=output_hidden_states)


class TwoStreamTaskHead:
    """``forward`` of a task head on a two-stream encoder (``self.base_model``): check the inputs and ``labels``,
    encode, and let the head turn the encoder output into its task output (``task_output``), which carries the
    encoder's records on request."""

    def check_labels(self, labels: torch.Tensor | None, inputs: dict[str, torch.Tensor | None]) -> None:
        """Raise ``ValueError`` for ``labels`` that do not fit the head and the checked ``inputs``."""
        raise NotImplementedError

    def task_output(self, encoded: TwoStreamModelOutput, labels: torch.Tensor | None, inputs: dict[str, torch.Tensor | None]):
        """The head's output (with ``two_stream_records(encoded)``) for the encoded batch."""
        raise NotImplementedError

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        region_features: torch.Tensor | None = None, region_boxes: torch.Tensor | None = None, region_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ):
        """Run the head on captions/questions and region features (inputs as the base model's ``forward``); the
        class docstring describes ``labels`` and the output."""
        inputs = checked_image_text_inputs(
            self.config, input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, inputs_embeds=inputs_embeds,
            region_features=region_features, region_boxes=region_boxes, region_attention_mask=region_attention_mask,
        )
        self.check_labels(labels, inputs)
        encoded = self.base_model.encode(**inputs, output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        return self.task_output(encoded, labels, inputs)


class TwoStreamQuestionAnswering(TwoStreamTaskHead):
    """VQA on the pooled output: ``answer_logits(pooled_output)`` over ``config.id2label``.

    ``labels`` are soft answer scores (batch, num_answers), trained with binary cross-entropy times the number of
    answers (the original VQA/GQA recipe), or single answer ids (batch,) trained with cross-entropy.
    """

    def answer_logits(self, pooled_output: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check_labels(self, labels: torch.Tensor | None, inputs: dict[str, torch.Tensor | None]) -> None:
        check_answer_labels(labels, batch_size(inputs), self.config.num_labels)

    def task_output(
        self, encoded: TwoStreamModelOutput, labels: torch.Tensor | None, inputs: dict[str, torch.Tensor | None]
    ) -> TwoStreamQuestionAnsweringOutput:
        logits = self.answer_logits(encoded.pooled_output)
        loss = None
        if labels is not None:
            loss = soft_score_loss(logits, labels) if labels.is_floating_point() else classification_loss(logits, labels)
        return TwoStreamQuestionAnsweringOutput(
            loss=loss, logits=logits, pooled_output=encoded.pooled_output, **two_stream_records(encoded)
        )


class TwoStreamRetrieval(TwoStreamTaskHead):
    """Image-text matching on a two-stream encoder: ``labels`` (batch,) are 1 for a matching pair and 0 for not."""

    def check_labels(self, labels: torch.Tensor | None, inputs: dict[str, torch.Tensor | None]) -> None:
        check_match_labels(labels, batch_size(inputs))
