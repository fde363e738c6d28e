"""The architectures of the package and their registration with transformers' Auto classes."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import transformers

from .configuration.actbert import ActBertConfig
from .configuration.bottom_up_attention import BottomUpAttentionConfig
from .configuration.ernie_vil import ErnieVilConfig
from .configuration.hero import HeroConfig
from .configuration.image_bert import ImageBertConfig
from .configuration.lxmert import LxmertConfig
from .configuration.s3d import S3DConfig
from .configuration.univl import UnivlConfig
from .configuration.video_bert import VideoBertConfig
from .configuration.vilbert import VilbertConfig
from .configuration.vl_bert import VlBertConfig
from .modeling.actbert import (
    ActBertForPreTraining,
    ActBertForVideoQuestionAnswering,
    ActBertForVideoTextRetrieval,
    ActBertModel,
)
from .modeling.bottom_up_attention import BottomUpAttentionDetector
from .modeling.ernie_vil import ErnieVilForImageTextRetrieval, ErnieVilForPreTraining, ErnieVilForQuestionAnswering, ErnieVilModel
from .modeling.hero import (
    HeroForPreTraining,
    HeroForVideoMomentRetrieval,
    HeroForVideoQuestionAnswering,
    HeroForVideoTextRetrieval,
    HeroModel,
)
from .modeling.image_bert import (
    ImageBertForImageTextRetrieval,
    ImageBertForPreTraining,
    ImageBertForQuestionAnswering,
    ImageBertModel,
)
from .modeling.lxmert import LxmertForImageTextRetrieval, LxmertForPreTraining, LxmertForQuestionAnswering, LxmertModel
from .modeling.s3d import S3DModel
from .modeling.univl import UnivlForCaptioning, UnivlForPreTraining, UnivlForVideoTextRetrieval, UnivlModel
from .modeling.video_bert import (
    VideoBertForConditionalGeneration,
    VideoBertForPreTraining,
    VideoBertForVideoTextRetrieval,
    VideoBertModel,
)
from .modeling.vilbert import (
    VilbertForImageTextRetrieval,
    VilbertForPreTraining,
    VilbertForQuestionAnswering,
    VilbertForReferringExpressions,
    VilbertModel,
)
from .modeling.vl_bert import (
    VlBertForImageTextRetrieval,
    VlBertForMultipleChoice,
    VlBertForPreTraining,
    VlBertForQuestionAnswering,
    VlBertForReferringExpressions,
    VlBertModel,
)
from .processing.bottom_up_attention import BottomUpAttentionImageProcessor
from .processing.processor import VideoLanguageProcessor, VisionLanguageProcessor
from .processing.video_regions import VideoRegionLanguageProcessor


@dataclass(frozen=True)
class Architecture:
    """One architecture: its short name (used on the command line), config class and model classes by task."""

    name: str
    config_class: type
    models: dict[str, type] = field(default_factory=dict)
    processor_class: type = VisionLanguageProcessor
    presets: dict[str, dict] = field(default_factory=dict)

    def preset(self, size: str) -> dict:
        """Config values of a size preset (``tiny``, ``small``, ``base``: the config's paper defaults).

        A narrow preset also gets ``initializer_range`` = 1 / sqrt(hidden_size) (0.125 at width 64, 0.088 at
        128) instead of BERT's 0.02, which was tuned for width 768: at width 64 a 0.02-initialised linear
        layer scales its input by about 0.02 * sqrt(64) = 0.16, so attention and feed-forward blocks start
        as near no-ops and the objectives that need text and image to interact sit on a plateau. With 0.02,
        image-text matching of tiny ViLBERT, ImageBERT, LXMERT and ActBERT stayed at ln 2 for over 1,000 steps
        on ``shapes``; with the wider initialisation it falls within a few hundred (``tests/test_recipes.py``).

        A narrow preset also trains without dropout: small models on short budgets underfit rather than overfit,
        and dropout only slows them. Small LXMERT pretrained 800 steps on 2,000 ``shapes`` images reached a masked-LM
        loss of 0.89 and a matching loss of 0.57 without dropout against 2.40 and 0.65 with BERT's 0.1.
        """
        presets = {"base": {}, **self.presets}
        if size not in presets:
            raise ValueError(f"model_size: {self.name} has presets {sorted(presets)}, not {size!r}")
        values = dict(presets[size])
        if "hidden_size" in values:
            values.setdefault("initializer_range", round(1 / math.sqrt(values["hidden_size"]), 4))
            values.setdefault("hidden_dropout_prob", 0.0)
            values.setdefault("attention_probs_dropout_prob", 0.0)
        return values

    def model_class(self, task: str) -> type:
        """The model class for ``task`` (``base``, ``pretraining``, ``vqa``, ``retrieval``, ...)."""
        if task not in self.models:
            raise ValueError(f"task: {self.name} has no {task!r} model; available: {sorted(self.models)}")
        return self.models[task]


MODEL_REGISTRY: dict[str, Architecture] = {
    "lxmert": Architecture(
        "lxmert",
        LxmertConfig,
        {
            "base": LxmertModel,
            "pretraining": LxmertForPreTraining,
            "vqa": LxmertForQuestionAnswering,
            "retrieval": LxmertForImageTextRetrieval,
        },
        presets={
            "tiny": dict(hidden_size=64, num_attention_heads=4, intermediate_size=128, num_text_layers=1,
                         num_visual_layers=1, num_cross_layers=1),
            "small": dict(hidden_size=128, num_attention_heads=4, intermediate_size=256, num_text_layers=2,
                          num_visual_layers=2, num_cross_layers=2),
        },
    ),
    "vilbert": Architecture(
        "vilbert",
        VilbertConfig,
        {
            "base": VilbertModel,
            "pretraining": VilbertForPreTraining,
            "vqa": VilbertForQuestionAnswering,
            "retrieval": VilbertForImageTextRetrieval,
            "referring": VilbertForReferringExpressions,
        },
        presets={
            "tiny": dict(hidden_size=64, num_attention_heads=4, intermediate_size=128, num_hidden_layers=2,
                         v_hidden_size=48, v_num_attention_heads=4, v_intermediate_size=48, v_num_hidden_layers=1,
                         bi_hidden_size=48, bi_num_attention_heads=4, t_biattention_id=[1], v_biattention_id=[0],
                         vqa_hidden_size=96),
            "small": dict(hidden_size=128, num_attention_heads=4, intermediate_size=256, num_hidden_layers=4,
                          v_hidden_size=96, v_num_attention_heads=4, v_intermediate_size=96, v_num_hidden_layers=2,
                          bi_hidden_size=96, bi_num_attention_heads=4, t_biattention_id=[2, 3], v_biattention_id=[0, 1],
                          vqa_hidden_size=192),
        },
    ),
    "ernie-vil": Architecture(
        "ernie-vil",
        ErnieVilConfig,
        {
            "base": ErnieVilModel,
            "pretraining": ErnieVilForPreTraining,
            "vqa": ErnieVilForQuestionAnswering,
            "retrieval": ErnieVilForImageTextRetrieval,
        },
        presets={
            "tiny": dict(hidden_size=64, num_attention_heads=4, num_hidden_layers=2, v_hidden_size=48,
                         v_num_attention_heads=4, v_intermediate_size=48, v_num_hidden_layers=1, co_hidden_size=48,
                         co_num_attention_heads=4, t_biattention_id=[1], v_biattention_id=[0], vqa_hidden_size=96),
            "small": dict(hidden_size=128, num_attention_heads=4, num_hidden_layers=4, v_hidden_size=96,
                          v_num_attention_heads=4, v_intermediate_size=96, v_num_hidden_layers=2, co_hidden_size=96,
                          co_num_attention_heads=4, t_biattention_id=[2, 3], v_biattention_id=[0, 1],
                          vqa_hidden_size=192),
        },
    ),
    "vl-bert": Architecture(
        "vl-bert",
        VlBertConfig,
        {
            "base": VlBertModel,
            "pretraining": VlBertForPreTraining,
            "vqa": VlBertForQuestionAnswering,
            "retrieval": VlBertForImageTextRetrieval,
            "referring": VlBertForReferringExpressions,
            "multiple_choice": VlBertForMultipleChoice,
        },
        presets={
            "tiny": dict(hidden_size=64, num_attention_heads=4, intermediate_size=128, num_hidden_layers=2,
                         geometry_size=64),
            "small": dict(hidden_size=128, num_attention_heads=4, intermediate_size=256, num_hidden_layers=4,
                          geometry_size=256),
        },
    ),
    "image-bert": Architecture(
        "image-bert",
        ImageBertConfig,
        {
            "base": ImageBertModel,
            "pretraining": ImageBertForPreTraining,
            "vqa": ImageBertForQuestionAnswering,
            "retrieval": ImageBertForImageTextRetrieval,
        },
        presets={
            "tiny": dict(hidden_size=64, num_attention_heads=4, intermediate_size=128, num_hidden_layers=2),
            "small": dict(hidden_size=128, num_attention_heads=4, intermediate_size=256, num_hidden_layers=4),
        },
    ),
    "univl": Architecture(
        "univl",
        UnivlConfig,
        {
            "base": UnivlModel,
            "pretraining": UnivlForPreTraining,
            "retrieval": UnivlForVideoTextRetrieval,
            "captioning": UnivlForCaptioning,
        },
        processor_class=VideoLanguageProcessor,
        presets={
            "tiny": dict(hidden_size=64, num_attention_heads=4, intermediate_size=128, num_text_layers=1,
                         num_visual_layers=1, num_cross_layers=1, num_decoder_layers=1, max_frames=32,
                         max_position_embeddings=128, max_cross_positions=160),
            "small": dict(hidden_size=128, num_attention_heads=4, intermediate_size=256, num_text_layers=2,
                          num_visual_layers=2, num_cross_layers=1, num_decoder_layers=2, max_frames=64,
                          max_position_embeddings=128, max_cross_positions=192),
        },
    ),
    "hero": Architecture(
        "hero",
        HeroConfig,
        {
            "base": HeroModel,
            "pretraining": HeroForPreTraining,
            "retrieval": HeroForVideoTextRetrieval,
            "moment_retrieval": HeroForVideoMomentRetrieval,
            "video_qa": HeroForVideoQuestionAnswering,
        },
        processor_class=VideoLanguageProcessor,
        presets={
            "tiny": dict(hidden_size=64, num_attention_heads=4, intermediate_size=128, num_cross_layers=2,
                         num_temporal_layers=1, max_frames=32),
            "small": dict(hidden_size=128, num_attention_heads=4, intermediate_size=256, num_cross_layers=2,
                          num_temporal_layers=2, max_frames=64),
        },
    ),
    "actbert": Architecture(
        "actbert",
        ActBertConfig,
        {
            "base": ActBertModel,
            "pretraining": ActBertForPreTraining,
            "retrieval": ActBertForVideoTextRetrieval,
            "video_qa": ActBertForVideoQuestionAnswering,
        },
        processor_class=VideoRegionLanguageProcessor,
        presets={
            "tiny": dict(hidden_size=64, num_attention_heads=4, intermediate_size=128, num_hidden_layers=2,
                         v_hidden_size=48, v_num_attention_heads=4, v_intermediate_size=48, v_num_hidden_layers=1,
                         a_hidden_size=48, a_num_attention_heads=4, a_intermediate_size=96, a_num_hidden_layers=1,
                         bi_hidden_size=48, bi_num_attention_heads=4, t_ent_attention_id=[1], v_ent_attention_id=[0],
                         a_ent_attention_id=[0]),
            "small": dict(hidden_size=128, num_attention_heads=4, intermediate_size=256, num_hidden_layers=4,
                          v_hidden_size=96, v_num_attention_heads=4, v_intermediate_size=96, v_num_hidden_layers=2,
                          a_hidden_size=96, a_num_attention_heads=4, a_intermediate_size=192, a_num_hidden_layers=2,
                          bi_hidden_size=96, bi_num_attention_heads=4, t_ent_attention_id=[2, 3],
                          v_ent_attention_id=[0, 1], a_ent_attention_id=[0, 1]),
        },
    ),
    "videobert": Architecture(
        "videobert",
        VideoBertConfig,
        {
            "base": VideoBertModel,
            "pretraining": VideoBertForPreTraining,
            "retrieval": VideoBertForVideoTextRetrieval,
            "generation": VideoBertForConditionalGeneration,
        },
        processor_class=VideoLanguageProcessor,
        presets={
            "tiny": dict(hidden_size=64, num_attention_heads=4, intermediate_size=128, num_hidden_layers=2,
                         num_visual_levels=2, num_visual_clusters=4),
            "small": dict(hidden_size=128, num_attention_heads=4, intermediate_size=256, num_hidden_layers=4,
                          num_visual_levels=3, num_visual_clusters=6),
        },
    ),
}


# Feature extractors (config, model): registered with the Auto classes, but not architectures to pretrain (no
# processor, no presets).
FEATURE_EXTRACTORS: tuple[tuple[type, type], ...] = ((S3DConfig, S3DModel), (BottomUpAttentionConfig, BottomUpAttentionDetector))

# The config and model classes of every architecture and feature extractor, re-exported by the package's ``__init__``.
MODEL_CLASS_NAMES: tuple[str, ...] = tuple(
    sorted(
        {cls.__name__ for arch in MODEL_REGISTRY.values() for cls in (arch.config_class, *arch.models.values())}
        | {cls.__name__ for pair in FEATURE_EXTRACTORS for cls in pair}
    )
)
# Every model_type a folder written by the package can carry (architectures and feature extractors).
PACKAGE_MODEL_TYPES: frozenset[str] = frozenset(
    [arch.config_class.model_type for arch in MODEL_REGISTRY.values()] + [pair[0].model_type for pair in FEATURE_EXTRACTORS]
)
__all__ = [*MODEL_CLASS_NAMES, "MODEL_CLASS_NAMES", "MODEL_REGISTRY", "Architecture"]


def get_architecture(name: str) -> Architecture:
    """Look an architecture up by its short name, with an error that lists the known names."""
    if name not in MODEL_REGISTRY:
        raise ValueError(f"model: unknown architecture {name!r}; known: {sorted(MODEL_REGISTRY)}")
    return MODEL_REGISTRY[name]


def architecture_for_config(config) -> Architecture:
    """The architecture whose config ``model_type`` matches ``config`` (a config object or a dict)."""
    model_type = config["model_type"] if isinstance(config, dict) else config.model_type
    for architecture in MODEL_REGISTRY.values():
        if architecture.config_class.model_type == model_type:
            return architecture
    raise ValueError(f"config: model_type {model_type!r} is not an architecture of vlpretrain")


def model_class_for_name(class_name: str) -> type:
    """Find a model class of the package by its class name (as in ``config.architectures``)."""
    for architecture in MODEL_REGISTRY.values():
        for model_class in architecture.models.values():
            if model_class.__name__ == class_name:
                return model_class
    raise ValueError(f"architectures: {class_name!r} is not a model class of vlpretrain")


def register_auto_classes() -> None:
    """Register every config, model and processor with the Auto classes (models: their ``hub_auto_class``).

    ``exist_ok=True`` is needed because some class names (``LxmertConfig``) are also transformers' own;
    registration is keyed by the class object, so transformers' classes keep their own mapping.
    """
    for architecture in MODEL_REGISTRY.values():
        config_class = architecture.config_class
        transformers.AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        transformers.AutoProcessor.register(config_class, architecture.processor_class, exist_ok=True)
        for model_class in architecture.models.values():
            auto_name = model_class.__dict__.get("hub_auto_class")
            if auto_name:
                getattr(transformers, auto_name).register(config_class, model_class, exist_ok=True)
    for config_class, model_class in FEATURE_EXTRACTORS:
        transformers.AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        getattr(transformers, model_class.hub_auto_class).register(config_class, model_class, exist_ok=True)
    transformers.AutoImageProcessor.register(
        BottomUpAttentionConfig, slow_image_processor_class=BottomUpAttentionImageProcessor, exist_ok=True
    )
    from .pipelines.registration import register_pipelines

    register_pipelines()
