"""Feature provenance: which extractor, which weights and which settings produced a set of region or frame features.

A provenance record is a small JSON dict, the same for every featurizer, store and model:

- ``kind``: ``"regions"`` or ``"frames"``;
- ``extractor``: the model type of the extractor (``"vlpretrain-s3d"``, or ``"detector+backbone"`` model types
  for a detector over a backbone), or the Hub name when the model was never loaded;
- ``weights``: per extractor model (``backbone``, ``detector``), where its weights came from and their
  ``sha256`` (of ``model.safetensors``) when known;
- ``settings``: every featurizer setting that changes the features (frame rate, clip length, resize, crop,
  normalisation, number of regions, ...).

Featurizers expose it (``provenance()``, or :func:`provenance_from_config` over their JSON settings), processors
save it in ``processor_config.json`` (``feature_provenance``), feature stores in ``feature_store.json``, and a
model records the features it was trained or converted for in ``config.feature_provenance``;
:func:`warn_if_features_differ` compares two records and warns naming both extractors.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from .featurizer_models import WEIGHTS_NAME, file_sha256

# Settings that do not change the features (how much is processed at once).
_NEUTRAL_SETTINGS = ("batch_size",)
# Settings compared when two records name the same extractor.
_COMPARED_SETTINGS = {
    "frames": ("decode_fps", "clip_seconds", "l2_normalize", "crop_size"),
    "regions": ("num_regions",),
}


def _is_model_spec(value) -> bool:
    return isinstance(value, dict) and "source" in value


def _spec_model_type(spec: dict, model) -> str | None:
    """The model type of a loaded model, of a saved spec, or of a local folder's config; else the Hub name."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None):
        return config.model_type
    if spec.get("model_type"):
        return spec["model_type"]
    if spec.get("local_path") and (Path(spec["local_path"]) / "config.json").is_file():
        return json.loads((Path(spec["local_path"]) / "config.json").read_text()).get("model_type")
    return spec.get("name_or_path")


def _spec_weights(spec: dict) -> dict:
    """Where the weights of a spec come from, with the SHA-256 of ``model.safetensors`` when it is known."""
    record = {key: spec[key] for key in ("source", "name_or_path", "revision", "subfolder", "sha256") if spec.get(key) is not None}
    if spec.get("local_path"):
        record["name_or_path"] = spec["local_path"]
        weights = Path(spec["local_path"]) / WEIGHTS_NAME
        if weights.is_file():
            record["sha256"] = file_sha256(weights)
    return record


def provenance_from_config(kind: str, config: dict, models: dict | None = None) -> dict:
    """The provenance record of a featurizer with JSON settings ``config`` (its model specs are the dict values
    with a ``source``); ``models`` maps a spec's name to its loaded model, when there is one."""
    if kind not in _COMPARED_SETTINGS:
        raise ValueError(f"kind must be one of {sorted(_COMPARED_SETTINGS)}, got {kind!r}")
    models = models or {}
    specs = {name: value for name, value in config.items() if _is_model_spec(value)}
    order = sorted(specs, key=lambda name: (name != "detector", name))
    names = [_spec_model_type(specs[name], models.get(name)) for name in order]
    settings = {
        name: value for name, value in config.items()
        if name not in specs and value is not None and name not in _NEUTRAL_SETTINGS and name != "provenance"
    }
    return {
        "kind": kind,
        "extractor": "+".join(str(name) for name in names if name) or None,
        "weights": {name: _spec_weights(specs[name]) for name in order},
        "settings": settings,
    }


def feature_provenance(featurizer, kind: str | None = None) -> dict:
    """A featurizer's provenance: its ``provenance()`` when it has one, else derived from ``to_dict()``."""
    if hasattr(featurizer, "provenance"):
        return featurizer.provenance()
    if kind is None:
        kind = "frames" if "decode_fps" in featurizer.to_dict() else "regions"
    return provenance_from_config(kind, featurizer.to_dict())


def describe_provenance(record: dict | None) -> str:
    """A one-line name of a record, e.g. ``vlpretrain-s3d (sha256 3f2a9c01…; decode_fps=16.0, clip_seconds=1.0)``."""
    if not record:
        return "unrecorded features"
    hashes = [weights["sha256"][:8] for weights in (record.get("weights") or {}).values() if weights.get("sha256")]
    settings = record.get("settings") or {}
    compared = [f"{name}={settings[name]}" for name in _COMPARED_SETTINGS.get(record.get("kind"), ()) if name in settings]
    details = ([f"sha256 {', '.join(hashes)}"] if hashes else []) + compared
    name = f"{record.get('kind', '?')} from {record.get('extractor') or 'an unnamed extractor'}"
    return f"{name} ({'; '.join(details)})" if details else name


def provenance_differences(expected: dict | None, found: dict | None) -> list[str]:
    """What differs between two records: kind, extractor, weights hashes (when both know them), key settings.

    Empty when either record is missing: features of unknown origin cannot be checked.
    """
    if not expected or not found:
        return []
    differences = [
        f"{field} {expected.get(field)!r} vs {found.get(field)!r}"
        for field in ("kind", "extractor")
        if expected.get(field) and found.get(field) and expected.get(field) != found.get(field)
    ]
    if differences:
        return differences
    hashes = [
        {weights.get("sha256") for weights in (record.get("weights") or {}).values() if weights.get("sha256")}
        for record in (expected, found)
    ]
    if all(hashes) and hashes[0] != hashes[1]:
        differences.append("weights sha256 differ")
    left, right = expected.get("settings") or {}, found.get("settings") or {}
    for name in _COMPARED_SETTINGS.get(expected.get("kind"), ()):
        if name in left and name in right and left[name] != right[name]:
            differences.append(f"{name} {left[name]!r} vs {right[name]!r}")
    return differences


def warn_if_features_differ(expected: dict | None, found: dict | None, where: str) -> bool:
    """Warn (``UserWarning``) when features described by ``found`` are not those ``expected``; True if it warned."""
    differences = provenance_differences(expected, found)
    if differences:
        warnings.warn(
            f"{where}: the model expects {describe_provenance(expected)} but the features are "
            f"{describe_provenance(found)} ({'; '.join(differences)}); results will be out of distribution",
            UserWarning,
            stacklevel=3,
        )
    return bool(differences)



def provenance_markdown(record: dict | None) -> str:
    """A model card paragraph naming the features a model expects (``record``: a provenance dict or None)."""
    if not record:
        return (
            "Not recorded: this model was built without a record of the features it was trained on. Use the featurizer "
            "its training features came from."
        )
    lines = [f"This model expects **{record.get('kind', 'features')}** extracted with **{record.get('extractor')}**."]
    for name, weights in (record.get("weights") or {}).items():
        origin = weights.get("name_or_path") or weights.get("subfolder") or weights.get("source")
        digest = f", sha256 `{weights['sha256']}`" if weights.get("sha256") else ""
        lines.append(f"- {name} weights: `{origin}`{digest}")
    for name, value in sorted((record.get("settings") or {}).items()):
        lines.append(f"- `{name}`: {value}")
    return "\n".join(lines)
