"""Cross-modal retrieval pipeline (image-text or video-text, whichever the model's processor handles).

Registered on ``import vlpretrain`` as the task ``vlpretrain-retrieval``; exported model folders with a matching
head list it in ``config.json`` ``custom_pipelines`` under the same name.

Calls::

    retriever(texts=["a red square", ...], visuals=[image, ...], top_k=5)            # each text ranks the visuals
    retriever(texts=[...], visuals=[...], query="visual")                            # each visual ranks the texts
    retriever(texts="a red square", index=index)                                     # a saved gallery index
    index = retriever.build_index(visuals=[...], ids=[...]); index.save("gallery.safetensors")

A visual item is an image (path, PIL image or (H, W, 3) uint8 array), a video file, or a dict of precomputed
features (``{"region_features": (R, D), "region_boxes": (R, 4)}`` normalised x1, y1, x2, y2, or
``{"frame_features": (F, D)}``). The result per query is a list of ``{"index", "id", "score"}``, best first; a
single query (a string, or one visual item with ``query="visual"``) returns that list alone.

Ranking is two-stage (see ``retrieval_index.py``): ``shortlist_size`` candidates per query by the dot product of
cached unimodal embeddings, re-ranked by the cross-modal layers; ``shortlist_size=None`` re-ranks every item.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import Pipeline

from .inputs import check_processor_features, text_batch, visual_processor_kwargs
from .retrieval_index import RetrievalIndex

_QUERY_MODALITIES = ("text", "visual")
_UNSET = object()


def _visual_list(visuals: Any) -> tuple[list, bool]:
    """A list of visual items and whether a single item was given."""
    if isinstance(visuals, (list, tuple)):
        return list(visuals), False
    return [visuals], True


class CrossModalRetrievalPipeline(Pipeline):
    """Ranks a gallery of visual items for text queries, or a gallery of texts for visual queries."""

    _load_processor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_video_processor = False
    # The two-stage scoring methods the model must have (see ``retrieval_index.py``).
    required_model_methods = ("encode_text_for_retrieval", "encode_visual_for_retrieval", "score_encoded_pairs")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        check_processor_features(self.model, self.processor)
        missing = [name for name in self.required_model_methods if not hasattr(self.model, name)]
        if missing:
            raise ValueError(
                f"model: {type(self.model).__name__} has no two-stage retrieval scoring (missing {missing}); this "
                "pipeline takes the retrieval and pretraining models of LXMERT, ViLBERT, ERNIE-ViL, UniVL and HERO"
            )

    def __call__(self, inputs: dict | None = None, **kwargs) -> list:
        """Retrieve; ``inputs`` may be a dict holding ``texts``, ``visuals`` and ``index`` instead of keywords."""
        inputs = dict(inputs or {})
        for name in ("texts", "visuals", "index"):
            if name in kwargs:
                if name in inputs:
                    raise ValueError(f"{name}: given twice (in inputs and as a keyword)")
                inputs[name] = kwargs.pop(name)
        unknown = sorted(set(inputs) - {"texts", "visuals", "index"})
        if unknown:
            raise ValueError(f"inputs: unknown keys {unknown}; expected texts, visuals and/or index")
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(
        self,
        query: str | None = None,
        top_k: int | None = None,
        shortlist_size: int | None | object = _UNSET,
        chunk_size: int | None = None,
        **kwargs,
    ):
        if kwargs:
            raise ValueError(
                f"unexpected arguments {sorted(kwargs)}; this pipeline takes texts=, visuals=, index=, query=, "
                "top_k=, shortlist_size= and chunk_size="
            )
        preprocess, forward = {}, {}
        if query is not None:
            if query not in _QUERY_MODALITIES:
                raise ValueError(f"query: expected 'text' or 'visual', got {query!r}")
            preprocess["query"] = query
        if top_k is not None:
            forward["top_k"] = top_k
        if shortlist_size is not _UNSET:
            forward["shortlist_size"] = shortlist_size
        if chunk_size is not None:
            forward["chunk_size"] = chunk_size
        return preprocess, forward, {}

    def _encode_side(self, modality: str, items: Any) -> tuple[dict, bool]:
        """Processor outputs for the texts or visual items of one side, and whether one item was given."""
        if modality == "text":
            return dict(self.processor(text=text_batch(items, "texts"))), isinstance(items, str)
        visuals, single = _visual_list(items)
        return dict(self.processor(**visual_processor_kwargs(self.processor, visuals, "visuals"))), single

    def build_index(self, texts: Sequence[str] | None = None, visuals: Sequence | None = None,
                    ids: Sequence[str] | None = None, chunk_size: int = 64) -> RetrievalIndex:
        """A gallery index of ``visuals`` (for text queries) or of ``texts`` (for visual queries); save it with
        ``index.save(path)`` and grow it with :meth:`add_to_index`."""
        if (texts is None) == (visuals is None):
            raise ValueError("give exactly one of texts= and visuals= to index")
        index = RetrievalIndex("text" if texts is not None else "visual")
        return self.add_to_index(index, texts=texts, visuals=visuals, ids=ids, chunk_size=chunk_size)

    def add_to_index(self, index: RetrievalIndex, texts: Sequence[str] | None = None, visuals: Sequence | None = None,
                     ids: Sequence[str] | None = None, chunk_size: int = 64) -> RetrievalIndex:
        """Encode more items of the index's modality and append them (ids must stay unique)."""
        items = texts if index.modality == "text" else visuals
        other = visuals if index.modality == "text" else texts
        if items is None or other is not None:
            raise ValueError(f"this index holds {index.modality} items; pass {'texts' if index.modality == 'text' else 'visuals'}= only")
        inputs, _ = self._encode_side(index.modality, items)
        index.add(self.model, {name: value.to(self.device) for name, value in inputs.items()}, ids=ids, chunk_size=chunk_size)
        return index

    def preprocess(self, inputs: dict, query: str | None = None) -> dict:
        index = inputs.get("index")
        if index is not None:
            if not isinstance(index, RetrievalIndex):
                raise ValueError(f"index: expected a RetrievalIndex, got {type(index).__name__}")
            if query is not None and query != index.query_modality:
                raise ValueError(f"query: the index holds {index.modality} items, so queries are {index.query_modality}, not {query}")
            query = index.query_modality
            gallery_key = "visuals" if index.modality == "visual" else "texts"
            if inputs.get(gallery_key) is not None:
                raise ValueError(f"{gallery_key}: the index is the gallery; pass {gallery_key}= or index=, not both")
            gallery = None
        else:
            query = query or "text"
            if inputs.get("texts") is None or inputs.get("visuals") is None:
                raise ValueError("texts and visuals: both are needed without index= (one side is the gallery)")
            gallery_modality = "visual" if query == "text" else "text"
            gallery, _ = self._encode_side(gallery_modality, inputs["texts" if gallery_modality == "text" else "visuals"])
        query_items = inputs.get("texts" if query == "text" else "visuals")
        if query_items is None:
            raise ValueError(f"{'texts' if query == 'text' else 'visuals'}: the queries are missing")
        queries, single = self._encode_side(query, query_items)
        return {"queries": queries, "gallery": gallery, "index": index, "single": single, "query": query}

    def _forward(self, model_inputs: dict, top_k: int = 10, shortlist_size: int | None = 64, chunk_size: int = 64) -> dict:
        index = model_inputs["index"]
        if index is None:
            index = RetrievalIndex("visual" if model_inputs["query"] == "text" else "text")
            index.add(self.model, model_inputs["gallery"], chunk_size=chunk_size)
        result = index.search(self.model, model_inputs["queries"], top_k, shortlist_size, chunk_size)
        return {"indices": result.indices, "scores": result.scores, "ids": result.ids, "single": model_inputs["single"]}

    def postprocess(self, model_outputs: dict) -> list:
        ranked = [
            [{"index": int(index), "id": item_id, "score": float(score)} for index, item_id, score in zip(indices, ids, scores)]
            for indices, ids, scores in zip(model_outputs["indices"].tolist(), model_outputs["ids"], model_outputs["scores"].tolist())
        ]
        return ranked[0] if model_outputs["single"] else ranked
