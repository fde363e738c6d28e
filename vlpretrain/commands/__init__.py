"""Subcommands of the ``vlpretrain`` CLI. Each module defines ``register(subparsers)``; the parser it adds sets
``func(args, extra_args) -> int`` (and ``accepts_extra_args=True`` when it forwards unknown flags, e.g. to
``HfArgumentParser``)."""


def add_overwrite_argument(parser, what: str) -> None:
    """``--overwrite`` for a command that writes ``--output-dir``: without it, an existing non-empty folder that
    is not ``what`` written earlier is refused (see ``vlpretrain.utils.folders.output_directory``)."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace --output-dir even when it is a non-empty folder that does not hold {what} written earlier "
        "(its contents are deleted); without it such a folder, or a file, is refused",
    )
