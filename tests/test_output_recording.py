"""Output recording on every head of all nine families, as transformers' generic model checks expect it:
``output_hidden_states`` / ``output_attentions`` fill the output's ``*hidden_states`` / ``*attentions`` fields with
the tensors the forward pass computed (gradients flow through them), leave them ``None`` when not asked, and
``return_dict=False`` returns the same values as a tuple."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers.model_zoo import FAMILIES

from vlpretrain.registry import MODEL_REGISTRY

pytestmark = pytest.mark.usefixtures("one_thread")

ALL_HEADS = [(family, task) for family in sorted(FAMILIES) for task in MODEL_REGISTRY[family].models]


def recorded_fields(output) -> dict[str, object]:
    """The output's per-layer record fields (``text_hidden_states``, ``cross_attentions``, ...), set or not."""
    names = [field.name for field in dataclasses.fields(output)]
    return {
        name: getattr(output, name)
        for name in names
        if (name.endswith("hidden_states") and not name.endswith("last_hidden_state")) or name.endswith("attentions")
    }


def flat_tensors(record) -> list[torch.Tensor]:
    if isinstance(record, torch.Tensor):
        return [record]
    return [tensor for item in record if item is not None for tensor in flat_tensors(item)]


@pytest.mark.parametrize(("family", "task"), ALL_HEADS)
def test_every_head_records_hidden_states_and_attentions_on_request(family, task):
    spec = FAMILIES[family]
    model = spec.model(task)
    inputs = spec.inputs(model)

    plain = model(**inputs)
    assert all(value is None for value in recorded_fields(plain).values()), recorded_fields(plain).keys()

    output = model(**inputs, output_hidden_states=True, output_attentions=True)
    records = {name: value for name, value in recorded_fields(output).items() if value is not None}
    hidden = [name for name in records if name.endswith("hidden_states")]
    attentions = [name for name in records if name.endswith("attentions")]
    assert hidden, f"{type(model).__name__} recorded no hidden states (fields: {list(recorded_fields(output))})"
    assert attentions, f"{type(model).__name__} recorded no attentions (fields: {list(recorded_fields(output))})"
    for name, record in records.items():
        tensors = flat_tensors(record)
        assert isinstance(record, tuple) and tensors, name
        assert all(tensor.requires_grad for tensor in tensors), f"{name} holds detached tensors"

    first_states = flat_tensors(records[hidden[0]])[0]
    first_weights = flat_tensors(records[attentions[0]])[0]
    first_states.retain_grad()
    first_weights.retain_grad()
    result = next(value for name, value in output.items() if name not in records and isinstance(value, torch.Tensor))
    result.float().sum().backward()
    assert first_states.grad is not None, f"{hidden[0]}[0] is not part of the graph"
    assert first_weights.grad is not None, f"{attentions[0]}[0] is not part of the graph"

    as_tuple = model(**inputs, output_hidden_states=True, output_attentions=True, return_dict=False)
    assert isinstance(as_tuple, tuple)
    assert len(as_tuple) == len(output.to_tuple())
