"""A plain transformers.Trainer with the package: the processor-output collator, declared label names, README example."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.factories import image_text_batch, tiny_lxmert_config
from helpers.processing import minilm_tokenizer
from transformers import Trainer, TrainingArguments

from vlpretrain import DataCollatorForVisionLanguage, LxmertForPreTraining, VisionLanguageProcessor
from vlpretrain.data.collators import image_text_collator

pytestmark = pytest.mark.usefixtures("one_thread")
README = Path(__file__).resolve().parent.parent / "README.md"


def test_collator_pads_text_regions_frames_with_masks_and_keeps_labels():
    examples = [
        {"input_ids": [101, 7, 102], "region_features": np.ones((2, 3)), "region_boxes": np.full((2, 4), 0.5),
         "frame_features": np.ones((1, 2)), "labels": [-100, 7, -100], "region_object_labels": [1, 2],
         "matched_labels": 1, "answer_scores": [0.0, 1.0], "image_id": "a"},
        {"input_ids": [101, 8, 9, 10, 102], "region_features": np.ones((3, 3)), "region_boxes": np.full((3, 4), 0.5),
         "frame_features": np.ones((4, 2)), "labels": [-100, 8, 9, -100, -100], "region_object_labels": [3, 4, 5],
         "matched_labels": 0, "answer_scores": [0.3, 0.6], "image_id": "b"},
    ]
    batch = DataCollatorForVisionLanguage(pad_token_id=0)(examples)
    assert "image_id" not in batch
    assert batch["input_ids"].tolist() == [[101, 7, 102, 0, 0], [101, 8, 9, 10, 102]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["labels"].tolist() == [[-100, 7, -100, -100, -100], [-100, 8, 9, -100, -100]]
    assert batch["region_features"].shape == (2, 3, 3) and batch["region_features"].dtype == torch.float32
    assert batch["region_features"][0, 2].abs().sum() == 0
    assert batch["region_attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
    assert batch["region_object_labels"].tolist() == [[1, 2, -100], [3, 4, 5]]
    assert batch["frame_attention_mask"].tolist() == [[1, 0, 0, 0], [1, 1, 1, 1]]
    assert batch["matched_labels"].tolist() == [1, 0]
    assert torch.allclose(batch["answer_scores"], torch.tensor([[0.0, 1.0], [0.3, 0.6]]))


def test_collator_takes_processor_outputs_of_one_example_each():
    processor = VisionLanguageProcessor(minilm_tokenizer())
    rows = [
        processor(text="a red cube", region_features=[np.random.rand(2, 6)], region_boxes=[np.full((2, 4), 0.25)]),
        processor(text="is there a small blue ball left of it?", region_features=[np.random.rand(4, 6)],
                  region_boxes=[np.full((4, 4), 0.25)]),
    ]
    whole = processor(text=["a red cube", "is there a small blue ball left of it?"],
                      region_features=[rows[0]["region_features"][0].numpy(), rows[1]["region_features"][0].numpy()],
                      region_boxes=[np.full((2, 4), 0.25), np.full((4, 4), 0.25)])
    batch = DataCollatorForVisionLanguage(processor)([{**row, "labels": index} for index, row in enumerate(rows)])
    for name, value in whole.items():
        assert torch.equal(batch[name], value), name
    assert batch["labels"].tolist() == [0, 1]


def test_collator_rejects_examples_missing_a_field():
    with pytest.raises(ValueError, match=r"labels: present in example 0 but missing from examples \[1\]"):
        DataCollatorForVisionLanguage(pad_token_id=0)([{"input_ids": [1, 2], "labels": 1}, {"input_ids": [1]}])
    with pytest.raises(ValueError, match="region_features of example 0: expected 2 dimension"):
        DataCollatorForVisionLanguage(pad_token_id=0)([{"region_features": [1.0, 2.0]}])


def test_padding_only_image_text_collator_keeps_labels():
    tokenizer = minilm_tokenizer()
    examples = [
        {"input_ids": [101, 2417, 102], "region_features": np.ones((2, 4), np.float32),
         "region_boxes": np.full((2, 4), 0.5, np.float32), "labels": [0.0, 1.0, 0.3]},
        {"input_ids": [101, 102], "region_features": np.ones((3, 4), np.float32),
         "region_boxes": np.full((3, 4), 0.5, np.float32), "labels": [1.0, 0.0, 0.0]},
    ]
    batch = image_text_collator(tokenizer, ())(examples)
    assert torch.allclose(batch["labels"], torch.tensor([[0.0, 1.0, 0.3], [1.0, 0.0, 0.0]]))
    assert batch["region_attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]


class Rows(torch.utils.data.Dataset):
    def __init__(self, batch: dict, drop: tuple[str, ...] = ()):
        self.batch = {name: value for name, value in batch.items() if name not in drop}

    def __len__(self) -> int:
        return next(iter(self.batch.values())).shape[0]

    def __getitem__(self, index: int) -> dict:
        return {name: value[index] for name, value in self.batch.items()}


def test_plain_trainer_keeps_eval_loss_when_a_batch_lacks_some_targets(tmp_path):
    config = tiny_lxmert_config()
    model = LxmertForPreTraining(config)
    evaluation = Rows(image_text_batch(config, batch=4, seed=2), drop=("matched_labels", "answer_labels"))
    args = TrainingArguments(str(tmp_path), per_device_eval_batch_size=4, report_to=[], use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, eval_dataset=evaluation)
    assert trainer.label_names == [] and trainer.can_return_loss
    metrics = trainer.evaluate()
    model.eval()
    with torch.no_grad():
        expected = model(**evaluation.batch).loss
    assert metrics["eval_loss"] == pytest.approx(float(expected), rel=1e-5)
    explicit = Trainer(model=model, args=TrainingArguments(str(tmp_path), label_names=["labels", "matched_labels"],
                                                          report_to=[], use_cpu=True), eval_dataset=evaluation)
    assert "eval_loss" not in explicit.evaluate()


def test_readme_plain_trainer_example_runs(tmp_path, monkeypatch):
    text = README.read_text()
    section = text.split("### With a plain `transformers.Trainer`", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md (plain Trainer)", "exec"), namespace)
    trainer = namespace["trainer"]
    metrics = trainer.evaluate()
    assert np.isfinite(metrics["eval_loss"])
    assert trainer.state.global_step == 20
    assert os.path.isdir(tmp_path / "runs" / "vqa-plain")
