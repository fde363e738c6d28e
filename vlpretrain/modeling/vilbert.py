"""ViLBERT (Lu et al. 2019): a BERT text stream and a visual stream joined by co-attention (Co-TRM) layers.

Faithful to vilbert_beta / vilbert-multi-task: a global "IMG" region (mean feature, box (0, 0, 1, 1)) is
prepended to the regions; boxes are encoded as (x1, y1, x2, y2, area); the visual embedding is one LayerNorm
over the sum of the feature and box projections; the co-layers follow ``t_biattention_id`` /
``v_biattention_id`` exactly; both poolers are ReLU projections to ``bi_hidden_size`` and the fused vector is
their element-wise product. The unused ``q_dense`` layers of the original are not built.

Package conventions that differ from the original code: ignored labels are -100 (the original uses -1) and
``matched_labels`` is 1 for a matching caption; the original uses 0 = aligned, and the converter swaps the two
rows of the alignment head, so logit 1 is "matched" here. ``visual_last_hidden_state`` starts with the global
token when ``config.add_global_image_token`` is on (the model adds it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils.generic import can_return_tuple

from ..configuration.vilbert import VilbertConfig
from .base import VLPreTrainedModel, retrieval_region_mask, retrieval_text_mask
from .embeddings import SummedRegionEmbeddings, TextEmbeddings, prepend_global_image_token
from .heads import MaskedLanguageModelingHead, Pooler, RegionPredictionHead, ReluAnswerHead
from .layers import CoAttentionEncoder
from .losses import IGNORE_INDEX, classification_loss, region_distribution_loss, select_rows
from .outputs import StreamOutput, TwoStreamModelOutput, UnimodalEncoding
from .two_stream import (
    TwoStreamBaseModel,
    TwoStreamPreTrainingOutput,
    TwoStreamQuestionAnswering,
    TwoStreamRecords,
    TwoStreamRegionScoringOutput,
    TwoStreamRetrieval,
    TwoStreamRetrievalOutput,
    TwoStreamTaskHead,
    checked_image_text_inputs,
    two_stream_model_output,
    two_stream_records,
    weighted_loss,
)

# ViLBERT's masks are additive -10000 (not -inf), which the referring head also uses for padded regions.
_MASKED_LOGIT = -10000.0


@dataclass
class VilbertForPreTrainingOutput(TwoStreamRecords, TwoStreamPreTrainingOutput):
    """Losses and predictions of [`VilbertForPreTraining`]: the fields of every two-stream pretraining model
    ([`TwoStreamPreTrainingOutput`]) and the encoder's records, then masked region classification's.

    ``region_class_logits`` (batch, regions, num_object_labels) cover the given regions (not the global token).
    """

    region_class_loss: torch.Tensor | None = None
    region_class_logits: torch.Tensor | None = None


class VilbertPreTrainedModel(VLPreTrainedModel):
    """Base class of the ViLBERT models: config class, weight prefix and layers that must stay on one device."""

    config: VilbertConfig
    config_class = VilbertConfig
    base_model_prefix = "vilbert"
    _no_split_modules = ["TransformerLayer", "CoAttentionLayer", "TextEmbeddings", "SummedRegionEmbeddings"]

    def text_stream_prefix(self) -> dict[str, str]:
        prefix = "" if self.base_model is self else f"{self.base_model_prefix}."
        return {"embeddings": f"{prefix}embeddings.", "layers": f"{prefix}encoder.text_layers."}


def co_attention_encoder(config) -> CoAttentionEncoder:
    """The two-stream encoder of a ViLBERT-family config (``bi_hidden_size`` is ERNIE-ViL's ``co_hidden_size``)."""
    return CoAttentionEncoder(
        config,
        num_text_layers=config.num_hidden_layers,
        num_visual_layers=config.v_num_hidden_layers,
        text_ids=config.t_biattention_id,
        visual_ids=config.v_biattention_id,
        text_size=config.hidden_size,
        text_heads=config.num_attention_heads,
        text_intermediate_size=config.intermediate_size,
        visual_size=config.v_hidden_size,
        visual_heads=config.v_num_attention_heads,
        visual_intermediate_size=config.v_intermediate_size,
        co_size=config.bi_hidden_size,
        co_heads=config.bi_num_attention_heads,
    )


class VilbertModel(TwoStreamBaseModel, VilbertPreTrainedModel):
    """The ViLBERT encoder: text and visual embeddings, the co-attention schedule, and the fused ReLU poolers.

    ``forward`` takes the package's image-text inputs (boxes (x1, y1, x2, y2) in [0, 1]); ``pooled_output`` is the
    ReLU-pooled text [CLS] times the ReLU-pooled global image token, (batch, bi_hidden_size).
    """

    hub_auto_class = "AutoModel"

    def __init__(self, config: VilbertConfig):
        super().__init__(config)
        self.embeddings = TextEmbeddings(config)
        self.region_embeddings = SummedRegionEmbeddings(
            config.region_feature_size, config.v_hidden_size, config.layer_norm_eps, config.hidden_dropout_prob
        )
        self.encoder = co_attention_encoder(config)
        self.text_pooler = Pooler(config.hidden_size, config.bi_hidden_size, "relu")
        self.visual_pooler = Pooler(config.v_hidden_size, config.bi_hidden_size, "relu")
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

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
        """Text embeddings and the text layers before the first co-layer (what two-stage retrieval caches)."""
        text = self.embeddings(input_ids, token_type_ids, inputs_embeds=inputs_embeds)
        return self.encoder.encode_stream(
            "text", text, self.key_mask(attention_mask, text), output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
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
        """Region embeddings (after the global image token, when on) and the visual layers before the first
        co-layer; returns the stream and its region mask (what two-stage retrieval caches)."""
        if self.config.add_global_image_token:
            region_features, region_boxes, region_attention_mask = prepend_global_image_token(
                region_features, region_boxes, region_attention_mask
            )
        visual = self.region_embeddings(region_features, region_boxes)
        stream = self.encoder.encode_stream(
            "visual", visual, self.key_mask(region_attention_mask, visual), output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
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
        """The schedule from its first co-layer on, then the fused poolers, on the outputs of ``encode_text``
        and ``encode_regions`` (continuing their records)."""
        text, visual, cross_attentions = self.encoder.cross_encode(
            text,
            visual,
            self.key_mask(attention_mask, text.last_hidden_state),
            self.key_mask(region_attention_mask, visual.last_hidden_state),
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        pooled = self.text_pooler(text.last_hidden_state) * self.visual_pooler(visual.last_hidden_state)
        return two_stream_model_output(text, visual, cross_attentions, pooled)


class VilbertTwoStageScoring:
    """Two-stage retrieval on a ViLBERT-family model with ``matching_head``: the single-stream part of each stream
    (embeddings and the layers before the first co-layer of the schedule) runs once per item and is cached by a
    retrieval index; only the rest of the schedule (from the first co-layer) and the alignment head run per
    (query, candidate) pair, giving the same scores as ``forward``.

    First-stage embeddings: the model's own poolers (ReLU projections to ``bi_hidden_size``, so both streams
    land in one space) on the cached text [CLS] state and on the cached global image token (the first region when
    ``add_global_image_token`` is off), L2-normalised. No objective of the package trains these to agree, so the
    shortlist is a weak filter: use a generous ``shortlist_size``, or ``None`` to re-rank every item.
    """

    def encode_text_for_retrieval(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None
    ) -> UnimodalEncoding:
        """Cached text-stream states, mask and first-stage embeddings of a batch of captions."""
        mask = retrieval_text_mask(input_ids, attention_mask)
        states = self.base_model.encode_text(input_ids, attention_mask=mask, token_type_ids=token_type_ids).last_hidden_state
        embeddings = nn.functional.normalize(self.base_model.text_pooler(states).float(), dim=-1)
        return UnimodalEncoding(states=states, mask=mask, embeddings=embeddings)

    def encode_visual_for_retrieval(
        self, region_features: torch.Tensor, region_boxes: torch.Tensor, region_attention_mask: torch.Tensor | None = None
    ) -> UnimodalEncoding:
        """Cached visual-stream states, mask and first-stage embeddings of a batch of region sets."""
        mask = retrieval_region_mask(self.config, region_features, region_boxes, region_attention_mask)
        stream, mask = self.base_model.encode_regions(region_features, region_boxes, region_attention_mask=mask)
        states = stream.last_hidden_state
        embeddings = nn.functional.normalize(self.base_model.visual_pooler(states).float(), dim=-1)
        return UnimodalEncoding(states=states, mask=mask, embeddings=embeddings)

    def score_encoded_pairs(self, text: UnimodalEncoding, visual: UnimodalEncoding) -> torch.Tensor:
        """Alignment scores (matched minus mismatched logit) of row-aligned (text, visual) cached encodings."""
        if self.matching_head is None:
            raise ValueError("this model has no matching head (loss_weights['matching'] is 0); it cannot rank pairs")
        pooled = self.base_model.cross_encode(
            StreamOutput(last_hidden_state=text.states),
            StreamOutput(last_hidden_state=visual.states),
            attention_mask=text.mask,
            region_attention_mask=visual.mask,
        ).pooled_output
        logits = self.matching_head(self.dropout(pooled))
        return logits[:, 1] - logits[:, 0]


class VilbertForPreTraining(VilbertTwoStageScoring, VilbertPreTrainedModel):
    """ViLBERT with its pretraining objectives (vilbert_beta ``BertForMultiModalPreTraining``).

    Objectives (each on when its ``config.loss_weights`` entry is > 0 and its targets are passed):
    masked multimodal LM (``labels``), masked region classification (``region_class_targets``: the detector's
    class distribution per region (batch, regions, num_object_labels), trained with KL divergence on
    ``masked_regions``, whose features the collator zeroed) and multimodal alignment (``matched_labels``:
    1 matched, 0 not; a 2-way head on the dropout of the fused pooled vector).
    """

    hub_auto_class = "AutoModelForPreTraining"
    base_model_class = VilbertModel
    output_class = VilbertForPreTrainingOutput
    _tied_weights_keys = {"mlm_head.decoder.weight": "vilbert.embeddings.word_embeddings.weight"}

    def __init__(self, config: VilbertConfig):
        super().__init__(config)
        setattr(self, self.base_model_prefix, self.base_model_class(config))
        activation, eps = config.hidden_act, config.layer_norm_eps
        self.mlm_head = MaskedLanguageModelingHead(config.hidden_size, config.vocab_size, activation, eps)
        self.region_head = (
            RegionPredictionHead(config.v_hidden_size, {"class": config.num_object_labels}, activation, eps)
            if config.objective_enabled("region_class")
            else None
        )
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.matching_head = nn.Linear(config.bi_hidden_size, 2) if config.objective_enabled("matching") else None
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        region_features: torch.Tensor | None = None, region_boxes: torch.Tensor | None = None, region_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        masked_regions: torch.Tensor | None = None, region_class_targets: torch.Tensor | None = None,
        matched_labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> VilbertForPreTrainingOutput:
        inputs = checked_image_text_inputs(
            self.config, input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, inputs_embeds=inputs_embeds,
            region_features=region_features, region_boxes=region_boxes, region_attention_mask=region_attention_mask,
        )
        return self.pretraining_output(
            inputs, {"mlm": labels}, masked_regions=masked_regions, region_class_targets=region_class_targets,
            matched_labels=matched_labels, output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )

    def pretraining_output(
        self,
        inputs: dict[str, torch.Tensor | None],
        token_targets: dict[str, torch.Tensor | None],
        *,
        masked_regions: torch.Tensor | None,
        region_class_targets: torch.Tensor | None,
        matched_labels: torch.Tensor | None,
        output_attentions: bool | None,
        output_hidden_states: bool | None,
    ) -> VilbertForPreTrainingOutput:
        """The objectives on checked ``inputs``: ``token_targets`` maps each objective the masked-LM head predicts
        (``"mlm"``, and ERNIE-ViL's scene-graph objectives) to its (batch, text_length) token ids, -100 elsewhere.

        The rows of every token objective are selected at once (one device sync). An objective other than the MLM
        whose batch has no target token is left out of the output and of ``loss``.
        """
        config = self.config
        text_reference = inputs["input_ids"] if inputs["input_ids"] is not None else inputs["inputs_embeds"][..., 0]
        check_pretraining_targets(
            config, text_reference, inputs["region_features"],
            **{"labels" if name == "mlm" else f"{name}_labels": targets for name, targets in token_targets.items()},
            masked_regions=masked_regions, region_class_targets=region_class_targets, matched_labels=matched_labels,
        )
        encoded = self.base_model.encode(**inputs, output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        text, visual, pooled = encoded.text_last_hidden_state, encoded.visual_last_hidden_state, encoded.pooled_output
        losses: dict[str, torch.Tensor] = {}
        token_targets = {
            name: targets for name, targets in token_targets.items() if targets is not None and config.objective_enabled(name)
        }
        selected_rows = select_rows(*(targets != IGNORE_INDEX for targets in token_targets.values()))
        prediction_logits = None
        for (name, targets), rows in zip(token_targets.items(), selected_rows):
            if name != "mlm" and rows.shape[0] == 0:
                continue
            logits = self.mlm_head(text, rows)
            losses[name] = classification_loss(logits, targets.reshape(-1).index_select(0, rows))
            if name == "mlm":
                prediction_logits = logits
        if prediction_logits is None:
            prediction_logits = self.mlm_head(text)

        region_logits = None
        if self.region_head is not None:
            given_regions = visual[:, 1:] if config.add_global_image_token else visual
            region_logits = self.region_head(given_regions)["class"]
            if region_class_targets is not None:
                selected = masked_regions.bool()
                if inputs["region_attention_mask"] is not None:
                    selected = selected & inputs["region_attention_mask"].bool()
                losses["region_class"] = region_distribution_loss(region_logits, region_class_targets, selected)

        matching_logits = self.matching_head(self.dropout(pooled)) if self.matching_head is not None else None
        if matched_labels is not None and matching_logits is not None:
            losses["matching"] = classification_loss(matching_logits, matched_labels)
        return self.output_class(
            loss=weighted_loss(config, losses),
            **{f"{name}_loss": loss for name, loss in losses.items()},
            prediction_logits=prediction_logits,
            region_class_logits=region_logits,
            matching_logits=matching_logits,
            pooled_output=pooled,
            **two_stream_records(encoded),
        )


class VilbertForQuestionAnswering(TwoStreamQuestionAnswering, VilbertPreTrainedModel):
    """ViLBERT with the VQA classifier over ``config.id2label``: an MLP (ReLU, dropout) on the fused pooled vector.

    ``labels`` are soft answer scores (batch, num_answers), trained with binary cross-entropy times the number
    of answers as in the original, or single answer ids (batch,) trained with cross-entropy.
    """

    hub_auto_class = "AutoModelForVisualQuestionAnswering"
    base_model_class = VilbertModel

    def __init__(self, config: VilbertConfig):
        super().__init__(config)
        setattr(self, self.base_model_prefix, self.base_model_class(config))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.vqa_head = ReluAnswerHead(config.bi_hidden_size, config.num_labels, config.vqa_hidden_size, config.vqa_dropout)
        self.post_init()

    def answer_logits(self, pooled_output: torch.Tensor) -> torch.Tensor:
        return self.vqa_head(self.dropout(pooled_output))


class VilbertForImageTextRetrieval(VilbertTwoStageScoring, TwoStreamRetrieval, VilbertPreTrainedModel):
    """ViLBERT scoring (image, caption) pairs with the multimodal alignment head (zero-shot retrieval in the paper).

    ``logits`` (batch, 2: mismatched, matched), ``scores`` = matched minus mismatched logit; ``labels`` (1 matched,
    0 not) train it with cross-entropy. The head has the same name as in [`VilbertForPreTraining`], so a
    pretraining checkpoint loads into it whole.
    """

    hub_auto_class = "AutoModelForSequenceClassification"
    base_model_class = VilbertModel

    def __init__(self, config: VilbertConfig):
        super().__init__(config)
        setattr(self, self.base_model_prefix, self.base_model_class(config))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.matching_head = nn.Linear(config.bi_hidden_size, 2)
        self.post_init()

    def task_output(
        self, encoded: TwoStreamModelOutput, labels: torch.Tensor | None, inputs: dict[str, torch.Tensor | None]
    ) -> TwoStreamRetrievalOutput:
        logits = self.matching_head(self.dropout(encoded.pooled_output))
        return TwoStreamRetrievalOutput(
            loss=classification_loss(logits, labels) if labels is not None else None,
            logits=logits,
            scores=logits[:, 1] - logits[:, 0],
            pooled_output=encoded.pooled_output,
            **two_stream_records(encoded),
        )


class VilbertForReferringExpressions(TwoStreamTaskHead, VilbertPreTrainedModel):
    """ViLBERT grounding a referring expression: one score per region (the original's ``vision_logit``).

    ``logits`` (batch, regions) score the given regions (the global token is not scored); padded regions get
    -10000. ``labels`` (batch, regions) are soft targets in [0, 1] (the original: the region's IoU with the
    referred box, 0 below 0.5), trained with binary cross-entropy averaged over regions times their number.
    No transformers Auto class describes region grounding, so this class is not listed in ``auto_map``.
    """

    base_model_class = VilbertModel

    def __init__(self, config: VilbertConfig):
        super().__init__(config)
        setattr(self, self.base_model_prefix, self.base_model_class(config))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.region_scorer = nn.Linear(config.v_hidden_size, 1)
        self.post_init()

    def check_labels(self, labels: torch.Tensor | None, inputs: dict[str, torch.Tensor | None]) -> None:
        if labels is None:
            return
        regions = tuple(inputs["region_features"].shape[:2])
        if tuple(labels.shape) != regions or not labels.is_floating_point():
            raise ValueError(f"labels: expected float targets in [0, 1] of shape {regions}, got {tuple(labels.shape)} {labels.dtype}")
        if not torch.compiler.is_compiling() and bool(((labels < 0) | (labels > 1)).any()):
            raise ValueError("labels: expected targets in [0, 1] (IoU with the referred box)")

    def task_output(
        self, encoded: TwoStreamModelOutput, labels: torch.Tensor | None, inputs: dict[str, torch.Tensor | None]
    ) -> TwoStreamRegionScoringOutput:
        visual = encoded.visual_last_hidden_state
        if self.config.add_global_image_token:
            visual = visual[:, 1:]
        logits = self.region_scorer(self.dropout(visual)).squeeze(-1)
        if inputs["region_attention_mask"] is not None:
            logits = logits.masked_fill(inputs["region_attention_mask"] == 0, _MASKED_LOGIT)
        loss = None
        if labels is not None:
            loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float()) * logits.shape[1]
        return TwoStreamRegionScoringOutput(loss=loss, logits=logits, **two_stream_records(encoded))


def check_pretraining_targets(config, text_reference: torch.Tensor, region_features: torch.Tensor, **targets) -> None:
    """Check the shapes and dtypes of pretraining targets against the inputs before running the model."""
    batch, text_length = text_reference.shape[:2]
    regions = tuple(region_features.shape[:2])
    expected = {
        "matched_labels": (batch,),
        "masked_regions": regions,
        "region_class_targets": (*regions, config.num_object_labels),
    }
    if targets.get("region_class_targets") is not None and targets.get("masked_regions") is None:
        raise ValueError("masked_regions: required with region_class_targets (which regions were masked)")
    for name, tensor in targets.items():
        if tensor is None:
            continue
        shape = expected.get(name, (batch, text_length))
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name}: expected shape {shape}, got {tuple(tensor.shape)}")
        if name == "region_class_targets":
            if not tensor.is_floating_point():
                raise ValueError(f"region_class_targets: expected class probabilities (float), got {tensor.dtype}")
        elif name != "masked_regions" and tensor.is_floating_point():
            raise ValueError(f"{name}: expected integer class ids (torch.long), got {tensor.dtype}")
