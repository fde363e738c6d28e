"""HERO (Li et al. 2020): a cross-modal transformer per subtitle sentence, then a temporal transformer over the video.

Inputs: the tokens of every subtitle of a video concatenated in ``input_ids`` (B, T), with ``text_subtitle_index``
(B, T) giving each token's subtitle, and ``frame_subtitle_index`` (B, F) giving each frame's subtitle (-1:
unmatched), aligned from timestamps by the processor (``encode_subtitled_videos``) or, in training, by the collator
(``subtitles=True``), both with the rule of :mod:`..processing.subtitles`. Without the two index tensors the whole
text is one subtitle aligned to every frame (e.g. a caption). A subtitle longer than ``max_position_embeddings``
tokens is a ``ValueError`` (each subtitle's tokens take positions 0..L-1 in its run).

Forward (``HierarchicalVlModel.forward_repr``): each subtitle's sequence is [its aligned frames ; its tokens]
with local positions (frames 0..nf-1, tokens 0..L-1) and type id 1; the cross-modal frame outputs are scattered
back onto the timeline and added to ``frame_transform`` (LN -> dropout -> Linear -> ReLU) of the raw frames;
the temporal transformer adds global positions and runs over the whole video. The per-subtitle runs are written
with static shapes (:func:`subtitle_attention`): one sequence [all frames ; all tokens] per video whose attention
stays inside each subtitle, positions counted per subtitle, so the models trace as one graph.

Package conventions that differ from the original: ignored targets are -100; frame order labels come from the
collator, which shuffles *input* frames; the model undoes that shuffle for the cross-modal stage and re-applies it
after fusion, so the cross-modal transformer sees the original order, as in the release.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from ..configuration.hero import HERO_OBJECTIVES, HeroConfig
from .base import (
    VLPreTrainedModel,
    check_match_labels,
    check_video_text_inputs,
    retrieval_placeholder_text,
    retrieval_text_mask,
)
from .embeddings import FrameEmbeddings, TextEmbeddings
from .heads import AnswerHead, MaskedLanguageModelingHead, PredictionHeadTransform
from .layers import SelfAttention, TransformerLayer, key_padding_mask, masked_mean, run_layers
from .losses import IGNORE_INDEX, classification_loss, select_rows
from .outputs import StreamOutput, UnimodalEncoding, VideoTextModelOutput, VideoTextRetrievalOutput


@dataclass
class HeroModelOutput(VideoTextModelOutput):
    """[`VideoTextModelOutput`] of [`HeroModel`] with its per-layer records (``output_hidden_states`` /
    ``output_attentions``): ``cross_modal_*`` over each video's joint sequence [frames ; tokens] (B, F + T, H), where
    attention stays inside each subtitle, and ``temporal_*`` over the fused frames (B, F, H)."""

    cross_modal_hidden_states: tuple[torch.Tensor, ...] | None = None
    cross_modal_attentions: tuple[torch.Tensor, ...] | None = None
    temporal_hidden_states: tuple[torch.Tensor, ...] | None = None
    temporal_attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class HeroForPreTrainingOutput(ModelOutput):
    """Losses of [`HeroForPreTraining`]: the objective(s) run this step, unweighted, and their weighted sum ``loss``.

    ``task`` is the index in ``HERO_OBJECTIVES`` of the sampled objective (-1 when every objective ran). Each
    objective runs the model on its own view of the batch: the records hold one tuple per pass over the videos, in
    objective order (MLM runs the cross-modal transformer only; VSM's query pass is not recorded).
    """

    loss: torch.Tensor | None = None
    mlm_loss: torch.Tensor | None = None
    frame_feature_loss: torch.Tensor | None = None
    frame_order_loss: torch.Tensor | None = None
    vsm_loss: torch.Tensor | None = None
    task: torch.Tensor | None = None
    cross_modal_hidden_states: tuple[tuple[torch.Tensor, ...], ...] | None = None
    cross_modal_attentions: tuple[tuple[torch.Tensor, ...], ...] | None = None
    temporal_hidden_states: tuple[tuple[torch.Tensor, ...], ...] | None = None
    temporal_attentions: tuple[tuple[torch.Tensor, ...], ...] | None = None


@dataclass
class HeroRetrievalOutput(VideoTextRetrievalOutput):
    """[`VideoTextRetrievalOutput`] with the records of the video passes (``cross_modal_*``, ``temporal_*``, as in
    [`HeroModelOutput`]) and of the queries through the cross-modal transformer (``query_*``, B x T x H)."""

    query_hidden_states: tuple[torch.Tensor, ...] | None = None
    query_attentions: tuple[torch.Tensor, ...] | None = None
    cross_modal_hidden_states: tuple[torch.Tensor, ...] | None = None
    cross_modal_attentions: tuple[torch.Tensor, ...] | None = None
    temporal_hidden_states: tuple[torch.Tensor, ...] | None = None
    temporal_attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class HeroMomentRetrievalOutput(HeroRetrievalOutput):
    """Moment retrieval: [`HeroRetrievalOutput`] plus start / end logits of each query over its video's frames (B, F)."""

    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None


@dataclass
class HeroQuestionAnsweringOutput(ModelOutput):
    """Video QA: one logit per answer candidate (B, C), start / end logits over the frames (B, F) and ``loss``; the
    records of the cross-modal and temporal passes of every (video, candidate) pair (B * C rows)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None
    cross_modal_hidden_states: tuple[torch.Tensor, ...] | None = None
    cross_modal_attentions: tuple[torch.Tensor, ...] | None = None
    temporal_hidden_states: tuple[torch.Tensor, ...] | None = None
    temporal_attentions: tuple[torch.Tensor, ...] | None = None


class HeroPreTrainedModel(VLPreTrainedModel):
    """Base class of the HERO models: config class, weight prefix, modalities and layers kept on one device."""

    config: HeroConfig
    config_class = HeroConfig
    base_model_prefix = "hero"
    input_modalities = ("video", "text")
    _no_split_modules = ["TransformerLayer", "TextEmbeddings", "FrameEmbeddings"]
    # The position table numbers the tokens of each subtitle, not of the whole text (checked per subtitle).
    text_position_limit = None

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, HeroForPreTraining):
            init.zeros_(module.task_step)
        if isinstance(module, nn.Conv1d):  # the span predictors (e.g. a task head loaded from a HeroModel folder)
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))

    def record_flags(self, output_attentions: bool | None, output_hidden_states: bool | None) -> dict[str, bool]:
        """A forward call's recording switches (None: the config's defaults), as keyword arguments for the passes."""
        config = self.config
        return {
            "output_attentions": config.output_attentions if output_attentions is None else output_attentions,
            "output_hidden_states": config.output_hidden_states if output_hidden_states is None else output_hidden_states,
        }

    def text_stream_prefix(self) -> dict[str, str]:
        prefix = "" if self.base_model is self else f"{self.base_model_prefix}."
        return {"embeddings": f"{prefix}embeddings.", "layers": f"{prefix}cross_layers."}

    def encode_videos(
        self,
        frame_features: torch.Tensor, frame_attention_mask: torch.Tensor | None,
        subtitle_input_ids: torch.Tensor | None,
        text_subtitle_index: torch.Tensor | None, frame_subtitle_index: torch.Tensor | None,
        input_ids: torch.Tensor,
        **record: bool,
    ) -> tuple[torch.Tensor, StreamOutput, StreamOutput]:
        """Encode videos (with their subtitles when given) for the matching heads: the (B, F) frame mask, the
        cross-modal record and the temporal transformer's output (frame states B x F x H); ``record``: the
        ``output_attentions`` / ``output_hidden_states`` switches."""
        config = self.config
        batch, frames = frame_features.shape[:2]
        subtitles = subtitle_input_ids
        if subtitles is None:
            subtitles = input_ids.new_full((batch, 1), config.pad_token_id or 0)
            text_index = torch.full_like(subtitles, -1)  # (B, 1) no token in any subtitle
            frame_index = torch.full((batch, frames), -1, dtype=torch.long, device=input_ids.device)  # (B, F) none
        else:
            if text_subtitle_index is None or frame_subtitle_index is None:
                raise ValueError("subtitle_input_ids: pass text_subtitle_index and frame_subtitle_index with it")
            text_index, frame_index = text_subtitle_index, frame_subtitle_index
        _, _, frame_mask = prepare_hero_inputs(
            config, subtitles, None, None, frame_features, frame_attention_mask, text_index, frame_index
        )
        fused, _, cross = self.hero.fuse(
            input_ids=subtitles, text_index=text_index, frame_features=frame_features,
            frame_index=frame_index.masked_fill(frame_mask == 0, -1), **record,
        )
        return frame_mask, cross, self.hero.temporal(fused, frame_mask, **record)


class HeroFrameTransform(nn.Module):
    """The residual frame path: LayerNorm(D) -> dropout -> Linear(D, H) -> ReLU."""

    def __init__(self, config: HeroConfig):
        super().__init__()
        self.norm = nn.LayerNorm(config.frame_feature_size, eps=config.head_layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.proj = nn.Linear(config.frame_feature_size, config.hidden_size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.proj(self.dropout(self.norm(features))))


class HeroQueryEncoder(nn.Module):
    """``q_feat_attn``: LN -> dropout -> Linear -> ReLU, + positions -> LN, one self-attention block, attention pooling."""

    def __init__(self, config: HeroConfig):
        super().__init__()
        hidden, eps = config.hidden_size, config.head_layer_norm_eps
        self.input_norm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.input_proj = nn.Linear(hidden, hidden)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, hidden)
        self.position_norm = nn.LayerNorm(hidden, eps=eps)
        self.self_attention = SelfAttention(config)
        self.pool = nn.Linear(hidden, 1, bias=False)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.input_proj(self.dropout(self.input_norm(states))))
        positions = torch.arange(hidden.shape[1], device=hidden.device)[None, :]
        hidden = self.position_norm(hidden + self.position_embeddings(positions))
        implementation = self.self_attention.attention.config._attn_implementation
        hidden, _ = self.self_attention(hidden, key_padding_mask(mask, hidden.dtype, implementation))
        scores = _mask_to_minimum(self.pool(hidden).squeeze(-1), mask == 0)
        return (scores.softmax(-1).unsqueeze(-1) * hidden).sum(1)


def subtitle_attention(frame_index: torch.Tensor, text_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The release's per-subtitle runs as one sequence per video, [frames ; tokens], with static shapes.

    Returns the (B, F + T, F + T) attention mask (an item attends to the items of its own subtitle; an item in no
    subtitle attends to itself only, so that no row is empty, and its output is dropped) and the local positions:
    each frame's rank among its subtitle's frames (B, F) and each token's among its subtitle's tokens (B, T), as
    if every subtitle ran on its own (``model/encoder.py`` of linjieli222/HERO).
    """
    frames = frame_index.shape[1]
    subtitle = torch.cat([frame_index, text_index], 1)  # (B, N = F + T) item -> subtitle, -1: none
    items = subtitle.shape[1]
    same = (subtitle[:, :, None] == subtitle[:, None, :]) & (subtitle >= 0)[:, :, None]  # (B, N, N) query, key
    earlier = torch.ones(items, items, dtype=torch.bool, device=subtitle.device).tril(-1)  # (N, N) key before query
    before = same & earlier  # (B, N, N) earlier items of the query's subtitle
    frame_rank = before[:, :frames, :frames].sum(-1)  # (B, F) frames of the subtitle before this one
    token_rank = before[:, frames:, frames:].sum(-1)  # (B, T) tokens of the subtitle before this one
    itself = torch.eye(items, dtype=torch.bool, device=subtitle.device)  # (N, N)
    return same | itself, frame_rank, token_rank


class HeroModel(HeroPreTrainedModel):
    """The HERO encoder: cross-modal transformer per subtitle, hierarchical fusion and the temporal transformer.

    ``forward`` returns the temporal transformer's frame states (``visual_last_hidden_state``, B x F x H) and the
    cross-modal text states (``text_last_hidden_state``, B x T x H, zero for tokens removed from the input).
    """

    hub_auto_class = "AutoModel"
    # Frames use the text token-type table (HERO's ImageEmbeddings receives the text type embeddings): one table,
    # ``embeddings.token_type_embeddings``, passed to the frame embeddings (older exports may hold a copy).
    _keys_to_ignore_on_load_unexpected = [r"frame_embeddings\.token_type_embeddings\.weight"]

    def __init__(self, config: HeroConfig):
        super().__init__(config)
        eps = config.head_layer_norm_eps
        self.embeddings = TextEmbeddings(config, eps=config.embedding_layer_norm_eps)
        self.frame_embeddings = FrameEmbeddings(
            config.frame_feature_size, config.hidden_size, max_positions=config.max_frames, eps=eps,
            dropout=config.hidden_dropout_prob, input_norm_eps=eps,
        )
        self.frame_mask_embedding = nn.Embedding(2, config.frame_feature_size, padding_idx=0)
        self.cross_layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_cross_layers))
        self.frame_transform = HeroFrameTransform(config)
        self.residual_mask_embedding = nn.Embedding(2, config.frame_feature_size, padding_idx=0)
        self.temporal_position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.temporal_norm = nn.LayerNorm(config.hidden_size, eps=eps)
        self.temporal_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.temporal_layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_temporal_layers))
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def encode_text_only(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> StreamOutput:
        """The cross-modal transformer on text alone (VSM / retrieval queries): states (B, T, H)."""
        hidden = self.embeddings(input_ids, torch.ones_like(input_ids))
        return run_layers(
            self.cross_layers, hidden, key_padding_mask(attention_mask, hidden.dtype, self.config._attn_implementation),
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )

    def cross_modal(
        self,
        input_ids: torch.Tensor,
        text_index: torch.Tensor,
        frame_features: torch.Tensor,
        frame_index: torch.Tensor,
        masked_frames: torch.Tensor | None = None,
        output_attentions: bool = False, output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, StreamOutput]:
        """Run each subtitle with its aligned frames (:func:`subtitle_attention`); returns the frame outputs on the
        timeline (B, F, H, zero for unmatched frames), the token outputs (B, T, H, zero for tokens in no subtitle)
        and the record of the joint sequence (B, F + T, H). ``text_index`` (B, T) and ``frame_index`` (B, F) give
        each token's and frame's subtitle (-1: none)."""
        config = self.config
        frames = frame_index.shape[1]
        attend, frame_rank, token_rank = subtitle_attention(frame_index, text_index)
        features = frame_features
        if masked_frames is not None:
            features = features + self.frame_mask_embedding(masked_frames.long())
        frame_embeds = self.frame_embeddings(
            features, position_ids=frame_rank.clamp_max(config.max_frames - 1), token_type_ids=torch.ones_like(frame_index),
            token_type_embeddings=self.embeddings.token_type_embeddings,
        )
        # Subtitle lengths are checked eagerly; the clamp keeps a traced graph inside the position table.
        text_embeds = self.embeddings(
            input_ids, token_type_ids=torch.ones_like(input_ids),
            position_ids=token_rank.clamp_max(config.max_position_embeddings - 1),
        )
        record = run_layers(
            self.cross_layers, torch.cat([frame_embeds, text_embeds], 1), attend[:, None],
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )
        states = record.last_hidden_state
        matched = states[:, :frames].masked_fill((frame_index < 0)[..., None], 0.0)  # (B, F, H)
        text_states = states[:, frames:].masked_fill((text_index < 0)[..., None], 0.0)  # (B, T, H)
        return matched, text_states, record

    def temporal(
        self, fused: torch.Tensor, frame_mask: torch.Tensor, output_attentions: bool = False, output_hidden_states: bool = False
    ) -> StreamOutput:
        """Temporal transformer over the fused frame sequence: states (B, F, H)."""
        return run_layers(
            self.temporal_layers, self.temporal_inputs(fused),
            key_padding_mask(frame_mask, fused.dtype, self.config._attn_implementation),
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )

    def temporal_inputs(self, fused: torch.Tensor) -> torch.Tensor:
        """Fused frames (B, F, H) with the global frame positions, normalised: the temporal transformer's input."""
        positions = torch.arange(fused.shape[1], device=fused.device)[None, :]
        return self.temporal_dropout(self.temporal_norm(fused + self.temporal_position_embeddings(positions)))

    def fuse(
        self,
        input_ids: torch.Tensor,
        text_index: torch.Tensor,
        frame_features: torch.Tensor,
        frame_index: torch.Tensor,
        masked_frames: torch.Tensor | None = None,
        output_attentions: bool = False, output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, StreamOutput]:
        """Cross-modal stage plus the residual frame path: fused frames (B, F, H), cross-modal text states (B, T, H)
        and the cross-modal record."""
        matched, text_states, record = self.cross_modal(
            input_ids, text_index, frame_features, frame_index, masked_frames,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )
        residual = frame_features
        if masked_frames is not None:
            residual = residual + self.residual_mask_embedding(masked_frames.long())
        return self.frame_transform(residual) + matched, text_states, record

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        frame_features: torch.Tensor | None = None, frame_attention_mask: torch.Tensor | None = None,
        text_subtitle_index: torch.Tensor | None = None, frame_subtitle_index: torch.Tensor | None = None,
        output_attentions: bool | None = None, output_hidden_states: bool | None = None,
    ) -> HeroModelOutput:
        """Encode videos with their subtitles (see the module docstring for the input layout)."""
        text_index, frame_index, frame_mask = prepare_hero_inputs(
            self.config, input_ids, attention_mask, token_type_ids, frame_features, frame_attention_mask,
            text_subtitle_index, frame_subtitle_index,
        )
        record = self.record_flags(output_attentions, output_hidden_states)
        fused, text_states, cross = self.fuse(input_ids, text_index, frame_features, frame_index, **record)
        temporal = self.temporal(fused, frame_mask, **record)
        frames = temporal.last_hidden_state
        return HeroModelOutput(
            text_last_hidden_state=text_states, visual_last_hidden_state=frames,
            visual_embeds=masked_mean(frames, frame_mask), cross_modal_hidden_states=cross.hidden_states,
            cross_modal_attentions=cross.attentions, temporal_hidden_states=temporal.hidden_states,
            temporal_attentions=temporal.attentions,
        )


def _mask_to_minimum(scores: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """``scores`` with the masked entries at the lowest value of *their own* dtype (under autocast a head's output
    can be bfloat16 while its input is float32)."""
    return scores.masked_fill(masked, torch.finfo(scores.dtype).min)


def prepare_hero_inputs(
    config: HeroConfig,
    input_ids: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    token_type_ids: torch.Tensor | None,
    frame_features: torch.Tensor | None,
    frame_attention_mask: torch.Tensor | None,
    text_subtitle_index: torch.Tensor | None,
    frame_subtitle_index: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check the inputs (``ValueError`` before any compute) and return (token subtitle index, frame subtitle index,
    frame mask), with -1 for padding and unmatched items. Without indices, the text is one subtitle over all frames."""
    check_video_text_inputs(
        config, input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
        frame_features=frame_features, frame_attention_mask=frame_attention_mask, max_frames=config.max_frames,
    )
    text_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
    frame_mask = (
        torch.ones(frame_features.shape[:2], dtype=torch.long, device=frame_features.device)
        if frame_attention_mask is None
        else frame_attention_mask
    )
    for name, tensor, shape in (
        ("text_subtitle_index", text_subtitle_index, tuple(input_ids.shape)),
        ("frame_subtitle_index", frame_subtitle_index, tuple(frame_features.shape[:2])),
    ):
        if tensor is not None and (tuple(tensor.shape) != shape or tensor.is_floating_point()):
            raise ValueError(f"{name}: expected an integer tensor of shape {shape} (-1 = none), got {tuple(tensor.shape)} {tensor.dtype}")
    if (text_subtitle_index is None) != (frame_subtitle_index is None):
        raise ValueError("text_subtitle_index and frame_subtitle_index: pass both (from the processor) or neither")
    if text_subtitle_index is None:
        text_index = torch.where(text_mask.bool(), 0, -1)  # (B, T) token -> subtitle: the whole text is subtitle 0
        frame_index = torch.where(frame_mask.bool(), 0, -1)  # (B, F) frame -> subtitle: every valid frame shows it
    else:
        eager = not torch.compiler.is_compiling()  # the value checks read the tensors: eager calls only
        if eager and bool((text_subtitle_index < -1).any() or (frame_subtitle_index < -1).any()):
            raise ValueError("text_subtitle_index / frame_subtitle_index: expected subtitle numbers >= 0, or -1 for none")
        text_index = text_subtitle_index.masked_fill(text_mask == 0, -1)  # (B, T) token -> subtitle, -1: none
        frame_index = frame_subtitle_index.masked_fill(frame_mask == 0, -1)  # (B, F) frame -> subtitle, -1: none
    if not torch.compiler.is_compiling():
        _check_subtitle_lengths(config, text_index)
    return text_index, frame_index, frame_mask


def _check_subtitle_lengths(config: HeroConfig, text_index: torch.Tensor) -> None:
    """Each subtitle's tokens take text positions 0..L-1 in its cross-modal run: L must fit the position table."""
    segments = int(text_index.max()) + 1
    if segments <= 0:
        return
    rows = torch.arange(text_index.shape[0], device=text_index.device)[:, None].expand_as(text_index)
    valid = text_index >= 0
    longest = int(torch.bincount(rows[valid] * segments + text_index[valid]).max())
    if longest > config.max_position_embeddings:
        raise ValueError(
            f"input_ids: a subtitle has {longest} tokens, more than max_position_embeddings "
            f"({config.max_position_embeddings}); truncate each subtitle (the processor's max_subtitle_length)"
        )


def _unshuffle(values: torch.Tensor, order: torch.Tensor | None) -> torch.Tensor:
    """Undo the collator's frame shuffle: ``order`` (B, F) holds the original index of the item now at each position
    (-100: not shuffled); the shuffled positions are a permutation of themselves (``FrameShuffler``)."""
    if order is None:
        return values
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)  # (B, F)
    home = torch.where(order >= 0, order, positions)  # (B, F) where the item at each position came from
    return values.scatter(1, home.view(*home.shape, *[1] * (values.dim() - 2)).expand_as(values), values)


def _shuffle(values: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Apply the collator's frame shuffle ``order`` (B, F) to values in the original order."""
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)  # (B, F)
    source = torch.where(order >= 0, order, positions)  # (B, F) original index of the item shown at each position
    return values.gather(1, source.view(*source.shape, *[1] * (values.dim() - 2)).expand_as(values))


class HeroFramePredictionHead(nn.Module):
    """``feat_regress``: Linear(H, H) -> GELU -> LN -> Linear(H, D)."""

    def __init__(self, config: HeroConfig):
        super().__init__()
        self.transform = PredictionHeadTransform(config.hidden_size, activation="gelu", eps=config.head_layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.frame_feature_size)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(states))


class HeroMatchingHeads(nn.Module):
    """VSM / moment-retrieval heads: query encoder, ``video_query_linear`` and the start / end Conv1d predictors."""

    def __init__(self, config: HeroConfig):
        super().__init__()
        self.query_encoder = HeroQueryEncoder(config)
        self.video_query_linear = nn.Linear(config.hidden_size, config.hidden_size)
        self.start_predictor = nn.Conv1d(1, 1, kernel_size=5, padding=2, bias=False)
        self.end_predictor = nn.Conv1d(1, 1, kernel_size=5, padding=2, bias=False)

    def span_logits(self, queries: torch.Tensor, frames: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Start / end logits (Q, F) of each query over its own video's frames (``frames`` already gathered, Q x F x H)."""
        similarity = torch.einsum("qh,qfh->qf", self.video_query_linear(queries), frames).unsqueeze(1)
        start = _mask_to_minimum(self.start_predictor(similarity).squeeze(1), frame_mask == 0)
        end = _mask_to_minimum(self.end_predictor(similarity).squeeze(1), frame_mask == 0)
        return start, end


def video_scores(queries: torch.Tensor, frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    """Global score (Q, V): max over each video's valid frames of the cosine between the query and the frame."""
    query = nn.functional.normalize(queries.float(), dim=-1, eps=1e-5)
    frame = nn.functional.normalize(frames.float(), dim=-1, eps=1e-5)
    cosine = torch.einsum("qh,vfh->qvf", query, frame).masked_fill(frame_mask[None] == 0, -2.0)
    return cosine.max(-1).values


def paired_video_scores(queries: torch.Tensor, frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    """:func:`video_scores` of row-aligned pairs only: (B,) scores of query b against video b."""
    query = nn.functional.normalize(queries.float(), dim=-1, eps=1e-5)
    frame = nn.functional.normalize(frames.float(), dim=-1, eps=1e-5)
    return torch.einsum("bh,bfh->bf", query, frame).masked_fill(frame_mask == 0, -2.0).max(-1).values


def hinge_ranking_loss(
    scores: torch.Tensor,
    owner: torch.Tensor,
    margin: float,
    video_weight: float,
    query_weight: float,
    hard_pool_size: int | None = None,
    hard_weight: float = 1.0,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """HERO's global VSM loss on (Q, V) scores, ``owner[q]`` = the video of query q: query against every negative video
    and video against every negative query (queries of other videos), hinge with ``margin``, averaged, weighted.

    With ``hard_pool_size``, each query's ``hard_pool_size`` highest-scoring negative videos (and each positive pair's
    highest-scoring negative queries) weigh ``hard_weight`` and the other negatives 0.1 (``model/pretrain.py``).
    ``valid`` (Q,) leaves the queries where it is False out of the loss (static shapes: a fixed number of queries)."""
    rows = torch.arange(scores.shape[0], device=scores.device)
    positive = scores[rows, owner]  # (Q,)
    negative_video = torch.ones_like(scores, dtype=torch.bool)  # (Q, V)
    negative_video[rows, owner] = False
    video_losses = nn.functional.relu(margin + scores - positive[:, None])
    own_scores = scores[:, owner].T  # own_scores[q, q'] = score(q', video of q)
    negative_query = owner[:, None] != owner[None, :]  # (Q, Q)
    if valid is not None:
        negative_video = negative_video & valid[:, None]
        negative_query = negative_query & valid[:, None] & valid[None, :]
    query_losses = nn.functional.relu(margin + own_scores - positive[:, None])
    video_term = _negative_mean(video_losses, scores, negative_video, hard_pool_size, hard_weight)
    query_term = _negative_mean(query_losses, own_scores, negative_query, hard_pool_size, hard_weight)
    return video_weight * video_term + query_weight * query_term


def _negative_mean(
    losses: torch.Tensor, scores: torch.Tensor, negative: torch.Tensor, hard_pool_size: int | None, hard_weight: float
) -> torch.Tensor:
    """Mean of ``losses`` over the ``negative`` entries; with ``hard_pool_size``, each row's negatives ranked by score
    weigh ``hard_weight`` (the top ``hard_pool_size``) or 0.1 (the rest). Zero (with gradient) when none."""
    weights = negative.to(losses.dtype)
    if hard_pool_size is not None:
        order = scores.detach().masked_fill(~negative, float("-inf")).argsort(dim=1, descending=True)
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
        weights = weights * torch.where(rank < hard_pool_size, hard_weight, 0.1).to(losses.dtype)
    return (losses * weights).sum() / negative.sum().clamp_min(1)


class HeroForPreTraining(HeroPreTrainedModel):
    """HERO with its four pretraining objectives, one sampled per training step (see ``HeroConfig.sample_tasks``).

    Batches come from the collator: ``labels`` (MLM), ``masked_frames`` + ``frame_feature_targets`` (masked frame
    modelling: NCE or regression), ``frame_order_labels`` (frame order) and, for VSM, nothing extra: the queries are
    ``vsm_queries_per_video`` subtitles with aligned frames of each video (:func:`select_vsm_queries`), removed from
    its cross-modal input (only their first token, the separator, stays), started with ``bos_token_id`` as
    queries, with start / end at their first / last aligned frame; hard negatives from
    ``vsm_hard_negative_start_step`` on. Each objective runs on its own view of the
    batch (the other objectives' corruptions undone): MLM on masked text and clean frames, MFM on clean text and
    masked frames, FOM and VSM on clean inputs.

    Task sampling works with the HF Trainer and multi-process training: the draw uses a generator seeded by
    (``task_seed``, ``task_step``), where ``task_step`` is a buffer counting training forward passes; every process
    runs the same number of forward passes, so all draw the same task, and the buffer is saved with checkpoints, so a
    resumed run continues the sequence. Distributed data parallel needs ``ddp_find_unused_parameters=True`` (each
    step leaves the other objectives' heads unused).
    """

    hub_auto_class = "AutoModelForPreTraining"
    _tied_weights_keys = {
        "mlm_head.decoder.weight": "hero.embeddings.word_embeddings.weight",
    }

    def __init__(self, config: HeroConfig):
        super().__init__(config)
        self.hero = HeroModel(config)
        eps = config.head_layer_norm_eps
        self.mlm_head = MaskedLanguageModelingHead(config.hidden_size, config.vocab_size, activation="gelu", eps=eps)
        self.frame_head = HeroFramePredictionHead(config)
        self.frame_order_head = AnswerHead(config.hidden_size, config.max_frames, eps=eps)
        self.matching_heads = HeroMatchingHeads(config)
        self.register_buffer("task_step", torch.zeros((), dtype=torch.long))
        self.post_init()

    def sample_task(self, step: int) -> str:
        """The objective of training forward pass ``step`` (the same on every process)."""
        names = [name for name in HERO_OBJECTIVES if self.config.objective_enabled(name) and self.config.task_ratios[name] > 0]
        ratios = torch.tensor([self.config.task_ratios[name] for name in names], dtype=torch.float64)
        generator = torch.Generator().manual_seed(self.config.task_seed * 1_000_003 + step)
        return names[int(torch.multinomial(ratios, 1, generator=generator))]

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        frame_features: torch.Tensor | None = None, frame_attention_mask: torch.Tensor | None = None,
        text_subtitle_index: torch.Tensor | None = None, frame_subtitle_index: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        masked_frames: torch.Tensor | None = None,
        frame_feature_targets: torch.Tensor | None = None,
        frame_order_labels: torch.Tensor | None = None,
        task: str | None = None,
        output_attentions: bool | None = None, output_hidden_states: bool | None = None,
    ) -> HeroForPreTrainingOutput:
        """``task`` forces one objective (e.g. for tests); by default see the class docstring."""
        config = self.config
        text_index, frame_index, frame_mask = prepare_hero_inputs(
            config, input_ids, attention_mask, token_type_ids, frame_features, frame_attention_mask,
            text_subtitle_index, frame_subtitle_index,
        )
        batch, frames = frame_mask.shape
        for name, tensor, shape in (
            ("labels", labels, tuple(input_ids.shape)), ("masked_frames", masked_frames, (batch, frames)),
            ("frame_feature_targets", frame_feature_targets, tuple(frame_features.shape)),
            ("frame_order_labels", frame_order_labels, (batch, frames)),
        ):
            if tensor is not None and tuple(tensor.shape) != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {tuple(tensor.shape)}")
        eager = not torch.compiler.is_compiling()  # the value check reads the tensor: eager calls only
        if eager and frame_order_labels is not None and bool((frame_order_labels >= frames).any()):
            raise ValueError(f"frame_order_labels: expected original frame indices < {frames} or -100")
        if task is not None and task not in HERO_OBJECTIVES:
            raise ValueError(f"task: expected one of {list(HERO_OBJECTIVES)}, got {task!r}")
        step = self.task_step.clone()  # training forward passes before this one
        if task is None and self.training and config.sample_tasks:
            task = self.sample_task(int(step))
        if self.training:
            self.task_step += 1
        tasks = [task] if task is not None else [name for name in HERO_OBJECTIVES if config.objective_enabled(name)]
        record = self.record_flags(output_attentions, output_hidden_states)

        clean_ids = input_ids if labels is None else torch.where(labels != IGNORE_INDEX, labels, input_ids)
        shuffled_clean = frame_features if frame_feature_targets is None else frame_feature_targets
        clean_frames = _unshuffle(shuffled_clean, frame_order_labels)
        # The rows every objective of the step predicts, found with one device sync (flat indices into B x T / B x F).
        selections = {}
        if "mlm" in tasks and labels is not None:
            selections["mlm"] = labels != IGNORE_INDEX  # (B, T)
        if "frame_feature" in tasks and masked_frames is not None:
            masked = _unshuffle(masked_frames, frame_order_labels) & frame_mask.bool()  # (B, F) in the original order
            selections["masked"], selections["unmasked"] = masked, frame_mask.bool() & ~masked
        if "frame_order" in tasks and frame_order_labels is not None:
            selections["frame_order"] = frame_order_labels != IGNORE_INDEX  # (B, F)
        rows = dict(zip(selections, select_rows(*selections.values()), strict=True))
        losses: dict[str, torch.Tensor] = {}
        passes: list[tuple[StreamOutput, StreamOutput | None]] = []  # (cross-modal, temporal) of each pass
        if "mlm" in rows:
            _, text_states, cross = self.hero.fuse(input_ids, text_index, clean_frames, frame_index, **record)
            logits = self.mlm_head(text_states, rows["mlm"])
            losses["mlm"] = classification_loss(logits, labels.flatten().index_select(0, rows["mlm"]))
            passes.append((cross, None))
        if "masked" in rows:
            corrupted = _unshuffle(frame_features, frame_order_labels)
            fused, _, cross = self.hero.fuse(clean_ids, text_index, corrupted, frame_index, masked, **record)
            temporal = self.hero.temporal(fused, frame_mask, **record)
            losses["frame_feature"] = self._frame_feature_loss(
                temporal.last_hidden_state, clean_frames, rows["masked"], rows["unmasked"]
            )
            passes.append((cross, temporal))
        if "frame_order" in rows:
            fused, _, cross = self.hero.fuse(clean_ids, text_index, clean_frames, frame_index, **record)
            temporal = self.hero.temporal(_shuffle(fused, frame_order_labels), frame_mask, **record)
            logits = self.frame_order_head(temporal.last_hidden_state.flatten(0, 1).index_select(0, rows["frame_order"]))
            losses["frame_order"] = classification_loss(logits, frame_order_labels.flatten().index_select(0, rows["frame_order"]))
            passes.append((cross, temporal))
        if "vsm" in tasks:
            losses["vsm"], cross, temporal = self._vsm_loss(clean_ids, text_index, clean_frames, frame_index, frame_mask, step, record)
            passes.append((cross, temporal))

        loss = sum(config.loss_weights[name] * value for name, value in losses.items()) if losses else None

        def gathered(stage: int, field: str) -> tuple[tuple[torch.Tensor, ...], ...] | None:
            values = tuple(getattr(run[stage], field) for run in passes if run[stage] is not None)
            return values if values and values[0] is not None else None

        return HeroForPreTrainingOutput(
            loss=loss, mlm_loss=losses.get("mlm"), frame_feature_loss=losses.get("frame_feature"),
            frame_order_loss=losses.get("frame_order"), vsm_loss=losses.get("vsm"),
            task=torch.tensor(HERO_OBJECTIVES.index(task) if task is not None else -1, device=frame_features.device),
            cross_modal_hidden_states=gathered(0, "hidden_states"), cross_modal_attentions=gathered(0, "attentions"),
            temporal_hidden_states=gathered(1, "hidden_states"), temporal_attentions=gathered(1, "attentions"),
        )

    def _frame_feature_loss(
        self, states: torch.Tensor, targets: torch.Tensor, masked_rows: torch.Tensor, unmasked_rows: torch.Tensor
    ) -> torch.Tensor:
        """Masked frame modelling on the temporal states (B, F, H): regression or NCE against the clean ``targets``
        (B, F, D), ``masked_rows`` / ``unmasked_rows`` flat indices into B x F."""
        predictions = self.frame_head(states).flatten(0, 1)  # (B * F, D)
        if masked_rows.shape[0] == 0:
            return predictions.sum() * 0.0
        masked_predictions = predictions.index_select(0, masked_rows).float()
        masked_targets = targets.flatten(0, 1).index_select(0, masked_rows).float()
        if self.config.frame_feature_loss_type == "regression":
            return (masked_predictions - masked_targets).pow(2).sum(-1).sqrt().mean()
        unmasked = predictions.index_select(0, unmasked_rows).float()
        logits = torch.cat([masked_predictions @ masked_targets.T, masked_predictions @ unmasked.T], dim=1)
        targets_index = torch.arange(logits.shape[0], device=logits.device)
        return nn.functional.cross_entropy(logits / self.config.nce_temperature, targets_index)

    def _vsm_loss(
        self,
        input_ids: torch.Tensor,
        text_index: torch.Tensor,
        frame_features: torch.Tensor,
        frame_index: torch.Tensor,
        frame_mask: torch.Tensor,
        step: torch.Tensor,
        record: dict[str, bool],
    ) -> tuple[torch.Tensor, StreamOutput, StreamOutput]:
        """Video-subtitle matching with static shapes: ``vsm_queries_per_video`` query slots per video (P), those of
        a video without a subtitle to query left out of the loss. Returns the loss and the video pass's records."""
        config = self.config
        per_video = config.vsm_queries_per_video
        seed = self.task_step + (config.task_seed * 1_000_003 + 7919)
        subtitles, has_query = select_vsm_queries(text_index, frame_index, per_video, seed)  # (B, P), (B,)
        batch, length = input_ids.shape
        owner = torch.arange(batch, device=input_ids.device).repeat_interleave(per_video)  # (Q = B * P,) query -> video
        query_subtitle, valid = subtitles.flatten(), has_query.repeat_interleave(per_video)  # (Q,), (Q,)
        tokens = (text_index[owner] == query_subtitle[:, None]) & valid[:, None]  # (Q, T) the query's subtitle tokens
        width = min(length, config.max_position_embeddings)
        slot = torch.where(tokens, tokens.long().cumsum(1) - 1, width)  # (Q, T) place in the query; width: spare
        query_ids = input_ids.new_full((len(owner), width + 1), config.pad_token_id or 0)
        query_ids = query_ids.scatter(1, slot, input_ids[owner])[:, :width]  # (Q, W)
        query_mask = tokens.new_zeros(len(owner), width + 1).scatter(1, slot, tokens)[:, :width].long()  # (Q, W)
        # The first token: bos_token_id; kept for every query so that none has an empty mask (left-out queries).
        query_mask[:, 0] = 1
        if config.bos_token_id is not None:
            query_ids[:, 0] = config.bos_token_id
        earlier = torch.ones(length, length, dtype=torch.bool, device=text_index.device).tril(-1)  # (T, T)
        not_first = ((text_index[:, :, None] == text_index[:, None, :]) & earlier).any(-1)  # (B, T) not a subtitle's 1st
        queried = ((text_index[:, :, None] == subtitles[:, None, :]) & has_query[:, None, None]).any(-1)  # (B, T)
        kept_index = text_index.masked_fill(queried & not_first, -1)  # (B, T) queries leave only their separator
        aligned = (frame_index[owner] == query_subtitle[:, None]) & valid[:, None]  # (Q, F) the query's frames
        positions = torch.arange(frame_index.shape[1], device=frame_index.device)
        first = torch.where(aligned, positions, frame_index.shape[1]).min(1).values  # (Q,)
        last = torch.where(aligned, positions, -1).max(1).values  # (Q,)
        last_valid = frame_mask[owner].sum(1) - 1  # (Q,)
        starts = torch.where(valid, first, IGNORE_INDEX)
        ends = torch.where(valid, torch.minimum(torch.maximum(first + 1, last), last_valid), IGNORE_INDEX)

        query_states = self.hero.encode_text_only(query_ids, query_mask).last_hidden_state
        query_vectors = self.matching_heads.query_encoder(query_states, query_mask)  # (Q, H)
        fused, _, cross = self.hero.fuse(input_ids, kept_index, frame_features, frame_index, **record)
        temporal = self.hero.temporal(fused, frame_mask, **record)
        frames = temporal.last_hidden_state
        scores = video_scores(query_vectors, frames, frame_mask)  # (Q, B)
        weights = (config.vsm_margin, config.vsm_negative_video_weight, config.vsm_negative_query_weight)
        loss = hinge_ranking_loss(scores, owner, *weights, valid=valid)
        start_step = config.vsm_hard_negative_start_step
        if start_step is not None:
            hard = hinge_ranking_loss(
                scores, owner, *weights, config.vsm_hard_negative_pool_size, config.vsm_hard_negative_weight, valid=valid
            )
            loss = torch.where(step >= start_step, hard, loss)
        use_span = True
        if self.training:  # the span term is drawn per training step, the same on every process
            generator = torch.Generator().manual_seed(int(seed))
            use_span = float(torch.rand((), generator=generator)) < config.vsm_span_probability
        if use_span:
            start_logits, end_logits = self.matching_heads.span_logits(query_vectors, frames[owner], frame_mask[owner])
            span = classification_loss(start_logits, starts) + classification_loss(end_logits, ends)
            loss = loss + config.vsm_span_weight * span
        return loss, cross, temporal


def _hashed_integers(seed: torch.Tensor, *coordinates: torch.Tensor) -> torch.Tensor:
    """Pseudo-random integers in [0, 2**31) hashed from an integer ``seed`` tensor and integer ``coordinates``
    (broadcast): a draw with static shapes and no host sync that every process repeats exactly."""
    state = seed.long() % 2**31
    for value in coordinates:
        state = (state * 1103515245 + 12345 + value.long() % 2**31) % 2**31
        for _ in range(3):
            state = state ^ (state >> 13)
            state = (state * 1103515245 + 12345) % 2**31
    return state


def select_vsm_queries(
    text_index: torch.Tensor, frame_index: torch.Tensor, per_video: int, seed: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The VSM query subtitles, as ``data/vsm.py`` picks them: per video, ``per_video`` subtitles drawn without
    replacement among those with tokens and at least one aligned frame (``frame_index``, -1 for unmatched and padded
    frames), in timeline order, then the last one repeated up to ``per_video``. Returns the subtitle numbers
    (B, per_video) and whether the video has any such subtitle (B,); the draw ranks the candidates by keys hashed
    from (``seed``, video, subtitle number)."""
    batch, length = text_index.shape
    earlier = torch.ones(length, length, dtype=torch.bool, device=text_index.device).tril(-1)  # (T, T)
    repeated = ((text_index[:, :, None] == text_index[:, None, :]) & earlier).any(-1)  # (B, T) not a subtitle's 1st
    with_frames = (text_index[:, :, None] == frame_index[:, None, :]).any(-1)  # (B, T) its subtitle has a frame
    candidate = (text_index >= 0) & ~repeated & with_frames  # (B, T) the first token of each candidate subtitle
    videos = torch.arange(batch, device=text_index.device)[:, None]
    keys = torch.where(candidate, _hashed_integers(seed, videos, text_index), -1)  # (B, T)
    drawn = keys.topk(min(per_video, length), dim=1)  # (B, D) the largest keys: a draw without replacement
    taken = drawn.values >= 0  # (B, D)
    numbers = text_index.gather(1, drawn.indices)  # (B, D) their subtitle numbers
    ordered = torch.where(taken, numbers, torch.iinfo(numbers.dtype).max).sort(1).values  # (B, D) timeline order
    count = taken.sum(1)  # (B,)
    repeat_last = torch.minimum(torch.arange(per_video, device=count.device)[None], (count - 1).clamp_min(0)[:, None])
    chosen = ordered.gather(1, repeat_last)  # (B, P)
    return torch.where((count > 0)[:, None], chosen, -1), count > 0


class HeroTwoStageScoring:
    """Two-stage retrieval on [`HeroForVideoTextRetrieval`], which is a dual encoder: a query is encoded by the
    query encoder alone (cached as a one-token state) and a video by the cross-modal and temporal transformers over
    its frames alone (cached frame states; videos are indexed without subtitles, as ``forward`` encodes them when
    none are passed). The second stage is the model's own score, the max over frames of the cosine; the first stage
    compares the query with the L2-normalised mean of the video's L2-normalised frame states (the mean cosine over
    frames, a lower bound of the max).
    """

    def encode_text_for_retrieval(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None
    ) -> UnimodalEncoding:
        """Query vectors (batch, 1, hidden) with a mask of ones and their normalised embeddings."""
        queries, _ = self.encode_queries(input_ids, retrieval_text_mask(input_ids, attention_mask))
        mask = torch.ones(queries.shape[0], 1, dtype=torch.long, device=queries.device)
        return UnimodalEncoding(states=queries[:, None], mask=mask, embeddings=nn.functional.normalize(queries.float(), dim=-1, eps=1e-5))

    def encode_visual_for_retrieval(
        self, frame_features: torch.Tensor, frame_attention_mask: torch.Tensor | None = None
    ) -> UnimodalEncoding:
        """Temporal frame states, frame mask and normalised mean-of-frames embeddings of a batch of videos."""
        placeholder_text = retrieval_placeholder_text(
            frame_features, name="frame_features", items="frames", feature_size=self.config.frame_feature_size
        )
        frame_mask, _, temporal = self.encode_videos(frame_features, frame_attention_mask, None, None, None, placeholder_text)
        states = temporal.last_hidden_state
        unit_frames = nn.functional.normalize(states.float(), dim=-1, eps=1e-5)
        embeddings = nn.functional.normalize(masked_mean(unit_frames, frame_mask), dim=-1)
        return UnimodalEncoding(states=states, mask=frame_mask, embeddings=embeddings)

    def score_encoded_pairs(self, text: UnimodalEncoding, visual: UnimodalEncoding) -> torch.Tensor:
        """Max-over-frames cosine of row-aligned (query, video) cached encodings, as ``forward``'s ``logits``."""
        return paired_video_scores(text.states[:, 0], visual.states, visual.mask)


class HeroForVideoTextRetrieval(HeroTwoStageScoring, HeroPreTrainedModel):
    """Text-to-video retrieval (``HeroForVr``): query text (``input_ids``) encoded as in VSM, scored against every video
    of the batch by the max over frames of the cosine; ``logits`` (B queries, B videos). Videos are encoded from their
    frames (and their subtitles, passed as ``subtitle_input_ids`` with the index tensors, when available). The loss
    (``return_loss`` or ``labels``) is the hinge ranking loss with weights 10 / 10 and margin ``vsm_margin``."""

    hub_auto_class = "AutoModelForSequenceClassification"

    def __init__(self, config: HeroConfig):
        super().__init__(config)
        self.hero = HeroModel(config)
        self.matching_heads = HeroMatchingHeads(config)
        self.post_init()

    def encode_queries(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, StreamOutput]:
        """Query vectors (B, H) and the record of the queries' cross-modal pass."""
        if input_ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(
                f"input_ids: {input_ids.shape[1]} query tokens, more than max_position_embeddings ({self.config.max_position_embeddings})"
            )
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        text = self.hero.encode_text_only(
            input_ids, mask, output_attentions=output_attentions, output_hidden_states=output_hidden_states
        )
        return self.matching_heads.query_encoder(text.last_hidden_state, mask), text

    def score_batch(
        self,
        input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None, token_type_ids: torch.Tensor | None,
        frame_features: torch.Tensor | None, frame_attention_mask: torch.Tensor | None,
        subtitles: tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None],
        targets: dict[str, torch.Tensor | None],
        record: dict[str, bool],
    ) -> tuple[dict[str, torch.Tensor | tuple | None], torch.Tensor, torch.Tensor]:
        """Check the inputs and the (B,) ``targets`` (``labels``: match labels; others: frame indices), encode queries
        and videos (``subtitles``: ``subtitle_input_ids``, ``text_subtitle_index``, ``frame_subtitle_index``) and
        score every pair: the retrieval output's fields but the loss, the frame states (B, F, H) and the frame mask."""
        config = self.config
        check_video_text_inputs(
            config, input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            frame_features=frame_features, frame_attention_mask=frame_attention_mask, max_frames=config.max_frames,
        )
        batch = input_ids.shape[0]
        check_match_labels(targets.pop("labels", None), batch)
        for name, tensor in targets.items():
            if tensor is not None and (tensor.is_floating_point() or tuple(tensor.shape) != (batch,)):
                raise ValueError(f"{name}: expected frame indices of shape ({batch},) and integer dtype")
        frame_mask, cross, temporal = self.encode_videos(frame_features, frame_attention_mask, *subtitles, input_ids, **record)
        states = temporal.last_hidden_state
        queries, query = self.encode_queries(input_ids, attention_mask, **record)
        fields = dict(
            logits=video_scores(queries, states, frame_mask), text_embeds=queries, visual_embeds=masked_mean(states, frame_mask),
            query_hidden_states=query.hidden_states, query_attentions=query.attentions,
            cross_modal_hidden_states=cross.hidden_states, cross_modal_attentions=cross.attentions,
            temporal_hidden_states=temporal.hidden_states, temporal_attentions=temporal.attentions,
        )
        return fields, states, frame_mask

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        frame_features: torch.Tensor | None = None, frame_attention_mask: torch.Tensor | None = None,
        subtitle_input_ids: torch.Tensor | None = None,
        text_subtitle_index: torch.Tensor | None = None, frame_subtitle_index: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_loss: bool = False,
        output_attentions: bool | None = None, output_hidden_states: bool | None = None,
    ) -> HeroRetrievalOutput:
        fields, _, _ = self.score_batch(
            input_ids, attention_mask, token_type_ids, frame_features, frame_attention_mask,
            (subtitle_input_ids, text_subtitle_index, frame_subtitle_index), {"labels": labels},
            self.record_flags(output_attentions, output_hidden_states),
        )
        loss = None
        if return_loss or labels is not None:
            logits = fields["logits"]
            keep = torch.ones(logits.shape[0], dtype=torch.bool, device=logits.device) if labels is None else labels == 1
            matched = logits[keep][:, keep]
            owner = torch.arange(matched.shape[0], device=logits.device)
            loss = hinge_ranking_loss(matched, owner, self.config.vsm_margin, 10.0, 10.0)
        return HeroRetrievalOutput(loss=loss, **fields)


class HeroForVideoMomentRetrieval(HeroForVideoTextRetrieval):
    """Video corpus moment retrieval (``HeroForVcmr``): the global scores of [`HeroForVideoTextRetrieval`] plus start /
    end logits of each query over its own video's frames. ``start_positions`` / ``end_positions`` (B,) add
    ``vsm_span_weight`` x the sum of the start and end cross-entropies (``model/pretrain.py``) to the ranking loss
    (8 / 8)."""

    hub_auto_class = None

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        frame_features: torch.Tensor | None = None, frame_attention_mask: torch.Tensor | None = None,
        subtitle_input_ids: torch.Tensor | None = None,
        text_subtitle_index: torch.Tensor | None = None, frame_subtitle_index: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        output_attentions: bool | None = None, output_hidden_states: bool | None = None,
    ) -> HeroMomentRetrievalOutput:
        fields, states, frame_mask = self.score_batch(
            input_ids, attention_mask, token_type_ids, frame_features, frame_attention_mask,
            (subtitle_input_ids, text_subtitle_index, frame_subtitle_index),
            {"start_positions": start_positions, "end_positions": end_positions},
            self.record_flags(output_attentions, output_hidden_states),
        )
        start_logits, end_logits = self.matching_heads.span_logits(fields["text_embeds"], states, frame_mask)
        loss = None
        if start_positions is not None and end_positions is not None:
            owner = torch.arange(states.shape[0], device=states.device)
            span = classification_loss(start_logits, start_positions) + classification_loss(end_logits, end_positions)
            loss = hinge_ranking_loss(fields["logits"], owner, self.config.vsm_margin, 8.0, 8.0) + self.config.vsm_span_weight * span
        return HeroMomentRetrievalOutput(loss=loss, start_logits=start_logits, end_logits=end_logits, **fields)


class HeroForVideoQuestionAnswering(HeroPreTrainedModel):
    """Multiple-choice video QA with temporal localisation (``HeroForVideoQA``, TVQA / How2QA).

    ``input_ids`` (B, C, T) holds each candidate's ``</s> q </s> a`` (any tokenizer's ``[CLS] q [SEP] a [SEP]``).
    Each candidate is appended to every subtitle of the cross-modal input (``subtitle_input_ids`` with the index
    tensors; without subtitles the candidate is one subtitle over all frames), so every (video, candidate) pair is
    fused on its own. The fused frames get the temporal positions, are concatenated with the candidate's text
    embeddings and go through the temporal layers; the frame part is kept (B, C, F, H). ``qa_pool`` attends over the
    frames of each candidate -> ``qa_head`` (H -> 2H -> 1) gives ``logits`` (B, C); ``span_pool`` attends over the
    candidates at each frame -> ``span_head`` (H -> 2H -> 2) gives ``start_logits`` / ``end_logits`` (B, F), padded
    frames at the dtype minimum. Loss: cross-entropy over the candidates with ``labels`` (B,) plus
    ``config.qa_span_weight`` (0.4) x the mean start / end cross-entropy with ``start_positions`` / ``end_positions``
    (B,) frame indices (-100: no span annotation).
    """

    hub_auto_class = "AutoModelForMultipleChoice"

    def __init__(self, config: HeroConfig):
        super().__init__(config)
        self.hero = HeroModel(config)
        eps = config.head_layer_norm_eps
        self.qa_pool = nn.Linear(config.hidden_size, 1, bias=False)
        self.qa_head = AnswerHead(config.hidden_size, 1, eps=eps)
        self.span_pool = nn.Linear(config.hidden_size, 1, bias=False)
        self.span_head = AnswerHead(config.hidden_size, 2, eps=eps)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        frame_features: torch.Tensor | None = None, frame_attention_mask: torch.Tensor | None = None,
        subtitle_input_ids: torch.Tensor | None = None,
        text_subtitle_index: torch.Tensor | None = None, frame_subtitle_index: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        output_attentions: bool | None = None, output_hidden_states: bool | None = None,
    ) -> HeroQuestionAnsweringOutput:
        mask = self._check_inputs(input_ids, attention_mask, frame_features, frame_attention_mask, labels, start_positions, end_positions)
        batch, choices, _ = input_ids.shape
        frames = frame_features.shape[1]
        ids, text_index, frame_index, frame_mask = self._candidate_inputs(
            input_ids, mask, frame_features, frame_attention_mask, subtitle_input_ids, text_subtitle_index, frame_subtitle_index
        )
        hero, record = self.hero, self.record_flags(output_attentions, output_hidden_states)
        fused, _, cross = hero.fuse(ids, text_index, frame_features.repeat_interleave(choices, 0), frame_index, **record)
        flat_ids, flat_mask = input_ids.flatten(0, 1), mask.flatten(0, 1)  # (B * C, T)
        sequence = torch.cat([hero.temporal_inputs(fused), hero.embeddings(flat_ids, torch.ones_like(flat_ids))], 1)
        sequence_mask = torch.cat([frame_mask.repeat_interleave(choices, 0), flat_mask], 1)  # (B * C, F + T)
        temporal = run_layers(
            hero.temporal_layers, sequence, key_padding_mask(sequence_mask, sequence.dtype, self.config._attn_implementation),
            **record,
        )
        states = temporal.last_hidden_state[:, :frames].view(batch, choices, frames, -1)  # (B, C, F, H)
        padded = (frame_mask == 0)[:, None, :]  # (B, 1, F)
        qa_weights = _mask_to_minimum(self.qa_pool(states).squeeze(-1), padded).softmax(-1)  # (B, C, F) over frames
        logits = self.qa_head(torch.einsum("bcf,bcfh->bch", qa_weights, states)).squeeze(-1)
        span_weights = self.span_pool(states).squeeze(-1).softmax(1)  # (B, C, F) over candidates
        span = _mask_to_minimum(self.span_head(torch.einsum("bcf,bcfh->bfh", span_weights, states)), (frame_mask == 0)[..., None])
        start_logits, end_logits = span.unbind(-1)
        loss = None
        if labels is not None:
            loss = classification_loss(logits, labels)
            if start_positions is not None:  # rows at -100 count for nothing (no annotation: no span term)
                span_loss = (classification_loss(start_logits, start_positions) + classification_loss(end_logits, end_positions)) / 2
                loss = loss + self.config.qa_span_weight * span_loss
        return HeroQuestionAnsweringOutput(
            loss=loss, logits=logits, start_logits=start_logits, end_logits=end_logits,
            cross_modal_hidden_states=cross.hidden_states, cross_modal_attentions=cross.attentions,
            temporal_hidden_states=temporal.hidden_states, temporal_attentions=temporal.attentions,
        )

    def _check_inputs(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        frame_features: torch.Tensor | None, frame_attention_mask: torch.Tensor | None,
        labels: torch.Tensor | None,
        start_positions: torch.Tensor | None,
        end_positions: torch.Tensor | None,
    ) -> torch.Tensor:
        """``ValueError`` for bad inputs before any compute (value checks eagerly only); returns the candidates' mask."""
        config = self.config
        if input_ids is None or input_ids.dim() != 3 or input_ids.is_floating_point():
            raise ValueError(
                f"input_ids: expected integer candidate ids of shape (batch, choices, length), got "
                f"{None if input_ids is None else tuple(input_ids.shape)}"
            )
        batch, choices, length = input_ids.shape
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        if tuple(mask.shape) != (batch, choices, length):
            raise ValueError(f"attention_mask: expected shape {(batch, choices, length)}, got {tuple(mask.shape)}")
        if labels is not None and (labels.is_floating_point() or tuple(labels.shape) != (batch,)):
            raise ValueError(f"labels: expected the index of the right candidate, shape ({batch},), integer dtype")
        check_video_text_inputs(
            config, input_ids=input_ids[:, 0], attention_mask=mask[:, 0], token_type_ids=None, frame_features=frame_features,
            frame_attention_mask=frame_attention_mask, max_frames=config.max_frames,
        )
        frames = frame_features.shape[1]
        for name, tensor in (("start_positions", start_positions), ("end_positions", end_positions)):
            if tensor is not None and (tensor.is_floating_point() or tuple(tensor.shape) != (batch,)):
                raise ValueError(f"{name}: expected frame indices of shape ({batch},) and integer dtype (-100: none)")
        if (start_positions is None) != (end_positions is None):
            raise ValueError("start_positions and end_positions: pass both or neither")
        if torch.compiler.is_compiling():  # the checks below read the tensors: eager calls only
            return mask
        if labels is not None and bool(((labels < 0) | (labels >= choices)).any()):
            raise ValueError(f"labels: expected candidate indices in [0, {choices}), got {labels.tolist()}")
        for name, tensor in (("start_positions", start_positions), ("end_positions", end_positions)):
            if tensor is not None and bool(((tensor < 0) & (tensor != IGNORE_INDEX) | (tensor >= frames)).any()):
                raise ValueError(f"{name}: expected frame indices in [0, {frames}) or -100, got {tensor.tolist()}")
        if not bool(mask.any(-1).all()):
            raise ValueError("attention_mask: every candidate needs at least one attended token")
        return mask

    def _candidate_inputs(
        self,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        frame_features: torch.Tensor, frame_attention_mask: torch.Tensor | None,
        subtitle_input_ids: torch.Tensor | None,
        text_subtitle_index: torch.Tensor | None, frame_subtitle_index: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cross-modal inputs of every (video, candidate) pair, flattened to B * C rows: the video's subtitle tokens,
        then one copy of the candidate per subtitle that has frames (token subtitle index; a subtitle without frames
        only changes token outputs, which QA does not use), the frame subtitle index, and the (B, F) frame mask.

        With static shapes: there are F copy slots (1 without subtitles, where all frames show one subtitle; eagerly
        as many as needed), slot k holding the k-th subtitle with frames in timeline order, unused slots masked (-1)."""
        config = self.config
        batch, choices, length = input_ids.shape
        if subtitle_input_ids is None:
            if text_subtitle_index is not None or frame_subtitle_index is not None:
                raise ValueError("text_subtitle_index / frame_subtitle_index: pass them with subtitle_input_ids")
            subtitles = input_ids.new_full((batch, 1), config.pad_token_id or 0)
            _, _, frame_mask = prepare_hero_inputs(config, subtitles, None, None, frame_features, frame_attention_mask, None, None)
            text_index = torch.full_like(subtitles, -1)  # (B, 1) no subtitle token
            frame_index = torch.where(frame_mask.bool(), 0, -1)  # (B, F) every valid frame shows subtitle 0
            slots = 1
        else:
            if text_subtitle_index is None or frame_subtitle_index is None:
                raise ValueError("subtitle_input_ids: pass text_subtitle_index and frame_subtitle_index with it")
            subtitles = subtitle_input_ids
            text_index, frame_index, frame_mask = prepare_hero_inputs(
                config, subtitles, None, None, frame_features, frame_attention_mask, text_subtitle_index, frame_subtitle_index
            )
            slots = frame_index.shape[1]
        frame_index = frame_index.masked_fill(frame_mask == 0, -1)  # (B, F) frame -> subtitle, -1: none or padded
        frames = frame_index.shape[1]
        earlier = torch.ones(frames, frames, dtype=torch.bool, device=frame_index.device).tril(-1)  # (F, F) key before query
        repeated = ((frame_index[:, :, None] == frame_index[:, None, :]) & earlier).any(-1)  # (B, F) subtitle seen before
        first_frame = (frame_index >= 0) & ~repeated  # (B, F) the first frame of each subtitle
        if not torch.compiler.is_compiling():
            tokens_per_subtitle = ((text_index[:, :, None] == text_index[:, None, :]) & (text_index >= 0)[:, :, None]).sum(-1)
            longest = int(tokens_per_subtitle.max()) + length  # the longest subtitle (B, T) with a candidate appended
            if longest > config.max_position_embeddings:
                raise ValueError(
                    f"input_ids: a subtitle with a candidate appended has {longest} tokens, more than max_position_embeddings "
                    f"({config.max_position_embeddings}); truncate the subtitles or the candidates"
                )
            # Eager calls use as many slots as the most subtitles with frames in one video: the same outputs, less work.
            slots = min(slots, max(int(first_frame.sum(1).max()), 1))
        slot = torch.where(first_frame, first_frame.long().cumsum(1) - 1, slots)  # (B, F) its subtitle's slot; else spare
        slot_subtitle = frame_index.new_full((batch, slots + 1), -1).scatter(1, slot, frame_index)[:, :slots]  # (B, K)
        appended = (slot_subtitle >= 0)[:, None, :, None] & mask.bool()[:, :, None, :]  # (B, C, K, L)
        appended_index = torch.where(appended, slot_subtitle[:, None, :, None], -1)  # (B, C, K, L) token -> subtitle
        appended_ids = input_ids[:, :, None, :].expand(-1, -1, slots, -1)  # (B, C, K, L)
        ids = torch.cat([subtitles.repeat_interleave(choices, 0), appended_ids.reshape(batch * choices, -1)], 1)
        index = torch.cat([text_index.repeat_interleave(choices, 0), appended_index.reshape(batch * choices, -1)], 1)
        return ids, index, frame_index.repeat_interleave(choices, 0), frame_mask
