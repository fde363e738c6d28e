"""Hub repo ids wherever a checkpoint or model folder is read, against the loopback stand-in Hub of the push tests."""

from __future__ import annotations

import huggingface_hub.constants as hub_constants
import pytest
import torch
import transformers
from helpers.factories import tiny_lxmert_config
from helpers.fake_hub import fake_hub

from vlpretrain import LxmertForPreTraining
from vlpretrain.cli import main as cli_main
from vlpretrain.utils.hub_paths import resolve_path

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """The stand-in Hub as huggingface_hub's endpoint, online, with a private cache; yields its state."""
    with fake_hub() as (endpoint, state):
        monkeypatch.setattr(hub_constants, "ENDPOINT", endpoint)
        monkeypatch.setattr(hub_constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
        yield state


def publish(state, repo_id: str, folder) -> None:
    state.repos[repo_id] = {"sha": SHA, "files": {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}}


def test_convert_reads_a_hub_repo_id_at_a_revision_then_offline_from_the_cache(tmp_path, hub, monkeypatch):
    torch.manual_seed(0)
    config = transformers.LxmertConfig(vocab_size=99, hidden_size=32, num_attention_heads=4, intermediate_size=37,
                                       l_layers=1, r_layers=1, x_layers=1, visual_feat_dim=16, num_qa_labels=5)
    theirs = transformers.LxmertForPreTraining(config).eval()
    theirs.save_pretrained(tmp_path / "hf")
    (tmp_path / "hf" / "tf_model.h5").write_bytes(b"not read")
    publish(hub, "unc-nlp/lxmert-tiny", tmp_path / "hf")
    assert cli_main(["convert", "--from", "lxmert-hf", "unc-nlp/lxmert-tiny", "--revision", "v1.0",
                     "--output_dir", str(tmp_path / "ours")]) == 0
    assert ("GET", "/api/models/unc-nlp/lxmert-tiny/revision/v1.0") in hub.requests
    assert not any(path.endswith("tf_model.h5") for _, path in hub.requests)
    ours = LxmertForPreTraining.from_pretrained(tmp_path / "ours").eval()
    inputs = dict(input_ids=torch.tensor([[1, 5, 7, 2]]), visual_feats=torch.randn(1, 3, 16),
                  visual_pos=torch.tensor([[[0.1, 0.1, 0.5, 0.6]] * 3]))
    with torch.no_grad():
        torch.testing.assert_close(ours(**inputs).prediction_logits, theirs(**inputs).prediction_logits, atol=1e-5, rtol=0)

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    requests = len(hub.requests)
    assert resolve_path("unc-nlp/lxmert-tiny", "v1.0") == resolve_path("unc-nlp/lxmert-tiny", "v1.0")
    assert len(hub.requests) == requests, "offline resolution must not contact the Hub"
    with pytest.raises(FileNotFoundError, match="unc-nlp/other is not a local path and the Hub repository could not be fetched"):
        resolve_path("unc-nlp/other")


def test_unknown_repo_and_local_paths(tmp_path, hub):
    with pytest.raises(FileNotFoundError, match=r"org/missing is not a local path .*at revision main"):
        resolve_path("org/missing", "main", "model")
    assert resolve_path(tmp_path) == tmp_path
    with pytest.raises(ValueError, match="--revision: 'v2' applies to Hub repo ids"):
        resolve_path(tmp_path, "v2")
    with pytest.raises(FileNotFoundError, match="neither an existing file or folder nor a Hub repo id"):
        resolve_path(tmp_path / "a" / "b" / "missing.pth")


def test_training_model_and_featurizer_backbone_from_the_hub(tmp_path, hub):
    """--model ORG/NAME resolves to a snapshot folder; a featurizer's backbone loads by repo id at a revision."""
    from helpers.processing import tiny_backbone

    from vlpretrain.commands.train import _parser
    from vlpretrain.processing.regions import RegionFeaturizer

    LxmertForPreTraining(tiny_lxmert_config()).save_pretrained(tmp_path / "pretrained")
    publish(hub, "org/tiny-lxmert", tmp_path / "pretrained")
    folder = resolve_path("org/tiny-lxmert", None, "model")
    assert (folder / "config.json").exists() and LxmertForPreTraining.from_pretrained(folder).config.hidden_size == 32
    model_args = _parser("finetune").parse_args_into_dataclasses(
        args=["--model", "org/tiny-lxmert", "--revision", "main", "--output_dir", str(tmp_path / "out")])[1]
    assert model_args.model == "org/tiny-lxmert" and model_args.revision == "main"

    tiny_backbone().save_pretrained(tmp_path / "backbone")
    publish(hub, "org/tiny-backbone", tmp_path / "backbone")
    featurizer = RegionFeaturizer.from_pretrained_models("org/tiny-backbone", revision="v3", num_regions=None)
    assert featurizer.backbone is not None  # loads on first use
    assert ("GET", "/api/models/org/tiny-backbone/revision/v3") in hub.requests or any(
        "/org/tiny-backbone/resolve/v3/" in path for _, path in hub.requests)
