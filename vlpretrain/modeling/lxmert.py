"""LXMERT (Tan & Bansal 2019): language, object-relation and cross-modality encoders, with every pretraining objective.

Faithful to airsplay/lxmert: text embeddings pad all three tables at index 0; the visual embedding is the
*mean* of the layer-normed feature and box projections; the cross-modality layer applies one cross-attention
module in both directions; the pooler is tanh on the final [CLS] state. Visual losses are weighted by
detector confidences over all regions (object, attribute) or by the masked-region indicator (features),
averaged over regions and scaled by ``config.loss_weights`` (1 / 0.15 by default), as in the original.

Package conventions that differ from the original code: ignored labels are -100 (the original uses -1) and
``matched_labels`` is 1 for a matching caption (the same as the original).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils.generic import can_return_tuple

from ..configuration.lxmert import LxmertConfig
from .base import VLPreTrainedModel, retrieval_region_mask, retrieval_text_mask
from .embeddings import RegionEmbeddings, TextEmbeddings
from .heads import AnswerHead, MaskedLanguageModelingHead, Pooler, RegionPredictionHead
from .layers import CrossModalityLayer, TransformerLayer, masked_mean, run_cross_modal_layers, run_layers
from .losses import (
    IGNORE_INDEX,
    classification_loss,
    in_batch_contrastive_loss,
    region_feature_regression_loss,
    select_rows,
    weighted_region_classification_loss,
)
from .lxmert_names import accepts_transformers_lxmert_names
from .outputs import StreamOutput, TwoStreamModelOutput, UnimodalEncoding
from .two_stream import (
    TwoStreamBaseModel,
    TwoStreamPreTrainingOutput,
    TwoStreamQuestionAnswering,
    TwoStreamRecords,
    TwoStreamRetrieval,
    TwoStreamRetrievalOutput,
    TwoStreamTaskHead,
    checked_image_text_inputs,
    two_stream_model_output,
    two_stream_records,
    weighted_loss,
)


class LxmertPreTrainedModel(VLPreTrainedModel):
    """Base class of the LXMERT models: config class, weight prefix and layers that must stay on one device."""

    config: LxmertConfig
    config_class = LxmertConfig
    base_model_prefix = "lxmert"
    _no_split_modules = ["TransformerLayer", "CrossModalityLayer", "TextEmbeddings", "RegionEmbeddings"]

    def text_stream_prefix(self) -> dict[str, str]:
        prefix = "" if self.base_model is self else f"{self.base_model_prefix}."
        return {"embeddings": f"{prefix}embeddings.", "layers": f"{prefix}text_layers."}


class LxmertModel(TwoStreamBaseModel, LxmertPreTrainedModel):
    """The LXMERT encoder: text layers, object-relation layers, cross-modality layers and the [CLS] pooler."""

    hub_auto_class = "AutoModel"

    def __init__(self, config: LxmertConfig):
        super().__init__(config)
        self.embeddings = TextEmbeddings(config, pad_all_tables=True)
        self.region_embeddings = RegionEmbeddings(
            config.region_feature_size,
            config.hidden_size,
            box_size=config.region_box_size,
            combine="mean",
            eps=config.layer_norm_eps,
            dropout=config.hidden_dropout_prob,
        )
        self.text_layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_text_layers))
        self.visual_layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_visual_layers))
        self.cross_layers = nn.ModuleList(CrossModalityLayer(config) for _ in range(config.num_cross_layers))
        self.pooler = Pooler(config.hidden_size, config.hidden_size, "tanh")
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    forward = accepts_transformers_lxmert_names(TwoStreamBaseModel.forward)

    def encode_text(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        *,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> StreamOutput:
        """The language layers alone (embeddings, then ``num_text_layers`` self-attention layers)."""
        text = self.embeddings(input_ids, token_type_ids, inputs_embeds=inputs_embeds)
        return run_layers(
            self.text_layers, text, self.key_mask(attention_mask, text),
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )

    def encode_regions(
        self,
        region_features: torch.Tensor,
        region_boxes: torch.Tensor,
        region_attention_mask: torch.Tensor | None = None,
        *,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> tuple[StreamOutput, torch.Tensor | None]:
        """The object-relation layers alone (region embeddings, then ``num_visual_layers`` self-attention layers);
        returns the stream and its region mask."""
        visual = self.region_embeddings(region_features, region_boxes)
        stream = run_layers(
            self.visual_layers, visual, self.key_mask(region_attention_mask, visual),
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )
        return stream, region_attention_mask

    def cross_encode(
        self,
        text: StreamOutput,
        visual: StreamOutput,
        attention_mask: torch.Tensor | None = None,
        region_attention_mask: torch.Tensor | None = None,
        *,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> TwoStreamModelOutput:
        """The cross-modality layers and the pooler on the outputs of ``encode_text`` and ``encode_regions``.

        Hidden states and attentions continue the streams' own records; two-stage retrieval calls this on cached
        stream states, so only these layers run per (query, candidate) pair.
        """
        crossed_text, crossed_visual, cross_attentions = run_cross_modal_layers(
            self.cross_layers,
            text,
            visual,
            self.key_mask(attention_mask, text.last_hidden_state),
            self.key_mask(region_attention_mask, visual.last_hidden_state),
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        return two_stream_model_output(
            crossed_text,
            crossed_visual,
            cross_attentions,
            self.pooler(crossed_text.last_hidden_state),
            text_encoder_last_hidden_state=text.last_hidden_state,
            visual_encoder_last_hidden_state=visual.last_hidden_state,
        )


class LxmertTwoStageScoring:
    """Two-stage retrieval on a model with ``lxmert`` and ``matching_head``: the language and object-relation
    layers run once per item (their states are cached by a retrieval index, and pooled for the dot-product
    shortlist); only the cross-modality layers and the matching head run per (query, candidate) pair.

    Pooling: the text stream's [CLS] state and the mean of the valid region states, both L2-normalised. These are
    only comparable once trained to be (``config.contrastive_loss_weight`` > 0 in [`LxmertForImageTextRetrieval`]).
    """

    def encode_text_for_retrieval(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None
    ) -> UnimodalEncoding:
        """Text stream states, mask and pooled embeddings of a batch of captions."""
        mask = retrieval_text_mask(input_ids, attention_mask)
        states = self.lxmert.encode_text(input_ids, attention_mask=mask, token_type_ids=token_type_ids).last_hidden_state
        return UnimodalEncoding(states=states, mask=mask, embeddings=_pool_text(states))

    def encode_visual_for_retrieval(
        self, region_features: torch.Tensor, region_boxes: torch.Tensor, region_attention_mask: torch.Tensor | None = None
    ) -> UnimodalEncoding:
        """Visual stream states, mask and pooled embeddings of a batch of region sets (checked like ``forward``)."""
        mask = retrieval_region_mask(self.config, region_features, region_boxes, region_attention_mask)
        states = self.lxmert.encode_regions(region_features, region_boxes, region_attention_mask=mask)[0].last_hidden_state
        return UnimodalEncoding(states=states, mask=mask, embeddings=_pool_visual(states, mask))

    def score_encoded_pairs(self, text: UnimodalEncoding, visual: UnimodalEncoding) -> torch.Tensor:
        """Matching scores (matched minus mismatched logit) of row-aligned (text, visual) cached encodings."""
        if self.matching_head is None:
            raise ValueError("this model has no matching head (loss_weights['matching'] is 0); it cannot rank pairs")
        pooled = self.lxmert.cross_encode(
            StreamOutput(last_hidden_state=text.states),
            StreamOutput(last_hidden_state=visual.states),
            attention_mask=text.mask,
            region_attention_mask=visual.mask,
        ).pooled_output
        logits = self.matching_head(pooled)
        return logits[:, 1] - logits[:, 0]


def _pool_text(states: torch.Tensor) -> torch.Tensor:
    return nn.functional.normalize(states[:, 0].float(), dim=-1)


def _pool_visual(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return nn.functional.normalize(masked_mean(states, mask).float(), dim=-1)


@dataclass
class LxmertForPreTrainingOutput(TwoStreamRecords, TwoStreamPreTrainingOutput):
    """Losses and predictions of [`LxmertForPreTraining`]: the fields of every two-stream pretraining model
    ([`TwoStreamPreTrainingOutput`]) and the encoder's records, then those of the region objectives and image QA."""

    region_feature_loss: torch.Tensor | None = None
    region_object_loss: torch.Tensor | None = None
    region_attribute_loss: torch.Tensor | None = None
    qa_loss: torch.Tensor | None = None
    region_object_logits: torch.Tensor | None = None
    region_attribute_logits: torch.Tensor | None = None
    region_feature_predictions: torch.Tensor | None = None
    answer_logits: torch.Tensor | None = None


class LxmertForPreTraining(LxmertTwoStageScoring, LxmertPreTrainedModel):
    """LXMERT with its five pretraining objectives.

    Objectives (each on when its ``config.loss_weights`` entry is > 0 and its labels are passed):
    masked cross-modality LM (``labels``), RoI-feature regression (``region_feature_targets`` on
    ``masked_regions``), detected-label classification (``region_object_labels`` weighted by
    ``region_object_confidences``), attribute classification (``region_attribute_labels`` /
    ``region_attribute_confidences``), cross-modality matching (``matched_labels``: 1 matched, 0 not) and
    image QA (``answer_labels``: one answer id per sample, -100 for none, e.g. mismatched pairs).
    """

    hub_auto_class = "AutoModelForPreTraining"
    _tied_weights_keys = {"mlm_head.decoder.weight": "lxmert.embeddings.word_embeddings.weight"}

    def __init__(self, config: LxmertConfig):
        super().__init__(config)
        self.lxmert = LxmertModel(config)
        hidden, eps = config.hidden_size, config.layer_norm_eps
        self.mlm_head = MaskedLanguageModelingHead(hidden, config.vocab_size, config.hidden_act, eps)
        region_outputs = {
            "object": config.num_object_labels if config.objective_enabled("region_object") else 0,
            "attribute": config.num_attribute_labels if config.objective_enabled("region_attribute") else 0,
            "feature": config.region_feature_size if config.objective_enabled("region_feature") else 0,
        }
        region_outputs = {name: size for name, size in region_outputs.items() if size}
        self.region_head = RegionPredictionHead(hidden, region_outputs, config.hidden_act, eps) if region_outputs else None
        self.matching_head = nn.Linear(hidden, 2) if config.objective_enabled("matching") else None
        self.answer_head = AnswerHead(hidden, config.num_qa_labels, eps=eps) if config.objective_enabled("qa") else None
        self.post_init()

    @accepts_transformers_lxmert_names
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        region_features: torch.Tensor | None = None, region_boxes: torch.Tensor | None = None, region_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        masked_regions: torch.Tensor | None = None, region_feature_targets: torch.Tensor | None = None,
        region_object_labels: torch.Tensor | None = None, region_object_confidences: torch.Tensor | None = None,
        region_attribute_labels: torch.Tensor | None = None, region_attribute_confidences: torch.Tensor | None = None,
        matched_labels: torch.Tensor | None = None,
        answer_labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> LxmertForPreTrainingOutput:
        config = self.config
        inputs = checked_image_text_inputs(
            config, input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, inputs_embeds=inputs_embeds,
            region_features=region_features, region_boxes=region_boxes, region_attention_mask=region_attention_mask,
        )
        _check_pretraining_labels(
            input_ids if input_ids is not None else inputs_embeds[..., 0],
            region_features,
            labels=labels,
            masked_regions=masked_regions,
            region_feature_targets=region_feature_targets,
            region_object_labels=region_object_labels,
            region_object_confidences=region_object_confidences,
            region_attribute_labels=region_attribute_labels,
            region_attribute_confidences=region_attribute_confidences,
            matched_labels=matched_labels,
            answer_labels=answer_labels,
        )
        encoded = self.lxmert.encode(**inputs, output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        text, visual, pooled = encoded.text_last_hidden_state, encoded.visual_last_hidden_state, encoded.pooled_output
        losses: dict[str, torch.Tensor] = {}

        if labels is not None and config.objective_enabled("mlm"):
            (labelled,) = select_rows(labels != IGNORE_INDEX)
            prediction_logits = self.mlm_head(text, labelled)
            losses["mlm"] = classification_loss(prediction_logits, labels.reshape(-1).index_select(0, labelled))
        else:
            prediction_logits = self.mlm_head(text)

        region_predictions = self.region_head(visual) if self.region_head is not None else {}
        if region_object_labels is not None and "object" in region_predictions:
            losses["region_object"] = weighted_region_classification_loss(
                region_predictions["object"], region_object_labels,
                weights=_weights(region_object_confidences, region_object_labels), valid_regions=region_attention_mask,
            )
        if region_attribute_labels is not None and "attribute" in region_predictions:
            losses["region_attribute"] = weighted_region_classification_loss(
                region_predictions["attribute"], region_attribute_labels,
                weights=_weights(region_attribute_confidences, region_attribute_labels), valid_regions=region_attention_mask,
            )
        if region_feature_targets is not None and "feature" in region_predictions:
            if masked_regions is None:
                raise ValueError("masked_regions: required with region_feature_targets (which regions were masked)")
            losses["region_feature"] = region_feature_regression_loss(
                region_predictions["feature"], region_feature_targets, weights=masked_regions, valid_regions=region_attention_mask
            )

        matching_logits = self.matching_head(pooled) if self.matching_head is not None else None
        if matched_labels is not None and matching_logits is not None:
            losses["matching"] = classification_loss(matching_logits, matched_labels)
        answer_logits = self.answer_head(pooled) if self.answer_head is not None else None
        if answer_labels is not None and answer_logits is not None:
            losses["qa"] = classification_loss(answer_logits, answer_labels)

        return LxmertForPreTrainingOutput(
            loss=weighted_loss(config, losses),
            mlm_loss=losses.get("mlm"),
            region_feature_loss=losses.get("region_feature"),
            region_object_loss=losses.get("region_object"),
            region_attribute_loss=losses.get("region_attribute"),
            matching_loss=losses.get("matching"),
            qa_loss=losses.get("qa"),
            prediction_logits=prediction_logits,
            region_object_logits=region_predictions.get("object"),
            region_attribute_logits=region_predictions.get("attribute"),
            region_feature_predictions=region_predictions.get("feature"),
            matching_logits=matching_logits,
            answer_logits=answer_logits,
            pooled_output=pooled,
            **two_stream_records(encoded),
        )


class LxmertForQuestionAnswering(TwoStreamQuestionAnswering, LxmertPreTrainedModel):
    """LXMERT with the VQA answer classifier over ``config.id2label`` (2-layer MLP on the pooled output).

    The classifier (``vqa_head``, the original's ``logit_fc``) is separate from the pretraining QA head, so
    a pretraining checkpoint loads its encoder and leaves the classifier freshly initialised, as in the original.

    ``labels`` are soft answer scores (batch, num_answers) trained with binary cross-entropy times the
    number of answers (the original VQA/GQA recipe), or single answer ids (batch,) trained with cross-entropy.
    """

    hub_auto_class = "AutoModelForVisualQuestionAnswering"

    def __init__(self, config: LxmertConfig):
        super().__init__(config)
        self.lxmert = LxmertModel(config)
        self.vqa_head = AnswerHead(config.hidden_size, config.num_labels, eps=config.layer_norm_eps)
        self.post_init()

    forward = accepts_transformers_lxmert_names(TwoStreamTaskHead.forward)

    def answer_logits(self, pooled_output: torch.Tensor) -> torch.Tensor:
        return self.vqa_head(pooled_output)


class LxmertForImageTextRetrieval(LxmertTwoStageScoring, TwoStreamRetrieval, LxmertPreTrainedModel):
    """LXMERT scoring (image, caption) pairs with the cross-modality matching head.

    ``scores`` (matched minus mismatched logit) rank candidates; ``labels`` (1 matched, 0 not) train the
    head with cross-entropy. The head has the same name as in [`LxmertForPreTraining`], so a pretraining
    checkpoint loads into it whole.

    With ``config.contrastive_loss_weight`` > 0 the loss also holds that weight times an in-batch contrastive loss
    between the pooled text and visual streams of the matched pairs (``labels == 1``), so that the cheap first
    stage of two-stage retrieval (see [`LxmertTwoStageScoring`]) shortlists the right candidates.
    """

    hub_auto_class = "AutoModelForSequenceClassification"

    def __init__(self, config: LxmertConfig):
        super().__init__(config)
        self.lxmert = LxmertModel(config)
        self.matching_head = nn.Linear(config.hidden_size, 2)
        self.post_init()

    def task_output(
        self, encoded: TwoStreamModelOutput, labels: torch.Tensor | None, inputs: dict[str, torch.Tensor | None]
    ) -> TwoStreamRetrievalOutput:
        config = self.config
        logits = self.matching_head(encoded.pooled_output)
        text_embeds = _pool_text(encoded.text_encoder_last_hidden_state)
        region_mask = inputs["region_attention_mask"]
        if region_mask is None:
            region_mask = inputs["region_features"].new_ones(inputs["region_features"].shape[:2])
        visual_embeds = _pool_visual(encoded.visual_encoder_last_hidden_state, region_mask)
        loss = contrastive = None
        if labels is not None:
            loss = classification_loss(logits, labels)
            if config.contrastive_loss_weight > 0:
                (matched,) = select_rows(labels == 1)
                contrastive = in_batch_contrastive_loss(
                    text_embeds.index_select(0, matched), visual_embeds.index_select(0, matched), config.contrastive_temperature
                )
                loss = loss + config.contrastive_loss_weight * contrastive
        return TwoStreamRetrievalOutput(
            loss=loss, logits=logits, scores=logits[:, 1] - logits[:, 0], pooled_output=encoded.pooled_output,
            contrastive_loss=contrastive, text_embeds=text_embeds, visual_embeds=visual_embeds,
            **two_stream_records(encoded),
        )


def _weights(confidences: torch.Tensor | None, labels: torch.Tensor) -> torch.Tensor:
    """Detector confidences as loss weights; without them every labelled region counts once."""
    if confidences is None:
        return (labels != IGNORE_INDEX).float()
    return confidences


def _check_pretraining_labels(text_reference: torch.Tensor, region_features: torch.Tensor | None, **labels) -> None:
    """Check the shapes of the pretraining targets against the inputs before running the model."""
    batch, text_length = text_reference.shape[:2]
    regions = None if region_features is None else tuple(region_features.shape[:2])
    expected = {
        "labels": (batch, text_length),
        "matched_labels": (batch,),
        "answer_labels": (batch,),
    }
    if regions is not None:
        for name in (
            "masked_regions",
            "region_object_labels",
            "region_object_confidences",
            "region_attribute_labels",
            "region_attribute_confidences",
        ):
            expected[name] = regions
        expected["region_feature_targets"] = tuple(region_features.shape)
    for name, tensor in labels.items():
        if tensor is None or name not in expected:
            continue
        if tuple(tensor.shape) != expected[name]:
            raise ValueError(f"{name}: expected shape {expected[name]}, got {tuple(tensor.shape)}")
        integer_names = ("labels", "matched_labels", "answer_labels", "region_object_labels", "region_attribute_labels")
        if name in integer_names and tensor.is_floating_point():
            raise ValueError(f"{name}: expected integer class ids (torch.long), got {tensor.dtype}")
