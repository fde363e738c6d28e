"""Two-stage retrieval for ViLBERT, ERNIE-ViL and UniVL: cached single-stream encodings re-scored per pair give the
model's own retrieval scores, through ``RetrievalIndex`` and through the retrieval pipeline."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
from helpers.fresh_process import run_fresh_process
from helpers.processing import minilm_tokenizer
from helpers.single_stream_factories import tiny_vl_bert_config
from helpers.univl_hero_factories import tiny_hero_config, tiny_univl_config, video_text_batch
from helpers.vilbert_factories import tiny_ernie_vil_config, tiny_vilbert_config, two_stream_batch
from transformers import pipeline

from vlpretrain import (
    ErnieVilForImageTextRetrieval,
    ErnieVilForPreTraining,
    HeroForVideoTextRetrieval,
    UnivlForVideoTextRetrieval,
    VideoLanguageProcessor,
    VilbertForImageTextRetrieval,
    VilbertForPreTraining,
    VisionLanguageProcessor,
    VlBertForImageTextRetrieval,
)
from vlpretrain.hub.export import export_model
from vlpretrain.modeling.outputs import UnimodalEncoding
from vlpretrain.pipelines.retrieval_index import RetrievalIndex, split_inputs

TWO_STREAM_MODELS = [
    (VilbertForImageTextRetrieval, tiny_vilbert_config),
    (ErnieVilForImageTextRetrieval, tiny_ernie_vil_config),
    (VilbertForPreTraining, tiny_vilbert_config),
    (ErnieVilForPreTraining, tiny_ernie_vil_config),
]


def two_stream_scores(model, batch: dict) -> torch.Tensor:
    """The matched-minus-mismatched logit of the full forward pass (retrieval and pretraining heads)."""
    output = model(**batch)
    logits = output.matching_logits if isinstance(model, VilbertForPreTraining) else output.logits
    return logits[:, 1] - logits[:, 0]


def assert_indexes_rank_like(model, text: dict, visual: dict, expected: torch.Tensor) -> None:
    """Searching an index of the visual items with the texts (and of the texts with the visual items), re-ranking
    everything, returns ``expected`` (texts x items) sorted, in both directions."""
    items = RetrievalIndex("visual")
    items.add(model, visual, chunk_size=3)
    result = items.search(model, text, top_k=4, shortlist_size=None, chunk_size=3)
    torch.testing.assert_close(result.scores, expected.sort(dim=1, descending=True).values, atol=1e-5, rtol=0)
    assert torch.equal(result.indices, expected.argsort(dim=1, descending=True))
    captions = RetrievalIndex("text")
    captions.add(model, text, chunk_size=3)
    reverse = captions.search(model, visual, top_k=4, shortlist_size=None, chunk_size=3)
    torch.testing.assert_close(reverse.scores, expected.T.sort(dim=1, descending=True).values, atol=1e-5, rtol=0)


def pair_grid(text: UnimodalEncoding, visual: UnimodalEncoding) -> tuple[UnimodalEncoding, UnimodalEncoding]:
    """Every (text i, visual j) pair, row-aligned, text-major."""
    texts, visuals = text.states.shape[0], visual.states.shape[0]
    rows, columns = torch.arange(texts).repeat_interleave(visuals), torch.arange(visuals).repeat(texts)
    return (UnimodalEncoding(states=text.states[rows], mask=text.mask[rows]),
            UnimodalEncoding(states=visual.states[columns], mask=visual.mask[columns]))


@pytest.mark.parametrize("model_class,make_config", TWO_STREAM_MODELS)
def test_two_stream_split_scores_equal_the_full_forward(model_class, make_config):
    torch.manual_seed(0)
    config = make_config(t_biattention_id=[2], v_biattention_id=[1])  # one text and one visual layer before co-attention
    model = model_class(config).eval()
    batch = two_stream_batch(config, batch=4, labels=False)
    text, visual = split_inputs(batch)
    with torch.no_grad():
        encoded_text = model.encode_text_for_retrieval(**text)
        encoded_visual = model.encode_visual_for_retrieval(**visual)
        split = model.score_encoded_pairs(encoded_text, encoded_visual)
        full = two_stream_scores(model, batch)
        grid = model.score_encoded_pairs(*pair_grid(encoded_text, encoded_visual)).view(4, 4)
        expected = torch.stack([
            two_stream_scores(model, {**{k: v[i : i + 1].expand(4, *v.shape[1:]) for k, v in text.items()}, **visual})
            for i in range(4)
        ])
    torch.testing.assert_close(split, full, atol=1e-5, rtol=0)
    torch.testing.assert_close(grid, expected, atol=1e-5, rtol=0)
    assert encoded_visual.states.shape[1] == 5 + 1  # the global image token is part of the cached visual stream
    assert encoded_text.embeddings.shape == encoded_visual.embeddings.shape == (4, config.bi_hidden_size)
    torch.testing.assert_close(encoded_text.embeddings.norm(dim=-1), torch.ones(4))

    assert_indexes_rank_like(model, text, visual, expected)


def test_two_stream_without_matching_head_refuses_to_score():
    config = tiny_vilbert_config(loss_weights={"matching": 0.0})
    model = VilbertForPreTraining(config).eval()
    text, visual = split_inputs(two_stream_batch(config, batch=2, labels=False))
    with torch.no_grad(), pytest.raises(ValueError, match="no matching head"):
        model.score_encoded_pairs(model.encode_text_for_retrieval(**text), model.encode_visual_for_retrieval(**visual))


@pytest.mark.parametrize("mode", ["joint", "align"])
def test_univl_split_scores_equal_the_full_forward(mode):
    torch.manual_seed(0)
    config = tiny_univl_config(retrieval_mode=mode)
    model = UnivlForVideoTextRetrieval(config).eval()
    batch = video_text_batch(config, batch=4, targets=False)
    text, visual = split_inputs(batch)
    assert int(text["attention_mask"].sum(1).min()) < text["attention_mask"].shape[1]  # some text is padded
    with torch.no_grad():
        encoded_text = model.encode_text_for_retrieval(**text)
        encoded_visual = model.encode_visual_for_retrieval(**visual)
        grid = model.score_encoded_pairs(*pair_grid(encoded_text, encoded_visual)).view(4, 4)
        # Each text scored by forward on its own (unpadded), against every clip.
        expected = torch.stack([
            model(input_ids=text["input_ids"][i : i + 1, :length].expand(4, length), **visual).logits[0]
            for i, length in enumerate(text["attention_mask"].sum(1).tolist())
        ])
        full = model(**batch)
    torch.testing.assert_close(grid, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(encoded_text.embeddings, full.text_embeds, atol=1e-6, rtol=0)  # FT-Joint first stage
    torch.testing.assert_close(encoded_visual.embeddings, full.visual_embeds, atol=1e-6, rtol=0)
    torch.testing.assert_close(grid, full.logits, atol=1e-5, rtol=0)  # padding changes no score (fixed frame positions)

    assert_indexes_rank_like(model, text, visual, expected)


def test_univl_align_score_does_not_depend_on_padding():
    torch.manual_seed(0)
    model = UnivlForVideoTextRetrieval(tiny_univl_config(retrieval_mode="align")).eval()
    input_ids = torch.tensor([[1, 7, 8, 9, 2]])
    frames = torch.randn(1, 3, 12)
    with torch.no_grad():
        alone = model(input_ids=input_ids, frame_features=frames).logits
        padded = model(input_ids=torch.cat([input_ids, torch.zeros(1, 6, dtype=torch.long)], 1),
                       attention_mask=torch.tensor([[1] * 5 + [0] * 6]), frame_features=frames).logits
    torch.testing.assert_close(alone, padded, atol=1e-5, rtol=0)


def test_hero_split_scores_equal_the_full_forward():
    torch.manual_seed(0)
    config = tiny_hero_config()
    model = HeroForVideoTextRetrieval(config).eval()
    generator = torch.Generator().manual_seed(0)
    batch = {
        "input_ids": torch.randint(3, config.vocab_size, (4, 7), generator=generator),
        "attention_mask": torch.tensor([[1] * 7, [1] * 5 + [0] * 2, [1] * 7, [1] * 3 + [0] * 4]),
        "frame_features": torch.randn(4, 5, config.frame_feature_size, generator=generator),
        "frame_attention_mask": torch.tensor([[1] * 5, [1] * 5, [1] * 2 + [0] * 3, [1] * 4 + [0]]),
    }
    text, visual = split_inputs(batch)
    with torch.no_grad():
        encoded_text = model.encode_text_for_retrieval(**text)
        encoded_visual = model.encode_visual_for_retrieval(**visual)
        grid = model.score_encoded_pairs(*pair_grid(encoded_text, encoded_visual)).view(4, 4)
        full = model(**batch).logits
    torch.testing.assert_close(grid, full, atol=1e-5, rtol=0)
    first_stage = encoded_text.embeddings @ encoded_visual.embeddings.T
    assert first_stage.shape == (4, 4) and bool((first_stage <= 1 + 1e-5).all())

    assert_indexes_rank_like(model, text, visual, full)


@pytest.fixture(scope="module")
def tokenizer():
    return minilm_tokenizer()


def test_vilbert_univl_and_hero_rank_through_the_retrieval_pipeline(tokenizer):
    torch.manual_seed(0)
    vilbert = VilbertForImageTextRetrieval(tiny_vilbert_config(vocab_size=len(tokenizer))).eval()
    image_processor = VisionLanguageProcessor(tokenizer)
    generator = np.random.default_rng(0)
    gallery = []
    for _ in range(5):
        corners = generator.random((3, 2, 2))
        boxes = np.concatenate([corners.min(1), corners.max(1)], 1).astype(np.float32)
        gallery.append({"region_features": generator.random((3, 12), dtype=np.float32), "region_boxes": boxes})
    texts = ["a red square", "two blue circles on the left"]
    retriever = pipeline("vlpretrain-retrieval", model=vilbert, processor=image_processor)
    ranked = retriever(texts=texts, visuals=gallery, top_k=5, shortlist_size=None)
    with torch.no_grad():
        for row, text in enumerate(texts):
            inputs = image_processor(text=[text] * 5, region_features=[g["region_features"] for g in gallery],
                                     region_boxes=[g["region_boxes"] for g in gallery])
            scores = vilbert(**inputs).scores
            assert [item["index"] for item in ranked[row]] == scores.argsort(descending=True).tolist()
            assert [item["score"] for item in ranked[row]] == pytest.approx(scores.sort(descending=True).values.tolist(), abs=1e-5)
    assert len(retriever(texts=texts, visuals=gallery, top_k=2, shortlist_size=3)[0]) == 2

    univl = UnivlForVideoTextRetrieval(tiny_univl_config(vocab_size=len(tokenizer), retrieval_mode="align")).eval()
    video_processor = VideoLanguageProcessor(tokenizer)
    clips = [generator.random((2 + index, 12), dtype=np.float32) for index in range(4)]
    retriever = pipeline("vlpretrain-retrieval", model=univl, processor=video_processor)
    ranked = retriever(texts="chop the onion", visuals=[{"frame_features": clip} for clip in clips], top_k=4, shortlist_size=2)
    assert len(ranked) == 4
    exhaustive = retriever(texts="chop the onion", visuals=[{"frame_features": clip} for clip in clips], top_k=4, shortlist_size=None)
    with torch.no_grad():
        scores = univl(**video_processor(text=["chop the onion"] * 4, frame_features=clips)).logits[0]
    assert [item["index"] for item in exhaustive] == scores.argsort(descending=True).tolist()
    assert [item["score"] for item in exhaustive] == pytest.approx(scores.sort(descending=True).values.tolist(), abs=1e-5)
    reverse = retriever(texts=["chop", "stir the pot slowly"], visuals={"frame_features": clips[0]}, query="visual", top_k=2)
    assert {item["id"] for item in reverse} == {"0", "1"}

    hero = HeroForVideoTextRetrieval(tiny_hero_config(vocab_size=len(tokenizer))).eval()
    retriever = pipeline("vlpretrain-retrieval", model=hero, processor=video_processor)
    ranked = retriever(texts="chop the onion", visuals=[{"frame_features": clip} for clip in clips], top_k=4, shortlist_size=None)
    with torch.no_grad():
        scores = hero(**video_processor(text=["chop the onion"] * 4, frame_features=clips)).logits[0]
    assert [item["index"] for item in ranked] == scores.argsort(descending=True).tolist()
    assert [item["score"] for item in ranked] == pytest.approx(scores.sort(descending=True).values.tolist(), abs=1e-5)


def test_retrieval_pipeline_refuses_a_single_stream_model(tokenizer):
    model = VlBertForImageTextRetrieval(tiny_vl_bert_config(vocab_size=len(tokenizer))).eval()
    with pytest.raises(ValueError, match=r"VlBertForImageTextRetrieval has no two-stage retrieval scoring"):
        pipeline("vlpretrain-retrieval", model=model, processor=VisionLanguageProcessor(tokenizer))


FRESH_PROCESS = textwrap.dedent(
    """
    import sys
    sys.modules["vlpretrain"] = None  # the package must not be importable here
    import json
    import numpy as np
    from transformers import pipeline

    vilbert_dir, univl_dir, inputs_path, outputs_path = sys.argv[1:5]
    inputs = np.load(inputs_path)
    outputs = {}
    for name, folder, gallery in (
        ("vilbert", vilbert_dir, [{"region_features": inputs[f"features{i}"], "region_boxes": inputs[f"boxes{i}"]} for i in range(3)]),
        ("univl", univl_dir, [{"frame_features": inputs[f"clip{i}"]} for i in range(3)]),
    ):
        retriever = pipeline(model=folder, trust_remote_code=True)
        assert retriever.task == "vlpretrain-retrieval", retriever.task
        outputs[name] = retriever(texts=["a red square", "stir"], visuals=gallery, top_k=3, shortlist_size=2)
    with open(outputs_path, "w") as stream:
        json.dump(outputs, stream)
    """
)


@pytest.mark.slow
def test_exported_two_stream_and_univl_folders_rank_with_transformers_alone(tokenizer, tmp_path):
    torch.manual_seed(0)
    models = {
        "vilbert": VilbertForImageTextRetrieval(tiny_vilbert_config(vocab_size=len(tokenizer))).eval(),
        "univl": UnivlForVideoTextRetrieval(tiny_univl_config(vocab_size=len(tokenizer), retrieval_mode="align")).eval(),
    }
    for name, model in models.items():
        model.save_pretrained(tmp_path / f"{name}_source")
        tokenizer.save_pretrained(tmp_path / f"{name}_source")
        export_model(tmp_path / f"{name}_source", tmp_path / name)
    generator = np.random.default_rng(3)
    arrays = {}
    for index in range(3):
        corners = generator.random((3, 2, 2))
        arrays[f"boxes{index}"] = np.concatenate([corners.min(1), corners.max(1)], 1).astype(np.float32)
        arrays[f"features{index}"] = generator.random((3, 12), dtype=np.float32)
        arrays[f"clip{index}"] = generator.random((2 + index, 12), dtype=np.float32)
    np.savez(tmp_path / "inputs.npz", **arrays)
    run_fresh_process(
        FRESH_PROCESS, tmp_path, tmp_path / "vilbert", tmp_path / "univl", tmp_path / "inputs.npz", tmp_path / "outputs.json",
    )
    remote = json.loads((tmp_path / "outputs.json").read_text())
    galleries = {
        "vilbert": ([{"region_features": arrays[f"features{i}"], "region_boxes": arrays[f"boxes{i}"]} for i in range(3)],
                    VisionLanguageProcessor(tokenizer)),
        "univl": ([{"frame_features": arrays[f"clip{i}"]} for i in range(3)], VideoLanguageProcessor(tokenizer)),
    }
    for name, (gallery, processor) in galleries.items():
        local = pipeline("vlpretrain-retrieval", model=models[name], processor=processor)(
            texts=["a red square", "stir"], visuals=gallery, top_k=3, shortlist_size=2
        )
        for local_row, remote_row in zip(local, remote[name]):
            assert [item["id"] for item in local_row] == [item["id"] for item in remote_row], name
            assert [item["score"] for item in local_row] == pytest.approx([item["score"] for item in remote_row], abs=1e-5)
