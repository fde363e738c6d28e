"""LXMERT pretraining under the HF Trainer: per-objective logs, gradient accumulation, eval_loss, checkpoints."""

from __future__ import annotations

import math

import torch
from helpers.factories import image_text_batch, tiny_lxmert_config
from transformers import TrainingArguments

from vlpretrain import LxmertForPreTraining
from vlpretrain.training.trainer import VLPretrainingTrainer

OBJECTIVE_LOGS = ("mlm_loss", "region_feature_loss", "region_object_loss", "region_attribute_loss", "matching_loss", "qa_loss")


class TensorDictDataset(torch.utils.data.Dataset):
    """Rows of a batch dictionary, one sample per item."""

    def __init__(self, batch: dict):
        self.batch = batch
        self.size = next(iter(batch.values())).shape[0]

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        return {name: value[index] for name, value in self.batch.items()}


def uniform_batch(config, size: int, seed: int) -> dict:
    """Samples without padding and with every label present, so micro-batch means equal the full-batch mean."""
    batch = image_text_batch(config, batch=size, text_length=6, regions=4, seed=seed)
    batch["attention_mask"][:] = 1
    batch["region_attention_mask"][:] = 1
    generator = torch.Generator().manual_seed(seed)
    batch["region_features"] = torch.randn(size, 4, config.region_feature_size, generator=generator)
    batch["region_feature_targets"] = batch["region_features"].clone()
    batch["region_boxes"] = torch.tensor([0.1, 0.2, 0.6, 0.9]).repeat(size, 4, 1)
    batch["answer_labels"] = torch.randint(0, config.num_qa_labels, (size,), generator=generator)
    batch["matched_labels"] = torch.randint(0, 2, (size,), generator=generator)
    return batch


def arguments(tmp_path, **overrides) -> TrainingArguments:
    values = dict(output_dir=str(tmp_path), per_device_train_batch_size=4, per_device_eval_batch_size=4, max_steps=3,
                  learning_rate=1e-3, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, seed=0,
                  data_seed=0, disable_tqdm=True)
    values.update(overrides)
    return TrainingArguments(**values)


def test_trainer_logs_each_objective_and_eval_loss(tmp_path):
    config = tiny_lxmert_config()
    model = LxmertForPreTraining(config)
    train = TensorDictDataset(image_text_batch(config, batch=8, seed=1))
    evaluation = TensorDictDataset(image_text_batch(config, batch=4, seed=2))
    trainer = VLPretrainingTrainer(model=model, args=arguments(tmp_path), train_dataset=train, eval_dataset=evaluation)
    trainer.train()
    training_logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(training_logs) == 3
    for entry in training_logs:
        for name in OBJECTIVE_LOGS:
            assert name in entry and math.isfinite(entry[name]), (name, entry)
    metrics = trainer.evaluate()
    assert "eval_loss" in metrics and math.isfinite(metrics["eval_loss"])
    for name in OBJECTIVE_LOGS:
        assert f"eval_{name}" in metrics
    weighted = sum(config.loss_weights[name[: -len("_loss")]] * metrics[f"eval_{name}"] for name in OBJECTIVE_LOGS)
    assert abs(weighted - metrics["eval_loss"]) < 1e-2 * metrics["eval_loss"]


def test_eval_loss_is_kept_when_some_labels_are_absent(tmp_path):
    config = tiny_lxmert_config()
    batch = image_text_batch(config, batch=4, seed=3)
    del batch["answer_labels"], batch["region_attribute_labels"]
    trainer = VLPretrainingTrainer(model=LxmertForPreTraining(config), args=arguments(tmp_path),
                                   eval_dataset=TensorDictDataset(batch))
    metrics = trainer.evaluate()
    assert "eval_loss" in metrics and "eval_mlm_loss" in metrics and "eval_qa_loss" not in metrics


def train_one_step(tmp_path, batch_size: int, accumulation: int):
    config = tiny_lxmert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    model = LxmertForPreTraining(config)
    dataset = TensorDictDataset(uniform_batch(config, 4, seed=4))
    args = arguments(tmp_path, per_device_train_batch_size=batch_size, gradient_accumulation_steps=accumulation,
                     max_steps=1, max_grad_norm=0.0)
    trainer = VLPretrainingTrainer(model=model, args=args, train_dataset=dataset)
    trainer.train()
    log = next(entry for entry in trainer.state.log_history if "loss" in entry)
    return model, log


def test_gradient_accumulation_is_scaled_like_one_big_batch(tmp_path):
    single, single_log = train_one_step(tmp_path / "a", batch_size=4, accumulation=1)
    accumulated, accumulated_log = train_one_step(tmp_path / "b", batch_size=2, accumulation=2)
    assert abs(single_log["loss"] - accumulated_log["loss"]) < 1e-3 * single_log["loss"]
    assert abs(single_log["mlm_loss"] - accumulated_log["mlm_loss"]) < 1e-3 * single_log["mlm_loss"]
    for (name, first), (_, second) in zip(single.named_parameters(), accumulated.named_parameters()):
        torch.testing.assert_close(first, second, atol=2e-5, rtol=1e-4, msg=name)


def test_trainer_runs_with_activation_checkpointing(tmp_path):
    config = tiny_lxmert_config()
    model = LxmertForPreTraining(config)
    args = arguments(tmp_path, max_steps=2, activation_checkpointing=True)
    trainer = VLPretrainingTrainer(model=model, args=args, train_dataset=TensorDictDataset(image_text_batch(config, 8, seed=5)))
    trainer.train()
    assert model.lxmert.text_layers[0].gradient_checkpointing
    assert all(math.isfinite(entry["loss"]) for entry in trainer.state.log_history if "loss" in entry)


class AlternatingObjective(torch.nn.Module):
    """A stand-in model whose ``region_loss`` has no target (0) on every second batch."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(()))
        self.calls = 0

    def forward(self, value=None):
        self.calls += 1
        region = self.weight * 2.0 if self.calls % 2 else self.weight * 0.0
        return {"loss": self.weight * value.float().mean() + region, "region_loss": region}


def test_batches_without_targets_are_left_out_of_an_objectives_average(tmp_path):
    dataset = TensorDictDataset({"value": torch.ones(8, 1)})
    args = arguments(tmp_path, max_steps=4, logging_steps=2, learning_rate=0.0, per_device_train_batch_size=2)
    trainer = VLPretrainingTrainer(model=AlternatingObjective(), args=args, train_dataset=dataset)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["region_loss"] for entry in logs] == [2.0, 2.0]  # not 1.0, the mean with the empty batches

