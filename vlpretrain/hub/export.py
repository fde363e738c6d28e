"""Hub-ready export: weights, config, flat remote code, processor files and a model card in one folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import jinja2
from huggingface_hub import ModelCard, ModelCardData

from ..pipelines.registration import EXPORTED_PIPELINES
from ..processing.provenance import provenance_markdown
from ..registry import PACKAGE_MODEL_TYPES, architecture_for_config, model_class_for_name
from ..utils.folders import check_output_directory, replace_directory, staged_directory
from ..utils.remote_code import auto_map_reference, write_flat_modules
from .bottom_up_attention_export import export_detector, is_detector_folder

_TEMPLATES = Path(__file__).resolve().parent.parent / "model_cards"
_REGION_LIMITATION = (
    "Region-based models are only as good as the features they are given: use the same featurizer (detector, "
    "number of boxes, colour order) at inference as in training. The processor config records it."
)
_FRAME_LIMITATION = (
    "Video models are only as good as the clip features they are given: use the same frame featurizer (network, "
    "frames per second, clip length) at inference as in training. The processor config records it."
)
# Files of a source folder that an export writes anew rather than copies.
_REGENERATED_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".py")
_REGENERATED_NAMES = {"config.json", "model.safetensors.index.json", "README.md"}


def is_model_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a model of this package: a ``config.json`` whose ``model_type`` is one of its
    architectures or feature extractors (what ``export``, ``convert`` and ``save_pretrained`` write)."""
    config_path = Path(folder) / "config.json"
    try:
        model_type = json.loads(config_path.read_text())["model_type"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return model_type in PACKAGE_MODEL_TYPES


def check_model_output_folder(output_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """``output_dir`` checked for a model folder to be written (see :func:`check_output_directory`)."""
    return check_output_directory(output_dir, is_model_folder, "a vlpretrain model folder", overwrite)


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
    feature_provenance: dict | None = None,
) -> Path:
    """Render ``model_cards/template.md`` for ``model`` into ``folder/README.md``, with an "Input features" section
    naming the features in ``model.config.feature_provenance`` (recorded by converters and training), else
    ``feature_provenance`` (e.g. the processor's featurizer)."""
    architecture = architecture_for_config(model.config)
    description_path = _TEMPLATES / f"{architecture.name}.md"
    if not description_path.exists():
        raise FileNotFoundError(f"{description_path}: no model card text for architecture {architecture.name!r}")
    feature_sizes = {
        "region_feature_size": getattr(model.config, "region_feature_size", None),
        "frame_feature_size": getattr(model.config, "frame_feature_size", None),
    }
    description = jinja2.Template(description_path.read_text().strip()).render(**feature_sizes)
    is_video = feature_sizes["frame_feature_size"] is not None
    limitations = [_REGION_LIMITATION] if feature_sizes["region_feature_size"] is not None else []
    limitations += [_FRAME_LIMITATION] if is_video else []
    auto_class = type(model).__dict__.get("hub_auto_class") or "AutoModel"
    card_data = ModelCardData(
        library_name="transformers",
        license="apache-2.0",
        tags=["vlpretrain", architecture.name, "video-language" if is_video else "vision-language", "custom_code"],
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
        config_table=[(key, getattr(model.config, key)) for key in sorted(interesting)],
        training_summary=training_summary,
        evaluation_summary=evaluation_summary,
        limitations=" ".join(limitations),
    )
    path = Path(folder) / "README.md"
    card.save(str(path))
    record = getattr(model.config, "feature_provenance", None) or feature_provenance
    with open(path, "a", encoding="utf-8") as stream:
        stream.write(f"\n## Input features\n\n{provenance_markdown(record)}\n")
    return path


def export_model(
    source: str | os.PathLike,
    output_dir: str | os.PathLike,
    repo_id: str | None = None,
    training_summary: str = "Not recorded.",
    evaluation_summary: str = "Not recorded.",
    overwrite: bool = False,
) -> Path:
    """Write a Hub-ready copy of the model folder ``source`` to ``output_dir`` (atomically replaced; an existing
    ``output_dir`` must be empty or a model folder of this package unless ``overwrite=True``).

    The model is re-saved (safetensors + flat remote code), tokenizer/processor files are carried over, and a
    model card is written unless the source has one.

    Pipelines: when the folder has a processor (``processor_config.json``, or a tokenizer from which the
    architecture's processor is built), the model's pipeline is written as flat remote code and listed in
    ``config.json`` ``custom_pipelines``, so ``pipeline(model=folder, trust_remote_code=True)`` works with
    transformers alone: VQA models under ``visual-question-answering``, retrieval and pretraining models with a
    matching head under ``vlpretrain-retrieval``, captioning models under ``vlpretrain-video-captioning``.
    A bottom-up-attention detector folder is exported with its image processor and a card of its own.
    """
    source = Path(source)
    if is_detector_folder(source):
        return export_detector(source, check_output_directory(output_dir, is_detector_folder, "detector folder", overwrite), repo_id)
    output_dir = check_model_output_folder(output_dir, overwrite)
    model = load_model_folder(source)
    with staged_directory(output_dir) as staged:
        for path in source.iterdir():
            if path.is_file() and path.name not in _REGENERATED_NAMES and not path.name.endswith(_REGENERATED_SUFFIXES):
                shutil.copy2(path, staged / path.name)
        pipeline_class = _pipeline_for(model) if _save_processor(source, staged, model) else None
        model.save_pretrained(staged, remote_code=True)
        if pipeline_class is not None:
            write_flat_modules([pipeline_class.__module__], staged)
        if (source / "README.md").exists():
            shutil.copy2(source / "README.md", staged / "README.md")
        else:
            write_model_card(model, staged, repo_id, training_summary, evaluation_summary,
                             feature_provenance=_processor_feature_provenance(staged))
        check_model_output_folder(output_dir, overwrite)
        replace_directory(staged, output_dir)
    return output_dir


def _processor_feature_provenance(folder: Path) -> dict | None:
    """The provenance of the (first) featurizer recorded in ``folder/processor_config.json``, if any."""
    config_path = folder / "processor_config.json"
    if not config_path.exists():
        return None
    records = list(json.loads(config_path.read_text()).get("feature_provenance", {}).values())
    return records[0] if records else None


def _save_processor(source: Path, target: Path, model) -> bool:
    """Re-save the processor of ``source`` into ``target`` (so its flat remote code is written next to the
    model's), or build the architecture's processor from a tokenizer found there; False when there is neither."""
    from transformers import AutoProcessor, AutoTokenizer

    if (source / "processor_config.json").exists():
        AutoProcessor.from_pretrained(source).save_pretrained(target, remote_code=True)
        return True
    if (source / "tokenizer_config.json").exists():
        processor_class = architecture_for_config(model.config).processor_class
        processor_class(tokenizer=AutoTokenizer.from_pretrained(source)).save_pretrained(target, remote_code=True)
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
