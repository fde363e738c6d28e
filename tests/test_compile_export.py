"""``torch.compile`` and ``torch.export`` on all nine families (tiny sizes).

The input checks read tensor values and so stay out of traced graphs (they are skipped while compiling or
exporting and still run eagerly); what remains must trace as one graph: the base models and the question
answering / retrieval heads compile with ``fullgraph=True`` and give the eager outputs, the base models export, and
the pretraining models break the graph at most twice (only where targets select a data-dependent number of rows).
Dynamo runs with its ``eager`` backend: the graph capture is what is under test, and code generation would only add
minutes on CPU.
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
from helpers.model_zoo import FAMILIES

from vlpretrain.registry import MODEL_REGISTRY

# Graph capture takes 5-30 s per model on a CPU: all of these are slow (still run by default).
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]

HEAD_TASKS = ("vqa", "retrieval", "video_qa")
# Graph breaks of the pretraining models (torch._dynamo.explain's count), all at rows that targets select (the
# labelled tokens, the masked frames), whose number depends on the data. The goal is at most 2 per model: every
# family selects all the rows of a step with one ``losses.select_rows`` call (run eagerly), which is its one break.
PRETRAINING_BREAK_BUDGET = {
    "vl-bert": 1, "lxmert": 1, "image-bert": 1, "actbert": 1, "vilbert": 1, "videobert": 1, "ernie-vil": 1, "univl": 1,
    "hero": 1,  # one select_rows call for the rows of all four objectives
}


def tensors(output) -> dict[str, torch.Tensor]:
    return {name: value for name, value in output.items() if isinstance(value, torch.Tensor)}


def assert_compiled_matches_eager(model: torch.nn.Module, inputs: dict) -> None:
    torch._dynamo.reset()
    expected = tensors(model(**inputs))
    compiled = tensors(torch.compile(model, fullgraph=True, backend="eager")(**inputs))
    assert compiled.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(compiled[name], value, msg=name)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_base_model_compiles_as_one_graph_and_exports(family):
    spec = FAMILIES[family]
    model = spec.model("base")
    inputs = spec.inputs(model)
    assert_compiled_matches_eager(model, inputs)
    exported = torch.export.export(model, args=(), kwargs=inputs)
    expected = tensors(model(**inputs))
    replayed = exported.module()(**inputs)
    for name, value in expected.items():
        torch.testing.assert_close(tensors(replayed)[name], value, msg=name)
    with pytest.raises(ValueError, match="expected finite values"):
        bad = dict(inputs)
        name = "region_features" if "region_features" in inputs else "frame_features"
        bad[name] = bad[name].clone()
        bad[name][0, 0, 0] = float("nan")
        model(**bad)


@pytest.mark.parametrize(
    ("family", "task"),
    [
        (family, task)
        for family in sorted(FAMILIES)
        for task in MODEL_REGISTRY[family].models
        if task in HEAD_TASKS
    ],
)
def test_question_answering_and_retrieval_heads_compile_as_one_graph(family, task):
    spec = FAMILIES[family]
    model = spec.model(task)
    assert_compiled_matches_eager(model, spec.inputs(model))


@pytest.mark.parametrize("family", sorted(PRETRAINING_BREAK_BUDGET))
def test_pretraining_models_break_the_graph_only_at_selected_rows(family):
    spec = FAMILIES[family]
    model = spec.model("pretraining")
    inputs = spec.inputs(model, labels=True)
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(**inputs)
    reasons = [reason.reason.splitlines()[0] for reason in explanation.break_reasons]
    print(f"\n{family} pretraining: {explanation.graph_break_count} graph breaks {reasons}")
    assert explanation.graph_break_count <= PRETRAINING_BREAK_BUDGET[family], reasons
    selection = ("dynamic shape operator", "data-dependent", "torch.compiler.disable()`d function")  # the last: select_rows
    assert all(any(marker in reason.lower() for marker in selection) for reason in reasons), reasons
