"""Converter of the MIL-NCE HowTo100M S3D release (``s3d_howto100m.pth``, antoine77340/S3D_HowTo100M).

The file is a plain state dict (read with ``weights_only=True``) whose names are the module names of ``s3dg.py``,
which :class:`S3DModel` keeps, so conversion renames nothing; it accepts the prefixes other loaders add
(``module.``; ``s3dg.`` of ArrowLuo/VideoFeatureExtractor ``model.py``), ``gamma``/``beta`` BatchNorm names, and
checkpoints with or without ``num_batches_tracked`` and with or without the text tower. Widths are read off the
tensors (the release gives the defaults of :class:`S3DConfig`), so any checkpoint in the release layout converts.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ...configuration.s3d import S3D_BLOCK_NAMES, S3DConfig
from ...modeling.s3d import S3DModel
from ...processing.featurizer_models import file_sha256
from .common import load_state_dict, rename_gamma_beta, write_converted

_MAX_LISTED = 8


def _release_key(key: str) -> str:
    return rename_gamma_beta(re.sub(r"^(module\.)?(s3dg\.)?", "", key))


def s3d_config_from_state_dict(state: dict[str, torch.Tensor], **overrides) -> S3DConfig:
    """Widths of a release-layout S3D state dict; keys that are absent leave the release's values."""

    def rows(key: str, default: int | None = None) -> int | None:
        return state[key].shape[0] if key in state else default

    values: dict = {
        "num_channels": state["conv1.conv1.weight"].shape[1] // 8 if "conv1.conv1.weight" in state else 3,
        "use_text_module": any(key.startswith("text_module.") for key in state),
    }
    for name, key in (("stem_channels", "conv1.conv1.weight"), ("conv_2c_channels", "conv_2c.conv1.weight"), ("embedding_size", "fc.weight")):
        if key in state:
            values[name] = rows(key)
    widths = []
    for block in S3D_BLOCK_NAMES:
        branch_keys = ("conv_b0", "conv_b1_a", "conv_b1_b", "conv_b2_a", "conv_b2_b", "conv_b3_b")
        found = [rows(f"{block}.{branch}.conv1.weight") for branch in branch_keys]
        if None in found:
            widths = None
            break
        widths.append(found)
    if widths:
        values["inception_widths"] = widths
    if "text_module.word_embd.weight" in state:
        values["text_vocab_size"], values["word_embedding_size"] = state["text_module.word_embd.weight"].shape
    if "text_module.fc1.weight" in state:
        values["text_hidden_size"] = state["text_module.fc1.weight"].shape[0]
    values.update(overrides)
    return S3DConfig(**values)


def check_state_dict_fits(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise ``ValueError`` listing the first missing, unexpected and wrongly shaped keys of ``state`` for ``model``."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [
        f"{key} {tuple(state[key].shape)} (expected {tuple(expected[key].shape)})"
        for key in sorted(set(state) & set(expected))
        if tuple(state[key].shape) != tuple(expected[key].shape)
    ]
    problems = [
        f"{len(found)} {what}: {', '.join(found[:_MAX_LISTED])}{' ...' if len(found) > _MAX_LISTED else ''}"
        for what, found in (("missing keys", missing), ("unexpected keys", unexpected), ("keys with another shape", wrong_shape))
        if found
    ]
    if problems:
        raise ValueError(f"{source}: not the s3d_howto100m.pth layout of {type(model).__name__}; " + "; ".join(problems))


def convert_s3d_howto100m(source: str | os.PathLike, output_dir: str | os.PathLike, **config_overrides) -> Path:
    """Convert ``s3d_howto100m.pth`` (or a checkpoint in its layout) into an :class:`S3DModel` folder.

    The source file's name and SHA-256 are recorded in the config (``converted_from``) so features extracted
    with the converted weights can be traced to the released file.
    """
    source = Path(source)
    state = {_release_key(key): tensor for key, tensor in load_state_dict(source).items()}
    config = s3d_config_from_state_dict(state, **config_overrides)
    model = S3DModel(config)
    for key, buffer in model.state_dict().items():
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(buffer)
    check_state_dict_fits(model, state, str(source))
    model.config.converted_from = {
        "format": "s3d-howto100m", "file": source.name, "sha256": file_sha256(source) if source.is_file() else None,
    }
    return write_converted(model, state, output_dir)
