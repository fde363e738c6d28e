"""A ``transformers.Trainer`` that logs every pretraining objective's loss next to the total.

Callbacks never see model outputs, so the per-objective losses are collected in ``compute_loss`` (training)
and ``prediction_step`` (evaluation) and merged into the logged dictionaries: ``mlm_loss``,
``matching_loss``, ... while training and ``eval_mlm_loss``, ... after evaluation. Values are averaged over
the steps since the last log (and over processes) whose batch had targets for the objective. The training collator's
running counts (``scene_graph_unparsed_captions``: captions ERNIE-ViL's parser could not parse) are logged too.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from transformers import Trainer
from transformers.trainer_utils import unwrap_peft_model
from transformers.utils import logging

from ..utils.trainer_labels import signature_label_names

logger = logging.get_logger(__name__)


class VLPretrainingTrainer(Trainer):
    """Trainer for the package's multi-objective models.

    Besides logging each objective, it evaluates with ``eval_loss`` whenever *any* label of the model is in the
    batch (transformers' Trainer requires all of them, so a batch without, say, ``answer_labels`` would silently
    lose ``eval_loss``), and can evaluate with its own collator (``eval_data_collator``).
    """

    def __init__(self, *args, eval_data_collator=None, **kwargs):
        super().__init__(*args, **kwargs)
        if self.args.fsdp and not self.is_fsdp_enabled:
            logger.warning(
                "fsdp: FSDP was requested but accelerate applies it only to multi-GPU runs; this run (%s) replicates "
                "the model instead (DDP across processes, or one copy)", self.accelerator.state.distributed_type.value,
            )
        self.eval_data_collator = eval_data_collator
        self._objective_sums: dict[str, torch.Tensor] = {}
        self._objective_counts: dict[str, torch.Tensor] = {}
        self._eval_sums: dict[str, float] = defaultdict(float)
        self._eval_counts: dict[str, int] = defaultdict(int)
        self._all_label_names = list(self.label_names)
        if self.args.label_names is None:
            # Every target the model takes, not only the declared required ones (none for pretraining models).
            self._all_label_names = signature_label_names(unwrap_peft_model(self.model).__class__)

    def get_eval_dataloader(self, eval_dataset=None):
        """Evaluate with ``eval_data_collator`` when given, so evaluation never consumes the training masks' random
        stream (a resumed run then draws the same training masks as an uninterrupted one)."""
        if self.eval_data_collator is None:
            return super().get_eval_dataloader(eval_dataset)
        training_collator = self.data_collator
        self.data_collator = self.eval_data_collator
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = training_collator

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if model.training:
            for name, value in _objective_losses(outputs).items():
                self._objective_sums[name] = self._objective_sums.get(name, 0.0) + value
                self._objective_counts[name] = self._objective_counts.get(name, 0.0) + (value != 0).float()
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        self.label_names = [name for name in self._all_label_names if inputs.get(name) is not None]
        try:
            if self.label_names:
                with torch.no_grad(), self.compute_loss_context_manager():
                    outputs = model(**self._prepare_inputs(inputs))
                for name, value in _objective_losses(outputs).items():
                    if float(value) != 0.0:
                        self._eval_sums[name] += float(value)
                        self._eval_counts[name] += 1
                loss = outputs["loss"].detach().mean() if outputs.get("loss") is not None else None
                if prediction_loss_only or self.compute_metrics is None:
                    return loss, None, None
                ignore = set(ignore_keys or []) | set(getattr(self.model.config, "keys_to_ignore_at_inference", []))
                logits = tuple(
                    value.detach()
                    for key, value in outputs.items()
                    if key != "loss" and not key.endswith("_loss") and key not in ignore and isinstance(value, torch.Tensor)
                )
                labels = tuple(inputs.get(name) for name in self.label_names)
                return loss, (logits[0] if len(logits) == 1 else logits), (labels[0] if len(labels) == 1 else labels)
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        finally:
            self.label_names = list(self._all_label_names)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        self._eval_sums.clear()
        self._eval_counts.clear()
        self._metric_key_prefix = metric_key_prefix
        return super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if "loss" in logs and self._objective_sums:
            for name, total in self._objective_sums.items():
                total, count = self._reduce_sum(total), self._reduce_sum(self._objective_counts[name])
                if count > 0:
                    logs[name] = round(total / count, 4)
            self._objective_sums = {}
            self._objective_counts.clear()
            logs.update(self._collator_statistics())
        prefix = getattr(self, "_metric_key_prefix", "eval")
        if f"{prefix}_loss" in logs and self._eval_sums:
            for name, total in self._eval_sums.items():
                logs[f"{prefix}_{name}"] = round(total / self._eval_counts[name], 4)
            self._eval_sums.clear()
            self._eval_counts.clear()
        super().log(logs, *args, **kwargs)

    def _collator_statistics(self) -> dict[str, int]:
        """The training collator's running counts (e.g. unparsed scene-graph captions), summed over processes.
        Counted where the collator runs: with ``dataloader_num_workers > 0`` the counts stay in the workers, so
        nothing is logged rather than a wrong zero."""
        statistics = getattr(self.data_collator, "statistics", None)
        if not callable(statistics) or self.args.dataloader_num_workers > 0:
            return {}
        counts = statistics()
        if self.args.world_size > 1 and counts:
            names = sorted(counts)
            totals = torch.tensor([float(counts[name]) for name in names], device=self.args.device)
            totals = self.accelerator.reduce(totals, reduction="sum")
            counts = {name: int(total) for name, total in zip(names, totals.tolist())}
        return counts

    def _reduce_sum(self, value: torch.Tensor | float) -> float:
        """Sum a scalar over processes (a no-op in single-process runs)."""
        if not isinstance(value, torch.Tensor):
            return float(value)
        if self.args.world_size > 1:
            value = self.accelerator.reduce(value.to(self.args.device), reduction="sum")
        return float(value)


def _objective_losses(outputs) -> dict[str, torch.Tensor]:
    """The per-objective losses of a model output: every tensor entry named ``<objective>_loss``, detached. A loss
    of exactly 0 is an objective with no target in the batch (no masked region, say); the logs leave such batches
    out of the objective's average instead of pulling it towards 0."""
    return {
        key: value.detach().float()
        for key, value in outputs.items()
        if key.endswith("_loss") and key != "loss" and isinstance(value, torch.Tensor)
    }
