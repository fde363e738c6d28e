"""Load the package's own evaluate metric scripts, which works offline (evaluate's Hub scripts do not)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import evaluate

METRIC_SCRIPTS: dict[str, str] = {
    "vqa_accuracy": "vqa/vqa.py",
    "retrieval": "retrieval/retrieval.py",
    "bleu": "captioning/bleu.py",
    "cider": "captioning/cider.py",
}


def metric_script_path(name: str) -> Path:
    """Path of the metric script shipped inside the package for ``name``."""
    if name not in METRIC_SCRIPTS:
        raise ValueError(f"unknown metric {name!r}; the package ships {sorted(METRIC_SCRIPTS)}")
    return Path(__file__).resolve().parent / METRIC_SCRIPTS[name]


def load_metric(name: str, **kwargs: Any) -> evaluate.EvaluationModule:
    """``evaluate.load`` of a shipped metric script (``vqa_accuracy``, ``retrieval``, ``bleu``, ``cider``).
    evaluate still caches the module under ``$HF_HOME``."""
    return evaluate.load(str(metric_script_path(name)), **kwargs)
