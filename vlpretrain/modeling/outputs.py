"""Output containers shared by the image-text models (names are the package-wide contract, see README)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput


@dataclass
class TwoStreamModelOutput(ModelOutput):
    """Outputs of a two-stream (text + visual) encoder.

    Args:
        text_last_hidden_state: (batch, text_length, hidden) final text states.
        visual_last_hidden_state: (batch, regions, visual_hidden) final region states.
        pooled_output: (batch, hidden) pooled representation used by matching / answer heads.
        text_hidden_states / visual_hidden_states: with ``output_hidden_states=True``, the embeddings
            followed by the output of every layer that updates that stream.
        text_attentions / visual_attentions: with ``output_attentions=True``, self-attention weights of
            every layer of that stream.
        cross_attentions: with ``output_attentions=True``, one (text-to-visual, visual-to-text) pair of
            weights per cross-modality layer.
        text_encoder_last_hidden_state / visual_encoder_last_hidden_state: final states of the single-modality
            encoders before any cross-modal layer, for models built of separate encoders (LXMERT's language and
            object-relationship encoders).
    """

    text_last_hidden_state: torch.Tensor | None = None
    visual_last_hidden_state: torch.Tensor | None = None
    pooled_output: torch.Tensor | None = None
    text_hidden_states: tuple[torch.Tensor, ...] | None = None
    visual_hidden_states: tuple[torch.Tensor, ...] | None = None
    text_attentions: tuple[torch.Tensor, ...] | None = None
    visual_attentions: tuple[torch.Tensor, ...] | None = None
    cross_attentions: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None
    text_encoder_last_hidden_state: torch.Tensor | None = None
    visual_encoder_last_hidden_state: torch.Tensor | None = None


@dataclass
class VisualQuestionAnsweringOutput(ModelOutput):
    """Answer scores over ``config.id2label``; ``loss`` is returned when ``labels`` are given."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    pooled_output: torch.Tensor | None = None


@dataclass
class ImageTextRetrievalOutput(ModelOutput):
    """Matching logits (batch, 2: mismatched, matched) and ``scores`` = matched minus mismatched logit.

    ``text_embeds`` / ``visual_embeds`` are the L2-normalised pooled single-modality encodings (the first stage of
    two-stage retrieval); ``contrastive_loss`` is their in-batch alignment loss when the config switches it on.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    pooled_output: torch.Tensor | None = None
    contrastive_loss: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    visual_embeds: torch.Tensor | None = None


@dataclass
class StreamOutput(ModelOutput):
    """The output of one single-modality stream (text or visual) before any cross-modal layer.

    Args:
        last_hidden_state: (batch, length, hidden) final states of the stream.
        hidden_states: with ``output_hidden_states=True``, the embeddings followed by every layer's output.
        attentions: with ``output_attentions=True``, every layer's self-attention weights.
    """

    last_hidden_state: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class UnimodalEncoding(ModelOutput):
    """What a retrieval index caches per item: stream ``states`` (batch, length, hidden), their 0/1 ``mask``
    (batch, length) and the L2-normalised pooled ``embeddings`` (batch, hidden) compared by dot product."""

    states: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    embeddings: torch.Tensor | None = None


@dataclass
class SingleStreamModelOutput(ModelOutput):
    """Outputs of a single-stream encoder over one joint text + region sequence.

    Args:
        last_hidden_state: (batch, sequence, hidden) final states of the whole joint sequence.
        text_last_hidden_state: (batch, text_length, hidden) the slice of the text tokens (``input_ids`` order).
        visual_last_hidden_state: (batch, regions, hidden) the slice of the given regions (``region_features`` order).
        pooled_output: (batch, hidden) pooled [CLS] state, when the model has a pooler.
        hidden_states / attentions: with ``output_hidden_states`` / ``output_attentions``, the embeddings and every
            layer's output / every layer's attention weights over the joint sequence.
    """

    last_hidden_state: torch.Tensor | None = None
    text_last_hidden_state: torch.Tensor | None = None
    visual_last_hidden_state: torch.Tensor | None = None
    pooled_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class MultipleChoiceOutput(ModelOutput):
    """Scores of each answer choice (batch, num_choices); ``loss`` when ``labels`` (batch,) are given."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None


@dataclass
class RegionScoringOutput(ModelOutput):
    """One score per region (batch, regions), e.g. referring-expression grounding; ``loss`` with ``labels``."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None


@dataclass
class VideoTextModelOutput(ModelOutput):
    """Outputs of a video-text encoder (UniVL, HERO).

    Args:
        text_last_hidden_state: (batch, text_length, hidden) final text states (the cross encoder's text slice when
            the model has one).
        visual_last_hidden_state: (batch, frames, hidden) final frame states (likewise).
        pooled_output: (batch, hidden) pooled representation used by matching / alignment heads.
        text_embeds / visual_embeds: (batch, hidden) pooled single-modality encodings (before any cross encoder),
            as used by dot-product retrieval.
        last_hidden_state: (batch, sequence, hidden) the whole joint sequence, when the model has one.
        attention_mask: (batch, sequence) 0/1 mask of ``last_hidden_state``.
        text_encoder_last_hidden_state / visual_encoder_last_hidden_state: final states of the separate text and
            video encoders, before any cross encoder (UniVL; without a cross encoder the same tensors as
            ``text_last_hidden_state`` / ``visual_last_hidden_state``).
    """

    text_last_hidden_state: torch.Tensor | None = None
    visual_last_hidden_state: torch.Tensor | None = None
    pooled_output: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    visual_embeds: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    text_encoder_last_hidden_state: torch.Tensor | None = None
    visual_encoder_last_hidden_state: torch.Tensor | None = None


@dataclass
class VideoTextRetrievalOutput(ModelOutput):
    """Text-to-video scores (batch texts, batch videos) of every in-batch pair; ``loss`` when ``return_loss``."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    visual_embeds: torch.Tensor | None = None


@dataclass
class CaptioningOutput(ModelOutput):
    """Next-token logits of a caption decoder (batch, caption_length, vocab); ``loss`` with ``labels``."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    encoder_hidden_states: torch.Tensor | None = None
    encoder_attention_mask: torch.Tensor | None = None
