"""The command line as a user meets it: both flag spellings, one-screen help, one-line errors, progress bars, logging."""

from __future__ import annotations

import argparse
import sys

import pytest

from vlpretrain.cli import build_parser, main
from vlpretrain.utils.log import get_logger
from vlpretrain.utils.progress import progress_bar

HELP_COMMANDS = [
    [], ["convert"], ["demo"], ["export"], ["push"], ["features"], ["features", "import"], ["features", "extract"],
    ["visual-words"], ["visual-words", "fit"], ["pretrain"], ["finetune"], ["evaluate"],
]


def leaf_parsers(parser: argparse.ArgumentParser, path=()):
    subcommands = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not subcommands:
        yield path, parser
    for action in subcommands:
        for name, subparser in action.choices.items():
            yield from leaf_parsers(subparser, (*path, name))


def test_every_multi_word_flag_parses_in_both_spellings():
    checked = 0
    for path, parser in leaf_parsers(build_parser()):
        for action in parser._actions:
            for option in action.option_strings:
                if option.startswith("--") and ("-" in option[2:] or "_" in option[2:]):
                    for spelling in (option.replace("-", "_").replace("__", "--", 1), "--" + option[2:].replace("_", "-")):
                        assert parser._option_string_actions.get(spelling) is action, (path, spelling)
                        checked += 1
    assert checked > 30
    args = build_parser().parse_args(["convert", "--from", "vilbert", "x.bin", "--output_dir", "out", "--config_overrides", "{}"])
    assert args.output_dir == "out" and args.config_overrides == "{}"


@pytest.mark.parametrize("command", HELP_COMMANDS, ids=lambda command: " ".join(command) or "vlpretrain")
def test_help_fits_one_screen(command, capsys):
    try:
        code = main([*command, "--help"])
    except SystemExit as exit:
        code = exit.code
    assert code == 0
    text = capsys.readouterr().out
    assert 3 < len(text.splitlines()) <= 50, f"{len(text.splitlines())} lines"
    if command and command[0] in ("pretrain", "finetune", "evaluate"):
        assert "https://huggingface.co/docs/transformers/main_classes/trainer#transformers.TrainingArguments" in text
        assert "--model " in text and "--dataset " in text


def test_help_all_lists_every_training_argument(capsys):
    assert main(["finetune", "--help_all"]) == 0
    assert "--per_device_train_batch_size" in capsys.readouterr().out


@pytest.mark.parametrize("arguments,expected", [
    (("finetune", "--task", "caption", "--model", "lxmert"), "vlpretrain finetune: error: task: expected 'vqa' or 'retrieval', got 'caption'"),
    (("finetune", "--max_steps", "many"), "vlpretrain finetune: error: argument --max_steps/--max-steps: invalid int value: 'many'"),
    (("finetune", "--model", "nosuch", "--output-dir", "out"), "vlpretrain finetune: error: model: unknown architecture 'nosuch'"),
    (("export", "missing", "--output_dir", "out"), "vlpretrain export: error: source: missing is neither an existing"),
    (("features", "import", "--format", "csv", "x"), "vlpretrain features import: error: argument --format: invalid choice"),
])
def test_bad_values_end_with_one_line_and_status_2(arguments, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["vlpretrain", *arguments])
    try:
        code = main()
    except SystemExit as exit:
        code = exit.code
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith(expected), lines


def test_errors_propagate_when_called_from_python(tmp_path):
    with pytest.raises(FileNotFoundError):
        main(["export", str(tmp_path / "missing"), "--output_dir", str(tmp_path / "out")])


def test_progress_bars_only_on_a_terminal_and_not_when_quiet(monkeypatch):
    from transformers.utils import logging

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert progress_bar(range(3), "x").disable
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    bar = progress_bar(range(3), "x")
    assert not bar.disable and list(bar) == [0, 1, 2]
    logging.disable_progress_bar()
    try:
        assert progress_bar(range(3), "x").disable
    finally:
        logging.enable_progress_bar()


def test_package_logs_follow_transformers_verbosity(caplog):
    from transformers.utils import logging

    logger = get_logger("vlpretrain.processing.readers")
    assert logger.name == "transformers.vlpretrain.processing.readers"
    verbosity = logging.get_verbosity()
    try:
        logging.set_verbosity_error()
        logger.warning("hidden warning")
        logging.set_verbosity_warning()
        logger.warning("shown warning")
    finally:
        logging.set_verbosity(verbosity)
    messages = [record.getMessage() for record in caplog.records]
    assert "shown warning" in messages and "hidden warning" not in messages
