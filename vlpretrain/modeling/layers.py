"""Transformer building blocks shared by every architecture of the package.

Everything is post-LN BERT style (sub-block -> dropout -> residual add -> LayerNorm), as in all nine
original code bases. Attention runs through transformers' attention interface, so ``eager`` and
``sdpa`` (and any kernel registered with ``AttentionInterface``) are chosen by the config's
``attn_implementation``. Queries, keys and values are projected with one fused matrix where they come
from the same stream; converters split or join the original checkpoints' separate matrices.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .outputs import StreamOutput


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


def masked_mean(states: torch.Tensor, mask: torch.Tensor, keepdim: bool = False) -> torch.Tensor:
    """Mean of (B, L, ...) ``states`` over the positions where the (B, L) ``mask`` is non-zero (zeros for a row
    with none): the pooling of HERO's and UniVL's video / text embeddings, LXMERT's retrieval embeddings and the
    global image token of ViLBERT and VL-BERT."""
    weights = mask.to(states.dtype).unsqueeze(-1)
    return (states * weights).sum(1, keepdim=keepdim) / weights.sum(1, keepdim=keepdim).clamp_min(1.0)


def key_padding_mask(
    mask: torch.Tensor | None, dtype: torch.dtype, implementation: str, drop_if_unpadded: bool = True
) -> torch.Tensor | None:
    """Turn a (B, L) 1/0 key mask into the 4-D (B, 1, 1, L) mask the attention kernels expect.

    Returns None when nothing is padded (lets SDPA pick its fastest kernel), a boolean mask for SDPA
    and other kernels, and an additive float mask (0 / finfo.min) for eager attention. Checking for padding
    waits for the device; ``drop_if_unpadded=False`` skips the check (for sequences that are nearly always padded),
    and so does compiling (the traced graph keeps the mask: same result, no data-dependent branch).
    """
    if mask is None or (drop_if_unpadded and not torch.compiler.is_compiling() and bool(mask.all())):
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


@dataclass(frozen=True)
class TokenPacking:
    """Where the real tokens of a padded (batch, length) sequence are, so that position-wise work skips padding.

    ``index`` holds the flat positions (into batch * length, row-major) of the kept tokens. Packed hidden states
    are (kept, width): projections, feed-forward blocks and LayerNorms run on them directly, and only attention
    needs the padded layout (``pad`` before it, ``pack`` after). Padded positions never influence kept ones (their
    keys are masked), so packing changes no kept token's result.
    """

    index: torch.Tensor
    batch: int
    length: int

    def pad(self, packed: torch.Tensor) -> torch.Tensor:
        """(kept, width) -> (batch, length, width), zeros at the padded positions."""
        padded = packed.new_zeros(self.batch * self.length, packed.shape[-1]).index_copy(0, self.index, packed)
        return padded.view(self.batch, self.length, -1)

    def pack(self, padded: torch.Tensor) -> torch.Tensor:
        """(batch, length, width) -> (kept, width)."""
        return padded.reshape(self.batch * self.length, -1).index_select(0, self.index)


class SelfAttention(nn.Module):
    """Bidirectional multi-head self-attention with a fused QKV projection and a post-LN output.

    With ``packing``, ``hidden_states`` are packed (kept, width) rows (see ``TokenPacking``); with ``output_rows``,
    only those rows (indices into the flattened or packed rows) go through the output sub-block and are returned,
    (rows, width): every token still serves as key and value.
    """

    def __init__(self, config, hidden_size: int | None = None, num_heads: int | None = None):
        super().__init__()
        hidden_size = hidden_size or config.hidden_size
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.attention = MultiHeadAttention(
            config, num_heads or config.num_attention_heads, config.attention_probs_dropout_prob
        )
        self.output = ResidualOutput(hidden_size, hidden_size, config.hidden_dropout_prob, config.layer_norm_eps)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        output_attentions: bool = False,
        packing: TokenPacking | None = None,
        output_rows: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        qkv = self.qkv(hidden_states)
        if packing is not None:
            qkv = packing.pad(qkv)
        query, key, value = qkv.chunk(3, dim=-1)
        context, weights = self.attention(query, key, value, attention_mask, output_attentions)
        if packing is not None:
            context = packing.pack(context)
        if output_rows is not None:
            width = context.shape[-1]
            context = context.reshape(-1, width).index_select(0, output_rows)
            hidden_states = hidden_states.reshape(-1, width).index_select(0, output_rows)
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
        first_context, first_weights = self.attention(first_q, second_k, second_v, second_mask, output_attentions=output_attentions)
        second_context, second_weights = self.attention(second_q, first_k, first_v, first_mask, output_attentions=output_attentions)
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
    """A post-LN BERT encoder layer: self-attention then feed-forward (``packing`` / ``output_rows``: ``SelfAttention``)."""

    def __init__(self, config, hidden_size: int | None = None, num_heads: int | None = None, intermediate_size: int | None = None):
        super().__init__()
        self.attention = SelfAttention(config, hidden_size, num_heads)
        self.ffn = FeedForward(config, hidden_size, intermediate_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        packing: TokenPacking | None = None,
        output_rows: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        hidden_states, weights = self.attention(hidden_states, attention_mask, output_attentions, packing, output_rows)
        return self.ffn(hidden_states), weights


def run_layers(
    layers: Iterable[nn.Module],
    hidden_states: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    output_attentions: bool = False,
    output_hidden_states: bool = False,
    recorded_states: tuple[torch.Tensor, ...] | None = None,
    recorded_attentions: tuple[torch.Tensor, ...] | None = None,
    **layer_kwargs,
) -> StreamOutput:
    """The one encoder loop of the package: run ``layers`` in order on one stream and record what was asked for.

    Every layer is called as ``layer(hidden_states, attention_mask, output_attentions=..., **layer_kwargs)`` and
    returns ``(hidden_states, attention_weights)`` (a ``GradientCheckpointingLayer`` checkpoints itself when the
    model enables gradient checkpointing). ``attention_mask`` is already in the kernel's form
    (:func:`key_padding_mask`, :func:`causal_attention_mask`). With ``output_hidden_states`` the input and every
    layer's output are recorded, with ``output_attentions`` every layer's weights. ``recorded_states`` / ``recorded_attentions`` continue the records
    of an earlier stack (a stream that goes on through cross-modal layers) instead of starting new ones; the
    recorded tensors are the layers' own outputs, so gradients flow through them.

    Why not transformers' hook-based ``capture_outputs``: it records one ``hidden_states`` / ``attentions`` pair per
    model, keyed by layer class, while the two-stream and video families return one record per stream (text, visual,
    cross, temporal, decoder) built of the same layer classes; recording in the loop keeps those apart, costs nothing
    when not asked, and traces under ``torch.compile`` without hooks. Forwards still use transformers'
    ``can_return_tuple`` for ``return_dict``.
    """
    states = None
    if output_hidden_states:
        states = recorded_states if recorded_states is not None else (hidden_states,)
    attentions = (recorded_attentions or ()) if output_attentions else None
    for layer in layers:
        hidden_states, weights = layer(hidden_states, attention_mask, output_attentions=output_attentions, **layer_kwargs)
        if states is not None:
            states += (hidden_states,)
        if attentions is not None:
            attentions += (weights,)
    return StreamOutput(last_hidden_state=hidden_states, hidden_states=states, attentions=attentions)


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
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor | None, ...], tuple[torch.Tensor | None, ...]]:
        """Returns both streams, the (text-to-visual, visual-to-text) cross weights and the (text, visual) self weights."""
        text_states, visual_states, text_cross, visual_cross = self.cross_attention(
            text_states, visual_states, first_mask=text_mask, second_mask=visual_mask, output_attentions=output_attentions
        )
        text_states, text_self = self.text_self_attention(text_states, text_mask, output_attentions=output_attentions)
        visual_states, visual_self = self.visual_self_attention(visual_states, visual_mask, output_attentions=output_attentions)
        return self.text_ffn(text_states), self.visual_ffn(visual_states), (text_cross, visual_cross), (text_self, visual_self)


class CoAttentionStream(nn.Module):
    """One stream's half of a co-attention layer: its query/key/value projections to the co-attention width and
    the output sub-block (co width -> stream width, dropout, residual, LayerNorm) of its own queries' context."""

    def __init__(self, config, stream_size: int, co_size: int):
        super().__init__()
        self.qkv = nn.Linear(stream_size, 3 * co_size)
        self.output = ResidualOutput(co_size, stream_size, config.hidden_dropout_prob, config.layer_norm_eps)


class CoAttentionLayer(GradientCheckpointingLayer):
    """ViLBERT's Co-TRM layer (also ERNIE-ViL's co-layer): each stream attends to the other with its own weights.

    Unlike LXMERT's shared cross-attention, every direction has separate projections and the two streams
    may have different widths (ViLBERT: text 768, visual 1024, co-attention 1024 with ``num_heads`` heads).
    Text queries attend to visual keys/values and visual queries to text keys/values; each context goes
    through its stream's output sub-block, then through the stream's own feed-forward sub-block.
    """

    def __init__(
        self,
        config,
        text_size: int,
        visual_size: int,
        co_size: int,
        num_heads: int,
        text_intermediate_size: int,
        visual_intermediate_size: int,
    ):
        super().__init__()
        if co_size % num_heads:
            raise ValueError(f"co-attention width ({co_size}) must be a multiple of its head count ({num_heads})")
        self.text_attention = CoAttentionStream(config, text_size, co_size)
        self.visual_attention = CoAttentionStream(config, visual_size, co_size)
        self.attention = MultiHeadAttention(config, num_heads, config.attention_probs_dropout_prob)
        self.text_ffn = FeedForward(config, text_size, text_intermediate_size)
        self.visual_ffn = FeedForward(config, visual_size, visual_intermediate_size)

    def forward(
        self,
        text_states: torch.Tensor,
        visual_states: torch.Tensor,
        text_mask: torch.Tensor | None = None,
        visual_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor | None, torch.Tensor | None], None]:
        """Returns both streams, the (text-to-visual, visual-to-text) weights and None (the layer has no self-attention)."""
        text_q, text_k, text_v = self.text_attention.qkv(text_states).chunk(3, dim=-1)
        visual_q, visual_k, visual_v = self.visual_attention.qkv(visual_states).chunk(3, dim=-1)
        text_context, text_weights = self.attention(text_q, visual_k, visual_v, visual_mask, output_attentions=output_attentions)
        visual_context, visual_weights = self.attention(visual_q, text_k, text_v, text_mask, output_attentions=output_attentions)
        text_states = self.text_attention.output(text_context, text_states)
        visual_states = self.visual_attention.output(visual_context, visual_states)
        return self.text_ffn(text_states), self.visual_ffn(visual_states), (text_weights, visual_weights), None


def continue_stream(
    layers: Iterable[nn.Module],
    stream: StreamOutput,
    attention_mask: torch.Tensor | None,
    *,
    output_attentions: bool = False,
    output_hidden_states: bool = False,
) -> StreamOutput:
    """:func:`run_layers` on the last states of ``stream``, appending to the records ``stream`` already holds."""
    return run_layers(
        layers,
        stream.last_hidden_state,
        attention_mask,
        output_attentions=output_attentions,
        output_hidden_states=output_hidden_states,
        recorded_states=stream.hidden_states,
        recorded_attentions=stream.attentions,
    )


def run_cross_modal_layers(
    layers: Iterable[nn.Module],
    text: StreamOutput,
    visual: StreamOutput,
    text_mask: torch.Tensor | None,
    visual_mask: torch.Tensor | None,
    *,
    output_attentions: bool = False,
    output_hidden_states: bool = False,
    recorded_cross_attentions: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None,
) -> tuple[StreamOutput, StreamOutput, tuple[tuple[torch.Tensor, torch.Tensor], ...] | None]:
    """The loop of a two-stream stack (LXMERT's cross-modality layers, ViLBERT's co-attention layers), recording as
    :func:`run_layers` does and continuing the records of ``text`` and ``visual``.

    Every layer is called as ``layer(text, visual, text_mask, visual_mask, output_attentions=...)`` and returns both
    streams, its (text-to-visual, visual-to-text) cross weights and its (text, visual) self-attention weights (None
    for a layer without self-attention). Each layer's outputs extend both streams' hidden states, its self weights
    their attentions and its cross weights ``recorded_cross_attentions``. Returns the two streams and the cross
    weights (None when not asked).
    """
    text_states, visual_states = text.last_hidden_state, visual.last_hidden_state
    text_history = visual_history = text_attentions = visual_attentions = cross_attentions = None
    if output_hidden_states:
        text_history = text.hidden_states if text.hidden_states is not None else (text_states,)
        visual_history = visual.hidden_states if visual.hidden_states is not None else (visual_states,)
    if output_attentions:
        text_attentions, visual_attentions = text.attentions or (), visual.attentions or ()
        cross_attentions = recorded_cross_attentions or ()
    for layer in layers:
        text_states, visual_states, cross_weights, self_weights = layer(
            text_states, visual_states, text_mask, visual_mask, output_attentions=output_attentions
        )
        if output_hidden_states:
            text_history += (text_states,)
            visual_history += (visual_states,)
        if output_attentions:
            cross_attentions += (cross_weights,)
            if self_weights is not None:
                text_attentions += (self_weights[0],)
                visual_attentions += (self_weights[1],)
    return (
        StreamOutput(last_hidden_state=text_states, hidden_states=text_history, attentions=text_attentions),
        StreamOutput(last_hidden_state=visual_states, hidden_states=visual_history, attentions=visual_attentions),
        cross_attentions,
    )


def co_attention_schedule(
    num_text_layers: int, num_visual_layers: int, text_ids: list[int], visual_ids: list[int]
) -> list[tuple[int | None, range, range]]:
    """The order in which a two-stream encoder runs its layers, as stages ``(co_layer, text_layers, visual_layers)``.

    ViLBERT's ``BertEncoder.forward``: for co-layer k, first the text layers up to ``text_ids[k]`` (exclusive) and
    the visual layers up to ``visual_ids[k]`` that have not run yet, then co-layer k; after the last co-layer, the
    remaining layers of both streams. Grouped here as a first stage without a co-layer (``co_layer`` None: the
    single-stream layers before the first co-layer), then one stage per co-layer: the co-layer, then the text and
    visual layers up to the next one.
    """
    if len(text_ids) != len(visual_ids):
        raise ValueError(
            f"t_biattention_id and v_biattention_id must have the same length (one entry per co-layer), got "
            f"{list(text_ids)} and {list(visual_ids)}"
        )
    for name, ids, count in (("t_biattention_id", text_ids, num_text_layers), ("v_biattention_id", visual_ids, num_visual_layers)):
        if any(not 0 <= index <= count for index in ids) or list(ids) != sorted(ids):
            raise ValueError(f"{name} must be non-decreasing layer indices in [0, {count}], got {list(ids)}")
    text_bounds = [0, *text_ids, num_text_layers]
    visual_bounds = [0, *visual_ids, num_visual_layers]
    return [
        (stage - 1 if stage else None, range(text_bounds[stage], text_bounds[stage + 1]), range(visual_bounds[stage], visual_bounds[stage + 1]))
        for stage in range(len(text_ids) + 1)
    ]


class CoAttentionEncoder(nn.Module):
    """Two streams of post-LN layers joined by co-attention layers at fixed depths (ViLBERT, ERNIE-ViL).

    ``text_layers`` run at ``text_size``, ``visual_layers`` at ``visual_size``, and co-layer k runs after the
    text layers before ``text_ids[k]`` and the visual layers before ``visual_ids[k]`` (see
    :func:`co_attention_schedule`). ``encode_stream`` runs one stream's layers before the first co-layer on their
    own (two-stage retrieval caches them per item); ``cross_encode`` runs the rest of the schedule.
    """

    def __init__(
        self,
        config,
        num_text_layers: int,
        num_visual_layers: int,
        text_ids: list[int],
        visual_ids: list[int],
        text_size: int,
        text_heads: int,
        text_intermediate_size: int,
        visual_size: int,
        visual_heads: int,
        visual_intermediate_size: int,
        co_size: int,
        co_heads: int,
    ):
        super().__init__()
        self.schedule = co_attention_schedule(num_text_layers, num_visual_layers, list(text_ids), list(visual_ids))
        self.text_layers = nn.ModuleList(
            TransformerLayer(config, text_size, text_heads, text_intermediate_size) for _ in range(num_text_layers)
        )
        self.visual_layers = nn.ModuleList(
            TransformerLayer(config, visual_size, visual_heads, visual_intermediate_size) for _ in range(num_visual_layers)
        )
        self.co_layers = nn.ModuleList(
            CoAttentionLayer(
                config,
                text_size=text_size,
                visual_size=visual_size,
                co_size=co_size,
                num_heads=co_heads,
                text_intermediate_size=text_intermediate_size,
                visual_intermediate_size=visual_intermediate_size,
            )
            for _ in range(len(text_ids))
        )

    def encode_stream(
        self, stream: str, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None, *, output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> StreamOutput:
        """The layers of ``stream`` (``"text"`` or ``"visual"``) before the first co-layer, on that stream's embeddings."""
        _, text_range, visual_range = self.schedule[0]
        layers = [self.text_layers[index] for index in text_range] if stream == "text" else [self.visual_layers[index] for index in visual_range]
        return run_layers(
            layers, hidden_states, attention_mask, output_attentions=output_attentions, output_hidden_states=output_hidden_states
        )

    def cross_encode(
        self,
        text: StreamOutput,
        visual: StreamOutput,
        text_mask: torch.Tensor | None,
        visual_mask: torch.Tensor | None,
        *,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> tuple[StreamOutput, StreamOutput, tuple[tuple[torch.Tensor, torch.Tensor], ...] | None]:
        """The schedule from its first co-layer on, continuing the records of ``encode_stream`` for both streams;
        returns both streams and the co-layers' (text-to-visual, visual-to-text) weights."""
        flags = {"output_attentions": output_attentions, "output_hidden_states": output_hidden_states}
        cross_attentions = None
        for co_index, text_range, visual_range in self.schedule[1:]:
            text, visual, cross_attentions = run_cross_modal_layers(
                [self.co_layers[co_index]], text, visual, text_mask, visual_mask, recorded_cross_attentions=cross_attentions,
                **flags,
            )
            text = continue_stream([self.text_layers[index] for index in text_range], text, text_mask, **flags)
            visual = continue_stream([self.visual_layers[index] for index in visual_range], visual, visual_mask, **flags)
        return text, visual, cross_attentions


def causal_attention_mask(
    mask: torch.Tensor | None, length: int, dtype: torch.dtype, implementation: str, device: torch.device
) -> torch.Tensor:
    """A (B or 1, 1, L, L) mask letting position i attend to keys j <= i that are not padded (decoder self-attention).

    ``mask`` is the (B, L) 1/0 key mask (None: nothing padded). The causal constraint is part of the mask rather
    than a kernel flag, so eager and SDPA (and any registered kernel) compute exactly the same attention. Boolean
    for SDPA-like kernels, additive (0 / finfo.min) for eager, as :func:`key_padding_mask`.
    """
    keep = torch.ones(length, length, dtype=torch.bool, device=device).tril()[None, None]
    if mask is not None:
        keep = keep & mask[:, None, None, :].bool()
    if implementation == "eager":
        return (~keep).to(dtype) * torch.finfo(dtype).min
    return keep


class CrossAttention(nn.Module):
    """Multi-head attention from one sequence (queries) to another (keys/values), with a post-LN output sub-block.

    Queries have their own projection; keys and values share one fused projection of the attended sequence.
    """

    def __init__(self, config, hidden_size: int | None = None, num_heads: int | None = None):
        super().__init__()
        hidden_size = hidden_size or config.hidden_size
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key_value = nn.Linear(hidden_size, 2 * hidden_size)
        self.attention = MultiHeadAttention(
            config, num_heads or config.num_attention_heads, config.attention_probs_dropout_prob
        )
        self.output = ResidualOutput(hidden_size, hidden_size, config.hidden_dropout_prob, config.layer_norm_eps)

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_states: torch.Tensor,
        encoder_mask: torch.Tensor | None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        key, value = self.key_value(encoder_states).chunk(2, dim=-1)
        context, weights = self.attention(self.query(hidden_states), key, value, encoder_mask, output_attentions)
        return self.output(context, hidden_states), weights


class DecoderLayer(GradientCheckpointingLayer):
    """A post-LN transformer decoder layer: masked self-attention, attention over an encoder's output, feed-forward.

    Each sub-block is followed by dropout, the residual add and LayerNorm (UniVL's ``DecoderLayer``, HERO's TVC
    decoder). ``self_mask`` is a causal mask from :func:`causal_attention_mask`; ``encoder_mask`` a key mask.
    """

    def __init__(self, config):
        super().__init__()
        self.attention = SelfAttention(config)
        self.cross_attention = CrossAttention(config)
        self.ffn = FeedForward(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        self_mask: torch.Tensor | None,
        encoder_states: torch.Tensor,
        encoder_mask: torch.Tensor | None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor | None, torch.Tensor | None]]:
        hidden_states, self_weights = self.attention(hidden_states, self_mask, output_attentions)
        hidden_states, cross_weights = self.cross_attention(hidden_states, encoder_states, encoder_mask, output_attentions)
        return self.ffn(hidden_states), (self_weights, cross_weights)
