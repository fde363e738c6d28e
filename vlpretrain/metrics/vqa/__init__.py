"""VQA accuracy as plain functions; ``vqa.py`` beside this file is the matching evaluate metric script."""

from .accuracy import compute_vqa_metrics, normalize_answer, soft_score_accuracy, vqa_accuracy, vqa_soft_score

__all__ = ["compute_vqa_metrics", "normalize_answer", "soft_score_accuracy", "vqa_accuracy", "vqa_soft_score"]
