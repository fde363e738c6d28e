"""evaluate metric script for VQA accuracy; it calls the plain functions of ``accuracy.py`` beside it."""

import datasets
import evaluate

from .accuracy import soft_score_accuracy, vqa_accuracy

_DESCRIPTION = (
    "Official VQA accuracy (GT-Vision-Lab/VQA vqaEval.py). With answer strings: answers normalised (punctuation, "
    "number words, articles, contractions), then min(#humans who gave the predicted answer / 3, 1) averaged over "
    "the leave-one-out subsets of annotators, averaged over questions. With answer ids and per-answer soft-score "
    "vectors: the mean score of the predicted answers (official when the vectors hold the official scores)."
)
_INPUTS = (
    "predictions: predicted answer strings, or answer ids. "
    "references: each question's human answers (strings), or its soft-score vector over the answer vocabulary."
)


class VqaAccuracy(evaluate.Metric):
    """Official VQA accuracy over answer strings, or mean score over soft-score vectors."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Antol et al., VQA: Visual Question Answering, ICCV 2015.",
            inputs_description=_INPUTS,
            features=[
                datasets.Features(
                    {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
                ),
                datasets.Features(
                    {"predictions": datasets.Value("int64"), "references": datasets.Sequence(datasets.Value("float32"))}
                ),
            ],
        )

    def _compute(self, predictions: list, references: list) -> dict:
        if predictions and isinstance(predictions[0], str):
            return {"vqa_accuracy": vqa_accuracy(predictions, references)}
        return {"vqa_accuracy": soft_score_accuracy(predictions, references)}
