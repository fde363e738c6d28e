"""Retrieval metrics from a similarity matrix: the rank of the first positive, recall@K and median rank.

Convention: ``similarity[t, v]`` scores text ``t`` against visual item ``v`` (image or video). Ranking each row
is text-to-visual retrieval, ranking each column is visual-to-text retrieval. A negative that ties the best
positive counts as ranked above it, so a constant scorer cannot look good.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

_DIRECTIONS = {"text_to_visual": 0, "visual_to_text": 1}


def positives_from_ids(text_ids: Sequence[Any], visual_ids: Sequence[Any]) -> np.ndarray:
    """Boolean (T, V) matrix: True where text ``t`` belongs to visual item ``v`` (equal ids); several captions
    per image give several positives per column."""
    text_ids, visual_ids = np.asarray(text_ids), np.asarray(visual_ids)
    if text_ids.ndim != 1 or visual_ids.ndim != 1:
        raise ValueError(f"text_ids and visual_ids must be 1-D, got shapes {text_ids.shape} and {visual_ids.shape}")
    return text_ids[:, None] == visual_ids[None, :]


def _checked(similarity: Any, positives: Any, direction: str) -> tuple[np.ndarray, np.ndarray]:
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {sorted(_DIRECTIONS)}, got {direction!r}")
    scores = np.asarray(similarity, dtype=np.float64)
    if scores.ndim != 2 or 0 in scores.shape:
        raise ValueError(f"similarity must be a non-empty (texts, visual items) matrix, got shape {scores.shape}")
    if positives is None:
        if scores.shape[0] != scores.shape[1]:
            raise ValueError(
                f"similarity is {scores.shape}; without positives it must be square (pair i is text i and item i)"
            )
        mask = np.eye(scores.shape[0], dtype=bool)
    else:
        mask = np.asarray(positives, dtype=bool)
        if mask.shape != scores.shape:
            raise ValueError(f"positives must have the shape of similarity {scores.shape}, got {mask.shape}")
    if np.isnan(scores).any():
        raise ValueError("similarity contains NaN")
    if _DIRECTIONS[direction] == 1:
        scores, mask = scores.T, mask.T
    if not mask.any(axis=1).all():
        missing = np.flatnonzero(~mask.any(axis=1))[:10].tolist()
        raise ValueError(f"positives: queries {missing} have no positive candidate")
    return scores, mask


def ranks_from_similarity(similarity: Any, positives: Any = None, direction: str = "text_to_visual") -> np.ndarray:
    """1-based rank of the best-scored positive of every query (pairs on the diagonal when ``positives`` is None)."""
    scores, mask = _checked(similarity, positives, direction)
    best_positive = np.where(mask, scores, -np.inf).max(axis=1)
    negatives_above = (~mask & (scores >= best_positive[:, None])).sum(axis=1)
    return negatives_above + 1


def recall_at_k(similarity: Any, k: int, positives: Any = None, direction: str = "text_to_visual") -> float:
    """Share of queries whose best positive is among the top ``k`` candidates."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return float((ranks_from_similarity(similarity, positives, direction) <= k).mean())


def median_rank(similarity: Any, positives: Any = None, direction: str = "text_to_visual") -> float:
    """Median over queries of the 1-based rank of the best positive."""
    return float(np.median(ranks_from_similarity(similarity, positives, direction)))


def retrieval_metrics(similarity: Any, positives: Any = None, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@K and median rank in both directions, keyed ``t2v_recall@K``, ``t2v_median_rank``, ``v2t_...``."""
    metrics = {}
    for prefix, direction in (("t2v", "text_to_visual"), ("v2t", "visual_to_text")):
        ranks = ranks_from_similarity(similarity, positives, direction)
        for k in ks:
            if k < 1:
                raise ValueError(f"ks must hold positive integers, got {list(ks)}")
            metrics[f"{prefix}_recall@{k}"] = float((ranks <= k).mean())
        metrics[f"{prefix}_median_rank"] = float(np.median(ranks))
    return metrics


def compute_retrieval_metrics(eval_prediction: Any) -> dict[str, float]:
    """Trainer ``compute_metrics``: predictions are ``(text_embeddings, visual_embeddings)`` (N, D) each, scored by
    dot product; ``label_ids``, when given, are the visual ids of the pairs (equal ids count as positives)."""
    predictions = eval_prediction.predictions
    if not isinstance(predictions, (tuple, list)) or len(predictions) < 2:
        raise ValueError("predictions must be a (text_embeddings, visual_embeddings) pair for retrieval metrics")
    texts, visuals = np.asarray(predictions[0], np.float64), np.asarray(predictions[1], np.float64)
    if texts.ndim != 2 or texts.shape != visuals.shape:
        raise ValueError(f"text and visual embeddings must both be (N, D); got {texts.shape} and {visuals.shape}")
    ids = eval_prediction.label_ids
    positives = None if ids is None else positives_from_ids(np.asarray(ids).reshape(-1), np.asarray(ids).reshape(-1))
    return retrieval_metrics(texts @ visuals.T, positives)
