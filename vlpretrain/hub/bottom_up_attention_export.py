"""Hub-ready export of a converted bottom-up-attention detector: weights, flat remote code of the model and its
image processor, and a model card naming the features it produces (``model_cards/bottom-up-attention.md``)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from ..configuration.bottom_up_attention import BottomUpAttentionConfig
from ..modeling.bottom_up_attention import BottomUpAttentionDetector
from ..processing.bottom_up_attention import BottomUpAttentionImageProcessor
from ..utils.folders import replace_directory, staging_directory

# The detector's card (package data beside the architectures' cards; a whole card: it is not an architecture).
_CARD_TEMPLATE = Path(__file__).resolve().parent.parent / "model_cards" / "bottom-up-attention.md"


def export_detector(source: str | os.PathLike, output_dir: str | os.PathLike, repo_id: str | None = None) -> Path:
    """Write a Hub-ready copy of the detector folder ``source`` to ``output_dir`` (atomically replaced)."""
    source, output_dir = Path(source), Path(output_dir)
    model = BottomUpAttentionDetector.from_pretrained(source)
    staged = staging_directory(output_dir)
    try:
        model.save_pretrained(staged, remote_code=True)
        processor_file = source / "preprocessor_config.json"
        processor = BottomUpAttentionImageProcessor.from_pretrained(source) if processor_file.exists() else BottomUpAttentionImageProcessor()
        processor.save_pretrained(staged)
        if (source / "README.md").exists():
            shutil.copy2(source / "README.md", staged / "README.md")
        else:
            write_detector_card(model.config, staged, repo_id or output_dir.name)
        replace_directory(staged, output_dir)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return output_dir


def write_detector_card(config: BottomUpAttentionConfig, folder: Path, name: str) -> Path:
    """Render ``model_cards/bottom-up-attention.md`` for a detector with ``config`` into ``folder/README.md``."""
    data = ModelCardData(library_name="transformers", license="apache-2.0", pipeline_tag="object-detection",
                         tags=["vlpretrain", "bottom-up-attention", "custom_code"], model_name=name)
    card = ModelCard.from_template(
        data, template_path=str(_CARD_TEMPLATE), labels=config.num_labels, attributes=config.num_attributes,
        feature_size=config.res5_out_channels, classes=config.num_labels + 1, box_selection=config.box_selection,
        min_boxes=config.min_boxes, max_boxes=config.max_boxes,
    )
    path = folder / "README.md"
    card.save(str(path))
    return path


def is_detector_folder(source: str | os.PathLike) -> bool:
    """Whether ``source`` holds a saved bottom-up-attention detector."""
    config_path = Path(source) / "config.json"
    return config_path.is_file() and json.loads(config_path.read_text()).get("model_type") == BottomUpAttentionConfig.model_type
