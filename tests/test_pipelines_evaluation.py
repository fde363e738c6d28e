"""The pipelines' evaluation helpers on generated ``shapes`` / ``shapes-video`` data, scored with the package's
metric functions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.factories import tiny_lxmert_config
from helpers.processing import minilm_tokenizer
from helpers.univl_hero_factories import tiny_univl_config
from transformers import pipeline

from vlpretrain import (
    LxmertForImageTextRetrieval,
    LxmertForQuestionAnswering,
    UnivlForCaptioning,
    VideoLanguageProcessor,
    VisionLanguageProcessor,
)
from vlpretrain.data.shapes import ANSWER_NAMES, explode_questions, make_shapes_dataset, make_shapes_video_dataset
from vlpretrain.metrics import caption_metrics, retrieval_metrics, vqa_accuracy
from vlpretrain.pipelines.evaluation import dataset_visuals, evaluate_captioning, evaluate_retrieval, evaluate_vqa

REGION_COLUMNS = ("region_features", "region_boxes")


@pytest.fixture(scope="module")
def tokenizer():
    return minilm_tokenizer()


@pytest.fixture(scope="module")
def shapes():
    return make_shapes_dataset(num_images=6, seed=0)


def region_size(shapes) -> int:
    return int(np.asarray(shapes[0]["region_features"]).shape[-1])


def test_evaluate_vqa_scores_the_top_answers_with_official_accuracy(tokenizer, shapes):
    torch.manual_seed(0)
    config = tiny_lxmert_config(vocab_size=len(tokenizer), region_feature_size=region_size(shapes),
                                id2label=dict(enumerate(ANSWER_NAMES)))
    vqa = pipeline("vlpretrain-vqa", model=LxmertForQuestionAnswering(config).eval(), processor=VisionLanguageProcessor(tokenizer))
    questions = explode_questions(shapes)
    metrics = evaluate_vqa(vqa, questions, visual_columns=REGION_COLUMNS, answers_column="answer", batch_size=5)
    predictions = [vqa(item, question=row["question"], top_k=1)[0]["answer"]
                   for item, row in zip(dataset_visuals(questions, REGION_COLUMNS), questions)]
    hits = np.mean([prediction == row["answer"] for prediction, row in zip(predictions, questions)])
    assert metrics == {"vqa_accuracy": pytest.approx(hits), "num_examples": len(questions)}

    def oracle(visuals, question, top_k, batch_size):  # answers "red" to everything
        return [[{"answer": "red", "score": 1.0}] for _ in visuals]

    human = [{"image": None, "question": "q?", "answers": ["red", "red", "blue"]},
             {"image": None, "question": "q?", "answers": ["red"] * 3 + ["blue"] * 7}]
    assert evaluate_vqa(oracle, human) == {"vqa_accuracy": pytest.approx(vqa_accuracy(["red", "red"], [h["answers"] for h in human])),
                                           "num_examples": 2}
    # official leave-one-out score: 2 of 3 annotators -> (1/3 + 1/3 + 2/3) / 3; 3 of 10 -> 0.9
    assert evaluate_vqa(oracle, human)["vqa_accuracy"] == pytest.approx((4 / 9 + 0.9) / 2)
    with pytest.raises(ValueError, match=r"examples\[0\]: has no column 'answers'"):
        evaluate_vqa(oracle, [{"image": None, "question": "q?"}])
    with pytest.raises(ValueError, match="at least one example"):
        evaluate_vqa(oracle, [])


def test_evaluate_retrieval_matches_the_metrics_of_all_pairs_scores(tokenizer, shapes):
    torch.manual_seed(1)
    model = LxmertForImageTextRetrieval(tiny_lxmert_config(vocab_size=len(tokenizer), region_feature_size=region_size(shapes))).eval()
    processor = VisionLanguageProcessor(tokenizer)
    retriever = pipeline("vlpretrain-retrieval", model=model, processor=processor)
    texts = [caption for captions in shapes["captions"] for caption in captions]  # two captions per image
    owners = [index for index, captions in enumerate(shapes["captions"]) for _ in captions]
    visuals = dataset_visuals(shapes, REGION_COLUMNS)
    metrics = evaluate_retrieval(retriever, texts, visuals, text_visual_ids=owners, ks=(1, 5), shortlist_size=None)

    similarity = np.zeros((len(texts), len(visuals)))
    with torch.no_grad():
        for row, text in enumerate(texts):
            inputs = processor(text=[text] * len(visuals), region_features=[v["region_features"] for v in visuals],
                               region_boxes=[v["region_boxes"] for v in visuals])
            similarity[row] = model(**inputs).scores.numpy()
    positives = np.asarray(owners)[:, None] == np.arange(len(visuals))[None, :]
    expected = retrieval_metrics(similarity, positives, ks=(1, 5))
    assert metrics == pytest.approx(expected)
    assert set(metrics) == {"t2v_recall@1", "t2v_recall@5", "t2v_median_rank", "v2t_recall@1", "v2t_recall@5", "v2t_median_rank"}

    shortlisted = evaluate_retrieval(retriever, texts, visuals, text_visual_ids=owners, ks=(1,), shortlist_size=2)
    assert 0.0 <= shortlisted["t2v_recall@1"] <= 1.0 and shortlisted["t2v_median_rank"] >= 1
    with pytest.raises(ValueError, match="text_visual_ids: needed"):
        evaluate_retrieval(retriever, texts, visuals)
    with pytest.raises(ValueError, match="both must be non-empty"):
        evaluate_retrieval(retriever, texts, [])


def test_evaluate_captioning_scores_generated_captions_with_bleu_and_cider(tokenizer):
    videos = make_shapes_video_dataset(num_videos=3, seed=0)
    feature_size = int(np.asarray(videos[0]["frame_features"]).shape[-1])
    config = tiny_univl_config(
        vocab_size=len(tokenizer), frame_feature_size=feature_size, bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id, num_beams=1, max_caption_length=6,
    )
    torch.manual_seed(0)
    captioner = pipeline("vlpretrain-video-captioning", model=UnivlForCaptioning(config).eval(),
                         processor=VideoLanguageProcessor(tokenizer))
    clips = dataset_visuals(videos, ("frame_features",))
    metrics = evaluate_captioning(captioner, clips, videos["caption"], batch_size=2, max_new_tokens=4)
    generated = [row[0]["generated_text"] for row in captioner(clips, max_new_tokens=4)]
    assert metrics == {**caption_metrics(generated, [[c] for c in videos["caption"]]), "num_examples": 3}

    reference_of = {id(clip): caption for clip, caption in zip(clips, videos["caption"])}

    def echo(items, batch_size, **kwargs):  # writes each clip's reference caption
        return [[{"generated_text": reference_of[id(item)]}] for item in items]

    perfect = evaluate_captioning(echo, clips, videos["caption"])
    assert perfect["bleu4"] == pytest.approx(1.0) and perfect["cider"] > 0
    with pytest.raises(ValueError, match="one entry per video"):
        evaluate_captioning(captioner, clips, videos["caption"][:2])
