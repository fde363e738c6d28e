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
from .processing.frames import FrameFeaturizer
from .processing.processor import VideoLanguageProcessor, VisionLanguageProcessor
from .processing.regions import RegionFeaturizer
from .registry import MODEL_REGISTRY, register_auto_classes

__version__ = "0.1.0"

register_auto_classes()

__all__ = [
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
]
