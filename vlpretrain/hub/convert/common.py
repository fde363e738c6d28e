"""What every checkpoint converter shares: reading a source checkpoint safely, renaming keys by table, reading
sizes off tensor shapes, and writing the converted folder atomically.

Reading never unpickles arbitrary objects: safetensors files, PyTorch files through
``torch.load(..., weights_only=True)`` (which refuses anything but tensors and plain containers) and ``.npz``
archives with ``allow_pickle=False``; anything else is refused with a ``ValueError``. Writing loads the renamed
tensors into the target model strictly (every tensor present, each with its shape) before the folder is swapped in.

This module imports no converter family; the families (one module each) import it. The BERT-layer renames and the
joining of query/key/value projections are in ``utils/bert_keys.py``, because the model side needs them too
(``VLPreTrainedModel.load_text_encoder_from_bert``) and must not import the converters.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ...utils.folders import replace_directory, staged_directory
from ..export import check_model_output_folder

# The checkpoints record no head count: BERT-family models use 64-wide attention heads.
BERT_HEAD_WIDTH = 64


def load_state_dict(path: str | os.PathLike, tensors_only: bool = False) -> dict[str, torch.Tensor]:
    """Read a checkpoint file or folder without unpickling arbitrary objects.

    Accepts ``.safetensors`` files, PyTorch ``.bin``/``.pth``/``.pt`` files (loaded with
    ``weights_only=True``) and folders holding ``model.safetensors`` or ``pytorch_model.bin``
    (sharded safetensors indexes included). A PyTorch file's weights may sit under ``state_dict`` or ``model``.
    Entries that are not tensors are an error, or with ``tensors_only=True`` dropped (checkpoints that store
    their vocabulary or step counters beside the weights).
    """
    path = Path(path)
    if path.is_dir():
        for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"):
            if (path / name).exists():
                return load_state_dict(path / name, tensors_only)
        raise FileNotFoundError(f"{path}: no model.safetensors or pytorch_model.bin in this folder")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if path.name.endswith(".safetensors.index.json"):
        index = json.loads(path.read_text())
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(index["weight_map"].values())):
            state.update(load_state_dict(path.parent / shard, tensors_only))
        return state
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"{path}: not a plain tensor checkpoint; refusing to unpickle it (only weights_only=True loading "
            f"is allowed): {error}"
        ) from error
    for wrapper in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(wrapper), dict):
            loaded = loaded[wrapper]
    if isinstance(loaded, dict) and tensors_only:
        loaded = {key: value for key, value in loaded.items() if isinstance(value, torch.Tensor)}
    if not isinstance(loaded, dict) or not all(isinstance(value, torch.Tensor) for value in loaded.values()):
        raise ValueError(f"{path}: expected a state dict mapping parameter names to tensors")
    return loaded


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive by name, read with ``allow_pickle=False`` (object arrays are refused)."""
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def rename_by_table(key: str, renames: tuple[tuple[str, str], ...]) -> str | None:
    """``key`` rewritten by the first ``(pattern, replacement)`` of ``renames`` whose pattern matches its start
    (``re.sub`` replacement syntax); None when none matches."""
    return next((re.sub(pattern, replacement, key) for pattern, replacement in renames if re.match(pattern, key)), None)


def rename_state_dict(
    state: dict[str, torch.Tensor], rename_key: Callable[[str], str | None], family: str
) -> dict[str, torch.Tensor]:
    """``state`` with each key (less a DistributedDataParallel ``module.`` prefix) mapped by ``rename_key`` to its
    new name, or to "" for a tensor the package does not build (dropped), or to None for a key with no counterpart;
    the keys without one are reported together in one ``ValueError`` naming ``family``."""
    renamed: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in state.items():
        key = key.removeprefix("module.")
        mapped = rename_key(key)
        if mapped is None:
            unknown.append(key)
        elif mapped:
            renamed[mapped] = tensor
    if unknown:
        raise ValueError(f"checkpoint: {len(unknown)} keys have no {family} counterpart, e.g. {unknown[:5]}")
    return renamed


def rename_gamma_beta(key: str) -> str:
    """Old TensorFlow-era LayerNorm names: a trailing ``.gamma`` / ``.beta`` becomes ``.weight`` / ``.bias``."""
    return re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", key))


def layer_count(state: dict[str, torch.Tensor], prefix: str) -> int:
    """How many numbered blocks ``<prefix><index>.`` the state dict holds (the highest index + 1; 0 for none)."""
    indices = {int(m.group(1)) for key in state for m in [re.match(rf"^{re.escape(prefix)}(\d+)\.", key)] if m}
    return max(indices) + 1 if indices else 0


def embedding_sizes(state: dict[str, torch.Tensor], prefix: str, head_width: int | None = BERT_HEAD_WIDTH) -> dict[str, int]:
    """Config sizes read off BERT-style text embeddings at ``<prefix>.{word,position,token_type}_embeddings``:
    vocabulary, width, positions, token types, and (unless ``head_width`` is None) the head count of
    ``head_width``-wide heads."""
    words = state[f"{prefix}.word_embeddings.weight"]
    sizes = {
        "vocab_size": words.shape[0],
        "hidden_size": words.shape[1],
        "max_position_embeddings": state[f"{prefix}.position_embeddings.weight"].shape[0],
        "type_vocab_size": state[f"{prefix}.token_type_embeddings.weight"].shape[0],
    }
    if head_width is not None:
        sizes["num_attention_heads"] = max(1, words.shape[1] // head_width)
    return sizes


def placeholder_labels(count: int, stem: str = "LABEL") -> dict[int, str]:
    """``{0: "LABEL_0", ...}``: the names of classes a checkpoint stores without their vocabulary."""
    return {index: f"{stem}_{index}" for index in range(count)}


def swap_matching_rows(state: dict[str, torch.Tensor]) -> None:
    """Flip the two rows of ``matching_head`` in place, for originals whose label 0 means "matched" (the
    package's 1 does)."""
    for name in ("matching_head.weight", "matching_head.bias"):
        if name in state:
            state[name] = state[name].flip(0).contiguous()


def write_converted(model: torch.nn.Module, state: dict[str, torch.Tensor], output_dir: str | os.PathLike) -> Path:
    """Load ``state`` into ``model`` strictly (every tensor accounted for) and save it atomically to ``output_dir``
    (which must be absent, empty or a model folder of this package)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"checkpoint does not fit {type(model).__name__}: missing {missing[:8]}, unexpected {unexpected[:8]}")
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise ValueError(f"checkpoint: {name} has shape {tuple(tensor.shape)}, expected {tuple(expected[name].shape)}")
    model.load_state_dict(state, strict=True)
    output_dir = check_model_output_folder(output_dir)
    with staged_directory(output_dir) as staged:
        model.save_pretrained(staged)
        check_model_output_folder(output_dir)
        replace_directory(staged, output_dir)
    return output_dir
