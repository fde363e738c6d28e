"""Saving models: the flat remote code (module names, refused imports, written only when asked), saving into an
existing folder, and the one-line report of a head swap. Loading exported folders with transformers alone in a fresh
process is checked for every family in ``tests/test_model_contract.py``."""

from __future__ import annotations

import json
import os

import pytest
import torch

from vlpretrain import LxmertForPreTraining, LxmertForQuestionAnswering
from vlpretrain.cli import main as cli_main
from vlpretrain.utils.remote_code import flat_module_name, module_closure


def test_flat_names_are_unique_and_cover_the_imports():
    closure = module_closure(["vlpretrain.modeling.lxmert"])
    assert closure["vlpretrain.modeling.lxmert"] == "modeling_lxmert"
    assert closure["vlpretrain.configuration.lxmert"] == "configuration_lxmert"
    assert len(set(closure.values())) == len(closure)
    assert flat_module_name("transformers_modules.folder.abc123.modeling_lxmert") == "modeling_lxmert"


def test_a_package_import_that_cannot_be_exported_is_refused(tmp_path, monkeypatch):
    package = tmp_path / "vlpretrain_probe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helper.py").write_text("VALUE = 1\n")
    (package / "user.py").write_text("from . import helper\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="cannot be exported as remote code"):
        module_closure(["vlpretrain_probe.user"])


def test_save_into_an_existing_folder_keeps_other_files_and_replaces_weights(tmp_path, lxmert_config):
    (tmp_path / "trainer_state.json").write_text("{}")
    LxmertForPreTraining(lxmert_config).save_pretrained(tmp_path)
    second = LxmertForPreTraining(lxmert_config)
    second.save_pretrained(tmp_path)
    assert (tmp_path / "trainer_state.json").exists()
    assert not [name for name in os.listdir(tmp_path.parent) if name.startswith(f".{tmp_path.name}.tmp")]
    reloaded = LxmertForPreTraining.from_pretrained(tmp_path)
    torch.testing.assert_close(reloaded.lxmert.pooler.dense.weight, second.lxmert.pooler.dense.weight)


def test_remote_code_is_written_only_when_asked(tmp_path, lxmert_config):
    """Plain save_pretrained (Trainer checkpoints) writes weights and config only; remote_code=True and export add the
    flat modules and the auto_map; a folder loaded from remote code and re-saved plainly drops its stale auto_map."""
    from transformers import BertTokenizerFast

    from vlpretrain import VisionLanguageProcessor

    model = LxmertForPreTraining(lxmert_config)
    model.save_pretrained(tmp_path / "plain")
    assert not [name for name in os.listdir(tmp_path / "plain") if name.endswith(".py")]
    assert "auto_map" not in json.loads((tmp_path / "plain" / "config.json").read_text())
    model.save_pretrained(tmp_path / "asked", remote_code=True)
    assert {"modeling_lxmert.py", "configuration_lxmert.py"} <= set(os.listdir(tmp_path / "asked"))
    LxmertForPreTraining.from_pretrained(tmp_path / "asked").save_pretrained(tmp_path / "again")
    assert "auto_map" not in json.loads((tmp_path / "again" / "config.json").read_text())
    assert cli_main(["export", str(tmp_path / "plain"), "--output_dir", str(tmp_path / "export")]) == 0
    assert "AutoModelForPreTraining" in json.loads((tmp_path / "export" / "config.json").read_text())["auto_map"]
    assert "modeling_lxmert.py" in os.listdir(tmp_path / "export")

    vocabulary = tmp_path / "vocab.txt"
    vocabulary.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"]) + "\n")
    processor = VisionLanguageProcessor(BertTokenizerFast(vocab_file=str(vocabulary)))
    processor.save_pretrained(tmp_path / "processor")
    assert not [name for name in os.listdir(tmp_path / "processor") if name.endswith(".py")]
    assert "auto_map" not in json.loads((tmp_path / "processor" / "processor_config.json").read_text())
    processor.save_pretrained(tmp_path / "processor_remote", remote_code=True)
    assert "processing_processor.py" in os.listdir(tmp_path / "processor_remote")


def test_task_model_from_a_pretraining_checkpoint_reports_the_head_swap_in_one_line(tmp_path, lxmert_config, caplog):
    LxmertForPreTraining(lxmert_config).save_pretrained(tmp_path / "pretrained")
    with caplog.at_level("WARNING", logger="transformers"):
        model, info = LxmertForQuestionAnswering.from_pretrained(tmp_path / "pretrained", num_labels=3,
                                                                 output_loading_info=True)
    lines = [record.getMessage() for record in caplog.records]
    assert not any("LOAD REPORT" in line for line in lines), lines
    summary = [line for line in lines if "initialised" in line]
    assert summary == [
        f"LxmertForQuestionAnswering from {tmp_path / 'pretrained'}: initialised the new head(s) vqa_head; "
        "dropped the pretraining heads (answer_head, matching_head, mlm_head, region_head)"
    ]
    assert not info["missing_keys"] and not info["unexpected_keys"]
    caplog.clear()
    state = LxmertForPreTraining(lxmert_config).state_dict()
    state = {key: value for key, value in state.items() if not key.startswith(("lxmert.pooler.", "mlm_head.decoder.w"))}
    from safetensors.torch import save_file as write

    write({key: value.contiguous() for key, value in state.items()}, tmp_path / "pretrained" / "model.safetensors")
    with caplog.at_level("WARNING", logger="transformers"):
        LxmertForQuestionAnswering.from_pretrained(tmp_path / "pretrained", num_labels=3)
    assert any("LOAD REPORT" in record.getMessage() for record in caplog.records), "an encoder key is missing: full report"
