"""Seeded maskers of the pretraining objectives, each applied to a whole padded batch at once.

Each masker is a small named object with its own random stream derived from one seed, so a run is reproducible and
each objective's sampling can be tested on its own. :class:`MaskingSettings` holds the rates and variants a model
config chooses, :class:`TokenVocabulary` the token ids the text maskers need, and :class:`Maskers` the maskers one
collator composes.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

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
# "vilbert": jiasenlu/vilbert_beta vilbert/datasets/concept_cap_dataset.py (random_region); "lxmert": airsplay/lxmert
# src/pretrain/lxmert_pretrain.py (random_feat).
REGION_MASK_STYLES: dict[str, tuple[float, float]] = {
    "zero": (1.0, 0.0),
    "vilbert": (0.9, 0.0),
    "lxmert": (0.8, 0.1),
}


def continuation_token_ids(tokenizer: Any) -> list[int]:
    """The ids of a WordPiece tokenizer's ``##`` continuation pieces (for whole-word masking)."""
    return [index for token, index in tokenizer.get_vocab().items() if token.startswith("##")]


def _derive_seed(seed: int, name: str) -> int:
    """Give each named masker its own stream derived from one collator seed."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode("utf-8"))) % (2**63 - 1)


def _check_probability(name: str, value: float) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
    return float(value)


def _maskable_tokens(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, special_token_ids: torch.Tensor
) -> torch.Tensor:
    """The (B, T) real tokens that are not special tokens: the candidates of token and span masking."""
    if input_ids.shape != attention_mask.shape or input_ids.dim() != 2:
        raise ValueError(
            f"input_ids and attention_mask must both be (batch, length); got {tuple(input_ids.shape)} and "
            f"{tuple(attention_mask.shape)}"
        )
    return attention_mask.bool() & ~torch.isin(input_ids, special_token_ids)


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
    token / 10 % unchanged (google-research/bert create_pretraining_data.py). Special tokens and padding are never
    selected.

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
        return cls(
            mask_token_id=tokenizer.mask_token_id,
            vocab_size=len(tokenizer),
            special_token_ids=tokenizer.all_special_ids,
            continuation_token_ids=continuation_token_ids(tokenizer),
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
        candidates = _maskable_tokens(input_ids, attention_mask, self.special_token_ids)
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

    def _span_lengths(self, count: int) -> torch.Tensor:
        """``count`` geometric span lengths with mean ``mean_span_length``, clipped to ``max_span_length``."""
        draws = self._uniform((count,)).double()
        success = 1.0 / self.mean_span_length
        if success >= 1.0:
            return torch.ones(count, dtype=torch.long)
        lengths = 1 + torch.floor(torch.log1p(-draws) / np.log1p(-success)).long()
        return lengths.clamp(max=self.max_span_length)

    def _select_spans(self, candidates: torch.Tensor) -> torch.Tensor:
        """Draw one span per row in each round, for all rows at once, until every row covers its budget (or has
        tried ten times its candidate count); a span that would cover a special token or padding is redrawn."""
        width = candidates.shape[1]
        counts = candidates.sum(1)
        budget = torch.round(self.probability * counts.double()).long()
        ends = torch.cumsum(candidates.long(), 1)  # candidates of each row up to and including each position
        # running[b, t]: candidates of row b before position t; a span [start, stop) is clean when the difference
        # equals its length.
        running = torch.nn.functional.pad(ends, (1, 0))
        columns = torch.arange(width)
        selected = torch.zeros_like(candidates)
        attempts = torch.zeros_like(counts)
        while True:
            covered = selected.sum(1)
            active = (covered < budget) & (attempts < 10 * counts)
            if not bool(active.any()):
                return selected
            attempts += active.long()
            lengths = torch.minimum(self._span_lengths(len(counts)), budget - covered).clamp(min=0)
            picks = (self._uniform((len(counts),)) * counts).long()
            starts = torch.searchsorted(ends, (picks + 1)[:, None]).squeeze(1)
            stops = (starts + lengths).clamp(max=width)
            clean = running.gather(1, stops[:, None]) - running.gather(1, starts[:, None])
            accepted = active & (starts + lengths <= width) & (clean.squeeze(1) == lengths)
            selected |= accepted[:, None] & (columns >= starts[:, None]) & (columns < stops[:, None])

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(masked_input_ids, labels)`` with whole spans masked."""
        candidates = _maskable_tokens(input_ids, attention_mask, self.special_token_ids)
        selected = self._select_spans(candidates)
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

    @classmethod
    def for_regions(cls, style: str = "zero", probability: float = 0.15, seed: int = 0) -> FeatureMasker:
        """Region masking in one of the ``REGION_MASK_STYLES`` (a config's ``region_mask_style``)."""
        if style not in REGION_MASK_STYLES:
            raise ValueError(f"region_mask_style must be one of {sorted(REGION_MASK_STYLES)}, got {style!r}")
        zero, swap = REGION_MASK_STYLES[style]
        return cls(probability, zero, swap, seed=seed, name="regions")

    @classmethod
    def for_frames(
        cls, style: tuple[float, float] = (1.0, 0.0), probability: float = 0.15, min_masked: int = 0, seed: int = 0
    ) -> FeatureMasker:
        """Frame masking with a config's ``frame_mask_style``: the (zeroed, swapped) shares of the masked frames."""
        if len(style) != 2:
            raise ValueError(f"frame_mask_style must be a (zeroed, swapped) pair of shares, got {style!r}")
        return cls(probability, *style, min_masked, seed=seed, name="frames")

    def _select(self, valid: torch.Tensor) -> torch.Tensor:
        scores = self._uniform(valid.shape)
        selected = valid & (scores < self.probability)
        if self.min_masked:
            # A row short of ``min_masked`` also selects its unselected valid items with the lowest scores.
            shortfall = (valid.sum(1).clamp(max=self.min_masked) - selected.sum(1)).clamp(min=0)
            spare = torch.where(valid & ~selected, scores, torch.full_like(scores, 2.0))
            rank = spare.argsort(1).argsort(1)
            selected |= rank < shortfall[:, None]
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
    every one of them (uniform over such derangements); a single selected frame stays in place (its label is its own
    index).
    """

    name = "frame_order"

    def __init__(self, probability: float = 0.15, seed: int = 0):
        super().__init__(seed)
        self.probability = _check_probability("probability", probability)

    def _derangements(self, counts: torch.Tensor) -> torch.Tensor:
        """A permutation of consecutive runs of ``counts`` items (flat indices) that moves every item of a run of two
        or more: uniform over derangements, by redrawing the runs that kept an item in place, all runs at once."""
        run = torch.repeat_interleave(torch.arange(len(counts)), counts)
        identity = torch.arange(len(run))
        order = identity.clone()
        pending = counts >= 2
        while bool(pending.any()):
            # Keys in [run, run + 1) sort every run within its own span of the flat order.
            draw = torch.argsort(self._uniform((len(run),)).double() + run)
            order = torch.where(pending[run], draw, order)
            pending &= torch.bincount(run[order == identity], minlength=len(counts)) > 0
        return order

    def __call__(self, features: torch.Tensor, valid_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(shuffled_features, frame_order_labels)`` for features (B, F, D) and a mask (B, F)."""
        if features.dim() != 3 or valid_mask.shape != features.shape[:2]:
            raise ValueError(
                f"frame features must be (batch, frames, dim) with a (batch, frames) mask; got "
                f"{tuple(features.shape)} and {tuple(valid_mask.shape)}"
            )
        selected = valid_mask.bool() & (self._uniform(valid_mask.shape) < self.probability)
        rows, positions = torch.nonzero(selected, as_tuple=True)
        sources = positions[self._derangements(selected.sum(1))]
        labels = torch.full(valid_mask.shape, IGNORE_INDEX, dtype=torch.long)
        labels[rows, positions] = sources
        shuffled = features.clone()
        shuffled[rows, positions] = features[rows, sources]
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

    With ``hard_probability`` of the caption negatives the donor is not drawn uniformly but is the example of
    another image whose caption shares the most tokens with the example's own (Jaccard overlap of the token-id
    sets, ties broken at random): "a small red circle" against an image described "a large red circle". A
    uniform donor almost never shares a caption's objects, so it can be told apart by coarse cues (how many
    objects, which colours appear at all); a hard one has to be checked object by object, as ranking a gallery
    of similar images needs.

    With ``paired_negatives`` k the collator adds k copies of every matchable example after the batch and passes
    their mask as ``paired``: those rows are always negatives (each side drawn as above, from the original
    examples only), so a caption is seen with its own image and against others in the same batch. The collator
    also leaves them out of the label objectives (see ``MultimodalCollator``).
    """

    name = "matching"

    def __init__(
        self,
        probability: float = 0.5,
        seed: int = 0,
        image_probability: float = 0.0,
        hard_probability: float = 0.0,
        paired_negatives: int = 0,
    ):
        super().__init__(seed)
        if isinstance(paired_negatives, bool) or not isinstance(paired_negatives, int) or paired_negatives < 0:
            raise ValueError(f"paired_negatives must be a whole number >= 0, got {paired_negatives!r}")
        self.paired_negatives = paired_negatives
        self.probability = _check_probability("probability", probability)
        self.image_probability = _check_probability("image_probability", image_probability)
        self.hard_probability = _check_probability("hard_probability", hard_probability)

    def __call__(
        self,
        sources: Sequence[Any],
        matchable: torch.Tensor | None = None,
        captions: Sequence[Sequence[int]] | None = None,
        paired: torch.Tensor | None = None,
    ) -> tuple[list[int], torch.Tensor, list[int]]:
        """Given each example's image (or video) identity (and optionally which examples take part in matching,
        the caption token ids that hard negatives compare, and which rows are added negatives), return the caption
        donor index of every example, the matched labels (1, 0, or -100 when not matchable) and the image donor
        index of every example."""
        count = len(sources)
        codes = {source: code for code, source in enumerate(dict.fromkeys(sources))}
        image = torch.tensor([codes[source] for source in sources], dtype=torch.long)
        if matchable is None:
            matchable = torch.ones(count, dtype=torch.bool)
        swap = self._uniform((count,)) < self.probability
        donor_rows = matchable if paired is None else matchable & ~paired
        if paired is not None:  # added negative rows: always swapped, never donors
            swap |= paired
        # Drawn only when image negatives are on, so caption-only runs keep their random stream.
        swap_image = self._uniform((count,)) < self.image_probability if self.image_probability else torch.zeros_like(swap)
        # Every swapped example draws its donor uniformly among the matchable examples of other images, all at once.
        others = (image[None, :] != image[:, None]) & donor_rows[None, :]
        counts = others.sum(1)
        swap &= (counts > 0) & matchable
        picks = (self._uniform((count,)) * counts).long()
        donor = torch.searchsorted(torch.cumsum(others.long(), 1), (picks + 1)[:, None]).squeeze(1).clamp(max=count - 1)
        if self.hard_probability:  # drawn only when on, so runs without hard negatives keep their random stream
            if captions is None or len(captions) != count:
                raise ValueError(f"captions: hard negatives need the caption token ids of all {count} examples")
            hard = (self._uniform((count,)) < self.hard_probability) & ~swap_image
            donor = torch.where(hard, most_similar_caption(captions, others, self._uniform((count, count))), donor)
        itself = torch.arange(count)
        donors = torch.where(swap & ~swap_image, donor, itself)
        image_donors = torch.where(swap & swap_image, donor, itself)
        matched = torch.where(matchable, (~swap).long(), torch.full_like(image, IGNORE_INDEX))
        return donors.tolist(), matched, image_donors.tolist()


def most_similar_caption(
    captions: Sequence[Sequence[int]], allowed: torch.Tensor, tie_breaks: torch.Tensor
) -> torch.Tensor:
    """For every caption (token ids), the ``allowed`` (B, B) other caption whose token-id set overlaps its own the
    most (Jaccard; ``tie_breaks`` in [0, 1) order equal overlaps); a caption with nothing allowed gets itself. The
    hard negative of pretraining matching and of retrieval fine-tuning."""
    if len(captions) == 0:
        return torch.zeros(0, dtype=torch.long)
    ids = [torch.tensor(np.asarray(caption, dtype=np.int64)).flatten() for caption in captions]
    rows = torch.repeat_interleave(torch.arange(len(ids)), torch.tensor([len(caption) for caption in ids], dtype=torch.long))
    vocabulary, token = torch.unique(torch.cat(ids), return_inverse=True)
    present = torch.zeros(len(ids), len(vocabulary))
    present[rows, token] = 1.0
    shared = present @ present.T
    sizes = present.sum(1)
    overlap = shared / (sizes[:, None] + sizes[None, :] - shared).clamp(min=1)
    # Unequal overlaps of sets of at most n tokens differ by more than 1 / n^2; the tie break stays below that.
    longest = max([1, *(len(caption) for caption in ids)])
    best = (overlap + tie_breaks / (2 * longest**2)).masked_fill(~allowed, -1.0).argmax(1)
    return torch.where(allowed.any(1), best, torch.arange(len(ids)))


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


def contrastive_positive_mask(sources: Sequence[Any]) -> torch.Tensor:
    """In-batch contrastive positives: (B, B) boolean, True on the diagonal and wherever two examples show the
    same image or video (so a loss can avoid treating a duplicate as a negative)."""
    codes = {source: code for code, source in enumerate(dict.fromkeys(sources))}
    ids = torch.tensor([codes[source] for source in sources])
    return ids[:, None] == ids[None, :]


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
        cells: dict[str, list[tuple[int, int]]] = {kind: [] for kind in self.KINDS}
        replacements: list[tuple[int, int, int]] = []
        for row, (ids, valid) in enumerate(zip(input_ids.tolist(), attention_mask.bool().tolist())):
            nodes = self._node_tokens(ids, valid)
            taken: set[int] = set()
            for kind in self.KINDS:
                if nodes and nodes[kind]:
                    self._select_nodes(row, nodes[kind], taken, cells[kind], replacements)
        masked = input_ids.clone()
        labels = {kind: torch.full_like(input_ids, IGNORE_INDEX) for kind in self.KINDS}
        selected = torch.zeros_like(input_ids, dtype=torch.bool)
        for kind, chosen in cells.items():
            if chosen:
                rows, positions = torch.tensor(chosen).T
                labels[kind][rows, positions] = input_ids[rows, positions]
                selected[rows, positions] = True
        if replacements:
            rows, positions, values = torch.tensor(replacements).T
            masked[rows, positions] = values
        return masked, labels, selected

    def _node_tokens(self, ids: Sequence[int], valid: Sequence[bool]) -> dict[str, list[list[int]]] | None:
        """The token positions of every node of the caption's scene graph, per kind (None when it has none)."""
        words, positions = self.words(ids, valid)
        graph = parse_scene_graph(words)
        if graph is None:
            self.counts["unparsed"] += 1
            return None
        self.counts["parsed"] += 1
        nodes = {
            "object": list(graph.objects),
            "attribute": [indices for _, indices in graph.attributes],
            "relation": [indices for _, _, indices in graph.relations],
        }
        return {kind: [[p for i in indices for p in positions[i]] for indices in nodes[kind]] for kind in self.KINDS}

    def _select_nodes(
        self,
        row: int,
        nodes: Sequence[Sequence[int]],
        taken: set[int],
        cells: list[tuple[int, int]],
        replacements: list[tuple[int, int, int]],
    ) -> None:
        """One draw per node for selection and one for the 80/10/10 branch; the selected nodes' tokens not yet
        taken by another node go to ``cells`` and their new ids (when changed) to ``replacements``."""
        randomised = []
        for (chosen, branch), node in zip(self._uniform((len(nodes), 2)).tolist(), nodes):
            if chosen >= self.probability:
                continue
            tokens = [position for position in node if position not in taken]
            for position in tokens:
                taken.add(position)
                cells.append((row, position))
                if branch < self.mask_ratio:
                    replacements.append((row, position, self.mask_token_id))
                elif branch < self.mask_ratio + self.random_ratio:
                    randomised.append(position)
        if randomised:
            picks = torch.randint(len(self.random_token_ids), (len(randomised),), generator=self.generator)
            new_ids = self.random_token_ids[picks].tolist()
            replacements.extend((row, position, new_id) for position, new_id in zip(randomised, new_ids))


def objective_names(objectives: Iterable[str] | Mapping[str, float]) -> tuple[str, ...]:
    """The enabled objectives of a name list or a ``loss_weights`` mapping (weight 0 = off), checked against
    ``OBJECTIVE_MASKERS``."""
    if isinstance(objectives, Mapping):
        names = [name for name, weight in objectives.items() if float(weight) > 0.0]
    elif isinstance(objectives, str):
        raise ValueError(f"objectives must be a list of names or a loss_weights mapping, got the string {objectives!r}")
    else:
        names = list(objectives)
    unknown = sorted(set(names) - set(OBJECTIVE_MASKERS))
    if unknown:
        raise ValueError(f"objectives: unknown names {unknown}; expected some of {sorted(OBJECTIVE_MASKERS)}")
    return tuple(dict.fromkeys(names))


def objective_kinds(objectives: Sequence[str]) -> set[str]:
    """What the objectives need from the collator: the ``OBJECTIVE_MASKERS`` values, plus token masking for
    ``text_mlm`` and action labels for ``masked_action``."""
    kinds = {OBJECTIVE_MASKERS[name] for name in objectives}
    if "text_only" in kinds:
        kinds.add("tokens")
    if "masked_action" in objectives:
        kinds.add("actions")
    if {"tokens", "span"} <= kinds:
        raise ValueError("objectives: 'mlm' and 'span' both write `labels`; enable only one of them")
    return kinds


@dataclasses.dataclass(frozen=True)
class TokenVocabulary:
    """The token ids a collator pads with and its text maskers draw from; ``token_strings`` (id -> WordPiece) lets
    the scene-graph masker rebuild words."""

    pad_token_id: int
    mask_token_id: int | None = None
    vocab_size: int | None = None
    special_token_ids: tuple[int, ...] = ()
    continuation_token_ids: tuple[int, ...] | None = None
    token_strings: tuple[str, ...] | None = None

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> TokenVocabulary:
        """Read pad, [MASK], special and ``##`` piece ids and the vocabulary from a BERT tokenizer."""
        if tokenizer.pad_token_id is None:
            raise ValueError("tokenizer has no pad token; set tokenizer.pad_token before collating")
        return cls(
            pad_token_id=int(tokenizer.pad_token_id),
            mask_token_id=tokenizer.mask_token_id,
            vocab_size=len(tokenizer),
            special_token_ids=tuple(tokenizer.all_special_ids),
            continuation_token_ids=tuple(continuation_token_ids(tokenizer)),
            token_strings=tuple(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))),
        )


@dataclasses.dataclass(frozen=True)
class MaskingSettings:
    """Rates and variants of the maskers; the defaults are the papers' 15 % with zeroed regions and frames.

    mask_probability / whole_word_masking: token masking (span masking uses the same rate).
    region_mask_probability / region_mask_style: region masking rate and variant (``REGION_MASK_STYLES``).
    frame_mask_probability / frame_mask_style / min_masked_frames: frame masking; the style gives the (zeroed,
        swapped with another video's frame) shares of the masked frames, the rest keep their features.
    frame_shuffle_probability: share of frames permuted for frame order modelling.
    negative_probability: share of examples made matching negatives; negative_image_probability: share of those
        negatives that keep their caption and take another example's image (ImageBERT); hard_negative_probability:
        share of the caption negatives whose caption is the most similar one of another image (see CaptionSwapper);
        paired_negatives: negative rows added next to every caption, trained on matching only (0 = none).
    sample_answers: draw QA labels in proportion to ``answer_scores`` (else the best answer).
    text_only_probability: share of image-text examples turned into text-only rows for ``text_mlm``.
    scene_graph_probability: share of each kind of scene-graph node masked (ERNIE-ViL).
    """

    mask_probability: float = 0.15
    whole_word_masking: bool = False
    region_mask_probability: float = 0.15
    region_mask_style: str = "zero"
    frame_mask_probability: float = 0.15
    frame_mask_style: tuple[float, float] = (1.0, 0.0)
    min_masked_frames: int = 0
    frame_shuffle_probability: float = 0.15
    negative_probability: float = 0.5
    negative_image_probability: float = 0.0
    hard_negative_probability: float = 0.0
    paired_negatives: int = 0
    sample_answers: bool = True
    text_only_probability: float = 0.0
    scene_graph_probability: float = 0.3

    def __post_init__(self):
        if self.region_mask_style not in REGION_MASK_STYLES:
            raise ValueError(
                f"region_mask_style must be one of {sorted(REGION_MASK_STYLES)}, got {self.region_mask_style!r}"
            )

    @classmethod
    def from_config(cls, config: Any) -> MaskingSettings:
        """The choices a model config declares: its class's ``region_mask_style`` and ``frame_mask_style``, and
        ``whole_word_masking`` / ``text_only_probability`` / ``negative_image_probability`` where it defines them."""
        values: dict[str, Any] = {"region_mask_style": getattr(config, "region_mask_style", None) or "zero"}
        if getattr(config, "frame_mask_style", None) is not None:
            values["frame_mask_style"] = tuple(config.frame_mask_style)
        for field in ("whole_word_masking", "text_only_probability", "negative_image_probability"):
            if getattr(config, field, None) is not None:
                values[field] = getattr(config, field)
        return cls(**values)


def _check_inputs_for(
    kinds: set[str], vocabulary: TokenVocabulary, text_corpus: Sequence[Sequence[int]] | None
) -> None:
    """Refuse objectives whose maskers lack token ids, and a text corpus without ``text_mlm``."""
    if kinds & {"tokens", "span"} and (vocabulary.mask_token_id is None or vocabulary.vocab_size is None):
        raise ValueError("mask_token_id and vocab_size are required for the 'mlm' and 'span' objectives")
    if "scene_graph" in kinds and (vocabulary.mask_token_id is None or vocabulary.token_strings is None):
        raise ValueError("mask_token_id and token_strings are required for the scene-graph objectives")
    if text_corpus is not None and "text_only" not in kinds:
        raise ValueError("text_corpus: the collator has no text_mlm objective to train on it")


@dataclasses.dataclass
class Maskers:
    """The maskers of one collator, None where no enabled objective needs one, in the order they are applied."""

    matching: CaptionSwapper | None = None
    frame_order: FrameShuffler | None = None
    tokens: TokenMasker | None = None
    span: SpanMasker | None = None
    regions: FeatureMasker | None = None
    frames: FeatureMasker | None = None
    answers: AnswerSampler | None = None
    scene_graph: SceneGraphMasker | None = None
    text_only: TextOnlySampler | None = None

    @classmethod
    def build(
        cls,
        kinds: set[str],
        vocabulary: TokenVocabulary,
        settings: MaskingSettings,
        seed: int = 0,
        text_corpus: Sequence[Sequence[int]] | None = None,
    ) -> Maskers:
        """The maskers the ``objective_kinds`` need, all seeded from ``seed``; ``text_corpus`` feeds ``text_mlm``."""
        _check_inputs_for(kinds, vocabulary, text_corpus)
        special = set(int(i) for i in vocabulary.special_token_ids) | {vocabulary.pad_token_id}
        mask_id = vocabulary.mask_token_id
        builders = {
            "matching": lambda: CaptionSwapper(
                settings.negative_probability,
                seed=seed,
                image_probability=settings.negative_image_probability,
                hard_probability=settings.hard_negative_probability,
                paired_negatives=settings.paired_negatives,
            ),
            "frame_order": lambda: FrameShuffler(settings.frame_shuffle_probability, seed=seed),
            "tokens": lambda: TokenMasker(
                mask_id,
                vocabulary.vocab_size,
                special,
                settings.mask_probability,
                whole_word=settings.whole_word_masking,
                continuation_token_ids=vocabulary.continuation_token_ids,
                seed=seed,
            ),
            "span": lambda: SpanMasker(mask_id, special, settings.mask_probability, seed=seed),
            "regions": lambda: FeatureMasker.for_regions(
                settings.region_mask_style, settings.region_mask_probability, seed=seed
            ),
            "frames": lambda: FeatureMasker.for_frames(
                settings.frame_mask_style, settings.frame_mask_probability, settings.min_masked_frames, seed=seed
            ),
            "answers": lambda: AnswerSampler(settings.sample_answers, seed=seed),
            "scene_graph": lambda: SceneGraphMasker(
                vocabulary.token_strings, mask_id, special, settings.scene_graph_probability, seed=seed
            ),
            "text_only": lambda: TextOnlySampler(settings.text_only_probability, seed=seed, corpus=text_corpus),
        }
        return cls(**{name: build() for name, build in builders.items() if name in kinds})

    def active(self) -> list[SeededMasker]:
        """The maskers in use, in the order they are applied."""
        maskers = (getattr(self, field.name) for field in dataclasses.fields(self))
        return [masker for masker in maskers if masker is not None]
