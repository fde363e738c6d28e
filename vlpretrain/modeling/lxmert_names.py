"""transformers' LXMERT argument and output names for the package's LXMERT models, so code written for
``transformers.LxmertModel`` runs against them.

Inputs (keyword arguments): ``visual_feats`` -> ``region_features``, ``visual_pos`` -> ``region_boxes`` (both take
normalised (x1, y1, x2, y2) boxes), ``visual_attention_mask`` -> ``region_attention_mask``, ``matched_label`` ->
``matched_labels``, ``ans`` -> ``answer_labels``, and ``obj_labels`` = ``{"obj": (labels, confidences), "attr":
(labels, confidences), "feat": (feature targets, mask)}`` -> ``region_object_*``, ``region_attribute_*``,
``region_feature_targets`` / ``masked_regions``.

Outputs: ``return_transformers_output=True`` returns transformers' own ``LxmertModelOutput`` (``language_output``,
``vision_output``, ``pooled_output``, ``language_hidden_states``, ``vision_hidden_states``, ``language_attentions``,
``vision_attentions``, ``cross_encoder_attentions``: the text-to-visual cross-attention of each cross layer),
``LxmertForPreTrainingOutput`` (``prediction_logits``, ``cross_relationship_score``, ``question_answering_score``,
...) or ``LxmertForQuestionAnsweringOutput`` (``question_answering_score``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from transformers.models.lxmert import modeling_lxmert as transformers_lxmert
from transformers.utils import ModelOutput

INPUT_ALIASES = {
    "visual_feats": "region_features",
    "visual_pos": "region_boxes",
    "visual_attention_mask": "region_attention_mask",
    "matched_label": "matched_labels",
    "ans": "answer_labels",
}
OBJECT_LABEL_KEYS = {
    "obj": ("region_object_labels", "region_object_confidences"),
    "attr": ("region_attribute_labels", "region_attribute_confidences"),
    "feat": ("region_feature_targets", "masked_regions"),
}


def _take(kwargs: dict, name: str, value) -> None:
    if kwargs.get(name) is not None:
        raise ValueError(f"{name}: given twice (once under transformers' LXMERT name); give it once")
    kwargs[name] = value


def rename_transformers_inputs(kwargs: dict) -> dict:
    """``kwargs`` with transformers' LXMERT argument names replaced by the package's (see the module docstring)."""
    kwargs = dict(kwargs)
    for alias, name in INPUT_ALIASES.items():
        if alias in kwargs:
            _take(kwargs, name, kwargs.pop(alias))
    object_labels = kwargs.pop("obj_labels", None)
    if object_labels is not None:
        unknown = sorted(set(object_labels) - set(OBJECT_LABEL_KEYS))
        if unknown:
            raise ValueError(f"obj_labels: unknown keys {unknown}; expected some of {sorted(OBJECT_LABEL_KEYS)}")
        for key, (first, second) in OBJECT_LABEL_KEYS.items():
            if key in object_labels:
                values, weights = object_labels[key]
                _take(kwargs, first, values)
                _take(kwargs, second, weights.bool() if key == "feat" else weights)
    return kwargs


def transformers_output(output: ModelOutput) -> ModelOutput:
    """The transformers LXMERT output with the values of one of the package's LXMERT outputs."""
    common = dict(
        language_hidden_states=output.get("text_hidden_states"),
        vision_hidden_states=output.get("visual_hidden_states"),
        language_attentions=output.get("text_attentions"),
        vision_attentions=output.get("visual_attentions"),
        cross_encoder_attentions=None
        if output.get("cross_attentions") is None
        else tuple(text_to_visual for text_to_visual, _ in output["cross_attentions"]),
    )
    if "text_last_hidden_state" in output:
        return transformers_lxmert.LxmertModelOutput(
            language_output=output["text_last_hidden_state"], vision_output=output["visual_last_hidden_state"],
            pooled_output=output.get("pooled_output"), **common,
        )
    if "prediction_logits" in output:
        return transformers_lxmert.LxmertForPreTrainingOutput(
            loss=output.get("loss"), prediction_logits=output["prediction_logits"],
            cross_relationship_score=output.get("matching_logits"), question_answering_score=output.get("answer_logits"),
            **common,
        )
    return transformers_lxmert.LxmertForQuestionAnsweringOutput(
        loss=output.get("loss"), question_answering_score=output["logits"], **common
    )


def accepts_transformers_lxmert_names(forward: Callable) -> Callable:
    """Let ``forward`` take transformers' LXMERT keyword names and, with ``return_transformers_output=True``, return
    transformers' output class. The signature seen by ``inspect`` (and the Trainer) stays the package's."""

    @functools.wraps(forward)
    def wrapper(self, *args, return_transformers_output: bool = False, **kwargs):
        kwargs = rename_transformers_inputs(kwargs)
        if not return_transformers_output:
            return forward(self, *args, **kwargs)
        return_dict = kwargs.pop("return_dict", None)
        output = transformers_output(forward(self, *args, return_dict=True, **kwargs))
        return output if (self.config.return_dict if return_dict is None else return_dict) else output.to_tuple()

    return wrapper
