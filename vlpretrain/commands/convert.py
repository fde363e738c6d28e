"""``vlpretrain convert --from FORMAT SRC --output-dir DST``: original or third-party checkpoints to package folders."""

from __future__ import annotations

import argparse
import json

from . import add_overwrite_argument
from .export import MODEL_FOLDER


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..hub.convert import CONVERTERS

    parser = subparsers.add_parser(
        "convert",
        help="convert an original checkpoint into a vlpretrain model folder",
        description="Convert a checkpoint (safetensors, or a PyTorch file loaded with weights_only=True) into a "
        "folder that loads with AutoModel*.from_pretrained where vlpretrain is installed (`vlpretrain export` then "
        "adds the remote code for transformers alone).",
    )
    parser.add_argument("--from", dest="source_format", required=True, choices=sorted(CONVERTERS), help="checkpoint layout")
    parser.add_argument("source", help="checkpoint file or folder, or a Hub repo id (ORG/NAME)")
    parser.add_argument("--revision", default=None, help="branch, tag or commit when SOURCE is a Hub repo id")
    parser.add_argument("--output-dir", required=True, help="folder to write (replaced atomically)")
    parser.add_argument(
        "--config-overrides",
        default="{}",
        help='JSON object of config values the checkpoint cannot tell, e.g. \'{"num_attention_heads": 12}\'',
    )
    parser.add_argument("--objects-vocab", help="frcnn-vg / bua-caffe: objects_vocab.txt (one class per line) for id2label")
    parser.add_argument("--attributes-vocab", help="frcnn-vg / bua-caffe: attributes_vocab.txt for attribute_id2label")
    add_overwrite_argument(parser, MODEL_FOLDER)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, extra_args: list[str]) -> int:
    from ..hub.convert import CONVERTERS
    from ..hub.export import is_model_folder
    from ..utils.folders import output_directory
    from ..utils.hub_paths import resolve_path

    try:
        overrides = json.loads(args.config_overrides)
    except json.JSONDecodeError as error:
        raise ValueError(f"--config-overrides: expected a JSON object, got {args.config_overrides!r} ({error})") from error
    if not isinstance(overrides, dict):
        raise ValueError(f"--config-overrides: expected a JSON object, got {args.config_overrides!r}")
    for option in ("objects_vocab", "attributes_vocab"):
        if getattr(args, option):
            if args.source_format not in ("frcnn-vg", "bua-caffe"):
                raise ValueError(f"--{option.replace('_', '-')} applies to --from frcnn-vg / bua-caffe only")
            overrides[option] = getattr(args, option)
    source = resolve_path(args.source, args.revision, "source")
    with output_directory(args.output_dir, is_model_folder, MODEL_FOLDER, args.overwrite) as staged:
        CONVERTERS[args.source_format](source, staged, **overrides)
    print(f"converted {args.source} ({args.source_format}) -> {args.output_dir}")
    return 0
