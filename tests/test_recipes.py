"""Training recipes and CLI: exact resumption, user feature stores with COCO/VQA JSON, clear errors, the main job."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainingArguments

from vlpretrain.cli import main as cli_main
from vlpretrain.processing.readers import RegionRecord
from vlpretrain.processing.store import write_feature_store
from vlpretrain.training.recipes import DataArguments, ModelArguments, finetune, pretrain
from vlpretrain.training.sources import answer_vocabulary, default_tokenizer, load_source, pretraining_examples

TINY = dict(model="lxmert", model_size="tiny", config_overrides='{"intermediate_size": 64}')


def arguments(output_dir, **overrides) -> TrainingArguments:
    values = dict(output_dir=str(output_dir), per_device_train_batch_size=8, per_device_eval_batch_size=16,
                  max_steps=4, learning_rate=1e-3, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
                  seed=0, disable_tqdm=True)
    values.update(overrides)
    return TrainingArguments(**values)


def data(**overrides) -> DataArguments:
    values = dict(dataset="shapes", num_images=40, eval_images=10, gallery_size=8, max_text_length=16)
    values.update(overrides)
    return DataArguments(**values)


def test_pretraining_resumes_exactly_where_it_stopped(tmp_path):
    full = pretrain(ModelArguments(**TINY), data(), arguments(tmp_path / "full", save_strategy="steps", save_steps=2))
    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-2", interrupted / "checkpoint-2")
    assert (interrupted / "checkpoint-2" / "collator_state.safetensors").exists()
    resumed = pretrain(ModelArguments(**TINY), data(),
                       arguments(interrupted, save_strategy="steps", save_steps=2, resume_from_checkpoint="latest"))
    first = load_file(f"{full['model_dir']}/model.safetensors")
    second = load_file(f"{resumed['model_dir']}/model.safetensors")
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name
    full_losses = [entry["loss"] for entry in full["trainer"].state.log_history if "loss" in entry]
    resumed_losses = [entry["loss"] for entry in resumed["trainer"].state.log_history if "loss" in entry]
    assert resumed_losses[-2:] == full_losses[2:]


@pytest.mark.parametrize("model, with_questions", [("lxmert", True), ("vilbert", False)])
def test_questions_join_pretraining_only_for_a_model_with_a_qa_objective(tmp_path, model, with_questions):
    source = load_source("shapes", "train", 10, 0)
    captions = sum(len(row) for row in source["captions"])
    questions = sum(len(row) for row in source["questions"])
    run = pretrain(ModelArguments(model=model, model_size="tiny"), data(num_images=10), arguments(tmp_path, max_steps=1))
    assert len(run["trainer"].train_dataset) == captions + (questions if with_questions else 0)


def write_store_and_annotations(tmp_path, image_ids=("a", "b", "c", "d"), feature_dtype="float32", feature_size=16):
    generator = np.random.default_rng(0)
    records = []
    for image_id in image_ids:
        corners = generator.random((5, 2, 2))
        boxes = np.concatenate([corners.min(1), corners.max(1)], 1).astype(np.float32)
        records.append(RegionRecord(image_id=image_id, image_height=100, image_width=100, boxes=boxes,
                                    features=generator.random((5, feature_size), dtype=np.float32),
                                    object_ids=generator.integers(0, 3, 5), object_confidences=np.ones(5, np.float32)))
    write_feature_store(records, tmp_path / "store", kind="regions", feature_dtype=feature_dtype)
    captions = {"annotations": [{"image_id": image_id, "caption": f"a photo of thing {image_id}"} for image_id in image_ids]}
    questions = {"questions": [{"question_id": index, "image_id": image_id, "question": "what is it?"}
                               for index, image_id in enumerate(image_ids)]}
    answers = {"annotations": [{"question_id": index, "answers": [{"answer": "cat"}] * 2 + [{"answer": "dog"}]}
                               for index, _ in enumerate(image_ids)]}
    for name, content in (("captions.json", captions), ("questions.json", questions), ("answers.json", answers)):
        (tmp_path / name).write_text(json.dumps(content))


def test_feature_store_with_coco_and_vqa_json_trains_vqa(tmp_path):
    write_store_and_annotations(tmp_path)
    data_args = data(dataset=str(tmp_path / "store"), captions_file=str(tmp_path / "captions.json"),
                     questions_file=str(tmp_path / "questions.json"), answers_file=str(tmp_path / "answers.json"))
    result = finetune("vqa", ModelArguments(**TINY), data_args, arguments(tmp_path / "vqa", max_steps=2))
    assert result["metrics"]["num_questions"] == 4
    config = json.loads((tmp_path / "vqa" / "final" / "config.json").read_text())
    assert set(config["id2label"].values()) == {"cat", "dog"}
    assert config["region_feature_size"] == 16


def test_float16_feature_store_is_half_the_size_and_trains_like_float32(tmp_path):
    """``features import --dtype float16`` stores features in half precision; the collator reads them back as
    float32, so a tiny pretraining run gives the float32 store's losses within bf16 noise (features in [0, 1)
    round by at most 2^-11 in float16)."""
    from vlpretrain.processing.store import load_feature_store

    losses, sizes = {}, {}
    for dtype in ("float32", "float16"):
        folder = tmp_path / dtype
        folder.mkdir()
        write_store_and_annotations(folder, image_ids=tuple("abcdefgh"), feature_dtype=dtype, feature_size=512)
        store = load_feature_store(folder / "store")
        assert store.features["features"].dtype == dtype
        sizes[dtype] = sum(shard.stat().st_size for shard in (folder / "store").glob("*.arrow"))
        data_args = data(dataset=str(folder / "store"), captions_file=str(folder / "captions.json"),
                         questions_file=str(folder / "questions.json"), answers_file=str(folder / "answers.json"))
        objectives = {"mlm": 1.0, "region_feature": 1.0, "region_object": 1.0, "matching": 1.0, "qa": 1.0}
        model_args = ModelArguments(**dict(TINY, config_overrides=json.dumps({"intermediate_size": 64, "loss_weights": objectives})))
        torch.manual_seed(0)  # the new model's initialisation
        run = pretrain(model_args, data_args, arguments(folder / "run", max_steps=3))
        losses[dtype] = [entry["loss"] for entry in run["trainer"].state.log_history if "loss" in entry]
    assert sizes["float16"] < 0.6 * sizes["float32"], sizes
    assert len(losses["float16"]) == 3
    np.testing.assert_allclose(losses["float16"], losses["float32"], rtol=1e-2)


def test_captions_that_name_unknown_images_are_rejected(tmp_path):
    write_store_and_annotations(tmp_path, image_ids=("a", "b"))
    (tmp_path / "captions.json").write_text(json.dumps({"annotations": [{"image_id": "zzz", "caption": "x"}]}))
    with pytest.raises(ValueError, match="image ids that are not in the feature store.*zzz"):
        load_source(str(tmp_path / "store"), captions_file=str(tmp_path / "captions.json"))


@pytest.mark.parametrize(
    "argv,message",
    [
        (["pretrain", "--model", "nosuchmodel", "--output_dir", "{tmp}"], "model: unknown architecture 'nosuchmodel'"),
        (["pretrain", "--model", "lxmert", "--dataset", "nosuchdata", "--output_dir", "{tmp}"],
         "neither an embedded dataset"),
        (["pretrain", "--model", "lxmert", "--model_size", "huge", "--num_images", "4", "--output_dir", "{tmp}"],
         "model_size: lxmert has presets"),
        (["finetune", "--task", "captioning", "--model", "lxmert", "--output_dir", "{tmp}"], "task: expected 'vqa' or 'retrieval'"),
    ],
)
def test_cli_errors_name_what_is_wrong_before_training(tmp_path, argv, message):
    with pytest.raises(ValueError, match=message):
        cli_main([arg.replace("{tmp}", str(tmp_path / "out")) for arg in argv])
    assert not (tmp_path / "out" / "final").exists()


def test_store_without_captions_is_rejected(tmp_path):
    write_store_and_annotations(tmp_path)
    with pytest.raises(ValueError, match="captions_file: required"):
        load_source(str(tmp_path / "store"))
    with pytest.raises(ValueError, match="not a feature store"):
        load_source(str(tmp_path))


@pytest.mark.slow
def test_main_job_quick_runs_end_to_end(tmp_path, capsys, monkeypatch):
    from vlpretrain.training.main_job import run_main_job

    monkeypatch.chdir(tmp_path)  # a relative output folder, as the demo command's default
    summary = run_main_job("demo", quick=True)
    printed = capsys.readouterr().out
    assert "| VQA accuracy (%)" in printed and "from scratch" in printed
    assert (tmp_path / "demo" / "export" / "README.md").exists()
    assert "vqa_accuracy" in summary["results"]["pretrained"]["vqa"]
    assert set(summary["pretraining_helped"]) == {"vqa", "retrieval"}
    assert len(summary["pretraining_matching_loss"]) == 5 and "matching loss every 4 steps" in printed


def test_narrow_preset_learns_image_text_matching(one_thread):
    """The tiny preset's initialisation (std 1 / sqrt(width)) lets a cross-modal objective leave ln 2 quickly:
    ImageBERT trained on matching alone, on swapped shapes captions, gets well below chance within 300 steps
    (with BERT's 0.02 at width 64 it stayed at 0.693 for over 1,000)."""
    from helpers.processing import minilm_tokenizer

    from vlpretrain.data.collators import collator_for_config
    from vlpretrain.registry import get_architecture
    from vlpretrain.training.recipes import build_config
    from vlpretrain.training.sources import pretraining_examples, source_label_sizes

    torch.manual_seed(0)
    tokenizer = minilm_tokenizer()
    source = load_source("shapes", "train", num_images=400, seed=0)
    config = build_config(
        ModelArguments(model="image-bert", model_size="tiny", config_overrides='{"loss_weights": {"matching": 1.0}}'),
        source_label_sizes(source), tokenizer, 0, 16,
    )
    assert config.initializer_range == pytest.approx(1 / 8, abs=1e-3)
    model = get_architecture("image-bert").model_class("pretraining")(config).train()
    loader = torch.utils.data.DataLoader(
        pretraining_examples(source, tokenizer, 16), batch_size=32, shuffle=True,
        collate_fn=collator_for_config(config, tokenizer, seed=1), generator=torch.Generator().manual_seed(0),
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    while len(losses) < 300:
        for batch in loader:
            loss = model(**{key: value for key, value in batch.items() if key != "image_id"}).matching_loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if len(losses) == 300:
                break
    assert np.mean(losses[:50]) > 0.68
    assert np.mean(losses[-50:]) < 0.62


def test_arrow_rows_read_the_same_values_as_datasets():
    """ArrowRows (zero-copy numpy views for the training input path) returns what ``datasets`` returns, row by row:
    fixed- and variable-shape arrays, lists of numbers, nulls, strings, scalars, after a shuffle too."""
    import datasets

    from vlpretrain.training.sources import ArrowRows, default_tokenizer, pretraining_examples

    generator = np.random.default_rng(0)
    features = datasets.Features({
        "region_features": datasets.Array2D((3, 4), "float32"), "frames": datasets.Array2D((None, 2), "float16"),
        "input_ids": datasets.List(datasets.Value("int32")), "labels": datasets.List(datasets.Value("int64")),
        "image_id": datasets.Value("string"), "answer_label": datasets.Value("int64"),
    })
    table = datasets.Dataset.from_dict({
        "region_features": [generator.random((3, 4), dtype=np.float32) for _ in range(5)],
        "frames": [generator.random((count, 2)).astype(np.float16) for count in (1, 3, 2, 1, 4)],
        "input_ids": [[101, 7, 102], [101, 102], [101, 5, 6, 102], [101, 102], [101, 9, 102]],
        "labels": [[1, 2], None, [3], [], [4, 5, 6]],
        "image_id": list("abcde"), "answer_label": [-100, 3, -100, 1, 2],
    }, features=features).shuffle(seed=0)
    shapes = pretraining_examples(load_source("shapes", "train", 3, 0), default_tokenizer(), 16)
    for dataset in (table, shapes):
        rows = ArrowRows(dataset)
        assert len(rows) == len(dataset)
        for index in range(len(dataset)):
            expected, got = dataset[index], rows[index]
            assert set(got) == set(expected)
            for name, value in expected.items():
                if value is None or isinstance(value, (str, int)):
                    assert got[name] == value, name
                else:
                    np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(value, dtype=np.asarray(got[name]).dtype))


def test_pretraining_questions_per_image_keeps_captions_and_draws_questions_per_image():
    """``questions_per_item`` keeps every caption and that many of each image's questions, drawn per image (so all
    question kinds stay in the data), the same for the same seed; the pretraining recipe refuses a bad count."""
    source = load_source("shapes", "train", 40, 0)
    tokenizer = default_tokenizer()
    answers = answer_vocabulary(source)
    everything = pretraining_examples(source, tokenizer, 48, answers)
    assert len(everything) == sum(len(row["captions"]) + len(row["questions"]) for row in source)

    def texts_per_image(dataset):
        texts = {}
        for row in dataset:
            kind = "question" if row["answer_label"] != -100 else "caption"
            texts.setdefault(row["image_id"], []).append((kind, list(row["input_ids"])))
        return texts

    one = texts_per_image(pretraining_examples(source, tokenizer, 48, answers, questions_per_item=1, seed=0))
    questions = [[text for kind, text in one[row["image_id"]] if kind == "question"] for row in source]
    assert all(len(kept) == 1 for kept in questions)
    positions = []
    for row, kept in zip(source, questions):
        assert [text for kind, text in one[row["image_id"]] if kind == "caption"] == tokenizer(row["captions"])["input_ids"]
        positions.append(tokenizer(row["questions"])["input_ids"].index(kept[0]))
    assert len(set(positions)) == 3, "one question kind was always kept"
    again = texts_per_image(pretraining_examples(source, tokenizer, 48, answers, questions_per_item=1, seed=0))
    other = texts_per_image(pretraining_examples(source, tokenizer, 48, answers, questions_per_item=1, seed=1))
    assert again == one and other != one
    with pytest.raises(ValueError, match="questions_per_item"):
        pretraining_examples(source, tokenizer, 48, answers, questions_per_item=-2)
    for bad in (dict(pretraining_questions=-2), dict(hard_negatives=1.5), dict(paired_negatives=-1)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            pretrain(ModelArguments(model="lxmert", model_size="tiny"), DataArguments(num_images=4, eval_images=2, **bad),
                     TrainingArguments(output_dir="unused", max_steps=1, report_to=[]))


def test_retrieval_choice_batches_rank_each_pair_against_distractors_of_other_images():
    """Retrieval fine-tuning groups: the true pair first, then distractors that pair the caption with another image
    or the image with another caption, never from the same image; the first distractor is the other image whose
    caption shares the most words; the ranking loss is the softmax cross-entropy over each group."""
    from vlpretrain.modeling.outputs import ImageTextRetrievalOutput
    from vlpretrain.training.recipes import RetrievalChoiceCollator, choice_ranking_loss
    from vlpretrain.training.sources import caption_examples, default_tokenizer, padding_collator

    tokenizer = default_tokenizer()
    source = load_source("shapes", "train", 12, 0)
    examples = caption_examples(source, tokenizer, 16)
    rows = [examples[index] for index in range(0, len(examples), 2)][:8]
    collator = RetrievalChoiceCollator(padding_collator(tokenizer, source), negatives=3, seed=0)
    batch = collator(rows)
    assert batch["labels"].tolist() == [0] * len(rows)
    assert batch["input_ids"].shape[0] == 4 * len(rows)
    features = [torch.as_tensor(np.asarray(row["region_features"])) for row in rows]
    texts = [list(row["input_ids"]) for row in rows]

    def pair(position):
        text = batch["input_ids"][position][batch["attention_mask"][position].bool()].tolist()
        regions = batch["region_features"][position][batch["region_attention_mask"][position].bool()]
        image = next(i for i, feature in enumerate(features) if feature.shape == regions.shape and torch.equal(feature, regions))
        return texts.index(text), image

    for group, row in enumerate(rows):
        assert pair(4 * group) == (group, group)
        words = set(row["input_ids"])
        overlaps = [len(words & set(t)) / len(words | set(t)) for t in texts]
        others = [i for i in range(len(rows)) if rows[i]["image_id"] != row["image_id"]]
        for offset in (1, 2, 3):
            text, image = pair(4 * group + offset)
            other = image if offset % 2 else text
            assert (text if offset % 2 else image) == group and other in others
            if offset == 1:
                assert overlaps[other] == max(overlaps[i] for i in others)
    scores = torch.tensor([[3.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    outputs = ImageTextRetrievalOutput(scores=scores.reshape(-1))
    expected = torch.nn.functional.cross_entropy(scores, torch.zeros(2, dtype=torch.long))
    assert choice_ranking_loss(outputs, torch.zeros(2, dtype=torch.long)).item() == pytest.approx(expected.item())
    with pytest.raises(ValueError, match="negatives must be at least 1"):
        RetrievalChoiceCollator(padding_collator(tokenizer, source), negatives=0)
