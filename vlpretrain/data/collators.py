"""Seeded maskers for every pretraining objective, and collators that pad examples and compose the maskers.

Each masker is a small named object with its own seed, so a run is reproducible and each objective's sampling
can be tested on its own. The composed :class:`MultimodalCollator` pads already-featurised examples into
batches whose keys are the package-wide model input and label names, then applies the maskers of the enabled
objectives in a fixed order: caption swapping (matching), frame shuffling, token masking, region masking,
frame masking, answer targets, contrastive positives.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..processing.subtitles import align_subtitles_to_frames, subtitle_token_layout
from .padding import DataCollatorForVisionLanguage, field_tensor
from .scene_graph import parse_scene_graph

IGNORE_INDEX = -100

# Objective names accepted by the composed collators, mapped to the masker that serves them.
OBJECTIVE_MASKERS: dict[str, str] = {
    "mlm": "tokens",
    "text_mlm": "text_only",
    "span": "span",
    "region_feature": "regions",
    "region_object": "regions",
    "region_attribute": "regions",
    "region_class": "regions",
    "matching": "matching",
    "qa": "answers",
    "frame_feature": "frames",
    "frame_order": "frame_order",
    "contrastive": "contrastive",
    "action": "actions",
    "scene_object": "scene_graph",
    "scene_attribute": "scene_graph",
    "scene_relation": "scene_graph",
    # Objectives the model computes from the batch as collated (no masker): UniVL's cross-encoder alignment over
    # in-batch pairs and its caption reconstruction (targets: the unmasked ``input_ids``, recovered from ``labels``);
    # HERO's video-subtitle matching (queries and spans from ``subtitle_*`` fields, see the model).
    "alignment": "in_batch",
    "reconstruction": "captions",
    "vsm": "subtitles",
    # VideoBERT's masked visual words and ActBERT's masked action classification: masked frames (plus, for
    # ``masked_action``, the clip's ``action_labels``).
    "visual_word": "frames",
    "masked_action": "frames",
}

# Region masking variants: (probability of zeroing, probability of a feature from another image); the rest keep.
REGION_MASK_STYLES: dict[str, tuple[float, float]] = {
    "zero": (1.0, 0.0),
    "vilbert": (0.9, 0.0),
    "lxmert": (0.8, 0.1),
}


def _derive_seed(seed: int, name: str) -> int:
    """Give each named masker its own stream derived from one collator seed."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode("utf-8"))) % (2**63 - 1)


def _check_probability(name: str, value: float) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
    return float(value)


class SeededMasker:
    """Base of the maskers: a name, a seed, and one random generator per data-loader worker.

    A collator copied into ``DataLoader`` workers would otherwise draw the same masks in every worker, so the
    worker id is mixed into the seed the first time a worker samples.
    """

    name = "masker"

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self._generators: dict[int, torch.Generator] = {}

    @property
    def generator(self) -> torch.Generator:
        """The generator of the current process (worker 0 outside data-loader workers)."""
        info = torch.utils.data.get_worker_info()
        worker = 0 if info is None else info.id
        if worker not in self._generators:
            self._generators[worker] = torch.Generator().manual_seed(_derive_seed(self.seed, f"{self.name}/{worker}"))
        return self._generators[worker]

    def reseed(self, seed: int) -> None:
        """Restart the random streams from ``seed``."""
        self.seed = int(seed)
        self._generators = {}

    def state_dict(self) -> dict[str, Any]:
        """The seed and the main process's generator state, so a resumed run draws the masks it would have drawn."""
        return {"seed": self.seed, "generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.reseed(int(state["seed"]))
        self.generator.set_state(state["generator"])

    def _uniform(self, shape: Sequence[int] | torch.Size) -> torch.Tensor:
        return torch.rand(tuple(shape), generator=self.generator)


class TokenMasker(SeededMasker):
    """BERT masked language modelling: select ``probability`` of the real tokens, then 80 % [MASK] / 10 % random
    token / 10 % unchanged. Special tokens and padding are never selected.

    With ``whole_word`` every WordPiece of a word (a start piece plus its ``##`` continuations) is selected and
    replaced together, as in VL-BERT: one draw per word decides selection and the 80/10/10 branch.
    """

    name = "mlm"

    def __init__(
        self,
        mask_token_id: int,
        vocab_size: int,
        special_token_ids: Iterable[int],
        probability: float = 0.15,
        mask_ratio: float = 0.8,
        random_ratio: float = 0.1,
        whole_word: bool = False,
        continuation_token_ids: Iterable[int] | None = None,
        seed: int = 0,
    ):
        super().__init__(seed)
        if vocab_size <= 0:
            raise ValueError(f"vocab_size must be positive, got {vocab_size}")
        if not 0 <= mask_token_id < vocab_size:
            raise ValueError(f"mask_token_id must be a vocabulary id in [0, {vocab_size}), got {mask_token_id}")
        self.probability = _check_probability("probability", probability)
        self.mask_ratio = _check_probability("mask_ratio", mask_ratio)
        self.random_ratio = _check_probability("random_ratio", random_ratio)
        if mask_ratio + random_ratio > 1.0:
            raise ValueError(f"mask_ratio + random_ratio must be at most 1, got {mask_ratio} + {random_ratio}")
        if whole_word and continuation_token_ids is None:
            raise ValueError("continuation_token_ids is required when whole_word=True (the ids of '##' pieces)")
        self.mask_token_id = int(mask_token_id)
        self.vocab_size = int(vocab_size)
        self.special_token_ids = torch.tensor(sorted(set(int(i) for i in special_token_ids)), dtype=torch.long)
        self.whole_word = bool(whole_word)
        self.continuation_token_ids = torch.tensor(sorted(set(continuation_token_ids or ())), dtype=torch.long)
        candidates = torch.ones(self.vocab_size, dtype=torch.bool)
        candidates[self.special_token_ids[self.special_token_ids < self.vocab_size]] = False
        self.random_token_ids = torch.nonzero(candidates).flatten()

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, **kwargs: Any) -> TokenMasker:
        """Read the [MASK] id, vocabulary size, special ids and ``##`` continuation ids from a BERT tokenizer."""
        vocab = tokenizer.get_vocab()
        continuation = [index for token, index in vocab.items() if token.startswith("##")]
        return cls(
            mask_token_id=tokenizer.mask_token_id,
            vocab_size=len(tokenizer),
            special_token_ids=tokenizer.all_special_ids,
            continuation_token_ids=continuation,
            **kwargs,
        )

    def _selection_units(self, candidates: torch.Tensor, input_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Index of the unit (token or whole word) each candidate token belongs to, and the number of units."""
        flat = candidates.flatten()
        if not self.whole_word:
            return torch.cumsum(flat.long(), 0).view_as(candidates) - 1, int(flat.sum())
        continuation = torch.isin(input_ids, self.continuation_token_ids)
        previous_is_candidate = torch.zeros_like(candidates)
        previous_is_candidate[:, 1:] = candidates[:, :-1]
        starts = candidates & ~(continuation & previous_is_candidate)
        return torch.cumsum(starts.flatten().long(), 0).view_as(candidates) - 1, int(starts.sum())

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(masked_input_ids, labels)``; labels hold the original id where selected, -100 elsewhere."""
        if input_ids.shape != attention_mask.shape or input_ids.dim() != 2:
            raise ValueError(
                f"input_ids and attention_mask must both be (batch, length); got {tuple(input_ids.shape)} and "
                f"{tuple(attention_mask.shape)}"
            )
        candidates = attention_mask.bool() & ~torch.isin(input_ids, self.special_token_ids)
        unit_index, num_units = self._selection_units(candidates, input_ids)
        if num_units == 0:
            return input_ids.clone(), torch.full_like(input_ids, IGNORE_INDEX)
        unit_selected = self._uniform((num_units,)) < self.probability
        unit_branch = self._uniform((num_units,))
        safe_index = unit_index.clamp(min=0)
        selected = candidates & unit_selected[safe_index]
        branch = unit_branch[safe_index]
        to_mask = selected & (branch < self.mask_ratio)
        to_random = selected & (branch >= self.mask_ratio) & (branch < self.mask_ratio + self.random_ratio)
        labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
        masked = input_ids.clone()
        masked[to_mask] = self.mask_token_id
        picks = torch.randint(len(self.random_token_ids), (int(to_random.sum()),), generator=self.generator)
        masked[to_random] = self.random_token_ids[picks]
        return masked, labels


class SpanMasker(SeededMasker):
    """Contiguous span masking for generation-style objectives (SpanBERT-like): spans of real, non-special
    tokens with geometric lengths (clipped to ``max_span_length``) are replaced by [MASK] until about
    ``probability`` of each sequence's candidate tokens is covered; labels hold the original ids of the spans.
    """

    name = "span"

    def __init__(
        self,
        mask_token_id: int,
        special_token_ids: Iterable[int],
        probability: float = 0.15,
        mean_span_length: float = 3.0,
        max_span_length: int = 10,
        seed: int = 0,
    ):
        super().__init__(seed)
        self.probability = _check_probability("probability", probability)
        if mean_span_length < 1.0:
            raise ValueError(f"mean_span_length must be at least 1, got {mean_span_length}")
        if max_span_length < 1:
            raise ValueError(f"max_span_length must be at least 1, got {max_span_length}")
        self.mask_token_id = int(mask_token_id)
        self.special_token_ids = torch.tensor(sorted(set(int(i) for i in special_token_ids)), dtype=torch.long)
        self.mean_span_length = float(mean_span_length)
        self.max_span_length = int(max_span_length)

    def _span_length(self) -> int:
        success = 1.0 / self.mean_span_length
        draw = float(self._uniform((1,)))
        length = 1 + int(np.floor(np.log1p(-draw) / np.log1p(-success))) if success < 1.0 else 1
        return min(length, self.max_span_length)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(masked_input_ids, labels)`` with whole spans masked."""
        if input_ids.shape != attention_mask.shape or input_ids.dim() != 2:
            raise ValueError(
                f"input_ids and attention_mask must both be (batch, length); got {tuple(input_ids.shape)} and "
                f"{tuple(attention_mask.shape)}"
            )
        candidates = attention_mask.bool() & ~torch.isin(input_ids, self.special_token_ids)
        selected = torch.zeros_like(candidates)
        for row in range(input_ids.shape[0]):
            positions = torch.nonzero(candidates[row]).flatten()
            budget = int(round(self.probability * len(positions)))
            attempts = 0
            while int(selected[row].sum()) < budget and attempts < 10 * len(positions):
                attempts += 1
                length = min(self._span_length(), budget - int(selected[row].sum()))
                start = positions[int(torch.randint(len(positions), (1,), generator=self.generator))]
                stop = int(start) + length
                if stop <= input_ids.shape[1] and bool(candidates[row, start:stop].all()):
                    selected[row, start:stop] = True
        labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
        masked = torch.where(selected, torch.full_like(input_ids, self.mask_token_id), input_ids)
        return masked, labels


class FeatureMasker(SeededMasker):
    """Mask ``probability`` of the valid (non-padded) regions or frames of each item.

    A selected item is zeroed with ``zero_probability``, replaced by a feature of another item of the batch
    (another image or video) with ``swap_probability``, and kept otherwise. ``min_masked`` forces at least
    that many selected items per sequence (HERO masks at least one frame). Returns the masked features, the
    boolean selection and the original features as regression targets.
    """

    def __init__(
        self,
        probability: float = 0.15,
        zero_probability: float = 1.0,
        swap_probability: float = 0.0,
        min_masked: int = 0,
        seed: int = 0,
        name: str = "features",
    ):
        super().__init__(seed)
        self.name = name
        self.probability = _check_probability("probability", probability)
        self.zero_probability = _check_probability("zero_probability", zero_probability)
        self.swap_probability = _check_probability("swap_probability", swap_probability)
        if zero_probability + swap_probability > 1.0:
            raise ValueError(
                f"zero_probability + swap_probability must be at most 1, got {zero_probability} + {swap_probability}"
            )
        if min_masked < 0:
            raise ValueError(f"min_masked must be non-negative, got {min_masked}")
        self.min_masked = int(min_masked)

    def _select(self, valid: torch.Tensor) -> torch.Tensor:
        scores = self._uniform(valid.shape)
        selected = valid & (scores < self.probability)
        if self.min_masked:
            for row in range(valid.shape[0]):
                shortfall = min(self.min_masked, int(valid[row].sum())) - int(selected[row].sum())
                if shortfall > 0:
                    spare = torch.where(valid[row] & ~selected[row], scores[row], torch.full_like(scores[row], 2.0))
                    selected[row, torch.argsort(spare)[:shortfall]] = True
        return selected

    def __call__(
        self, features: torch.Tensor, valid_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(masked_features, selected, targets)`` for features (B, N, D) and a 0/1 mask (B, N)."""
        if features.dim() != 3 or valid_mask.shape != features.shape[:2]:
            raise ValueError(
                f"features must be (batch, items, dim) with a (batch, items) mask; got {tuple(features.shape)} "
                f"and {tuple(valid_mask.shape)}"
            )
        valid = valid_mask.bool()
        selected = self._select(valid)
        branch = self._uniform(valid.shape)
        zero = selected & (branch < self.zero_probability)
        swap = selected & (branch >= self.zero_probability) & (branch < self.zero_probability + self.swap_probability)
        masked = features.masked_fill(zero[..., None], 0.0)
        rows, columns = torch.nonzero(swap, as_tuple=True)
        if len(rows):
            masked[rows, columns] = self._donor_features(features, valid, rows)
        # The unmasked features are the regression targets; ``masked`` is the only copy made.
        return masked, selected, features

    def _donor_features(self, features: torch.Tensor, valid: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """One feature per swapped item, drawn uniformly from the valid items of another row of the batch (zero
        when the batch has one row or the donor row is empty), for all swapped items at once."""
        batch_size = features.shape[0]
        if batch_size < 2:
            return features.new_zeros((len(rows), features.shape[-1]))
        offsets = torch.randint(1, batch_size, (len(rows),), generator=self.generator)
        donors = (rows + offsets) % batch_size
        counts = valid.sum(1)[donors]
        # The k-th valid item of the donor row, k uniform in [0, count): first position whose running count passes k.
        picks = (self._uniform((len(rows),)) * counts).long()
        running = torch.cumsum(valid.long(), 1)[donors]
        items = torch.searchsorted(running, (picks + 1)[:, None]).squeeze(1).clamp(max=features.shape[1] - 1)
        return torch.where((counts > 0)[:, None], features[donors, items], features.new_zeros(()))


class FrameShuffler(SeededMasker):
    """Frame order modelling (HERO FOM): select ``probability`` of each clip's valid frames and permute them
    among themselves. ``frame_order_labels[b, p]`` is the original index of the frame now at position ``p``
    for every selected position and -100 elsewhere. With two or more selected frames the permutation moves
    every one of them; a single selected frame stays in place (its label is its own index).
    """

    name = "frame_order"

    def __init__(self, probability: float = 0.15, seed: int = 0):
        super().__init__(seed)
        self.probability = _check_probability("probability", probability)

    def _derangement(self, size: int) -> torch.Tensor:
        if size < 2:
            return torch.arange(size)
        while True:
            order = torch.randperm(size, generator=self.generator)
            if bool((order != torch.arange(size)).all()):
                return order

    def __call__(self, features: torch.Tensor, valid_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(shuffled_features, frame_order_labels)`` for features (B, F, D) and a mask (B, F)."""
        if features.dim() != 3 or valid_mask.shape != features.shape[:2]:
            raise ValueError(
                f"frame features must be (batch, frames, dim) with a (batch, frames) mask; got "
                f"{tuple(features.shape)} and {tuple(valid_mask.shape)}"
            )
        selected = valid_mask.bool() & (self._uniform(valid_mask.shape) < self.probability)
        labels = torch.full(valid_mask.shape, IGNORE_INDEX, dtype=torch.long)
        shuffled = features.clone()
        for row in range(features.shape[0]):
            positions = torch.nonzero(selected[row]).flatten()
            sources = positions[self._derangement(len(positions))]
            shuffled[row, positions] = features[row, sources]
            labels[row, positions] = sources
        return shuffled, labels


class CaptionSwapper(SeededMasker):
    """Image-text matching negatives: with ``probability`` an example is paired with the caption of an example
    showing a *different* image (or video), or, with ``image_probability`` of those negatives, keeps its caption
    and takes that other example's image (ImageBERT samples negative images for captions as well as negative
    captions for images). Label 1 = matched, 0 = mismatched. An example whose batch holds no other image keeps
    its pair and stays matched.

    Examples marked not ``matchable`` (questions mixed into LXMERT's pretraining text) are neither positives nor
    negatives: label -100, never swapped, never a donor. "is there a red square?" does not describe its image
    (the answer may be no), so as a positive it is noise, and it would be an uninformative negative.
    """

    name = "matching"

    def __init__(self, probability: float = 0.5, seed: int = 0, image_probability: float = 0.0):
        super().__init__(seed)
        self.probability = _check_probability("probability", probability)
        self.image_probability = _check_probability("image_probability", image_probability)

    def __call__(
        self, sources: Sequence[Any], matchable: torch.Tensor | None = None
    ) -> tuple[list[int], torch.Tensor, list[int]]:
        """Given each example's image (or video) identity (and optionally which examples take part in matching),
        return the caption donor index of every example, the matched labels (1, 0, or -100 when not matchable) and
        the image donor index of every example."""
        count = len(sources)
        codes = {source: code for code, source in enumerate(dict.fromkeys(sources))}
        image = torch.tensor([codes[source] for source in sources], dtype=torch.long)
        if matchable is None:
            matchable = torch.ones(count, dtype=torch.bool)
        swap = self._uniform((count,)) < self.probability
        # Drawn only when image negatives are on, so caption-only runs keep their random stream.
        swap_image = self._uniform((count,)) < self.image_probability if self.image_probability else torch.zeros_like(swap)
        # Every swapped example draws its donor uniformly among the matchable examples of other images, all at once.
        others = (image[None, :] != image[:, None]) & matchable[None, :]
        counts = others.sum(1)
        swap &= (counts > 0) & matchable
        picks = (self._uniform((count,)) * counts).long()
        donor = torch.searchsorted(torch.cumsum(others.long(), 1), (picks + 1)[:, None]).squeeze(1).clamp(max=count - 1)
        itself = torch.arange(count)
        donors = torch.where(swap & ~swap_image, donor, itself)
        image_donors = torch.where(swap & swap_image, donor, itself)
        matched = torch.where(matchable, (~swap).long(), torch.full_like(image, IGNORE_INDEX))
        return donors.tolist(), matched, image_donors.tolist()


class AnswerSampler(SeededMasker):
    """QA targets: an ``answer_label`` is used as is; ``answer_scores`` (a dict answer id -> score or a score
    vector) gives a label drawn in proportion to the scores (LXMERT) or, with ``sample=False``, the best answer.
    Examples without an answer get -100."""

    name = "qa"

    def __init__(self, sample: bool = True, seed: int = 0):
        super().__init__(seed)
        self.sample = bool(sample)

    def label(self, example: Mapping[str, Any], index: int) -> int:
        """The answer id of one example (-100 when it has none)."""
        if example.get("answer_label") is not None:
            return int(example["answer_label"])
        scores = example.get("answer_scores")
        if scores is None:
            return IGNORE_INDEX
        if isinstance(scores, Mapping):
            ids = torch.tensor([int(key) for key in scores], dtype=torch.long)
            weights = torch.tensor([float(value) for value in scores.values()], dtype=torch.float64)
        else:
            weights = torch.as_tensor(np.asarray(scores, dtype=np.float64)).flatten()
            ids = torch.arange(len(weights))
        if len(weights) == 0 or bool((weights < 0).any()):
            raise ValueError(f"answer_scores of example {index} must be non-negative scores, got {scores!r}")
        if float(weights.sum()) == 0.0:
            return IGNORE_INDEX
        if self.sample:
            return int(ids[torch.multinomial(weights, 1, generator=self.generator)])
        return int(ids[torch.argmax(weights)])


class TextOnlySampler(SeededMasker):
    """Text-only rows for MLM on a text corpus mixed into image-text batches (VL-BERT's Books/Wikipedia batches).

    With a ``corpus`` (token id lists), every batch gets one corpus segment per image-text example, as the original
    pairs each batch of image-caption pairs with an equally large batch of corpus segments (jackroos/VL-BERT
    ``common/utils/multi_task_dataloader.py``, ``BATCH_IMAGES: [32, 32]``). Segments are drawn at random with
    replacement (the original reshuffles the corpus each pass), so the generator state alone resumes the stream.
    An example whose ``text_only`` field is true stays text-only, and with ``probability`` > 0 (off by default)
    an image-text example becomes text-only (its caption is then used as plain text and its image is ignored by
    the model). The batch gets ``text_only`` (B,).
    """

    name = "text_mlm"

    def __init__(self, probability: float = 0.0, seed: int = 0, corpus: Sequence[Sequence[int]] | None = None):
        super().__init__(seed)
        self.probability = _check_probability("text_only_probability", probability)
        if corpus is not None and (isinstance(corpus, str) or len(corpus) == 0):
            raise ValueError("text_corpus: expected a non-empty list of token id lists (one per segment)")
        self.corpus = None if corpus is None else [list(map(int, segment)) for segment in corpus]

    def corpus_rows(self, count: int) -> list[dict[str, Any]]:
        """``count`` text-only examples drawn from the corpus (none without a corpus)."""
        if self.corpus is None or count == 0:
            return []
        picks = torch.randint(len(self.corpus), (count,), generator=self.generator).tolist()
        return [{"input_ids": self.corpus[pick], "text_only": True} for pick in picks]

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> torch.Tensor:
        """The text-only flag of every example."""
        given = torch.tensor([bool(example.get("text_only", False)) for example in examples])
        return given | (self._uniform((len(examples),)) < self.probability)


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


def _is_question(example: Mapping[str, Any]) -> bool:
    """Whether an example's text is a question (it carries an answer) rather than a caption."""
    label = example.get("answer_label")
    return (label is not None and int(label) != IGNORE_INDEX) or example.get("answer_scores") is not None


def contrastive_positive_mask(sources: Sequence[Any]) -> torch.Tensor:
    """In-batch contrastive positives: (B, B) boolean, True on the diagonal and wherever two examples show the
    same image or video (so a loss can avoid treating a duplicate as a negative)."""
    codes = {source: code for code, source in enumerate(dict.fromkeys(sources))}
    ids = torch.tensor([codes[source] for source in sources])
    return ids[:, None] == ids[None, :]


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


class MultimodalCollator:
    """Pad already-featurised examples into a batch and apply the maskers of the enabled objectives.

    Inputs per example: ``input_ids`` (with [CLS]/[SEP]), optional ``token_type_ids``; for images
    ``region_features`` (R, D), ``region_boxes`` (R, 4) and the targets the objectives need; for videos
    ``frame_features`` (F, D). ``image_id`` / ``video_id`` identify the visual side for matching and
    contrastive batches; matching with ``negative_probability`` > 0 requires them (with several captions per image,
    positions alone would let a caption of the same image be drawn as a negative); contrastive batches use the
    example's position when absent.

    Args:
        objectives: names from ``OBJECTIVE_MASKERS``, or a ``loss_weights`` mapping (weight 0 = off).
        pad_token_id / mask_token_id / vocab_size / special_token_ids / continuation_token_ids: token ids.
        regions / frames: whether examples carry region features, frame features, or both (ActBERT).
        subtitles / frame_interval: the text is the example's timed subtitles instead of its caption (HERO):
            ``subtitle_input_ids`` (one token list per subtitle), ``subtitle_starts`` / ``subtitle_ends`` (seconds),
            concatenated with ``text_subtitle_index`` (each token's subtitle, -1 on padding) and aligned to the
            frames (``frame_subtitle_index``, -1 = unmatched) by :func:`align_subtitles_to_frames` with
            ``frame_interval`` seconds per frame; frame indices refer to the original (unshuffled) frame order.
        num_regions / num_frames: pad every batch to this many regions / frames (e.g. 36); the batch maximum
            when None. An example with more raises a ``ValueError``.
        mask_probability / whole_word_masking: token masking (span masking uses the same rate).
        region_mask_probability / region_mask_style: region masking rate and variant (``REGION_MASK_STYLES``).
        frame_mask_probability / min_masked_frames / frame_shuffle_probability: frame objectives.
        frame_mask_style: (zeroed, swapped with another video's frame) shares of the masked frames; the rest keep
            their features (default: all zeroed).
        negative_probability: share of examples made matching negatives; negative_image_probability: share of
            those negatives that keep their caption and take another example's image (ImageBERT), the rest take
            another example's caption.
        text_corpus: token id lists of text segments (e.g. ``training.sources.text_corpus_examples``) for ``text_mlm``:
            each batch gets one text-only segment per image-text example (:class:`TextOnlySampler`).
        text_only_probability: share of image-text examples turned into text-only rows for ``text_mlm`` (off by
            default: captions stay multimodal); examples marked ``text_only`` always are. region_feature_size /
            region_class_size: feature and class-distribution sizes of the placeholder region of text-only
            examples that carry no regions (taken from the batch when None).
        sample_answers: draw QA labels in proportion to ``answer_scores`` (else the best answer).
        scene_graph_probability / token_strings: ERNIE-ViL scene-graph masking (``scene_object``, ``scene_attribute``,
            ``scene_relation``): the share of each kind of node masked, and the vocabulary (id -> token) used to
            rebuild words from WordPieces (``from_tokenizer`` fills it).
        seed: seeds every masker (each masker gets its own stream derived from its name).

    Batch keys: always ``input_ids``, ``attention_mask``, ``token_type_ids``; with regions ``region_features``
    (B, R, D float32), ``region_boxes`` (B, R, 4), ``region_attention_mask`` (B, R, 0/1); with frames
    ``frame_features``, ``frame_attention_mask``. Per objective: ``mlm`` / ``span`` -> ``labels``; any region
    objective -> ``masked_regions``; ``region_feature`` -> ``region_feature_targets``; ``region_class`` ->
    ``region_class_targets``; ``region_object`` / ``region_attribute`` -> ``region_{object,attribute}_labels``
    (-100 on padding) and ``region_{object,attribute}_confidences`` (1.0 per labelled region when the examples
    give none); ``matching`` -> ``matched_labels`` (-100 on questions: examples with an answer); ``qa`` ->
    ``answer_labels`` (-100 on mismatched pairs); ``frame_feature`` -> ``masked_frames``, ``frame_feature_targets``; ``frame_order`` -> ``frame_order_labels``;
    ``action`` -> ``action_labels``; ``contrastive`` -> ``contrastive_positive_mask`` (B, B); with ``subtitles``
    ``text_subtitle_index`` and ``frame_subtitle_index``; ``scene_object`` /
    ``scene_attribute`` / ``scene_relation`` -> ``scene_{object,attribute,relation}_labels``.
    """

    def __init__(
        self,
        objectives: Iterable[str] | Mapping[str, float],
        pad_token_id: int,
        mask_token_id: int | None = None,
        vocab_size: int | None = None,
        special_token_ids: Iterable[int] = (),
        continuation_token_ids: Iterable[int] | None = None,
        regions: bool = True,
        frames: bool = False,
        num_regions: int | None = None,
        num_frames: int | None = None,
        subtitles: bool = False,
        frame_interval: float | None = None,
        mask_probability: float = 0.15,
        whole_word_masking: bool = False,
        region_mask_probability: float = 0.15,
        region_mask_style: str = "zero",
        frame_mask_probability: float = 0.15,
        frame_mask_style: tuple[float, float] = (1.0, 0.0),
        min_masked_frames: int = 0,
        frame_shuffle_probability: float = 0.15,
        negative_probability: float = 0.5,
        negative_image_probability: float = 0.0,
        sample_answers: bool = True,
        text_only_probability: float = 0.0,
        text_corpus: Sequence[Sequence[int]] | None = None,
        region_feature_size: int | None = None,
        region_class_size: int | None = None,
        scene_graph_probability: float = 0.3,
        token_strings: Sequence[str] | None = None,
        seed: int = 0,
    ):
        if isinstance(objectives, Mapping):
            names = [name for name, weight in objectives.items() if float(weight) > 0.0]
        elif isinstance(objectives, str):
            raise ValueError(
                f"objectives must be a list of names or a loss_weights mapping, got the string {objectives!r}"
            )
        else:
            names = list(objectives)
        unknown = sorted(set(names) - set(OBJECTIVE_MASKERS))
        if unknown:
            raise ValueError(f"objectives: unknown names {unknown}; expected some of {sorted(OBJECTIVE_MASKERS)}")
        if not regions and not frames:
            raise ValueError("regions and frames are both False; a multimodal collator needs at least one of them")
        if region_mask_style not in REGION_MASK_STYLES:
            raise ValueError(
                f"region_mask_style must be one of {sorted(REGION_MASK_STYLES)}, got {region_mask_style!r}"
            )
        for field, count in (("num_regions", num_regions), ("num_frames", num_frames)):
            if count is not None and count < 1:
                raise ValueError(f"{field} must be a positive count or None, got {count}")
        self.objectives = tuple(dict.fromkeys(names))
        kinds = {OBJECTIVE_MASKERS[name] for name in self.objectives}
        if "text_only" in kinds:
            kinds.add("tokens")
        if "masked_action" in self.objectives:
            kinds.add("actions")
        if {"tokens", "span"} <= kinds:
            raise ValueError("objectives: 'mlm' and 'span' both write `labels`; enable only one of them")
        if kinds & {"regions"} and not regions:
            raise ValueError(f"objectives {sorted(self.objectives)} need region features but regions=False")
        if kinds & {"frames", "frame_order"} and not frames:
            raise ValueError(f"objectives {sorted(self.objectives)} need frame features but frames=False")
        if subtitles and not (frames and frame_interval is not None and frame_interval > 0):
            raise ValueError(
                f"subtitles=True aligns subtitles to frames: it needs frames=True and frame_interval > 0 (seconds per "
                f"frame), got frames={frames}, frame_interval={frame_interval}"
            )
        if subtitles and negative_image_probability > 0:
            raise ValueError(
                "negative_image_probability must be 0 with subtitles=True (subtitles are timed to their video)"
            )
        self.subtitles = bool(subtitles)
        self.frame_interval = frame_interval
        self.kinds = kinds
        self.pad_token_id = int(pad_token_id)
        self.regions = bool(regions)
        self.frames = bool(frames)
        self.num_regions = num_regions
        self.num_frames = num_frames
        self.seed = int(seed)
        special = set(int(i) for i in special_token_ids) | {self.pad_token_id}
        if kinds & {"tokens", "span"} and (mask_token_id is None or vocab_size is None):
            raise ValueError("mask_token_id and vocab_size are required for the 'mlm' and 'span' objectives")
        self.token_masker = (
            TokenMasker(
                mask_token_id,
                vocab_size,
                special,
                mask_probability,
                whole_word=whole_word_masking,
                continuation_token_ids=continuation_token_ids,
                seed=seed,
            )
            if "tokens" in kinds
            else None
        )
        self.span_masker = SpanMasker(mask_token_id, special, mask_probability, seed=seed) if "span" in kinds else None
        zero, swap = REGION_MASK_STYLES[region_mask_style]
        self.region_masker = (
            FeatureMasker(region_mask_probability, zero, swap, seed=seed, name="regions")
            if "regions" in kinds
            else None
        )
        self.frame_masker = (
            FeatureMasker(frame_mask_probability, *frame_mask_style, min_masked_frames, seed=seed, name="frames")
            if "frames" in kinds
            else None
        )
        self.frame_shuffler = FrameShuffler(frame_shuffle_probability, seed=seed) if "frame_order" in kinds else None
        self.caption_swapper = (
            CaptionSwapper(negative_probability, seed=seed, image_probability=negative_image_probability)
            if "matching" in kinds
            else None
        )
        self.answer_sampler = AnswerSampler(sample_answers, seed=seed) if "answers" in kinds else None
        self.scene_graph_masker = None
        if "scene_graph" in kinds:
            if mask_token_id is None or token_strings is None:
                raise ValueError("mask_token_id and token_strings are required for the scene-graph objectives")
            self.scene_graph_masker = SceneGraphMasker(
                token_strings, mask_token_id, special, scene_graph_probability, seed=seed
            )
        if text_corpus is not None and "text_only" not in kinds:
            raise ValueError("text_corpus: the collator has no text_mlm objective to train on it")
        self.text_only_sampler = (
            TextOnlySampler(text_only_probability, seed=seed, corpus=text_corpus) if "text_only" in kinds else None
        )
        self.region_feature_size = region_feature_size
        self.region_class_size = region_class_size

    @classmethod
    def from_tokenizer(
        cls, tokenizer: Any, objectives: Iterable[str] | Mapping[str, float], **kwargs: Any
    ) -> MultimodalCollator:
        """Build a collator whose token ids (pad, [MASK], specials, ``##`` pieces) come from a BERT tokenizer."""
        if tokenizer.pad_token_id is None:
            raise ValueError("tokenizer has no pad token; set tokenizer.pad_token before collating")
        continuation = [index for token, index in tokenizer.get_vocab().items() if token.startswith("##")]
        return cls(
            objectives,
            pad_token_id=tokenizer.pad_token_id,
            token_strings=tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))),
            mask_token_id=tokenizer.mask_token_id,
            vocab_size=len(tokenizer),
            special_token_ids=tokenizer.all_special_ids,
            continuation_token_ids=continuation,
            **kwargs,
        )

    @property
    def maskers(self) -> list[SeededMasker]:
        """The maskers in use, in the order they are applied."""
        ordered = (
            self.caption_swapper,
            self.frame_shuffler,
            self.token_masker,
            self.span_masker,
            self.region_masker,
            self.frame_masker,
            self.answer_sampler,
            self.scene_graph_masker,
            self.text_only_sampler,
        )
        return [masker for masker in ordered if masker is not None]

    def reseed(self, seed: int) -> None:
        """Restart every masker's random stream from ``seed``."""
        self.seed = int(seed)
        for masker in self.maskers:
            masker.reseed(seed)

    def state_dict(self) -> dict[str, Any]:
        """Every masker's random state (main process), keyed by masker name, for exact resumption."""
        return {masker.name: masker.state_dict() for masker in self.maskers}

    def statistics(self) -> dict[str, int]:
        """Running counts (since construction, this process) worth logging next to the losses: how many captions
        the scene-graph parser parsed and could not parse (those trained with MLM only)."""
        if self.scene_graph_masker is None:
            return {}
        return {f"scene_graph_{outcome}_captions": count for outcome, count in self.scene_graph_masker.counts.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the maskers' random states saved by :meth:`state_dict`."""
        maskers = {masker.name: masker for masker in self.maskers}
        unknown = sorted(set(state) - set(maskers))
        if unknown:
            raise ValueError(f"collator state names maskers {unknown} that this collator does not have")
        for name, masker_state in state.items():
            maskers[name].load_state_dict(masker_state)

    def _required_fields(self) -> list[str]:
        fields = ["input_ids"]
        if self.regions:
            fields += ["region_features", "region_boxes"]
        if self.frames:
            fields.append("frame_features")
        if self.subtitles:
            fields += ["subtitle_input_ids", "subtitle_starts", "subtitle_ends"]
        if "region_class" in self.objectives:
            fields.append("region_class_targets")
        if "region_object" in self.objectives:
            fields.append("region_object_labels")
        if "region_attribute" in self.objectives:
            fields.append("region_attribute_labels")
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

    @staticmethod
    def _require_sources(examples: Sequence[Mapping[str, Any]], key: str) -> None:
        missing = [i for i, example in enumerate(examples) if example.get(key) is None and not example.get("text_only")]
        if missing:
            raise ValueError(
                f"{key}: examples {missing[:5]} have none; matching negatives need every example's {key} so that a "
                f"caption of the same {key.split('_')[0]} is never drawn as a negative (or set negative_probability=0)"
            )

    @staticmethod
    def _source(example: Mapping[str, Any], index: int, key: str) -> Any:
        value = example.get(key)
        return ("position", index) if value is None else value

    @staticmethod
    def _subtitle_rows(examples: Sequence[Mapping[str, Any]], donors: Sequence[int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Each donor's subtitles concatenated: token ids and the subtitle of each token."""
        rows, owners = [], []
        for d in donors:
            subtitles = [list(_as_array(ids, "subtitle_input_ids", d, 1, np.int64)) for ids in examples[d]["subtitle_input_ids"]]
            if not subtitles:
                raise ValueError(f"subtitle_input_ids of example {d} is empty; expected at least one tokenized subtitle")
            row, owner = subtitle_token_layout(subtitles)
            rows.append(np.asarray(row, np.int64))
            owners.append(np.asarray(owner, np.int64))
        return rows, owners

    def _pad_tokens(self, examples: Sequence[Mapping[str, Any]], donors: Sequence[int]) -> dict[str, torch.Tensor]:
        owners = None
        if self.subtitles:
            rows, owners = self._subtitle_rows(examples, donors)
        else:
            rows = [_as_array(examples[d]["input_ids"], "input_ids", d, 1, np.int64) for d in donors]
        types = []
        for d, row in zip(donors, rows):
            given = None if self.subtitles else examples[d].get("token_type_ids")
            types.append(np.zeros_like(row) if given is None else _as_array(given, "token_type_ids", d, 1, np.int64))
            if len(types[-1]) != len(row):
                raise ValueError(
                    f"token_type_ids of example {d} has length {len(types[-1])}, expected {len(row)} like input_ids"
                )
        length = max(len(row) for row in rows)
        if length == 0:
            raise ValueError("input_ids: every example in the batch is empty; expected [CLS] ... [SEP] token ids")
        padded = {
            "input_ids": _pad_rows(rows, length, self.pad_token_id, np.int64),
            "attention_mask": _length_mask([len(row) for row in rows], length),
            "token_type_ids": _pad_rows(types, length, 0, np.int64),
        }
        if owners is not None:
            padded["text_subtitle_index"] = _pad_rows(owners, length, -1, np.int64)
        return padded

    def _frame_subtitle_index(self, examples: Sequence[Mapping[str, Any]], donors: Sequence[int], width: int) -> torch.Tensor:
        """The subtitle of each of the example's own frames (-1: unmatched or padding), from the donor's timestamps."""
        index = torch.full((len(examples), width), -1, dtype=torch.long)
        for b, d in enumerate(donors):
            count = len(examples[b]["frame_features"])
            starts = _as_array(examples[d]["subtitle_starts"], "subtitle_starts", d, 1, np.float64)
            ends = _as_array(examples[d]["subtitle_ends"], "subtitle_ends", d, 1, np.float64)
            if len(starts) != len(examples[d]["subtitle_input_ids"]):
                raise ValueError(
                    f"subtitle_starts of example {d} has {len(starts)} times for {len(examples[d]['subtitle_input_ids'])} subtitles"
                )
            try:
                aligned = align_subtitles_to_frames(starts.tolist(), ends.tolist(), count, self.frame_interval)
            except ValueError as error:
                raise ValueError(f"example {d}: {error}") from error
            index[b, :count] = torch.from_numpy(aligned)
        return index

    @staticmethod
    def _pad_items(
        examples: Sequence[Mapping[str, Any]], field: str, fixed: int | None, count_field: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
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

    @staticmethod
    def _pad_per_item(
        examples: Sequence[Mapping[str, Any]], field: str, lengths: torch.Tensor, width: int, fill: float, dtype: Any
    ) -> torch.Tensor:
        rows = []
        for b, example in enumerate(examples):
            rows.append(_as_array(example[field], field, b, 1, dtype))
            if len(rows[-1]) != int(lengths[b]):
                raise ValueError(
                    f"{field} of example {b} has {len(rows[-1])} values, expected {int(lengths[b])} (one per region)"
                )
        return _pad_rows(rows, width, fill, dtype)

    def _regions(self, examples: Sequence[Mapping[str, Any]], batch: dict[str, torch.Tensor]) -> None:
        features, mask = self._pad_items(examples, "region_features", self.num_regions, "num_regions")
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
        if self.region_masker is None:
            return
        masked, selected, targets = self.region_masker(features, mask)
        batch.update(region_features=masked, masked_regions=selected)
        if "region_feature" in self.objectives:
            batch["region_feature_targets"] = targets
        if "region_class" in self.objectives:
            classes, _ = self._pad_items(examples, "region_class_targets", features.shape[1], "num_regions")
            for b, example in enumerate(examples):
                if len(example["region_class_targets"]) != int(lengths[b]):
                    raise ValueError(
                        f"region_class_targets of example {b} has {len(example['region_class_targets'])} rows, "
                        f"expected {int(lengths[b])} (one per region)"
                    )
            batch["region_class_targets"] = classes
        width = features.shape[1]
        for kind in ("object", "attribute"):
            if f"region_{kind}" not in self.objectives:
                continue
            batch[f"region_{kind}_labels"] = self._pad_per_item(
                examples, f"region_{kind}_labels", lengths, width, IGNORE_INDEX, np.int64
            )
            confidences = f"region_{kind}_confidences"
            if all(example.get(confidences) is not None for example in examples):
                batch[confidences] = self._pad_per_item(examples, confidences, lengths, width, 0.0, np.float32)
            else:
                batch[confidences] = (batch[f"region_{kind}_labels"] != IGNORE_INDEX).float()

    def _frames(self, examples: Sequence[Mapping[str, Any]], batch: dict[str, torch.Tensor]) -> None:
        features, mask = self._pad_items(examples, "frame_features", self.num_frames, "num_frames")
        empty = (mask.sum(1) == 0).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"frame_features of examples {empty} have no frame (a video shorter than one clip); expected at least one")
        if self.frame_shuffler is not None:
            features, batch["frame_order_labels"] = self.frame_shuffler(features, mask)
        batch.update(frame_features=features, frame_attention_mask=mask)
        if self.frame_masker is not None:
            masked, selected, targets = self.frame_masker(features, mask)
            batch.update(frame_features=masked, masked_frames=selected, frame_feature_targets=targets)

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Collate a list of examples into a padded, masked batch."""
        text_only = None
        if self.text_only_sampler is not None and len(examples) and all(isinstance(e, Mapping) for e in examples):
            image_text = sum(not example.get("text_only") for example in examples)
            examples = [*examples, *self.text_only_sampler.corpus_rows(image_text)]
            template = next((example for example in examples if example.get("region_features") is not None), None)
            if template is None and self.region_feature_size is not None:
                template = {"region_features": np.zeros((1, self.region_feature_size), np.float32)}
                if self.region_class_size is not None:
                    template["region_class_targets"] = np.zeros((1, self.region_class_size), np.float32)
            examples = [
                _text_only_placeholder(example, template) if example.get("text_only") else example for example in examples
            ]
            text_only = self.text_only_sampler(examples)
        self._validate(examples)
        source_key = "video_id" if self.frames else "image_id"  # regions and frames (ActBERT): the video's regions
        sources = [self._source(example, i, source_key) for i, example in enumerate(examples)]
        donors = list(range(len(examples)))
        visual = examples
        batch: dict[str, torch.Tensor] = {}
        if self.caption_swapper is not None:
            if self.caption_swapper.probability > 0:
                self._require_sources(examples, source_key)
            # Questions and text-only rows (a text corpus) are neither matching positives nor negatives.
            matchable = torch.tensor([not (_is_question(example) or example.get("text_only")) for example in examples])
            donors, batch["matched_labels"], image_donors = self.caption_swapper(sources, matchable)
            visual = [examples[d] for d in image_donors]
            sources = [sources[d] for d in image_donors]
        batch.update(self._pad_tokens(examples, donors))
        if self.regions:
            self._regions(visual, batch)
        if self.frames:
            self._frames(visual, batch)
        if self.subtitles:
            batch["frame_subtitle_index"] = self._frame_subtitle_index(examples, donors, batch["frame_features"].shape[1])
        text_masker = self.token_masker or self.span_masker
        free_tokens = batch["attention_mask"]
        if self.scene_graph_masker is not None:
            batch["input_ids"], scene_labels, scene_selected = self.scene_graph_masker(batch["input_ids"], free_tokens)
            batch.update({f"scene_{kind}_labels": labels for kind, labels in scene_labels.items()})
            free_tokens = free_tokens * ~scene_selected
        if text_masker is not None:
            batch["input_ids"], batch["labels"] = text_masker(batch["input_ids"], free_tokens)
        if self.answer_sampler is not None:
            answers = torch.tensor([self.answer_sampler.label(example, i) for i, example in enumerate(examples)])
            if "matched_labels" in batch:
                answers[batch["matched_labels"] == 0] = IGNORE_INDEX
            batch["answer_labels"] = answers.long()
        if text_only is not None:
            batch["text_only"] = text_only
        if "actions" in self.kinds:
            batch["action_labels"] = torch.tensor(
                [IGNORE_INDEX if ex.get("action_label") is None else int(ex["action_label"]) for ex in visual],
                dtype=torch.long,
            )
        if "contrastive" in self.kinds:
            batch["contrastive_positive_mask"] = contrastive_positive_mask(sources)
        if "labels" not in batch and all(example.get("labels") is not None for example in examples):
            # The examples' own targets (VQA answer scores, say) when no objective writes ``labels``.
            batch["labels"] = DataCollatorForVisionLanguage(pad_token_id=self.pad_token_id).pad_field(
                "labels", [field_tensor(example["labels"], "labels", index) for index, example in enumerate(examples)]
            )
        return batch


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
    """Compose the collator of an architecture from its config: the objectives come from ``config.loss_weights``
    (weight 0 = off), the modalities and the region masking variant from the config class (``modalities``,
    ``region_mask_style``: no guessing from ``model_type``), ``num_regions`` / ``num_frames`` / ``whole_word_masking`` /
    ``text_only_probability`` / ``negative_image_probability`` (and, for ``text_mlm``,
    ``region_feature_size`` and ``num_object_labels``) from the config when it defines them; a config with
    ``text_from_subtitles`` (HERO) gets ``subtitles=True`` with its ``frame_interval``, one with ``frame_mask_style``
    (ActBERT, VideoBERT) its split of the masked frames. ``kwargs`` override any choice."""
    weights = getattr(config, "loss_weights", None)
    if not isinstance(weights, Mapping):
        raise ValueError(f"config.loss_weights must be a mapping of objective name to weight, got {weights!r}")
    modalities = getattr(config, "modalities", None)
    if not modalities or not set(modalities) <= {"regions", "frames"}:
        raise ValueError(
            f"config.modalities must name the visual inputs ('regions', 'frames' or both), got {modalities!r}; "
            "configs of the package inherit it from VLPretrainConfig"
        )
    options: dict[str, Any] = {
        "regions": "regions" in modalities,
        "frames": "frames" in modalities,
        "region_mask_style": config.region_mask_style or "zero",
        "seed": seed,
    }
    for field in ("num_regions", "num_frames"):
        if getattr(config, field, None) is not None:
            options[field] = int(getattr(config, field))
    if "text_mlm" in weights and getattr(config, "region_feature_size", None) is not None:
        options["region_feature_size"] = int(config.region_feature_size)
        if getattr(config, "num_object_labels", None) is not None:
            options["region_class_size"] = int(config.num_object_labels)
    for field in ("whole_word_masking", "text_only_probability", "negative_image_probability"):
        if getattr(config, field, None) is not None:
            options[field] = getattr(config, field)
    if getattr(config, "frame_mask_style", None) is not None:
        options["frame_mask_style"] = tuple(config.frame_mask_style)
    if getattr(config, "text_from_subtitles", False):
        options.update(subtitles=True, frame_interval=float(config.frame_interval))
    options.update(kwargs)
    return MultimodalCollator.from_tokenizer(tokenizer, weights, **options)


class SceneGraphMasker(SeededMasker):
    """ERNIE-ViL's scene-graph masking: parse each caption into objects, attributes and relationships
    (``scene_graph.parse_scene_graph``), select ``probability`` (30 %) of each kind's nodes and mask their caption
    tokens, 80 % [MASK] / 10 % random token / 10 % unchanged (one draw per node). Labels per kind hold the original
    ids of the selected nodes' tokens. The object words of a selected attribute or relationship stay unmasked
    unless that object is itself selected.

    Captions are rebuilt into words from WordPieces (``##`` pieces join the previous piece). A caption with no
    scene graph keeps MLM only; ``counts`` tallies parsed and unparsed captions.
    """

    name = "scene_graph"
    KINDS = ("object", "attribute", "relation")

    def __init__(
        self,
        token_strings: Sequence[str],
        mask_token_id: int,
        special_token_ids: Iterable[int],
        probability: float = 0.3,
        mask_ratio: float = 0.8,
        random_ratio: float = 0.1,
        seed: int = 0,
    ):
        super().__init__(seed)
        if not token_strings:
            raise ValueError("token_strings: the tokenizer's vocabulary (id -> token) is required for scene-graph masking")
        self.token_strings = list(token_strings)
        self.mask_token_id = int(mask_token_id)
        self.special_token_ids = set(int(i) for i in special_token_ids)
        self.probability = _check_probability("scene_graph_probability", probability)
        self.mask_ratio = _check_probability("mask_ratio", mask_ratio)
        self.random_ratio = _check_probability("random_ratio", random_ratio)
        self.random_token_ids = torch.tensor(
            [index for index in range(len(self.token_strings)) if index not in self.special_token_ids]
        )
        self.counts = {"parsed": 0, "unparsed": 0}

    def words(self, ids: Sequence[int], valid: Sequence[bool]) -> tuple[list[str], list[list[int]]]:
        """The caption's words and the token positions of each, skipping special tokens and padding."""
        words: list[str] = []
        positions: list[list[int]] = []
        previous = -2
        for position, (token_id, keep) in enumerate(zip(ids, valid)):
            if not keep or token_id in self.special_token_ids or not 0 <= token_id < len(self.token_strings):
                continue
            piece = self.token_strings[token_id]
            if piece.startswith("##") and words and previous == position - 1:
                words[-1] += piece[2:]
                positions[-1].append(position)
            else:
                words.append(piece.lower())
                positions.append([position])
            previous = position
        return words, positions

    def __call__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """Return the masked ids, the labels of each kind (``object`` / ``attribute`` / ``relation``, -100 where
        not selected) and the boolean (B, T) positions selected by any kind (left out of plain MLM)."""
        masked = input_ids.clone()
        labels = {kind: torch.full_like(input_ids, IGNORE_INDEX) for kind in self.KINDS}
        selected = torch.zeros_like(input_ids, dtype=torch.bool)
        for row in range(input_ids.shape[0]):
            words, positions = self.words(input_ids[row].tolist(), attention_mask[row].bool().tolist())
            graph = parse_scene_graph(words)
            if graph is None:
                self.counts["unparsed"] += 1
                continue
            self.counts["parsed"] += 1
            nodes = {
                "object": list(graph.objects),
                "attribute": [indices for _, indices in graph.attributes],
                "relation": [indices for _, _, indices in graph.relations],
            }
            for kind in self.KINDS:
                if not nodes[kind]:
                    continue
                draws = self._uniform((len(nodes[kind]), 2))
                for (chosen, branch), word_indices in zip(draws.tolist(), nodes[kind]):
                    if chosen >= self.probability:
                        continue
                    tokens = [p for index in word_indices for p in positions[index] if not selected[row, p]]
                    for position in tokens:
                        labels[kind][row, position] = input_ids[row, position]
                        selected[row, position] = True
                        if branch < self.mask_ratio:
                            masked[row, position] = self.mask_token_id
                        elif branch < self.mask_ratio + self.random_ratio:
                            pick = int(torch.randint(len(self.random_token_ids), (1,), generator=self.generator))
                            masked[row, position] = self.random_token_ids[pick]
        return masked, labels, selected
