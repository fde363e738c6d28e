"""Train a tiny LXMERT for three steps under torchrun with its parameters sharded (FSDP2) or replicated (DDP), and
record the global loss of every step, the share of the parameters rank 0 holds and the final full weights.

Sharding follows the shipped ``examples/fsdp_config.json``: every module whose class is named in
``transformer_layer_cls_to_wrap`` is its own FSDP unit, and the root holds the rest (embeddings and the tied MLM
decoder). accelerate applies the Trainer's ``--fsdp`` only to multi-GPU runs, so on CPU the model is sharded here with
torch's ``fully_shard`` directly, over gloo.

Arguments: output folder, ``fsdp`` or ``ddp``.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpers.ddp_train import EXAMPLES, RecordingDataset  # noqa: E402
from helpers.factories import tiny_lxmert_config  # noqa: E402
from vlpretrain import LxmertForPreTraining  # noqa: E402

GLOBAL_BATCH, STEPS = 8, 3


def shard(model: torch.nn.Module) -> torch.nn.Module:
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    wrapped = set(json.loads((EXAMPLES / "fsdp_config.json").read_text())["transformer_layer_cls_to_wrap"])
    units = [module for module in model.modules() if type(module).__name__ in wrapped]
    assert units, f"no module of the classes {sorted(wrapped)} in {type(model).__name__}"
    for module in units:
        fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def main(output_dir: str, sharding: str) -> None:
    dist.init_process_group("gloo", timeout=timedelta(minutes=3))  # a stuck collective fails instead of hanging
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = LxmertForPreTraining(tiny_lxmert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).train()
    full_size = sum(parameter.numel() for parameter in model.parameters())
    trained = shard(model) if sharding == "fsdp" else DistributedDataParallel(model)
    local_size = sum(
        (parameter.to_local() if isinstance(parameter, DTensor) else parameter).numel() for parameter in model.parameters()
    )
    optimizer = torch.optim.AdamW(trained.parameters(), lr=1e-2)
    data = RecordingDataset(GLOBAL_BATCH * STEPS).batch
    local = GLOBAL_BATCH // world
    losses = []
    for step in range(STEPS):
        start = step * GLOBAL_BATCH + rank * local
        batch = {name: value[start : start + local] for name, value in data.items()}
        loss = trained(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        total = loss.detach().clone()
        dist.all_reduce(total)
        losses.append(total.item() / world)
    state = {
        name: (value.full_tensor() if isinstance(value, DTensor) else value).detach().contiguous()
        for name, value in model.state_dict().items()
        if name != "mlm_head.decoder.weight"
    }
    if rank == 0:
        save_file(state, str(Path(output_dir) / f"weights-{sharding}.safetensors"))
        record = {"losses": losses, "local_parameter_fraction": local_size / full_size}
        (Path(output_dir) / f"record-{sharding}.json").write_text(json.dumps(record))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
