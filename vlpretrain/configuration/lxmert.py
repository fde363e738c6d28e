"""Configuration of LXMERT (Tan & Bansal 2019): language, object-relation and cross-modality encoders."""

from __future__ import annotations

from .base import VLPretrainConfig

LXMERT_OBJECTIVES = ("mlm", "region_feature", "region_object", "region_attribute", "matching", "qa")

# The original code multiplies each visual loss by 1 / obj_mask_rate = 1 / 0.15 (airsplay/lxmert).
_VISUAL_LOSS_WEIGHT = 1.0 / 0.15


class LxmertConfig(VLPretrainConfig):
    r"""Configuration of [`LxmertModel`] and its heads.

    The defaults are the paper's base model as released by airsplay/lxmert: 9 language layers, 5 object-relation
    layers and 5 cross-modality layers of width 768, 36 regions of 2048-d bottom-up-attention features with 4-d
    corner boxes normalised to [0, 1].

    Args:
        vocab_size: WordPiece vocabulary size (bert-base-uncased: 30522).
        hidden_size / num_attention_heads / intermediate_size / hidden_act: shared by all three encoders.
        hidden_dropout_prob / attention_probs_dropout_prob: dropout after sub-blocks and on attention weights.
        max_position_embeddings / type_vocab_size: text embedding tables.
        initializer_range: standard deviation of the N(0, std) weight initialisation.
        layer_norm_eps: epsilon of every LayerNorm (1e-12 in the original).
        num_text_layers / num_visual_layers / num_cross_layers: the L, R and X layer counts.
        region_feature_size: size D of each region feature (2048 for bottom-up attention).
        region_box_size: coordinates per box (4: x1, y1, x2, y2).
        num_object_labels / num_attribute_labels: detector vocabularies (Visual Genome: 1600 / 400).
        num_qa_labels: answers of the pretraining image-QA head (9500 in the release).
        loss_weights: weight of each pretraining objective in the summed ``loss``; an objective whose weight is
            0 (or missing) is switched off and its head is not built. Keys: ``mlm``, ``region_feature``,
            ``region_object``, ``region_attribute``, ``matching``, ``qa``. The visual losses default to
            1 / 0.15, as in the original code.
        tie_word_embeddings: tie the masked-LM decoder to the word embeddings (as in the original).
        contrastive_loss_weight: weight of the in-batch contrastive loss between the pooled text stream ([CLS]
            after the language layers) and the pooled visual stream (mean of the object-relation layers' output)
            added by [`LxmertForImageTextRetrieval`] to the matching loss; it trains the first stage of two-stage
            retrieval. 0 (default) switches it off, as in the original.
        contrastive_temperature: temperature of that loss.

    ``lora_target_modules`` (a class attribute, not saved) names the layers LoRA adapts by default: the fused
    query/key/value projections (``qkv``), the attention and feed-forward output projections (``output.dense``)
    and the feed-forward input projections (``fc_in``) of every language, object-relation and cross-modality layer.
    """

    model_type = "vlpretrain-lxmert"
    objectives = LXMERT_OBJECTIVES
    region_mask_style = "lxmert"
    lora_target_modules = ("qkv", "output.dense", "fc_in")

    num_text_layers: int = 9
    num_visual_layers: int = 5
    num_cross_layers: int = 5
    region_feature_size: int = 2048
    region_box_size: int = 4
    num_object_labels: int = 1600
    num_attribute_labels: int = 400
    num_qa_labels: int = 9500
    contrastive_loss_weight: float = 0.0
    contrastive_temperature: float = 0.05

    def default_loss_weights(self) -> dict[str, float]:
        """The original's weights: 1 for the text and cross-modality objectives, 1 / 0.15 for the visual ones."""
        visual = ("region_feature", "region_object", "region_attribute")
        return {name: _VISUAL_LOSS_WEIGHT if name in visual else 1.0 for name in LXMERT_OBJECTIVES}

    def __post_init__(self, **kwargs):
        if self.contrastive_loss_weight < 0 or self.contrastive_temperature <= 0:
            raise ValueError(
                f"contrastive_loss_weight must be >= 0 and contrastive_temperature > 0, got "
                f"{self.contrastive_loss_weight} and {self.contrastive_temperature}"
            )
        if self.region_box_size not in (4, 5):
            raise ValueError(f"region_box_size must be 4 (x1, y1, x2, y2) or 5 (plus area), got {self.region_box_size}")
        super().__post_init__(**kwargs)
