"""ERNIE-ViL (Yu et al. 2021): ViLBERT's two-stream topology pretrained with scene-graph prediction.

The encoder is ViLBERT's (the Paddle code, PaddlePaddle/ERNIE ``ernie-vil/model/
vl_transformer_encoder.py``, maps one-to-one onto it) with ERNIE-ViL's sizes:
LayerNorm epsilon 1e-5, four token types, text FFN 4 x hidden, and exactly one layer of each stream after the
last co-layer. Pretraining adds three scene-graph objectives to ViLBERT's: the collator masks the caption
tokens of sampled objects, attributes and relationships of the caption's scene graph
(``vlpretrain.data.scene_graph``), and the masked-LM head predicts them; each has its own loss.
"""

from __future__ import annotations

import torch

from ..configuration.ernie_vil import ErnieVilConfig
from .base import check_image_text_inputs
from .losses import IGNORE_INDEX, classification_loss
from .vilbert import (
    VilbertForImageTextRetrieval,
    VilbertForPreTraining,
    VilbertForPreTrainingOutput,
    VilbertForQuestionAnswering,
    VilbertModel,
    check_pretraining_targets,
)

SCENE_GRAPH_OBJECTIVES = ("scene_object", "scene_attribute", "scene_relation")


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
    hub_auto_class = "AutoModelForPreTraining"
    _tied_weights_keys = {"mlm_head.decoder.weight": "ernie_vil.embeddings.word_embeddings.weight"}

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        region_features: torch.Tensor | None = None,
        region_boxes: torch.Tensor | None = None,
        region_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        masked_regions: torch.Tensor | None = None,
        region_class_targets: torch.Tensor | None = None,
        matched_labels: torch.Tensor | None = None,
        scene_object_labels: torch.Tensor | None = None,
        scene_attribute_labels: torch.Tensor | None = None,
        scene_relation_labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> VilbertForPreTrainingOutput | tuple:
        return_dict = self.config.return_dict if return_dict is None else return_dict
        inputs = (input_ids, attention_mask, token_type_ids, region_features, region_boxes, region_attention_mask)
        check_image_text_inputs(self.config, *inputs, inputs_embeds)
        scene_labels = {
            "scene_object": scene_object_labels,
            "scene_attribute": scene_attribute_labels,
            "scene_relation": scene_relation_labels,
        }
        check_pretraining_targets(
            self.config, input_ids if input_ids is not None else inputs_embeds[..., 0], region_features,
            labels=labels, masked_regions=masked_regions, region_class_targets=region_class_targets,
            matched_labels=matched_labels, **{f"{name}_labels": value for name, value in scene_labels.items()},
        )
        encoded = self.base_model.encode(*inputs, inputs_embeds, output_attentions, output_hidden_states)
        losses, output = self.pretraining_losses(
            encoded, region_attention_mask, labels, masked_regions, region_class_targets, matched_labels
        )
        for name, targets in scene_labels.items():
            if targets is None or not self.config.objective_enabled(name):
                continue
            positions = targets != IGNORE_INDEX
            if not bool(positions.any()):
                continue
            logits = self.mlm_head(encoded.text_last_hidden_state, positions)
            losses[name] = classification_loss(logits, targets[positions])
            setattr(output, f"{name}_loss", losses[name])
        output.loss = self.weighted_loss(losses)
        return output if return_dict else output.to_tuple()


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
