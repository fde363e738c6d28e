"""``vlpretrain pretrain|finetune|evaluate``: the training recipes with TrainingArguments from ``HfArgumentParser``.

Every TrainingArguments flag keeps its usual name (``--output_dir``, ``--max_steps``,
``--per_device_train_batch_size``, ``--resume_from_checkpoint``, ...), so ``torchrun`` and ``accelerate launch``
run these commands unchanged.
"""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    for name, summary in (
        ("pretrain", "pretrain a model with every objective of its paper on the HF Trainer"),
        ("finetune", "fine-tune a model for VQA or image-text retrieval"),
        ("evaluate", "evaluate a fine-tuned model (VQA accuracy, retrieval recall@K)"),
    ):
        parser = subparsers.add_parser(name, help=summary, add_help=False)
        parser.add_argument("-h", "--help", action="store_true")
        parser.set_defaults(func=run, accepts_extra_args=True, recipe=name)


def _parser(recipe: str):
    from dataclasses import dataclass, field

    from transformers import HfArgumentParser, TrainingArguments

    from ..training.recipes import DataArguments, ModelArguments

    @dataclass
    class TaskArguments:
        task: str = field(default="vqa", metadata={"help": "vqa or retrieval (finetune, evaluate)"})

    classes = (ModelArguments, DataArguments, TrainingArguments)
    if recipe != "pretrain":
        classes = (TaskArguments, *classes)
    return HfArgumentParser(classes, prog=f"vlpretrain {recipe}")


def run(args: argparse.Namespace, extra_args: list[str]) -> int:
    parser = _parser(args.recipe)
    if args.help:
        parser.print_help()
        return 0
    if args.recipe == "evaluate":
        extra_args = list(extra_args)
        if "--output_dir" not in extra_args and not any(arg.startswith("--output_dir=") for arg in extra_args):
            extra_args += ["--output_dir", "outputs/evaluate"]
    parsed = parser.parse_args_into_dataclasses(args=extra_args)
    from ..training import recipes

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
