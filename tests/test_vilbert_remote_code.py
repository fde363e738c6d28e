"""ViLBERT and ERNIE-ViL folders load with transformers alone (trust_remote_code) in a fresh process."""

from __future__ import annotations

import os
import textwrap

import torch
from helpers.fresh_process import run_fresh_process
from helpers.vilbert_factories import tiny_ernie_vil_config, tiny_vilbert_config, two_stream_batch
from safetensors.torch import load_file, save_file

from vlpretrain import ErnieVilForPreTraining, VilbertForPreTraining, VilbertForQuestionAnswering
from vlpretrain.cli import main as cli_main

FRESH_PROCESS = textwrap.dedent(
    """
    import sys
    sys.modules["vlpretrain"] = None  # the package must not be importable here
    import torch, transformers
    from safetensors.torch import load_file, save_file

    inputs_path, outputs_path, *folders = sys.argv[1:]
    inputs = load_file(inputs_path)
    outputs = {}
    for folder in folders:
        name = folder.rsplit("/", 1)[-1]
        auto = transformers.AutoModelForVisualQuestionAnswering if name == "vqa" else transformers.AutoModelForPreTraining
        model = auto.from_pretrained(folder, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
        with torch.no_grad():
            result = model(**inputs)
        key = "logits" if name == "vqa" else "prediction_logits"
        outputs[name] = result[key].contiguous()
        if name != "vqa":
            base = transformers.AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
            with torch.no_grad():
                outputs[name + ".pooled"] = base(**inputs).pooled_output.contiguous()
    save_file(outputs, outputs_path)
    """
)


def test_exported_folders_load_with_transformers_alone(tmp_path):
    vilbert = VilbertForPreTraining(tiny_vilbert_config()).eval()
    ernie = ErnieVilForPreTraining(tiny_ernie_vil_config()).eval()
    vqa = VilbertForQuestionAnswering(tiny_vilbert_config(id2label={0: "yes", 1: "no"})).eval()
    folders = {"vilbert": vilbert, "ernie": ernie, "vqa": vqa}
    for name, model in folders.items():
        model.save_pretrained(tmp_path / name, remote_code=True)
    assert cli_main(["export", str(tmp_path / "vilbert"), "--output-dir", str(tmp_path / "exported")]) == 0
    assert "ViLBERT" in (tmp_path / "exported" / "README.md").read_text()
    (tmp_path / "exported").rename(tmp_path / "vilbert_export")
    folders["vilbert_export"] = vilbert
    files = set(os.listdir(tmp_path / "ernie"))
    assert {"modeling_ernie_vil.py", "modeling_vilbert.py", "configuration_ernie_vil.py", "configuration_vilbert.py",
            "modeling_layers.py", "modeling_embeddings.py"} <= files
    inputs = {name: value.contiguous() for name, value in two_stream_batch(tiny_vilbert_config(), labels=False).items()}
    save_file(inputs, tmp_path / "inputs.safetensors")
    run_fresh_process(
        FRESH_PROCESS, tmp_path, tmp_path / "inputs.safetensors", tmp_path / "outputs.safetensors",
        *(tmp_path / name for name in folders),
    )
    remote = load_file(tmp_path / "outputs.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(remote["vilbert"], vilbert(**inputs).prediction_logits)
        torch.testing.assert_close(remote["vilbert.pooled"], vilbert(**inputs).pooled_output)
        torch.testing.assert_close(remote["vilbert_export"], vilbert(**inputs).prediction_logits)
        torch.testing.assert_close(remote["ernie"], ernie(**inputs).prediction_logits)
        torch.testing.assert_close(remote["ernie.pooled"], ernie(**inputs).pooled_output)
        torch.testing.assert_close(remote["vqa"], vqa(**inputs).logits)
