"""Exported folders load with transformers alone (trust_remote_code) and give identical outputs."""

from __future__ import annotations

import ast
import json
import os
import textwrap

import pytest
import torch
from helpers.factories import image_text_batch, tiny_lxmert_config
from helpers.fresh_process import run_fresh_process
from safetensors.torch import load_file, save_file

from vlpretrain import LxmertForPreTraining, LxmertForQuestionAnswering
from vlpretrain.cli import main as cli_main
from vlpretrain.utils.remote_code import flat_module_name, module_closure

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids", "region_features", "region_boxes", "region_attention_mask")

FRESH_PROCESS = textwrap.dedent(
    """
    import sys
    sys.modules["vlpretrain"] = None  # the package must not be importable here
    import json, torch
    from safetensors.torch import load_file, save_file
    import transformers

    pretraining_dir, vqa_dir, resaved_dir, inputs_path, outputs_path = sys.argv[1:6]
    inputs = load_file(inputs_path)
    outputs = {}
    for auto_name, folder in [
        ("AutoModel", pretraining_dir),
        ("AutoModelForPreTraining", pretraining_dir),
        ("AutoModelForSequenceClassification", pretraining_dir),
        ("AutoModelForVisualQuestionAnswering", vqa_dir),
    ]:
        model = getattr(transformers, auto_name).from_pretrained(folder, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
        with torch.no_grad():
            result = model(**inputs)
        for key in ("pooled_output", "prediction_logits", "logits", "matching_logits", "answer_logits"):
            if result.get(key) is not None:
                outputs[f"{auto_name}.{key}"] = result[key].contiguous()
        if auto_name == "AutoModelForPreTraining":
            model.save_pretrained(resaved_dir, remote_code=True)
    again = transformers.AutoModelForPreTraining.from_pretrained(resaved_dir, trust_remote_code=True).eval()
    with torch.no_grad():
        outputs["resaved.prediction_logits"] = again(**inputs).prediction_logits.contiguous()
    save_file(outputs, outputs_path)
    print("remote load ok")
    """
)


def test_exported_folder_loads_with_transformers_alone(tmp_path):
    config = tiny_lxmert_config()
    pretraining = LxmertForPreTraining(config).eval()
    pretraining.save_pretrained(tmp_path / "trained")
    assert cli_main(["export", str(tmp_path / "trained"), "--output-dir", str(tmp_path / "export")]) == 0
    vqa = LxmertForQuestionAnswering(tiny_lxmert_config(id2label={0: "yes", 1: "no", 2: "red"})).eval()
    vqa.save_pretrained(tmp_path / "vqa", remote_code=True)

    files = sorted(os.listdir(tmp_path / "export"))
    assert {"config.json", "model.safetensors", "README.md", "modeling_lxmert.py", "configuration_lxmert.py"} <= set(files)
    auto_map = json.loads((tmp_path / "export" / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForPreTraining"] == "modeling_lxmert.LxmertForPreTraining"
    assert auto_map["AutoConfig"] == "configuration_lxmert.LxmertConfig"
    for name in files:
        if name.endswith(".py"):
            tree = ast.parse((tmp_path / "export" / name).read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.level == 0:
                    assert not (node.module or "").startswith("vlpretrain"), (name, node.module)
                if isinstance(node, ast.ImportFrom) and node.level:
                    assert node.level == 1 and f"{node.module}.py" in files, (name, node.module)

    inputs = {name: value.contiguous() for name, value in image_text_batch(config, labels=False).items()}
    save_file(inputs, tmp_path / "inputs.safetensors")
    run_fresh_process(
        FRESH_PROCESS, tmp_path, tmp_path / "export", tmp_path / "vqa", tmp_path / "resaved",
        tmp_path / "inputs.safetensors", tmp_path / "outputs.safetensors",
    )
    remote = load_file(tmp_path / "outputs.safetensors")

    with torch.no_grad():
        local = pretraining(**inputs)
        local_vqa = vqa(**inputs)
    torch.testing.assert_close(remote["AutoModelForPreTraining.prediction_logits"], local.prediction_logits)
    torch.testing.assert_close(remote["AutoModelForPreTraining.answer_logits"], local.answer_logits)
    torch.testing.assert_close(remote["AutoModel.pooled_output"], local.pooled_output)
    torch.testing.assert_close(remote["AutoModelForSequenceClassification.logits"], local.matching_logits)
    torch.testing.assert_close(remote["AutoModelForVisualQuestionAnswering.logits"], local_vqa.logits)
    torch.testing.assert_close(remote["resaved.prediction_logits"], local.prediction_logits)


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
