"""Retrieval metrics as plain functions; ``retrieval.py`` beside this file is the matching evaluate metric script."""

from .ranking import (
    compute_retrieval_metrics,
    median_rank,
    positives_from_ids,
    ranks_from_similarity,
    recall_at_k,
    retrieval_metrics,
)

__all__ = [
    "compute_retrieval_metrics",
    "median_rank",
    "positives_from_ids",
    "ranks_from_similarity",
    "recall_at_k",
    "retrieval_metrics",
]
