"""``vlpretrain export SRC --output-dir DST``: a Hub-ready folder that loads with transformers alone."""

from __future__ import annotations

import argparse

from . import add_overwrite_argument

MODEL_FOLDER = "a vlpretrain model folder"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a Hub-ready copy of a model folder (safetensors, flat remote code, processor, model card)",
    )
    parser.add_argument("source", help="model folder written by save_pretrained or a training run, or a Hub repo id")
    parser.add_argument("--revision", default=None, help="branch, tag or commit when SOURCE is a Hub repo id")
    parser.add_argument("--output-dir", required=True, help="folder to write (replaced atomically)")
    parser.add_argument("--repo-id", default=None, help="Hub repository id used in the model card")
    add_overwrite_argument(parser, MODEL_FOLDER)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, extra_args: list[str]) -> int:
    from ..hub.export import export_model, is_model_folder
    from ..utils.folders import output_directory
    from ..utils.hub_paths import resolve_path

    source = resolve_path(args.source, args.revision, "source")
    with output_directory(args.output_dir, is_model_folder, MODEL_FOLDER, args.overwrite) as staged:
        export_model(source, staged, repo_id=args.repo_id)
    print(f"exported {args.source} -> {args.output_dir}")
    return 0
