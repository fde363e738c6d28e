"""Registration of the package's pipelines with transformers, and which pipeline an exported model folder gets."""

from __future__ import annotations

import transformers
from transformers.pipelines import PIPELINE_REGISTRY

from .captioning import VideoCaptioningPipeline
from .retrieval import CrossModalRetrievalPipeline
from .vqa import VisualQuestionAnsweringPipeline

VQA_TASK = "vlpretrain-vqa"
RETRIEVAL_TASK = "vlpretrain-retrieval"
CAPTIONING_TASK = "vlpretrain-video-captioning"
# The task name an exported folder's ``custom_pipelines`` uses (transformers accepts the removed
# ``visual-question-answering`` name only there), and the pipeline class, by model task of the registry.
EXPORTED_PIPELINES = {
    "vqa": ("visual-question-answering", VisualQuestionAnsweringPipeline),
    "retrieval": (RETRIEVAL_TASK, CrossModalRetrievalPipeline),
    "pretraining": (RETRIEVAL_TASK, CrossModalRetrievalPipeline),
    "captioning": (CAPTIONING_TASK, VideoCaptioningPipeline),
}


def register_pipelines() -> None:
    """Register ``vlpretrain-vqa``, ``vlpretrain-retrieval`` and ``vlpretrain-video-captioning`` so
    ``pipeline(task, model=...)`` finds them."""
    PIPELINE_REGISTRY.register_pipeline(
        VQA_TASK,
        pipeline_class=VisualQuestionAnsweringPipeline,
        pt_model=transformers.AutoModelForVisualQuestionAnswering,
        type="multimodal",
    )
    PIPELINE_REGISTRY.register_pipeline(
        RETRIEVAL_TASK,
        pipeline_class=CrossModalRetrievalPipeline,
        pt_model=(transformers.AutoModelForSequenceClassification, transformers.AutoModelForPreTraining),
        type="multimodal",
    )
    PIPELINE_REGISTRY.register_pipeline(
        CAPTIONING_TASK,
        pipeline_class=VideoCaptioningPipeline,
        pt_model=transformers.AutoModelForImageTextToText,
        type="multimodal",
    )
