"""evaluate metric script for CIDEr-D; it calls the plain function of ``scores.py`` beside it."""

import datasets
import evaluate

from .scores import cider_d

_DESCRIPTION = "CIDEr-D (clipped tf-idf n-gram cosine with a Gaussian length penalty, x10), idf from the references."
_INPUTS = "predictions: generated captions. references: each item's reference captions. sigma (optional): 6."


class Cider(evaluate.Metric):
    """Corpus CIDEr-D of generated captions."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Vedantam et al., CIDEr: Consensus-based Image Description Evaluation, CVPR 2015.",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
            ),
        )

    def _compute(self, predictions: list, references: list, sigma: float = 6.0) -> dict:
        return {"cider": cider_d(predictions, references, sigma=sigma)}
