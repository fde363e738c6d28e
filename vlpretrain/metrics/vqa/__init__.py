"""VQA accuracy as plain functions; ``vqa.py`` beside this file is the matching evaluate metric script."""

from .accuracy import (
    compute_vqa_metrics,
    normalize_answer,
    simple_vqa_accuracy,
    simple_vqa_score,
    soft_score_accuracy,
    strip_punctuation,
    vqa_accuracy,
    vqa_score,
)

__all__ = [
    "compute_vqa_metrics",
    "normalize_answer",
    "simple_vqa_accuracy",
    "simple_vqa_score",
    "soft_score_accuracy",
    "strip_punctuation",
    "vqa_accuracy",
    "vqa_score",
]
