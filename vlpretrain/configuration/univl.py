"""Configuration of UniVL (Luo et al. 2020): text, video and cross encoders and a caption decoder."""

from __future__ import annotations

from .base import VLPretrainConfig

# contrastive = video-text joint (MIL-NCE); mlm = conditioned MLM; frame_feature = conditioned masked frame
# modelling (NCE); alignment = cross-encoder video-text alignment; reconstruction = language reconstruction.
UNIVL_OBJECTIVES = ("contrastive", "mlm", "frame_feature", "alignment", "reconstruction")
_CROSS_OBJECTIVES = ("mlm", "frame_feature", "alignment", "reconstruction")


class UnivlConfig(VLPretrainConfig):
    r"""Configuration of [`UnivlModel`] and its heads.

    Defaults are the released model (microsoft/UniVL, stage II): a 12-layer BERT-base text encoder, a 6-layer video
    encoder over 1024-d S3D clip features (one per second), a 2-layer cross encoder and a 3-layer decoder, all of
    width 768.

    Args:
        vocab_size / max_position_embeddings / type_vocab_size: text tables (bert-base-uncased: 30522 / 512 / 2);
            the decoder shares the word and position tables.
        hidden_size / num_attention_heads / intermediate_size / hidden_act / hidden_dropout_prob /
            attention_probs_dropout_prob / layer_norm_eps / initializer_range: shared by every module.
        num_text_layers / num_visual_layers / num_cross_layers / num_decoder_layers: 12 / 6 / 2 / 3.
        frame_feature_size: size D of each clip feature (1024 for S3D).
        max_frames: the video encoder's position table (512); a longer video is an error.
        max_cross_positions: the cross encoder's position table (1024); text positions 0..T-1, frames from
            ``frame_position_offset`` on.
        frame_position_offset: cross-encoder position of the first frame. The release pads every text to
            ``max_words`` (48), so its frames always start at 48; the converter sets that value. None (new models):
            ``max_position_embeddings``. A fixed offset keeps a pair's score independent of how long the other texts
            of its batch are (starting frames after the batch's padded text length would not).
        stage: 1 builds only the text and video encoders (trained with the joint MIL-NCE objective); 2 builds the
            cross encoder and the decoder too (all five objectives).
        loss_weights: weight of each objective in ``loss``; 0 (or missing) switches it off. Keys: ``contrastive``
            (video-text joint, MIL-NCE), ``mlm``, ``frame_feature`` (masked frame NCE), ``alignment`` (cross-encoder
            score, softmax over the batch), ``reconstruction`` (teacher-forced decoder). Default: every objective of
            the stage with weight 1, as in the original.
        enhance_visual_probability: EnhancedV, stage II only: per training sample, the probability that the encoder
            text is dropped to ``[CLS] [SEP]`` (0.15 in the release; 0 switches it off).
        retrieval_mode: [`UnivlForVideoTextRetrieval`] scoring: ``"joint"`` (FT-Joint, cosine of the mean-pooled
            text and video encodings) or ``"align"`` (FT-Align, cross-encoder score; needs stage 2 modules).
        retrieval_margin: margin of the max-margin ranking loss of retrieval fine-tuning (0.1).
        max_caption_length / num_beams: decoding defaults of [`UnivlForCaptioning`] (48 words, beam 5).
        bos_token_id / eos_token_id / pad_token_id: ``[CLS]`` starts a caption, ``[SEP]`` ends it.
    """

    model_type = "vlpretrain-univl"
    objectives = UNIVL_OBJECTIVES
    modalities = ("frames",)
    region_mask_style = None
    lora_target_modules = ("qkv", "query", "key_value", "output.dense", "fc_in")

    num_text_layers: int = 12
    num_visual_layers: int = 6
    num_cross_layers: int = 2
    num_decoder_layers: int = 3
    frame_feature_size: int = 1024
    max_frames: int = 512
    max_cross_positions: int = 1024
    frame_position_offset: int | None = None
    stage: int = 2
    enhance_visual_probability: float = 0.15
    retrieval_mode: str = "joint"
    retrieval_margin: float = 0.1
    max_caption_length: int = 48
    num_beams: int = 5
    bos_token_id: int | None = 101
    eos_token_id: int | None = 102

    def default_loss_weights(self) -> dict[str, float]:
        """Every objective at 1 in stage II; stage I trains the joint contrastive objective only."""
        return {name: 1.0 for name in (UNIVL_OBJECTIVES if self.stage == 2 else ("contrastive",))}

    def __post_init__(self, **kwargs):
        if self.stage not in (1, 2):
            raise ValueError(f"stage must be 1 (text + video encoders) or 2 (all four modules), got {self.stage}")
        self.loss_weights = self.checked_loss_weights(self.loss_weights)
        if self.stage == 1:
            needs_cross = [name for name in _CROSS_OBJECTIVES if self.loss_weights[name] > 0]
            if needs_cross:
                raise ValueError(f"loss_weights: {needs_cross} need the cross encoder/decoder of stage 2, but stage=1")
        if self.retrieval_mode not in ("joint", "align"):
            raise ValueError(f"retrieval_mode must be 'joint' (FT-Joint) or 'align' (FT-Align), got {self.retrieval_mode!r}")
        if self.retrieval_mode == "align" and self.stage == 1:
            raise ValueError("retrieval_mode='align' scores with the cross encoder, which stage=1 does not build")
        if not 0.0 <= self.enhance_visual_probability <= 1.0:
            raise ValueError(f"enhance_visual_probability must be in [0, 1], got {self.enhance_visual_probability}")
        if self.max_position_embeddings + self.max_frames > self.max_cross_positions:
            raise ValueError(
                f"max_position_embeddings + max_frames ({self.max_position_embeddings} + {self.max_frames}) must be at "
                f"most max_cross_positions ({self.max_cross_positions})"
            )
        if self.frame_position_offset is not None and not 0 < self.frame_position_offset <= self.max_position_embeddings:
            raise ValueError(
                f"frame_position_offset must be in [1, max_position_embeddings={self.max_position_embeddings}] or None, "
                f"got {self.frame_position_offset}"
            )
        super().__post_init__(**kwargs)
