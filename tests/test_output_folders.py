"""Output folders of the commands and atomic ``save_pretrained``: user folders and files are never replaced
without ``--overwrite``, previous outputs are swapped in whole, killed runs' staging is cleaned, and an
interrupted save leaves either the old folder or the new one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from helpers.factories import tiny_lxmert_config
from helpers.processing import minilm_tokenizer, published_images, write_lxmert_tsv

from vlpretrain import LxmertForQuestionAnswering
from vlpretrain.cli import main as cli_main
from vlpretrain.processing.processor import VisionLanguageProcessor
from vlpretrain.utils import folders
from vlpretrain.utils.folders import clean_stale_staging


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """One input per command: a package model folder, a transformers LXMERT checkpoint, a TSV, clip features."""
    root = tmp_path_factory.mktemp("sources")
    torch.manual_seed(0)
    LxmertForQuestionAnswering(tiny_lxmert_config()).save_pretrained(root / "model")
    hf_config = transformers.LxmertConfig(
        vocab_size=99, hidden_size=32, num_attention_heads=4, intermediate_size=37, l_layers=1, r_layers=1, x_layers=1,
        visual_feat_dim=16, num_object_labels=11, num_attr_labels=7, num_qa_labels=5,
    )
    transformers.LxmertForPreTraining(hf_config).save_pretrained(root / "hf")
    write_lxmert_tsv(root / "features.tsv", published_images(count=2, boxes=3, dim=8))
    np.save(root / "clips.npy", np.random.RandomState(0).rand(40, 6).astype(np.float32))
    return {"root": root}


def command(name: str, sources: dict[str, Path], output: Path) -> list[str]:
    root = sources["root"]
    return {
        "export": ["export", str(root / "model"), "--output-dir", str(output)],
        "convert": ["convert", "--from", "lxmert-hf", str(root / "hf"), "--output-dir", str(output)],
        "features import": ["features", "import", "--format", "tsv", str(root / "features.tsv"), "--output-dir", str(output)],
        "visual-words fit": ["visual-words", "fit", "--features", str(root / "clips.npy"), "--output-dir", str(output),
                             "--num-levels", "1", "--num-clusters", "2", "--max-steps", "3"],
    }[name]


# The file each command's output is recognised by.
MARKERS = {"export": "config.json", "convert": "config.json", "features import": "feature_store.json",
           "visual-words fit": "visual_words.json"}
COMMANDS = sorted(MARKERS)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def hidden_siblings(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.parent.iterdir() if path.name.startswith(f".{folder.name}."))


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.parametrize("name", COMMANDS)
def test_a_user_folder_is_refused_and_left_untouched(tmp_path, sources, name):
    output = tmp_path / "mine"
    (output / "notes").mkdir(parents=True)
    (output / "notes" / "todo.txt").write_text("my own file")
    (output / "config.json").write_text(json.dumps({"model_type": "bert"}))  # a model folder, but not of this package
    before = snapshot(output)
    with pytest.raises(ValueError, match=r"--output-dir: .*mine is not empty .*--overwrite"):
        cli_main(command(name, sources, output))
    assert snapshot(output) == before and hidden_siblings(output) == []


@pytest.mark.parametrize("name", COMMANDS)
def test_an_existing_file_is_refused(tmp_path, sources, name):
    output = tmp_path / "out"
    output.write_text("a file, not a folder")
    for extra in ([], ["--overwrite"]):
        with pytest.raises(ValueError, match="is a file"):
            cli_main(command(name, sources, output) + extra)
    assert output.read_text() == "a file, not a folder" and hidden_siblings(output) == []


@pytest.mark.parametrize("name", COMMANDS)
def test_a_previous_output_is_replaced_whole_and_a_failed_swap_keeps_it(tmp_path, sources, name, monkeypatch):
    output = tmp_path / "out"
    assert cli_main(command(name, sources, output)) == 0
    extra = name != "visual-words fit"  # a tokenizer folder with any other file is a user's folder
    if extra:
        (output / "left_by_the_first_run.txt").write_text("x")
    before, inode = snapshot(output), output.stat().st_ino

    def interrupted(first, second):
        raise OSError("simulated kill at the swap")

    with monkeypatch.context() as patched:
        patched.setattr(folders, "_exchange", interrupted)
        with pytest.raises(OSError, match="simulated kill"):
            cli_main(command(name, sources, output))
    assert snapshot(output) == before and output.stat().st_ino == inode and hidden_siblings(output) == []
    assert cli_main(command(name, sources, output)) == 0
    assert (output / MARKERS[name]).is_file() and output.stat().st_ino != inode
    assert not (output / "left_by_the_first_run.txt").exists() and hidden_siblings(output) == []


@pytest.mark.parametrize("name", COMMANDS)
def test_overwrite_replaces_a_user_folder(tmp_path, sources, name):
    output = tmp_path / "mine"
    output.mkdir()
    (output / "todo.txt").write_text("my own file")
    assert cli_main(command(name, sources, output) + ["--overwrite"]) == 0
    assert (output / MARKERS[name]).is_file() and not (output / "todo.txt").exists() and hidden_siblings(output) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", COMMANDS)
def test_stale_staging_of_killed_runs_is_cleaned_by_the_next_run(tmp_path, sources, name):
    output = tmp_path / "out"
    assert cli_main(command(name, sources, output)) == 0
    pid = dead_pid()
    for stale in (f".out.tmp-{pid}-abc", f".out.old-{pid}-def", f".out.tmp-{pid}-ghi/out/.out.tmp-{pid}-jkl"):
        (tmp_path / stale).mkdir(parents=True)
        (tmp_path / stale / "model.safetensors").write_bytes(b"0" * 1000)
    live = tmp_path / f".out.tmp-{os.getpid()}-live"  # a run still going on: not touched
    live.mkdir()
    unrelated = tmp_path / f".other.tmp-{pid}-abc"
    unrelated.mkdir()
    assert cli_main(command(name, sources, output)) == 0
    assert hidden_siblings(output) == [live.name] and unrelated.is_dir() and (output / MARKERS[name]).is_file()


def test_visual_words_fit_does_not_replace_a_model_folder_holding_visual_words(tmp_path, sources):
    output = tmp_path / "videobert"
    assert cli_main(command("visual-words fit", sources, output)) == 0
    (output / "config.json").write_text(json.dumps({"model_type": "video_bert"}))  # as a VideoBERT folder holds both
    before = snapshot(output)
    with pytest.raises(ValueError, match="not empty"):
        cli_main(command("visual-words fit", sources, output))
    assert snapshot(output) == before


def test_features_extract_refuses_before_loading_anything(tmp_path):
    output = tmp_path / "mine"
    output.mkdir()
    (output / "todo.txt").write_text("my own file")
    with pytest.raises(ValueError, match="not empty"):
        cli_main(["features", "extract", "--images", str(tmp_path), "--output-dir", str(output), "--backbone", "no/such-model"])
    assert (output / "todo.txt").read_text() == "my own file"


@pytest.mark.slow
def test_a_swap_cut_between_its_two_renames_is_undone_by_the_next_write(tmp_path):
    """Where RENAME_EXCHANGE is missing the swap is two renames; a kill between them leaves only the backup."""
    pid = dead_pid()
    backup = tmp_path / f".out.old-{pid}-abc"
    backup.mkdir()
    (backup / "config.json").write_text("old")
    staged = tmp_path / f".out.tmp-{pid}-def"
    (staged / "out").mkdir(parents=True)
    (staged / "out" / "config.json").write_text("new, never swapped in")
    clean_stale_staging(tmp_path / "out")
    assert (tmp_path / "out" / "config.json").read_text() == "old" and hidden_siblings(tmp_path / "out") == []


def test_the_fallback_swap_restores_the_old_folder_when_its_second_rename_fails(tmp_path, monkeypatch):
    target = tmp_path / "out"
    target.mkdir()
    (target / "a.txt").write_text("old")
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / "a.txt").write_text("new")
    real_replace = os.replace

    def failing_replace(source, destination):
        if Path(source) == staged:
            raise OSError("simulated failure of the second rename")
        real_replace(source, destination)

    monkeypatch.setattr(folders, "_exchange", lambda first, second: False)
    monkeypatch.setattr(folders.os, "replace", failing_replace)
    with pytest.raises(OSError, match="second rename"):
        folders.replace_directory(staged, target)
    monkeypatch.undo()
    assert (target / "a.txt").read_text() == "old" and hidden_siblings(target) == []
    folders.replace_directory(staged, target)
    assert (target / "a.txt").read_text() == "new" and not staged.exists()


# ------------------------------------------------------------------------------- interrupted save_pretrained


def _model(seed: int, labels: list[str]) -> LxmertForQuestionAnswering:
    torch.manual_seed(seed)
    config = tiny_lxmert_config(num_qa_labels=len(labels), id2label=dict(enumerate(labels)))
    return LxmertForQuestionAnswering(config).eval()


def _fail_at(point: str, monkeypatch) -> None:
    """Make the save fail at ``point``: an exception there stands for a kill (the steps after it never run)."""

    def boom(*args, **kwargs):
        raise OSError(f"simulated kill at {point}")

    if point == "writing":
        monkeypatch.setattr("vlpretrain.modeling.base.VLPreTrainedModel.save_extra_files", boom)  # after the weights
    elif point == "carrying over":
        monkeypatch.setattr(folders, "_link_or_copy", boom)
    elif point == "swap":
        monkeypatch.setattr(folders, "_exchange", boom)
    elif point == "fallback swap":
        real_replace = os.replace

        def replace(source, destination):
            if Path(source).name == "saved" and Path(source).parent.name.startswith(".saved.tmp-"):
                boom()
            real_replace(source, destination)

        monkeypatch.setattr(folders, "_exchange", lambda first, second: False)
        monkeypatch.setattr(folders.os, "replace", replace)
    else:  # after the swap, while the old folder is deleted
        monkeypatch.setattr(folders.shutil, "rmtree", boom)


@pytest.mark.parametrize("point", ["writing", "carrying over", "swap", "fallback swap", "cleanup"])
def test_an_interrupted_model_save_leaves_the_old_or_the_new_folder(tmp_path, monkeypatch, point):
    folder = tmp_path / "saved"
    old, new = _model(0, ["yes", "no"]), _model(1, ["red", "green", "blue"])
    old.save_pretrained(folder)
    VisionLanguageProcessor(minilm_tokenizer(), max_text_length=8).save_pretrained(folder)
    (folder / "trainer_state.json").write_text("{}")  # what the Trainer writes next to a checkpoint's model
    with monkeypatch.context() as patched:
        _fail_at(point, patched)
        with pytest.raises(OSError, match="simulated kill"):
            new.save_pretrained(folder)
    loaded = LxmertForQuestionAnswering.from_pretrained(folder)
    expected = new if point == "cleanup" else old
    assert loaded.config.id2label == expected.config.id2label
    for name, tensor in expected.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, msg=name)
    assert (folder / "trainer_state.json").is_file() and (folder / "processor_config.json").is_file()
    assert VisionLanguageProcessor.from_pretrained(folder).max_text_length == 8


def test_a_save_keeps_the_folder_files_it_does_not_write_and_drops_stale_weight_shards(tmp_path):
    folder = tmp_path / "saved"
    _model(0, ["yes", "no"]).save_pretrained(folder)
    (folder / "model-00001-of-00002.safetensors").write_bytes(b"stale shard")
    (folder / "optimizer.pt").write_bytes(b"optimizer state")
    new = _model(1, ["a", "b"])
    new.save_pretrained(folder)
    assert not (folder / "model-00001-of-00002.safetensors").exists()
    assert (folder / "optimizer.pt").read_bytes() == b"optimizer state" and hidden_siblings(folder) == []
    torch.testing.assert_close(LxmertForQuestionAnswering.from_pretrained(folder).state_dict(), new.state_dict())


def test_an_interrupted_processor_save_leaves_the_old_folder(tmp_path, monkeypatch):
    folder = tmp_path / "saved"
    tokenizer = minilm_tokenizer()
    VisionLanguageProcessor(tokenizer, max_text_length=8).save_pretrained(folder)
    monkeypatch.setattr(folders, "_exchange", lambda first, second: (_ for _ in ()).throw(OSError("simulated kill")))
    with pytest.raises(OSError, match="simulated kill"):
        VisionLanguageProcessor(tokenizer, max_text_length=16).save_pretrained(folder)
    monkeypatch.undo()
    assert VisionLanguageProcessor.from_pretrained(folder).max_text_length == 8 and hidden_siblings(folder) == []
    VisionLanguageProcessor(tokenizer, max_text_length=16).save_pretrained(folder)
    assert VisionLanguageProcessor.from_pretrained(folder).max_text_length == 16


def test_save_pretrained_refuses_a_file(tmp_path):
    path = tmp_path / "saved"
    path.write_text("a file")
    with pytest.raises(ValueError, match="is a file"):
        _model(0, ["yes", "no"]).save_pretrained(path)
    assert path.read_text() == "a file"
