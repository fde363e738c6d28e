"""VLPretrainConfig: the fields, loss-weight checks and input description every architecture's config shares."""

from __future__ import annotations

import pytest
from helpers.processing import minilm_tokenizer

from vlpretrain.configuration.base import VLPretrainConfig
from vlpretrain.data.collators import collator_for_config
from vlpretrain.data.maskers import REGION_MASK_STYLES
from vlpretrain.registry import MODEL_REGISTRY

ARCHITECTURES = sorted(MODEL_REGISTRY)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_config_shares_the_base(name):
    config_class = MODEL_REGISTRY[name].config_class
    assert issubclass(config_class, VLPretrainConfig)
    assert config_class.objectives and set(config_class.modalities) <= {"regions", "frames"}
    assert config_class.region_mask_style in (None, *REGION_MASK_STYLES)
    config = config_class(**MODEL_REGISTRY[name].preset("tiny"))
    assert list(config.loss_weights) == list(config_class.objectives)
    assert "objectives" not in config.to_dict() and "modalities" not in config.to_dict()


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_loss_weights_are_checked_alike(name):
    architecture = MODEL_REGISTRY[name]
    first = architecture.config_class.objectives[0]
    with pytest.raises(ValueError, match=r"loss_weights: unknown objectives \['nonsense'\]"):
        architecture.config_class(**architecture.preset("tiny"), loss_weights={"nonsense": 1.0})
    with pytest.raises(ValueError, match=f"loss_weights: '{first}' must be a number >= 0"):
        architecture.config_class(**architecture.preset("tiny"), loss_weights={first: -1.0})
    config = architecture.config_class(**architecture.preset("tiny"), loss_weights={first: 2})
    assert config.loss_weights[first] == 2.0 and config.objective_enabled(first)
    assert not any(config.objective_enabled(other) for other in architecture.config_class.objectives[1:])


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_collator_reads_modalities_from_the_config_class(name):
    architecture = MODEL_REGISTRY[name]
    config = architecture.config_class(**architecture.preset("tiny"))
    collator = collator_for_config(config, minilm_tokenizer(), seed=0)
    assert collator.layout.regions == ("regions" in config.modalities)
    assert collator.layout.frames == ("frames" in config.modalities)


def test_a_new_architecture_needs_no_model_type_hint():
    """A config named like nothing the collator knows still gets frame collation from its declared modality."""

    class ClipOnlyConfig(VLPretrainConfig):
        model_type = "clip-only-test"
        objectives = ("mlm",)
        modalities = ("frames",)
        region_mask_style = None

    collator = collator_for_config(ClipOnlyConfig(hidden_size=64, num_attention_heads=4), minilm_tokenizer(), seed=0)
    assert collator.layout.frames and not collator.layout.regions

    class NoModalitiesConfig(VLPretrainConfig):
        model_type = "no-modalities-test"
        objectives = ("mlm",)
        modalities = ()

    with pytest.raises(ValueError, match="config.modalities"):
        collator_for_config(NoModalitiesConfig(), minilm_tokenizer(), seed=0)


def test_hero_task_ratios_are_checked_like_loss_weights():
    from vlpretrain import HeroConfig

    assert HeroConfig(task_ratios={"vsm": 1}).task_ratios == {"mlm": 0.0, "frame_feature": 0.0, "frame_order": 0.0, "vsm": 1.0}
    with pytest.raises(ValueError, match=r"task_ratios: unknown objectives \['nope'\]"):
        HeroConfig(task_ratios={"nope": 1.0})
    with pytest.raises(ValueError, match="task_ratios: 'mlm' must be a number >= 0"):
        HeroConfig(task_ratios={"mlm": -1.0})
