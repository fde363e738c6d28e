"""`vlpretrain push` uploads through huggingface_hub to a stand-in Hub; the model then loads by repo id."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers.factories import image_text_batch, tiny_lxmert_config
from safetensors.torch import load_file, save_file

from vlpretrain import LxmertForPreTraining

PUSH_AND_LOAD = textwrap.dedent(
    """
    import sys
    folder, repo_id, inputs_path, outputs_path = sys.argv[1:5]
    from vlpretrain.cli import main
    assert main(["push", folder, "--repo-id", repo_id]) == 0
    """
)

LOAD_BY_REPO_ID = textwrap.dedent(
    """
    import sys
    sys.modules["vlpretrain"] = None
    import torch, transformers
    from safetensors.torch import load_file, save_file
    repo_id, inputs_path, outputs_path = sys.argv[1:4]
    model = transformers.AutoModelForPreTraining.from_pretrained(repo_id, trust_remote_code=True).eval()
    with torch.no_grad():
        logits = model(**load_file(inputs_path)).matching_logits
    save_file({"matching_logits": logits.contiguous()}, outputs_path)
    """
)


@pytest.mark.slow
def test_push_then_load_by_repo_id_with_remote_code(tmp_path):
    from helpers.fake_hub import fake_hub

    config = tiny_lxmert_config()
    model = LxmertForPreTraining(config).eval()
    model.save_pretrained(tmp_path / "model")
    inputs = {name: value.contiguous() for name, value in image_text_batch(config, labels=False).items()}
    save_file(inputs, tmp_path / "inputs.safetensors")
    with fake_hub() as (endpoint, state):
        environment = dict(os.environ, HF_ENDPOINT=endpoint, HF_TOKEN="hf_fake_token", HF_HUB_OFFLINE="0",
                           HF_HOME=str(tmp_path / "home"), HF_HUB_DISABLE_XET="1")
        pushed = subprocess.run(
            [sys.executable, "-c", PUSH_AND_LOAD, str(tmp_path / "model"), "org/tiny-lxmert", "", ""],
            env=environment, capture_output=True, text=True, timeout=300,
        )
        assert pushed.returncode == 0, pushed.stderr[-3000:]
        files = set(state.repos["org/tiny-lxmert"]["files"])
        assert {"config.json", "model.safetensors", "modeling_lxmert.py", "configuration_lxmert.py", "README.md"} <= files
        loaded = subprocess.run(
            [sys.executable, "-c", LOAD_BY_REPO_ID, "org/tiny-lxmert", str(tmp_path / "inputs.safetensors"),
             str(tmp_path / "outputs.safetensors")],
            env=dict(environment, HF_HOME=str(tmp_path / "fresh_home"), PYTHONPATH=""), cwd=tmp_path,
            capture_output=True, text=True, timeout=300,
        )
        assert loaded.returncode == 0, loaded.stderr[-3000:]
        assert ("GET", "/api/models/org/tiny-lxmert/revision/main") in state.requests or any(
            method == "GET" and path.startswith("/api/models/org/tiny-lxmert") for method, path in state.requests
        )
    with torch.no_grad():
        expected = model(**inputs).matching_logits
    torch.testing.assert_close(load_file(tmp_path / "outputs.safetensors")["matching_logits"], expected)


def test_push_rejects_a_folder_without_a_model(tmp_path):
    import pytest

    from vlpretrain.commands.push import push_folder

    with pytest.raises(FileNotFoundError, match="no config.json"):
        push_folder(tmp_path, "org/name")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="--repo-id: expected ORG/NAME"):
        push_folder(tmp_path, "just-a-name")
