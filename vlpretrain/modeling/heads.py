"""Pooler and prediction heads shared by the architectures."""

from __future__ import annotations

import torch
from torch import nn
from transformers.activations import ACT2FN


class Pooler(nn.Module):
    """Dense + activation on the first token of a sequence (tanh for BERT/LXMERT, ReLU for ViLBERT)."""

    def __init__(self, input_size: int, output_size: int, activation: str = "tanh"):
        super().__init__()
        self.dense = nn.Linear(input_size, output_size)
        self.activation = ACT2FN[activation]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))


class PredictionHeadTransform(nn.Module):
    """Dense -> activation -> LayerNorm, the transform in front of BERT-style prediction decoders."""

    def __init__(self, hidden_size: int, activation: str = "gelu", eps: float = 1e-12):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.activation = ACT2FN[activation]
        self.norm = nn.LayerNorm(hidden_size, eps=eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.norm(self.activation(self.dense(hidden_states)))


class MaskedLanguageModelingHead(nn.Module):
    """Transform + decoder to the vocabulary; the decoder weight is tied to the word embeddings.

    Only the rows that are predicted need logits: pass ``positions``, the flat (row-major) indices of those tokens that
    :func:`select_rows` returns, to skip the vocabulary projection for every other token, which is most of the
    head's cost.
    """

    def __init__(self, hidden_size: int, vocab_size: int, activation: str = "gelu", eps: float = 1e-12):
        super().__init__()
        self.transform = PredictionHeadTransform(hidden_size, activation, eps)
        self.decoder = nn.Linear(hidden_size, vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden_states: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        if positions is not None:
            hidden_states = hidden_states.reshape(-1, hidden_states.shape[-1]).index_select(0, positions)
        return nn.functional.linear(self.transform(hidden_states), self.decoder.weight, self.bias)


class RegionPredictionHead(nn.Module):
    """One shared transform and one decoder per visual target (object classes, attributes, features, ...)."""

    def __init__(self, hidden_size: int, output_sizes: dict[str, int], activation: str = "gelu", eps: float = 1e-12):
        super().__init__()
        self.transform = PredictionHeadTransform(hidden_size, activation, eps)
        self.decoders = nn.ModuleDict({name: nn.Linear(hidden_size, size) for name, size in output_sizes.items()})

    def forward(self, hidden_states: torch.Tensor) -> dict[str, torch.Tensor]:
        transformed = self.transform(hidden_states)
        return {name: decoder(transformed) for name, decoder in self.decoders.items()}


class AnswerHead(nn.Module):
    """Two-layer answer classifier: Linear(h, 2h) -> GELU -> LayerNorm -> Linear(2h, answers) (LXMERT, ViLBERT VQA)."""

    def __init__(self, input_size: int, num_answers: int, hidden_size: int | None = None, eps: float = 1e-12):
        super().__init__()
        hidden_size = hidden_size or 2 * input_size
        self.fc_in = nn.Linear(input_size, hidden_size)
        self.activation = ACT2FN["gelu"]
        self.norm = nn.LayerNorm(hidden_size, eps=eps)
        self.fc_out = nn.Linear(hidden_size, num_answers)

    def forward(self, pooled_output: torch.Tensor) -> torch.Tensor:
        return self.fc_out(self.norm(self.activation(self.fc_in(pooled_output))))


class ReluAnswerHead(nn.Module):
    """Two-layer answer classifier without LayerNorm: Linear -> ReLU -> Dropout -> Linear.

    vilbert_beta's ``SimpleClassifier`` (1024 -> 2048 -> answers, dropout 0.5; its weight norm is folded
    into plain weights by the converter) and ERNIE-ViL's VQA head (``vqa_fc_w_0`` / ``vqa_fc_w_1``).
    """

    def __init__(self, input_size: int, num_answers: int, hidden_size: int | None = None, dropout: float = 0.5):
        super().__init__()
        hidden_size = hidden_size or 2 * input_size
        self.fc_in = nn.Linear(input_size, hidden_size)
        self.activation = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.fc_out = nn.Linear(hidden_size, num_answers)

    def forward(self, pooled_output: torch.Tensor) -> torch.Tensor:
        return self.fc_out(self.dropout(self.activation(self.fc_in(pooled_output))))
