"""Caption metrics: corpus BLEU-4 and CIDEr-D, sharing one simple tokenisation.

Tokenisation lower-cases and splits on anything that is not a letter, digit or apostrophe, so "A dog." and
"a dog" give the same tokens. Scores are close to, but not bit-identical with, the coco-caption toolkit, whose
PTB tokenizer needs Java.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

_TOKEN = re.compile(r"[a-z0-9']+")


def tokenize_caption(text: str) -> list[str]:
    """Lower-case word tokens of a caption."""
    if not isinstance(text, str):
        raise ValueError(f"caption must be a string, got {type(text).__name__}")
    return _TOKEN.findall(text.lower())


def _ngrams(tokens: Sequence[str], order: int) -> Counter:
    return Counter(tuple(tokens[i : i + order]) for i in range(len(tokens) - order + 1))


def _check_corpus(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if isinstance(hypotheses, str):
        raise ValueError("hypotheses must be a list of captions, got a single string")
    if len(hypotheses) != len(references):
        raise ValueError(
            f"hypotheses and references must have the same length, got {len(hypotheses)} and {len(references)}"
        )
    if len(hypotheses) == 0:
        raise ValueError("hypotheses is empty; expected at least one caption")
    for index, refs in enumerate(references):
        if isinstance(refs, str) or len(refs) == 0:
            raise ValueError(f"references[{index}] must be a non-empty list of captions, got {refs!r}")


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]], max_order: int = 4) -> float:
    """Corpus-level BLEU (Papineni et al. 2002): clipped n-gram precisions pooled over the corpus, their
    geometric mean, times the brevity penalty exp(1 - r / c) when the hypotheses are shorter than the closest
    reference lengths r. No smoothing: a corpus without any matching n-gram of some order scores 0."""
    _check_corpus(hypotheses, references)
    if max_order < 1:
        raise ValueError(f"max_order must be at least 1, got {max_order}")
    matches, totals = np.zeros(max_order), np.zeros(max_order)
    hypothesis_length = reference_length = 0
    for hypothesis, refs in zip(hypotheses, references):
        tokens = tokenize_caption(hypothesis)
        ref_tokens = [tokenize_caption(ref) for ref in refs]
        hypothesis_length += len(tokens)
        reference_length += min((abs(len(ref) - len(tokens)), len(ref)) for ref in ref_tokens)[1]
        for order in range(1, max_order + 1):
            counts = _ngrams(tokens, order)
            best = Counter()
            for ref in ref_tokens:
                best |= _ngrams(ref, order)
            matches[order - 1] += sum(min(count, best[gram]) for gram, count in counts.items())
            totals[order - 1] += max(len(tokens) - order + 1, 0)
    if hypothesis_length == 0 or (matches == 0).any():
        return 0.0
    log_precision = float(np.mean(np.log(matches / totals)))
    brevity = 1.0 if hypothesis_length > reference_length else math.exp(1.0 - reference_length / hypothesis_length)
    return brevity * math.exp(log_precision)


def _tfidf(tokens: Sequence[str], order: int, document_frequency: Counter, log_documents: float) -> tuple[dict, float]:
    vector = {
        gram: count * (log_documents - math.log(max(1.0, document_frequency[gram])))
        for gram, count in _ngrams(tokens, order).items()
    }
    return vector, math.sqrt(sum(value * value for value in vector.values()))


def cider_d_scores(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]], max_order: int = 4, sigma: float = 6.0
) -> np.ndarray:
    """CIDEr-D per hypothesis (Vedantam et al. 2015): for n = 1..4, the tf-idf n-gram vectors of hypothesis and
    each reference (idf from the references of the whole corpus) are compared by a cosine in which hypothesis
    counts are clipped to the reference's, times the length penalty exp(-(len_h - len_r)^2 / (2 sigma^2));
    averaged over references and orders, times 10."""
    _check_corpus(hypotheses, references)
    if max_order < 1 or sigma <= 0:
        raise ValueError(f"max_order must be at least 1 and sigma positive, got {max_order} and {sigma}")
    ref_tokens = [[tokenize_caption(ref) for ref in refs] for refs in references]
    document_frequency = [Counter() for _ in range(max_order)]
    for refs in ref_tokens:
        for order in range(1, max_order + 1):
            document_frequency[order - 1].update(set().union(*(_ngrams(ref, order) for ref in refs)))
    log_documents = math.log(len(references))
    scores = np.zeros(len(hypotheses))
    for index, (hypothesis, refs) in enumerate(zip(hypotheses, ref_tokens)):
        tokens = tokenize_caption(hypothesis)
        per_order = np.zeros(max_order)
        for order in range(1, max_order + 1):
            frequency = document_frequency[order - 1]
            hyp_vector, hyp_norm = _tfidf(tokens, order, frequency, log_documents)
            for ref in refs:
                ref_vector, ref_norm = _tfidf(ref, order, frequency, log_documents)
                if hyp_norm == 0.0 or ref_norm == 0.0:
                    continue
                overlap = sum(
                    min(value, ref_vector.get(gram, 0.0)) * ref_vector.get(gram, 0.0)
                    for gram, value in hyp_vector.items()
                )
                penalty = math.exp(-((len(tokens) - len(ref)) ** 2) / (2.0 * sigma**2))
                per_order[order - 1] += overlap / (hyp_norm * ref_norm) * penalty
        scores[index] = 10.0 * per_order.mean() / len(refs)
    return scores


def cider_d(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]], max_order: int = 4, sigma: float = 6.0
) -> float:
    """Corpus CIDEr-D: the mean of the per-hypothesis scores (see ``cider_d_scores``)."""
    return float(cider_d_scores(hypotheses, references, max_order, sigma).mean())


def caption_metrics(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """BLEU-4 and CIDEr-D of a corpus of generated captions."""
    return {"bleu4": corpus_bleu(hypotheses, references), "cider": cider_d(hypotheses, references)}
