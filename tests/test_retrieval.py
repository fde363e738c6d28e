"""Two-stage retrieval: LXMERT's split encoder, the gallery index (persistence, growth, errors) and the contrastive option."""

from __future__ import annotations

import pytest
import torch
from helpers.factories import image_text_batch, tiny_lxmert_config

from vlpretrain import LxmertForImageTextRetrieval, LxmertForPreTraining
from vlpretrain.metrics.retrieval.ranking import recall_at_k
from vlpretrain.pipelines.retrieval_index import RetrievalIndex, split_inputs


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return LxmertForImageTextRetrieval(tiny_lxmert_config()).eval()


@pytest.fixture(scope="module")
def batch(model):
    return image_text_batch(model.config, batch=6, text_length=7, regions=5, seed=3, labels=False)


def all_pairs_scores(model, batch) -> torch.Tensor:
    """(texts, images) matching scores from the full forward pass of every pair."""
    text, visual = split_inputs(batch)
    count = batch["input_ids"].shape[0]
    scores = torch.zeros(count, count)
    with torch.no_grad():
        for row in range(count):
            pair = {name: value[row : row + 1].expand(count, *value.shape[1:]) for name, value in text.items()}
            scores[row] = model(**pair, **visual).scores
    return scores


def test_split_encoder_scores_equal_the_full_forward(model, batch):
    text, visual = split_inputs(batch)
    with torch.no_grad():
        encoded_text = model.encode_text_for_retrieval(**text)
        encoded_visual = model.encode_visual_for_retrieval(**visual)
        split = model.score_encoded_pairs(encoded_text, encoded_visual)
        full = model(**batch)
    torch.testing.assert_close(split, full.scores)
    torch.testing.assert_close(encoded_text.embeddings, full.text_embeds)
    torch.testing.assert_close(encoded_visual.embeddings, full.visual_embeds)
    assert torch.allclose(encoded_text.embeddings.norm(dim=-1), torch.ones(6))


def test_exhaustive_search_ranks_like_all_pairs_in_both_directions(model, batch):
    expected = all_pairs_scores(model, batch)
    text, visual = split_inputs(batch)
    images = RetrievalIndex("visual")
    images.add(model, visual, chunk_size=4)
    result = images.search(model, text, top_k=6, shortlist_size=None, chunk_size=4)
    torch.testing.assert_close(result.scores, expected.sort(dim=1, descending=True).values)
    assert torch.equal(result.indices, expected.argsort(dim=1, descending=True))
    captions = RetrievalIndex("text")
    captions.add(model, text, ids=[f"caption-{i}" for i in range(6)])
    reverse = captions.search(model, visual, top_k=3, shortlist_size=None, chunk_size=5)
    torch.testing.assert_close(reverse.scores, expected.T.sort(dim=1, descending=True).values[:, :3])
    assert reverse.ids[0][0] == f"caption-{int(expected[:, 0].argmax())}"


def test_shortlist_results_are_a_reranked_subset_and_feed_the_metrics(model, batch):
    text, visual = split_inputs(batch)
    index = RetrievalIndex()
    index.add(model, visual)
    result = index.search(model, text, top_k=2, shortlist_size=3)
    assert result.indices.shape == (6, 2)
    embeddings_rank = (model.encode_text_for_retrieval(**text).embeddings @ index.embeddings.T).topk(3).indices
    for row in range(6):
        assert set(result.indices[row].tolist()) <= set(embeddings_rank[row].tolist())
    similarity = result.similarity(len(index))
    assert torch.isinf(similarity).sum() == 6 * 4
    assert 0.0 <= recall_at_k(similarity.numpy(), 1) <= recall_at_k(similarity.numpy(), 5)


def test_index_persists_and_grows_incrementally(model, batch, tmp_path):
    text, visual = split_inputs(batch)
    whole = RetrievalIndex()
    whole.add(model, visual)
    grown = RetrievalIndex()
    first = {name: value[:2, :3] for name, value in visual.items()}  # fewer regions: padding grows on the next add
    first["region_attention_mask"] = torch.ones(2, 3, dtype=torch.long)
    grown.add(model, first, ids=["a", "b"])
    grown.save(tmp_path / "gallery.safetensors")
    loaded = RetrievalIndex.load(tmp_path / "gallery.safetensors")
    assert loaded.ids == ["a", "b"] and loaded.input_sizes == {"region_features": 12, "region_boxes": 4}
    loaded.add(model, {name: value[2:] for name, value in visual.items()}, ids=["c", "d", "e", "f"])
    assert len(loaded) == 6 and loaded.states.shape[1] == 5
    reference = RetrievalIndex()
    reference.add(model, first)
    reference.add(model, {name: value[2:] for name, value in visual.items()})
    expected = reference.search(model, text, top_k=4, shortlist_size=None)
    result = loaded.search(model, text, top_k=4, shortlist_size=None, chunk_size=2)
    torch.testing.assert_close(result.scores, expected.scores)
    assert result.ids == [[["a", "b", "c", "d", "e", "f"][i] for i in row] for row in expected.indices.tolist()]


def test_bad_galleries_and_queries_raise_clear_errors(model, batch, tmp_path):
    text, visual = split_inputs(batch)
    empty = RetrievalIndex()
    with pytest.raises(ValueError, match="gallery is empty"):
        empty.search(model, text)
    with pytest.raises(ValueError, match="nothing to save"):
        empty.save(tmp_path / "empty.safetensors")
    index = RetrievalIndex()
    index.add(model, visual, ids=[str(i) for i in range(6)])
    wider = {name: value for name, value in visual.items()}
    wider["region_features"] = torch.randn(6, 5, 20)
    with pytest.raises(ValueError, match="region_features: the index holds items of feature size 12, got 20"):
        index.add(model, wider)
    with pytest.raises(ValueError, match="ids: must be unique"):
        index.add(model, visual, ids=[str(i) for i in range(6)])
    with pytest.raises(ValueError, match="queries: expected only text inputs"):
        index.search(model, batch)
    with pytest.raises(ValueError, match="top_k"):
        index.search(model, text, top_k=0)
    other = LxmertForImageTextRetrieval(tiny_lxmert_config()).eval()
    with pytest.raises(ValueError, match="weights differ"):
        index.search(other, text)
    with pytest.raises(ValueError, match="region_features: expected feature size 12"):
        RetrievalIndex().add(model, wider)
    with pytest.raises(ValueError, match="modality"):
        RetrievalIndex("audio")
    with pytest.raises(ValueError, match="path: no index file"):
        RetrievalIndex.load(tmp_path / "missing.safetensors")


def test_pretraining_model_ranks_with_its_matching_head(batch):
    pretraining = LxmertForPreTraining(tiny_lxmert_config()).eval()
    text, visual = split_inputs(batch)
    index = RetrievalIndex()
    index.add(pretraining, visual)
    assert index.search(pretraining, text, top_k=1).indices.shape == (6, 1)
    no_matching = LxmertForPreTraining(tiny_lxmert_config(loss_weights={"mlm": 1.0})).eval()
    without_head = RetrievalIndex()
    without_head.add(no_matching, visual)
    with pytest.raises(ValueError, match="no matching head"):
        without_head.search(no_matching, text)


def test_contrastive_option_adds_the_in_batch_loss_and_trains_the_first_stage():
    no_dropout = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    config = tiny_lxmert_config(contrastive_loss_weight=0.5, **no_dropout)
    model = LxmertForImageTextRetrieval(config)
    inputs = image_text_batch(config, batch=8, text_length=7, regions=5, seed=5, labels=False)
    labels = torch.ones(8, dtype=torch.long)
    output = model(**inputs, labels=labels)
    plain = LxmertForImageTextRetrieval(tiny_lxmert_config(**no_dropout))
    plain.load_state_dict(model.state_dict())
    plain_output = plain(**inputs, labels=labels)
    assert plain_output.contrastive_loss is None
    torch.testing.assert_close(output.loss, plain_output.loss + 0.5 * output.contrastive_loss)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(30):
        optimizer.zero_grad()
        model(**inputs, labels=labels).contrastive_loss.backward()
        optimizer.step()
    with torch.no_grad():
        trained = model(**inputs)
    similarity = (trained.text_embeds @ trained.visual_embeds.T).numpy()
    assert recall_at_k(similarity, 1) == 1.0
    with pytest.raises(ValueError, match="contrastive_loss_weight"):
        tiny_lxmert_config(contrastive_loss_weight=-1.0)
