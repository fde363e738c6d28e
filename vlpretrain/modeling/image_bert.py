"""ImageBERT (Qi et al. 2020): one BERT stream over text tokens and image RoIs, with four pretraining objectives.

There is no official code; the choices the paper leaves open are listed in [`ImageBertConfig`]. The joint sequence
is ``[CLS] text [SEP]`` (BERT embeddings, segment 0) followed by the RoIs, each embedded as
LN(Linear(feature) + Linear(5-d box) + segment + the shared dummy position) with the text's LayerNorm.

Package conventions: ignored labels are -100, ``matched_labels`` 1 = matched, boxes normalised (x1, y1, x2, y2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from ..configuration.image_bert import ImageBertConfig
from .base import (
    VLPreTrainedModel,
    check_answer_labels,
    check_image_text_inputs,
    check_match_labels,
    check_target_shapes,
)
from .embeddings import RegionEmbeddings, TextEmbeddings, join_streams
from .heads import AnswerHead, MaskedLanguageModelingHead, Pooler, RegionPredictionHead
from .layers import TransformerLayer, key_padding_mask, run_layers
from .losses import IGNORE_INDEX, classification_loss, region_feature_regression_loss, select_rows, soft_score_loss
from .outputs import SingleStreamModelOutput, SingleStreamQuestionAnsweringOutput, SingleStreamRetrievalOutput


@dataclass
class ImageBertForPreTrainingOutput(ModelOutput):
    """Losses and predictions of [`ImageBertForPreTraining`].

    Each objective's loss is returned on its own (unweighted) and ``loss`` is their sum weighted by
    ``config.loss_weights``. With ``labels``, ``prediction_logits`` holds only the labelled positions.
    """

    loss: torch.Tensor | None = None
    mlm_loss: torch.Tensor | None = None
    region_object_loss: torch.Tensor | None = None
    region_feature_loss: torch.Tensor | None = None
    matching_loss: torch.Tensor | None = None
    prediction_logits: torch.Tensor | None = None
    region_object_logits: torch.Tensor | None = None
    region_feature_predictions: torch.Tensor | None = None
    matching_logits: torch.Tensor | None = None
    pooled_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class ImageBertPreTrainedModel(VLPreTrainedModel):
    """Base class of the ImageBERT models: config class, weight prefix, layers kept on one device."""

    config: ImageBertConfig
    config_class = ImageBertConfig
    base_model_prefix = "image_bert"
    _input_embed_layer = "word_embeddings"  # transformers' get/set_input_embeddings read embeddings.word_embeddings
    _no_split_modules = ["TransformerLayer", "TextEmbeddings", "RegionEmbeddings"]

    def text_stream_prefix(self) -> dict[str, str]:
        prefix = "" if self.base_model is self else f"{self.base_model_prefix}."
        return {"embeddings": f"{prefix}embeddings.", "layers": f"{prefix}layers."}


class ImageBertModel(ImageBertPreTrainedModel):
    """The ImageBERT stream and its tanh [CLS] pooler."""

    hub_auto_class = "AutoModel"

    def __init__(self, config: ImageBertConfig):
        super().__init__(config)
        self.embeddings = TextEmbeddings(config)
        self.region_embeddings = RegionEmbeddings(
            config.region_feature_size, config.hidden_size, box_size=5, combine="sum", normalize=False, dropout=0.0
        )
        self.layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_hidden_layers))
        self.pooler = Pooler(config.hidden_size, config.hidden_size, "tanh")
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        region_features: torch.Tensor | None = None, region_boxes: torch.Tensor | None = None, region_attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None, output_hidden_states: bool | None = None,
    ) -> SingleStreamModelOutput:
        """Encode captions/questions with their RoIs (inputs as in the package's naming table).

        Invalid inputs raise ``ValueError`` before any compute.
        """
        inputs = dict(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            region_features=region_features, region_boxes=region_boxes, region_attention_mask=region_attention_mask,
            inputs_embeds=inputs_embeds,
        )
        self.check_inputs(**inputs)
        return self.encode(**inputs, output_attentions=output_attentions, output_hidden_states=output_hidden_states)

    def check_inputs(
        self,
        *,
        input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None, token_type_ids: torch.Tensor | None,
        region_features: torch.Tensor | None, region_boxes: torch.Tensor | None, region_attention_mask: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> None:
        """The shared image-text checks plus the text length against the position table."""
        config = self.config
        check_image_text_inputs(
            config, input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            region_features=region_features, region_boxes=region_boxes, region_attention_mask=region_attention_mask,
            inputs_embeds=inputs_embeds,
        )
        length = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        if length > config.dummy_region_position and config.region_position_id is None:
            raise ValueError(
                f"input_ids: {length} tokens reach the RoIs' shared position {config.dummy_region_position}; "
                f"expected at most {config.dummy_region_position}"
            )
        if length > config.max_position_embeddings:
            raise ValueError(f"input_ids: {length} tokens exceed max_position_embeddings ({config.max_position_embeddings})")

    def encode(
        self,
        *,
        input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None, token_type_ids: torch.Tensor | None,
        region_features: torch.Tensor, region_boxes: torch.Tensor, region_attention_mask: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None, output_hidden_states: bool | None = None,
    ) -> SingleStreamModelOutput:
        """The forward pass on inputs already checked by ``check_inputs`` (used by the task heads)."""
        config = self.config
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        text = self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, inputs_embeds=inputs_embeds)  # (B, T, H)
        batch, text_length = text.shape[:2]
        embeddings = self.embeddings
        regions = self.region_embeddings(region_features, region_boxes)  # (B, R, H)
        regions = regions + embeddings.token_type_embeddings.weight[config.image_segment_id]
        regions = regions + embeddings.position_embeddings.weight[config.dummy_region_position]
        regions = embeddings.dropout(embeddings.norm(regions))
        ones = torch.ones(batch, 1, dtype=torch.long, device=text.device)
        text_mask = ones.expand(batch, text_length) if attention_mask is None else attention_mask
        region_mask = ones.expand(batch, regions.shape[1]) if region_attention_mask is None else region_attention_mask
        hidden, mask = join_streams((text, text_mask), (regions.to(text.dtype), region_mask))  # (B, T + R, H), (B, T + R)
        stream = run_layers(
            self.layers,
            hidden,
            key_padding_mask(mask, hidden.dtype, config._attn_implementation),
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        hidden = stream.last_hidden_state
        return SingleStreamModelOutput(
            last_hidden_state=hidden,
            text_last_hidden_state=hidden[:, :text_length],
            visual_last_hidden_state=hidden[:, text_length:],
            pooled_output=self.pooler(hidden),
            hidden_states=stream.hidden_states,
            attentions=stream.attentions,
        )


class ImageBertForPreTraining(ImageBertPreTrainedModel):
    """ImageBERT with MLM (``labels``), masked object classification (``region_object_labels`` on
    ``masked_regions``), masked region feature regression (``region_feature_targets`` on ``masked_regions``, L2) and
    image-text matching (``matched_labels``, 1 = matched). Each is on when its ``loss_weights`` entry is > 0."""

    hub_auto_class = "AutoModelForPreTraining"
    _tied_weights_keys = {"mlm_head.decoder.weight": "image_bert.embeddings.word_embeddings.weight"}

    def __init__(self, config: ImageBertConfig):
        super().__init__(config)
        self.image_bert = ImageBertModel(config)
        hidden, eps = config.hidden_size, config.layer_norm_eps
        self.mlm_head = MaskedLanguageModelingHead(hidden, config.vocab_size, config.hidden_act, eps)
        region_outputs = {
            "object": config.num_object_labels if config.objective_enabled("region_object") else 0,
            "feature": config.region_feature_size if config.objective_enabled("region_feature") else 0,
        }
        region_outputs = {name: size for name, size in region_outputs.items() if size}
        self.region_head = RegionPredictionHead(hidden, region_outputs, config.hidden_act, eps) if region_outputs else None
        self.matching_head = nn.Linear(hidden, 2) if config.objective_enabled("matching") else None
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        region_features: torch.Tensor | None = None, region_boxes: torch.Tensor | None = None, region_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        masked_regions: torch.Tensor | None = None,
        region_object_labels: torch.Tensor | None = None,
        region_object_confidences: torch.Tensor | None = None,
        region_feature_targets: torch.Tensor | None = None,
        matched_labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None, output_hidden_states: bool | None = None,
    ) -> ImageBertForPreTrainingOutput:
        """Every objective's loss and prediction. ``region_object_confidences`` (the detector scores the package
        collator passes with ``region_object_labels``) are accepted but do not weight the loss: ImageBERT's masked
        object classification is a plain cross-entropy to the top label."""
        config = self.config
        inputs = dict(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            region_features=region_features, region_boxes=region_boxes, region_attention_mask=region_attention_mask,
            inputs_embeds=inputs_embeds,
        )
        self.image_bert.check_inputs(**inputs)
        batch, text_length = (input_ids if input_ids is not None else inputs_embeds).shape[:2]
        regions = (batch, region_features.shape[1])
        check_target_shapes(
            {
                "labels": labels, "matched_labels": matched_labels, "masked_regions": masked_regions,
                "region_object_labels": region_object_labels, "region_feature_targets": region_feature_targets,
                "region_object_confidences": region_object_confidences,
            },
            {
                "labels": ((batch, text_length), "integer class ids (torch.long)"),
                "matched_labels": ((batch,), "integer class ids (torch.long)"),
                "masked_regions": (regions, "the masked regions"),
                "region_object_labels": (regions, "integer class ids (torch.long)"),
                "region_object_confidences": (regions, "float detector scores"),
                "region_feature_targets": (tuple(region_features.shape), "float region features"),
            },
            required={"masked_regions": ("region_object_labels", "region_feature_targets")},
        )
        mlm_positions = None
        if labels is not None and config.objective_enabled("mlm"):
            (mlm_positions,) = select_rows(labels != IGNORE_INDEX)  # flat indices of the labelled tokens in (B * T)
        encoded = self.image_bert.encode(
            **inputs, output_attentions=output_attentions, output_hidden_states=output_hidden_states
        )
        losses: dict[str, torch.Tensor] = {}
        prediction_logits = self.mlm_head(encoded.text_last_hidden_state, mlm_positions)
        if mlm_positions is not None:
            losses["mlm"] = classification_loss(prediction_logits, labels.flatten().index_select(0, mlm_positions))
        predictions = self.region_head(encoded.visual_last_hidden_state) if self.region_head is not None else {}
        if masked_regions is not None:
            selected = masked_regions.bool()
            if region_attention_mask is not None:
                selected = selected & region_attention_mask.bool()
            if region_object_labels is not None and "object" in predictions:
                losses["region_object"] = classification_loss(
                    predictions["object"], region_object_labels.masked_fill(~selected, IGNORE_INDEX)
                )
            if region_feature_targets is not None and "feature" in predictions:
                losses["region_feature"] = region_feature_regression_loss(
                    predictions["feature"], region_feature_targets, selected.float(), selected, kind="l2"
                )
        matching_logits = self.matching_head(encoded.pooled_output) if self.matching_head is not None else None
        if matched_labels is not None and matching_logits is not None:
            losses["matching"] = classification_loss(matching_logits, matched_labels)
        return ImageBertForPreTrainingOutput(
            loss=sum(config.loss_weights[name] * value for name, value in losses.items()) if losses else None,
            mlm_loss=losses.get("mlm"),
            region_object_loss=losses.get("region_object"),
            region_feature_loss=losses.get("region_feature"),
            matching_loss=losses.get("matching"),
            prediction_logits=prediction_logits,
            region_object_logits=predictions.get("object"),
            region_feature_predictions=predictions.get("feature"),
            matching_logits=matching_logits,
            pooled_output=encoded.pooled_output,
            hidden_states=encoded.hidden_states,
            attentions=encoded.attentions,
        )


class ImageBertPooledHead(ImageBertPreTrainedModel):
    """The forward pass shared by the ImageBERT heads on the pooled [CLS] (VQA, retrieval): check the inputs and
    ``labels``, encode, then ``head_output``; a head defines ``check_labels`` and ``head_output``."""

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        region_features: torch.Tensor | None = None, region_boxes: torch.Tensor | None = None, region_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None, output_hidden_states: bool | None = None,
    ) -> ModelOutput:
        """Inputs as [`ImageBertModel`]'s; ``labels`` as the head's class docstring says."""
        inputs = dict(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            region_features=region_features, region_boxes=region_boxes, region_attention_mask=region_attention_mask,
            inputs_embeds=inputs_embeds,
        )
        self.image_bert.check_inputs(**inputs)
        self.check_labels(labels, (input_ids if input_ids is not None else inputs_embeds).shape[0])
        encoded = self.image_bert.encode(
            **inputs, output_attentions=output_attentions, output_hidden_states=output_hidden_states
        )
        return self.head_output(encoded, labels)

    def check_labels(self, labels: torch.Tensor | None, batch: int) -> None:
        raise NotImplementedError

    def head_output(self, encoded: SingleStreamModelOutput, labels: torch.Tensor | None) -> ModelOutput:
        raise NotImplementedError


class ImageBertForImageTextRetrieval(ImageBertPooledHead):
    """ImageBERT scoring (image, caption) pairs with the matching head on the pooled [CLS] (binary classification,
    the first of the paper's retrieval losses). ``scores`` = matched minus mismatched logit; ``labels`` 1 = matched.
    The head keeps the pretraining name, so a pretraining checkpoint loads whole."""

    hub_auto_class = "AutoModelForSequenceClassification"

    def __init__(self, config: ImageBertConfig):
        super().__init__(config)
        self.image_bert = ImageBertModel(config)
        self.matching_head = nn.Linear(config.hidden_size, 2)
        self.post_init()

    def check_labels(self, labels: torch.Tensor | None, batch: int) -> None:
        check_match_labels(labels, batch)

    def head_output(self, encoded: SingleStreamModelOutput, labels: torch.Tensor | None) -> SingleStreamRetrievalOutput:
        logits = self.matching_head(encoded.pooled_output)
        return SingleStreamRetrievalOutput(
            loss=classification_loss(logits, labels) if labels is not None else None,
            logits=logits,
            scores=logits[:, 1] - logits[:, 0],
            pooled_output=encoded.pooled_output,
            hidden_states=encoded.hidden_states,
            attentions=encoded.attentions,
        )


class ImageBertForQuestionAnswering(ImageBertPooledHead):
    """ImageBERT with a VQA answer classifier over ``config.id2label`` (two-layer MLP on the pooled [CLS]; the paper
    does not evaluate VQA, so the package's shared answer head is used). ``labels``: soft scores (B, A) or ids (B,)."""

    hub_auto_class = "AutoModelForVisualQuestionAnswering"

    def __init__(self, config: ImageBertConfig):
        super().__init__(config)
        self.image_bert = ImageBertModel(config)
        self.vqa_head = AnswerHead(config.hidden_size, config.num_labels, eps=config.layer_norm_eps)
        self.post_init()

    def check_labels(self, labels: torch.Tensor | None, batch: int) -> None:
        check_answer_labels(labels, batch, self.config.num_labels)

    def head_output(
        self, encoded: SingleStreamModelOutput, labels: torch.Tensor | None
    ) -> SingleStreamQuestionAnsweringOutput:
        logits = self.vqa_head(encoded.pooled_output)
        loss = None
        if labels is not None:
            loss = soft_score_loss(logits, labels) if labels.is_floating_point() else classification_loss(logits, labels)
        return SingleStreamQuestionAnsweringOutput(
            loss=loss, logits=logits, pooled_output=encoded.pooled_output, hidden_states=encoded.hidden_states,
            attentions=encoded.attentions,
        )
