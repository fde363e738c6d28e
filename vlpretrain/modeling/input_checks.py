"""The value checks every model of the package runs on its inputs before ``forward``.

One forward pre-hook (registered by ``VLPreTrainedModel.post_init``) serves all nine families: it reads the
arguments by name, so each family's own checks (shapes, boxes in [0, 1], masks) stay beside its model and this
module adds what is the same everywhere:

- an empty batch (size 0) is refused;
- floating inputs (features, boxes, regression and distribution targets) must be finite; features of another
  floating dtype are cast to the model's dtype, as transformers' vision models cast ``pixel_values``; integer
  features are refused;
- integer ids and labels must lie in the range their config field gives (``-100``, "ignore", is allowed for
  labels and positions);
- the text must fit the position table.

All value reads are gathered into one ``tolist`` (one device synchronisation per forward). The hook returns at
once while ``torch.compile`` or ``torch.export`` traces the model, so the traced graph holds no data-dependent
branch; the checks still run on every eager call.
"""

from __future__ import annotations

import inspect
from functools import cache

import torch
from torch import nn

from .losses import IGNORE_INDEX

# Floating-point inputs: checked finite and cast to the model's dtype.
FLOAT_INPUTS = (
    "region_features",
    "region_boxes",
    "frame_features",
    "pixel_values",
    "inputs_embeds",
    "encoder_hidden_states",
    "frame_feature_targets",
    "region_feature_targets",
    "region_class_targets",
    "region_object_confidences",
    "region_attribute_confidences",
)

# Integer ids whose exclusive upper bound is a config field (or a number), whatever the head.
ID_BOUNDS: dict[str, str | int] = {
    "input_ids": "vocab_size",
    "subtitle_input_ids": "vocab_size",
    "decoder_input_ids": "vocab_size",
    "token_type_ids": "type_vocab_size",
    "visual_word_ids": "num_visual_words",
    "matched_labels": 2,
    "answer_labels": "num_qa_labels",
    "region_object_labels": "num_object_labels",
    "region_attribute_labels": "num_attribute_labels",
    "action_labels": "num_action_labels",
    "scene_object_labels": "vocab_size",
    "scene_attribute_labels": "vocab_size",
    "scene_relation_labels": "vocab_size",
}

# What integer ``labels`` index, by the Auto class a head is registered for (heads not listed check their own).
# Retrieval heads (``AutoModelForSequenceClassification``) score two classes, 0 not matched and 1 matched (they refuse
# a config with another ``num_labels``: ``VLPreTrainedModel.post_init``).
LABEL_BOUNDS_BY_AUTO_CLASS: dict[str, str | int] = {
    "AutoModelForPreTraining": "vocab_size",
    "AutoModelForImageTextToText": "vocab_size",
    "AutoModelForVisualQuestionAnswering": "num_labels",
    "AutoModelForSequenceClassification": 2,
}


def allows_ignore_index(name: str) -> bool:
    """Targets (``*labels``, ``*_positions``) may hold -100 where a position is not scored; ids may not."""
    return name.endswith(("labels", "_positions"))


@cache
def positional_parameter_names(forward_owner: type) -> tuple[str, ...]:
    """The names of ``forward``'s positional parameters (after ``self``), to read positional calls by name."""
    parameters = list(inspect.signature(forward_owner.forward).parameters.values())[1:]
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(parameter.name for parameter in parameters if parameter.kind in kinds)


def resolve_bound(config, bound: str | int) -> int | None:
    """The number a bound names: a config field (None when the config has no such field) or the number itself."""
    if isinstance(bound, int):
        return bound
    value = getattr(config, bound, None)
    return value if isinstance(value, int) else None


def check_forward_inputs(model: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    """Forward pre-hook of every ``VLPreTrainedModel``: refuse invalid values, cast floating inputs.

    Returns the (possibly cast) arguments, or None when nothing changed or while compiling / exporting.
    """
    if torch.compiler.is_compiling():
        return None
    names = positional_parameter_names(type(model))
    arguments = dict(zip(names, args))
    arguments.update(kwargs)
    tensors = {name: value for name, value in arguments.items() if isinstance(value, torch.Tensor)}
    if not tensors:
        return None
    check_batch_not_empty(tensors)
    check_dtypes(tensors)
    check_text_length(model, tensors)
    check_values(model.config, tensors, model.input_bounds())
    dtype = model.dtype
    cast = {
        name: tensor.to(dtype)
        for name, tensor in tensors.items()
        if name in FLOAT_INPUTS and tensor.is_floating_point() and tensor.dtype != dtype
    }
    if not cast:
        return None
    positional = tuple(cast.get(name, value) for name, value in zip(names, args)) + args[len(names) :]
    return positional, {name: cast.get(name, value) for name, value in kwargs.items()}


def check_batch_not_empty(tensors: dict[str, torch.Tensor]) -> None:
    """Refuse a batch of size 0: nothing could be pooled or scored (transformers' models fail deep inside)."""
    for name, tensor in tensors.items():
        if tensor.dim() >= 1 and tensor.shape[0] == 0:
            raise ValueError(f"{name}: the batch is empty (size 0 in dimension 0); expected at least one example")


def check_dtypes(tensors: dict[str, torch.Tensor]) -> None:
    """Floating inputs must be floating point; ids must be integers."""
    for name, tensor in tensors.items():
        if name in FLOAT_INPUTS and not tensor.is_floating_point():
            raise ValueError(f"{name}: expected a floating-point tensor, got {tensor.dtype}")
        if name.endswith("_ids") and name in ID_BOUNDS and tensor.is_floating_point():
            raise ValueError(f"{name}: expected an integer tensor (torch.long), got {tensor.dtype}")


def check_text_length(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Refuse text longer than the position table (``model.text_position_limit`` names the config field)."""
    field = model.text_position_limit
    limit = None if field is None else getattr(model.config, field, None)
    if limit is None:
        return
    if "input_ids" in tensors:
        name, length = "input_ids", tensors["input_ids"].shape[-1]
    elif "inputs_embeds" in tensors and tensors["inputs_embeds"].dim() == 3:
        name, length = "inputs_embeds", tensors["inputs_embeds"].shape[1]
    else:
        return
    if length > limit:
        raise ValueError(f"{name}: {length} tokens is more than the position table holds ({field} = {limit}); truncate the text")


def check_values(config, tensors: dict[str, torch.Tensor], bounds: dict[str, str | int]) -> None:
    """Finite floating tensors and integer ids / labels inside their bounds, with one synchronisation (skipped
    while compiling or exporting)."""
    if torch.compiler.is_compiling():
        return
    problems: list[tuple[str, torch.Tensor, str]] = []
    for name, tensor in tensors.items():
        if tensor.numel() == 0:
            continue
        if tensor.is_floating_point():
            problems.append((name, ~torch.isfinite(tensor.detach()), "expected finite values, found NaN or inf"))
            continue
        bound = bounds.get(name)
        upper = None if bound is None or tensor.dtype == torch.bool else resolve_bound(config, bound)
        if upper is None:
            continue
        values = tensor.detach()
        outside = (values < 0) | (values >= upper)
        if allows_ignore_index(name):
            outside = outside & (values != IGNORE_INDEX)
        source = f" (config.{bound})" if isinstance(bound, str) else ""
        ignore = " or -100 (ignored)" if allows_ignore_index(name) else ""
        problems.append((name, outside, f"expected ids in [0, {upper}){source}{ignore}"))
    if not problems:
        return
    failed = torch.stack([flags.any() for _, flags, _ in problems]).tolist()
    for (name, flags, expectation), bad in zip(problems, failed):
        if bad:
            index = tuple(flags.nonzero()[0].tolist())
            value = tensors[name][index].item()
            raise ValueError(f"{name}: {expectation}; got {value} at index {list(index)}")
