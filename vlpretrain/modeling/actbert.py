"""ActBERT (Zhu & Yang, CVPR 2020): word, region and action streams joined by tangled transformer blocks.

Follows the PaddleVideo port (``BertForMultiModalPreTraining``), the only code: post-LN BERT layers per stream,
ReLU poolers, ``dropout(p_text * p_region + p_action)`` matching fusion, MLM / masked object (KL) / masked action /
matching heads. See [`ActBertConfig`] for the decisions where the spec is unverified, including the fix of the
port's unused ``value_av`` projection in the tangled block.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from itertools import groupby

import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from ..configuration.actbert import ActBertConfig
from .base import VLPreTrainedModel, check_target_shapes, check_video_text_inputs
from .embeddings import SummedRegionEmbeddings, TextEmbeddings, prepend_global_image_token
from .heads import AnswerHead, MaskedLanguageModelingHead, Pooler, RegionPredictionHead
from .layers import FeedForward, MultiHeadAttention, ResidualOutput, TransformerLayer, key_padding_mask, run_layers
from .losses import IGNORE_INDEX, classification_loss, region_distribution_loss, select_rows
from .outputs import ImageTextRetrievalOutput, StreamOutput, VisualQuestionAnsweringOutput, recording_flags, stream_records


@dataclass
class ActBertRecords(ModelOutput):
    """The per-layer records of the ActBERT outputs: with ``output_hidden_states``, each stream's embeddings and the
    output of every layer and tangled block that updates it; with ``output_attentions``, each stream's self-attention
    weights and, per tangled block, the weights of (actions -> regions, actions -> words, regions, words, actions)."""

    text_hidden_states: tuple[torch.Tensor, ...] | None = None
    region_hidden_states: tuple[torch.Tensor, ...] | None = None
    action_hidden_states: tuple[torch.Tensor, ...] | None = None
    text_attentions: tuple[torch.Tensor, ...] | None = None
    region_attentions: tuple[torch.Tensor, ...] | None = None
    action_attentions: tuple[torch.Tensor, ...] | None = None
    tangled_attentions: tuple[tuple[torch.Tensor, ...], ...] | None = None

    def records(self) -> dict[str, tuple | None]:
        """The record fields by name, for a task head's output."""
        return {name: getattr(self, name) for name in _RECORD_FIELDS}


_RECORD_FIELDS = tuple(field.name for field in fields(ActBertRecords))


@dataclass
class ActBertEncoding(ModelOutput):
    """Final states of the three streams (regions include the global token at index 0), their pooled vectors
    (ReLU poolers to ``bi_hidden_size``) and the fused ``pooled_output`` used for matching."""

    text_last_hidden_state: torch.Tensor | None = None
    region_last_hidden_state: torch.Tensor | None = None
    action_last_hidden_state: torch.Tensor | None = None
    text_pooled: torch.Tensor | None = None
    region_pooled: torch.Tensor | None = None
    action_pooled: torch.Tensor | None = None
    pooled_output: torch.Tensor | None = None


@dataclass
class ActBertModelOutput(ActBertRecords, ActBertEncoding):
    """[`ActBertModel`]'s outputs: those of [`ActBertEncoding`], then the [`ActBertRecords`]."""


@dataclass
class ActBertPreTrainingLosses(ModelOutput):
    """Losses (each unweighted; ``loss`` is their weighted sum) and predictions of [`ActBertForPreTraining`].

    With ``labels``, ``prediction_logits`` holds the labelled positions only; ``action_logits`` (B, F, actions)
    and ``region_object_logits`` (B, R, classes) exclude the global region token.
    """

    loss: torch.Tensor | None = None
    mlm_loss: torch.Tensor | None = None
    masked_action_loss: torch.Tensor | None = None
    region_class_loss: torch.Tensor | None = None
    matching_loss: torch.Tensor | None = None
    prediction_logits: torch.Tensor | None = None
    action_logits: torch.Tensor | None = None
    region_object_logits: torch.Tensor | None = None
    matching_logits: torch.Tensor | None = None
    pooled_output: torch.Tensor | None = None


@dataclass
class ActBertForPreTrainingOutput(ActBertRecords, ActBertPreTrainingLosses):
    """[`ActBertForPreTraining`]'s outputs: those of [`ActBertPreTrainingLosses`], then the [`ActBertRecords`]."""


@dataclass
class ActBertRetrievalOutput(ActBertRecords, ImageTextRetrievalOutput):
    """[`ActBertForVideoTextRetrieval`]'s outputs: those of [`ImageTextRetrievalOutput`], then the [`ActBertRecords`]."""


@dataclass
class ActBertVideoQuestionAnsweringOutput(ActBertRecords, VisualQuestionAnsweringOutput):
    """[`ActBertForVideoQuestionAnswering`]'s outputs: those of [`VisualQuestionAnsweringOutput`], then the
    [`ActBertRecords`]."""


def _resize(states: torch.Tensor, length: int) -> torch.Tensor:
    """Nearest-neighbour resize of (B, L, H) along the sequence to (B, length, H) (the port's ``F.interpolate``)."""
    return nn.functional.interpolate(states.transpose(1, 2), size=length, mode="nearest").transpose(1, 2)


class TangledLayer(GradientCheckpointingLayer):
    """One tangled transformer block (the port's ``BertConnectionLayer``: ``BertEntAttention`` + ``BertEntOutput`` +
    per-stream FFNs).

    Actions query regions (``c_av``) and words (``c_at``); those action-guided contexts, projected and resized to the
    other stream's length, are added to the word keys/values (from ``c_av``) and to the region keys/values (from
    ``c_at``); then each stream attends with its own queries. The port projects ``c_av`` for the word values with
    ``value_at`` and leaves ``value_av`` unused; here ``value_av`` does it (bug fixed; the converter copies the port's
    ``value_at`` into ``value_av`` so converted weights compute the same function).
    """

    def __init__(self, config: ActBertConfig):
        super().__init__()
        bi = config.bi_hidden_size
        self.region_qkv = nn.Linear(config.v_hidden_size, 3 * bi)
        self.text_qkv = nn.Linear(config.hidden_size, 3 * bi)
        self.action_qkv = nn.Linear(config.a_hidden_size, 3 * bi)
        self.key_at, self.value_at = nn.Linear(bi, bi), nn.Linear(bi, bi)
        self.key_av, self.value_av = nn.Linear(bi, bi), nn.Linear(bi, bi)
        self.attention = MultiHeadAttention(config, config.bi_num_attention_heads, config.attention_probs_dropout_prob)
        dropout, eps = config.hidden_dropout_prob, config.layer_norm_eps
        self.region_output = ResidualOutput(bi, config.v_hidden_size, dropout, eps)
        self.text_output = ResidualOutput(bi, config.hidden_size, dropout, eps)
        self.action_output = ResidualOutput(bi, config.a_hidden_size, dropout, eps)
        self.region_ffn = FeedForward(config, config.v_hidden_size, config.v_intermediate_size)
        self.text_ffn = FeedForward(config, config.hidden_size, config.intermediate_size)
        self.action_ffn = FeedForward(config, config.a_hidden_size, config.a_intermediate_size)

    def forward(
        self,
        text: torch.Tensor,
        regions: torch.Tensor,
        actions: torch.Tensor,
        text_mask: torch.Tensor | None,
        region_mask: torch.Tensor | None,
        action_mask: torch.Tensor | None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor | None, ...]]:
        """The three updated streams and the attention weights of (actions -> regions, actions -> words, regions,
        words, actions) (None unless ``output_attentions``)."""
        region_q, region_k, region_v = self.region_qkv(regions).chunk(3, dim=-1)
        text_q, text_k, text_v = self.text_qkv(text).chunk(3, dim=-1)
        action_q, action_k, action_v = self.action_qkv(actions).chunk(3, dim=-1)
        context_av, weights_av = self.attention(action_q, region_k, region_v, region_mask, output_attentions)
        context_at, weights_at = self.attention(action_q, text_k, text_v, text_mask, output_attentions)
        text_k = text_k + _resize(self.key_av(context_av), text.shape[1])
        text_v = text_v + _resize(self.value_av(context_av), text.shape[1])
        region_k = region_k + _resize(self.key_at(context_at), regions.shape[1])
        region_v = region_v + _resize(self.value_at(context_at), regions.shape[1])
        region_context, region_weights = self.attention(region_q, region_k, region_v, region_mask, output_attentions)
        text_context, text_weights = self.attention(text_q, text_k, text_v, text_mask, output_attentions)
        action_context, action_weights = self.attention(action_q, action_k, action_v, action_mask, output_attentions)
        regions = self.region_ffn(self.region_output(region_context, regions))
        text = self.text_ffn(self.text_output(text_context, text))
        actions = self.action_ffn(self.action_output(action_context, actions))
        return text, regions, actions, (weights_av, weights_at, region_weights, text_weights, action_weights)


class ActionEmbeddings(nn.Module):
    """Action (clip) features -> ``a_hidden_size``: Linear [+ position] -> LayerNorm -> dropout. The port has no
    position embedding; ``config.action_position_embeddings`` adds one.

    A masked action whose feature was zeroed (``masked_frames`` and an all-zero row: 90 % of the masked actions, as the
    port's ``random_action``; the other 10 % keep their feature and enter as themselves) enters as a learned
    ``mask_embedding`` instead of its projected feature. The port projects the zeroed feature, i.e. uses the
    projection's bias; with that bias initialised to zero, the
    LayerNorm input of a masked action is a constant vector and its gradient is scaled by 1 / sqrt(eps) (1e6), which
    swamps the clipped gradient norm of every step. The converter sets ``mask_embedding`` to the port's bias.
    """

    def __init__(self, config: ActBertConfig):
        super().__init__()
        self.feature_proj = nn.Linear(config.frame_feature_size, config.a_hidden_size)
        self.mask_embedding = nn.Embedding(1, config.a_hidden_size)
        self.position_embeddings = (
            nn.Embedding(config.max_position_embeddings, config.a_hidden_size) if config.action_position_embeddings else None
        )
        self.norm = nn.LayerNorm(config.a_hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, frame_features: torch.Tensor, masked_frames: torch.Tensor | None = None) -> torch.Tensor:
        embeddings = self.feature_proj(frame_features)
        if masked_frames is not None:
            zeroed = masked_frames.bool() & (frame_features == 0).all(-1)
            embeddings = torch.where(zeroed[..., None], self.mask_embedding.weight[0], embeddings)
        if self.position_embeddings is not None:
            embeddings = embeddings + self.position_embeddings.weight[: frame_features.shape[1]]
        return self.dropout(self.norm(embeddings))


def tangled_schedule(config: ActBertConfig) -> list[tuple[str, int]]:
    """Layer order of the three streams: for tangled block k, the not-yet-run text / region / action layers below
    ``t/v/a_ent_attention_id[k]``, then block k; after the last block, the remaining layers of every stream."""
    streams = (("text", config.num_hidden_layers, config.t_ent_attention_id),
               ("region", config.v_num_hidden_layers, config.v_ent_attention_id),
               ("action", config.a_num_hidden_layers, config.a_ent_attention_id))
    done = {name: 0 for name, _, _ in streams}
    order: list[tuple[str, int]] = []
    for block in range(len(config.t_ent_attention_id)):
        for name, _, ids in streams:
            order += [(name, index) for index in range(done[name], ids[block])]
            done[name] = ids[block]
        order.append(("tangled", block))
    for name, count, _ in streams:
        order += [(name, index) for index in range(done[name], count)]
    return order


def check_region_inputs(config: ActBertConfig, batch: int, region_features, region_boxes, region_attention_mask) -> None:
    """Regions of ActBERT: (B, R, region_feature_size) features, (B, R, 4) boxes in [0, 1], a 0/1 (B, R) mask.
    R may be 0 and a row of the mask may be all zeros (a video with no region: the global token alone)."""
    size = config.region_feature_size
    if region_features is None or region_boxes is None:
        raise ValueError(
            f"region_features: ActBERT needs region_features (batch, regions, {size}) and region_boxes (batch, regions, 4); "
            "for a video without regions pass zero regions (shape (batch, 0, ...)) or an all-zero region_attention_mask row"
        )
    if region_features.dim() != 3 or region_features.shape[0] != batch or region_features.shape[-1] != size:
        raise ValueError(f"region_features: expected shape ({batch}, regions, {size}) (config.region_feature_size), got {tuple(region_features.shape)}")
    if not region_features.is_floating_point():
        raise ValueError(f"region_features: expected a floating-point tensor, got {region_features.dtype}")
    regions = region_features.shape[1]
    if tuple(region_boxes.shape) != (batch, regions, 4) or not region_boxes.is_floating_point():
        raise ValueError(f"region_boxes: expected float (x1, y1, x2, y2) of shape ({batch}, {regions}, 4), got {tuple(region_boxes.shape)}")
    if region_attention_mask is not None and tuple(region_attention_mask.shape) != (batch, regions):
        raise ValueError(f"region_attention_mask: expected shape ({batch}, {regions}), got {tuple(region_attention_mask.shape)}")
    if torch.compiler.is_compiling():  # the value checks below read the tensors: eager calls only
        return
    if region_attention_mask is not None and ((region_attention_mask != 0) & (region_attention_mask != 1)).any():
        raise ValueError("region_attention_mask: expected values 0 or 1")
    valid = torch.ones(batch, regions, dtype=torch.bool, device=region_boxes.device) if region_attention_mask is None else region_attention_mask.bool()
    outside = (((region_boxes < 0) | (region_boxes > 1)).any(-1) | (region_boxes[..., 2] < region_boxes[..., 0])
               | (region_boxes[..., 3] < region_boxes[..., 1])) & valid
    if outside.any():
        raise ValueError("region_boxes: expected normalised (x1, y1, x2, y2) with 0 <= x1 <= x2 <= 1 and 0 <= y1 <= y2 <= 1")


class ActBertPreTrainedModel(VLPreTrainedModel):
    """Base class of the ActBERT models: config class, weight prefix, layers kept on one device."""

    config: ActBertConfig
    config_class = ActBertConfig
    base_model_prefix = "actbert"
    input_modalities = ("video", "image", "text")
    _no_split_modules = ["TransformerLayer", "TangledLayer", "TextEmbeddings", "SummedRegionEmbeddings", "ActionEmbeddings"]

    def text_stream_prefix(self) -> dict[str, str]:
        prefix = "" if self.base_model is self else f"{self.base_model_prefix}."
        return {"embeddings": f"{prefix}embeddings.", "layers": f"{prefix}text_layers."}

    def check_inputs(self, input_ids, attention_mask, token_type_ids, frame_features, frame_attention_mask,
                     region_features, region_boxes, region_attention_mask) -> None:
        """Validate every input before any compute (``ValueError`` naming the argument)."""
        max_frames = self.config.max_position_embeddings if self.config.action_position_embeddings else None
        check_video_text_inputs(
            self.config, input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            frame_features=frame_features, frame_attention_mask=frame_attention_mask, max_frames=max_frames,
        )
        check_region_inputs(
            self.config, input_ids.shape[0], region_features=region_features, region_boxes=region_boxes,
            region_attention_mask=region_attention_mask,
        )


class ActBertModel(ActBertPreTrainedModel):
    """The three ActBERT streams, the tangled blocks, the ReLU poolers and the matching fusion."""

    hub_auto_class = "AutoModel"

    def __init__(self, config: ActBertConfig):
        super().__init__(config)
        self.embeddings = TextEmbeddings(config)
        self.region_embeddings = SummedRegionEmbeddings(
            config.region_feature_size, config.v_hidden_size, config.layer_norm_eps, config.hidden_dropout_prob
        )
        self.action_embeddings = ActionEmbeddings(config)
        self.text_layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_hidden_layers))
        self.region_layers = nn.ModuleList(
            TransformerLayer(config, config.v_hidden_size, config.v_num_attention_heads, config.v_intermediate_size)
            for _ in range(config.v_num_hidden_layers)
        )
        self.action_layers = nn.ModuleList(
            TransformerLayer(config, config.a_hidden_size, config.a_num_attention_heads, config.a_intermediate_size)
            for _ in range(config.a_num_hidden_layers)
        )
        self.tangled_layers = nn.ModuleList(TangledLayer(config) for _ in range(len(config.t_ent_attention_id)))
        self.text_pooler = Pooler(config.hidden_size, config.bi_hidden_size, "relu")
        self.region_pooler = Pooler(config.v_hidden_size, config.bi_hidden_size, "relu")
        self.action_pooler = Pooler(config.a_hidden_size, config.bi_hidden_size, "relu")
        self.fusion_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.schedule = tangled_schedule(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        frame_features: torch.Tensor | None = None, frame_attention_mask: torch.Tensor | None = None,
        region_features: torch.Tensor | None = None, region_boxes: torch.Tensor | None = None,
        region_attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None, output_hidden_states: bool | None = None,
    ) -> ActBertModelOutput:
        """Encode words (``input_ids`` (B, T)), actions (``frame_features`` (B, F, D)) and regions
        (``region_features`` (B, R, D), ``region_boxes`` (B, R, 4)); invalid input raises ``ValueError`` first."""
        inputs = dict(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, frame_features=frame_features,
            frame_attention_mask=frame_attention_mask, region_features=region_features, region_boxes=region_boxes,
            region_attention_mask=region_attention_mask,
        )
        self.check_inputs(**inputs)
        return self.encode(**inputs, output_attentions=output_attentions, output_hidden_states=output_hidden_states)

    def encode(
        self,
        input_ids: torch.Tensor, attention_mask: torch.Tensor | None, token_type_ids: torch.Tensor | None,
        frame_features: torch.Tensor, frame_attention_mask: torch.Tensor | None,
        region_features: torch.Tensor, region_boxes: torch.Tensor, region_attention_mask: torch.Tensor | None,
        masked_frames: torch.Tensor | None = None,
        output_attentions: bool | None = None, output_hidden_states: bool | None = None,
    ) -> ActBertModelOutput:
        """The forward pass on checked inputs (used by the task heads); ``masked_frames`` (pretraining) marks the
        actions that enter as the learned mask embedding. Each run of one stream's layers between tangled blocks goes
        through ``run_layers``, which continues that stream's records."""
        record = recording_flags(self.config, output_attentions, output_hidden_states)
        implementation = self.config._attn_implementation
        region_features, region_boxes, region_mask = prepend_global_image_token(
            region_features, region_boxes, region_attention_mask
        )
        embeddings = {
            "text": self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids),
            "region": self.region_embeddings(region_features, region_boxes),
            "action": self.action_embeddings(frame_features, masked_frames),
        }
        given_masks = {"text": attention_mask, "region": region_mask, "action": frame_attention_mask}
        masks = {name: key_padding_mask(given_masks[name], states.dtype, implementation) for name, states in embeddings.items()}
        streams = {
            name: StreamOutput(
                last_hidden_state=states,
                hidden_states=(states,) if record["output_hidden_states"] else None,
                attentions=() if record["output_attentions"] else None,
            )
            for name, states in embeddings.items()
        }
        tangled_attentions = () if record["output_attentions"] else None
        for kind, steps in groupby(self.schedule, key=lambda step: step[0]):
            indices = [index for _, index in steps]
            if kind != "tangled":
                stream, layers = streams[kind], getattr(self, f"{kind}_layers")
                streams[kind] = run_layers(
                    [layers[index] for index in indices], stream.last_hidden_state, masks[kind],
                    recorded_states=stream.hidden_states, recorded_attentions=stream.attentions, **record,
                )
                continue
            for index in indices:
                *updated, weights = self.tangled_layers[index](
                    streams["text"].last_hidden_state, streams["region"].last_hidden_state,
                    streams["action"].last_hidden_state, text_mask=masks["text"], region_mask=masks["region"],
                    action_mask=masks["action"], output_attentions=record["output_attentions"],
                )
                for name, states in zip(("text", "region", "action"), updated):
                    recorded = streams[name].hidden_states
                    streams[name] = StreamOutput(
                        last_hidden_state=states, hidden_states=None if recorded is None else recorded + (states,),
                        attentions=streams[name].attentions,
                    )
                if tangled_attentions is not None:
                    tangled_attentions += (weights,)
        text, regions, actions = (streams[name].last_hidden_state for name in ("text", "region", "action"))
        text_pooled, region_pooled = self.text_pooler(text), self.region_pooler(regions)
        action_pooled = self.action_pooler(actions)
        if self.config.fusion_method == "mul":
            fused = self.fusion_dropout(text_pooled * region_pooled + action_pooled)
        else:
            fused = self.fusion_dropout(text_pooled + region_pooled + action_pooled)
        return ActBertModelOutput(
            text_last_hidden_state=text, region_last_hidden_state=regions, action_last_hidden_state=actions,
            text_pooled=text_pooled, region_pooled=region_pooled, action_pooled=action_pooled, pooled_output=fused,
            tangled_attentions=tangled_attentions, **stream_records(**streams),
        )


class ActBertForPreTraining(ActBertPreTrainedModel):
    """ActBERT with its four objectives: masked language modelling (``labels``), masked action classification
    (``masked_frames`` + ``action_labels``, one per video), masked object classification (``masked_regions`` +
    ``region_class_targets``, KL to the detector distribution) and cross-modal matching (``matched_labels``)."""

    hub_auto_class = "AutoModelForPreTraining"
    _tied_weights_keys = {"mlm_head.decoder.weight": "actbert.embeddings.word_embeddings.weight"}

    def __init__(self, config: ActBertConfig):
        super().__init__(config)
        self.actbert = ActBertModel(config)
        eps, act = config.layer_norm_eps, config.hidden_act
        self.mlm_head = MaskedLanguageModelingHead(config.hidden_size, config.vocab_size, act, eps)
        self.region_head = (
            RegionPredictionHead(config.v_hidden_size, {"object": config.num_object_labels}, act, eps)
            if config.objective_enabled("region_class") else None
        )
        self.action_head = (
            RegionPredictionHead(config.a_hidden_size, {"action": config.num_action_labels}, act, eps)
            if config.objective_enabled("masked_action") else None
        )
        self.matching_head = nn.Linear(config.bi_hidden_size, 2) if config.objective_enabled("matching") else None
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        frame_features: torch.Tensor | None = None, frame_attention_mask: torch.Tensor | None = None,
        region_features: torch.Tensor | None = None, region_boxes: torch.Tensor | None = None,
        region_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None, masked_frames: torch.Tensor | None = None, action_labels: torch.Tensor | None = None,
        masked_regions: torch.Tensor | None = None, region_class_targets: torch.Tensor | None = None,
        matched_labels: torch.Tensor | None = None, frame_feature_targets: torch.Tensor | None = None,
        output_attentions: bool | None = None, output_hidden_states: bool | None = None,
    ) -> ActBertForPreTrainingOutput:
        """``frame_feature_targets`` (from the collator) is accepted and unused: actions are classified, not regressed."""
        config = self.config
        inputs = dict(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, frame_features=frame_features,
            frame_attention_mask=frame_attention_mask, region_features=region_features, region_boxes=region_boxes,
            region_attention_mask=region_attention_mask,
        )
        self.check_inputs(**inputs)
        targets = dict(
            labels=labels, masked_frames=masked_frames, action_labels=action_labels, masked_regions=masked_regions,
            region_class_targets=region_class_targets, matched_labels=matched_labels,
        )
        _check_targets(config, input_ids, frame_features, region_features, **targets)
        encoded = self.actbert.encode(
            **inputs, masked_frames=masked_frames, output_attentions=output_attentions, output_hidden_states=output_hidden_states
        )
        losses: dict[str, torch.Tensor] = {}
        text = encoded.text_last_hidden_state
        if labels is not None and config.objective_enabled("mlm"):
            (rows,) = select_rows(labels != IGNORE_INDEX)
            prediction_logits = self.mlm_head(text, rows)
            losses["mlm"] = classification_loss(prediction_logits, labels.reshape(-1).index_select(0, rows))
        else:
            prediction_logits = self.mlm_head(text)
        action_logits = region_logits = matching_logits = None
        if self.action_head is not None:
            action_logits = self.action_head(encoded.action_last_hidden_state)["action"]
            if masked_frames is not None and action_labels is not None:
                selected = masked_frames.bool()
                if frame_attention_mask is not None:
                    selected = selected & frame_attention_mask.bool()
                action_targets = action_labels[:, None].expand_as(selected).masked_fill(~selected, IGNORE_INDEX)
                losses["masked_action"] = classification_loss(action_logits, action_targets)
        if self.region_head is not None:
            region_logits = self.region_head(encoded.region_last_hidden_state[:, 1:])["object"]
            if masked_regions is not None and region_class_targets is not None:
                selected = masked_regions.bool()
                if region_attention_mask is not None:
                    selected = selected & region_attention_mask.bool()
                losses["region_class"] = region_distribution_loss(region_logits, region_class_targets, selected)
        if self.matching_head is not None:
            matching_logits = self.matching_head(encoded.pooled_output)
            if matched_labels is not None:
                losses["matching"] = classification_loss(matching_logits, matched_labels)
        loss = sum(config.loss_weights[name] * value for name, value in losses.items()) if losses else None
        return ActBertForPreTrainingOutput(
            loss=loss, mlm_loss=losses.get("mlm"), masked_action_loss=losses.get("masked_action"),
            region_class_loss=losses.get("region_class"), matching_loss=losses.get("matching"),
            prediction_logits=prediction_logits, action_logits=action_logits, region_object_logits=region_logits,
            matching_logits=matching_logits, pooled_output=encoded.pooled_output, **encoded.records(),
        )


class ActBertPooledClassifier(ActBertPreTrainedModel):
    """The forward of the heads that classify the fused pooled vector (retrieval, video QA): check the inputs and the
    per-sample integer ``labels``, encode, classify with :meth:`classify`, cross-entropy against ``labels``; a head
    turns the result into its output type with :meth:`head_output`."""

    # What ``labels`` hold, for the error message of a bad one.
    labels_meaning = "class ids"

    def classify(self, pooled_output: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def head_output(self, **values) -> ModelOutput:
        raise NotImplementedError

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        frame_features: torch.Tensor | None = None, frame_attention_mask: torch.Tensor | None = None,
        region_features: torch.Tensor | None = None, region_boxes: torch.Tensor | None = None,
        region_attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
        output_attentions: bool | None = None, output_hidden_states: bool | None = None,
    ) -> ModelOutput:
        inputs = dict(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, frame_features=frame_features,
            frame_attention_mask=frame_attention_mask, region_features=region_features, region_boxes=region_boxes,
            region_attention_mask=region_attention_mask,
        )
        self.check_inputs(**inputs)
        batch = input_ids.shape[0]
        if labels is not None and (labels.is_floating_point() or tuple(labels.shape) != (batch,)):
            raise ValueError(f"labels: expected integer {self.labels_meaning} of shape ({batch},)")
        encoded = self.actbert.encode(**inputs, output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        logits = self.classify(encoded.pooled_output)
        loss = classification_loss(logits, labels) if labels is not None else None
        return self.head_output(loss=loss, logits=logits, pooled_output=encoded.pooled_output, **encoded.records())


class ActBertForVideoTextRetrieval(ActBertPooledClassifier):
    """ActBERT scoring (video, caption) pairs with the matching head on the fused poolers (the port's zero-shot
    retrieval); ``scores`` = matched minus mismatched logit, ``labels`` (1 matched, 0 not) train it."""

    hub_auto_class = "AutoModelForSequenceClassification"
    labels_meaning = "match labels"

    def __init__(self, config: ActBertConfig):
        super().__init__(config)
        self.actbert = ActBertModel(config)
        self.matching_head = nn.Linear(config.bi_hidden_size, 2)
        self.post_init()

    def classify(self, pooled_output: torch.Tensor) -> torch.Tensor:
        return self.matching_head(pooled_output)

    def head_output(self, **values) -> ActBertRetrievalOutput:
        logits = values["logits"]
        return ActBertRetrievalOutput(scores=logits[:, 1] - logits[:, 0], **values)


class ActBertForVideoQuestionAnswering(ActBertPooledClassifier):
    """ActBERT with an answer classifier over ``config.id2label`` on the fused pooled vector (the paper's video QA
    head is unverified; this is the package's two-layer ``AnswerHead``). ``labels``: answer ids (B,)."""

    hub_auto_class = "AutoModelForVisualQuestionAnswering"
    labels_meaning = "answer ids"

    def __init__(self, config: ActBertConfig):
        super().__init__(config)
        self.actbert = ActBertModel(config)
        self.qa_head = AnswerHead(config.bi_hidden_size, config.num_labels, eps=config.layer_norm_eps)
        self.post_init()

    def classify(self, pooled_output: torch.Tensor) -> torch.Tensor:
        return self.qa_head(pooled_output)

    def head_output(self, **values) -> ActBertVideoQuestionAnsweringOutput:
        return ActBertVideoQuestionAnsweringOutput(**values)


def _check_targets(config: ActBertConfig, input_ids: torch.Tensor, frame_features: torch.Tensor, region_features: torch.Tensor,
                   **targets: torch.Tensor | None) -> None:
    """Shapes and kinds of the pretraining targets against the inputs, before any compute."""
    batch = input_ids.shape[0]
    frames, regions = tuple(frame_features.shape[:2]), tuple(region_features.shape[:2])
    check_target_shapes(targets, {
        "labels": (tuple(input_ids.shape), "integer token ids, -100 where nothing is predicted"),
        "masked_frames": (frames, "1 where an action is masked"),
        "action_labels": ((batch,), "integer action class ids, one per video"),
        "masked_regions": (regions, "1 where a region is masked"),
        "region_class_targets": (regions + (config.num_object_labels,), "float detector class distributions"),
        "matched_labels": ((batch,), "integer match labels"),
    })
