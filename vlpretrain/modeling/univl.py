"""UniVL (Luo et al. 2020): text, video and cross encoders plus a caption decoder, with all five objectives.

Faithful to microsoft/UniVL: raw clip features are layer-normed (``video_norm``) before the video encoder and as
masked-frame targets; the cross encoder runs over [text states ; video states] with positions continuing after
the text and type ids 0/1; the decoder's word and position tables are the text encoder's, its output layer is
tied to the word embeddings. The joint objective uses mean-pooled *unmasked* encodings (raw dot product,
MIL-NCE); the cross objectives use the masked inputs.

Package conventions that differ from the original code:

- ignored targets are -100; the reconstruction loss ignores padded targets (the original counts ``[PAD]``
  targets because it pads with 0 and ignores -1);
- the decoder reads the encoder's (collator-masked) ``input_ids[:, :-1]`` as its teacher-forcing input and
  predicts the unmasked ``input_ids[:, 1:]`` (the original masks the decoder input with its own draw);
- every pair of the batch is kept for MIL-NCE (the original keeps only the middle pair of each group of 3);
  positives come from ``contrastive_positive_mask`` (same video), the identity when it is not given;
- the unused ``bert.pooler`` / ``visual.pooler`` of the original are not built (the converter drops them).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn
from transformers import GenerationConfig, GenerationMixin
from transformers import initialization as init
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from ..configuration.univl import UnivlConfig
from .base import (
    VLPreTrainedModel,
    check_match_labels,
    check_target_shapes,
    check_video_text_inputs,
    retrieval_placeholder_text,
    retrieval_text_mask,
)
from .embeddings import FrameEmbeddings, TextEmbeddings
from .heads import MaskedLanguageModelingHead, Pooler, PredictionHeadTransform
from .layers import DecoderLayer, TransformerLayer, causal_attention_mask, key_padding_mask, masked_mean, run_layers
from .losses import (
    IGNORE_INDEX,
    classification_loss,
    diagonal_cross_entropy,
    frame_nce_loss,
    max_margin_ranking_loss,
    mil_nce_loss,
    select_rows,
)
from .outputs import (
    CaptioningOutput,
    StreamOutput,
    UnimodalEncoding,
    VideoTextModelOutput,
    VideoTextRetrievalOutput,
    recording_flags,
    stream_records,
)


@dataclass
class UnivlEncoderRecords(ModelOutput):
    """With ``output_hidden_states`` / ``output_attentions``, the per-layer records (embeddings first) of the text,
    video and cross encoders (None for an encoder that did not run)."""

    text_hidden_states: tuple[torch.Tensor, ...] | None = None
    visual_hidden_states: tuple[torch.Tensor, ...] | None = None
    cross_hidden_states: tuple[torch.Tensor, ...] | None = None
    text_attentions: tuple[torch.Tensor, ...] | None = None
    visual_attentions: tuple[torch.Tensor, ...] | None = None
    cross_attentions: tuple[torch.Tensor, ...] | None = None

    def encoder_records(self) -> dict[str, tuple | None]:
        """The encoders' record fields by name, for an output that passes them on."""
        return {name: getattr(self, name) for name in _ENCODER_RECORD_FIELDS}


_ENCODER_RECORD_FIELDS = tuple(field.name for field in fields(UnivlEncoderRecords))


@dataclass
class UnivlRecords(UnivlEncoderRecords):
    """The encoders' records and the caption decoder's (its attentions: one (self, encoder) pair per layer)."""

    decoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    decoder_attentions: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None


@dataclass
class UnivlModelOutput(UnivlEncoderRecords, VideoTextModelOutput):
    """[`UnivlModel`]'s outputs: those of [`VideoTextModelOutput`], then the [`UnivlEncoderRecords`]."""


@dataclass
class UnivlPreTrainingLosses(ModelOutput):
    """Losses of [`UnivlForPreTraining`]: each objective's own (unweighted) loss and their weighted sum ``loss``.

    ``joint_scores`` is the (texts x videos) dot-product matrix of the joint objective and ``alignment_scores`` the
    cross-encoder scores of every (text, video) pair of the batch.
    """

    loss: torch.Tensor | None = None
    contrastive_loss: torch.Tensor | None = None
    mlm_loss: torch.Tensor | None = None
    frame_feature_loss: torch.Tensor | None = None
    alignment_loss: torch.Tensor | None = None
    reconstruction_loss: torch.Tensor | None = None
    joint_scores: torch.Tensor | None = None
    alignment_scores: torch.Tensor | None = None


@dataclass
class UnivlForPreTrainingOutput(UnivlRecords, UnivlPreTrainingLosses):
    """[`UnivlForPreTraining`]'s outputs: those of [`UnivlPreTrainingLosses`], then the [`UnivlRecords`] of the
    encoders over the masked inputs (stage I: the unmasked ones), of the cross encoder over the matched pairs and of
    the decoder."""


@dataclass
class UnivlRetrievalOutput(UnivlEncoderRecords, VideoTextRetrievalOutput):
    """[`UnivlForVideoTextRetrieval`]'s outputs: those of [`VideoTextRetrievalOutput`], then the
    [`UnivlEncoderRecords`] (the cross encoder's, in ``"align"`` mode, over the matched pairs (i, i))."""


@dataclass
class UnivlCaptioningOutput(UnivlRecords, CaptioningOutput):
    """[`UnivlForCaptioning`]'s outputs: those of [`CaptioningOutput`], then the [`UnivlRecords`] (the encoders' are
    None when ``encoder_hidden_states`` were given)."""


class UnivlPreTrainedModel(VLPreTrainedModel):
    """Base class of the UniVL models: config class, weight prefix, modalities and layers kept on one device."""

    config: UnivlConfig
    config_class = UnivlConfig
    base_model_prefix = "univl"
    input_modalities = ("video", "text")
    _no_split_modules = ["TransformerLayer", "DecoderLayer", "TextEmbeddings", "FrameEmbeddings"]

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, UnivlFramePredictionHead):  # its own bias (e.g. stage II loaded from a stage-I folder)
            init.zeros_(module.bias)

    def text_stream_prefix(self) -> dict[str, str]:
        prefix = "" if self.base_model is self else f"{self.base_model_prefix}."
        return {"embeddings": f"{prefix}embeddings.", "layers": f"{prefix}text_layers."}

    def check_inputs(
        self,
        input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None, token_type_ids: torch.Tensor | None,
        frame_features: torch.Tensor | None, frame_attention_mask: torch.Tensor | None,
    ) -> None:
        """Validate the captions and clips (``ValueError`` naming the argument) before any compute."""
        check_video_text_inputs(
            self.config, input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            frame_features=frame_features, frame_attention_mask=frame_attention_mask, max_frames=self.config.max_frames,
        )


class UnivlCrossEmbeddings(nn.Module):
    """Cross-encoder input: [text ; video] states + position + type (0 text, 1 video) -> LN -> dropout. Text
    positions are 0..T-1 and frames start at the fixed ``config.frame_position_offset`` (``max_position_embeddings``
    when None), so a pair's encoding does not depend on how far its batch's texts are padded."""

    def __init__(self, config: UnivlConfig):
        super().__init__()
        offset = config.frame_position_offset
        self.frame_position_offset = config.max_position_embeddings if offset is None else offset
        self.position_embeddings = nn.Embedding(config.max_cross_positions, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, text_states: torch.Tensor, video_states: torch.Tensor) -> torch.Tensor:
        if text_states.shape[1] > self.frame_position_offset:
            raise ValueError(
                f"input_ids: {text_states.shape[1]} (padded) tokens, more than the cross encoder's text positions "
                f"(config.frame_position_offset = {self.frame_position_offset}); pad or truncate to at most that"
            )
        states = torch.cat([text_states, video_states], dim=1)
        device = states.device
        positions = torch.cat([
            torch.arange(text_states.shape[1], device=device),
            torch.arange(video_states.shape[1], device=device) + self.frame_position_offset,
        ])
        types = torch.cat([
            torch.zeros(text_states.shape[1], dtype=torch.long, device=states.device),
            torch.ones(video_states.shape[1], dtype=torch.long, device=states.device),
        ])
        return self.dropout(self.norm(states + self.position_embeddings(positions) + self.token_type_embeddings(types)))


class UnivlDecoder(nn.Module):
    """The caption decoder: (shared word + position embeddings) -> own LayerNorm -> dropout -> decoder layers."""

    def __init__(self, config: UnivlConfig):
        super().__init__()
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_decoder_layers))

    def forward(
        self,
        embeddings: torch.Tensor,
        self_mask: torch.Tensor,
        encoder_states: torch.Tensor,
        encoder_mask: torch.Tensor | None,
        output_attentions: bool = False, output_hidden_states: bool = False,
    ) -> StreamOutput:
        """Decoder states; its attention record holds one (self, encoder) pair of weights per layer."""
        return run_layers(
            self.layers, self.dropout(self.norm(embeddings)), self_mask, encoder_states=encoder_states,
            encoder_mask=encoder_mask, output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )


class UnivlFramePredictionHead(nn.Module):
    """CMFM head: transform (dense, GELU, LN), then the transposed video input projection and a bias -> feature space."""

    def __init__(self, config: UnivlConfig):
        super().__init__()
        self.transform = PredictionHeadTransform(config.hidden_size, config.hidden_act, config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.frame_feature_size))

    def forward(self, states: torch.Tensor, projection_weight: torch.Tensor) -> torch.Tensor:
        return self.transform(states) @ projection_weight + self.bias


def _ones_mask(reference: torch.Tensor, given: torch.Tensor | None) -> torch.Tensor:
    return torch.ones(reference.shape[:2], dtype=torch.long, device=reference.device) if given is None else given


def _record_rows(records: tuple[torch.Tensor, ...] | None, rows: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
    return None if records is None else tuple(record[rows] for record in records)


class UnivlModel(UnivlPreTrainedModel):
    """The UniVL encoders (text, video and, for stage 2, the cross encoder) and the caption decoder.

    ``forward`` returns the text and video encoders' states (``text_encoder_last_hidden_state`` /
    ``visual_encoder_last_hidden_state``), their mean-pooled encodings (``text_embeds``: text tokens after ``[CLS]``;
    ``visual_embeds``: valid frames) and, with the cross encoder (stage II), the joint sequence, its ``[CLS]`` pooler
    and its text / frame slices as ``text_last_hidden_state`` / ``visual_last_hidden_state`` (the encoders' states
    in stage I). The encoders below return a ``StreamOutput`` whose records are filled on request.
    """

    hub_auto_class = "AutoModel"

    def __init__(self, config: UnivlConfig):
        super().__init__(config)
        self.embeddings = TextEmbeddings(config)
        self.text_layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_text_layers))
        self.video_norm = nn.LayerNorm(config.frame_feature_size, eps=config.layer_norm_eps)
        self.visual_embeddings = FrameEmbeddings(
            config.frame_feature_size, config.hidden_size, config.max_frames, config.layer_norm_eps,
            config.hidden_dropout_prob,
        )
        self.visual_layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_visual_layers))
        self.has_cross = config.stage == 2
        if self.has_cross:
            self.cross_embeddings = UnivlCrossEmbeddings(config)
            self.cross_layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_cross_layers))
            self.pooler = Pooler(config.hidden_size, config.hidden_size, "tanh")
            self.decoder = UnivlDecoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def key_mask(self, mask: torch.Tensor | None, states: torch.Tensor) -> torch.Tensor | None:
        """A (B, L) 0/1 mask in the form the configured attention kernel takes."""
        return key_padding_mask(mask, states.dtype, self.config._attn_implementation)

    def encode_text(
        self,
        input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        output_attentions: bool = False, output_hidden_states: bool = False,
    ) -> StreamOutput:
        """Text encoder states (B, T, H)."""
        hidden = self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        return run_layers(
            self.text_layers, hidden, self.key_mask(attention_mask, hidden),
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )

    def encode_video(
        self,
        frame_features: torch.Tensor, frame_attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False, output_hidden_states: bool = False,
    ) -> StreamOutput:
        """Video encoder states (B, F, H) of raw clip features (layer-normed here)."""
        hidden = self.visual_embeddings(self.video_norm(frame_features))
        return run_layers(
            self.visual_layers, hidden, self.key_mask(frame_attention_mask, hidden),
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )

    def cross_encode(
        self,
        text_states: torch.Tensor,
        text_mask: torch.Tensor,
        video_states: torch.Tensor,
        video_mask: torch.Tensor,
        output_attentions: bool = False, output_hidden_states: bool = False,
    ) -> tuple[StreamOutput, torch.Tensor, torch.Tensor]:
        """Cross encoder over [text ; video]: returns the joint states (B, T+F, H), their mask and the pooled [CLS]."""
        if not self.has_cross:
            raise ValueError("this UniVL model is stage 1 (config.stage=1) and has no cross encoder")
        mask = torch.cat([text_mask, video_mask], dim=1)
        hidden = self.cross_embeddings(text_states, video_states)
        joint = run_layers(
            self.cross_layers, hidden, self.key_mask(mask, hidden),
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )
        return joint, mask, self.pooler(joint.last_hidden_state)

    def decode(
        self,
        decoder_input_ids: torch.Tensor,
        decoder_attention_mask: torch.Tensor | None,
        encoder_states: torch.Tensor,
        encoder_mask: torch.Tensor | None,
        output_attentions: bool = False, output_hidden_states: bool = False,
    ) -> StreamOutput:
        """Decoder states (B, L, H) of caption ids attending causally to themselves and to the cross-encoder output."""
        length = decoder_input_ids.shape[1]
        if length > self.config.max_position_embeddings:
            raise ValueError(
                f"decoder_input_ids: {length} tokens is more than max_position_embeddings ({self.config.max_position_embeddings})"
            )
        positions = torch.arange(length, device=decoder_input_ids.device)[None, :]
        embeddings = self.embeddings.word_embeddings(decoder_input_ids) + self.embeddings.position_embeddings(positions)
        implementation = self.config._attn_implementation
        self_mask = causal_attention_mask(decoder_attention_mask, length, embeddings.dtype, implementation, embeddings.device)
        return self.decoder(
            embeddings, self_mask, encoder_states=encoder_states, encoder_mask=self.key_mask(encoder_mask, embeddings),
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        frame_features: torch.Tensor | None = None, frame_attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None, output_hidden_states: bool | None = None,
    ) -> UnivlModelOutput:
        """Encode captions ``input_ids`` (B, T) and clip features ``frame_features`` (B, F, D) with their masks."""
        self.check_inputs(input_ids, attention_mask, token_type_ids, frame_features, frame_attention_mask)
        record = recording_flags(self.config, output_attentions, output_hidden_states)
        text_mask = _ones_mask(input_ids, attention_mask)
        frame_mask = _ones_mask(frame_features, frame_attention_mask)
        text = self.encode_text(input_ids, text_mask, token_type_ids, **record)
        video = self.encode_video(frame_features, frame_mask, **record)
        text_states, video_states = text.last_hidden_state, video.last_hidden_state
        joint = states = mask = pooled = None
        if self.has_cross:
            joint, mask, pooled = self.cross_encode(text_states, text_mask, video_states, frame_mask, **record)
            states = joint.last_hidden_state
        return UnivlModelOutput(
            text_last_hidden_state=text_states if states is None else states[:, : text_states.shape[1]],
            visual_last_hidden_state=video_states if states is None else states[:, text_states.shape[1] :],
            pooled_output=pooled,
            text_embeds=masked_mean(text_states[:, 1:], text_mask[:, 1:]),
            visual_embeds=masked_mean(video_states, frame_mask),
            last_hidden_state=states,
            attention_mask=mask,
            text_encoder_last_hidden_state=text_states,
            visual_encoder_last_hidden_state=video_states,
            **stream_records(text=text, visual=video, cross=joint),
        )

    def pairwise_alignment_scores(
        self,
        text_states: torch.Tensor,
        text_mask: torch.Tensor,
        video_states: torch.Tensor,
        video_mask: torch.Tensor,
        head: nn.Linear,
        output_attentions: bool = False, output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, StreamOutput, torch.Tensor]:
        """Cross-encode every (text i, video j) pair; returns the (texts, videos) scores ``head(pooled)`` and the cross
        encoder's output (with its records) and mask for the matched pairs (i, i) (used by the other cross objectives)."""
        texts, videos = text_states.shape[0], video_states.shape[0]
        text_index = torch.arange(texts, device=text_states.device).repeat_interleave(videos)
        video_index = torch.arange(videos, device=text_states.device).repeat(texts)
        joint, mask, pooled = self.cross_encode(
            text_states[text_index], text_mask[text_index], video_states[video_index], video_mask[video_index],
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )
        scores = head(pooled).squeeze(-1).view(texts, videos)
        diagonal = torch.arange(min(texts, videos), device=text_states.device) * (videos + 1)
        matched = StreamOutput(
            last_hidden_state=joint.last_hidden_state[diagonal],
            hidden_states=_record_rows(joint.hidden_states, diagonal),
            attentions=_record_rows(joint.attentions, diagonal),
        )
        return scores, matched, mask[diagonal]


def _check_targets(input_ids: torch.Tensor, frame_features: torch.Tensor, **targets: torch.Tensor | None) -> None:
    batch, length = input_ids.shape
    check_target_shapes(targets, {
        "labels": ((batch, length), "integer token ids, -100 where nothing is predicted"),
        "masked_frames": (tuple(frame_features.shape[:2]), "1 where a frame is masked"),
        "frame_feature_targets": (tuple(frame_features.shape), "float features of the unmasked frames"),
        "contrastive_positive_mask": ((batch, batch), "True where text i and video j show the same video"),
    })


def _keep_cls_and_sep(attention_mask: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
    """EnhancedV: for the ``drop`` rows, attend only to the first token ([CLS]) and the last valid one ([SEP])."""
    last = attention_mask.sum(-1, keepdim=True) - 1
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)[None, :]
    cls_sep = ((positions == 0) | (positions == last)).to(attention_mask.dtype)
    return torch.where(drop[:, None], cls_sep, attention_mask)


def _flat(tensor: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The entries of a (B, L) tensor at flat row indices (``select_rows``)."""
    return tensor.reshape(-1).index_select(0, rows)


class UnivlForPreTraining(UnivlPreTrainedModel):
    """UniVL with its pretraining objectives (each on when its ``config.loss_weights`` entry is > 0):

    - ``contrastive`` (video-text joint): MIL-NCE over the dot products of the mean-pooled unmasked text and video
      encodings (``contrastive_positive_mask`` marks texts of the same video as positives);
    - ``mlm`` (conditioned MLM on the cross encoder, ``labels``);
    - ``frame_feature`` (conditioned masked frame modelling: NCE against every valid frame of the batch,
      ``masked_frames`` / ``frame_feature_targets``; masked frames are zeroed by the collator);
    - ``alignment``: cross-encoder ``[CLS]`` score of every (text, video) pair, softmax over the videos (other
      copies of a text's own video, ``contrastive_positive_mask``, are left out of its softmax);
    - ``reconstruction``: the decoder regenerates the caption from the cross-encoder output.

    Stage I (``config.stage=1``) has only the joint objective; EnhancedV (``enhance_visual_probability``) drops
    the encoder text of some training samples to ``[CLS] [SEP]`` (their MLM targets are dropped too). The rows every
    objective predicts are found with one device sync (``select_rows``).
    """

    hub_auto_class = "AutoModelForPreTraining"
    _tied_weights_keys = {
        "mlm_head.decoder.weight": "univl.embeddings.word_embeddings.weight",
        "decoder_head.decoder.weight": "univl.embeddings.word_embeddings.weight",
    }

    def __init__(self, config: UnivlConfig):
        super().__init__(config)
        self.univl = UnivlModel(config)
        hidden, eps = config.hidden_size, config.layer_norm_eps
        stage_two = config.stage == 2
        self.mlm_head = MaskedLanguageModelingHead(hidden, config.vocab_size, config.hidden_act, eps) if stage_two else None
        self.frame_head = UnivlFramePredictionHead(config) if stage_two else None
        self.alignment_head = nn.Linear(hidden, 1) if stage_two else None
        self.decoder_head = MaskedLanguageModelingHead(hidden, config.vocab_size, config.hidden_act, eps) if stage_two else None
        if not stage_two:
            self._tied_weights_keys = {}
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        frame_features: torch.Tensor | None = None, frame_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None, masked_frames: torch.Tensor | None = None,
        frame_feature_targets: torch.Tensor | None = None, contrastive_positive_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None, output_hidden_states: bool | None = None,
    ) -> UnivlForPreTrainingOutput:
        config = self.config
        self.check_inputs(input_ids, attention_mask, token_type_ids, frame_features, frame_attention_mask)
        _check_targets(
            input_ids, frame_features, labels=labels, masked_frames=masked_frames,
            frame_feature_targets=frame_feature_targets, contrastive_positive_mask=contrastive_positive_mask,
        )
        if config.objective_enabled("frame_feature") and (masked_frames is None) != (frame_feature_targets is None):
            raise ValueError("masked_frames and frame_feature_targets: pass both (from the collator) or neither")
        record = recording_flags(config, output_attentions, output_hidden_states)
        text_mask = _ones_mask(input_ids, attention_mask)
        frame_mask = _ones_mask(frame_features, frame_attention_mask)
        original_ids = input_ids if labels is None else torch.where(labels != IGNORE_INDEX, labels, input_ids)
        original_frames = frame_features if frame_feature_targets is None else frame_feature_targets
        model = self.univl
        losses: dict[str, torch.Tensor] = {}
        joint_scores = alignment_scores = None
        text = video = joint = decoded = None
        cross_objectives = config.stage == 2 and any(
            config.objective_enabled(name) for name in ("mlm", "frame_feature", "alignment", "reconstruction")
        )

        if config.objective_enabled("contrastive"):
            unmasked_record = {name: False for name in record} if cross_objectives else record
            text = model.encode_text(original_ids, text_mask, token_type_ids, **unmasked_record)
            video = model.encode_video(original_frames, frame_mask, **unmasked_record)
            joint_scores = (
                masked_mean(text.last_hidden_state[:, 1:], text_mask[:, 1:]) @ masked_mean(video.last_hidden_state, frame_mask).T
            )
            positives = contrastive_positive_mask
            if positives is None:
                positives = torch.eye(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            losses["contrastive"] = mil_nce_loss(joint_scores, positives)

        if cross_objectives:
            encoder_mask = text_mask
            if self.training and config.enhance_visual_probability > 0:
                drop = torch.rand(input_ids.shape[0], device=input_ids.device) < config.enhance_visual_probability
                encoder_mask = _keep_cls_and_sep(text_mask, drop)
                if labels is not None:
                    labels = labels.masked_fill(drop[:, None], IGNORE_INDEX)
            text_length = input_ids.shape[1]
            # Every row an objective predicts, found with one device sync.
            selections: dict[str, torch.Tensor] = {}
            if config.objective_enabled("mlm") and labels is not None:
                selections["mlm"] = labels != IGNORE_INDEX
            if config.objective_enabled("frame_feature") and masked_frames is not None:
                selections["masked_frames"] = masked_frames.bool() & frame_mask.bool()
                selections["valid_frames"] = frame_mask.bool()
            # A one-token caption ([CLS] alone) has no next token to reconstruct.
            if config.objective_enabled("reconstruction") and text_length > 1:
                reconstruction_targets = original_ids[:, 1:].masked_fill(text_mask[:, 1:] == 0, IGNORE_INDEX)
                selections["reconstruction"] = reconstruction_targets != IGNORE_INDEX
            rows = dict(zip(selections, select_rows(*selections.values())))

            text = model.encode_text(input_ids, encoder_mask, token_type_ids, **record)
            video = model.encode_video(frame_features, frame_mask, **record)
            text_states, video_states = text.last_hidden_state, video.last_hidden_state
            if config.objective_enabled("alignment"):
                alignment_scores, joint, joint_mask = model.pairwise_alignment_scores(
                    text_states, encoder_mask, video_states, frame_mask, self.alignment_head, **record
                )
                losses["alignment"] = diagonal_cross_entropy(alignment_scores, contrastive_positive_mask)
            else:
                joint, joint_mask, _ = model.cross_encode(text_states, encoder_mask, video_states, frame_mask, **record)
            joint_states = joint.last_hidden_state
            if "mlm" in rows:
                logits = self.mlm_head(joint_states[:, :text_length], rows["mlm"])
                losses["mlm"] = classification_loss(logits, _flat(labels, rows["mlm"]))
            if "masked_frames" in rows:
                predictions = self.frame_head(joint_states[:, text_length:], model.visual_embeddings.proj.weight)
                losses["frame_feature"] = frame_nce_loss(
                    predictions, model.video_norm(original_frames), frame_mask, rows["masked_frames"], rows["valid_frames"]
                )
            if "reconstruction" in rows:
                decoded = model.decode(input_ids[:, :-1], text_mask[:, :-1], joint_states, joint_mask, **record)
                logits = self.decoder_head(decoded.last_hidden_state, rows["reconstruction"])
                losses["reconstruction"] = classification_loss(logits, _flat(reconstruction_targets, rows["reconstruction"]))

        loss = sum(config.loss_weights[name] * value for name, value in losses.items()) if losses else None
        return UnivlForPreTrainingOutput(
            loss=loss,
            contrastive_loss=losses.get("contrastive"),
            mlm_loss=losses.get("mlm"),
            frame_feature_loss=losses.get("frame_feature"),
            alignment_loss=losses.get("alignment"),
            reconstruction_loss=losses.get("reconstruction"),
            joint_scores=joint_scores,
            alignment_scores=alignment_scores,
            **stream_records(text=text, visual=video, cross=joint, decoder=decoded),
        )


class UnivlTwoStageScoring:
    """Two-stage retrieval on [`UnivlForVideoTextRetrieval`]: the text encoder and the video encoder run once per
    item (their states are cached by a retrieval index); the first stage compares the FT-Joint embeddings (the
    L2-normalised mean-pooled encodings, text tokens after ``[CLS]``); the second stage is the model's own score:
    the same cosine in ``"joint"`` mode, the cross encoder and ``alignment_head`` per pair in ``"align"`` mode.

    Frames sit at fixed cross-encoder positions (``config.frame_position_offset``), so a cached text scores the same
    whatever it was padded to.
    """

    def encode_text_for_retrieval(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None
    ) -> UnimodalEncoding:
        """Text encoder states, mask and FT-Joint embeddings of a batch of captions."""
        mask = retrieval_text_mask(input_ids, attention_mask)
        states = self.univl.encode_text(input_ids, mask, token_type_ids).last_hidden_state
        return UnimodalEncoding(states=states, mask=mask, embeddings=_joint_embeddings(states[:, 1:], mask[:, 1:]))

    def encode_visual_for_retrieval(
        self, frame_features: torch.Tensor, frame_attention_mask: torch.Tensor | None = None
    ) -> UnimodalEncoding:
        """Video encoder states, mask and FT-Joint embeddings of a batch of clips (checked like ``forward``)."""
        placeholder_text = retrieval_placeholder_text(frame_features, "frame_features", "frames", self.config.frame_feature_size)
        self.check_inputs(
            input_ids=placeholder_text, attention_mask=None, token_type_ids=None, frame_features=frame_features,
            frame_attention_mask=frame_attention_mask,
        )
        mask = _ones_mask(frame_features, frame_attention_mask)
        states = self.univl.encode_video(frame_features, mask).last_hidden_state
        return UnimodalEncoding(states=states, mask=mask, embeddings=_joint_embeddings(states, mask))

    def score_encoded_pairs(self, text: UnimodalEncoding, visual: UnimodalEncoding) -> torch.Tensor:
        """Scores of row-aligned (text, video) cached encodings, as ``forward``'s ``logits`` for each pair."""
        if self.config.retrieval_mode == "joint":
            text_embeds = _joint_embeddings(text.states[:, 1:], text.mask[:, 1:])
            return (text_embeds * _joint_embeddings(visual.states, visual.mask)).sum(-1)
        _, _, pooled = self.univl.cross_encode(text.states, text.mask, visual.states, visual.mask)
        return self.alignment_head(pooled).squeeze(-1).float()


def _joint_embeddings(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return nn.functional.normalize(masked_mean(states, mask).float(), dim=-1)


class UnivlForVideoTextRetrieval(UnivlTwoStageScoring, UnivlPreTrainedModel):
    """Text-to-video retrieval: ``logits[i, j]`` scores text i against video j for every pair of the batch.

    ``config.retrieval_mode="joint"`` (FT-Joint) scores by the cosine of the mean-pooled text and video encodings;
    ``"align"`` (FT-Align) by ``alignment_head`` on the cross encoder's ``[CLS]`` of each pair. The loss (with
    ``return_loss=True`` or ``labels``) is the bidirectional max-margin ranking loss (margin
    ``config.retrieval_margin``) over the in-batch matrix; with ``labels`` (1 matched, 0 not; e.g. from caption
    swapping) only the matched pairs form that matrix.
    """

    hub_auto_class = "AutoModelForSequenceClassification"

    def __init__(self, config: UnivlConfig):
        super().__init__(config)
        self.univl = UnivlModel(config)
        self.alignment_head = nn.Linear(config.hidden_size, 1) if config.stage == 2 else None
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        frame_features: torch.Tensor | None = None, frame_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None, return_loss: bool = False,
        output_attentions: bool | None = None, output_hidden_states: bool | None = None,
    ) -> UnivlRetrievalOutput:
        config = self.config
        self.check_inputs(input_ids, attention_mask, token_type_ids, frame_features, frame_attention_mask)
        check_match_labels(labels, input_ids.shape[0])
        record = recording_flags(config, output_attentions, output_hidden_states)
        text_mask = _ones_mask(input_ids, attention_mask)
        frame_mask = _ones_mask(frame_features, frame_attention_mask)
        if labels is not None:
            keep = labels == 1
            if not torch.compiler.is_compiling() and not bool(keep.any()):
                raise ValueError("labels: no matched pair (label 1) in the batch; the in-batch ranking needs at least one")
            input_ids, text_mask, frame_features, frame_mask = (
                input_ids[keep], text_mask[keep], frame_features[keep], frame_mask[keep]
            )
            token_type_ids = None if token_type_ids is None else token_type_ids[keep]
        model = self.univl
        text = model.encode_text(input_ids, text_mask, token_type_ids, **record)
        video = model.encode_video(frame_features, frame_mask, **record)
        text_embeds = _joint_embeddings(text.last_hidden_state[:, 1:], text_mask[:, 1:])
        visual_embeds = _joint_embeddings(video.last_hidden_state, frame_mask)
        joint = None
        if config.retrieval_mode == "joint":
            logits = text_embeds @ visual_embeds.T
        else:
            logits, joint, _ = model.pairwise_alignment_scores(
                text.last_hidden_state, text_mask, video.last_hidden_state, frame_mask, self.alignment_head, **record
            )
        loss = None
        if (return_loss or labels is not None) and logits.shape[0] > 0:
            loss = max_margin_ranking_loss(logits, config.retrieval_margin)
        return UnivlRetrievalOutput(
            loss=loss, logits=logits, text_embeds=text_embeds, visual_embeds=visual_embeds,
            **stream_records(text=text, visual=video, cross=joint),
        )


class UnivlForCaptioning(UnivlPreTrainedModel, GenerationMixin):
    """Video captioning: encoders -> cross encoder -> decoder, trained with teacher forcing, decoded with ``generate``.

    The encoder text (``input_ids``) is optional: without it every sample gets ``[CLS] [SEP]`` (UniVL's MSR-VTT
    setting); with it (e.g. a transcript) the caption is conditioned on it too. ``labels`` are the caption ids
    followed by ``[SEP]`` (-100 = padding); the decoder input is ``[CLS]`` + labels shifted right.

    ``generate(frame_features=..., frame_attention_mask=..., [input_ids=...])`` encodes once and decodes with
    transformers' ``GenerationMixin`` (default: beam search with ``config.num_beams`` = 5 beams, up to
    ``config.max_caption_length`` tokens, stopping at ``[SEP]``, no length penalty, as in the release). The decoder
    has no key/value cache: each step re-runs the (small) decoder over the prefix.
    """

    hub_auto_class = "AutoModelForImageTextToText"
    vocabulary_head_name = "decoder_head"
    _tied_weights_keys = {"decoder_head.decoder.weight": "univl.embeddings.word_embeddings.weight"}

    def __init__(self, config: UnivlConfig):
        super().__init__(config)
        if config.stage != 2:
            raise ValueError("UnivlForCaptioning needs the cross encoder and decoder: config.stage must be 2")
        self.univl = UnivlModel(config)
        self.decoder_head = MaskedLanguageModelingHead(
            config.hidden_size, config.vocab_size, config.hidden_act, config.layer_norm_eps
        )
        self.post_init()
        self.generation_config = GenerationConfig(
            bos_token_id=config.bos_token_id,
            eos_token_id=config.eos_token_id,
            pad_token_id=config.pad_token_id,
            decoder_start_token_id=config.bos_token_id,
            num_beams=config.num_beams,
            max_length=config.max_caption_length,
            length_penalty=0.0,
            early_stopping=True,
            use_cache=False,
        )

    def encode(
        self,
        frame_features: torch.Tensor | None, frame_attention_mask: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        output_attentions: bool = False, output_hidden_states: bool = False,
    ) -> UnivlModelOutput:
        """Check the inputs and run the encoders and the cross encoder; returns the joint states
        (``last_hidden_state``), their ``attention_mask`` and the encoders' records."""
        if frame_features is None or frame_features.dim() != 3:
            raise ValueError(
                f"frame_features: expected a (batch, frames, {self.config.frame_feature_size}) float tensor, got "
                f"{None if frame_features is None else tuple(frame_features.shape)}"
            )
        if input_ids is None:
            start_end = [self.config.bos_token_id, self.config.eos_token_id]
            input_ids = torch.tensor([start_end], device=frame_features.device).expand(frame_features.shape[0], 2)
            attention_mask = token_type_ids = None
        return self.univl(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, frame_features=frame_features,
            frame_attention_mask=frame_attention_mask, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, return_dict=True,
        )

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        frame_features: torch.Tensor | None = None, frame_attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None, decoder_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None, encoder_attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None, output_hidden_states: bool | None = None,
        **kwargs,
    ) -> UnivlCaptioningOutput:
        """Next-token logits of the caption; pass ``encoder_hidden_states`` / ``encoder_attention_mask`` (from
        :meth:`encode`) instead of the video and text inputs to skip the encoders."""
        record = recording_flags(self.config, output_attentions, output_hidden_states)
        if labels is not None and (labels.dim() != 2 or labels.is_floating_point()):
            raise ValueError(f"labels: expected integer caption ids of shape (batch, caption_length), got {tuple(labels.shape)}")
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("decoder_input_ids or labels: one is required (the caption to score or to learn)")
            start = labels.new_full((labels.shape[0], 1), self.config.bos_token_id)
            shifted = labels[:, :-1]
            decoder_input_ids = torch.cat([start, shifted.masked_fill(shifted == IGNORE_INDEX, self.config.pad_token_id)], 1)
            decoder_attention_mask = torch.cat([torch.ones_like(start), (shifted != IGNORE_INDEX).long()], 1)
        encoder_records = {}
        if encoder_hidden_states is None:
            encoded = self.encode(frame_features, frame_attention_mask, input_ids, attention_mask, token_type_ids, **record)
            encoder_hidden_states, encoder_attention_mask = encoded.last_hidden_state, encoded.attention_mask
            encoder_records = encoded.encoder_records()
        if labels is not None and labels.shape != decoder_input_ids.shape:
            raise ValueError(f"labels: expected shape {tuple(decoder_input_ids.shape)} like decoder_input_ids, got {tuple(labels.shape)}")
        decoded = self.univl.decode(
            decoder_input_ids, decoder_attention_mask, encoder_states=encoder_hidden_states, encoder_mask=encoder_attention_mask,
            **record,
        )
        logits = self.decoder_head(decoded.last_hidden_state)
        loss = classification_loss(logits, labels) if labels is not None else None
        return UnivlCaptioningOutput(
            loss=loss, logits=logits, encoder_last_hidden_state=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask,
            **encoder_records, **stream_records(decoder=decoded),
        )

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> dict[str, torch.Tensor | None]:
        """Feed the whole generated prefix to the decoder (no cache) with the encoder output computed once."""
        return {
            "decoder_input_ids": input_ids,
            "decoder_attention_mask": attention_mask,
            "encoder_hidden_states": encoder_hidden_states,
            "encoder_attention_mask": encoder_attention_mask,
        }

    @torch.no_grad()
    def generate(
        self,
        frame_features: torch.Tensor | None = None, frame_attention_mask: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """Caption token ids (batch, length) starting with ``[CLS]``; keyword arguments go to ``GenerationMixin.generate``."""
        encoded = self.encode(frame_features, frame_attention_mask, input_ids, attention_mask, token_type_ids)
        states, mask = encoded.last_hidden_state, encoded.attention_mask
        start = torch.full((states.shape[0], 1), self.generation_config.bos_token_id, dtype=torch.long, device=states.device)
        # The decoder keeps no key/value cache; a generation config rebuilt from config.json (a folder saved without
        # generation_config.json, e.g. a converted release) would otherwise ask for one.
        kwargs.setdefault("use_cache", False)
        return super().generate(start, encoder_hidden_states=states, encoder_attention_mask=mask, **kwargs)
