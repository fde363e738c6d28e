"""Configuration of ImageBERT (Qi et al. 2020, arXiv 2001.07966): a single BERT stream over text and image RoIs."""

from __future__ import annotations

from .base import VLPretrainConfig

IMAGE_BERT_OBJECTIVES = ("mlm", "region_object", "region_feature", "matching")


class ImageBertConfig(VLPretrainConfig):
    r"""Configuration of [`ImageBertModel`] and its heads.

    ImageBERT has no released code or weights; the abstract fixes only the single stream and the four objectives
    (MLM, masked object classification, masked region feature regression, image-text matching). What the paper
    leaves open (or what could not be checked against it) is decided here, and each choice is a field:

    - Sizes: BERT-base (12 x 768, 12 heads, 3072), RoI features of 2048 (Faster R-CNN on Visual Genome).
    - Image token embedding: LN(Linear(feature) + Linear(5-d box: x1, y1, x2, y2, relative area) + segment + a
      position embedding), the text side is BERT's. One LayerNorm over the sum (no per-part LayerNorms).
    - Positions (``region_position_id``): every RoI shares one "dummy" position id; by default the last row of the
      position table (``max_position_embeddings - 1``), which text never reaches.
    - Segments: 0 for text, ``image_segment_id`` (1) for image tokens (``type_vocab_size`` 2).
    - Token order: the joint sequence is laid out ``[CLS] text [SEP] RoIs``. Every token has an explicit
      position id and RoIs share one, so attention is blind to the layout: ``[CLS] RoIs [SEP] text`` (the order
      the paper's figure may show; unverified) gives the same outputs and needs no option.
    - Masked object classification: cross-entropy to the detector's top label (``region_object_labels``) on the
      masked RoIs only; masked RoIs are zeroed in 90 % of cases and kept in 10 % (the collator's ``vilbert`` style).
    - Masked region feature regression: L2 (mean squared error over feature dims) on the masked RoIs.
    - Matching: pooled [CLS] (tanh) -> Linear(2), 1 = matched. The paper samples negative captions for images and
      negative images for captions; the ratio is not given, so half of the negatives replace the image
      (``negative_image_probability``, read by ``collator_for_config``) and half the caption.
    - Loss mixture: equal weights (``loss_weights``), all four on.

    Args:
        vocab_size / hidden_size / num_hidden_layers / num_attention_heads / intermediate_size / hidden_act:
            the BERT stream.
        hidden_dropout_prob / attention_probs_dropout_prob / max_position_embeddings / type_vocab_size /
            initializer_range / layer_norm_eps: as BERT.
        region_feature_size: RoI feature size.
        num_object_labels: detector classes (1600 Visual Genome objects).
        region_position_id / image_segment_id: see above.
        negative_image_probability: share of matching negatives that replace the image rather than the caption.
        loss_weights: weight per objective (``mlm``, ``region_object``, ``region_feature``, ``matching``); 0 or
            missing switches it off and its head is not built.
        tie_word_embeddings: tie the MLM decoder to the word embeddings.
    """

    model_type = "vlpretrain-image-bert"
    objectives = IMAGE_BERT_OBJECTIVES

    num_hidden_layers: int = 12
    region_feature_size: int = 2048
    num_object_labels: int = 1600
    region_position_id: int | None = None
    image_segment_id: int = 1
    negative_image_probability: float = 0.5

    def __post_init__(self, **kwargs):
        if self.region_position_id is not None and not 0 <= self.region_position_id < self.max_position_embeddings:
            raise ValueError(
                f"region_position_id must be in [0, {self.max_position_embeddings}) or None, got {self.region_position_id}"
            )
        if not 0.0 <= self.negative_image_probability <= 1.0:
            raise ValueError(f"negative_image_probability must be in [0, 1], got {self.negative_image_probability}")
        if not 0 <= self.image_segment_id < self.type_vocab_size:
            raise ValueError(f"image_segment_id must be in [0, {self.type_vocab_size}), got {self.image_segment_id}")
        super().__post_init__(**kwargs)

    @property
    def dummy_region_position(self) -> int:
        """The position id shared by every RoI."""
        return self.max_position_embeddings - 1 if self.region_position_id is None else self.region_position_id
