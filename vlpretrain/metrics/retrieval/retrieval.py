"""evaluate metric script for retrieval; it calls the plain functions of ``ranking.py`` beside it."""

import datasets
import evaluate

from .ranking import retrieval_metrics

_DESCRIPTION = (
    "Recall@K (default 1, 5, 10) and median rank of text-to-visual (t2v) and visual-to-text (v2t) retrieval "
    "from a similarity matrix; a negative tying the best positive ranks above it."
)
_INPUTS = (
    "predictions: one similarity row per text (scores against every visual item). "
    "references: the indices of the visual items that match that text. "
    "ks (optional): the K values."
)


class Retrieval(evaluate.Metric):
    """Recall@K and median rank in both directions from similarity rows."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Karpathy & Fei-Fei, Deep Visual-Semantic Alignments, CVPR 2015 (recall@K protocol).",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Sequence(datasets.Value("int64")),
                }
            ),
        )

    def _compute(self, predictions: list, references: list, ks: tuple = (1, 5, 10)) -> dict:
        width = len(predictions[0])
        positives = [[False] * width for _ in predictions]
        for row, matches in enumerate(references):
            for column in matches:
                if not 0 <= column < width:
                    raise ValueError(f"references[{row}] holds item {column}, expected indices in [0, {width})")
                positives[row][column] = True
        return retrieval_metrics(predictions, positives, ks)
