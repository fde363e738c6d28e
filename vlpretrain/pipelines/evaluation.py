"""Evaluating the pipelines on labelled data with the package's metric functions (``vlpretrain.metrics``).

Each helper runs a pipeline over a list of dicts or a ``datasets.Dataset`` (rows are read as dicts) and scores
the outputs with the one implementation of each metric: VQA soft accuracy, retrieval recall@K and median rank,
caption BLEU-4 and CIDEr-D. Feature columns (``region_features``, ``region_boxes``, ``frame_features``) may be
nested lists, as a ``Dataset`` returns them; they are turned into float32 arrays.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..metrics.captioning.scores import caption_metrics
from ..metrics.retrieval.ranking import median_rank, positives_from_ids, recall_at_k
from ..metrics.vqa.accuracy import VQA_ANNOTATORS, vqa_accuracy

FEATURE_COLUMNS = ("region_features", "region_boxes", "image_sizes", "frame_features")


def _rows(examples: Iterable[dict], where: str) -> list[dict]:
    rows = [dict(row) for row in examples]
    if not rows:
        raise ValueError(f"{where}: expected at least one example, got none")
    return rows


def _column(row: dict, name: str, index: int, where: str) -> Any:
    if name not in row:
        raise ValueError(f"{where}[{index}]: has no column {name!r} (columns: {sorted(row)})")
    return row[name]


def _visual_item(row: dict, columns: Sequence[str], index: int, where: str) -> Any:
    """The pipeline input of one row's visual side: the raw item of a single raw column, else a feature dict."""
    values = {name: _column(row, name, index, where) for name in columns}
    if len(columns) == 1 and columns[0] not in FEATURE_COLUMNS:
        return values[columns[0]]
    return {name: np.asarray(value, np.float32) if name in FEATURE_COLUMNS else value for name, value in values.items()}


def evaluate_vqa(
    vqa,
    examples: Iterable[dict],
    visual_columns: Sequence[str] = ("image",),
    question_column: str = "question",
    answers_column: str = "answers",
    batch_size: int = 16,
) -> dict[str, float]:
    """Official VQA accuracy of the top answer of ``vqa`` (a ``vlpretrain-vqa`` pipeline) over ``examples``.

    Each example has its visual side in ``visual_columns`` (one raw column such as ``image``, or feature columns
    such as ``region_features`` + ``region_boxes``), a question, and its human answers (a list, scored by the
    official leave-one-out ``min(#matching humans / 3, 1)`` of ``metrics.vqa.vqa_score``) or a single reference
    answer string (counted as all ten annotators' answer, so it scores 1 when matched).
    Returns ``{"vqa_accuracy", "num_examples"}``.
    """
    rows = _rows(examples, "examples")
    visuals, questions, references = [], [], []
    for index, row in enumerate(rows):
        visuals.append(_visual_item(row, visual_columns, index, "examples"))
        questions.append(_column(row, question_column, index, "examples"))
        answers = _column(row, answers_column, index, "examples")
        references.append([answers] * VQA_ANNOTATORS if isinstance(answers, str) else list(answers))
    predictions = vqa(visuals, question=questions, top_k=1, batch_size=batch_size)
    return {"vqa_accuracy": vqa_accuracy([ranked[0]["answer"] for ranked in predictions], references), "num_examples": len(rows)}


def _similarity(ranked: list[list[dict]], num_items: int) -> np.ndarray:
    """(queries, items) scores of a retrieval pipeline's output; items it did not return score -inf (ranked last)."""
    matrix = np.full((len(ranked), num_items), -np.inf)
    for row, items in enumerate(ranked):
        for item in items:
            matrix[row, item["index"]] = item["score"]
    return matrix


def evaluate_retrieval(
    retriever,
    texts: Sequence[str],
    visuals: Sequence[Any],
    text_visual_ids: Sequence[Any] | None = None,
    visual_ids: Sequence[Any] | None = None,
    ks: Sequence[int] = (1, 5, 10),
    shortlist_size: int | None = 64,
    chunk_size: int = 64,
) -> dict[str, float]:
    """Recall@K and median rank of ``retriever`` (a ``vlpretrain-retrieval`` pipeline) in both directions.

    Text-to-visual ranks an index of ``visuals`` for every text; visual-to-text ranks an index of ``texts`` for
    every visual item (two searches, each two-stage with ``shortlist_size``). Ground truth: text ``t`` belongs to
    the visual item whose id in ``visual_ids`` (default: positions) equals ``text_visual_ids[t]`` (default: text
    ``i`` belongs to item ``i``). A positive outside the re-ranked shortlist ranks last, so recall@K with ``K`` up
    to ``shortlist_size`` is exact and the median rank is exact while it is within the shortlist. Keys:
    ``t2v_recall@K``, ``t2v_median_rank``, ``v2t_...`` (as ``vlpretrain.metrics.retrieval_metrics``).
    """
    texts, visuals = list(texts), list(visuals)
    if not texts or not visuals:
        raise ValueError(f"texts and visuals: both must be non-empty, got {len(texts)} texts and {len(visuals)} visual items")
    if text_visual_ids is None:
        if len(texts) != len(visuals):
            raise ValueError(f"text_visual_ids: needed when texts ({len(texts)}) and visuals ({len(visuals)}) differ in number")
        text_visual_ids = list(range(len(texts)))
    visual_ids = list(range(len(visuals))) if visual_ids is None else list(visual_ids)
    if len(text_visual_ids) != len(texts) or len(visual_ids) != len(visuals):
        raise ValueError(
            f"text_visual_ids / visual_ids: expected {len(texts)} / {len(visuals)} ids, got {len(text_visual_ids)} / {len(visual_ids)}"
        )
    positives = positives_from_ids(list(text_visual_ids), visual_ids)
    depth = max(ks)
    options = {"shortlist_size": shortlist_size, "chunk_size": chunk_size}
    visual_index = retriever.build_index(visuals=visuals, chunk_size=chunk_size)
    text_to_visual = _similarity(retriever(texts=texts, index=visual_index, top_k=depth, **options), len(visuals))
    text_index = retriever.build_index(texts=texts, chunk_size=chunk_size)
    visual_to_text = _similarity(retriever(visuals=visuals, index=text_index, top_k=depth, **options), len(texts))
    metrics = {}
    for prefix, similarity, direction in (("t2v", text_to_visual, "text_to_visual"), ("v2t", visual_to_text.T, "visual_to_text")):
        for k in ks:
            metrics[f"{prefix}_recall@{k}"] = recall_at_k(similarity, k, positives, direction)
        metrics[f"{prefix}_median_rank"] = median_rank(similarity, positives, direction)
    return metrics


def evaluate_captioning(
    captioner,
    videos: Sequence[Any],
    references: Sequence[str | Sequence[str]],
    batch_size: int = 8,
    **generate_kwargs: Any,
) -> dict[str, float]:
    """BLEU-4 and CIDEr-D of the captions ``captioner`` (a ``vlpretrain-video-captioning`` pipeline) writes for
    ``videos`` against ``references`` (one string or a list of strings per video). ``generate_kwargs`` go to the
    pipeline (``num_beams``, ``max_new_tokens``, ...). Returns ``{"bleu4", "cider", "num_examples"}``."""
    videos = list(videos)
    if not videos:
        raise ValueError("videos: expected at least one video, got none")
    if len(references) != len(videos):
        raise ValueError(f"references: expected one entry per video ({len(videos)}), got {len(references)}")
    references = [[entry] if isinstance(entry, str) else list(entry) for entry in references]
    captions = captioner(videos, batch_size=batch_size, **generate_kwargs)
    hypotheses = [generated[0]["generated_text"] for generated in captions]
    return {**caption_metrics(hypotheses, references), "num_examples": len(videos)}


def dataset_visuals(examples: Iterable[dict], visual_columns: Sequence[str]) -> list[Any]:
    """The pipeline inputs of the visual side of each row (a raw column, or a dict of feature columns)."""
    return [_visual_item(row, visual_columns, index, "examples") for index, row in enumerate(_rows(examples, "examples"))]
