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
    """

    text_last_hidden_state: torch.Tensor | None = None
    visual_last_hidden_state: torch.Tensor | None = None
    pooled_output: torch.Tensor | None = None
    text_hidden_states: tuple[torch.Tensor, ...] | None = None
    visual_hidden_states: tuple[torch.Tensor, ...] | None = None
    text_attentions: tuple[torch.Tensor, ...] | None = None
    visual_attentions: tuple[torch.Tensor, ...] | None = None
    cross_attentions: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None


@dataclass
class VisualQuestionAnsweringOutput(ModelOutput):
    """Answer scores over ``config.id2label``; ``loss`` is returned when ``labels`` are given."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    pooled_output: torch.Tensor | None = None


@dataclass
class ImageTextRetrievalOutput(ModelOutput):
    """Matching logits (batch, 2: mismatched, matched) and ``scores`` = matched minus mismatched logit."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    pooled_output: torch.Tensor | None = None
