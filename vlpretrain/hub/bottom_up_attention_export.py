"""Hub-ready export of a converted bottom-up-attention detector: weights, flat remote code of the model and its
image processor, and a model card naming the features it produces."""

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

_CARD = """---
{card_data}
---

# {name}

The bottom-up-attention Faster R-CNN (ResNet-101 C4, Visual Genome: {labels} object classes, {attributes}
attributes), exported by [vlpretrain](https://pypi.org/project/vlpretrain/) as `BottomUpAttentionDetector`; it
loads with `transformers` alone (`trust_remote_code=True`).

```python
from transformers import AutoImageProcessor, AutoModelForObjectDetection
detector = AutoModelForObjectDetection.from_pretrained("{name}", trust_remote_code=True)
processor = AutoImageProcessor.from_pretrained("{name}", trust_remote_code=True)
regions = detector(**processor.preprocess([rgb_image]))
```

Features produced: per region a {feature_size}-d mean-pooled res5 feature of its proposal, its box (pixels and
normalised), object and attribute ids with confidences and the {classes}-way class distribution (background first),
selected by the "{box_selection}" rules ({min_boxes}-{max_boxes} regions; settings in `config.json`). These are the
features LXMERT, ViLBERT, VL-BERT and ERNIE-ViL were trained on when the weights are the release's.
"""


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
            config = model.config
            name = repo_id or output_dir.name
            data = ModelCardData(library_name="transformers", license="apache-2.0", pipeline_tag="object-detection",
                                 tags=["vlpretrain", "bottom-up-attention", "custom_code"], model_name=name)
            card = _CARD.format(card_data=data.to_yaml(), name=name, labels=config.num_labels, attributes=config.num_attributes,
                                feature_size=config.res5_out_channels, classes=config.num_labels + 1,
                                box_selection=config.box_selection, min_boxes=config.min_boxes, max_boxes=config.max_boxes)
            ModelCard(card).save(str(staged / "README.md"))
        replace_directory(staged, output_dir)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return output_dir


def is_detector_folder(source: str | os.PathLike) -> bool:
    """Whether ``source`` holds a saved bottom-up-attention detector."""
    config_path = Path(source) / "config.json"
    return config_path.is_file() and json.loads(config_path.read_text()).get("model_type") == BottomUpAttentionConfig.model_type
