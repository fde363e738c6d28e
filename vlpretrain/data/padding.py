"""Batch processor outputs mapped one example at a time, for a plain ``transformers.Trainer``.

``datasets.Dataset.map`` stores one processor output per example; its regions and frames differ in number from one
example to the next, so transformers' ``default_data_collator`` cannot stack them. :class:`DataCollatorForVisionLanguage`
pads every field to the longest example of the batch, writes the matching masks, and keeps every label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

IGNORE_INDEX = -100

# Fields whose per-example value has this many dimensions; a processor output mapped one example at a time has one
# more (a batch of one), which is dropped.
EXAMPLE_DIMENSIONS = {
    "input_ids": 1,
    "attention_mask": 1,
    "token_type_ids": 1,
    "region_features": 2,
    "region_boxes": 2,
    "region_attention_mask": 1,
    "region_class_targets": 2,
    "region_feature_targets": 2,
    "region_object_labels": 1,
    "region_object_confidences": 1,
    "region_attribute_labels": 1,
    "region_attribute_confidences": 1,
    "masked_regions": 1,
    "frame_features": 2,
    "frame_attention_mask": 1,
    "masked_frames": 1,
    "frame_feature_targets": 2,
}
# The mask written for a padded field when the examples carry none.
MASK_FOR = {"input_ids": "attention_mask", "region_features": "region_attention_mask", "frame_features": "frame_attention_mask"}


def _padding_value(name: str, pad_token_id: int, label_pad_token_id: int) -> float:
    """What fills the padded positions of ``name``: the pad token for ids, the ignore index for labels, else 0."""
    if name == "input_ids":
        return pad_token_id
    if name == "labels" or name.endswith("_labels"):
        return label_pad_token_id
    return 0


def field_tensor(value: Any, name: str, index: int) -> torch.Tensor:
    """Example ``index``'s ``name`` as a tensor (float64 as float32), without the batch-of-one dimension of a
    processor output."""
    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    if tensor.dtype == torch.float64:
        tensor = tensor.float()
    expected = EXAMPLE_DIMENSIONS.get(name)
    if expected is not None:
        if tensor.dim() == expected + 1 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tensor.dim() != expected:
            raise ValueError(
                f"{name} of example {index}: expected {expected} dimension(s) (or a batch of one), got shape {tuple(tensor.shape)}"
            )
    return tensor


class DataCollatorForVisionLanguage:
    """Pad a list of per-example processor outputs (text, regions, frames, targets) into one batch of tensors.

    Every numeric field of the examples is kept. Fields of equal shape are stacked; others are padded at the end of
    each dimension to the batch's longest: ``input_ids`` with the tokenizer's pad id, ``labels`` and ``*_labels``
    with -100 (ignored by every loss), anything else (features, boxes, masks, confidences, soft scores) with 0. When
    the examples carry no ``attention_mask`` / ``region_attention_mask`` / ``frame_attention_mask``, one is written
    (1 on real positions). A value with a leading dimension of one (a processor output of one example) counts as
    that example. Strings and other non-numeric values (ids, file names) are left out, as transformers' default
    collator does.

    Args:
        processor_or_tokenizer: a processor of the package or a tokenizer, for the pad token id.
        pad_token_id: the id padding ``input_ids`` (instead of the tokenizer's).
        label_pad_token_id: what pads label fields (-100).

    Example::

        dataset = dataset.map(lambda row: {**processor(text=row["question"], region_features=[row["features"]],
                                                       region_boxes=[row["boxes"]]), "labels": row["scores"]})
        trainer = Trainer(model, args, train_dataset=dataset, data_collator=DataCollatorForVisionLanguage(processor))
    """

    def __init__(
        self,
        processor_or_tokenizer: Any = None,
        pad_token_id: int | None = None,
        label_pad_token_id: int = IGNORE_INDEX,
    ):
        tokenizer = getattr(processor_or_tokenizer, "tokenizer", processor_or_tokenizer)
        if pad_token_id is None:
            pad_token_id = getattr(tokenizer, "pad_token_id", None)
        if pad_token_id is None:
            raise ValueError("pad_token_id: give a processor or tokenizer with a pad token, or pad_token_id")
        self.pad_token_id = int(pad_token_id)
        self.label_pad_token_id = int(label_pad_token_id)

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Pad ``examples`` (mappings of field name to array, tensor or number) into a batch."""
        if len(examples) == 0:
            raise ValueError("examples: expected at least one example, got an empty list")
        for index, example in enumerate(examples):
            if not isinstance(example, Mapping):
                raise TypeError(f"example {index}: expected a mapping of field names to values, got {type(example).__name__}")
        names = [name for name, value in examples[0].items() if _is_numeric(value)]
        columns: dict[str, list[torch.Tensor]] = {}
        for name in names:
            missing = [index for index, example in enumerate(examples) if example.get(name) is None]
            if missing:
                raise ValueError(f"{name}: present in example 0 but missing from examples {missing}; every example needs it")
            columns[name] = [field_tensor(example[name], name, index) for index, example in enumerate(examples)]
        for field, mask in MASK_FOR.items():
            if field in columns and mask not in columns:
                columns[mask] = [torch.ones(len(value), dtype=torch.long) for value in columns[field]]
        return {name: self.pad_field(name, values) for name, values in columns.items()}

    def pad_field(self, name: str, values: list[torch.Tensor]) -> torch.Tensor:
        """Stack one field's per-example tensors, padding each dimension to the longest (see the class docstring)."""
        ranks = {value.dim() for value in values}
        if len(ranks) > 1:
            raise ValueError(f"{name}: examples have different numbers of dimensions {sorted(ranks)}")
        shape = [max(sizes) for sizes in zip(*(value.shape for value in values))]
        if all(list(value.shape) == shape for value in values):
            return torch.stack(values)
        fill = _padding_value(name, self.pad_token_id, self.label_pad_token_id)
        dtype = values[0].dtype
        batch = torch.full((len(values), *shape), fill, dtype=dtype)
        for index, value in enumerate(values):
            batch[(index, *(slice(0, size) for size in value.shape))] = value.to(dtype)
        return batch


def _is_numeric(value: Any) -> bool:
    """Whether a field holds numbers (a tensor, array, number or nested list of numbers), not strings."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.dtype != object and not (isinstance(value, np.ndarray) and value.dtype.kind in "USO")
    if isinstance(value, (bool, int, float, np.number)):
        return True
    while isinstance(value, (list, tuple)) and value:
        value = value[0]
    return isinstance(value, (bool, int, float, np.number, torch.Tensor, np.ndarray))
