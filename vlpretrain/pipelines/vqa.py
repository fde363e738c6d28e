"""Visual question answering pipeline for the classification VQA heads of the package (answers: ``config.id2label``).

Registered on ``import vlpretrain`` as the task ``vlpretrain-vqa`` (transformers 5.24 removed its own
``visual-question-answering`` task and refuses that name for registered pipelines); exported model folders list
this pipeline in ``config.json`` ``custom_pipelines`` under ``visual-question-answering``, which transformers
accepts for remote code, so ``pipeline(model=folder, trust_remote_code=True)`` works without the package.

Calls::

    vqa(image, question="what colour is the square?", top_k=3)          # -> [{"answer", "score"}, ...]
    vqa({"region_features": f, "region_boxes": b}, question="...")        # precomputed regions (normalised boxes)
    vqa([{"image": a, "question": q1}, {"image": b, "question": q2}])     # -> one ranked list per example
    vqa([a, b], question=[q1, q2], batch_size=16)

``score`` is the sigmoid of the answer logit (the heads are trained with binary cross-entropy on soft scores).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Pipeline

from .inputs import visual_processor_kwargs

_RAW_KEYS = ("image", "video")


def _example(item: Any, question: Any, where: str) -> tuple[Any, str]:
    """One (visual item, question) pair from a dict with a ``question`` key or from an item plus ``question``."""
    if isinstance(item, dict) and "question" in item:
        if question is not None:
            raise ValueError(f"{where}: give the question once, in the dict or as question=, not both")
        visual = {key: value for key, value in item.items() if key != "question"}
        question = item["question"]
        raw = [key for key in _RAW_KEYS if key in visual]
        if raw:
            if len(visual) != 1:
                raise ValueError(f"{where}: '{raw[0]}' cannot be combined with {sorted(set(visual) - {raw[0]})}")
            visual = visual[raw[0]]
        item = visual
    if question is None:
        raise ValueError(f"{where}: no question; pass question= or a dict with a 'question' key")
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"{where}: expected the question as a non-empty string, got {question!r}")
    return item, question


class VisualQuestionAnsweringPipeline(Pipeline):
    """Ranked answers ``{"answer", "score"}`` to questions about images or precomputed visual features."""

    _load_processor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_video_processor = False
    required_model_methods: tuple[str, ...] = ()

    def __call__(self, inputs: Any = None, question: str | list[str] | None = None, **kwargs) -> list:
        """Answer one example (returns a ranked list) or a list of examples (returns one ranked list each)."""
        batch_size = kwargs.pop("batch_size", None)
        batch_size = (self._batch_size or 8) if batch_size is None else batch_size
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
        if inputs is None:
            raise ValueError("inputs: expected an image, a feature dict, a dict with 'question', or a list of them")
        if isinstance(inputs, list):
            if isinstance(question, list):
                if len(question) != len(inputs):
                    raise ValueError(f"question: {len(question)} questions for {len(inputs)} inputs")
                examples = [_example(item, text, f"inputs[{i}]") for i, (item, text) in enumerate(zip(inputs, question))]
            else:
                examples = [_example(item, question, f"inputs[{i}]") for i, item in enumerate(inputs)]
            if not examples:
                raise ValueError("inputs: the list is empty")
        else:
            examples = [_example(inputs, question, "inputs")]
        results = []
        for start in range(0, len(examples), batch_size):
            results.extend(super().__call__(tuple(examples[start : start + batch_size]), **kwargs))
        return results if isinstance(inputs, list) else results[0]

    def _sanitize_parameters(self, top_k: int | None = None, **kwargs):
        if kwargs:
            raise ValueError(f"unexpected arguments {sorted(kwargs)}; this pipeline takes question=, top_k= and batch_size=")
        postprocess = {}
        if top_k is not None:
            if not isinstance(top_k, int) or top_k < 1:
                raise ValueError(f"top_k: expected a positive integer, got {top_k!r}")
            postprocess["top_k"] = top_k
        return {}, {}, postprocess

    def preprocess(self, examples: tuple[tuple[Any, str], ...]) -> dict[str, torch.Tensor]:
        visual = visual_processor_kwargs(self.processor, [item for item, _ in examples], "image")
        return dict(self.processor(text=[question for _, question in examples], **visual))

    def _forward(self, model_inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"logits": self.model(**model_inputs).logits}

    def postprocess(self, model_outputs: dict[str, torch.Tensor], top_k: int = 5) -> list[list[dict[str, Any]]]:
        probabilities = model_outputs["logits"].float().sigmoid()
        id2label = self.model.config.id2label
        top = probabilities.topk(min(top_k, probabilities.shape[-1]), dim=-1)
        return [
            [{"answer": id2label[int(index)], "score": float(score)} for score, index in zip(scores, indices)]
            for scores, indices in zip(top.values, top.indices)
        ]
