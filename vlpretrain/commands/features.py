"""``vlpretrain features``: turn published feature files, images or videos into a feature store.

    vlpretrain features import --format tsv|npz|hdf5|lmdb SRC --output-dir DST
    vlpretrain features extract --images DIR --output-dir DST (--processor DIR | --backbone NAME [--detector NAME]
                                                              | --detector BOTTOM_UP_DIR [--box-selection RULE])
    vlpretrain features extract --videos DIR --output-dir DST (--processor DIR | --backbone NAME [--preset univl-s3d])

The store is written to a temporary folder and moved into place at the end, so an interrupted run leaves
any previous store intact. ``--skip-corrupt`` logs, counts and skips bad rows, images or videos.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

from ..processing.readers import PICKLED_INFO_CHOICES, ReadStats, read_regions
from . import add_overwrite_argument

FEATURE_STORE = "a feature store"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg"}


FEATURE_DTYPE_HELP = "feature precision on disk (float16: half the size; read back as float32)"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``features`` command and its ``import`` / ``extract`` subcommands."""
    parser = subparsers.add_parser("features", help="import published region features or extract them into a feature store")
    actions = parser.add_subparsers(dest="features_command", required=True, metavar="ACTION")

    importer = actions.add_parser("import", help="convert a TSV / npz / HDF5 / LMDB feature file into a store")
    importer.add_argument("source", help="the feature file (TSV, HDF5), folder of .npz files, or LMDB folder")
    importer.add_argument("--format", required=True, choices=["tsv", "npz", "hdf5", "lmdb"], dest="source_format")
    importer.add_argument("--output-dir", required=True, help="folder of the new store (replaced atomically)")
    importer.add_argument("--num-regions", type=int, default=None, help="require exactly this many regions per image (fixed-shape, fastest store)")
    importer.add_argument("--feature-size", type=int, default=None, help="reject features of any other size")
    importer.add_argument("--skip-corrupt", action="store_true", help="log, count and skip bad rows instead of stopping")
    importer.add_argument("--dtype", default="float32", choices=["float32", "float16"], help=FEATURE_DTYPE_HELP)
    importer.add_argument(
        "--pickled-info",
        choices=PICKLED_INFO_CHOICES,
        default="error",
        help="npz/LMDB 'info' dicts need unpickling: refuse (error), drop the labels (ignore) or unpickle a trusted file (trust)",
    )
    importer.add_argument("--image-ids", default=None, help="HDF5 only: JSON list (or {id: index}) naming the rows")
    add_overwrite_argument(importer, FEATURE_STORE)
    importer.set_defaults(func=run_import)

    extractor = actions.add_parser("extract", help="extract features from a folder of images or videos into a store")
    inputs = extractor.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--images", help="folder of images")
    inputs.add_argument("--videos", help="folder of videos")
    extractor.add_argument("--output-dir", required=True, help="folder of the new store (replaced atomically)")
    extractor.add_argument("--processor", help="a saved VisionLanguageProcessor / VideoLanguageProcessor whose featurizer to use")
    extractor.add_argument("--backbone", help="Hub id or folder of the backbone (instead of --processor)")
    extractor.add_argument("--detector", help="Hub id or folder of the object detector (images, instead of --processor)")
    extractor.add_argument("--revision", default=None, help="branch, tag or commit of the Hub repos named by --processor/--backbone/--detector")
    extractor.add_argument("--num-regions", type=int, default=None, help="images: fixed number of regions (default 36; 0 = adaptive 10-100)")
    extractor.add_argument("--box-selection", choices=("bottom-up", "transformers-demo"), default=None,
                           help="images, bottom-up-attention --detector without --backbone: override its box-selection rules")
    extractor.add_argument("--skip-corrupt", action="store_true", help="log, count and skip undecodable files instead of stopping")
    extractor.add_argument("--preset", choices=["univl-s3d"], default=None,
                           help="videos with --backbone: named frame settings (univl-s3d: UniVL's S3D extraction)")
    add_overwrite_argument(extractor, FEATURE_STORE)
    extractor.add_argument("--dtype", default="float32", choices=["float32", "float16"], help=FEATURE_DTYPE_HELP)
    extractor.set_defaults(func=run_extract)


def run_import(args: argparse.Namespace, extra_args: list[str]) -> int:
    """Read ``args.source`` with the chosen reader and write a region store."""
    from ..processing.store import is_feature_store, write_feature_store
    from ..utils.folders import output_directory

    options = {}
    if args.source_format in ("npz", "lmdb"):
        options["pickled_info"] = args.pickled_info
    if args.image_ids is not None:
        if args.source_format != "hdf5":
            raise ValueError("--image-ids applies to --format hdf5 only")
        options["image_ids"] = args.image_ids
    stats = ReadStats()
    with output_directory(args.output_dir, is_feature_store, FEATURE_STORE, args.overwrite) as staged:
        records = read_regions(args.source_format, args.source, args.skip_corrupt, stats, args.feature_size, **options)
        summary = write_feature_store(
            records,
            staged,
            kind="regions",
            num_regions=args.num_regions,
            skip_corrupt=args.skip_corrupt,
            metadata={"source": str(Path(args.source).absolute()), "source_format": args.source_format},
            reader_stats=stats,
            progress=True,
            feature_dtype=args.dtype,
        )
    print(f"wrote {summary.num_rows} rows ({summary.num_skipped} skipped) in {summary.num_shards} shard(s) to {args.output_dir}")
    return 0


def _files(folder: str, suffixes: set[str], what: str) -> list[Path]:
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"--{what}: folder not found: {root}")
    files = sorted(path for path in root.rglob("*") if path.is_file() and path.suffix.lower() in suffixes)
    if not files:
        raise ValueError(f"--{what}: no files with suffixes {sorted(suffixes)} under {root}")
    return files


def _guarded(files: list[Path], featurize, skip_corrupt: bool, stats: ReadStats) -> Iterator:
    from ..utils.progress import progress_bar

    for path in progress_bar(files, "extracting", unit="file"):
        try:
            yield featurize(path)
        except ValueError as error:
            if not skip_corrupt:
                raise
            stats.record_skip(str(error))


def run_extract(args: argparse.Namespace, extra_args: list[str]) -> int:
    """Featurize every image or video of a folder and write a store with the featurizer's provenance."""
    # Imported here so that building the CLI parser stays fast (no torch / transformers / datasets import).
    from ..processing.frames import FrameFeaturizer
    from ..processing.processor import VideoLanguageProcessor, VisionLanguageProcessor
    from ..processing.provenance import feature_provenance
    from ..processing.regions import RegionFeaturizer
    from ..processing.store import is_feature_store, write_feature_store
    from ..utils.folders import check_output_directory, output_directory

    check_output_directory(args.output_dir, is_feature_store, FEATURE_STORE, args.overwrite, "--output-dir")
    if args.processor and (args.backbone or args.detector):
        raise ValueError("give either --processor or --backbone/--detector, not both")
    if not args.processor and not args.backbone and not (args.images and args.detector):
        raise ValueError("extract needs --processor DIR or --backbone NAME (images: or a bottom-up-attention --detector)")
    stats = ReadStats()
    if args.preset and (args.images or args.processor):
        raise ValueError("--preset applies to --videos with --backbone only")
    if args.images:
        if args.processor:
            featurizer = VisionLanguageProcessor.from_pretrained(args.processor, revision=args.revision).region_featurizer
            if featurizer is None:
                raise ValueError(f"--processor {args.processor}: this processor has no region featurizer")
        else:
            settings = {}
            if args.num_regions is not None:
                settings["num_regions"] = args.num_regions or None
            if args.box_selection:
                settings["box_selection"] = args.box_selection
            featurizer = RegionFeaturizer.from_pretrained_models(args.backbone, args.detector, args.revision, **settings)
        files = _files(args.images, IMAGE_SUFFIXES, "images")
        records = _guarded(files, lambda path: featurizer.featurize_image(path, where=str(path)), args.skip_corrupt, stats)
        kind, fixed = "regions", featurizer.fixed_num_regions()
    else:
        if args.detector or args.num_regions is not None or args.box_selection:
            raise ValueError("--detector, --num-regions and --box-selection apply to --images only")
        if args.processor:
            featurizer = VideoLanguageProcessor.from_pretrained(args.processor, revision=args.revision).frame_featurizer
            if featurizer is None:
                raise ValueError(f"--processor {args.processor}: this processor has no frame featurizer")
        else:
            featurizer = FrameFeaturizer.from_pretrained_model(args.backbone, args.revision, preset=args.preset)
        files = _files(args.videos, VIDEO_SUFFIXES, "videos")
        records = _guarded(files, featurizer.featurize_video, args.skip_corrupt, stats)
        kind, fixed = "frames", None
    with output_directory(args.output_dir, is_feature_store, FEATURE_STORE, args.overwrite) as staged:
        summary = write_feature_store(
            records,
            staged,
            kind=kind,
            num_regions=fixed,
            skip_corrupt=args.skip_corrupt,
            metadata={
                "source": str(Path(args.images or args.videos).absolute()),
                "featurizer": featurizer.to_dict(),
                "provenance": feature_provenance(featurizer, kind),
            },
            reader_stats=stats,
            feature_dtype=args.dtype,
        )
    print(f"wrote {summary.num_rows} rows ({summary.num_skipped} skipped) in {summary.num_shards} shard(s) to {args.output_dir}")
    return 0
