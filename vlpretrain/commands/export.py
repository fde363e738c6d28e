"""``vlpretrain export SRC --output-dir DST``: a Hub-ready folder that loads with transformers alone."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a Hub-ready copy of a model folder (safetensors, flat remote code, processor, model card)",
    )
    parser.add_argument("source", help="model folder written by save_pretrained or a training run")
    parser.add_argument("--output-dir", required=True, help="folder to write (replaced atomically)")
    parser.add_argument("--repo-id", default=None, help="Hub repository id used in the model card")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, extra_args: list[str]) -> int:
    from ..hub.export import export_model

    output = export_model(args.source, args.output_dir, repo_id=args.repo_id)
    print(f"exported {args.source} -> {output}")
    return 0
