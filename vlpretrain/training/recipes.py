"""Pretraining, fine-tuning and evaluation recipes on the HF Trainer, shared by the CLI and the main job.

Nothing here branches on the architecture: the registry gives the config and model classes, the config's
``loss_weights`` give the objectives, and ``vlpretrain.data`` composes the matching collator.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback, TrainingArguments
from transformers.utils import logging

from ..data.collators import MultimodalCollator, collator_for_config
from ..data.maskers import most_similar_caption
from ..metrics.retrieval.ranking import retrieval_metrics
from ..metrics.vqa.accuracy import soft_score_accuracy
from ..processing.store import check_feature_provenance
from ..registry import architecture_for_config, get_architecture, model_class_for_name
from ..utils.progress import progress_bar
from .lora import lora_for_finetuning, write_lora_base
from .sources import (
    ArrowRows,
    TaskCollator,
    answer_vocabulary,
    caption_examples,
    default_tokenizer,
    load_source,
    padding_collator,
    pretraining_examples,
    source_label_sizes,
    text_corpus_examples,
    vqa_examples,
)
from .trainer import VLPretrainingTrainer

logger = logging.get_logger(__name__)
# Tokens per text-corpus segment (jackroos/VL-BERT general_corpus: SEQ_LEN = MIN_SEQ_LEN = 64).
TEXT_CORPUS_SEGMENT_LENGTH = 64

COLLATOR_STATE_FILE = "collator_state.safetensors"


@dataclass
class ModelArguments:
    """Which model to build or load."""

    model: str = field(metadata={"help": "architecture name (e.g. lxmert), a model folder or a Hub repo id to start from"})
    revision: str | None = field(default=None, metadata={"help": "branch, tag or commit when --model is a Hub repo id"})
    model_size: str = field(default="small", metadata={"help": "preset for a new model: tiny, small or base"})
    config_overrides: str = field(default="{}", metadata={"help": "JSON object of config values"})
    tokenizer: str | None = field(default=None, metadata={"help": "tokenizer folder (default: bert-base-uncased WordPiece)"})
    lora: bool = field(default=False, metadata={"help": "finetune: train a LoRA adapter on a model folder; save only the adapter"})
    lora_rank: int = field(default=8, metadata={"help": "LoRA rank r"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling alpha"})
    lora_dropout: float = field(default=0.0, metadata={"help": "dropout on the LoRA branch"})
    lora_target_modules: str | None = field(default=None, metadata={"help": "comma-separated module names (default: the architecture's)"})


@dataclass
class DataArguments:
    """Which data to train and evaluate on."""

    dataset: str = field(default="shapes", metadata={"help": "shapes, shapes-video, or a feature-store folder"})
    num_images: int = field(default=2000, metadata={"help": "images (or videos) generated for an embedded training set"})
    eval_images: int = field(default=300, metadata={"help": "images (or videos) generated for an embedded validation set"})
    captions_file: str | None = field(default=None, metadata={"help": "COCO-captions JSON for a feature store"})
    questions_file: str | None = field(default=None, metadata={"help": "VQA questions JSON for a feature store"})
    answers_file: str | None = field(default=None, metadata={"help": "VQA annotations JSON for a feature store"})
    max_text_length: int = field(default=20, metadata={"help": "tokens per caption or question"})
    gallery_size: int = field(default=100, metadata={"help": "images in the retrieval evaluation gallery"})
    retrieval_negatives: int = field(default=3, metadata={
        "help": "retrieval fine-tuning: distractor pairs ranked against each caption-image pair (softmax over the "
                "pair scores; a third are hard); 0 = binary matching on swapped captions"})
    pretraining_questions: int | None = field(default=None, metadata={
        "help": "pretraining with a QA objective: questions kept per image (drawn at random; default all); fewer make "
                "captions, the texts image-text matching trains on, a larger share of each batch"})
    hard_negatives: float = field(default=0.0, metadata={
        "help": "pretraining: share of image-text matching negatives whose caption is the batch's most similar caption "
                "of another image (most shared tokens) instead of a random one"})
    paired_negatives: int = field(default=0, metadata={
        "help": "pretraining: image-text matching negatives added next to every caption (0 = the paper's: half the "
                "captions swapped in place). Each pairs the caption with another image or its image with another "
                "caption (half each; --hard_negatives sets the hard share of the latter), and every caption keeps "
                "its own image, so a batch holds each positive next to its negatives. Costs k rows per caption"})
    text_corpus: str | None = field(default=None, metadata={
        "help": "text-only segments mixed into pretraining for a text_mlm objective: a .txt file (one segment a line) "
                "or a datasets folder with a 'text' column"})


def _overrides(text: str) -> dict[str, Any]:
    try:
        values = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"config_overrides: expected a JSON object, got {text!r} ({error})") from error
    if not isinstance(values, dict):
        raise ValueError(f"config_overrides: expected a JSON object, got {text!r}")
    return values


def build_config(model_args: ModelArguments, data_sizes: dict[str, int], tokenizer, num_answers: int, max_text_length: int):
    """A new config for ``model_args.model``: the size preset, then the values the tokenizer and the data decide.

    Data-decided values use the package-wide config field names (``vocab_size``, ``pad_token_id``, ``bos_token_id``
    (the tokenizer's ``[CLS]``), ``max_position_embeddings``, ``region_feature_size``, ``frame_feature_size``, ``num_object_labels``,
    ``num_attribute_labels``, ``num_qa_labels``) and are set only when the architecture's config declares them.
    """
    architecture = get_architecture(model_args.model)
    fields = {item.name for item in dataclasses.fields(architecture.config_class)}
    decided = dict(data_sizes, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                   bos_token_id=tokenizer.cls_token_id, num_qa_labels=max(num_answers, 1),
                   max_position_embeddings=max(64, max_text_length))
    values: dict[str, Any] = architecture.preset(model_args.model_size)
    values.update({key: value for key, value in decided.items() if key in fields})
    values.update(_overrides(model_args.config_overrides))
    return architecture.config_class(**values)


class ResumableCollator:
    """Wrap a masking collator and remember its random state before each batch it builds.

    The training data loader builds a batch or two ahead of the optimizer (accelerate looks one batch ahead),
    so the collator's state at save time is already past the next batch; the state recorded before the first
    batch not yet consumed is the one a resumed run must start from.
    """

    def __init__(self, collator: MultimodalCollator, history: int = 16):
        self.collator = collator
        self.calls = 0
        self.history: collections.deque[tuple[int, dict]] = collections.deque(maxlen=history)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        self.history.append((self.calls, self.collator.state_dict()))
        self.calls += 1
        return self.collator(examples)

    def statistics(self) -> dict[str, int]:
        """The wrapped collator's running counts (see ``MultimodalCollator.statistics``)."""
        return self.collator.statistics()

    def state_before(self, call: int) -> dict:
        """The collator state recorded just before building batch number ``call`` (0-based, this run)."""
        for index, state in self.history:
            if index == call:
                return state
        if call == self.calls:
            return self.collator.state_dict()
        raise RuntimeError(f"collator state before batch {call} was not kept (history holds {[i for i, _ in self.history]})")


class CollatorStateCallback(TrainerCallback):
    """Save the training collator's random state with every checkpoint and restore it on resume, so a resumed run
    draws exactly the masks and negatives the uninterrupted run would have drawn."""

    def __init__(self, collator: ResumableCollator, resume_from: str | None = None):
        self.collator = collator
        self.resume_from = resume_from
        self.start_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start_step = state.global_step
        if self.resume_from:
            folder = Path(self.resume_from)
            if (folder / COLLATOR_STATE_FILE).exists():
                tensors = load_file(str(folder / COLLATOR_STATE_FILE))
                seeds = json.loads((folder / "collator_seeds.json").read_text())
                self.collator.collator.load_state_dict(
                    {name: {"seed": seeds[name], "generator": tensors[name]} for name in seeds}
                )

    def on_save(self, args, state, control, **kwargs):
        consumed = (state.global_step - self.start_step) * args.gradient_accumulation_steps
        collator_state = self.collator.state_before(consumed)
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        save_file({name: value["generator"] for name, value in collator_state.items()}, str(folder / COLLATOR_STATE_FILE))
        (folder / "collator_seeds.json").write_text(json.dumps({name: value["seed"] for name, value in collator_state.items()}))


def _resume_path(training_args: TrainingArguments) -> str | None:
    resume = training_args.resume_from_checkpoint
    if resume in (None, False, "False", "false", ""):
        return None
    if resume in (True, "True", "true", "latest"):
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(training_args.output_dir) if os.path.isdir(training_args.output_dir) else None
        if last is None:
            raise ValueError(f"resume_from_checkpoint: no checkpoint-* folder in {training_args.output_dir}")
        return last
    if not os.path.isdir(resume):
        raise ValueError(f"resume_from_checkpoint: {resume} is not a checkpoint folder")
    return str(resume)


def _prepare_arguments(training_args: TrainingArguments) -> TrainingArguments:
    training_args.remove_unused_columns = False
    if not training_args.report_to or training_args.report_to == ["all"]:
        training_args.report_to = []
    return training_args


def pretrain(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments) -> dict[str, Any]:
    """Pretrain with every objective the config switches on; returns the final eval metrics and the saved folder."""
    if data_args.pretraining_questions is not None and data_args.pretraining_questions < 0:
        raise ValueError(f"pretraining_questions: expected a count >= 0, got {data_args.pretraining_questions}")
    if not 0.0 <= data_args.hard_negatives <= 1.0:
        raise ValueError(f"hard_negatives: expected a share in [0, 1], got {data_args.hard_negatives}")
    if data_args.paired_negatives < 0:
        raise ValueError(f"paired_negatives: expected a count >= 0, got {data_args.paired_negatives}")
    training_args = _prepare_arguments(training_args)
    tokenizer = default_tokenizer(model_args.tokenizer)
    train_source = load_source(data_args.dataset, "train", data_args.num_images, training_args.seed,
                                          data_args.captions_file, data_args.questions_file, data_args.answers_file)
    eval_source = _eval_source(data_args, training_args.seed)
    answers = _answers_or_empty(train_source)
    if Path(model_args.model).is_dir():
        # Overrides apply to the saved config (e.g. UniVL stage II from a stage-I folder: {"stage": 2, "loss_weights": ...}).
        model = model_class_for_name(_architectures(model_args.model)).from_pretrained(
            model_args.model, **_overrides(model_args.config_overrides)
        )
        config = model.config
    else:
        config = build_config(model_args, source_label_sizes(train_source), tokenizer, len(answers), data_args.max_text_length)
        model = get_architecture(model_args.model).model_class("pretraining")(config)
    check_feature_provenance(model, data_args.dataset)
    prepare = getattr(model, "prepare_for_training_data", None)
    if prepare is not None:  # data-dependent parts a model fits before training (VideoBERT's visual words)
        prepare(train_source)
    config.task_specific_params = {"pretraining_answers": answers}
    # Questions join the pretraining text only for a model with a QA objective (LXMERT mixes captions and
    # questions); the others pretrain on captions, as their papers do: a question such as "is there a red
    # square?" is not a description, so as a matching positive it is noise.
    question_answers = answers if config.loss_weights.get("qa") else None
    # ArrowRows: rows as zero-copy numpy views instead of nested Python lists (see bench/bench_input_path.py).
    questions = data_args.pretraining_questions
    train = ArrowRows(pretraining_examples(train_source, tokenizer, data_args.max_text_length, question_answers,
                                           questions, training_args.seed))
    evaluation = ArrowRows(pretraining_examples(eval_source, tokenizer, data_args.max_text_length, question_answers,
                                                questions, training_args.seed))
    corpus = _text_corpus(data_args, config, tokenizer, model_args.model)
    if data_args.hard_negatives:
        corpus["hard_negative_probability"] = data_args.hard_negatives
    if data_args.paired_negatives:
        # Every caption keeps its image (the positive); the added rows are its negatives, half on each side.
        corpus.update(paired_negatives=data_args.paired_negatives, negative_probability=0.0)
        if getattr(config, "negative_image_probability", None) is None:
            corpus["negative_image_probability"] = 0.5
    seed = training_args.seed + 1000 * training_args.process_index
    collator = ResumableCollator(collator_for_config(config, tokenizer, seed=seed, **corpus))
    resume = _resume_path(training_args)
    trainer = VLPretrainingTrainer(
        model=model, args=training_args, train_dataset=train, eval_dataset=evaluation, data_collator=collator,
        eval_data_collator=collator_for_config(config, tokenizer, seed=training_args.seed, **corpus),
        processing_class=tokenizer, callbacks=[CollatorStateCallback(collator, resume)],
    )
    trainer.train(resume_from_checkpoint=resume)
    metrics = trainer.evaluate()
    final = Path(training_args.output_dir) / "final"
    trainer.save_model(str(final))
    return {"metrics": metrics, "model_dir": str(final), "trainer": trainer}


def _text_corpus(data_args: DataArguments, config, tokenizer, model_name: str) -> dict[str, Any]:
    """The collator's ``text_corpus`` for a ``text_mlm`` objective (VL-BERT). Without ``--text_corpus`` the objective
    is switched off, so captions stay image-text pairs rather than standing in for a text corpus."""
    if not config.loss_weights.get("text_mlm"):
        if data_args.text_corpus:
            raise ValueError(f"text_corpus: {model_name} has no text_mlm objective to train on a text corpus")
        return {}
    if not data_args.text_corpus:
        logger.warning("text_mlm is switched off: it needs a text corpus (--text_corpus FILE.txt or a datasets folder)")
        config.loss_weights = {**config.loss_weights, "text_mlm": 0.0}
        return {}
    # The original's segments are 64 tokens; the model also needs a position for the regions and for [END].
    length = min(TEXT_CORPUS_SEGMENT_LENGTH, config.max_position_embeddings - 2)
    return {"text_corpus": text_corpus_examples(data_args.text_corpus, tokenizer, length)["input_ids"]}


def _eval_source(data_args: DataArguments, seed: int):
    return load_source(data_args.dataset, "validation", data_args.eval_images, seed,
                                  data_args.captions_file, data_args.questions_file, data_args.answers_file)


def _answers_or_empty(source) -> list[str]:
    try:
        return answer_vocabulary(source)
    except ValueError:
        return []


def _architectures(folder: str) -> str:
    config_path = Path(folder) / "config.json"
    if not config_path.exists():
        raise ValueError(f"model: {folder} has no config.json; expected a model folder")
    config = json.loads(config_path.read_text())
    architecture_for_config(config)
    names = config.get("architectures") or []
    if not names:
        raise ValueError(f"model: {config_path} lists no architectures")
    return names[0]


def _task_model(model_args: ModelArguments, task: str, data_sizes: dict[str, int], tokenizer, answers: list[str],
                max_text_length: int):
    """A task model: from a folder (pretrained encoder, fresh task head) or new from the architecture's presets. A
    retrieval head scores 2 classes whatever ``num_labels`` the folder's config holds (a VQA model's answers, say)."""
    label_config = {
        "vqa": {"id2label": dict(enumerate(answers)), "label2id": {a: i for i, a in enumerate(answers)}},
        "retrieval": {"num_labels": 2},
    }.get(task, {})
    if Path(model_args.model).is_dir():
        _architectures(model_args.model)
        architecture = architecture_for_config(json.loads((Path(model_args.model) / "config.json").read_text()))
        return architecture.model_class(task).from_pretrained(
            model_args.model, **label_config, **_overrides(model_args.config_overrides)
        )
    config = build_config(model_args, data_sizes, tokenizer, len(answers), max_text_length)
    for key, value in label_config.items():
        setattr(config, key, value)
    return get_architecture(model_args.model).model_class(task)(config)


def finetune(task: str, model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments) -> dict[str, Any]:
    """Fine-tune for ``vqa`` (soft-score BCE over the answer vocabulary) or ``retrieval`` (matching with swapped
    captions); evaluate on the validation split and save the model (with its tokenizer) to ``output_dir/final``."""
    if task not in ("vqa", "retrieval"):
        raise ValueError(f"task: expected 'vqa' or 'retrieval', got {task!r}")
    training_args = _prepare_arguments(training_args)
    tokenizer = default_tokenizer(model_args.tokenizer)
    train_source = load_source(data_args.dataset, "train", data_args.num_images, training_args.seed,
                                          data_args.captions_file, data_args.questions_file, data_args.answers_file)
    answers = answer_vocabulary(train_source) if task == "vqa" else []
    model = _task_model(model_args, task, source_label_sizes(train_source), tokenizer, answers, data_args.max_text_length)
    check_feature_provenance(model, data_args.dataset)
    if model_args.lora:
        model = lora_for_finetuning(model, model_args)
    seed = training_args.seed + 1000 * training_args.process_index
    if task == "vqa":
        train = ArrowRows(vqa_examples(train_source, tokenizer, answers, data_args.max_text_length))
        collator = TaskCollator(padding_collator(tokenizer, train_source, seed=seed), "answer_scores")
    elif data_args.retrieval_negatives > 0:
        train = ArrowRows(caption_examples(train_source, tokenizer, data_args.max_text_length))
        collator = RetrievalChoiceCollator(padding_collator(tokenizer, train_source), data_args.retrieval_negatives, seed)
    else:
        train = ArrowRows(caption_examples(train_source, tokenizer, data_args.max_text_length))
        collator = TaskCollator(padding_collator(tokenizer, train_source, ["matching"], seed=seed), "matched_labels")
    ranking = task == "retrieval" and data_args.retrieval_negatives > 0
    trainer = VLPretrainingTrainer(model=model, args=training_args, train_dataset=train, data_collator=collator,
                                   processing_class=tokenizer, compute_loss_func=choice_ranking_loss if ranking else None)
    trainer.train(resume_from_checkpoint=_resume_path(training_args))
    final = Path(training_args.output_dir) / "final"
    trainer.save_model(str(final))
    if model_args.lora:
        write_lora_base(final, model_args.model, task, model.get_base_model().config)
    metrics = evaluate_model(task, model, tokenizer, data_args, training_args.seed,
                             batch_size=training_args.per_device_eval_batch_size)
    (final / "eval_results.json").write_text(json.dumps(metrics, indent=2))
    return {"metrics": metrics, "model_dir": str(final), "trainer": trainer}


class RetrievalChoiceCollator:
    """Retrieval fine-tuning batches as multiple choice, as ViLBERT fine-tunes retrieval (jiasenlu/vilbert_beta
    ``vilbert/datasets/retreival_dataset.py``: each caption-image pair against three distractors, one of them hard).

    Every example (caption, its image) becomes a group of ``1 + negatives`` pairs, the true pair first, then
    distractors drawn from the batch's other images: the caption with another image, or the image with another
    caption, alternately. The first distractor of every three pairs the caption with the image whose own caption
    shares the most words with it (the hard one: "a small red circle" against an image described "a large red
    circle"); the others are drawn uniformly. ``labels`` holds the index of the true pair in each group (0) for
    :func:`choice_ranking_loss`. Binary matching on randomly swapped captions, the alternative, is learned from
    easy negatives only (another image almost never shares a caption's objects), which does not teach a model to
    rank a gallery of similar images.
    """

    def __init__(self, collator: MultimodalCollator, negatives: int = 3, seed: int = 0):
        if negatives < 1:
            raise ValueError(f"negatives must be at least 1, got {negatives}")
        self.collator = collator
        self.negatives = negatives
        self.generator = np.random.default_rng(seed)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        key = "video_id" if self.collator.layout.frames else "image_id"
        missing = [index for index, example in enumerate(examples) if example.get(key) is None]
        if missing:
            raise ValueError(f"{key}: examples {missing[:5]} have none; distractors must come from other images")
        images = np.asarray([str(example[key]) for example in examples])
        other_images = images[None, :] != images[:, None]
        if not other_images.any(1).all():
            raise ValueError("examples: a retrieval batch needs at least two different images")
        # The most similar caption of another image, ties broken at random.
        tie_breaks = torch.from_numpy(self.generator.random(other_images.shape))
        hardest_of = most_similar_caption([example["input_ids"] for example in examples], torch.from_numpy(other_images),
                                          tie_breaks).tolist()
        pairs = []
        for index, example in enumerate(examples):
            others = np.flatnonzero(other_images[index])
            pairs.append(example)
            for position in range(self.negatives):
                other = hardest_of[index] if position % 3 == 0 else others[self.generator.integers(len(others))]
                if position % 2 == 0:  # the caption with another image
                    pairs.append(dict(examples[other], input_ids=example["input_ids"]))
                else:  # the image with another caption
                    pairs.append(dict(example, input_ids=examples[other]["input_ids"]))
        batch = self.collator(pairs)
        batch["labels"] = torch.zeros(len(examples), dtype=torch.long)
        return batch


def pair_scores(output) -> torch.Tensor:
    """Matching scores of a retrieval model's output: its ``scores``, or matched minus mismatched logit."""
    return output.scores if output.get("scores") is not None else output.logits[:, 1] - output.logits[:, 0]


def choice_ranking_loss(outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
    """Softmax cross-entropy over each group's pair scores (:class:`RetrievalChoiceCollator`); ``labels`` holds the
    index of the true pair of every group."""
    return F.cross_entropy(pair_scores(outputs).view(len(labels), -1).float(), labels)


@torch.no_grad()
def evaluate_model(task: str, model, tokenizer, data_args: DataArguments, seed: int = 0, batch_size: int = 64) -> dict[str, float]:
    """VQA: soft accuracy and the majority-answer baseline; retrieval: recall@1/5/10 and median rank, both ways."""
    model.eval()
    source = _eval_source(data_args, seed)
    device = next(model.parameters()).device
    padder = padding_collator(tokenizer, source, seed=seed)
    if task == "vqa":
        answers = [model.config.id2label[index] for index in range(model.config.num_labels)]
        examples = ArrowRows(vqa_examples(source, tokenizer, answers, data_args.max_text_length))
        collator = TaskCollator(padder, "answer_scores")
        logits, scores = [], []
        for start in progress_bar(range(0, len(examples), batch_size), "evaluating VQA", unit="batch"):
            batch = collator([examples[index] for index in range(start, min(start + batch_size, len(examples)))])
            scores.append(batch.pop("labels"))
            logits.append(model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu())
        targets = torch.cat(scores).numpy()
        majority = int(targets.sum(0).argmax())
        return {
            "vqa_accuracy": soft_score_accuracy(torch.cat(logits).numpy(), targets),
            "majority_answer_accuracy": soft_score_accuracy(np.full(len(targets), majority), targets),
            "num_questions": len(targets),
        }
    if task != "retrieval":
        raise ValueError(f"task: expected 'vqa' or 'retrieval', got {task!r}")
    gallery = ArrowRows(caption_examples(source.select(range(min(data_args.gallery_size, len(source)))), tokenizer,
                                         data_args.max_text_length, first_only=True))
    rows = [gallery[index] for index in range(len(gallery))]
    similarity = np.zeros((len(rows), len(rows)), np.float32)
    pairs = [(text, image) for text in range(len(rows)) for image in range(len(rows))]
    for start in progress_bar(range(0, len(pairs), batch_size), "scoring gallery pairs", unit="batch"):
        chunk = pairs[start : start + batch_size]
        examples = [dict(rows[image], input_ids=rows[text]["input_ids"]) for text, image in chunk]
        batch = padder(examples)
        scores = pair_scores(model(**{k: v.to(device) for k, v in batch.items()}))
        for (text, image), score in zip(chunk, scores.float().cpu().tolist()):
            similarity[text, image] = score
    return retrieval_metrics(similarity)


def evaluate_folder(task: str, model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments) -> dict[str, float]:
    """Evaluate the fine-tuned model saved in ``model_args.model`` (a folder) on the validation split."""
    if not Path(model_args.model).is_dir():
        raise ValueError(f"model: evaluate needs a fine-tuned model folder, got {model_args.model!r}")
    model = model_class_for_name(_architectures(model_args.model)).from_pretrained(model_args.model)
    tokenizer = default_tokenizer(model_args.tokenizer or (model_args.model if (Path(model_args.model) / "tokenizer_config.json").exists() else None))
    model.to(training_args.device)
    return evaluate_model(task, model, tokenizer, data_args, training_args.seed, training_args.per_device_eval_batch_size)
