"""vlpretrain: classic vision-language and video-language pretraining models for the Hugging Face ecosystem.

Importing the package registers every configuration and model with transformers' Auto classes, so
``AutoModel.from_pretrained(folder)`` works for folders written by this package; exported folders also
carry flat remote code and load with transformers alone (``trust_remote_code=True``).
"""

from .configuration.lxmert import LxmertConfig
from .modeling.lxmert import (
    LxmertForImageTextRetrieval,
    LxmertForPreTraining,
    LxmertForQuestionAnswering,
    LxmertModel,
)
from .configuration.vilbert import VilbertConfig
from .configuration.ernie_vil import ErnieVilConfig
from .modeling.vilbert import (
    VilbertForImageTextRetrieval,
    VilbertForPreTraining,
    VilbertForQuestionAnswering,
    VilbertForReferringExpressions,
    VilbertModel,
)
from .modeling.ernie_vil import (
    ErnieVilForImageTextRetrieval,
    ErnieVilForPreTraining,
    ErnieVilForQuestionAnswering,
    ErnieVilModel,
)
from .configuration.image_bert import ImageBertConfig
from .configuration.vl_bert import VlBertConfig
from .modeling.image_bert import (
    ImageBertForImageTextRetrieval,
    ImageBertForPreTraining,
    ImageBertForQuestionAnswering,
    ImageBertModel,
)
from .modeling.vl_bert import (
    VlBertForImageTextRetrieval,
    VlBertForMultipleChoice,
    VlBertForPreTraining,
    VlBertForQuestionAnswering,
    VlBertForReferringExpressions,
    VlBertModel,
)
from .configuration.hero import HeroConfig
from .modeling.hero import (
    HeroForPreTraining,
    HeroForVideoMomentRetrieval,
    HeroForVideoQuestionAnswering,
    HeroForVideoTextRetrieval,
    HeroModel,
)
from .configuration.univl import UnivlConfig
from .modeling.univl import UnivlForCaptioning, UnivlForPreTraining, UnivlForVideoTextRetrieval, UnivlModel
from .configuration.actbert import ActBertConfig
from .modeling.actbert import (
    ActBertForPreTraining,
    ActBertForVideoQuestionAnswering,
    ActBertForVideoTextRetrieval,
    ActBertModel,
)
from .configuration.video_bert import VideoBertConfig
from .modeling.video_bert import (
    VideoBertForConditionalGeneration,
    VideoBertForPreTraining,
    VideoBertForVideoTextRetrieval,
    VideoBertModel,
)
from .configuration.bottom_up_attention import BottomUpAttentionConfig
from .modeling.bottom_up_attention import BottomUpAttentionDetector
from .processing.bottom_up_attention import BottomUpAttentionImageProcessor
from .processing.visual_words import VisualWordTokenizer
from .processing.frames import FrameFeaturizer
from .processing.processor import VideoLanguageProcessor, VisionLanguageProcessor
from .processing.regions import RegionFeaturizer
from .registry import MODEL_REGISTRY, register_auto_classes

__version__ = "0.1.0"

register_auto_classes()

__all__ = [
    "BottomUpAttentionConfig",
    "BottomUpAttentionDetector",
    "BottomUpAttentionImageProcessor",
    "ActBertConfig",
    "ActBertForPreTraining",
    "ActBertForVideoQuestionAnswering",
    "ActBertForVideoTextRetrieval",
    "ActBertModel",
    "VideoBertConfig",
    "VideoBertForConditionalGeneration",
    "VideoBertForPreTraining",
    "VideoBertForVideoTextRetrieval",
    "VideoBertModel",
    "VisualWordTokenizer",
    "MODEL_REGISTRY",
    "FrameFeaturizer",
    "RegionFeaturizer",
    "VideoLanguageProcessor",
    "VisionLanguageProcessor",
    "LxmertConfig",
    "LxmertForImageTextRetrieval",
    "LxmertForPreTraining",
    "LxmertForQuestionAnswering",
    "LxmertModel",
    "register_auto_classes",
    "VilbertConfig",
    "VilbertForImageTextRetrieval",
    "VilbertForPreTraining",
    "VilbertForQuestionAnswering",
    "VilbertForReferringExpressions",
    "VilbertModel",
    "ErnieVilConfig",
    "ErnieVilForImageTextRetrieval",
    "ErnieVilForPreTraining",
    "ErnieVilForQuestionAnswering",
    "ErnieVilModel",
    "ImageBertConfig",
    "ImageBertForImageTextRetrieval",
    "ImageBertForPreTraining",
    "ImageBertForQuestionAnswering",
    "ImageBertModel",
    "VlBertConfig",
    "VlBertForImageTextRetrieval",
    "VlBertForMultipleChoice",
    "VlBertForPreTraining",
    "VlBertForQuestionAnswering",
    "VlBertForReferringExpressions",
    "VlBertModel",
    "UnivlConfig",
    "UnivlForCaptioning",
    "UnivlForPreTraining",
    "UnivlForVideoTextRetrieval",
    "UnivlModel",
    "HeroConfig",
    "HeroForPreTraining",
    "HeroForVideoMomentRetrieval",
    "HeroForVideoQuestionAnswering",
    "HeroForVideoTextRetrieval",
    "HeroModel",
]
