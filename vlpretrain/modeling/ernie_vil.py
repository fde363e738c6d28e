"""ERNIE-ViL (Yu et al. 2021): ViLBERT's two-stream topology pretrained with scene-graph prediction.

The encoder is ViLBERT's (the Paddle code, PaddlePaddle/ERNIE ``ernie-vil/model/
vl_transformer_encoder.py``, maps one-to-one onto it) with ERNIE-ViL's sizes:
LayerNorm epsilon 1e-5, four token types, text FFN 4 x hidden, and exactly one layer of each stream after the
last co-layer. Pretraining adds three scene-graph objectives to ViLBERT's: the collator masks the caption
tokens of sampled objects, attributes and relationships of the caption's scene graph
(``vlpretrain.data.scene_graph``), and the masked-LM head predicts them; each has its own loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils.generic import can_return_tuple

from ..configuration.ernie_vil import ErnieVilConfig
from .two_stream import checked_image_text_inputs
from .vilbert import (
    VilbertForImageTextRetrieval,
    VilbertForPreTraining,
    VilbertForPreTrainingOutput,
    VilbertForQuestionAnswering,
    VilbertModel,
)

SCENE_GRAPH_OBJECTIVES = ("scene_object", "scene_attribute", "scene_relation")


@dataclass
class ErnieVilForPreTrainingOutput(VilbertForPreTrainingOutput):
    """Losses and predictions of [`ErnieVilForPreTraining`]: ViLBERT's, then the three scene-graph losses."""

    scene_object_loss: torch.Tensor | None = None
    scene_attribute_loss: torch.Tensor | None = None
    scene_relation_loss: torch.Tensor | None = None


class ErnieVilModel(VilbertModel):
    """The ERNIE-ViL encoder: text and visual embeddings, co-attention layers and the fused ReLU poolers."""

    config: ErnieVilConfig
    config_class = ErnieVilConfig
    base_model_prefix = "ernie_vil"
    hub_auto_class = "AutoModel"


class ErnieVilForPreTraining(VilbertForPreTraining):
    """ERNIE-ViL with scene-graph prediction (objects, attributes, relationships), MLM, masked region
    classification (KL to the detector distribution) and image-text matching (1 = matched).

    Scene-graph targets are ``scene_object_labels``, ``scene_attribute_labels`` and ``scene_relation_labels``
    (batch, text_length): the original token id at the masked tokens of the sampled nodes, -100 elsewhere.
    A scene-graph loss is left out of the output and of ``loss`` when its batch has no such node (many captions
    have no relationship), so logged averages are over the batches that train it.
    """

    config: ErnieVilConfig
    config_class = ErnieVilConfig
    base_model_prefix = "ernie_vil"
    base_model_class = ErnieVilModel
    output_class = ErnieVilForPreTrainingOutput
    hub_auto_class = "AutoModelForPreTraining"
    _tied_weights_keys = {"mlm_head.decoder.weight": "ernie_vil.embeddings.word_embeddings.weight"}

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        region_features: torch.Tensor | None = None, region_boxes: torch.Tensor | None = None, region_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        masked_regions: torch.Tensor | None = None, region_class_targets: torch.Tensor | None = None,
        matched_labels: torch.Tensor | None = None,
        scene_object_labels: torch.Tensor | None = None, scene_attribute_labels: torch.Tensor | None = None,
        scene_relation_labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> ErnieVilForPreTrainingOutput:
        inputs = checked_image_text_inputs(
            self.config, input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, inputs_embeds=inputs_embeds,
            region_features=region_features, region_boxes=region_boxes, region_attention_mask=region_attention_mask,
        )
        scene_labels = (scene_object_labels, scene_attribute_labels, scene_relation_labels)
        token_targets = {"mlm": labels, **dict(zip(SCENE_GRAPH_OBJECTIVES, scene_labels))}
        return self.pretraining_output(
            inputs, token_targets, masked_regions=masked_regions, region_class_targets=region_class_targets,
            matched_labels=matched_labels, output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )


class ErnieVilForQuestionAnswering(VilbertForQuestionAnswering):
    """ERNIE-ViL's VQA head: fc(co_hidden -> 2048, ReLU), dropout 0.5, fc(2048 -> answers) on the fused vector,
    trained with sigmoid cross-entropy on soft scores summed over answers (= BCE mean x answers)."""

    config: ErnieVilConfig
    config_class = ErnieVilConfig
    base_model_prefix = "ernie_vil"
    base_model_class = ErnieVilModel
    hub_auto_class = "AutoModelForVisualQuestionAnswering"


class ErnieVilForImageTextRetrieval(VilbertForImageTextRetrieval):
    """ERNIE-ViL scoring (image, caption) pairs with the 2-way matching head of pretraining (1 = matched).

    The released Flickr head (``match_fc``, one logit trained with a circle loss) is not reproduced; this head
    loads from a pretraining checkpoint and trains with cross-entropy on matched / swapped captions.
    """

    config: ErnieVilConfig
    config_class = ErnieVilConfig
    base_model_prefix = "ernie_vil"
    base_model_class = ErnieVilModel
    hub_auto_class = "AutoModelForSequenceClassification"
