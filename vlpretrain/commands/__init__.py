"""Subcommands of the ``vlpretrain`` CLI. Each module defines ``register(subparsers)``; the parser it adds sets
``func(args, extra_args) -> int`` (and ``accepts_extra_args=True`` when it forwards unknown flags, e.g. to
``HfArgumentParser``)."""
