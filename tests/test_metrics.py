"""Metrics against hand-computed values, and the shipped evaluate scripts loaded offline in a fresh process."""

import ast
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from transformers import EvalPrediction

from vlpretrain.metrics import (
    caption_metrics,
    cider_d,
    cider_d_scores,
    compute_retrieval_metrics,
    compute_vqa_metrics,
    corpus_bleu,
    median_rank,
    normalize_answer,
    positives_from_ids,
    ranks_from_similarity,
    recall_at_k,
    retrieval_metrics,
    simple_vqa_accuracy,
    simple_vqa_score,
    soft_score_accuracy,
    tokenize_caption,
    vqa_accuracy,
    vqa_score,
)
from vlpretrain.metrics.loading import METRIC_SCRIPTS, metric_script_path

REPO = Path(__file__).resolve().parents[1]


def test_vqa_score_averages_the_ten_leave_one_out_subsets():
    # 10 annotators: an answer given by k of them scores (k * min((k-1)/3, 1) + (10-k) * min(k/3, 1)) / 10.
    for given_by, expected in ((0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)):
        humans = ["yes"] * given_by + ["no", "maybe", "blue", "red", "2", "3", "4", "5", "6", "7"][: 10 - given_by]
        assert vqa_score("yes", humans) == pytest.approx(expected), given_by
        assert simple_vqa_score("yes", humans) == pytest.approx(min(given_by / 3, 1))
    humans = ["yes"] * 2 + ["no"] * 7 + ["maybe"]
    assert vqa_score("Yes.", humans) == pytest.approx(0.6)
    assert vqa_accuracy(["no", "yes"], [humans, humans]) == pytest.approx((1 + 0.6) / 2)
    assert simple_vqa_accuracy(["no", "yes"], [humans, humans]) == pytest.approx((1 + 2 / 3) / 2)
    with pytest.raises(ValueError, match="same length"):
        vqa_accuracy(["no"], [humans, humans])
    with pytest.raises(ValueError, match="human_answers"):
        vqa_score("no", [])
    with pytest.raises(ValueError, match="prediction"):
        vqa_score(None, humans)


@pytest.mark.parametrize(
    "raw, normalised",
    [
        # The VQA evaluation page's worked examples (visualqa.org/evaluation.html) ...
        ("dont", "don't"),  # a contraction missing its apostrophe gets it back
        ("100,978", "100978"),  # no space for a comma between digits
        ("2:50 pm", "2:50 pm"),  # colons stay (times)
        ("girl's", "girl's"),  # apostrophes stay (possessives)
        ("2.5", "2.5"),  # periods go except in decimals
        ("Yes.", "yes"),
        ("Two", "2"),  # number words to digits
        ("the dog", "dog"),  # articles go
        ("an apple", "apple"),
        # ... and vqaEval.py's punctuation rule: deleted next to a space, a space otherwise
        ("red/white", "red white"),
        ("red / white", "red white"),
        ("(red)", "red"),
        ("yes!", "yes"),
        ("none", "0"),
        (" yes\n", "yes"),
    ],
)
def test_official_answer_normalisation(raw, normalised):
    assert normalize_answer(raw) == normalised


def test_vqa_score_normalises_only_when_the_annotators_disagree():
    # vqaEval.py normalises prediction and human answers only when the human answers are not all the same.
    agreeing = ["2"] * 10
    assert vqa_score("2", agreeing) == 1.0 and vqa_score("two", agreeing) == 0.0
    disagreeing = ["2"] * 9 + ["3"]
    assert vqa_score("two", disagreeing) == 1.0
    assert vqa_score("Two.", ["two"] * 4 + ["three"] * 6) == 1.0  # both sides become "2"
    assert vqa_score("dont", ["don't"] * 3 + ["no"] * 7) == pytest.approx(0.9)


def test_soft_score_accuracy_and_compute_metrics():
    scores = np.array([[0.0, 1.0, 0.3], [0.6, 0.0, 0.0]])
    logits = np.array([[0.1, 0.5, 0.2], [0.0, 2.0, 1.0]])
    assert soft_score_accuracy(logits, scores) == pytest.approx(0.5)
    assert soft_score_accuracy(np.array([2, 0]), scores) == pytest.approx((0.3 + 0.6) / 2)
    assert compute_vqa_metrics(EvalPrediction(predictions=logits, label_ids=scores)) == {"vqa_accuracy": 0.5}
    hard = compute_vqa_metrics(EvalPrediction(predictions=(logits,), label_ids=np.array([1, -100])))
    assert hard == {"accuracy": 1.0}
    with pytest.raises(ValueError, match="answer ids"):
        soft_score_accuracy(np.array([3, 0]), scores)


SIMILARITY = np.array(
    [
        [0.9, 0.1, 0.3],
        [0.8, 0.5, 0.2],
        [0.1, 0.2, 0.0],
    ]
)


def test_ranks_by_hand_both_directions():
    # texts -> images: text 0 ranks image 0 first; text 1 ranks image 1 second; text 2 ranks image 2 third.
    assert ranks_from_similarity(SIMILARITY).tolist() == [1, 2, 3]
    # images -> texts (columns): image 0 -> text 0 first; image 1 -> text 1 first; image 2 -> text 2 third.
    assert ranks_from_similarity(SIMILARITY, direction="visual_to_text").tolist() == [1, 1, 3]
    assert recall_at_k(SIMILARITY, 1) == pytest.approx(1 / 3)
    assert recall_at_k(SIMILARITY, 2) == pytest.approx(2 / 3)
    assert median_rank(SIMILARITY) == 2.0
    metrics = retrieval_metrics(SIMILARITY, ks=(1, 2))
    assert metrics == pytest.approx(
        {
            "t2v_recall@1": 1 / 3,
            "t2v_recall@2": 2 / 3,
            "t2v_median_rank": 2.0,
            "v2t_recall@1": 2 / 3,
            "v2t_recall@2": 2 / 3,
            "v2t_median_rank": 1.0,
        }
    )


def test_ties_count_against_the_positive_and_multiple_captions():
    assert ranks_from_similarity(np.ones((4, 4))).tolist() == [4, 4, 4, 4]
    positives = positives_from_ids([0, 0, 1, 1], [0, 1])
    similarity = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.4], [0.5, 0.6]])
    assert ranks_from_similarity(similarity, positives).tolist() == [1, 2, 1, 1]
    assert ranks_from_similarity(similarity, positives, "visual_to_text").tolist() == [1, 2]


def test_retrieval_bad_input():
    with pytest.raises(ValueError, match="square"):
        recall_at_k(np.zeros((2, 3)), 1)
    with pytest.raises(ValueError, match="positives must have the shape"):
        recall_at_k(np.zeros((2, 2)), 1, positives=np.eye(3))
    with pytest.raises(ValueError, match=r"queries \[1\] have no positive"):
        recall_at_k(np.zeros((2, 2)), 1, positives=[[True, False], [False, False]])
    with pytest.raises(ValueError, match="direction"):
        recall_at_k(np.zeros((2, 2)), 1, direction="sideways")


def test_compute_retrieval_metrics_from_embeddings():
    texts = np.eye(3)
    visuals = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])
    metrics = compute_retrieval_metrics(EvalPrediction(predictions=(texts, visuals), label_ids=np.array([0, 1, 2])))
    assert metrics["t2v_recall@1"] == pytest.approx(1 / 3) and metrics["t2v_recall@5"] == 1.0


def test_tokenization():
    assert tokenize_caption("A Dog, running; isn't it?") == ["a", "dog", "running", "isn't", "it"]


def test_bleu_by_hand():
    assert corpus_bleu(["the cat sat on the mat"], [["the cat sat on the mat"]]) == pytest.approx(1.0)
    # All precisions are 1; brevity penalty exp(1 - 6/5).
    assert corpus_bleu(["the cat sat on the"], [["the cat sat on the mat"]]) == pytest.approx(math.exp(-0.2))
    # Clipped bigram matches are 0 -> BLEU 0 without smoothing.
    assert corpus_bleu(["the the the the"], [["the cat"]]) == 0.0
    # Corpus pooling: p1 = 8/9, p2 = 5/7, p3 = 2/5, p4 = 1/3, equal lengths.
    expected = (8 / 9 * 5 / 7 * 2 / 5 * 1 / 3) ** 0.25
    assert corpus_bleu(["a b c d", "a b x d e"], [["a b c d"], ["a b c d e"]]) == pytest.approx(expected)
    # The closest reference length (3, not 8) sets the brevity penalty: none for 5 tokens (8 would give exp(-0.6)).
    assert corpus_bleu(["a b c d e"], [["a b c", "a b c d e f g h"]]) == pytest.approx(1.0)
    # Equally close references (3 and 5 for 4 tokens): the shorter one counts, so no penalty.
    assert corpus_bleu(["a b c d"], [["a b c", "a b c d e"]]) == pytest.approx(1.0)


def test_cider_d_by_hand():
    references = [["a red circle"], ["a blue square"]]
    # Image 0: unigram cosine 1/2, bigram 1/2, trigram 0, no 4-grams -> 10 * 1/4 = 2.5;
    # image 1 is identical to its reference: orders 1-3 give 1, no 4-grams -> 10 * 3/4 = 7.5.
    assert cider_d_scores(["a red square", "a blue square"], references).tolist() == pytest.approx([2.5, 7.5])
    assert cider_d(["a red square", "a blue square"], references) == pytest.approx(5.0)
    long_refs = [["one red circle sits here"], ["two blue squares lie there"]]
    assert cider_d([r[0] for r in long_refs], long_refs) == pytest.approx(10.0)
    # One extra word: clipped cosines 5/sqrt(30), 4/sqrt(20), 3/sqrt(12), 2/sqrt(6), length penalty exp(-1/72).
    cosines = [5 / math.sqrt(30), 4 / math.sqrt(20), 3 / math.sqrt(12), 2 / math.sqrt(6)]
    scores = cider_d_scores(["one red circle sits here now", long_refs[1][0]], long_refs)
    assert scores.tolist() == pytest.approx([10 * math.exp(-1 / 72) * np.mean(cosines), 10.0])
    assert caption_metrics(["a red circle"], [["a red circle"]])["cider"] == 0.0  # one image: every idf is 0
    with pytest.raises(ValueError, match="references\\[0\\]"):
        cider_d(["a"], [[]])


def test_metric_scripts_are_package_data_with_flat_imports():
    package = REPO / "vlpretrain"
    shipped = {path.relative_to(package).as_posix() for path in package.glob("metrics/*/*.py")}
    for name, relative in METRIC_SCRIPTS.items():
        assert f"metrics/{relative}" in shipped, name
        tree = ast.parse(metric_script_path(name).read_text())
        for node in tree.body:
            if isinstance(node, ast.Import):
                assert len(node.names) == 1, "evaluate needs one import per line"
            if isinstance(node, ast.ImportFrom):
                assert node.level == 1 and node.module, "scripts import only modules beside them"
                assert (metric_script_path(name).parent / f"{node.module}.py").exists()


def test_no_absolute_or_bare_relative_package_imports():
    """data/ may use processing/ (pure helpers such as the subtitle alignment rule) but never modeling/ or
    training/; metrics/ (also shipped as standalone evaluate scripts) uses none of the package's subpackages."""
    forbidden = {"data": {"modeling", "training"}, "metrics": {"modeling", "training", "processing"}}
    for path in list((REPO / "vlpretrain" / "data").glob("*.py")) + list(
        (REPO / "vlpretrain" / "metrics").rglob("*.py")
    ):
        package = path.relative_to(REPO / "vlpretrain").parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0 or node.module, f"{path}: 'from . import' is not allowed"
                assert not (node.level == 0 and (node.module or "").startswith("vlpretrain")), path
                if node.level:
                    first = node.module.split(".")[0]
                    assert first not in forbidden[package], f"{path} imports {node.module}"
            if isinstance(node, ast.Import):
                assert not any(alias.name.startswith("vlpretrain") for alias in node.names), path


LOAD_SCRIPT = """
import json
from vlpretrain.metrics import load_metric
out = {}
out["vqa"] = load_metric("vqa_accuracy").compute(predictions=["yes", "2"], references=[["yes", "yes", "no"], ["2"] * 3])
out["vqa_scores"] = load_metric("vqa_accuracy").compute(predictions=[1, 0], references=[[0.0, 1.0], [0.3, 1.0]])
out["retrieval"] = load_metric("retrieval").compute(
    predictions=[[0.9, 0.1, 0.3], [0.8, 0.5, 0.2], [0.1, 0.2, 0.0]], references=[[0], [1], [2]], ks=[1, 2])
out["bleu"] = load_metric("bleu").compute(predictions=["the cat sat on the"], references=[["the cat sat on the mat"]])
out["cider"] = load_metric("cider").compute(
    predictions=["a red square", "a blue square"], references=[["a red circle"], ["a blue square"]])
try:
    load_metric("accuracy")
except ValueError as error:
    out["unknown"] = str(error)
print(json.dumps(out))
"""


@pytest.mark.slow
def test_load_metric_offline_in_fresh_process(tmp_path):
    env = dict(
        os.environ,
        HF_HOME=str(tmp_path / "hf"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        PYTHONPATH=str(REPO),
        HF_ENDPOINT="http://127.0.0.1:9",
    )
    result = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    # official: "yes" against (yes, yes, no): (1/3 + 1/3 + 2/3) / 3; "2" against three "2": 2/3 in every subset.
    assert out["vqa"]["vqa_accuracy"] == pytest.approx((4 / 9 + 2 / 3) / 2)
    assert out["vqa_scores"]["vqa_accuracy"] == pytest.approx(0.65, abs=1e-6)
    assert out["retrieval"] == pytest.approx(retrieval_metrics(SIMILARITY, ks=(1, 2)))
    assert out["bleu"]["bleu"] == pytest.approx(math.exp(-0.2))
    assert out["cider"]["cider"] == pytest.approx(5.0)
    assert "unknown metric 'accuracy'" in out["unknown"]
    assert (tmp_path / "hf").exists(), "evaluate did not write under the given HF_HOME"
