"""``vlpretrain visual-words fit --features STORE --output-dir DIR``: fit VideoBERT's visual-word tokenizer."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import add_overwrite_argument

TOKENIZER_FOLDER = "a visual-word tokenizer"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "visual-words",
        help="fit a hierarchical k-means visual-word tokenizer (VideoBERT) on clip features",
        description="Fit VideoBERT's visual words: hierarchical mini-batch k-means over every clip (frame) feature of a "
        "frame feature store (or a .npy array of shape (clips, dim), memory-mapped). Writes visual_words.json and "
        "visual_words.safetensors, which VisualWordTokenizer.from_pretrained and VideoBERT load.",
    )
    actions = parser.add_subparsers(dest="visual_words_command", required=True, metavar="ACTION")
    fit = actions.add_parser("fit", help="fit a tokenizer and save it")
    fit.add_argument("--features", required=True, help="frame feature-store folder, or a .npy file of clip features")
    fit.add_argument("--output-dir", required=True, help="folder to write the tokenizer into")
    fit.add_argument("--num-levels", type=int, default=4, help="tree depth (paper: 4)")
    fit.add_argument("--num-clusters", type=int, default=12, help="clusters per level (paper: 12)")
    fit.add_argument("--batch-size", type=int, default=1024, help="mini-batch size of every k-means step")
    fit.add_argument("--max-steps", type=int, default=100, help="mini-batch steps per split at most")
    fit.add_argument("--seed", type=int, default=0, help="seed (the fit is deterministic for a seed)")
    fit.add_argument("--num-threads", type=int, default=None, help="torch CPU threads during the fit")
    add_overwrite_argument(fit, TOKENIZER_FOLDER)
    fit.set_defaults(func=run_fit)


def load_clip_features(path: str):
    """Clip features (N, D) from a ``.npy`` file (memory-mapped) or a frame feature store (every frame of every video)."""
    import numpy as np

    location = Path(path)
    if location.suffix == ".npy" and location.is_file():
        return np.load(location, mmap_mode="r", allow_pickle=False)
    if not location.is_dir():
        raise ValueError(f"--features: {path} is neither a .npy file nor a feature-store folder")
    from ..processing.store import load_feature_store, read_store_metadata

    kind = read_store_metadata(location).get("kind")
    if kind != "frames":
        raise ValueError(f"--features: {path} is a {kind!r} store; visual words need a frame store")
    store = load_feature_store(location)
    rows = [np.asarray(row, dtype=np.float32) for row in store["features"]]
    if not rows:
        raise ValueError(f"--features: {path} holds no video")
    return np.concatenate(rows)


def run_fit(args: argparse.Namespace, extra_args: list[str]) -> int:
    from ..processing.visual_words import VisualWordTokenizer, is_visual_word_folder
    from ..utils.folders import output_directory

    with output_directory(args.output_dir, is_visual_word_folder, TOKENIZER_FOLDER, args.overwrite) as staged:
        features = load_clip_features(args.features)
        tokenizer = VisualWordTokenizer(
            num_levels=args.num_levels, num_clusters=args.num_clusters, batch_size=args.batch_size,
            max_steps=args.max_steps, seed=args.seed,
        )
        tokenizer.fit(features, progress=lambda level, total: print(f"level {level}/{total} fitted"), num_threads=args.num_threads)
        tokenizer.save_pretrained(staged)
    print(f"fitted {tokenizer.vocab_size} visual words on {len(features)} clips -> {args.output_dir}")
    return 0
