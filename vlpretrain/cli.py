"""The ``vlpretrain`` command line: one subcommand per module in ``vlpretrain.commands``.

Conventions shared by every command: each multi-word flag takes both spellings (``--output-dir`` and
``--output_dir``); ``--quiet`` turns off progress bars and informational logs; a bad value ends the command with one
line on stderr and exit status 2 (run from a shell; called as ``main([...])`` from Python the error is raised).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands

USAGE_ERROR = 2


class OneLineErrorParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line (``prog: error: message; see prog --help``), status 2."""

    def error(self, message: str):
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def accept_both_spellings(parser: argparse.ArgumentParser) -> None:
    """Let every ``--multi-word`` flag of ``parser`` and its subcommands also parse as ``--multi_word`` (and the
    reverse); ``--help`` shows the spelling each command declares."""
    for action in list(parser._actions):
        for option in list(action.option_strings):
            if option.startswith("--") and ("-" in option[2:] or "_" in option[2:]):
                for other in (option[:2] + option[2:].replace("-", "_"), option[:2] + option[2:].replace("_", "-")):
                    parser._option_string_actions.setdefault(other, action)
        if isinstance(action, argparse._SubParsersAction):
            for subparser in set(action.choices.values()):
                accept_both_spellings(subparser)


def _add_quiet(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument("--quiet", action="store_true", default=default, help="no progress bars or informational logs")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in set(action.choices.values()):
                _add_quiet(subparser, argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    """Collect every ``register(subparsers)`` found in ``vlpretrain.commands`` into one parser."""
    parser = OneLineErrorParser(prog="vlpretrain", description="Vision-language pretraining models for the HF ecosystem.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda info: info.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(subparsers)
    _add_quiet(parser, False)
    accept_both_spellings(parser)
    return parser


def set_quiet(quiet: bool) -> None:
    """``--quiet``: no progress bars (ours, transformers', datasets', huggingface_hub's) and warnings-and-up logs only."""
    if not quiet:
        return
    import datasets
    import huggingface_hub.utils
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()
    datasets.disable_progress_bars()
    huggingface_hub.utils.disable_progress_bars()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; each subcommand sets ``func`` and returns an exit code.

    From the command line (``argv`` None) a ``ValueError`` or ``FileNotFoundError`` (a bad value, a missing file)
    is printed as one line and the exit status is 2; called with an argument list it propagates."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra_args", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    set_quiet(getattr(args, "quiet", False))
    if argv is not None:
        return int(args.func(args, extra) or 0)
    try:
        return int(args.func(args, extra) or 0)
    except (ValueError, FileNotFoundError) as error:
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"vlpretrain {args.command}: error: {message}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
