"""evaluate metric script for corpus BLEU-4; it calls the plain function of ``scores.py`` beside it."""

import datasets
import evaluate

from .scores import corpus_bleu

_DESCRIPTION = "Corpus-level BLEU-4 with the standard brevity penalty and no smoothing, on lower-cased word tokens."
_INPUTS = "predictions: generated captions. references: each item's reference captions. max_order (optional): 4."


class Bleu(evaluate.Metric):
    """Corpus BLEU-4 of generated captions."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Papineni et al., BLEU: a Method for Automatic Evaluation of Machine Translation, ACL 2002.",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
            ),
        )

    def _compute(self, predictions: list, references: list, max_order: int = 4) -> dict:
        return {"bleu": corpus_bleu(predictions, references, max_order)}
