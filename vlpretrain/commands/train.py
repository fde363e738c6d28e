"""``vlpretrain pretrain|finetune|evaluate``: the training recipes with TrainingArguments from ``HfArgumentParser``.

Every TrainingArguments flag keeps its usual name (``--output_dir``, ``--max_steps``,
``--per_device_train_batch_size``, ``--resume_from_checkpoint``, ...), so ``torchrun`` and ``accelerate launch``
run these commands unchanged. ``--help`` lists the package's own options on one screen and points to transformers'
documentation for the TrainingArguments; ``--help_all`` prints every option.
"""

from __future__ import annotations

import argparse
import json
import os


def register(subparsers: argparse._SubParsersAction) -> None:
    for name, summary in (
        ("pretrain", "pretrain a model with every objective of its paper on the HF Trainer"),
        ("finetune", "fine-tune a model for VQA or image-text retrieval"),
        ("evaluate", "evaluate a fine-tuned model (VQA accuracy, retrieval recall@K)"),
    ):
        parser = subparsers.add_parser(name, help=summary, add_help=False)
        parser.add_argument("-h", "--help", action="store_true")
        parser.add_argument("--help-all", action="store_true")
        parser.set_defaults(func=run, accepts_extra_args=True, recipe=name, summary=summary)


def _parser(recipe: str):
    from dataclasses import dataclass, field

    from transformers import HfArgumentParser, TrainingArguments

    from ..cli import OneLineErrorParser
    from ..training.recipes import DataArguments, ModelArguments

    @dataclass
    class TaskArguments:
        task: str = field(default="vqa", metadata={"help": "vqa or retrieval"})

    class RecipeParser(HfArgumentParser):
        error = OneLineErrorParser.error

    classes = (ModelArguments, DataArguments, TrainingArguments)
    if recipe != "pretrain":
        classes = (TaskArguments, *classes)
    return RecipeParser(classes, prog=f"vlpretrain {recipe}", usage=f"vlpretrain {recipe} [OPTIONS] [TRAINING ARGUMENTS]")


def compact_help(parser, recipe: str, summary: str) -> str:
    """``--help``: the package's own options one line each, the usual TrainingArguments, and where the rest are."""
    from transformers import TrainingArguments

    lines = [parser.format_usage().strip(), "", summary + ".", "", "options:"]
    training = {f"--{name}" for name in TrainingArguments.__dataclass_fields__}
    for action in parser._actions:
        long_options = [option for option in action.option_strings if option.startswith("--")]
        if not long_options or long_options[0] in training or long_options[0].startswith("--no_"):
            continue
        text = " ".join((action.help or "").split()).replace("%%", "%")
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text:
            text += f" (default: {action.default})"
        lines.append(f"  {long_options[0]:<24}{text if len(text) <= 96 else text[:93] + '...'}")
    lines += [
        "",
        "training arguments: every transformers TrainingArguments flag, e.g. --output_dir DIR, --max_steps N,",
        "  --per_device_train_batch_size N, --learning_rate LR, --bf16, --eval_strategy steps, --save_steps N,",
        "  --resume_from_checkpoint latest, --report_to none. Reference:",
        "  https://huggingface.co/docs/transformers/main_classes/trainer#transformers.TrainingArguments",
        f"  (vlpretrain {recipe} --help_all lists them all). Both --multi-word and --multi_word spellings work.",
        "  --quiet: no progress bars or informational logs.",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace, extra_args: list[str]) -> int:
    parser = _parser(args.recipe)
    if args.help_all:
        parser.print_help()
        return 0
    if args.help:
        print(compact_help(parser, args.recipe, args.summary))
        return 0
    if args.recipe == "evaluate":
        extra_args = list(extra_args)
        given = {arg.split("=", 1)[0].replace("-", "_") for arg in extra_args}
        if "__output_dir" not in given:
            extra_args += ["--output_dir", "outputs/evaluate"]
    parsed = parser.parse_args_into_dataclasses(args=extra_args)
    from ..training import recipes
    from ..utils.hub_paths import REPO_ID, resolve_path

    model_args = parsed[-3]
    if REPO_ID.fullmatch(model_args.model) and not os.path.exists(model_args.model):
        model_args.model = str(resolve_path(model_args.model, model_args.revision, "model"))

    if args.recipe == "pretrain":
        model_args, data_args, training_args = parsed
        result = recipes.pretrain(model_args, data_args, training_args)
    else:
        task_args, model_args, data_args, training_args = parsed
        if args.recipe == "finetune":
            result = recipes.finetune(task_args.task, model_args, data_args, training_args)
        else:
            result = {"metrics": recipes.evaluate_folder(task_args.task, model_args, data_args, training_args)}
    print(json.dumps({key: value for key, value in result["metrics"].items() if isinstance(value, (int, float))}, indent=2))
    if "model_dir" in result:
        print(f"saved to {result['model_dir']}")
    return 0
