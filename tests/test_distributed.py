"""Two CPU processes (gloo) under torchrun: disjoint data, identical weights, same loss as one process."""

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


def run(command: list[str], tmp_path: Path) -> None:
    environment = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    completed = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-4000:]


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
