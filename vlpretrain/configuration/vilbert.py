"""Configuration of ViLBERT (Lu et al. 2019): a BERT text stream and a 1024-wide visual stream joined by co-attention."""

from __future__ import annotations

from .base import VLPretrainConfig

VILBERT_OBJECTIVES = ("mlm", "region_class", "matching")

# The released configurations (``config/bert_base_*layer_*conect.json``, identical in vilbert_beta and
# vilbert-multi-task): values that differ from the 6-layer default.
VILBERT_RELEASED_CONFIGS: dict[str, dict] = {
    "2-layer": dict(v_num_hidden_layers=2, v_biattention_id=[0, 1], t_biattention_id=[10, 11]),
    "4-layer": dict(v_num_hidden_layers=4, v_biattention_id=[0, 1, 2, 3], t_biattention_id=[8, 9, 10, 11]),
    "6-layer": dict(),
    "8-layer": dict(
        v_num_hidden_layers=8, v_biattention_id=list(range(8)), t_biattention_id=list(range(4, 12))
    ),
    "large": dict(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        t_biattention_id=list(range(18, 24)),
    ),
}


class VilbertConfig(VLPretrainConfig):
    r"""Configuration of [`VilbertModel`] and its heads.

    The defaults are the 6-layer release (``bert_base_6layer_6conect.json``): 12 text layers of width 768,
    6 visual layers of width 1024 (8 heads, FFN 1024), 6 co-attention layers of width 1024 (8 heads) placed by
    ``t_biattention_id`` / ``v_biattention_id``, 2048-d region features plus a global image token, 5-d boxes and
    1601 detector classes. The other releases are in ``VILBERT_RELEASED_CONFIGS`` (``VilbertConfig.released``).

    Args:
        vocab_size / hidden_size / num_hidden_layers / num_attention_heads / intermediate_size / hidden_act:
            the text stream (BERT-base).
        hidden_dropout_prob / attention_probs_dropout_prob: dropout after sub-blocks and on attention weights
            of every stream (the releases use 0.1 for text, visual and co-attention alike, so one value each).
        max_position_embeddings / type_vocab_size / pad_token_id: text embedding tables.
        initializer_range / layer_norm_eps: N(0, std) initialisation and every LayerNorm's epsilon (1e-12).
        region_feature_size: size of each region feature (2048 for bottom-up attention).
        v_hidden_size / v_num_hidden_layers / v_num_attention_heads / v_intermediate_size: the visual stream.
        bi_hidden_size / bi_num_attention_heads: co-attention width and heads; also the poolers' output width.
        t_biattention_id / v_biattention_id: co-layer k runs after the text layers before ``t_biattention_id[k]``
            and the visual layers before ``v_biattention_id[k]``; the remaining layers run after the last one.
            Default (the releases' pattern): K = min(6, text layers, visual layers) co-layers after the last K
            text layers and before the first K visual layers.
        num_object_labels: size of the detector's class distribution that masked regions are trained to
            predict (1601 = Visual Genome's 1600 classes + background; the original's ``v_target_size``).
        add_global_image_token: prepend the global "IMG" region (mean feature, box (0, 0, 1, 1)) in the model.
            Set False when the features already start with it.
        vqa_hidden_size / vqa_dropout: the VQA classifier (vilbert_beta: 2048 and 0.5).
        loss_weights: weight of each pretraining objective in the summed ``loss``; 0 (or missing) switches
            it off and its head is not built. Keys: ``mlm``, ``region_class`` (KL to the detector
            distribution of masked regions), ``matching`` (multimodal alignment). All 1 as in the original.
        tie_word_embeddings: tie the masked-LM decoder to the word embeddings (as in the original).

    Not kept: ``bi_intermediate_size``, ``bi_attention_type``, ``pooling_method`` and ``v_initializer_range``
    are in the original JSON but unused by its code; fusion is always the element-wise product.
    """

    model_type = "vlpretrain-vilbert"
    objectives = VILBERT_OBJECTIVES

    num_hidden_layers: int = 12
    region_feature_size: int = 2048
    v_hidden_size: int = 1024
    v_num_hidden_layers: int = 6
    v_num_attention_heads: int = 8
    v_intermediate_size: int = 1024
    bi_hidden_size: int = 1024
    bi_num_attention_heads: int = 8
    t_biattention_id: list[int] | None = None
    v_biattention_id: list[int] | None = None
    num_object_labels: int = 1601
    add_global_image_token: bool = True
    vqa_hidden_size: int = 2048
    vqa_dropout: float = 0.5

    def __post_init__(self, **kwargs):
        co_layers = min(6, self.num_hidden_layers, self.v_num_hidden_layers)
        if self.t_biattention_id is None:
            self.t_biattention_id = list(range(self.num_hidden_layers - co_layers, self.num_hidden_layers))
        if self.v_biattention_id is None:
            self.v_biattention_id = list(range(co_layers))
        self.t_biattention_id = [int(index) for index in self.t_biattention_id]
        self.v_biattention_id = [int(index) for index in self.v_biattention_id]
        _check_two_stream_sizes(self, self.bi_hidden_size, self.bi_num_attention_heads)
        super().__post_init__(**kwargs)

    @classmethod
    def released(cls, name: str = "6-layer", **overrides) -> VilbertConfig:
        """One of the released configurations (``2-layer``, ``4-layer``, ``6-layer``, ``8-layer``, ``large``)."""
        if name not in VILBERT_RELEASED_CONFIGS:
            raise ValueError(f"name: expected one of {sorted(VILBERT_RELEASED_CONFIGS)}, got {name!r}")
        return cls(**{**VILBERT_RELEASED_CONFIGS[name], **overrides})


def _check_two_stream_sizes(config, co_size: int, co_heads: int) -> None:
    """Every width must split evenly into its heads, and the co-layer placement must be a valid schedule."""
    for width, heads, what in (
        (config.hidden_size, config.num_attention_heads, "hidden_size / num_attention_heads"),
        (config.v_hidden_size, config.v_num_attention_heads, "v_hidden_size / v_num_attention_heads"),
        (co_size, co_heads, "co-attention width / heads"),
    ):
        if width % heads:
            raise ValueError(f"{what}: {width} is not a multiple of {heads}")
    text_ids, visual_ids = config.t_biattention_id, config.v_biattention_id
    if len(text_ids) != len(visual_ids):
        raise ValueError(
            f"t_biattention_id and v_biattention_id must have one entry per co-layer each, got {text_ids} and {visual_ids}"
        )
    for name, ids, count in (
        ("t_biattention_id", text_ids, config.num_hidden_layers),
        ("v_biattention_id", visual_ids, config.v_num_hidden_layers),
    ):
        if ids != sorted(ids) or any(not 0 <= index <= count for index in ids):
            raise ValueError(f"{name} must be non-decreasing layer indices in [0, {count}], got {ids}")
