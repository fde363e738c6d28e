"""Where a featurizer's detector / backbone weights come from, and how they travel with a processor.

A model is described by a small JSON-able spec so that processors can store it in ``processor_config.json``:

- ``{"source": "hub", "name_or_path": "org/name", "revision": "main"}``: weights published on the Hub, loaded
  by name when needed and never copied;
- ``{"source": "saved", "subfolder": "region_detector", "sha256": "..."}``: weights saved with the processor
  as ``<subfolder>/model.safetensors`` plus ``config.json``; the checksum is verified on load so features
  extracted with other weights are caught;
- ``{"source": "memory"}``: a model object handed in by the user (random, trained, or from a local folder);
  it becomes a ``saved`` spec when the processor is saved.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

MODEL_SOURCES = ("hub", "saved", "memory")
WEIGHTS_NAME = "model.safetensors"


def hub_spec(name_or_path: str, revision: str | None = None) -> dict:
    """Spec of weights that load by name; a local folder is treated as in-memory (saved with the processor)."""
    if not isinstance(name_or_path, str) or not name_or_path:
        raise ValueError(f"a model name must be a non-empty string, got {name_or_path!r}")
    if Path(name_or_path).exists():
        return {"source": "memory", "local_path": str(Path(name_or_path).absolute())}
    return {"source": "hub", "name_or_path": name_or_path, "revision": revision}


def validate_spec(spec: dict | None, name: str) -> dict | None:
    """Check a spec's keys; raise ``ValueError`` naming the featurizer setting on error."""
    if spec is None:
        return None
    if not isinstance(spec, dict) or spec.get("source") not in MODEL_SOURCES:
        raise ValueError(f"{name}: expected a dict with 'source' in {MODEL_SOURCES}, got {spec!r}")
    if spec["source"] == "hub" and not spec.get("name_or_path"):
        raise ValueError(f"{name}: a 'hub' model needs 'name_or_path'")
    if spec["source"] == "saved" and not spec.get("subfolder"):
        raise ValueError(f"{name}: a 'saved' model needs 'subfolder'")
    return dict(spec)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_model(model: torch.nn.Module, folder: str | os.PathLike, subfolder: str) -> dict:
    """Save ``model`` (config.json + safetensors) under ``folder/subfolder``; return its ``saved`` spec."""
    target = Path(folder) / subfolder
    model.save_pretrained(target, safe_serialization=True)
    weights = target / WEIGHTS_NAME
    if not weights.is_file():
        raise ValueError(f"{type(model).__name__}.save_pretrained did not write {WEIGHTS_NAME} (sharded weights are not supported here)")
    return {
        "source": "saved", "subfolder": subfolder, "sha256": file_sha256(weights), "model_class": type(model).__name__,
        "model_type": getattr(model.config, "model_type", None),
    }


def resolve_saved_folder(base: str | os.PathLike | None, subfolder: str, revision: str | None = None, **hub_kwargs) -> Path:
    """Local folder holding a saved model: ``base/subfolder`` for a local processor, else the Hub cache."""
    if base is None:
        raise ValueError(
            f"the featurizer's weights were saved with a processor (subfolder {subfolder!r}) but the processor's "
            "location is unknown; load the processor with from_pretrained"
        )
    local = Path(base) / subfolder
    if Path(base).is_dir():
        if not (local / WEIGHTS_NAME).is_file():
            raise FileNotFoundError(f"featurizer weights not found: {local / WEIGHTS_NAME}")
        return local
    from transformers.utils import cached_file

    cached_file(str(base), "config.json", subfolder=subfolder, revision=revision, **hub_kwargs)
    weights = cached_file(str(base), WEIGHTS_NAME, subfolder=subfolder, revision=revision, **hub_kwargs)
    return Path(weights).parent


def _from_local_folder(auto_class: type, folder: Path) -> torch.nn.Module:
    """Load a saved model through the class the Auto mapping gives for its config.

    ``AutoBackbone.from_pretrained`` (transformers 5.24) asks the Hub whether a local folder is a repo and
    fails offline, so the concrete class is resolved here and loaded directly.
    """
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(folder))
    try:
        model_class = auto_class._model_mapping[type(config)]
    except KeyError as error:
        raise ValueError(f"{folder}: {type(config).__name__} has no {auto_class.__name__} model class") from error
    return model_class.from_pretrained(str(folder))


def load_model(
    spec: dict, auto_class_name: str, base: str | os.PathLike | None = None, hub_kwargs: dict | None = None
) -> torch.nn.Module:
    """Build the model a spec describes with the named transformers Auto class, in eval mode."""
    import transformers

    auto_class = getattr(transformers, auto_class_name)
    hub_kwargs = dict(hub_kwargs or {})
    if spec["source"] == "hub":
        model = auto_class.from_pretrained(spec["name_or_path"], revision=spec.get("revision"), **hub_kwargs)
    elif spec["source"] == "saved":
        folder = resolve_saved_folder(base, spec["subfolder"], hub_kwargs.pop("revision", None), **hub_kwargs)
        expected = spec.get("sha256")
        if expected and file_sha256(folder / WEIGHTS_NAME) != expected:
            raise ValueError(
                f"{folder / WEIGHTS_NAME}: checksum differs from the one recorded in the processor config; these "
                "are not the weights its features were extracted with"
            )
        model = _from_local_folder(auto_class, folder)
    elif spec.get("local_path"):
        model = _from_local_folder(auto_class, Path(spec["local_path"]))
    else:
        raise ValueError("an in-memory model spec has no weights to load; pass the model object to the featurizer")
    return model.eval()
