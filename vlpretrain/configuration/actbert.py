"""Configuration of ActBERT (Zhu & Yang, CVPR 2020): action, region and word streams joined by tangled blocks."""

from __future__ import annotations

from .base import VLPretrainConfig

ACTBERT_OBJECTIVES = ("mlm", "masked_action", "region_class", "matching")


class ActBertConfig(VLPretrainConfig):
    r"""Configuration of [`ActBertModel`] and its heads.

    Defaults are the PaddleVideo port's constructor (the only code): a 12-layer BERT-base text stream, a 2-layer
    region stream (1024 wide, 8 heads, FFN 1024) over 2048-d RoI features with 5-d boxes and a global region token,
    a 3-layer action stream (768 wide) over 2048-d clip features, and 2 tangled blocks (1024 wide, 8 heads) placed
    by ``t_ent_attention_id`` / ``v_ent_attention_id`` / ``a_ent_attention_id``: text L0-L9, T0, L10, T1, L11;
    regions T0, V0, T1, V1; actions T0, A0, T1, A1, A2. Poolers are ReLU to ``bi_hidden_size``; matching uses
    ``dropout(p_text * p_region + p_action)`` (``fusion_method="mul"``) or the sum (``"sum"``).

    Decisions (unverified in the spec):

    - **Tangled block**: the port adds (after nearest resizing along the sequence) the action-guided contexts to
      the keys/values. It projects the region-guided context for the text *values* with ``value_at`` and never uses
      ``value_av``; this package uses ``value_av`` there (the evident intent). The ``actbert`` converter copies the
      port's ``value_at`` into ``value_av`` so a converted checkpoint computes what the port computed.
    - **Actions** are the video's frame/clip features (``frame_features`` (B, F, D), the package's video input).
      Masked action classification: the collator's ``masked_action`` objective selects 15 % of the frames, zeroes 90 %
      of them and keeps 10 %, as the port's ``random_action`` (``frame_mask_style``), and gives one ``action_labels``
      per video; each masked, valid frame predicts its video's action (the port has one verb label per action slot;
      ``shapes-video`` has one per clip). ``num_action_labels`` defaults to the port's 700.
      A zeroed masked action (in ``masked_frames`` with an all-zero feature; a kept one enters as itself) enters the
      action stream as a learned ``mask_embedding``, not as the projection of its zeroed feature: the port's zeroed
      feature becomes the projection's bias, which starts at zero, so the LayerNorm input is constant and its
      gradient is scaled by 1 / sqrt(``layer_norm_eps``) = 1e6; under the Trainer's gradient clipping that froze
      every objective. The converter sets ``mask_embedding`` to the port's
      bias, so converted weights compute what the port computes. As in the paper (verbs of the narration), the
      caption usually names the action: masked action classification can read it from the words.
      The port's action stream has **no position embedding**, so it cannot tell a clip played forwards from one
      played backwards (on ``shapes-video``: "moves left" from "moves right", "grows" from "shrinks");
      ``action_position_embeddings=True`` adds a learned position table (``max_position_embeddings`` rows) to the
      action embeddings (off by default, as in the port).
    - **Regions** come with the data (``region_features``, ``region_boxes`` normalised (x1, y1, x2, y2),
      ``region_attention_mask``), e.g. the region featurizer run on frames sampled from the clip
      (``VideoRegionLanguageProcessor``, ActBERT's processor: 4 frames, at most 36 regions per video); for
      ``shapes-video`` the training source derives them from the clip's per-frame ``boxes``. The model prepends the
      global token (mean of the valid regions, box (0, 0, 1, 1)). **A video with no region** (all-zero
      ``region_attention_mask`` row, or zero regions in the batch) is encoded with the global token alone, whose
      feature is then zero: a documented fallback, not an error. Masked object classification
      (``region_class``): KL from ``region_class_targets`` (the detector's distribution) to the prediction over
      ``num_object_labels``, averaged over ``masked_regions``.
    - ``matched_labels`` follow the package: 1 matched, 0 not (the port uses 0 for matched).

    Args:
        vocab_size / hidden_size / num_hidden_layers / num_attention_heads / intermediate_size: the text stream.
        v_hidden_size / v_num_attention_heads / v_intermediate_size / v_num_hidden_layers: the region stream.
        a_hidden_size / a_num_attention_heads / a_intermediate_size / a_num_hidden_layers: the action stream.
        bi_hidden_size / bi_num_attention_heads: width and heads of the tangled attention.
        t_ent_attention_id / v_ent_attention_id / a_ent_attention_id: before which layer of each stream the
            tangled blocks run (one entry per block).
        region_feature_size / frame_feature_size: input feature sizes (2048 / 2048).
        num_object_labels / num_action_labels: detector classes (1601) and action classes (700).
        fusion_method: ``"mul"`` or ``"sum"``.
        action_position_embeddings: add learned positions to the action stream (not in the port).
        loss_weights: weight of each objective in ``loss`` (keys ``mlm``, ``masked_action``, ``region_class``,
            ``matching``; 1 each as in the port); 0 or missing switches it off.
    """

    model_type = "vlpretrain-actbert"
    objectives = ACTBERT_OBJECTIVES
    modalities = ("regions", "frames")
    # (zeroed, swapped) shares of the masked actions: the port's random_action zeroes 90 % and keeps 10 %
    # (paddlevideo/loader/pipelines/multimodal.py); collators.collator_for_config reads it.
    frame_mask_style = (0.9, 0.0)
    lora_target_modules = ("qkv", "output.dense", "fc_in")

    num_hidden_layers: int = 12
    v_hidden_size: int = 1024
    v_num_attention_heads: int = 8
    v_intermediate_size: int = 1024
    v_num_hidden_layers: int = 2
    a_hidden_size: int = 768
    a_num_attention_heads: int = 12
    a_intermediate_size: int = 3072
    a_num_hidden_layers: int = 3
    bi_hidden_size: int = 1024
    bi_num_attention_heads: int = 8
    t_ent_attention_id: list | None = None
    v_ent_attention_id: list | None = None
    a_ent_attention_id: list | None = None
    region_feature_size: int = 2048
    frame_feature_size: int = 2048
    num_object_labels: int = 1601
    num_action_labels: int = 700
    fusion_method: str = "mul"
    action_position_embeddings: bool = False

    def __post_init__(self, **kwargs):
        self.t_ent_attention_id = list(self.t_ent_attention_id if self.t_ent_attention_id is not None else [10, 11])
        self.v_ent_attention_id = list(self.v_ent_attention_id if self.v_ent_attention_id is not None else [0, 1])
        self.a_ent_attention_id = list(self.a_ent_attention_id if self.a_ent_attention_id is not None else [0, 1])
        for width, heads, name in ((self.hidden_size, self.num_attention_heads, "hidden_size"),
                                   (self.v_hidden_size, self.v_num_attention_heads, "v_hidden_size"),
                                   (self.a_hidden_size, self.a_num_attention_heads, "a_hidden_size"),
                                   (self.bi_hidden_size, self.bi_num_attention_heads, "bi_hidden_size")):
            if width % heads:
                raise ValueError(f"{name} ({width}) must be a multiple of its number of attention heads ({heads})")
        if self.fusion_method not in ("mul", "sum"):
            raise ValueError(f"fusion_method must be 'mul' or 'sum', got {self.fusion_method!r}")
        ids = (self.t_ent_attention_id, self.v_ent_attention_id, self.a_ent_attention_id)
        if len({len(i) for i in ids}) != 1:
            raise ValueError(f"t/v/a_ent_attention_id need one entry per tangled block each, got {[list(i) for i in ids]}")
        for name, values, count in (("t_ent_attention_id", ids[0], self.num_hidden_layers),
                                    ("v_ent_attention_id", ids[1], self.v_num_hidden_layers),
                                    ("a_ent_attention_id", ids[2], self.a_num_hidden_layers)):
            if list(values) != sorted(values) or any(not 0 <= v <= count for v in values):
                raise ValueError(f"{name} must be non-decreasing layer indices in [0, {count}], got {list(values)}")
        super().__post_init__(**kwargs)
