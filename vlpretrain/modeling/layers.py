"""Transformer building blocks shared by every architecture of the package.

Everything is post-LN BERT style (sub-block -> dropout -> residual add -> LayerNorm), as in all nine
original code bases. Attention runs through transformers' attention interface, so ``eager`` and
``sdpa`` (and any kernel registered with ``AttentionInterface``) are chosen by the config's
``attn_implementation``. Queries, keys and values are projected with one fused matrix where they come
from the same stream; converters split or join the original checkpoints' separate matrices.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS


def eager_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Matmul-softmax attention over (B, H, L, d) tensors; returns (B, Lq, H, d) outputs and the weights."""
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    weights = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


def key_padding_mask(mask: torch.Tensor | None, dtype: torch.dtype, implementation: str) -> torch.Tensor | None:
    """Turn a (B, L) 1/0 key mask into the 4-D (B, 1, 1, L) mask the attention kernels expect.

    Returns None when nothing is padded (lets SDPA pick its fastest kernel), a boolean mask for SDPA
    and other kernels, and an additive float mask (0 / finfo.min) for eager attention.
    """
    if mask is None or bool(mask.all()):
        return None
    keep = mask[:, None, None, :].bool()
    if implementation == "eager":
        return (~keep).to(dtype) * torch.finfo(dtype).min
    return keep


class MultiHeadAttention(nn.Module):
    """Split projected queries/keys/values into heads and run the configured attention kernel.

    Holds no weights: the blocks below own the projections, so self-, cross- and co-attention share
    one implementation of head splitting, masking and kernel dispatch.
    """

    def __init__(self, config, num_heads: int, dropout: float):
        super().__init__()
        self.config = config
        self.num_heads = num_heads
        self.dropout = dropout
        self.is_causal = False

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, query_len, width = query.shape
        head_dim = width // self.num_heads

        def heads(states: torch.Tensor) -> torch.Tensor:
            return states.view(batch, states.shape[1], self.num_heads, head_dim).transpose(1, 2)

        implementation = self.config._attn_implementation
        attention = eager_attention
        if implementation != "eager" and not output_attentions:
            attention = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention)
        if attention is eager_attention and attention_mask is not None and attention_mask.dtype == torch.bool:
            attention_mask = (~attention_mask).to(query.dtype) * torch.finfo(query.dtype).min
        output, weights = attention(
            self,
            heads(query),
            heads(key),
            heads(value),
            attention_mask,
            scaling=head_dim**-0.5,
            dropout=self.dropout if self.training else 0.0,
        )
        return output.reshape(batch, query_len, width), weights


class ResidualOutput(nn.Module):
    """Output projection -> dropout -> residual add -> LayerNorm (BERT's post-LN output sub-block)."""

    def __init__(self, input_size: int, hidden_size: int, dropout: float, eps: float):
        super().__init__()
        self.dense = nn.Linear(input_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden_size, eps=eps)

    def forward(self, states: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.norm(self.dropout(self.dense(states)) + residual)


class SelfAttention(nn.Module):
    """Bidirectional multi-head self-attention with a fused QKV projection and a post-LN output."""

    def __init__(self, config, hidden_size: int | None = None, num_heads: int | None = None):
        super().__init__()
        hidden_size = hidden_size or config.hidden_size
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.attention = MultiHeadAttention(
            config, num_heads or config.num_attention_heads, config.attention_probs_dropout_prob
        )
        self.output = ResidualOutput(hidden_size, hidden_size, config.hidden_dropout_prob, config.layer_norm_eps)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        query, key, value = self.qkv(hidden_states).chunk(3, dim=-1)
        context, weights = self.attention(query, key, value, attention_mask, output_attentions)
        return self.output(context, hidden_states), weights


class SharedCrossAttention(nn.Module):
    """Cross-attention applied in both directions with the same weights (LXMERT's ``visual_attention``).

    Each stream's queries, keys and values come from one fused projection; stream A attends to B's
    keys/values and B to A's, and both results go through the same output sub-block.
    """

    def __init__(self, config):
        super().__init__()
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.attention = MultiHeadAttention(config, config.num_attention_heads, config.attention_probs_dropout_prob)
        self.output = ResidualOutput(
            config.hidden_size, config.hidden_size, config.hidden_dropout_prob, config.layer_norm_eps
        )

    def forward(
        self,
        first: torch.Tensor,
        second: torch.Tensor,
        first_mask: torch.Tensor | None,
        second_mask: torch.Tensor | None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        first_q, first_k, first_v = self.qkv(first).chunk(3, dim=-1)
        second_q, second_k, second_v = self.qkv(second).chunk(3, dim=-1)
        first_context, first_weights = self.attention(first_q, second_k, second_v, second_mask, output_attentions)
        second_context, second_weights = self.attention(second_q, first_k, first_v, first_mask, output_attentions)
        return (
            self.output(first_context, first),
            self.output(second_context, second),
            first_weights,
            second_weights,
        )


class FeedForward(nn.Module):
    """Position-wise feed-forward sub-block: Linear -> activation -> Linear -> dropout -> residual -> LayerNorm."""

    def __init__(self, config, hidden_size: int | None = None, intermediate_size: int | None = None):
        super().__init__()
        hidden_size = hidden_size or config.hidden_size
        self.fc_in = nn.Linear(hidden_size, intermediate_size or config.intermediate_size)
        self.activation = ACT2FN[config.hidden_act]
        self.output = ResidualOutput(
            intermediate_size or config.intermediate_size, hidden_size, config.hidden_dropout_prob, config.layer_norm_eps
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.output(self.activation(self.fc_in(hidden_states)), hidden_states)


class TransformerLayer(GradientCheckpointingLayer):
    """A post-LN BERT encoder layer: self-attention then feed-forward."""

    def __init__(self, config, hidden_size: int | None = None, num_heads: int | None = None, intermediate_size: int | None = None):
        super().__init__()
        self.attention = SelfAttention(config, hidden_size, num_heads)
        self.ffn = FeedForward(config, hidden_size, intermediate_size)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        hidden_states, weights = self.attention(hidden_states, attention_mask, output_attentions)
        return self.ffn(hidden_states), weights


class CrossModalityLayer(GradientCheckpointingLayer):
    """LXMERT's cross-modality layer: shared bidirectional cross-attention, then per-stream self-attention and FFN."""

    def __init__(self, config):
        super().__init__()
        self.cross_attention = SharedCrossAttention(config)
        self.text_self_attention = SelfAttention(config)
        self.visual_self_attention = SelfAttention(config)
        self.text_ffn = FeedForward(config)
        self.visual_ffn = FeedForward(config)

    def forward(
        self,
        text_states: torch.Tensor,
        visual_states: torch.Tensor,
        text_mask: torch.Tensor | None = None,
        visual_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor | None, ...]]:
        text_states, visual_states, text_cross, visual_cross = self.cross_attention(
            text_states, visual_states, text_mask, visual_mask, output_attentions
        )
        text_states, text_self = self.text_self_attention(text_states, text_mask, output_attentions)
        visual_states, visual_self = self.visual_self_attention(visual_states, visual_mask, output_attentions)
        attentions = (text_cross, visual_cross, text_self, visual_self)
        return self.text_ffn(text_states), self.visual_ffn(visual_states), attentions
