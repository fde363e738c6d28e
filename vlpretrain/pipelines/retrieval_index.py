"""A persistent gallery index for two-stage cross-modal retrieval.

Scoring every (query, item) pair with a cross-encoder costs one full forward pass per pair. The index instead
caches each item's single-modality encoding once (the stream states before any cross-modal layer, plus a pooled,
L2-normalised embedding). A search then

1. encodes the queries' own modality once per query,
2. shortlists the ``shortlist_size`` items with the highest embedding dot product (first stage), and
3. re-ranks only the shortlist with the model's cross-modal layers on the cached states (second stage).

The model is duck-typed: it provides ``encode_text_for_retrieval(input_ids, attention_mask, token_type_ids)``,
``encode_visual_for_retrieval(**visual_inputs)`` (region or frame features, as its processor returns them) and
``score_encoded_pairs(text, visual)``, each encoding having ``states``, ``mask`` and ``embeddings`` (the
retrieval and pretraining models of LXMERT, ViLBERT and ERNIE-ViL, and the retrieval models of UniVL and HERO do;
the single-stream models VL-BERT, ImageBERT and VideoBERT have no modality-only part to cache and do not). The
items are either all visual (images, videos, precomputed features: text queries) or all texts (visual queries).

The index is saved as one safetensors file (tensors plus JSON metadata) and grows with :meth:`add`. It records
the raw input sizes of its items and a fingerprint of the model's weights, so items of another feature size or a
search with another model raise ``ValueError`` instead of returning a wrong ranking.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..utils.progress import progress_bar

TEXT_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
MODALITIES = ("visual", "text")
_FORMAT_VERSION = 1


@dataclass
class SearchResult:
    """Ranked items per query: ``indices`` and ``scores`` (queries, top_k), best first; ``ids`` the item ids."""

    indices: torch.Tensor
    scores: torch.Tensor
    ids: list[list[str]]

    def similarity(self, num_items: int) -> torch.Tensor:
        """A (queries, num_items) score matrix for the retrieval metrics: items not returned score -inf, so
        a positive that missed the shortlist ranks below every returned item."""
        matrix = torch.full((self.indices.shape[0], num_items), float("-inf"))
        return matrix.scatter_(1, self.indices, self.scores.float())


def split_inputs(inputs: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split a processor output into its text inputs and its visual inputs (everything else)."""
    text = {name: value for name, value in inputs.items() if name in TEXT_INPUT_NAMES}
    visual = {name: value for name, value in inputs.items() if name not in TEXT_INPUT_NAMES}
    return text, visual


def model_fingerprint(model: torch.nn.Module) -> list[float]:
    """Two numbers that change with any realistic change of the weights (sum and sum of squares, in float64)."""
    total = torch.zeros((), dtype=torch.float64)
    squares = torch.zeros((), dtype=torch.float64)
    with torch.no_grad():
        for index, (_, parameter) in enumerate(sorted(model.state_dict().items())):
            values = parameter.detach().to(torch.float64).cpu()
            total += values.sum() * (1 + index % 7)
            squares += (values * values).sum()
    return [float(total), float(squares)]


def _same_fingerprint(first: Sequence[float], second: Sequence[float]) -> bool:
    return all(abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b)) for a, b in zip(first, second))


def _batch_size(inputs: dict[str, torch.Tensor], where: str) -> int:
    if not inputs:
        raise ValueError(f"{where}: no model inputs given")
    sizes = {name: value.shape[0] for name, value in inputs.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"{where}: inputs disagree on the batch size: {sizes}")
    return next(iter(sizes.values()))


def _pad_length(tensor: torch.Tensor, length: int) -> torch.Tensor:
    """Pad dimension 1 of a (N, L, ...) tensor with zeros up to ``length``."""
    if tensor.shape[1] >= length:
        return tensor
    padding = tensor.new_zeros((tensor.shape[0], length - tensor.shape[1], *tensor.shape[2:]))
    return torch.cat([tensor, padding], dim=1)


def _trim(states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop trailing positions that no row of ``mask`` uses."""
    used = int(mask.bool().any(0).nonzero().max()) + 1
    return states[:, :used], mask[:, :used]


class RetrievalIndex:
    """Cached single-modality encodings of a gallery (see the module docstring).

    Args:
        modality: ``"visual"`` (items are images, videos or their features; queries are texts) or ``"text"``.
    """

    def __init__(self, modality: str = "visual") -> None:
        if modality not in MODALITIES:
            raise ValueError(f"modality: expected one of {MODALITIES}, got {modality!r}")
        self.modality = modality
        self.ids: list[str] = []
        self.states: torch.Tensor | None = None
        self.mask: torch.Tensor | None = None
        self.embeddings: torch.Tensor | None = None
        self.input_sizes: dict[str, int] = {}
        self.fingerprint: list[float] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def query_modality(self) -> str:
        """The modality of the queries this index answers."""
        return "text" if self.modality == "visual" else "visual"

    def _encode(self, model, modality: str, inputs: dict[str, torch.Tensor]):
        if modality == "text":
            return model.encode_text_for_retrieval(**inputs)
        return model.encode_visual_for_retrieval(**inputs)

    def _check_inputs(self, inputs: dict[str, torch.Tensor], modality: str, where: str) -> int:
        text, visual = split_inputs(inputs)
        wanted, other = (text, visual) if modality == "text" else (visual, text)
        if other:
            raise ValueError(f"{where}: expected only {modality} inputs, got also {sorted(other)}")
        if modality == "text" and "input_ids" not in wanted:
            raise ValueError(f"{where}: text inputs need input_ids")
        return _batch_size(wanted, where)

    def _check_model(self, model) -> None:
        fingerprint = model_fingerprint(model)
        if self.fingerprint is None:
            self.fingerprint = fingerprint
        elif not _same_fingerprint(self.fingerprint, fingerprint):
            raise ValueError(
                "model: its weights differ from those that built this index; rebuild the index with this model"
            )

    def _check_item_sizes(self, inputs: dict[str, torch.Tensor]) -> None:
        sizes = {name: int(value.shape[-1]) for name, value in inputs.items() if value.is_floating_point()}
        for name, size in sizes.items():
            known = self.input_sizes.get(name)
            if known is not None and known != size:
                raise ValueError(f"{name}: the index holds items of feature size {known}, got {size}")

    @torch.no_grad()
    def add(self, model, inputs: dict[str, torch.Tensor], ids: Sequence[str] | None = None, chunk_size: int = 64) -> None:
        """Encode ``inputs`` (a processor output for this index's modality) with ``model`` and append them.

        ``ids`` name the items (default: their position in the index); they must be unique.
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size: expected a positive integer, got {chunk_size}")
        count = self._check_inputs(inputs, self.modality, "inputs")
        ids = [str(len(self) + offset) for offset in range(count)] if ids is None else [str(item) for item in ids]
        if len(ids) != count:
            raise ValueError(f"ids: expected {count} ids (one per item), got {len(ids)}")
        clashes = sorted(set(ids) & set(self.ids)) or sorted({item for item in ids if ids.count(item) > 1})
        if clashes:
            raise ValueError(f"ids: must be unique in the index; repeated: {clashes[:5]}")
        self._check_item_sizes(inputs)
        self._check_model(model)
        device = next(model.parameters()).device
        states, masks, embeddings = [], [], []
        for start in progress_bar(range(0, count, chunk_size), f"indexing {count} items", unit="chunk"):
            chunk = {name: value[start : start + chunk_size].to(device) for name, value in inputs.items()}
            encoded = self._encode(model, self.modality, chunk)
            chunk_states, chunk_mask = _trim(encoded.states.float().cpu(), encoded.mask.long().cpu())
            states.append(chunk_states)
            masks.append(chunk_mask)
            embeddings.append(encoded.embeddings.float().cpu())
        length = max([mask.shape[1] for mask in masks] + ([self.mask.shape[1]] if self.mask is not None else []))
        if self.states is not None:
            states.insert(0, self.states)
            masks.insert(0, self.mask)
            embeddings.insert(0, self.embeddings)
        self.states = torch.cat([_pad_length(item, length) for item in states])
        self.mask = torch.cat([_pad_length(item, length) for item in masks])
        self.embeddings = torch.cat(embeddings)
        self.ids.extend(ids)
        self.input_sizes.update({name: int(value.shape[-1]) for name, value in inputs.items() if value.is_floating_point()})

    @torch.no_grad()
    def search(
        self,
        model,
        queries: dict[str, torch.Tensor],
        top_k: int = 10,
        shortlist_size: int | None = 64,
        chunk_size: int = 64,
    ) -> SearchResult:
        """Rank the items for each query (a processor output of the other modality), in chunks of ``chunk_size``.

        ``shortlist_size`` items per query are re-ranked by the cross-modal layers (None: every item, i.e. all
        pairs on the cached encodings); ``top_k`` (at most the index size) are returned with those scores.
        """
        if len(self) == 0:
            raise ValueError("index: the gallery is empty; add items before searching")
        for name, value in (("top_k", top_k), ("chunk_size", chunk_size), ("shortlist_size", shortlist_size or 1)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        count = self._check_inputs(queries, self.query_modality, "queries")
        self._check_model(model)
        top_k = min(top_k, len(self))
        shortlist = len(self) if shortlist_size is None else min(max(shortlist_size, top_k), len(self))
        device = next(model.parameters()).device
        gallery_embeddings = self.embeddings.to(device)
        all_indices, all_scores = [], []
        for start in progress_bar(range(0, count, chunk_size), f"searching {count} queries", unit="chunk"):
            chunk = {name: value[start : start + chunk_size].to(device) for name, value in queries.items()}
            query = self._encode(model, self.query_modality, chunk)
            candidates = (query.embeddings.float() @ gallery_embeddings.T).topk(shortlist, dim=1).indices
            scores = self._rerank(model, query, candidates, chunk_size, device)
            order = scores.topk(top_k, dim=1)
            all_indices.append(candidates.gather(1, order.indices).cpu())
            all_scores.append(order.values.cpu())
        indices = torch.cat(all_indices)
        return SearchResult(indices=indices, scores=torch.cat(all_scores), ids=[[self.ids[i] for i in row] for row in indices.tolist()])

    def _rerank(self, model, query, candidates: torch.Tensor, pair_batch: int, device: torch.device) -> torch.Tensor:
        """Cross-modal scores (queries, shortlist) of each query against its shortlisted items."""
        num_queries, shortlist = candidates.shape
        query_rows = torch.arange(num_queries, device=device).repeat_interleave(shortlist)
        item_rows = candidates.reshape(-1)
        scores = []
        for start in range(0, len(item_rows), pair_batch):
            rows, items = query_rows[start : start + pair_batch], item_rows[start : start + pair_batch].cpu()
            item_states, item_mask = _trim(self.states[items], self.mask[items])
            query_side = type(query)(states=query.states[rows], mask=query.mask[rows])
            item_side = type(query)(states=item_states.to(device), mask=item_mask.to(device))
            text, visual = (query_side, item_side) if self.modality == "visual" else (item_side, query_side)
            scores.append(model.score_encoded_pairs(text, visual).float())
        return torch.cat(scores).reshape(num_queries, shortlist)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index to one safetensors file (through a temporary file, so a reader never sees half of it)."""
        if len(self) == 0:
            raise ValueError("index: the gallery is empty; there is nothing to save")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = {
            "format_version": str(_FORMAT_VERSION),
            "modality": self.modality,
            "ids": json.dumps(self.ids),
            "input_sizes": json.dumps(self.input_sizes),
            "fingerprint": json.dumps(self.fingerprint),
        }
        temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tensors = {"states": self.states.contiguous(), "mask": self.mask.contiguous(), "embeddings": self.embeddings.contiguous()}
        save_file(tensors, str(temporary), metadata=metadata)
        os.replace(temporary, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> RetrievalIndex:
        """Read an index written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"path: no index file at {path}")
        with safe_open(str(path), framework="pt") as stream:
            metadata = stream.metadata() or {}
            if metadata.get("format_version") != str(_FORMAT_VERSION):
                raise ValueError(f"path: {path} is not a retrieval index of format {_FORMAT_VERSION}")
            index = cls(metadata["modality"])
            index.states = stream.get_tensor("states")
            index.mask = stream.get_tensor("mask")
            index.embeddings = stream.get_tensor("embeddings")
        index.ids = json.loads(metadata["ids"])
        index.input_sizes = json.loads(metadata["input_sizes"])
        index.fingerprint = json.loads(metadata["fingerprint"])
        if not (len(index.ids) == len(index.states) == len(index.mask) == len(index.embeddings)):
            raise ValueError(f"path: {path} is inconsistent (ids and tensors differ in length)")
        return index
