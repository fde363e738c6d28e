"""VQA accuracy: the official score of the VQA evaluation, a simpler variant, and accuracy against soft-score vectors.

The official score (GT-Vision-Lab/VQA ``PythonEvaluationTools/vqaEvaluation/vqaEval.py``, ``VQAEval.evaluate``)
normalises the predicted answer (punctuation, number words, articles, contractions) and averages, over the ten
leave-one-out subsets of the ten annotators, ``min(#annotators in the subset who gave the answer / 3, 1)``: an
answer given by 1, 2, 3 or >= 4 of 10 annotators scores 0.3, 0.6, 0.9 or 1. Papers report this number.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

# vqaEval.py's ``punct``: each is deleted when it touches a space (or the text has a comma between digits) and
# replaced by a space otherwise. Apostrophes and colons stay ("girl's", "2:50"); "." is handled by ``_PERIOD``.
_PUNCTUATION = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!",
)
_COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(,)(\d)")
# vqaEval.py's ``periodStrip``: a period goes unless a digit follows it (decimals such as "2.5" keep theirs).
_PERIOD = re.compile(r"\.(?!\d)")
_NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate("zero one two three four five six seven eight nine ten".split())
}
_NUMBER_WORDS["none"] = "0"
_ARTICLES = frozenset(("a", "an", "the"))
# Answers collected per question in VQA v1 / v2.
VQA_ANNOTATORS = 10


def _contraction_table() -> dict[str, str]:
    """vqaEval.py's ``contractions``: a word written without its apostrophe(s) -> the contracted form.

    The release's table, rebuilt by rule: a form with one apostrophe is keyed by that form without it; a form
    with several is keyed by each spelling that drops exactly one of them.
    """
    forms = (
        "ain't aren't can't could've couldn't didn't doesn't don't hadn't hasn't haven't he'd he's how'd how'll "
        "how's I'm I've isn't it'd it'll ma'am mightn't might've mustn't must've needn't not've o'clock oughtn't "
        "shan't should've shouldn't somebody'll somebody's someone'd someone'll someone's something'd something'll "
        "that's there'd there're there's they'd they'll they're they've 'twas wasn't we've weren't what'll what're "
        "what's what've when's where'd where's where've who'd who'll who's who've why'll why're why's won't would've "
        "wouldn't y'all you'd you'll you're you've "
        "couldn't've hadn't've he'd've I'd've it'd've mightn't've she'd've shouldn't've somebody'd've someone'd've "
        "something'd've there'd've they'd've we'd've who'd've wouldn't've y'all'll y'all'd've you'd've 'ow's'at"
    ).split()
    table: dict[str, str] = {}
    for form in forms:
        marks = [index for index, char in enumerate(form) if char == "'"]
        if len(marks) == 1:
            table[form.replace("'", "")] = form
        else:
            table.update({form[:mark] + form[mark + 1 :]: form for mark in marks})
    # The release's irregular entries: one maps the other way round, two map a form to itself.
    table.update({"somebody'd": "somebodyd", "let's": "let's", "she's": "she's"})
    return table


_CONTRACTIONS = _contraction_table()


def _check_answer(answer: Any, name: str) -> str:
    if not isinstance(answer, str):
        raise ValueError(f"{name} must be a string, got {type(answer).__name__}")
    return answer


def strip_punctuation(answer: str) -> str:
    """vqaEval.py's ``processPunctuation``: punctuation next to a space (or anywhere, when the text has a comma
    between digits, so "100,978" -> "100978") is deleted, other punctuation becomes a space; periods not
    followed by a digit are deleted."""
    text = _check_answer(answer, "answer")
    joined_digits = _COMMA_BETWEEN_DIGITS.search(text) is not None
    out = text
    for mark in _PUNCTUATION:
        delete = joined_digits or f"{mark} " in text or f" {mark}" in text
        out = out.replace(mark, "" if delete else " ")
    return _PERIOD.sub("", out)


def _strip_spaces(answer: str) -> str:
    return answer.replace("\n", " ").replace("\t", " ").strip()


def normalize_answer(answer: str) -> str:
    """The official answer normalisation: punctuation (:func:`strip_punctuation`), lower case, number words to
    digits ("two" -> "2", "none" -> "0"), no articles, missing apostrophes restored ("dont" -> "don't")."""
    text = _strip_spaces(_check_answer(answer, "answer"))
    words = [_NUMBER_WORDS.get(word, word) for word in strip_punctuation(text).lower().split()]
    return " ".join(_CONTRACTIONS.get(word, word) for word in words if word not in _ARTICLES)


def _check_human_answers(human_answers: Sequence[str]) -> list[str]:
    if isinstance(human_answers, str) or not isinstance(human_answers, Sequence) or len(human_answers) < 2:
        raise ValueError(f"human_answers must be a list of at least two strings (VQA has 10), got {human_answers!r}")
    return [_check_answer(answer, "human_answers[...]") for answer in human_answers]


def vqa_score(prediction: str, human_answers: Sequence[str]) -> float:
    """The official VQA score of one predicted answer (``VQAEval.evaluate``).

    As in the official code, answers are normalised (:func:`normalize_answer`, prediction and human answers
    alike) only when the human answers are not all the same; when they agree only surrounding spaces go (the
    release's annotations are normalised already). The score is the mean, over each annotator left out in turn,
    of ``min(#other annotators who gave the prediction / 3, 1)``.
    """
    humans = [_strip_spaces(answer) for answer in _check_human_answers(human_answers)]
    predicted = _strip_spaces(_check_answer(prediction, "prediction"))
    if len(set(humans)) > 1:
        humans = [normalize_answer(answer) for answer in humans]
        predicted = normalize_answer(predicted)
    matches = sum(answer == predicted for answer in humans)
    # Leaving out a matching annotator leaves matches - 1 in the subset, leaving out another leaves matches.
    left_out_matching = matches * min((matches - 1) / 3.0, 1.0)
    left_out_other = (len(humans) - matches) * min(matches / 3.0, 1.0)
    return (left_out_matching + left_out_other) / len(humans)


def simple_vqa_score(prediction: str, human_answers: Sequence[str]) -> float:
    """``min(#humans who gave the prediction / 3, 1)`` over all annotators, all answers normalised: the VQA
    paper's formula as first stated, without the leave-one-out average; higher than :func:`vqa_score` (an answer
    of 3 of 10 humans scores 1, not 0.9), so not comparable with published numbers."""
    humans = _check_human_answers(human_answers)
    predicted = normalize_answer(prediction)
    return min(sum(normalize_answer(answer) == predicted for answer in humans) / 3.0, 1.0)


def _mean_score(score, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    if len(predictions) != len(references):
        raise ValueError(
            f"predictions and references must have the same length, got {len(predictions)} and {len(references)}"
        )
    if len(predictions) == 0:
        raise ValueError("predictions is empty; expected at least one answer")
    return float(np.mean([score(p, r) for p, r in zip(predictions, references)]))


def vqa_accuracy(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Official VQA accuracy: the mean :func:`vqa_score` of predicted answer strings against each question's
    human answers (10 in VQA)."""
    return _mean_score(vqa_score, predictions, references)


def simple_vqa_accuracy(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Mean :func:`simple_vqa_score` (not the official number; see :func:`vqa_accuracy`)."""
    return _mean_score(simple_vqa_score, predictions, references)


def soft_score_accuracy(predictions: Any, target_scores: Any) -> float:
    """Mean target score of the predicted answers: ``predictions`` holds answer ids (N,) or logits (N, A) (their
    argmax is taken), ``target_scores`` the per-answer soft scores (N, A) in [0, 1]. With targets from
    :func:`vqa_score` (as ``training.sources.vqa_examples`` builds them) this is the official accuracy."""
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
    """Trainer ``compute_metrics``: logits (N, A) against soft scores (N, A) give ``vqa_accuracy`` (official when
    the scores come from :func:`vqa_score`); against answer ids (N,) (-100 = none) they give ``accuracy``."""
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
