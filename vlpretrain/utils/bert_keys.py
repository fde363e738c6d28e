"""BERT parameter names mapped onto the package's layer layout, and the joining of separate projections.

Both sides of the package need these renames: the checkpoint converters (``hub/convert/``: every original model
stores BERT-style layers) and ``VLPreTrainedModel.load_text_encoder_from_bert`` (a model initialising its text
stream from a ``BertModel``). They live here, beside neither, so the model side never imports the converters and
the flat remote code of a model (``utils/remote_code.py``) stays free of them.

Layout on both sides: google-research/bert ``modeling.py`` as ported by transformers ``models/bert/modeling_bert.py``
(``attention.self.{query,key,value}``, ``attention.output``, ``intermediate``, ``output``) becomes the package's
``attention.qkv`` (one fused projection), ``attention.output``, ``ffn.fc_in`` and ``ffn.output``
(``modeling/layers.py``).
"""

from __future__ import annotations

import re

import torch

_BERT_LAYER_RENAMES = (
    ("attention.output.LayerNorm.", "attention.output.norm."),
    ("attention.output.dense.", "attention.output.dense."),
    ("intermediate.dense.", "ffn.fc_in."),
    ("output.dense.", "ffn.output.dense."),
    ("output.LayerNorm.", "ffn.output.norm."),
)


def rename_bert_layer_key(key: str) -> str | None:
    """Map a key inside a BERT layer (``attention.self.query.weight``, ``output.dense.bias``, ...) to ours.

    Query/key/value keys become ``attention.qkv.<part>.<weight|bias>``; the caller joins the three parts
    with :func:`fuse_qkv`. Returns None for keys that are not part of a BERT layer.
    """
    for part in ("query", "key", "value"):
        if key.startswith(f"attention.self.{part}."):
            return f"attention.qkv.{part}.{key.rsplit('.', 1)[1]}"
    for old, new in _BERT_LAYER_RENAMES:
        if key.startswith(old):
            return new + key[len(old) :]
    return None


def fuse_projections(state: dict[str, torch.Tensor], group: str, parts: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Join ``<prefix>.<group>.<part>.<param>`` entries (``<prefix>_<group>`` too) into one
    ``<prefix>.<group>.<param>`` tensor, concatenating the ``parts`` in order along the output rows; the other
    entries pass unchanged. A group lacking one of its parts raises ``ValueError``."""
    pattern = re.compile(rf"(.*[._]{re.escape(group)})\.({'|'.join(parts)})\.(weight|bias)$")
    fused: dict[str, torch.Tensor] = {}
    pieces_by_name: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in state.items():
        match = pattern.match(name)
        if match:
            pieces_by_name.setdefault(f"{match.group(1)}.{match.group(3)}", {})[match.group(2)] = tensor
        else:
            fused[name] = tensor
    for name, pieces in pieces_by_name.items():
        missing = [part for part in parts if part not in pieces]
        if missing:
            raise ValueError(f"checkpoint: {name} lacks the {sorted(missing)} projection(s)")
        fused[name] = torch.cat([pieces[part] for part in parts], dim=0)
    return fused


def fuse_qkv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Join ``<prefix>.qkv.{query,key,value}.<param>`` entries into one ``<prefix>.qkv.<param>`` tensor."""
    return fuse_projections(state, "qkv", ("query", "key", "value"))


def bert_text_stream_state_dict(bert_state: dict[str, torch.Tensor], prefixes: dict[str, str]) -> dict[str, torch.Tensor]:
    """Rename a ``BertModel`` state dict to the package's text-stream names.

    ``prefixes`` gives where the embeddings and the text layers live, e.g.
    ``{"embeddings": "lxmert.embeddings.", "layers": "lxmert.text_layers."}``.
    """
    renamed: dict[str, torch.Tensor] = {}
    for name, tensor in bert_state.items():
        name = name.removeprefix("bert.")
        if name.startswith("embeddings."):
            suffix = name[len("embeddings.") :].replace("LayerNorm", "norm")
            if suffix.split(".")[0] in ("word_embeddings", "position_embeddings", "token_type_embeddings", "norm"):
                renamed[prefixes["embeddings"] + suffix] = tensor
        elif name.startswith("encoder.layer."):
            index, rest = name[len("encoder.layer.") :].split(".", 1)
            mapped = rename_bert_layer_key(rest)
            if mapped is not None:
                renamed[f"{prefixes['layers']}{index}.{mapped}"] = tensor
    return fuse_qkv(renamed)
