"""Configuration of LXMERT (Tan & Bansal 2019): language, object-relation and cross-modality encoders."""

from __future__ import annotations

from transformers import PreTrainedConfig

LXMERT_OBJECTIVES = ("mlm", "region_feature", "region_object", "region_attribute", "matching", "qa")

# The original code multiplies each visual loss by 1 / obj_mask_rate = 1 / 0.15 (airsplay/lxmert).
_VISUAL_LOSS_WEIGHT = 1.0 / 0.15


class LxmertConfig(PreTrainedConfig):
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
    lora_target_modules = ("qkv", "output.dense", "fc_in")

    vocab_size: int = 30522
    hidden_size: int = 768
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    num_text_layers: int = 9
    num_visual_layers: int = 5
    num_cross_layers: int = 5
    region_feature_size: int = 2048
    region_box_size: int = 4
    num_object_labels: int = 1600
    num_attribute_labels: int = 400
    num_qa_labels: int = 9500
    loss_weights: dict | None = None
    pad_token_id: int | None = 0
    tie_word_embeddings: bool = True
    contrastive_loss_weight: float = 0.0
    contrastive_temperature: float = 0.05

    def __post_init__(self, **kwargs):
        defaults = {
            "mlm": 1.0,
            "region_feature": _VISUAL_LOSS_WEIGHT,
            "region_object": _VISUAL_LOSS_WEIGHT,
            "region_attribute": _VISUAL_LOSS_WEIGHT,
            "matching": 1.0,
            "qa": 1.0,
        }
        weights = dict(defaults if self.loss_weights is None else self.loss_weights)
        unknown = sorted(set(weights) - set(LXMERT_OBJECTIVES))
        if unknown:
            raise ValueError(f"loss_weights: unknown objectives {unknown}; expected a subset of {list(LXMERT_OBJECTIVES)}")
        self.loss_weights = {name: float(weights.get(name, 0.0)) for name in LXMERT_OBJECTIVES}
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads ({self.num_attention_heads})"
            )
        if self.contrastive_loss_weight < 0 or self.contrastive_temperature <= 0:
            raise ValueError(
                f"contrastive_loss_weight must be >= 0 and contrastive_temperature > 0, got "
                f"{self.contrastive_loss_weight} and {self.contrastive_temperature}"
            )
        if self.region_box_size not in (4, 5):
            raise ValueError(f"region_box_size must be 4 (x1, y1, x2, y2) or 5 (plus area), got {self.region_box_size}")
        super().__post_init__(**kwargs)

    def objective_enabled(self, name: str) -> bool:
        """Whether the pretraining objective ``name`` is switched on."""
        return self.loss_weights.get(name, 0.0) > 0.0
