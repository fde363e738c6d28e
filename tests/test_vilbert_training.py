"""ViLBERT and ERNIE-ViL through the shared recipes: the pretrain CLI on shapes, and every objective's loss falling."""

from __future__ import annotations

import json

import pytest
import torch
from helpers.processing import minilm_tokenizer

from vlpretrain.cli import main as cli_main
from vlpretrain.data.collators import collator_for_config
from vlpretrain.registry import get_architecture
from vlpretrain.training.recipes import ModelArguments, build_config
from vlpretrain.training.sources import load_source, pretraining_examples, source_label_sizes

OBJECTIVES = {
    "vilbert": ("mlm", "region_class", "matching"),
    "ernie-vil": ("mlm", "region_class", "matching", "scene_object", "scene_attribute", "scene_relation"),
}


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_pretrain_cli_runs_on_shapes(tmp_path, name, capsys):
    assert cli_main(["pretrain", "--model", name, "--dataset", "shapes", "--model_size", "tiny", "--num_images", "6",
                     "--eval_images", "4", "--max_steps", "2", "--per_device_train_batch_size", "4",
                     "--per_device_eval_batch_size", "8", "--output_dir", str(tmp_path), "--use_cpu", "true",
                     "--save_strategy", "no"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads(printed[printed.rindex("{\n") : printed.rindex("}") + 1])
    for objective in ("mlm", "region_class", "matching"):
        assert f"eval_{objective}_loss" in metrics
    config = json.loads((tmp_path / "final" / "config.json").read_text())
    assert config["model_type"] == f"vlpretrain-{name}" and config["num_object_labels"] == 4


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_every_objective_loss_falls_on_a_fixed_shapes_batch(name):
    """Overfit one collated shapes batch (same masks every step): each objective's loss must drop below half."""
    torch.manual_seed(0)
    tokenizer = minilm_tokenizer()
    source = load_source("shapes", "train", num_images=12, seed=3)
    config = build_config(ModelArguments(model=name, model_size="tiny"), source_label_sizes(source), tokenizer, 0, 20)
    model = get_architecture(name).model_class("pretraining")(config).train()
    examples = pretraining_examples(source, tokenizer, 20)
    # Seed 2 keeps a caption that names a relationship ("to the left of") unswapped by the matching negatives.
    collator = collator_for_config(config, tokenizer, seed=2, scene_graph_probability=1.0)
    batch = collator([examples[index] for index in range(12, 24)])
    assert (batch.get("scene_relation_labels", torch.zeros(1)) != -100).any()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    history: dict[str, list[float]] = {objective: [] for objective in OBJECTIVES[name]}
    for _ in range(25):
        output = model(**batch)
        for objective in history:
            history[objective].append(float(output[f"{objective}_loss"].detach()))
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
    for objective, values in history.items():
        assert values[-1] < 0.5 * values[0], (objective, values[0], values[-1])
