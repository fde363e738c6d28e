"""Collators: pad already-featurised examples into batches whose keys are the package-wide model input and label
names, then apply the maskers of the enabled objectives (:mod:`vlpretrain.data.maskers`): caption swapping
(matching), frame shuffling, region and frame masking, scene-graph and token masking, answer targets, contrastive
positives.

:class:`MultimodalCollator` takes the objectives, the token ids (:class:`~vlpretrain.data.maskers.TokenVocabulary`),
what a batch holds (:class:`BatchLayout`) and the masking rates (:class:`~vlpretrain.data.maskers.MaskingSettings`);
``MultimodalCollator.from_config`` reads all of them from a model config and a tokenizer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..processing.subtitles import align_subtitles_to_frames, subtitle_token_layout
from .maskers import (
    IGNORE_INDEX,
    Maskers,
    MaskingSettings,
    TokenVocabulary,
    contrastive_positive_mask,
    objective_kinds,
    objective_names,
)
from .padding import DataCollatorForVisionLanguage, field_tensor


def _text_only_placeholder(example: Mapping[str, Any], template: Mapping[str, Any] | None) -> dict[str, Any]:
    """Give a text-only example without regions one whole-image placeholder region (zero feature, box [0, 0, 1, 1])
    shaped like the ``template`` example's region fields, so it pads with the rest of the batch."""
    if example.get("region_features") is not None:
        return dict(example)
    if template is None:
        raise ValueError(
            "region_features: a batch made only of text-only examples without regions needs the collator's "
            "region_feature_size (collator_for_config sets it from the model config)"
        )
    filled = dict(example)
    filled["region_boxes"] = np.array([[0.0, 0.0, 1.0, 1.0]], np.float32)
    for name, value in template.items():
        if not name.startswith("region_") or name == "region_boxes" or value is None:
            continue
        array = np.asarray(value)
        if name.endswith("_labels"):
            filled[name] = np.full((1,), IGNORE_INDEX, np.int64)
        else:
            filled[name] = np.zeros((1, *array.shape[1:]), array.dtype if array.dtype.kind == "f" else np.float32)
    return filled


def _drop_targets_of_rows(batch: dict[str, torch.Tensor], rows: torch.Tensor) -> None:
    """Leave ``rows`` (added matching negatives) out of the label objectives: their token, scene-graph and region
    labels become ignored and their label confidences zero, so masked-LM never learns to predict a caption's words
    from another image. Their inputs stay masked like every other row's (which also keeps the masked-region
    weights of feature regression), so matching cannot tell them from the positives by the absence of [MASK]
    tokens or zeroed regions."""
    for key, values in batch.items():
        if key == "matched_labels" or values.shape[:1] != rows.shape:
            continue
        if key == "labels" or key.endswith("_labels"):
            values[rows] = IGNORE_INDEX
        elif key.endswith("_confidences"):
            values[rows] = 0


def _is_matchable(example: Mapping[str, Any]) -> bool:
    """Captions take part in image-text matching; questions and text-only rows do not."""
    return not (_is_question(example) or example.get("text_only"))


def _is_question(example: Mapping[str, Any]) -> bool:
    """Whether an example's text is a question (it carries an answer) rather than a caption."""
    label = example.get("answer_label")
    return (label is not None and int(label) != IGNORE_INDEX) or example.get("answer_scores") is not None



def _pad_rows(rows: Sequence[np.ndarray], width: int, fill: float, dtype: Any) -> torch.Tensor:
    """Rows of different lengths (and equal trailing shape) padded with ``fill`` to (B, width, ...): one numpy copy
    per row, which also accepts the read-only memory-mapped views of ``ArrowRows``."""
    out = np.full((len(rows), width, *np.shape(rows[0])[1:]), fill, dtype=dtype)
    for b, row in enumerate(rows):
        out[b, : len(row)] = row
    return torch.from_numpy(out)


def _length_mask(lengths: Sequence[int], width: int) -> torch.Tensor:
    """(B, width) 0/1 long mask with ones on the first ``lengths[b]`` positions of row b."""
    return (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()


def _as_array(value: Any, field: str, index: int, ndim: int, dtype: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{field} of example {index} must be a numeric array, got {type(value).__name__}") from error
    if array.ndim != ndim:
        raise ValueError(f"{field} of example {index} must have {ndim} dimension(s), got shape {array.shape}")
    return array



def _pad_items(
    examples: Sequence[Mapping[str, Any]], field: str, fixed: int | None, count_field: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example (items, dim) arrays padded to (B, fixed or the longest, dim) float32, with their 0/1 mask."""
    arrays = [_as_array(example[field], field, i, 2, np.float32) for i, example in enumerate(examples)]
    sizes = {array.shape[1] for array in arrays}
    if len(sizes) > 1:
        raise ValueError(
            f"{field}: examples have different feature sizes {[a.shape[1] for a in arrays]}; expected one size"
        )
    longest = max(len(array) for array in arrays)
    if fixed is not None and longest > fixed:
        raise ValueError(f"{field}: an example has {longest} items but {count_field}={fixed}")
    count = fixed if fixed is not None else longest
    return _pad_rows(arrays, count, 0.0, np.float32), _length_mask([len(array) for array in arrays], count)


def _pad_per_region(
    examples: Sequence[Mapping[str, Any]], field: str, lengths: torch.Tensor, width: int, fill: float, dtype: Any
) -> torch.Tensor:
    """One value per region of every example, checked against its region count, padded with ``fill``."""
    rows = []
    for b, example in enumerate(examples):
        rows.append(_as_array(example[field], field, b, 1, dtype))
        if len(rows[-1]) != int(lengths[b]):
            raise ValueError(
                f"{field} of example {b} has {len(rows[-1])} values, expected {int(lengths[b])} (one per region)"
            )
    return _pad_rows(rows, width, fill, dtype)


def _subtitle_rows(
    examples: Sequence[Mapping[str, Any]], donors: Sequence[int]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each donor's subtitles concatenated: token ids and the subtitle of each token."""
    rows, owners = [], []
    for d in donors:
        subtitles = [
            list(_as_array(ids, "subtitle_input_ids", d, 1, np.int64)) for ids in examples[d]["subtitle_input_ids"]
        ]
        if not subtitles:
            raise ValueError(f"subtitle_input_ids of example {d} is empty; expected at least one tokenized subtitle")
        row, owner = subtitle_token_layout(subtitles)
        rows.append(np.asarray(row, np.int64))
        owners.append(np.asarray(owner, np.int64))
    return rows, owners


@dataclasses.dataclass(frozen=True)
class BatchLayout:
    """What a batch holds besides its text.

    regions / frames: whether examples carry region features, frame features, or both (ActBERT).
    num_regions / num_frames: pad every batch to this many regions / frames (e.g. 36); the batch maximum when None.
        An example with more raises a ``ValueError``.
    subtitles / frame_interval: the text is the example's timed subtitles instead of its caption (HERO):
        ``subtitle_input_ids`` (one token list per subtitle), ``subtitle_starts`` / ``subtitle_ends`` (seconds),
        concatenated with ``text_subtitle_index`` (each token's subtitle, -1 on padding) and aligned to the frames
        (``frame_subtitle_index``, -1 = unmatched) by :func:`align_subtitles_to_frames` with ``frame_interval``
        seconds per frame; frame indices refer to the original (unshuffled) frame order.
    region_feature_size / region_class_size: feature and class-distribution sizes of the placeholder region of
        text-only examples that carry no regions (taken from the batch when None).
    """

    regions: bool = True
    frames: bool = False
    num_regions: int | None = None
    num_frames: int | None = None
    subtitles: bool = False
    frame_interval: float | None = None
    region_feature_size: int | None = None
    region_class_size: int | None = None

    def __post_init__(self):
        if not self.regions and not self.frames:
            raise ValueError("regions and frames are both False; a multimodal collator needs at least one of them")
        for field, count in (("num_regions", self.num_regions), ("num_frames", self.num_frames)):
            if count is not None and count < 1:
                raise ValueError(f"{field} must be a positive count or None, got {count}")
        if self.subtitles and not (self.frames and self.frame_interval is not None and self.frame_interval > 0):
            raise ValueError(
                f"subtitles=True aligns subtitles to frames: it needs frames=True and frame_interval > 0 (seconds per "
                f"frame), got frames={self.frames}, frame_interval={self.frame_interval}"
            )

    @classmethod
    def from_config(cls, config: Any) -> BatchLayout:
        """The layout a model config declares: its class's ``modalities``, and ``num_regions`` / ``num_frames`` /
        ``region_feature_size`` / ``num_object_labels`` where it defines them; ``text_from_subtitles`` (HERO) turns
        on subtitles with the config's ``frame_interval``."""
        modalities = getattr(config, "modalities", None)
        if not modalities or not set(modalities) <= {"regions", "frames"}:
            raise ValueError(
                f"config.modalities must name the visual inputs ('regions', 'frames' or both), got {modalities!r}; "
                "configs of the package inherit it from VLPretrainConfig"
            )
        values: dict[str, Any] = {"regions": "regions" in modalities, "frames": "frames" in modalities}
        sizes = {"num_regions": "num_regions", "num_frames": "num_frames",
                 "region_feature_size": "region_feature_size", "region_class_size": "num_object_labels"}
        for field, attribute in sizes.items():
            if getattr(config, attribute, None) is not None:
                values[field] = int(getattr(config, attribute))
        if getattr(config, "text_from_subtitles", False):
            values.update(subtitles=True, frame_interval=float(config.frame_interval))
        return cls(**values)


def _with_settings(
    layout: BatchLayout, masking: MaskingSettings, settings: Mapping[str, Any]
) -> tuple[BatchLayout, MaskingSettings]:
    """``layout`` and ``masking`` with the fields named in ``settings`` replaced (``num_regions=36``, say)."""
    layout_fields = {field.name for field in dataclasses.fields(BatchLayout)}
    masking_fields = {field.name for field in dataclasses.fields(MaskingSettings)}
    unknown = sorted(set(settings) - layout_fields - masking_fields)
    if unknown:
        raise TypeError(
            f"unknown collator settings {unknown}; expected fields of BatchLayout {sorted(layout_fields)} or "
            f"MaskingSettings {sorted(masking_fields)}"
        )
    return (
        dataclasses.replace(layout, **{name: value for name, value in settings.items() if name in layout_fields}),
        dataclasses.replace(masking, **{name: value for name, value in settings.items() if name in masking_fields}),
    )


class MultimodalCollator:
    """Pad already-featurised examples into a batch and apply the maskers of the enabled objectives.

    Inputs per example: ``input_ids`` (with [CLS]/[SEP]), optional ``token_type_ids``; for images
    ``region_features`` (R, D), ``region_boxes`` (R, 4) and the targets the objectives need; for videos
    ``frame_features`` (F, D). ``image_id`` / ``video_id`` identify the visual side for matching and
    contrastive batches; matching with ``negative_probability`` > 0 or ``paired_negatives`` requires them (with
    several captions per image, positions alone would let a caption of the same image be drawn as a negative);
    contrastive batches use the example's position when absent. With ``paired_negatives`` k the batch has k more
    rows per caption after the examples' rows: matching negatives of that caption, left out of every label
    objective (their masked-LM, region and answer labels are ignored).

    Args:
        objectives: names from ``maskers.OBJECTIVE_MASKERS``, or a ``loss_weights`` mapping (weight 0 = off).
        vocabulary: the token ids (``TokenVocabulary.from_tokenizer``).
        layout: what a batch holds (:class:`BatchLayout`; default: regions, padded to the batch maximum).
        masking: the maskers' rates and variants (:class:`~vlpretrain.data.maskers.MaskingSettings`).
        text_corpus: token id lists of text segments (e.g. ``training.sources.text_corpus_examples``) for
            ``text_mlm``: each batch gets one text-only segment per image-text example.
        seed: seeds every masker (each masker gets its own stream derived from its name).

    Batch keys: always ``input_ids``, ``attention_mask``, ``token_type_ids``; with regions ``region_features``
    (B, R, D float32), ``region_boxes`` (B, R, 4), ``region_attention_mask`` (B, R, 0/1); with frames
    ``frame_features``, ``frame_attention_mask``. Per objective: ``mlm`` / ``span`` -> ``labels``; any region
    objective -> ``masked_regions``; ``region_feature`` -> ``region_feature_targets``; ``region_class`` ->
    ``region_class_targets``; ``region_object`` / ``region_attribute`` -> ``region_{object,attribute}_labels``
    (-100 on padding) and ``region_{object,attribute}_confidences`` (1.0 per labelled region when the examples
    give none); ``matching`` -> ``matched_labels`` (-100 on questions: examples with an answer); ``qa`` ->
    ``answer_labels`` (-100 on mismatched pairs); ``frame_feature`` -> ``masked_frames``, ``frame_feature_targets``;
    ``frame_order`` -> ``frame_order_labels``; ``action`` -> ``action_labels``; ``contrastive`` ->
    ``contrastive_positive_mask`` (B, B); ``text_mlm`` -> ``text_only`` (B,); with subtitles ``text_subtitle_index``
    and ``frame_subtitle_index``; ``scene_object`` / ``scene_attribute`` / ``scene_relation`` ->
    ``scene_{object,attribute,relation}_labels``.
    """

    def __init__(
        self,
        objectives: Iterable[str] | Mapping[str, float],
        vocabulary: TokenVocabulary,
        layout: BatchLayout | None = None,
        masking: MaskingSettings | None = None,
        *,
        text_corpus: Sequence[Sequence[int]] | None = None,
        seed: int = 0,
    ):
        layout = BatchLayout() if layout is None else layout
        masking = MaskingSettings() if masking is None else masking
        for name, value, kind in (
            ("vocabulary", vocabulary, TokenVocabulary),
            ("layout", layout, BatchLayout),
            ("masking", masking, MaskingSettings),
        ):
            if not isinstance(value, kind):
                raise TypeError(
                    f"{name} must be a {kind.__name__}, got {type(value).__name__}; MultimodalCollator.from_tokenizer "
                    "and from_config build the settings from a tokenizer and keyword settings"
                )
        self.objectives = objective_names(objectives)
        self.kinds = objective_kinds(self.objectives)
        if "regions" in self.kinds and not layout.regions:
            raise ValueError(f"objectives {sorted(self.objectives)} need region features but regions=False")
        if self.kinds & {"frames", "frame_order"} and not layout.frames:
            raise ValueError(f"objectives {sorted(self.objectives)} need frame features but frames=False")
        if layout.subtitles and masking.negative_image_probability > 0:
            raise ValueError(
                "negative_image_probability must be 0 with subtitles=True (subtitles are timed to their video)"
            )
        self.vocabulary = vocabulary
        self.layout = layout
        self.masking = masking
        self.seed = int(seed)
        self.maskers = Maskers.build(self.kinds, vocabulary, masking, seed=self.seed, text_corpus=text_corpus)

    @classmethod
    def from_tokenizer(
        cls,
        tokenizer: Any,
        objectives: Iterable[str] | Mapping[str, float],
        *,
        text_corpus: Sequence[Sequence[int]] | None = None,
        seed: int = 0,
        **settings: Any,
    ) -> MultimodalCollator:
        """A collator whose token ids come from a BERT tokenizer; ``settings`` set fields of :class:`BatchLayout`
        and :class:`~vlpretrain.data.maskers.MaskingSettings` by name (``frames=True, num_frames=48``)."""
        layout, masking = _with_settings(BatchLayout(), MaskingSettings(), settings)
        vocabulary = TokenVocabulary.from_tokenizer(tokenizer)
        return cls(objectives, vocabulary, layout, masking, text_corpus=text_corpus, seed=seed)

    @classmethod
    def from_config(
        cls,
        config: Any,
        tokenizer: Any,
        *,
        text_corpus: Sequence[Sequence[int]] | None = None,
        seed: int = 0,
        **settings: Any,
    ) -> MultimodalCollator:
        """The collator of an architecture: objectives from ``config.loss_weights`` (weight 0 = off), the layout
        (``BatchLayout.from_config``) and masking choices (``MaskingSettings.from_config``) from the config class
        and its fields, never from ``model_type``; ``settings`` override fields by name."""
        weights = getattr(config, "loss_weights", None)
        if not isinstance(weights, Mapping):
            raise ValueError(f"config.loss_weights must be a mapping of objective name to weight, got {weights!r}")
        layout, masking = _with_settings(BatchLayout.from_config(config), MaskingSettings.from_config(config), settings)
        vocabulary = TokenVocabulary.from_tokenizer(tokenizer)
        return cls(weights, vocabulary, layout, masking, text_corpus=text_corpus, seed=seed)

    def reseed(self, seed: int) -> None:
        """Restart every masker's random stream from ``seed``."""
        self.seed = int(seed)
        for masker in self.maskers.active():
            masker.reseed(seed)

    def state_dict(self) -> dict[str, Any]:
        """Every masker's random state (main process), keyed by masker name, for exact resumption."""
        return {masker.name: masker.state_dict() for masker in self.maskers.active()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the maskers' random states saved by :meth:`state_dict`."""
        maskers = {masker.name: masker for masker in self.maskers.active()}
        unknown = sorted(set(state) - set(maskers))
        if unknown:
            raise ValueError(f"collator state names maskers {unknown} that this collator does not have")
        for name, masker_state in state.items():
            maskers[name].load_state_dict(masker_state)

    def statistics(self) -> dict[str, int]:
        """Running counts (since construction, this process) worth logging next to the losses: how many captions
        the scene-graph parser parsed and could not parse (those trained with MLM only)."""
        if self.maskers.scene_graph is None:
            return {}
        return {f"scene_graph_{outcome}_captions": count for outcome, count in self.maskers.scene_graph.counts.items()}

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Collate a list of examples into a padded, masked batch."""
        text_only = None
        if self.maskers.text_only is not None and len(examples) and all(isinstance(e, Mapping) for e in examples):
            examples, text_only = self._with_text_only_rows(examples)
        self._validate(examples)
        batch: dict[str, torch.Tensor] = {}
        examples, paired = self._with_paired_negative_rows(examples)
        donors, visual, sources = self._pair_captions_with_images(examples, batch, paired)
        batch.update(self._pad_tokens(examples, donors))
        if self.layout.regions:
            self._regions(visual, batch)
        if self.layout.frames:
            self._frames(visual, batch)
        if self.layout.subtitles:
            batch["frame_subtitle_index"] = self._frame_subtitle_index(examples, donors, batch["frame_features"].shape[1])
        self._mask_text(batch)
        if text_only is not None:
            batch["text_only"] = text_only
        self._add_example_targets(examples, visual, sources, batch)
        if paired is not None:
            _drop_targets_of_rows(batch, paired)
        return batch

    def _add_example_targets(
        self,
        examples: Sequence[Mapping[str, Any]],
        visual: Sequence[Mapping[str, Any]],
        sources: Sequence[Any],
        batch: dict[str, torch.Tensor],
    ) -> None:
        """Targets read from the examples as they are: answers (none on mismatched pairs), the actions of the rows'
        videos, contrastive positives, and the examples' own ``labels`` when no objective writes ``labels``."""
        if self.maskers.answers is not None:
            answers = torch.tensor([self.maskers.answers.label(example, i) for i, example in enumerate(examples)])
            if "matched_labels" in batch:
                answers[batch["matched_labels"] == 0] = IGNORE_INDEX
            batch["answer_labels"] = answers.long()
        if "actions" in self.kinds:
            batch["action_labels"] = torch.tensor(
                [IGNORE_INDEX if ex.get("action_label") is None else int(ex["action_label"]) for ex in visual],
                dtype=torch.long,
            )
        if "contrastive" in self.kinds:
            batch["contrastive_positive_mask"] = contrastive_positive_mask(sources)
        if "labels" not in batch and all(example.get("labels") is not None for example in examples):
            batch["labels"] = DataCollatorForVisionLanguage(pad_token_id=self.vocabulary.pad_token_id).pad_field(
                "labels", [field_tensor(example["labels"], "labels", index) for index, example in enumerate(examples)]
            )

    def _with_text_only_rows(
        self, examples: Sequence[Mapping[str, Any]]
    ) -> tuple[list[Mapping[str, Any]], torch.Tensor]:
        """The examples plus one corpus segment per image-text example, text-only rows given a placeholder region,
        and the text-only flag of every row."""
        sampler = self.maskers.text_only
        image_text = sum(not example.get("text_only") for example in examples)
        examples = [*examples, *sampler.corpus_rows(image_text)]
        template = next((example for example in examples if example.get("region_features") is not None), None)
        if template is None and self.layout.region_feature_size is not None:
            template = {"region_features": np.zeros((1, self.layout.region_feature_size), np.float32)}
            if self.layout.region_class_size is not None:
                template["region_class_targets"] = np.zeros((1, self.layout.region_class_size), np.float32)
        examples = [
            _text_only_placeholder(example, template) if example.get("text_only") else example for example in examples
        ]
        return examples, sampler(examples)

    def _with_paired_negative_rows(
        self, examples: Sequence[Mapping[str, Any]]
    ) -> tuple[Sequence[Mapping[str, Any]], torch.Tensor | None]:
        """With ``paired_negatives`` k, the examples plus k copies of every matchable one (captions), to be made
        negatives next to their positive, and the mask of those copies; otherwise the examples and None."""
        swapper = self.maskers.matching
        if swapper is None or not swapper.paired_negatives:
            return examples, None
        copies = [example for example in examples if _is_matchable(example) for _ in range(swapper.paired_negatives)]
        paired = torch.zeros(len(examples) + len(copies), dtype=torch.bool)
        paired[len(examples):] = True
        return [*examples, *copies], paired

    def _pair_captions_with_images(
        self, examples: Sequence[Mapping[str, Any]], batch: dict[str, torch.Tensor], paired: torch.Tensor | None = None
    ) -> tuple[list[int], Sequence[Mapping[str, Any]], list[Any]]:
        """Each row's caption donor, the examples giving each row its visual side, and each row's visual identity;
        with matching, swapped pairs and ``matched_labels`` in ``batch``."""
        source_key = "video_id" if self.layout.frames else "image_id"  # regions and frames (ActBERT): the video's
        sources = [_source(example, i, source_key) for i, example in enumerate(examples)]
        swapper = self.maskers.matching
        if swapper is None:
            return list(range(len(examples))), examples, sources
        if swapper.probability > 0 or swapper.paired_negatives:
            _require_sources(examples, source_key)
        # Questions and text-only rows (a text corpus) are neither matching positives nor negatives.
        matchable = torch.tensor([_is_matchable(example) for example in examples])
        captions = [example["input_ids"] for example in examples] if swapper.hard_probability else None
        donors, batch["matched_labels"], image_donors = swapper(sources, matchable, captions, paired)
        return donors, [examples[d] for d in image_donors], [sources[d] for d in image_donors]

    def _mask_text(self, batch: dict[str, torch.Tensor]) -> None:
        """Scene-graph masking first (ERNIE-ViL), then token or span masking of the tokens it left."""
        free_tokens = batch["attention_mask"]
        if self.maskers.scene_graph is not None:
            batch["input_ids"], scene_labels, scene_selected = self.maskers.scene_graph(batch["input_ids"], free_tokens)
            batch.update({f"scene_{kind}_labels": labels for kind, labels in scene_labels.items()})
            free_tokens = free_tokens * ~scene_selected
        text_masker = self.maskers.tokens or self.maskers.span
        if text_masker is not None:
            batch["input_ids"], batch["labels"] = text_masker(batch["input_ids"], free_tokens)

    def _required_fields(self) -> list[str]:
        fields = ["input_ids"]
        if self.layout.regions:
            fields += ["region_features", "region_boxes"]
        if self.layout.frames:
            fields.append("frame_features")
        if self.layout.subtitles:
            fields += ["subtitle_input_ids", "subtitle_starts", "subtitle_ends"]
        for objective, field in (
            ("region_class", "region_class_targets"),
            ("region_object", "region_object_labels"),
            ("region_attribute", "region_attribute_labels"),
        ):
            if objective in self.objectives:
                fields.append(field)
        return fields

    def _validate(self, examples: Sequence[Mapping[str, Any]]) -> None:
        if len(examples) == 0:
            raise ValueError("examples is empty; a batch needs at least one example")
        for index, example in enumerate(examples):
            if not isinstance(example, Mapping):
                raise ValueError(
                    f"example {index} must be a mapping of field names to values, got {type(example).__name__}"
                )
            missing = [field for field in self._required_fields() if example.get(field) is None]
            if missing:
                raise ValueError(
                    f"example {index} is missing {missing} (needed by objectives {list(self.objectives)}); "
                    f"it has {sorted(example)}"
                )

    def _pad_tokens(self, examples: Sequence[Mapping[str, Any]], donors: Sequence[int]) -> dict[str, torch.Tensor]:
        owners = None
        if self.layout.subtitles:
            rows, owners = _subtitle_rows(examples, donors)
        else:
            rows = [_as_array(examples[d]["input_ids"], "input_ids", d, 1, np.int64) for d in donors]
        types = []
        for d, row in zip(donors, rows):
            given = None if self.layout.subtitles else examples[d].get("token_type_ids")
            types.append(np.zeros_like(row) if given is None else _as_array(given, "token_type_ids", d, 1, np.int64))
            if len(types[-1]) != len(row):
                raise ValueError(
                    f"token_type_ids of example {d} has length {len(types[-1])}, expected {len(row)} like input_ids"
                )
        length = max(len(row) for row in rows)
        if length == 0:
            raise ValueError("input_ids: every example in the batch is empty; expected [CLS] ... [SEP] token ids")
        padded = {
            "input_ids": _pad_rows(rows, length, self.vocabulary.pad_token_id, np.int64),
            "attention_mask": _length_mask([len(row) for row in rows], length),
            "token_type_ids": _pad_rows(types, length, 0, np.int64),
        }
        if owners is not None:
            padded["text_subtitle_index"] = _pad_rows(owners, length, -1, np.int64)
        return padded

    def _frame_subtitle_index(
        self, examples: Sequence[Mapping[str, Any]], donors: Sequence[int], width: int
    ) -> torch.Tensor:
        """The subtitle of each of the example's own frames (-1: unmatched or padding), from the donor's timestamps."""
        index = torch.full((len(examples), width), -1, dtype=torch.long)
        for b, d in enumerate(donors):
            count = len(examples[b]["frame_features"])
            starts = _as_array(examples[d]["subtitle_starts"], "subtitle_starts", d, 1, np.float64)
            ends = _as_array(examples[d]["subtitle_ends"], "subtitle_ends", d, 1, np.float64)
            if len(starts) != len(examples[d]["subtitle_input_ids"]):
                raise ValueError(
                    f"subtitle_starts of example {d} has {len(starts)} times for "
                    f"{len(examples[d]['subtitle_input_ids'])} subtitles"
                )
            try:
                aligned = align_subtitles_to_frames(starts.tolist(), ends.tolist(), count, self.layout.frame_interval)
            except ValueError as error:
                raise ValueError(f"example {d}: {error}") from error
            index[b, :count] = torch.from_numpy(aligned)
        return index

    def _regions(self, examples: Sequence[Mapping[str, Any]], batch: dict[str, torch.Tensor]) -> None:
        features, mask = _pad_items(examples, "region_features", self.layout.num_regions, "num_regions")
        lengths = mask.sum(1)
        box_rows = []
        for b, example in enumerate(examples):
            box_rows.append(_as_array(example["region_boxes"], "region_boxes", b, 2, np.float32))
            if box_rows[-1].shape != (int(lengths[b]), 4):
                raise ValueError(
                    f"region_boxes of example {b} has shape {box_rows[-1].shape}, expected ({int(lengths[b])}, 4) "
                    "(x1, y1, x2, y2 per region)"
                )
        boxes = _pad_rows(box_rows, features.shape[1], 0.0, np.float32)
        batch.update(region_features=features, region_boxes=boxes, region_attention_mask=mask)
        if self.maskers.regions is None:
            return
        masked, selected, targets = self.maskers.regions(features, mask)
        batch.update(region_features=masked, masked_regions=selected)
        if "region_feature" in self.objectives:
            batch["region_feature_targets"] = targets
        self._region_targets(examples, lengths, features.shape[1], batch)

    def _region_targets(
        self, examples: Sequence[Mapping[str, Any]], lengths: torch.Tensor, width: int, batch: dict[str, torch.Tensor]
    ) -> None:
        """The detector's class distributions and object / attribute labels (with confidences) of every region."""
        if "region_class" in self.objectives:
            classes, _ = _pad_items(examples, "region_class_targets", width, "num_regions")
            for b, example in enumerate(examples):
                if len(example["region_class_targets"]) != int(lengths[b]):
                    raise ValueError(
                        f"region_class_targets of example {b} has {len(example['region_class_targets'])} rows, "
                        f"expected {int(lengths[b])} (one per region)"
                    )
            batch["region_class_targets"] = classes
        for kind in ("object", "attribute"):
            if f"region_{kind}" not in self.objectives:
                continue
            labels = _pad_per_region(examples, f"region_{kind}_labels", lengths, width, IGNORE_INDEX, np.int64)
            batch[f"region_{kind}_labels"] = labels
            confidences = f"region_{kind}_confidences"
            if all(example.get(confidences) is not None for example in examples):
                batch[confidences] = _pad_per_region(examples, confidences, lengths, width, 0.0, np.float32)
            else:
                batch[confidences] = (labels != IGNORE_INDEX).float()

    def _frames(self, examples: Sequence[Mapping[str, Any]], batch: dict[str, torch.Tensor]) -> None:
        features, mask = _pad_items(examples, "frame_features", self.layout.num_frames, "num_frames")
        empty = (mask.sum(1) == 0).nonzero().flatten().tolist()
        if empty:
            raise ValueError(
                f"frame_features of examples {empty} have no frame (a video shorter than one clip); expected at least one"
            )
        if self.maskers.frame_order is not None:
            features, batch["frame_order_labels"] = self.maskers.frame_order(features, mask)
        batch.update(frame_features=features, frame_attention_mask=mask)
        if self.maskers.frames is not None:
            masked, selected, targets = self.maskers.frames(features, mask)
            batch.update(frame_features=masked, masked_frames=selected, frame_feature_targets=targets)


def _require_sources(examples: Sequence[Mapping[str, Any]], key: str) -> None:
    missing = [i for i, example in enumerate(examples) if example.get(key) is None and not example.get("text_only")]
    if missing:
        raise ValueError(
            f"{key}: examples {missing[:5]} have none; matching negatives need every example's {key} so that a "
            f"caption of the same {key.split('_')[0]} is never drawn as a negative (or set negative_probability=0)"
        )


def _source(example: Mapping[str, Any], index: int, key: str) -> Any:
    """The example's image or video identity (its position when it has none)."""
    value = example.get(key)
    return ("position", index) if value is None else value


def image_text_collator(
    tokenizer: Any, objectives: Iterable[str] | Mapping[str, float], **kwargs: Any
) -> MultimodalCollator:
    """Collator for region-based image-text models (LXMERT, ViLBERT, VL-BERT, ImageBERT, ERNIE-ViL)."""
    return MultimodalCollator.from_tokenizer(tokenizer, objectives, regions=True, frames=False, **kwargs)


def video_text_collator(
    tokenizer: Any, objectives: Iterable[str] | Mapping[str, float], **kwargs: Any
) -> MultimodalCollator:
    """Collator for frame-based video-text models (UniVL, VideoBERT, HERO)."""
    return MultimodalCollator.from_tokenizer(tokenizer, objectives, regions=False, frames=True, **kwargs)


def collator_for_config(config: Any, tokenizer: Any, seed: int = 0, **kwargs: Any) -> MultimodalCollator:
    """The collator of an architecture (:meth:`MultimodalCollator.from_config`); ``kwargs`` override settings."""
    return MultimodalCollator.from_config(config, tokenizer, seed=seed, **kwargs)
