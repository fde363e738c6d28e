"""Configuration of VL-BERT (Su et al., ICLR 2020): one BERT stream over text and regions of interest."""

from __future__ import annotations

from .base import VLPretrainConfig

VL_BERT_OBJECTIVES = ("mlm", "text_mlm", "region_class", "matching")


class VlBertConfig(VLPretrainConfig):
    r"""Configuration of [`VlBertModel`] and its heads.

    Defaults are the released base model (jackroos/VL-BERT ``cfgs/pretrain/base_prec_4x16G_fp32.yaml``): a
    12-layer BERT-base stream, 3 segment types (A = text, B = second text, C = regions), 2048-d RoI features
    concatenated with a 2048-d sinusoidal box geometry embedding (wavelength 1000, coordinates x100) and projected
    to the hidden size by Dropout -> Linear -> ReLU, visual LayerNorms whose gain starts at 0, one shared position
    id for all region tokens, and the ``[END]`` embedding.

    Package choices (documented where the original code does something the package interface cannot copy):

    - Boxes are the package's normalised (x1, y1, x2, y2); the geometry uses them times ``geometry_scale``, which
      equals the original's pixel boxes divided by the image size times 100.
    - ``add_image_box``: the model itself prepends the whole-image box 0, whose appearance is the mean of the
      valid, unmasked region features (the original's rule for precomputed features), or its RoI feature in the
      end-to-end setting. Text tokens take its visual representation as their visual clue. Its box is
      ``[0, 0, 1, 1]`` (``image_box_style`` "normalized", for models trained with the package), or the original's
      (0, 0, W - 1, H - 1) in pixels (``image_box_style`` "pixels", set by the converter: converted checkpoints
      were trained with it, and their outputs move by up to 0.3 without it); "pixels" needs each image's size
      (the model's ``image_sizes`` input).
    - A masked RoI (``masked_regions`` with an all-zero feature, i.e. the collator's "masked" branch; its 10 %
      "keep" branch leaves the feature and counts only as a target) gets ``object_mask_word_embedding`` and,
      for precomputed features, ``object_mask_visual_embedding`` in place of its feature. In the end-to-end
      setting its pixels are zeroed before the backbone instead (``MASK_RAW_PIXELS``); there the regions of the
      "keep" branch are named by the ``kept_regions`` input (the original's ``mvrc_ops`` 0 with a target): they
      keep their pixels and word embedding and count only as targets.
    - Text-only MLM (the original's Books/Wikipedia batches): rows flagged by ``text_only`` drop every region and
      use ``aux_text_visual_embedding`` as the text's visual clue; their MLM loss is ``text_mlm_loss``. With a text
      corpus (``vlpretrain pretrain --text_corpus``) the package collator adds one corpus segment per image-caption
      pair to every batch, as the original; without one, ``vlpretrain pretrain`` switches ``text_mlm`` off and the
      captions stay multimodal (``text_only_probability`` > 0 would turn captions into text-only rows instead,
      which the original never does). Text-only examples carry one placeholder region.

    Args:
        vocab_size / hidden_size / num_hidden_layers / num_attention_heads / intermediate_size / hidden_act:
            the BERT stream.
        hidden_dropout_prob / attention_probs_dropout_prob: dropouts.
        max_position_embeddings / type_vocab_size: embedding tables (3 segment types).
        initializer_range / layer_norm_eps: N(0, std) initialisation; LayerNorm epsilon (1e-12).
        region_feature_size: appearance feature size (2048; in the end-to-end setting the backbone's channels).
        geometry_size / geometry_wavelength / geometry_scale: the sinusoidal box embedding.
        visual_scale_init: initial gain of ``visual_ln_text`` / ``visual_ln_object`` (0.0 in the original).
        add_image_box: prepend the whole-image box 0 (True in every released config; when off, the first given
            region is the text's visual clue).
        image_box_style: "normalized" (box 0 is [0, 0, 1, 1]) or "pixels" (the original's (0, 0, W - 1, H - 1),
            which needs ``image_sizes``; set by the converter).
        num_object_labels: detector classes predicted by masked RoI classification (1601 for BUTD).
        mask_token_id / sep_token_id: ids of ``[MASK]`` / ``[SEP]``, appended by the VQA model as the answer slot.
        backbone_config: an ``AutoBackbone`` config as a dict (``{"model_type": "resnet", ...}``) for the
            end-to-end setting: the model then takes ``pixel_values`` and pools each box with RoIAlign over the
            feature map ``backbone_feature_index``, training the backbone with the rest except the parts frozen
            below. None: precomputed features.
        backbone_frozen_stages: how many of the backbone's stages get no gradient, counted as the original counts
            them (``common/backbone/resnet``: stage 1 = the stem ``conv1`` + ``bn1``, stage k = residual stage
            ``layer{k-1}``). For a transformers backbone, stage 1 is its stem (``embedder``, or ``embeddings``) and
            stage k is ``encoder.stages[k-2]`` (or ``encoder.layers[k-2]``). 2 (the original's "stages 1-2"): the stem
            and the first residual stage (ResNet's res2); 0 trains the whole backbone.
        backbone_frozen_batch_norm: freeze every BatchNorm of the backbone as the original (``IMAGE_FROZEN_BN``):
            its affine parameters get no gradient and its running statistics are neither used from the batch nor
            updated (the BatchNorms stay in eval mode when the model trains).
        roi_output_size / roi_sampling_ratio: RoIAlign settings of the end-to-end setting (the bins are averaged).
        whole_word_masking / text_only_probability: read by the package collator (``collator_for_config``): MLM
            masks whole words (as the original), and this share of the image-caption pairs become text-only rows
            (0: off, as the original, which mixes 32 corpus segments with 32 image-caption pairs per GPU);
            examples marked ``text_only`` by a text dataset always are.
        loss_weights: weight per objective; 0 (or missing) switches it off and its head is not built. Keys:
            ``mlm`` (MLM with visual clues), ``text_mlm`` (text-only MLM), ``region_class`` (masked RoI
            classification with linguistic clues, soft targets), ``matching`` (sentence-image relationship; off by
            default, as in every released pretraining config). Defaults: 1, 1, 1, 0 (equal weights, as the original).
        vcr_num_object_labels / vcr_object_loss_weight: [`VlBertForMultipleChoice`]'s auxiliary object
            classification (the original's ``cnn_loss_reg`` with ``CNN_LOSS_TOP``): every valid region's final state
            (of every choice) -> the masked-RoI head's transform -> Dropout -> Linear to ``vcr_num_object_labels``
            classes (81 COCO classes), cross-entropy, added with this weight (1.0 as the original; 0 builds no head).
        tie_word_embeddings: tie the MLM decoder to the word embeddings.
    """

    model_type = "vlpretrain-vl-bert"
    objectives = VL_BERT_OBJECTIVES

    num_hidden_layers: int = 12
    type_vocab_size: int = 3
    region_feature_size: int = 2048
    geometry_size: int = 2048
    geometry_wavelength: float = 1000.0
    geometry_scale: float = 100.0
    visual_scale_init: float = 0.0
    add_image_box: bool = True
    image_box_style: str = "normalized"
    num_object_labels: int = 1601
    mask_token_id: int = 103
    sep_token_id: int = 102
    backbone_config: dict | None = None
    backbone_feature_index: int = -1
    backbone_frozen_stages: int = 2
    backbone_frozen_batch_norm: bool = True
    roi_output_size: int = 14
    roi_sampling_ratio: int = 2
    whole_word_masking: bool = True
    text_only_probability: float = 0.0
    vcr_num_object_labels: int = 81
    vcr_object_loss_weight: float = 1.0

    def default_loss_weights(self) -> dict[str, float]:
        """The released configs' objectives: sentence-image matching is off."""
        return {"mlm": 1.0, "text_mlm": 1.0, "region_class": 1.0, "matching": 0.0}

    def __post_init__(self, **kwargs):
        if self.geometry_size % 8:
            raise ValueError(f"geometry_size must be a multiple of 8 (4 coordinates x sin/cos), got {self.geometry_size}")
        if self.type_vocab_size < 3:
            raise ValueError(f"type_vocab_size must be at least 3 (text A, text B, regions), got {self.type_vocab_size}")
        if self.backbone_config is not None and not isinstance(self.backbone_config, dict):
            raise ValueError(f"backbone_config: expected a dict with a 'model_type' key or None, got {self.backbone_config!r}")
        if self.backbone_config is not None and "model_type" not in self.backbone_config:
            raise ValueError("backbone_config: expected a 'model_type' key (e.g. 'resnet')")
        if self.image_box_style not in ("normalized", "pixels"):
            raise ValueError(f"image_box_style must be 'normalized' or 'pixels', got {self.image_box_style!r}")
        if self.backbone_frozen_stages < 0:
            raise ValueError(f"backbone_frozen_stages must be 0 or more (stem = stage 1), got {self.backbone_frozen_stages}")
        if self.vcr_object_loss_weight < 0:
            raise ValueError(f"vcr_object_loss_weight must be 0 or more, got {self.vcr_object_loss_weight}")
        super().__post_init__(**kwargs)
