"""Two CPU processes (gloo) under torchrun: disjoint data, identical weights, same loss as one process; and the model
sharded with FSDP2 as the shipped FSDP config wraps it gives DDP's losses and weights."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).resolve().parent / "helpers" / "ddp_train.py"
FSDP_SCRIPT = Path(__file__).resolve().parent / "helpers" / "fsdp_train.py"

pytestmark = pytest.mark.slow  # multi-process


def run(command: list[str], tmp_path: Path) -> str:
    """Run ``command`` in ``tmp_path``; returns its standard error."""
    environment = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    completed = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    two.mkdir()
    one.mkdir()
    run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
         str(SCRIPT), str(two), "2"], tmp_path)
    run([sys.executable, str(SCRIPT), str(one), "4"], tmp_path)

    ranks = [json.loads((two / f"record-{rank}.json").read_text()) for rank in (0, 1)]
    assert all(record["world_size"] == 2 for record in ranks)
    assert not set(ranks[0]["seen"]) & set(ranks[1]["seen"]), "ranks must read disjoint samples"
    single = json.loads((one / "record-0.json").read_text())
    assert sorted(ranks[0]["seen"] + ranks[1]["seen"]) == sorted(single["seen"])

    weights = [load_file(two / f"weights-{rank}.safetensors") for rank in (0, 1)]
    reference = load_file(one / "weights-0.safetensors")
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), f"{name} differs between ranks"
        torch.testing.assert_close(value, reference[name], atol=1e-5, rtol=1e-4, msg=name)
    for distributed_loss, single_loss in zip(ranks[0]["losses"], single["losses"], strict=True):
        assert abs(distributed_loss - single_loss) < 1e-3 * abs(single_loss)


def torchrun(script: Path, *arguments: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
            "--master_port", str(free_port()), str(script), *arguments]


def test_fsdp_sharded_training_matches_ddp_at_the_same_global_batch(tmp_path):
    """FSDP2 over gloo, each TransformerLayer / CrossModalityLayer its own unit as examples/fsdp_config.json says:
    each rank holds about half the parameters, and three AdamW steps give DDP's losses and weights."""
    for sharding in ("fsdp", "ddp"):
        run(torchrun(FSDP_SCRIPT, str(tmp_path), sharding), tmp_path)
    fsdp, ddp = (json.loads((tmp_path / f"record-{sharding}.json").read_text()) for sharding in ("fsdp", "ddp"))
    assert 0.45 < fsdp["local_parameter_fraction"] < 0.55
    assert ddp["local_parameter_fraction"] == 1.0
    assert fsdp["losses"][-1] < fsdp["losses"][0]
    for sharded_loss, replicated_loss in zip(fsdp["losses"], ddp["losses"], strict=True):
        assert abs(sharded_loss - replicated_loss) < 1e-4 * abs(replicated_loss)
    sharded, replicated = load_file(tmp_path / "weights-fsdp.safetensors"), load_file(tmp_path / "weights-ddp.safetensors")
    assert sharded.keys() == replicated.keys()
    for name, value in sharded.items():
        torch.testing.assert_close(value, replicated[name], atol=1e-5, rtol=1e-4, msg=name)


def test_trainer_fsdp_on_cpu_processes_is_said_to_fall_back(tmp_path):
    """accelerate applies the Trainer's ``--fsdp`` only on GPUs: two CPU processes train replicated, and say so."""
    stderr = run(torchrun(SCRIPT, str(tmp_path), "2", "fsdp"), tmp_path)
    record = json.loads((tmp_path / "record-0.json").read_text())
    assert record["world_size"] == 2 and not record["fsdp_enabled"]
    assert "fsdp: FSDP was requested but accelerate applies it only to multi-GPU runs" in stderr
