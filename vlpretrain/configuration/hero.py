"""Configuration of HERO (Li et al. 2020): a per-subtitle cross-modal transformer and a temporal transformer."""

from __future__ import annotations

from .base import VLPretrainConfig

# mlm = masked language modelling (cross-modal transformer only); frame_feature = masked frame modelling;
# frame_order = frame order modelling; vsm = video-subtitle matching (local span + global ranking).
HERO_OBJECTIVES = ("mlm", "frame_feature", "frame_order", "vsm")


class HeroConfig(VLPretrainConfig):
    r"""Configuration of [`HeroModel`] and its heads.

    Defaults are ``hero-tv-ht100`` (linjieli222/HERO): a 6-layer cross-modal transformer (RoBERTa-base every other
    layer, vocabulary padded to 50272), a 3-layer temporal transformer, 4352-d frame features (ResNet-152 2048 ||
    SlowFast 2304), one per 1.5 s, at most 100 frames.

    Args:
        vocab_size / max_position_embeddings / type_vocab_size: text tables (RoBERTa: 50272 / 514 / 2).
        hidden_size / num_attention_heads / intermediate_size / hidden_act / dropouts / layer_norm_eps /
            initializer_range: shared by the transformer layers.
        head_layer_norm_eps: LayerNorm eps of the frame input, heads and MLPs (1e-5, apex FusedLayerNorm).
        embedding_layer_norm_eps: LayerNorm eps of the subtitle (text) embeddings: 1e-5 in the release
            (``model/embed.py`` ``SubEmbeddings``), unlike its transformer layers (``layer_norm_eps``, 1e-12).
        num_cross_layers / num_temporal_layers: 6 / 3.
        frame_feature_size: size D of each frame feature (4352).
        max_frames: frames per video (100); also the frame-order classes and the per-subtitle frame positions.
        frame_interval: seconds per frame (1.5), used by the processor's and the collator's subtitle alignment
            (training on a source with an ``fps`` column sets it to 1 / fps).
        loss_weights: weight of each objective; 0 (or missing) switches it off. Keys ``mlm``, ``frame_feature``,
            ``frame_order``, ``vsm``.
        task_ratios: relative sampling frequency of each objective when ``sample_tasks`` (release: 2 : 2 : 1 : 2).
        sample_tasks: in training, run one objective per forward pass, drawn with ``task_ratios`` from a generator
            seeded by (``task_seed``, the model's step counter), so every process of a multi-process run draws the
            same task; in evaluation (and with ``sample_tasks=False``) every enabled objective runs.
        task_seed: seed of the task draws.
        frame_feature_loss_type: ``"nce"`` (MFM-NCE, used in the release) or ``"regression"`` (MFFR, L2).
            MFM-NCE's negatives are the predictions at the valid, unmasked frames of the batch. The release
            (``model/model.py`` ``forward_mfm``) takes every unmasked slot of its zero-padded frame mask, so the
            padded slots of shorter videos count as negatives too; here they do not, so a video's loss does not
            depend on how much padding the other videos of its batch add (equal without padding).
        nce_temperature: temperature of MFM-NCE (1.0).
        vsm_margin / vsm_negative_video_weight / vsm_negative_query_weight: hinge margin (0.1) and weights (8 / 8)
            of the global VSM ranking loss.
        vsm_span_weight / vsm_span_probability: weight (0.01) of the local loss (the sum of the start and end
            cross-entropies, ``model/pretrain.py``; video QA averages them, ``model/videoQA.py``) and the probability
            (0.2 = 1 - drop_svmr_prob) that a VSM step includes it.
        vsm_queries_per_video: queries per video (5): drawn from the subtitles that have aligned frames and, when
            fewer, padded by repeating the last one (``data/vsm.py``); a video without such a subtitle has none.
        vsm_hard_negative_start_step / vsm_hard_negative_pool_size / vsm_hard_negative_weight: from training
            forward pass ``vsm_hard_negative_start_step`` on (the model's ``task_step`` counter; None: never),
            the ranking loss weights each query's (video's) ``pool_size`` highest-scoring negatives by ``weight``
            and the others by 0.1 (``model/pretrain.py`` ``get_video_level_loss``). The release switches at
            optimizer step 20,000 with 2 accumulated batches per step (``config/pretrain-tv-16gpu.json``), its
            40,000th batch: 40000 / 20 / 10 here.
        bos_token_id: the token that starts a VSM query (the release's ``<s>``, RoBERTa id 0; the recipes set
            the tokenizer's ``[CLS]``). A subtitle is the separator token followed by its words (``</s>`` + ids,
            see ``processing/subtitles.py``); as a query, its separator is replaced by this token.
        qa_span_weight: weight (0.4) of the start / end loss of [`HeroForVideoQuestionAnswering`] next to the answer
            cross-entropy (``lw_st_ed`` of the TVQA / How2QA configs).
    """

    model_type = "vlpretrain-hero"
    objectives = HERO_OBJECTIVES
    modalities = ("frames",)
    region_mask_style = None
    lora_target_modules = ("qkv", "output.dense", "fc_in")
    # The pretraining text is the video's timed subtitles, not its caption: the collator concatenates them and aligns
    # them to the frames with ``frame_interval`` (``collator_for_config``).
    text_from_subtitles = True

    vocab_size: int = 50272
    max_position_embeddings: int = 514
    head_layer_norm_eps: float = 1e-5
    embedding_layer_norm_eps: float = 1e-5
    num_cross_layers: int = 6
    num_temporal_layers: int = 3
    frame_feature_size: int = 4352
    max_frames: int = 100
    frame_interval: float = 1.5
    task_ratios: dict | None = None
    sample_tasks: bool = True
    task_seed: int = 0
    frame_feature_loss_type: str = "nce"
    nce_temperature: float = 1.0
    vsm_margin: float = 0.1
    vsm_negative_video_weight: float = 8.0
    vsm_negative_query_weight: float = 8.0
    vsm_span_weight: float = 0.01
    vsm_span_probability: float = 0.2
    vsm_queries_per_video: int = 5
    vsm_hard_negative_start_step: int | None = 40000
    vsm_hard_negative_pool_size: int = 20
    vsm_hard_negative_weight: float = 10.0
    qa_span_weight: float = 0.4
    pad_token_id: int | None = 1
    bos_token_id: int | None = 0

    def __post_init__(self, **kwargs):
        self.loss_weights = self.checked_loss_weights(self.loss_weights)
        self.task_ratios = self.checked_objective_values(
            "task_ratios", self.task_ratios, {"mlm": 2.0, "frame_feature": 2.0, "frame_order": 1.0, "vsm": 2.0}
        )
        if self.sample_tasks and not any(self.task_ratios[n] > 0 and self.loss_weights[n] > 0 for n in HERO_OBJECTIVES):
            raise ValueError("task_ratios: no enabled objective (loss weight > 0) has a positive sampling ratio")
        if self.frame_feature_loss_type not in ("nce", "regression"):
            raise ValueError(f"frame_feature_loss_type must be 'nce' or 'regression', got {self.frame_feature_loss_type!r}")
        if self.nce_temperature <= 0 or not 0 <= self.vsm_span_probability <= 1 or self.vsm_queries_per_video < 1:
            raise ValueError(
                "nce_temperature must be > 0, vsm_span_probability in [0, 1] and vsm_queries_per_video >= 1, got "
                f"{self.nce_temperature}, {self.vsm_span_probability}, {self.vsm_queries_per_video}"
            )
        if self.vsm_hard_negative_pool_size < 1 or self.vsm_hard_negative_weight < 0:
            raise ValueError(
                "vsm_hard_negative_pool_size must be >= 1 and vsm_hard_negative_weight >= 0, got "
                f"{self.vsm_hard_negative_pool_size}, {self.vsm_hard_negative_weight}"
            )
        super().__post_init__(**kwargs)
