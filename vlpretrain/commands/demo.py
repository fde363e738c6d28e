"""``vlpretrain demo``: the main job on the embedded default data (README command one)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="pretrain, fine-tune, evaluate and export a small model on the embedded data, end to end on a CPU",
    )
    parser.add_argument("--output-dir", default="outputs/demo", help="where runs and the exported folder go")
    parser.add_argument("--quick", action="store_true", help="a smaller budget (for smoke tests)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the offline bert-base-uncased WordPiece)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, extra_args: list[str]) -> int:
    from ..training.main_job import run_main_job

    run_main_job(args.output_dir, quick=args.quick, seed=args.seed, tokenizer=args.tokenizer)
    return 0
