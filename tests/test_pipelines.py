"""The VQA and retrieval pipelines through ``pipeline(...)``: installed package, saved folders, and exported folders
loaded in a fresh process where the package is not importable."""

from __future__ import annotations

import json
import os
import tempfile
import textwrap

import numpy as np
import pytest
import torch
from helpers.factories import tiny_lxmert_config
from helpers.fresh_process import run_fresh_process
from helpers.processing import minilm_tokenizer, random_image, tiny_backbone, tiny_detector
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel, pipeline

from vlpretrain import (
    LxmertForImageTextRetrieval,
    LxmertForQuestionAnswering,
    RegionFeaturizer,
    VideoLanguageProcessor,
    VisionLanguageProcessor,
)
from vlpretrain.hub.export import export_model
from vlpretrain.modeling.outputs import UnimodalEncoding
from vlpretrain.pipelines.retrieval import CrossModalRetrievalPipeline
from vlpretrain.pipelines.retrieval_index import RetrievalIndex

ANSWERS = {0: "yes", 1: "no", 2: "red", 3: "blue"}
REGION_SIZE = 16  # the pooled channels of the tiny backbone


@pytest.fixture(scope="module")
def tokenizer():
    return minilm_tokenizer()


@pytest.fixture(scope="module")
def processor(tokenizer):
    featurizer = RegionFeaturizer.from_models(
        backbone=tiny_backbone(), detector=tiny_detector(), shortest_edge=64, longest_edge=112, num_regions=6
    )
    return VisionLanguageProcessor.from_featurizer(tokenizer, featurizer, max_text_length=12)


@pytest.fixture(scope="module")
def vqa_model(tokenizer):
    torch.manual_seed(0)
    config = tiny_lxmert_config(vocab_size=len(tokenizer), region_feature_size=REGION_SIZE, id2label=ANSWERS)
    return LxmertForQuestionAnswering(config).eval()


@pytest.fixture(scope="module")
def retrieval_model(tokenizer):
    torch.manual_seed(1)
    return LxmertForImageTextRetrieval(tiny_lxmert_config(vocab_size=len(tokenizer), region_feature_size=REGION_SIZE)).eval()


def regions(seed: int, count: int = 4) -> dict:
    generator = np.random.default_rng(seed)
    corners = generator.random((count, 2, 2))
    boxes = np.concatenate([corners.min(1), corners.max(1)], 1).astype(np.float32)
    return {"region_features": generator.random((count, REGION_SIZE), dtype=np.float32), "region_boxes": boxes}


def test_vqa_pipeline_ranks_answers_for_images_and_precomputed_regions(vqa_model, processor):
    vqa = pipeline("vlpretrain-vqa", model=vqa_model, processor=processor)
    image = random_image(seed=2)
    answers = vqa(image, question="what colour is it?", top_k=3)
    assert [set(answer) for answer in answers] == [{"answer", "score"}] * 3
    scores = [answer["score"] for answer in answers]
    assert scores == sorted(scores, reverse=True)
    with torch.no_grad():
        logits = vqa_model(**processor(text=["what colour is it?"], images=[image])).logits[0]
    best = int(logits.argmax())
    assert answers[0] == {"answer": ANSWERS[best], "score": pytest.approx(float(logits[best].sigmoid()), abs=1e-6)}
    assert vqa({"image": image, "question": "what colour is it?"}, top_k=3) == answers

    examples = [{"image": random_image(seed=seed), "question": f"question {seed}?"} for seed in range(3)]
    batched = vqa(examples, top_k=1, batch_size=2)
    assert len(batched) == 3 and all(len(ranked) == 1 for ranked in batched)
    assert batched[1] == vqa(examples[1]["image"], question="question 1?", top_k=1)
    assert vqa([example["image"] for example in examples], question=[e["question"] for e in examples], top_k=1) == batched

    precomputed = vqa({**regions(0), "question": "is it red?"}, top_k=10)
    assert len(precomputed) == len(ANSWERS)  # top_k is capped at the number of answers
    with torch.no_grad():
        reference = vqa_model(**processor(text=["is it red?"], region_features=[regions(0)["region_features"]],
                                          region_boxes=[regions(0)["region_boxes"]])).logits[0].sigmoid()
    assert precomputed[0]["score"] == pytest.approx(float(reference.max()), abs=1e-6)


def broken_image_file() -> str:
    handle, path = tempfile.mkstemp(suffix=".jpg")
    os.write(handle, b"not a jpeg")
    os.close(handle)
    return path


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda vqa: vqa(random_image()), "no question"),
        (lambda vqa: vqa(random_image(), question=""), "non-empty string"),
        (lambda vqa: vqa(random_image(), question="q?", top_k=0), "top_k"),
        (lambda vqa: vqa([{"image": random_image(), "question": "a"}, {**regions(0), "question": "b"}]), "mixes"),
        (lambda vqa: vqa([random_image()], question=["a", "b"]), "2 questions for 1 inputs"),
        (lambda vqa: vqa({"pixels": 1, "question": "a"}), "not arguments of VisionLanguageProcessor"),
        (lambda vqa: vqa(broken_image_file(), question="q?"), "cannot decode image"),
        (lambda vqa: vqa(random_image(), question="q?", temperature=1), "unexpected arguments"),
        (lambda vqa: vqa(random_image(), question="q?", batch_size=0), "batch_size"),
    ],
)
def test_vqa_pipeline_rejects_bad_input(vqa_model, processor, call, message):
    vqa = pipeline("vlpretrain-vqa", model=vqa_model, processor=processor)
    with pytest.raises(ValueError, match=message):
        call(vqa)


def test_retrieval_pipeline_ranks_in_both_directions(retrieval_model, processor):
    retriever = pipeline("vlpretrain-retrieval", model=retrieval_model, processor=processor)
    texts = ["a red square", "two blue circles", "a green triangle"]
    gallery = [regions(seed) for seed in range(5)]
    ranked = retriever(texts=texts, visuals=gallery, top_k=3, shortlist_size=None)
    assert len(ranked) == 3 and [len(row) for row in ranked] == [3, 3, 3]
    with torch.no_grad():
        for row, text in enumerate(texts):
            inputs = processor(text=[text] * 5, region_features=[g["region_features"] for g in gallery],
                               region_boxes=[g["region_boxes"] for g in gallery])
            scores = retrieval_model(**inputs).scores
            assert [item["index"] for item in ranked[row]] == scores.argsort(descending=True)[:3].tolist()
            assert ranked[row][0]["score"] == pytest.approx(float(scores.max()), abs=1e-5)
    single = retriever(texts=texts[0], visuals=gallery, top_k=2, shortlist_size=2)
    assert len(single) == 2 and all(isinstance(item, dict) for item in single)

    reverse = retriever(texts=texts, visuals=gallery[0], query="visual", top_k=2, shortlist_size=None)
    assert len(reverse) == 2 and {item["id"] for item in reverse} <= {"0", "1", "2"}
    images = retriever(texts=texts, visuals=[random_image(seed=s) for s in range(3)], top_k=1)
    assert len(images) == 3


def test_retrieval_pipeline_with_a_saved_index(retrieval_model, processor, tmp_path):
    retriever = pipeline("vlpretrain-retrieval", model=retrieval_model, processor=processor)
    gallery = [regions(seed) for seed in range(6)]
    index = retriever.build_index(visuals=gallery[:4], ids=["a", "b", "c", "d"])
    index.save(tmp_path / "gallery.safetensors")
    loaded = RetrievalIndex.load(tmp_path / "gallery.safetensors")
    retriever.add_to_index(loaded, visuals=gallery[4:], ids=["e", "f"])
    from_index = retriever(texts=["a red square"], index=loaded, top_k=6, shortlist_size=None)
    direct = retriever(texts=["a red square"], visuals=gallery, top_k=6, shortlist_size=None)
    assert [item["id"] for item in from_index[0]] == [["a", "b", "c", "d", "e", "f"][item["index"]] for item in direct[0]]
    with pytest.raises(ValueError, match="queries are text, not visual"):
        retriever(visuals=gallery[:1], index=loaded, query="visual")
    with pytest.raises(ValueError, match="feature size 16, got 8"):
        retriever.add_to_index(loaded, visuals=[{"region_features": np.ones((2, 8), np.float32),
                                                 "region_boxes": regions(0, 2)["region_boxes"]}])


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(texts=["a"], visuals=[]), "at least one image"),
        (dict(texts=[], visuals=[regions(0)]), "non-empty list"),
        (dict(texts=["a"], visuals=[{"region_features": np.ones((2, 16), np.float32)}]), "needs region_boxes"),
        (dict(texts=["a"]), "both are needed"),
        (dict(texts=["a"], visuals=[random_image(), {"region_features": np.ones((2, 16), np.float32)}]), "mixes"),
        (dict(texts=["a"], visuals=[regions(0)], query="sideways"), "query"),
        (dict(texts=["a"], visuals=[regions(0), {"region_features": np.ones((2, 8), np.float32),
                                                 "region_boxes": regions(0, 2)["region_boxes"]}]), "sizes differ"),
        (dict(texts=["a"], visuals=[regions(0)], index=RetrievalIndex()), "pass visuals= or index=, not both"),
        (dict(texts=["a"], index=RetrievalIndex()), "gallery is empty"),
    ],
)
def test_retrieval_pipeline_rejects_bad_input(retrieval_model, processor, kwargs, message):
    retriever = pipeline("vlpretrain-retrieval", model=retrieval_model, processor=processor)
    with pytest.raises(ValueError, match=message):
        retriever(**kwargs)


def test_pipelines_load_from_saved_folders_with_the_package(vqa_model, retrieval_model, processor, tmp_path):
    vqa_model.save_pretrained(tmp_path / "vqa")
    processor.save_pretrained(tmp_path / "vqa")
    vqa = pipeline("vlpretrain-vqa", model=str(tmp_path / "vqa"))
    assert type(vqa.model) is LxmertForQuestionAnswering
    assert vqa(random_image(), question="q?", top_k=2) == pipeline("vlpretrain-vqa", model=vqa_model, processor=processor)(
        random_image(), question="q?", top_k=2
    )
    retrieval_model.save_pretrained(tmp_path / "retrieval")
    processor.save_pretrained(tmp_path / "retrieval")
    retriever = pipeline("vlpretrain-retrieval", model=str(tmp_path / "retrieval"))
    assert type(retriever.model) is LxmertForImageTextRetrieval
    assert len(retriever(texts=["a"], visuals=[regions(0), regions(1)], top_k=2)[0]) == 2


FRESH_PROCESS = textwrap.dedent(
    """
    import sys
    sys.modules["vlpretrain"] = None  # the package must not be importable here
    import json
    import numpy as np
    from transformers import pipeline

    vqa_dir, retrieval_dir, inputs_path, outputs_path = sys.argv[1:5]
    inputs = np.load(inputs_path)
    vqa = pipeline(model=vqa_dir, trust_remote_code=True)
    assert vqa.task == "visual-question-answering" and type(vqa).__module__.startswith("transformers_modules."), vqa.task
    retriever = pipeline(model=retrieval_dir, trust_remote_code=True)
    assert retriever.task == "vlpretrain-retrieval", retriever.task
    gallery = [{"region_features": inputs[f"features{i}"], "region_boxes": inputs[f"boxes{i}"]} for i in range(3)]
    outputs = {
        "image": vqa(inputs["image"], question="what colour is it?", top_k=2),
        "regions": vqa([{**gallery[0], "question": "is it red?"}], top_k=2),
        "retrieval": retriever(texts=["a red square", "blue"], visuals=gallery, top_k=3, shortlist_size=2),
    }
    with open(outputs_path, "w") as stream:
        json.dump(outputs, stream)
    print("remote pipelines ok")
    """
)


@pytest.mark.slow
def test_exported_folders_run_their_pipelines_with_transformers_alone(vqa_model, retrieval_model, processor, tokenizer, tmp_path):
    vqa_model.save_pretrained(tmp_path / "vqa_src")
    processor.save_pretrained(tmp_path / "vqa_src")
    retrieval_model.save_pretrained(tmp_path / "retrieval_src")
    tokenizer.save_pretrained(tmp_path / "retrieval_src")  # no processor: export builds one from the tokenizer
    export_model(tmp_path / "vqa_src", tmp_path / "vqa")
    export_model(tmp_path / "retrieval_src", tmp_path / "retrieval")
    vqa_config = json.loads((tmp_path / "vqa" / "config.json").read_text())
    assert vqa_config["custom_pipelines"] == {
        "visual-question-answering": {"impl": "pipelines_vqa.VisualQuestionAnsweringPipeline",
                                      "pt": ["AutoModelForVisualQuestionAnswering"], "type": "multimodal"}
    }
    files = set(os.listdir(tmp_path / "retrieval"))
    assert {"pipelines_retrieval.py", "pipelines_retrieval_index.py", "pipelines_inputs.py", "processor_config.json"} <= files
    assert list(json.loads((tmp_path / "retrieval" / "config.json").read_text())["custom_pipelines"]) == ["vlpretrain-retrieval"]

    image = random_image(seed=7)
    gallery = [regions(seed) for seed in range(3)]
    arrays = {"image": image}
    for position, item in enumerate(gallery):
        arrays[f"features{position}"], arrays[f"boxes{position}"] = item["region_features"], item["region_boxes"]
    np.savez(tmp_path / "inputs.npz", **arrays)
    run_fresh_process(
        FRESH_PROCESS, tmp_path, tmp_path / "vqa", tmp_path / "retrieval", tmp_path / "inputs.npz", tmp_path / "outputs.json",
    )
    remote = json.loads((tmp_path / "outputs.json").read_text())

    vqa = pipeline("vlpretrain-vqa", model=vqa_model, processor=processor)
    local_processor = VisionLanguageProcessor(tokenizer)
    retriever = pipeline("vlpretrain-retrieval", model=retrieval_model, processor=local_processor)
    local = {
        "image": vqa(image, question="what colour is it?", top_k=2),
        "regions": vqa([{**gallery[0], "question": "is it red?"}], top_k=2),
        "retrieval": retriever(texts=["a red square", "blue"], visuals=gallery, top_k=3, shortlist_size=2),
    }
    assert_same_rankings(local, remote)


def assert_same_rankings(local, remote) -> None:
    """Same answers / items in the same order, scores equal to 1e-5."""
    for key in local:
        for local_row, remote_row in zip(_rows(local[key]), _rows(remote[key])):
            assert [{k: v for k, v in item.items() if k != "score"} for item in local_row] == [
                {k: v for k, v in item.items() if k != "score"} for item in remote_row
            ], key
            assert [item["score"] for item in local_row] == pytest.approx([item["score"] for item in remote_row], abs=1e-5)


def _rows(value) -> list:
    return value if value and isinstance(value[0], list) else [value]


class StandInVideoTextConfig(PreTrainedConfig):
    model_type = "stand-in-video-text"
    vocab_size: int = 30522
    frame_feature_size: int = 6
    hidden_size: int = 8


class StandInVideoTextModel(PreTrainedModel):
    """A dual encoder over frame features with the two-stage retrieval methods (video models land with UniVL)."""

    config_class = StandInVideoTextConfig

    def __init__(self, config):
        super().__init__(config)
        self.words = nn.Embedding(config.vocab_size, config.hidden_size)
        self.frames = nn.Linear(config.frame_feature_size, config.hidden_size)
        self.post_init()

    def _encoding(self, states: torch.Tensor, mask: torch.Tensor) -> UnimodalEncoding:
        pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return UnimodalEncoding(states=states, mask=mask, embeddings=nn.functional.normalize(pooled, dim=-1))

    def encode_text_for_retrieval(self, input_ids, attention_mask=None):
        return self._encoding(self.words(input_ids), attention_mask.float())

    def encode_visual_for_retrieval(self, frame_features, frame_attention_mask=None):
        return self._encoding(self.frames(frame_features), frame_attention_mask.float())

    def score_encoded_pairs(self, text, visual):
        return self._encoding(text.states, text.mask.float()).embeddings.mul(
            self._encoding(visual.states, visual.mask.float()).embeddings).sum(-1)


def test_video_text_retrieval_goes_through_the_video_processor(tokenizer, tmp_path):
    torch.manual_seed(0)
    model = StandInVideoTextModel(StandInVideoTextConfig(vocab_size=len(tokenizer))).eval()
    video_processor = VideoLanguageProcessor(tokenizer, frame_feature_size=6)
    retriever = CrossModalRetrievalPipeline(model=model, processor=video_processor)
    clips = [np.random.default_rng(seed).random((3 + seed, 6), dtype=np.float32) for seed in range(4)]
    for position, clip in enumerate(clips):
        np.save(tmp_path / f"clip{position}.npy", clip)
    from_arrays = retriever(texts=["chop the onion", "stir"], visuals=[{"frame_features": clip} for clip in clips], top_k=4)
    from_files = retriever(texts=["chop the onion", "stir"], visuals=[tmp_path / f"clip{i}.npy" for i in range(4)], top_k=4)
    assert from_arrays == from_files and len(from_arrays[0]) == 4
    with torch.no_grad():
        text = model.encode_text_for_retrieval(**video_processor(text=["stir"]))
        videos = model.encode_visual_for_retrieval(**video_processor(frame_features=clips))
    assert [item["index"] for item in from_arrays[1]] == (text.embeddings @ videos.embeddings.T)[0].argsort(descending=True).tolist()
    with pytest.raises(ValueError, match="feature size 5, expected 6"):
        retriever(texts=["stir"], visuals=[{"frame_features": np.ones((2, 5), np.float32)}])
