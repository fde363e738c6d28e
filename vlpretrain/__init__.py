"""vlpretrain: classic vision-language and video-language pretraining models for the Hugging Face ecosystem.

Importing the package registers every configuration and model with transformers' Auto classes, so
``AutoModel.from_pretrained(folder)`` works for folders written by this package; exported folders also
carry flat remote code and load with transformers alone (``trust_remote_code=True``).
"""

from .data.padding import DataCollatorForVisionLanguage
from .processing.bottom_up_attention import BottomUpAttentionImageProcessor
from .processing.frames import FrameFeaturizer
from .processing.processor import VideoLanguageProcessor, VisionLanguageProcessor
from .processing.regions import RegionFeaturizer
from .processing.visual_words import VisualWordTokenizer
from .registry import *  # noqa: F403  (every config and model class, imported once in registry.py)
from .registry import MODEL_CLASS_NAMES, MODEL_REGISTRY, register_auto_classes
from .utils.trainer_labels import install as install_trainer_label_names

__version__ = "0.1.0"

register_auto_classes()
install_trainer_label_names()

__all__ = [
    *MODEL_CLASS_NAMES,
    "DataCollatorForVisionLanguage",
    "BottomUpAttentionImageProcessor",
    "MODEL_REGISTRY",
    "FrameFeaturizer",
    "RegionFeaturizer",
    "VideoLanguageProcessor",
    "VisionLanguageProcessor",
    "VisualWordTokenizer",
    "register_auto_classes",
]
