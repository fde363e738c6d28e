"""VQA accuracy: the soft "min(#humans who gave the answer / 3, 1)" score and accuracy against soft-score vectors."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

_PUNCTUATION = re.compile(r"[^\w\s']")
_SPACES = re.compile(r"\s+")


def normalize_answer(answer: str) -> str:
    """Lower-case, drop punctuation other than apostrophes, collapse spaces, so "Yes." matches "yes"."""
    if not isinstance(answer, str):
        raise ValueError(f"answer must be a string, got {type(answer).__name__}")
    return _SPACES.sub(" ", _PUNCTUATION.sub(" ", answer.lower())).strip()


def vqa_soft_score(prediction: str, human_answers: Sequence[str]) -> float:
    """Score of one predicted answer: min(number of humans who gave it / 3, 1)."""
    if isinstance(human_answers, str) or len(human_answers) == 0:
        raise ValueError(f"human_answers must be a non-empty list of strings, got {human_answers!r}")
    predicted = normalize_answer(prediction)
    matches = sum(normalize_answer(answer) == predicted for answer in human_answers)
    return min(matches / 3.0, 1.0)


def vqa_accuracy(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Mean soft VQA score of predicted answer strings against each question's human answers (usually 10)."""
    if len(predictions) != len(references):
        raise ValueError(
            f"predictions and references must have the same length, got {len(predictions)} and {len(references)}"
        )
    if len(predictions) == 0:
        raise ValueError("predictions is empty; expected at least one answer")
    return float(np.mean([vqa_soft_score(p, r) for p, r in zip(predictions, references)]))


def soft_score_accuracy(predictions: Any, target_scores: Any) -> float:
    """Mean target score of the predicted answers: ``predictions`` holds answer ids (N,) or logits (N, A) (their
    argmax is taken), ``target_scores`` the per-answer soft scores (N, A) in [0, 1]."""
    scores = np.asarray(target_scores, dtype=np.float64)
    predicted = np.asarray(predictions)
    if scores.ndim != 2:
        raise ValueError(f"target_scores must be (examples, answers), got shape {scores.shape}")
    if predicted.ndim == 2:
        if predicted.shape != scores.shape:
            raise ValueError(f"prediction logits {predicted.shape} and target_scores {scores.shape} must match")
        predicted = predicted.argmax(-1)
    if predicted.shape != (scores.shape[0],):
        raise ValueError(f"predictions must be ({scores.shape[0]},) answer ids or logits, got shape {predicted.shape}")
    if len(predicted) == 0:
        raise ValueError("predictions is empty; expected at least one answer")
    if not np.issubdtype(predicted.dtype, np.integer) or predicted.min() < 0 or predicted.max() >= scores.shape[1]:
        raise ValueError(f"predictions must be answer ids in [0, {scores.shape[1]}), got {predicted.tolist()[:10]}")
    return float(scores[np.arange(len(predicted)), predicted].mean())


def compute_vqa_metrics(eval_prediction: Any) -> dict[str, float]:
    """Trainer ``compute_metrics``: logits (N, A) against soft scores (N, A) give ``vqa_accuracy``; against
    answer ids (N,) (-100 = none) they give ``accuracy``."""
    logits = eval_prediction.predictions
    logits = logits[0] if isinstance(logits, (tuple, list)) else logits
    labels = np.asarray(eval_prediction.label_ids)
    logits = np.asarray(logits)
    if labels.ndim == 2:
        return {"vqa_accuracy": soft_score_accuracy(logits, labels)}
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"expected logits (N, A) with labels (N,) or (N, A); got {logits.shape} and {labels.shape}")
    keep = labels != -100
    if not keep.any():
        raise ValueError("label_ids holds no answer (all -100); nothing to score")
    return {"accuracy": float((logits[keep].argmax(-1) == labels[keep]).mean())}
