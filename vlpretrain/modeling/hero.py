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
the temporal transformer adds global positions and runs over the whole video.

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
from .layers import SelfAttention, TransformerLayer, key_padding_mask, masked_mean
from .losses import IGNORE_INDEX, classification_loss
from .outputs import UnimodalEncoding, VideoTextModelOutput, VideoTextRetrievalOutput


@dataclass
class HeroForPreTrainingOutput(ModelOutput):
    """Losses of [`HeroForPreTraining`]: the objective(s) run this step, unweighted, and their weighted sum ``loss``.

    ``task`` is the index in ``HERO_OBJECTIVES`` of the sampled objective (-1 when every objective ran).
    """

    loss: torch.Tensor | None = None
    mlm_loss: torch.Tensor | None = None
    frame_feature_loss: torch.Tensor | None = None
    frame_order_loss: torch.Tensor | None = None
    vsm_loss: torch.Tensor | None = None
    task: torch.Tensor | None = None


@dataclass
class HeroMomentRetrievalOutput(ModelOutput):
    """Moment retrieval: start / end logits over frames (B, F), video scores (B queries, B videos) and ``loss``."""

    loss: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None
    logits: torch.Tensor | None = None


@dataclass
class HeroQuestionAnsweringOutput(ModelOutput):
    """Video QA: one logit per answer candidate (B, C), start / end logits over the frames (B, F) and ``loss``."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None


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

    def text_stream_prefix(self) -> dict[str, str]:
        prefix = "" if self.base_model is self else f"{self.base_model_prefix}."
        return {"embeddings": f"{prefix}embeddings.", "layers": f"{prefix}cross_layers."}

    def fuse_videos(
        self,
        frame_features: torch.Tensor,
        frame_attention_mask: torch.Tensor | None,
        subtitle_input_ids: torch.Tensor | None,
        text_subtitle_index: torch.Tensor | None,
        frame_subtitle_index: torch.Tensor | None,
        input_ids: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused frame states before the temporal transformer (B, F, H) and the frame mask, with subtitles when given."""
        config = self.config
        batch, frames = frame_features.shape[:2]
        subtitles = subtitle_input_ids
        if subtitles is None:
            subtitles = input_ids.new_full((batch, 1), config.pad_token_id or 0)
            text_index = torch.full_like(subtitles, -1)
            frame_index = torch.full((batch, frames), -1, dtype=torch.long, device=input_ids.device)
        else:
            if text_subtitle_index is None or frame_subtitle_index is None:
                raise ValueError("subtitle_input_ids: pass text_subtitle_index and frame_subtitle_index with it")
            text_index, frame_index = text_subtitle_index, frame_subtitle_index
        _, _, frame_mask = prepare_hero_inputs(
            config, subtitles, None, None, frame_features, frame_attention_mask, text_index, frame_index
        )
        fused, _ = self.hero.fuse(subtitles, text_index, frame_features, frame_index.masked_fill(frame_mask == 0, -1))
        return fused, frame_mask


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


def _segments(index: torch.Tensor, valid: torch.Tensor, num_segments: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Group the valid items of (B, N) by segment id ``b * S + index``: returns (batch, item) coordinates, the segment
    and the rank of each valid item within its segment (in order), and the largest segment size."""
    batch, item = valid.nonzero(as_tuple=True)
    segment = batch * num_segments + index[batch, item]
    order = torch.argsort(segment * valid.shape[1] + item)
    batch, item, segment = batch[order], item[order], segment[order]
    counts = torch.bincount(segment, minlength=valid.shape[0] * num_segments)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(segment.numel(), device=segment.device) - starts[segment]
    return torch.stack([batch, item]), segment, rank, int(counts.max()) if counts.numel() else 0


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
            config.frame_feature_size, config.hidden_size, config.max_frames, eps, config.hidden_dropout_prob,
            input_norm_eps=eps,
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

    def _run(self, layers: nn.ModuleList, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        key_mask = key_padding_mask(mask, hidden.dtype, self.config._attn_implementation)
        for layer in layers:
            hidden, _ = layer(hidden, key_mask)
        return hidden

    def encode_text_only(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The cross-modal transformer on text alone (VSM / retrieval queries): (B, T, H)."""
        types = torch.ones_like(input_ids)
        return self._run(self.cross_layers, self.embeddings(input_ids, types), attention_mask)

    def cross_modal(
        self,
        input_ids: torch.Tensor,
        text_index: torch.Tensor,
        frame_features: torch.Tensor,
        frame_index: torch.Tensor,
        masked_frames: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run each subtitle with its aligned frames; returns frame outputs scattered onto the timeline (B, F, H,
        zero for unmatched frames) and token outputs (B, T, H, zero for tokens not in any subtitle)."""
        batch, frames = frame_index.shape
        hidden = self.config.hidden_size
        matched = frame_features.new_zeros(batch, frames, hidden)
        text_out = frame_features.new_zeros(batch, input_ids.shape[1], hidden)
        num_segments = int(max(int(text_index.max()), int(frame_index.max()), -1)) + 1
        if num_segments == 0:
            return matched, text_out
        text_coords, text_segment, text_rank, text_width = _segments(text_index, text_index >= 0, num_segments)
        frame_coords, frame_segment, frame_rank, frame_width = _segments(frame_index, frame_index >= 0, num_segments)
        used = torch.unique(torch.cat([text_segment, frame_segment]))
        row = torch.full((batch * num_segments,), -1, dtype=torch.long, device=used.device)
        row[used] = torch.arange(used.numel(), device=used.device)
        count = used.numel()
        features = frame_features
        if masked_frames is not None:
            features = features + self.frame_mask_embedding(masked_frames.long())
        seg_frames = features.new_zeros(count, frame_width, features.shape[-1])
        seg_frames[row[frame_segment], frame_rank] = features[frame_coords[0], frame_coords[1]]
        frame_mask = torch.zeros(count, frame_width, dtype=torch.long, device=features.device)
        frame_mask[row[frame_segment], frame_rank] = 1
        seg_ids = input_ids.new_full((count, text_width), self.config.pad_token_id or 0)
        seg_ids[row[text_segment], text_rank] = input_ids[text_coords[0], text_coords[1]]
        text_mask = torch.zeros(count, text_width, dtype=torch.long, device=features.device)
        text_mask[row[text_segment], text_rank] = 1
        positions = torch.arange(frame_width, device=features.device)[None, :]
        frame_embeds = self.frame_embeddings(
            seg_frames, positions.clamp_max(self.config.max_frames - 1), torch.ones_like(frame_mask),
            token_type_embeddings=self.embeddings.token_type_embeddings,
        )
        text_embeds = self.embeddings(seg_ids, torch.ones_like(seg_ids))
        states = self._run(
            self.cross_layers, torch.cat([frame_embeds, text_embeds], 1), torch.cat([frame_mask, text_mask], 1)
        )
        matched = matched.index_put((frame_coords[0], frame_coords[1]), states[row[frame_segment], frame_rank])
        text_out = text_out.index_put(
            (text_coords[0], text_coords[1]), states[row[text_segment], frame_width + text_rank]
        )
        return matched, text_out

    def temporal(self, fused: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """Temporal transformer over the fused frame sequence (B, F, H)."""
        positions = torch.arange(fused.shape[1], device=fused.device)[None, :]
        hidden = self.temporal_dropout(self.temporal_norm(fused + self.temporal_position_embeddings(positions)))
        return self._run(self.temporal_layers, hidden, frame_mask)

    def fuse(
        self,
        input_ids: torch.Tensor,
        text_index: torch.Tensor,
        frame_features: torch.Tensor,
        frame_index: torch.Tensor,
        masked_frames: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-modal stage plus the residual frame path: (fused frames (B, F, H), cross-modal text states)."""
        matched, text_states = self.cross_modal(input_ids, text_index, frame_features, frame_index, masked_frames)
        residual = frame_features
        if masked_frames is not None:
            residual = residual + self.residual_mask_embedding(masked_frames.long())
        return self.frame_transform(residual) + matched, text_states

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        frame_features: torch.Tensor | None = None,
        frame_attention_mask: torch.Tensor | None = None,
        text_subtitle_index: torch.Tensor | None = None,
        frame_subtitle_index: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> VideoTextModelOutput | tuple:
        """Encode videos with their subtitles (see the module docstring for the input layout)."""
        text_index, frame_index, frame_mask = prepare_hero_inputs(
            self.config, input_ids, attention_mask, token_type_ids, frame_features, frame_attention_mask,
            text_subtitle_index, frame_subtitle_index,
        )
        fused, text_states = self.fuse(input_ids, text_index, frame_features, frame_index)
        frames = self.temporal(fused, frame_mask)
        output = VideoTextModelOutput(
            text_last_hidden_state=text_states, visual_last_hidden_state=frames,
            visual_embeds=masked_mean(frames, frame_mask),
        )
        return_dict = self.config.return_dict if return_dict is None else return_dict
        return output if return_dict else output.to_tuple()


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
    check_video_text_inputs(config, input_ids, attention_mask, token_type_ids, frame_features, frame_attention_mask, config.max_frames)
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
        text_index = torch.where(text_mask.bool(), 0, -1)
        frame_index = torch.where(frame_mask.bool(), 0, -1)
    else:
        if bool((text_subtitle_index < -1).any() or (frame_subtitle_index < -1).any()):
            raise ValueError("text_subtitle_index / frame_subtitle_index: expected subtitle numbers >= 0, or -1 for none")
        text_index = text_subtitle_index.masked_fill(text_mask == 0, -1)
        frame_index = frame_subtitle_index.masked_fill(frame_mask == 0, -1)
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
    """Undo the collator's frame shuffle: ``order[b, p]`` is the original index of the item now at position p."""
    if order is None:
        return values
    restored = values.clone()
    batch, position = (order >= 0).nonzero(as_tuple=True)
    restored[batch, order[batch, position]] = values[batch, position]
    return restored


def _shuffle(values: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    shuffled = values.clone()
    batch, position = (order >= 0).nonzero(as_tuple=True)
    shuffled[batch, position] = values[batch, order[batch, position]]
    return shuffled


class HeroFramePredictionHead(nn.Module):
    """``feat_regress``: Linear(H, H) -> GELU -> LN -> Linear(H, D)."""

    def __init__(self, config: HeroConfig):
        super().__init__()
        self.transform = PredictionHeadTransform(config.hidden_size, "gelu", config.head_layer_norm_eps)
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
) -> torch.Tensor:
    """HERO's global VSM loss on (Q, V) scores, ``owner[q]`` = the video of query q: query against every negative video
    and video against every negative query (queries of other videos), hinge with ``margin``, averaged, weighted.

    With ``hard_pool_size``, each query's ``hard_pool_size`` highest-scoring negative videos (and each positive pair's
    highest-scoring negative queries) weigh ``hard_weight`` and the other negatives 0.1 (``model/pretrain.py``)."""
    rows = torch.arange(scores.shape[0], device=scores.device)
    positive = scores[rows, owner]
    negative_video = torch.ones_like(scores, dtype=torch.bool)
    negative_video[rows, owner] = False
    video_losses = nn.functional.relu(margin + scores - positive[:, None])
    own_scores = scores[:, owner].T  # own_scores[q, q'] = score(q', video of q)
    negative_query = owner[:, None] != owner[None, :]
    query_losses = nn.functional.relu(margin + own_scores - positive[:, None])
    video_term = _negative_mean(video_losses, scores, negative_video, hard_pool_size, hard_weight)
    query_term = _negative_mean(query_losses, own_scores, negative_query, hard_pool_size, hard_weight)
    return video_weight * video_term + query_weight * query_term


def _negative_mean(
    losses: torch.Tensor, scores: torch.Tensor, negative: torch.Tensor, hard_pool_size: int | None, hard_weight: float
) -> torch.Tensor:
    """Mean of ``losses`` over the ``negative`` entries; with ``hard_pool_size``, each row's negatives ranked by score
    weigh ``hard_weight`` (the top ``hard_pool_size``) or 0.1 (the rest). Zero (with gradient) when none."""
    count = negative.sum()
    if int(count) == 0:
        return losses.sum() * 0.0
    weights = negative.to(losses.dtype)
    if hard_pool_size is not None:
        order = scores.detach().masked_fill(~negative, float("-inf")).argsort(dim=1, descending=True)
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
        weights = weights * torch.where(rank < hard_pool_size, hard_weight, 0.1).to(losses.dtype)
    return (losses * weights).sum() / count


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
        self.mlm_head = MaskedLanguageModelingHead(config.hidden_size, config.vocab_size, "gelu", eps)
        self.frame_head = HeroFramePredictionHead(config)
        self.frame_order_head = AnswerHead(config.hidden_size, config.max_frames, eps=eps)
        self.matching_heads = HeroMatchingHeads(config)
        self.register_buffer("task_step", torch.zeros((), dtype=torch.long))
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.mlm_head.decoder

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.mlm_head.decoder = value

    def sample_task(self, step: int) -> str:
        """The objective of training forward pass ``step`` (the same on every process)."""
        names = [name for name in HERO_OBJECTIVES if self.config.objective_enabled(name) and self.config.task_ratios[name] > 0]
        ratios = torch.tensor([self.config.task_ratios[name] for name in names], dtype=torch.float64)
        generator = torch.Generator().manual_seed(self.config.task_seed * 1_000_003 + step)
        return names[int(torch.multinomial(ratios, 1, generator=generator))]

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        frame_features: torch.Tensor | None = None,
        frame_attention_mask: torch.Tensor | None = None,
        text_subtitle_index: torch.Tensor | None = None,
        frame_subtitle_index: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        masked_frames: torch.Tensor | None = None,
        frame_feature_targets: torch.Tensor | None = None,
        frame_order_labels: torch.Tensor | None = None,
        task: str | None = None,
        return_dict: bool | None = None,
    ) -> HeroForPreTrainingOutput | tuple:
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
        if frame_order_labels is not None and bool((frame_order_labels >= frames).any()):
            raise ValueError(f"frame_order_labels: expected original frame indices < {frames} or -100")
        if task is not None and task not in HERO_OBJECTIVES:
            raise ValueError(f"task: expected one of {list(HERO_OBJECTIVES)}, got {task!r}")
        step = int(self.task_step)  # training forward passes before this one
        if task is None and self.training and config.sample_tasks:
            task = self.sample_task(step)
        if self.training:
            self.task_step += 1
        tasks = [task] if task is not None else [name for name in HERO_OBJECTIVES if config.objective_enabled(name)]

        clean_ids = input_ids if labels is None else torch.where(labels != IGNORE_INDEX, labels, input_ids)
        shuffled_clean = frame_features if frame_feature_targets is None else frame_feature_targets
        clean_frames = _unshuffle(shuffled_clean, frame_order_labels)
        losses: dict[str, torch.Tensor] = {}
        if "mlm" in tasks and labels is not None:
            _, text_states = self.hero.fuse(input_ids, text_index, clean_frames, frame_index)
            positions = labels != IGNORE_INDEX
            losses["mlm"] = classification_loss(self.mlm_head(text_states, positions), labels[positions])
        if "frame_feature" in tasks and masked_frames is not None:
            masked = _unshuffle(masked_frames, frame_order_labels) & frame_mask.bool()
            corrupted = _unshuffle(frame_features, frame_order_labels)
            fused, _ = self.hero.fuse(clean_ids, text_index, corrupted, frame_index, masked)
            losses["frame_feature"] = self._frame_feature_loss(self.hero.temporal(fused, frame_mask), clean_frames, masked, frame_mask)
        if "frame_order" in tasks and frame_order_labels is not None:
            fused, _ = self.hero.fuse(clean_ids, text_index, clean_frames, frame_index)
            states = self.hero.temporal(_shuffle(fused, frame_order_labels), frame_mask)
            positions = frame_order_labels != IGNORE_INDEX
            logits = self.frame_order_head(states[positions])
            losses["frame_order"] = classification_loss(logits, frame_order_labels[positions])
        if "vsm" in tasks:
            losses["vsm"] = self._vsm_loss(clean_ids, text_index, clean_frames, frame_index, frame_mask, step)

        loss = sum(config.loss_weights[name] * value for name, value in losses.items()) if losses else None
        output = HeroForPreTrainingOutput(
            loss=loss, mlm_loss=losses.get("mlm"), frame_feature_loss=losses.get("frame_feature"),
            frame_order_loss=losses.get("frame_order"), vsm_loss=losses.get("vsm"),
            task=torch.tensor(HERO_OBJECTIVES.index(task) if task is not None else -1, device=frame_features.device),
        )
        return_dict = config.return_dict if return_dict is None else return_dict
        return output if return_dict else output.to_tuple()

    def _frame_feature_loss(
        self, states: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor, frame_mask: torch.Tensor
    ) -> torch.Tensor:
        predictions = self.frame_head(states)
        masked_predictions = predictions[masked].float()
        if masked_predictions.shape[0] == 0:
            return predictions.sum() * 0.0
        masked_targets = targets[masked].float()
        if self.config.frame_feature_loss_type == "regression":
            return (masked_predictions - masked_targets).pow(2).sum(-1).sqrt().mean()
        unmasked = predictions[frame_mask.bool() & ~masked].float()
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
        step: int,
    ) -> torch.Tensor:
        config = self.config
        generator = torch.Generator().manual_seed(config.task_seed * 1_000_003 + int(self.task_step) + 7919)
        queries = select_vsm_queries(text_index, frame_index, config.vsm_queries_per_video, generator)
        if not queries:
            return frame_features.sum() * 0.0
        owner = torch.tensor([row for row, _ in queries], device=input_ids.device)
        width = max(int(((text_index[row] == sub)).sum()) for row, sub in queries)
        query_ids = input_ids.new_full((len(queries), width), config.pad_token_id or 0)
        query_mask = torch.zeros(len(queries), width, dtype=torch.long, device=input_ids.device)
        kept_index = text_index.clone()
        starts = torch.full((len(queries),), IGNORE_INDEX, dtype=torch.long, device=input_ids.device)
        ends = starts.clone()
        for number, (row, sub) in enumerate(queries):
            tokens = (text_index[row] == sub).nonzero().squeeze(-1)
            query_ids[number, : tokens.numel()] = input_ids[row, tokens]
            if config.bos_token_id is not None:
                query_ids[number, 0] = config.bos_token_id
            query_mask[number, : tokens.numel()] = 1
            kept_index[row, tokens[1:]] = -1
            aligned = (frame_index[row] == sub).nonzero().squeeze(-1)
            last_valid = int(frame_mask[row].sum()) - 1
            starts[number] = aligned[0]
            ends[number] = min(max(int(aligned[0]) + 1, int(aligned[-1])), last_valid)
        query_states = self.hero.encode_text_only(query_ids, query_mask)
        query_vectors = self.matching_heads.query_encoder(query_states, query_mask)
        fused, _ = self.hero.fuse(input_ids, kept_index, frame_features, frame_index)
        frames = self.hero.temporal(fused, frame_mask)
        scores = video_scores(query_vectors, frames, frame_mask)
        start_step = config.vsm_hard_negative_start_step
        hard = start_step is not None and step >= start_step
        loss = hinge_ranking_loss(
            scores, owner, config.vsm_margin, config.vsm_negative_video_weight, config.vsm_negative_query_weight,
            config.vsm_hard_negative_pool_size if hard else None, config.vsm_hard_negative_weight,
        )
        use_span = self.training is False or float(torch.rand((), generator=generator)) < config.vsm_span_probability
        if use_span:
            start_logits, end_logits = self.matching_heads.span_logits(query_vectors, frames[owner], frame_mask[owner])
            span = classification_loss(start_logits, starts) + classification_loss(end_logits, ends)
            loss = loss + config.vsm_span_weight * span
        return loss


def select_vsm_queries(
    text_index: torch.Tensor, frame_index: torch.Tensor, per_video: int, generator: torch.Generator
) -> list[tuple[int, int]]:
    """(row, subtitle) pairs used as VSM queries, as ``data/vsm.py`` picks them: per video, ``per_video`` subtitles
    drawn without replacement among those with tokens and at least one aligned frame (``frame_index``, -1 for
    unmatched and padded frames), in timeline order, then the last one repeated up to ``per_video``; none for a
    video without such a subtitle."""
    queries: list[tuple[int, int]] = []
    for row in range(text_index.shape[0]):
        with_frames = set(frame_index[row][frame_index[row] >= 0].tolist())
        candidates = [sub for sub in torch.unique(text_index[row][text_index[row] >= 0]).tolist() if sub in with_frames]
        if not candidates:
            continue
        chosen = sorted(torch.randperm(len(candidates), generator=generator)[:per_video].tolist())
        picked = [candidates[index] for index in chosen]
        queries += [(row, sub) for sub in picked + [picked[-1]] * (per_video - len(picked))]
    return queries


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
        queries = self.encode_queries(input_ids, retrieval_text_mask(input_ids, attention_mask))
        mask = torch.ones(queries.shape[0], 1, dtype=torch.long, device=queries.device)
        return UnimodalEncoding(states=queries[:, None], mask=mask, embeddings=nn.functional.normalize(queries.float(), dim=-1, eps=1e-5))

    def encode_visual_for_retrieval(
        self, frame_features: torch.Tensor, frame_attention_mask: torch.Tensor | None = None
    ) -> UnimodalEncoding:
        """Temporal frame states, frame mask and normalised mean-of-frames embeddings of a batch of videos."""
        placeholder_text = retrieval_placeholder_text(frame_features, "frame_features", "frames", self.config.frame_feature_size)
        fused, frame_mask = self.fuse_videos(frame_features, frame_attention_mask, None, None, None, placeholder_text)
        states = self.hero.temporal(fused, frame_mask)
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

    def encode_queries(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if input_ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(
                f"input_ids: {input_ids.shape[1]} query tokens, more than max_position_embeddings ({self.config.max_position_embeddings})"
            )
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        return self.matching_heads.query_encoder(self.hero.encode_text_only(input_ids, mask), mask)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        frame_features: torch.Tensor | None = None,
        frame_attention_mask: torch.Tensor | None = None,
        subtitle_input_ids: torch.Tensor | None = None,
        text_subtitle_index: torch.Tensor | None = None,
        frame_subtitle_index: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_loss: bool = False,
        return_dict: bool | None = None,
    ) -> VideoTextRetrievalOutput | tuple:
        config = self.config
        check_video_text_inputs(config, input_ids, attention_mask, token_type_ids, frame_features, frame_attention_mask, config.max_frames)
        batch = input_ids.shape[0]
        check_match_labels(labels, batch)
        fused, frame_mask = self.fuse_videos(
            frame_features, frame_attention_mask, subtitle_input_ids, text_subtitle_index, frame_subtitle_index, input_ids
        )
        states = self.hero.temporal(fused, frame_mask)
        queries = self.encode_queries(input_ids, attention_mask)
        logits = video_scores(queries, states, frame_mask)
        loss = None
        if return_loss or labels is not None:
            keep = torch.ones(batch, dtype=torch.bool, device=logits.device) if labels is None else labels == 1
            matched = logits[keep][:, keep]
            owner = torch.arange(matched.shape[0], device=logits.device)
            loss = hinge_ranking_loss(matched, owner, config.vsm_margin, 10.0, 10.0)
        output = VideoTextRetrievalOutput(loss=loss, logits=logits, text_embeds=queries, visual_embeds=masked_mean(states, frame_mask))
        return_dict = config.return_dict if return_dict is None else return_dict
        return output if return_dict else output.to_tuple()


class HeroForVideoMomentRetrieval(HeroForVideoTextRetrieval):
    """Video corpus moment retrieval (``HeroForVcmr``): the global scores of [`HeroForVideoTextRetrieval`] plus start /
    end logits of each query over its own video's frames. ``start_positions`` / ``end_positions`` (B,) add
    ``vsm_span_weight`` x the sum of the start and end cross-entropies (``model/pretrain.py``) to the ranking loss
    (8 / 8)."""

    hub_auto_class = None

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        frame_features: torch.Tensor | None = None,
        frame_attention_mask: torch.Tensor | None = None,
        subtitle_input_ids: torch.Tensor | None = None,
        text_subtitle_index: torch.Tensor | None = None,
        frame_subtitle_index: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> HeroMomentRetrievalOutput | tuple:
        config = self.config
        check_video_text_inputs(config, input_ids, attention_mask, token_type_ids, frame_features, frame_attention_mask, config.max_frames)
        batch = input_ids.shape[0]
        for name, tensor in (("start_positions", start_positions), ("end_positions", end_positions)):
            if tensor is not None and (tensor.is_floating_point() or tuple(tensor.shape) != (batch,)):
                raise ValueError(f"{name}: expected frame indices of shape ({batch},) and integer dtype")
        fused, frame_mask = self.fuse_videos(
            frame_features, frame_attention_mask, subtitle_input_ids, text_subtitle_index, frame_subtitle_index, input_ids
        )
        states = self.hero.temporal(fused, frame_mask)
        queries = self.encode_queries(input_ids, attention_mask)
        logits = video_scores(queries, states, frame_mask)
        start_logits, end_logits = self.matching_heads.span_logits(queries, states, frame_mask)
        loss = None
        if start_positions is not None and end_positions is not None:
            owner = torch.arange(batch, device=logits.device)
            span = classification_loss(start_logits, start_positions) + classification_loss(end_logits, end_positions)
            loss = hinge_ranking_loss(logits, owner, config.vsm_margin, 8.0, 8.0) + config.vsm_span_weight * span
        output = HeroMomentRetrievalOutput(loss=loss, start_logits=start_logits, end_logits=end_logits, logits=logits)
        return_dict = config.return_dict if return_dict is None else return_dict
        return output if return_dict else output.to_tuple()


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

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        frame_features: torch.Tensor | None = None,
        frame_attention_mask: torch.Tensor | None = None,
        subtitle_input_ids: torch.Tensor | None = None,
        text_subtitle_index: torch.Tensor | None = None,
        frame_subtitle_index: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> HeroQuestionAnsweringOutput | tuple:
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
        if labels is not None and not torch.compiler.is_compiling() and bool(((labels < 0) | (labels >= choices)).any()):
            raise ValueError(f"labels: expected candidate indices in [0, {choices}), got {labels.tolist()}")
        check_video_text_inputs(config, input_ids[:, 0], mask[:, 0], None, frame_features, frame_attention_mask, config.max_frames)
        frames = frame_features.shape[1]
        for name, tensor in (("start_positions", start_positions), ("end_positions", end_positions)):
            if tensor is not None and (tensor.is_floating_point() or tuple(tensor.shape) != (batch,)):
                raise ValueError(f"{name}: expected frame indices of shape ({batch},) and integer dtype (-100: none)")
            if tensor is not None and bool(((tensor < 0) & (tensor != IGNORE_INDEX) | (tensor >= frames)).any()):
                raise ValueError(f"{name}: expected frame indices in [0, {frames}) or -100, got {tensor.tolist()}")
        if (start_positions is None) != (end_positions is None):
            raise ValueError("start_positions and end_positions: pass both or neither")
        if not bool(mask.any(-1).all()):
            raise ValueError("attention_mask: every candidate needs at least one attended token")
        ids, text_index, frame_index, frame_mask = self._candidate_inputs(
            input_ids, mask, frame_features, frame_attention_mask, subtitle_input_ids, text_subtitle_index, frame_subtitle_index
        )
        hero = self.hero
        fused, _ = hero.fuse(ids, text_index, frame_features.repeat_interleave(choices, 0), frame_index)
        positions = torch.arange(frames, device=fused.device)[None, :]
        fused = hero.temporal_dropout(hero.temporal_norm(fused + hero.temporal_position_embeddings(positions)))
        flat_ids, flat_mask = input_ids.flatten(0, 1), mask.flatten(0, 1)
        candidate_frame_mask = frame_mask.repeat_interleave(choices, 0)
        sequence = torch.cat([fused, hero.embeddings(flat_ids, torch.ones_like(flat_ids))], 1)
        states = hero._run(hero.temporal_layers, sequence, torch.cat([candidate_frame_mask, flat_mask], 1))[:, :frames]
        states = states.view(batch, choices, frames, -1)
        padded = (frame_mask == 0)[:, None, :]
        qa_weights = _mask_to_minimum(self.qa_pool(states).squeeze(-1), padded).softmax(-1)
        logits = self.qa_head(torch.einsum("bcf,bcfh->bch", qa_weights, states)).squeeze(-1)
        span_weights = self.span_pool(states).squeeze(-1).softmax(1)
        span = _mask_to_minimum(self.span_head(torch.einsum("bcf,bcfh->bfh", span_weights, states)), (frame_mask == 0)[..., None])
        start_logits, end_logits = span.unbind(-1)
        loss = None
        if labels is not None:
            loss = classification_loss(logits, labels)
            if start_positions is not None and bool((start_positions != IGNORE_INDEX).any()):
                span_loss = (classification_loss(start_logits, start_positions) + classification_loss(end_logits, end_positions)) / 2
                loss = loss + config.qa_span_weight * span_loss
        output = HeroQuestionAnsweringOutput(loss=loss, logits=logits, start_logits=start_logits, end_logits=end_logits)
        return_dict = config.return_dict if return_dict is None else return_dict
        return output if return_dict else output.to_tuple()

    def _candidate_inputs(
        self,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        frame_features: torch.Tensor,
        frame_attention_mask: torch.Tensor | None,
        subtitle_input_ids: torch.Tensor | None,
        text_subtitle_index: torch.Tensor | None,
        frame_subtitle_index: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cross-modal inputs of every (video, candidate) pair, flattened to B * C rows: the video's subtitle tokens,
        then the candidate appended to each of its subtitles (token subtitle index), the frame subtitle index, and
        the (B, F) frame mask."""
        config = self.config
        batch, choices, length = input_ids.shape
        if subtitle_input_ids is None:
            if text_subtitle_index is not None or frame_subtitle_index is not None:
                raise ValueError("text_subtitle_index / frame_subtitle_index: pass them with subtitle_input_ids")
            subtitles = input_ids.new_full((batch, 1), config.pad_token_id or 0)
            _, _, frame_mask = prepare_hero_inputs(config, subtitles, None, None, frame_features, frame_attention_mask, None, None)
            text_index = torch.full_like(subtitles, -1)
            frame_index = torch.where(frame_mask.bool(), 0, -1)
        else:
            if text_subtitle_index is None or frame_subtitle_index is None:
                raise ValueError("subtitle_input_ids: pass text_subtitle_index and frame_subtitle_index with it")
            subtitles = subtitle_input_ids
            text_index, frame_index, frame_mask = prepare_hero_inputs(
                config, subtitles, None, None, frame_features, frame_attention_mask, text_subtitle_index, frame_subtitle_index
            )
        segments = int(max(int(text_index.max()), int(frame_index.max()))) + 1
        numbers = torch.arange(segments, device=input_ids.device)
        present = (text_index[..., None] == numbers).any(1) | (frame_index[..., None] == numbers).any(1)  # (B, S)
        longest = int(max((text_index[..., None] == numbers).sum(1).max(), 0)) + length
        if longest > config.max_position_embeddings:
            raise ValueError(
                f"input_ids: a subtitle with a candidate appended has {longest} tokens, more than max_position_embeddings "
                f"({config.max_position_embeddings}); truncate the subtitles or the candidates"
            )
        appended_index = torch.where(present[:, None, :, None] & mask.bool()[:, :, None, :], numbers[None, None, :, None], -1)
        appended_ids = input_ids[:, :, None, :].expand(-1, -1, segments, -1)
        ids = torch.cat([subtitles.repeat_interleave(choices, 0), appended_ids.reshape(batch * choices, -1)], 1)
        index = torch.cat([text_index.repeat_interleave(choices, 0), appended_index.reshape(batch * choices, -1)], 1)
        return ids, index, frame_index.masked_fill(frame_mask == 0, -1).repeat_interleave(choices, 0), frame_mask
