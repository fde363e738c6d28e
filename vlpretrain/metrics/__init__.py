"""Evaluation metrics: plain functions usable as Trainer ``compute_metrics`` and evaluate scripts loaded offline."""

from typing import Any

from .captioning.scores import caption_metrics, cider_d, cider_d_scores, corpus_bleu, tokenize_caption
from .retrieval.ranking import (
    compute_retrieval_metrics,
    median_rank,
    positives_from_ids,
    ranks_from_similarity,
    recall_at_k,
    retrieval_metrics,
)
from .vqa.accuracy import (
    compute_vqa_metrics,
    normalize_answer,
    simple_vqa_accuracy,
    simple_vqa_score,
    soft_score_accuracy,
    vqa_accuracy,
    vqa_score,
)

__all__ = [
    "caption_metrics",
    "cider_d",
    "cider_d_scores",
    "compute_retrieval_metrics",
    "compute_vqa_metrics",
    "corpus_bleu",
    "load_metric",
    "median_rank",
    "normalize_answer",
    "positives_from_ids",
    "ranks_from_similarity",
    "recall_at_k",
    "retrieval_metrics",
    "simple_vqa_accuracy",
    "simple_vqa_score",
    "soft_score_accuracy",
    "tokenize_caption",
    "vqa_accuracy",
    "vqa_score",
]


def load_metric(name: str, **kwargs: Any) -> Any:
    """Load a shipped evaluate metric (``vqa_accuracy``, ``retrieval``, ``bleu``, ``cider``) offline; evaluate
    (slow to import: it pulls in transformers pipelines) is imported only when this is called."""
    from .loading import load_metric as load_shipped_metric

    return load_shipped_metric(name, **kwargs)
