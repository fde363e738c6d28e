"""Model cards: every architecture has one, shipped as package data, describing its own inputs, with a snippet
that runs with transformers alone."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from helpers.fresh_process import run_fresh_process

from vlpretrain.hub.export import export_model
from vlpretrain.registry import MODEL_REGISTRY

pytestmark = pytest.mark.usefixtures("one_thread")

REPOSITORY = Path(__file__).resolve().parent.parent
VIDEO_ONLY = {"univl", "hero", "videobert"}


def _exported_card(name: str, folder: Path) -> str:
    architecture = MODEL_REGISTRY[name]
    config = architecture.config_class(**architecture.preset("tiny"))
    architecture.model_class("pretraining")(config).save_pretrained(folder / "saved")
    export_dir = folder / "exported"
    export_model(folder / "saved", export_dir, repo_id=str(export_dir))
    return (export_dir / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(MODEL_REGISTRY))
def test_card_names_the_inputs_of_its_modality(name, tmp_path):
    card = _exported_card(name, tmp_path)
    config = MODEL_REGISTRY[name].config_class()
    assert "{{" not in card and "}}" not in card
    assert ("`frame_features`" in card) == hasattr(config, "frame_feature_size")
    assert ("`region_features`" in card) == (name not in VIDEO_ONLY)
    assert "AutoModelForPreTraining.from_pretrained" in card
    assert ("clip features" in card) == hasattr(config, "frame_feature_size")


@pytest.mark.slow
def test_card_snippets_run_with_transformers_alone(tmp_path):
    """The card's Python block, run as written (the repo id is the exported folder) in a process without
    vlpretrain, loads the model."""
    snippets = []
    for name in ("lxmert", "univl"):
        card = _exported_card(name, tmp_path / name)
        blocks = re.findall(r"```python\n(.*?)```", card, flags=re.S)
        assert len(blocks) == 1, blocks
        snippets.append(blocks[0])
    script = textwrap.dedent(
        """
        import sys
        sys.modules["vlpretrain"] = None
        for snippet in sys.argv[1:]:
            exec(snippet, {})
        """
    )
    run_fresh_process(script, tmp_path, *snippets)


@pytest.mark.slow
def test_wheel_ships_every_card(tmp_path):
    """Built from a copy of the sources (building writes build/ next to setup.py), the wheel holds every card."""
    source = tmp_path / "source"
    shutil.copytree(REPOSITORY / "vlpretrain", source / "vlpretrain", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(REPOSITORY / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(source)],
        check=True, capture_output=True, cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("vlpretrain-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in [*MODEL_REGISTRY, "template"]:
        assert f"vlpretrain/model_cards/{name}.md" in names
