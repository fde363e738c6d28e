"""Hub-ready export: weights, config, flat remote code, processor files and a model card in one folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from ..pipelines.registration import EXPORTED_PIPELINES
from ..registry import architecture_for_config, model_class_for_name
from ..utils.remote_code import auto_map_reference, replace_directory, staging_directory, write_flat_modules
from .bottom_up_attention_export import export_detector, is_detector_folder

_TEMPLATES = Path(__file__).resolve().parent.parent / "model_cards"
# Files of a source folder that an export writes anew rather than copies.
_REGENERATED_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".py")
_REGENERATED_NAMES = {"config.json", "model.safetensors.index.json", "README.md"}


def load_model_folder(source: str | os.PathLike):
    """Load the package model saved in ``source`` with the class named in its ``config.json``."""
    source = Path(source)
    config_path = source / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"{source}: no config.json; expected a folder written by save_pretrained")
    config = json.loads(config_path.read_text())
    architectures = config.get("architectures") or []
    if not architectures:
        raise ValueError(f"{config_path}: 'architectures' is empty; cannot tell which model class to load")
    architecture_for_config(config)
    return model_class_for_name(architectures[0]).from_pretrained(source)


def write_model_card(
    model,
    folder: str | os.PathLike,
    repo_id: str | None = None,
    training_summary: str = "Not recorded.",
    evaluation_summary: str = "Not recorded.",
    eval_results: list | None = None,
    datasets: list[str] | None = None,
) -> Path:
    """Render ``model_cards/template.md`` for ``model`` into ``folder/README.md``."""
    architecture = architecture_for_config(model.config)
    description_path = _TEMPLATES / f"{architecture.name}.md"
    description = description_path.read_text().strip() if description_path.exists() else ""
    auto_class = type(model).__dict__.get("hub_auto_class") or "AutoModel"
    card_data = ModelCardData(
        library_name="transformers",
        license="apache-2.0",
        tags=["vlpretrain", architecture.name, "vision-language", "custom_code"],
        pipeline_tag="visual-question-answering" if "QuestionAnswering" in type(model).__name__ else None,
        datasets=datasets,
        eval_results=eval_results,
        model_name=repo_id or Path(folder).name,
    )
    interesting = [
        key
        for key, value in model.config.to_diff_dict().items()
        if isinstance(value, (int, float, str, bool)) and key not in ("transformers_version", "dtype")
    ]
    card = ModelCard.from_template(
        card_data,
        template_path=str(_TEMPLATES / "template.md"),
        model_name=repo_id or Path(folder).name,
        architecture_title=architecture.name.upper(),
        architecture_description=description,
        model_class=type(model).__name__,
        auto_class=auto_class,
        repo_id=repo_id or str(Path(folder).name),
        region_feature_size=getattr(model.config, "region_feature_size", "D"),
        config_table=[(key, getattr(model.config, key)) for key in sorted(interesting)],
        training_summary=training_summary,
        evaluation_summary=evaluation_summary,
    )
    path = Path(folder) / "README.md"
    card.save(str(path))
    return path


def export_model(
    source: str | os.PathLike,
    output_dir: str | os.PathLike,
    repo_id: str | None = None,
    training_summary: str = "Not recorded.",
    evaluation_summary: str = "Not recorded.",
) -> Path:
    """Write a Hub-ready copy of the model folder ``source`` to ``output_dir`` (atomically replaced).

    The model is re-saved (safetensors + flat remote code), tokenizer/processor files are carried over, and a
    model card is written unless the source has one.

    Pipelines: when the folder has a processor (``processor_config.json``, or a tokenizer from which the
    architecture's processor is built), the model's pipeline is written as flat remote code and listed in
    ``config.json`` ``custom_pipelines``, so ``pipeline(model=folder, trust_remote_code=True)`` works with
    transformers alone: VQA models under ``visual-question-answering``, retrieval and pretraining models with a
    matching head under ``vlpretrain-retrieval``, captioning models under ``vlpretrain-video-captioning``.
    A bottom-up-attention detector folder is exported with its image processor and a card of its own.
    """
    source, output_dir = Path(source), Path(output_dir)
    if is_detector_folder(source):
        return export_detector(source, output_dir, repo_id)
    model = load_model_folder(source)
    staged = staging_directory(output_dir)
    try:
        for path in source.iterdir():
            if path.is_file() and path.name not in _REGENERATED_NAMES and not path.name.endswith(_REGENERATED_SUFFIXES):
                shutil.copy2(path, staged / path.name)
        pipeline_class = _pipeline_for(model) if _save_processor(source, staged, model) else None
        model.save_pretrained(staged)
        if pipeline_class is not None:
            write_flat_modules([pipeline_class.__module__], staged)
        if (source / "README.md").exists():
            shutil.copy2(source / "README.md", staged / "README.md")
        else:
            write_model_card(model, staged, repo_id, training_summary, evaluation_summary)
        replace_directory(staged, output_dir)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return output_dir


def _save_processor(source: Path, target: Path, model) -> bool:
    """Re-save the processor of ``source`` into ``target`` (so its flat remote code is written next to the
    model's), or build the architecture's processor from a tokenizer found there; False when there is neither."""
    from transformers import AutoProcessor, AutoTokenizer

    if (source / "processor_config.json").exists():
        AutoProcessor.from_pretrained(source).save_pretrained(target)
        return True
    if (source / "tokenizer_config.json").exists():
        processor_class = architecture_for_config(model.config).processor_class
        processor_class(tokenizer=AutoTokenizer.from_pretrained(source)).save_pretrained(target)
        return True
    return False


def _pipeline_for(model):
    """The pipeline class for ``model``'s task (None if it has none), listed in ``model.config.custom_pipelines``."""
    tasks = [task for task, cls in architecture_for_config(model.config).models.items() if cls is type(model)]
    if not tasks or tasks[0] not in EXPORTED_PIPELINES:
        return None
    task_name, pipeline_class = EXPORTED_PIPELINES[tasks[0]]
    if not all(hasattr(model, name) for name in pipeline_class.required_model_methods):
        return None
    model.config.custom_pipelines = {
        task_name: {"impl": auto_map_reference(pipeline_class), "pt": [type(model).hub_auto_class], "type": "multimodal"}
    }
    return pipeline_class
