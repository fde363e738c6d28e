"""Pretraining-step benchmark: vlpretrain's LxmertForPreTraining against transformers' LxmertForPreTraining.

Both models are built at the paper's base size (9/5/5 layers, hidden 768, 36 regions of 2048-d), get the
same batch (8 samples, 20 tokens, all five objectives' targets) and run forward + backward + AdamW step,
alternating between the two so machine noise hits both alike. Printed: samples/s of each and their
ratio, and the peak memory of each step and its ratio, in float32 and in bfloat16 autocast.

Peak memory of one model's step: its parameters, gradients and AdamW state, plus what the step allocates on
top of what was resident before it (both models live in the process, so the other model's state is left out).
On CUDA the step's part is ``torch.cuda.max_memory_allocated`` minus the memory allocated before the step; on
CPU, where PyTorch keeps no allocator statistics, it is the bytes of tensors saved for backward (the
activations), deduplicated by storage.

With ``--compile`` a third model, ours under ``torch.compile`` (same weights), joins the rotation, and the
compiled-vs-eager and compiled-vs-peer ratios are printed too (compilation time is left out by the warm-up
steps; ``--compile-mode`` passes e.g. ``max-autotune`` or ``reduce-overhead``, which uses CUDA graphs).
``--size tiny|small`` uses the registry's narrow presets for a quick check of the script on a CPU.

Usage: ``python bench/bench_lxmert_pretrain.py [--device cpu|cuda] [--steps 6] [--dtypes float32 bfloat16]
[--compile] [--compile-mode default] [--size base]``
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
import transformers

from vlpretrain import LxmertConfig, LxmertForPreTraining
from vlpretrain.registry import get_architecture


def make_batch(batch: int, text_length: int, regions: int, device: torch.device, seed: int = 0) -> dict:
    """One pretraining batch with every objective's targets, in both naming conventions."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1000, 30000, (batch, text_length), generator=generator)
    mlm_labels = torch.full_like(input_ids, -100)
    chosen = torch.rand(batch, text_length, generator=generator) < 0.15
    chosen[:, 1] = True
    mlm_labels[chosen] = input_ids[chosen]
    features = torch.rand(batch, regions, 2048, generator=generator)
    corners = torch.rand(batch, regions, 2, 2, generator=generator)
    boxes = torch.cat([corners.min(2).values, corners.max(2).values], -1)
    masked = torch.rand(batch, regions, generator=generator) < 0.15
    object_labels = torch.randint(0, 1600, (batch, regions), generator=generator)
    object_conf = torch.rand(batch, regions, generator=generator)
    attribute_labels = torch.randint(0, 400, (batch, regions), generator=generator)
    attribute_conf = torch.rand(batch, regions, generator=generator)
    matched = torch.randint(0, 2, (batch,), generator=generator)
    answers = torch.where(matched == 1, torch.randint(0, 9500, (batch,), generator=generator), torch.tensor(-100))
    common = dict(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        token_type_ids=torch.zeros_like(input_ids),
        labels=mlm_labels,
    )
    ours = dict(
        common,
        region_features=features,
        region_boxes=boxes,
        masked_regions=masked,
        region_feature_targets=features,
        region_object_labels=object_labels,
        region_object_confidences=object_conf,
        region_attribute_labels=attribute_labels,
        region_attribute_confidences=attribute_conf,
        matched_labels=matched,
        answer_labels=answers,
    )
    theirs = dict(
        common,
        visual_feats=features,
        visual_pos=boxes,
        obj_labels={
            "obj": (object_labels, object_conf),
            "attr": (attribute_labels, attribute_conf),
            "feat": (features, masked.float()),
        },
        matched_label=matched,
        ans=answers,
    )

    def to_device(value):
        if isinstance(value, dict):
            return {key: to_device(item) for key, item in value.items()}
        if isinstance(value, tuple):
            return tuple(to_device(item) for item in value)
        return value.to(device)

    return to_device(ours), to_device(theirs)


class SavedTensorMeter:
    """Sum the bytes of distinct storages autograd saves for backward (activation memory)."""

    def __init__(self):
        self.storages: dict[int, int] = {}

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        self.storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    @property
    def bytes(self) -> int:
        return sum(self.storages.values())


def state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Parameters, gradients and optimizer state."""
    total = 0
    for parameter in model.parameters():
        total += parameter.numel() * parameter.element_size() * (2 if parameter.grad is not None else 1)
    for state in optimizer.state.values():
        total += sum(value.numel() * value.element_size() for value in state.values() if isinstance(value, torch.Tensor))
    return total


def train_step(model, optimizer, batch, dtype, device, meter=None) -> None:
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bfloat16" else contextlib.nullcontext()
    )
    hooks = torch.autograd.graph.saved_tensors_hooks(meter.pack, lambda tensor: tensor) if meter else contextlib.nullcontext()
    with autocast, hooks:
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=False)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure_memory(model, optimizer, batch, dtype, device) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        resident = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        train_step(model, optimizer, batch, dtype, device)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - resident + state_bytes(model, optimizer)
    meter = SavedTensorMeter()
    train_step(model, optimizer, batch, dtype, device, meter)
    return meter.bytes + state_bytes(model, optimizer)


def configs(size: str) -> tuple[LxmertConfig, transformers.LxmertConfig]:
    """Our config and transformers' at the same size (``base``: both defaults; else the registry's preset)."""
    if size == "base":
        return LxmertConfig(), transformers.LxmertConfig()
    values = get_architecture("lxmert").preset(size)
    peer = transformers.LxmertConfig(
        hidden_size=values["hidden_size"], num_attention_heads=values["num_attention_heads"],
        intermediate_size=values["intermediate_size"], l_layers=values["num_text_layers"],
        r_layers=values["num_visual_layers"], x_layers=values["num_cross_layers"],
    )
    return LxmertConfig(**values), peer


def run(device: torch.device, dtype: str, steps: int, warmup: int, batch_size: int, compile_mode: str | None = None,
        size: str = "base") -> dict:
    torch.manual_seed(0)
    ours_config, peer_config = configs(size)
    ours = LxmertForPreTraining(ours_config).to(device).train()
    theirs = transformers.LxmertForPreTraining(peer_config).to(device).train()
    ours_batch, theirs_batch = make_batch(batch_size, 20, 36, device)
    models = {
        "vlpretrain": (ours, torch.optim.AdamW(ours.parameters(), lr=1e-4), ours_batch),
        "transformers": (theirs, torch.optim.AdamW(theirs.parameters(), lr=1e-4), theirs_batch),
    }
    if compile_mode is not None:
        twin = LxmertForPreTraining(ours_config).to(device).train()
        twin.load_state_dict(ours.state_dict())
        compiled = torch.compile(twin, mode=None if compile_mode == "default" else compile_mode)
        models["compiled"] = (compiled, torch.optim.AdamW(twin.parameters(), lr=1e-4), ours_batch)
    for model, optimizer, batch in models.values():
        for _ in range(warmup):
            train_step(model, optimizer, batch, dtype, device)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(steps):
        for name, (model, optimizer, batch) in models.items():
            synchronize(device)
            start = time.perf_counter()
            train_step(model, optimizer, batch, dtype, device)
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    # On CPU the memory meter hooks autograd's saved tensors, which a compiled graph does not expose: skipped there.
    memory = {
        name: measure_memory(model, optimizer, batch, dtype, device)
        for name, (model, optimizer, batch) in models.items()
        if device.type == "cuda" or name != "compiled"
    }
    throughput = {name: batch_size / statistics.median(values) for name, values in times.items()}
    return {"throughput": throughput, "memory": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    parser.add_argument("--steps", type=int, default=6, help="timed steps per model (median is reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--compile", action="store_true", help="also time our model under torch.compile")
    parser.add_argument("--compile-mode", default="default", help="torch.compile mode (default, reduce-overhead, max-autotune)")
    parser.add_argument("--size", default="base", choices=["base", "small", "tiny"])
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"LXMERT pretraining step, {args.size} size, batch {args.batch_size}, 20 tokens, 36 regions, on {name}")
    print(f"{'dtype':<10}{'ours samples/s':>16}{'peer samples/s':>16}{'speed ratio':>13}{'ours peak MB':>14}{'peer peak MB':>14}{'memory ratio':>14}")
    for dtype in args.dtypes:
        result = run(device, dtype, args.steps, args.warmup, args.batch_size, args.compile_mode if args.compile else None, args.size)
        ours, peer = result["throughput"]["vlpretrain"], result["throughput"]["transformers"]
        ours_memory, peer_memory = result["memory"]["vlpretrain"] / 2**20, result["memory"]["transformers"] / 2**20
        print(
            f"{dtype:<10}{ours:>16.2f}{peer:>16.2f}{ours / peer:>12.2f}x{ours_memory:>14.0f}{peer_memory:>14.0f}"
            f"{ours_memory / peer_memory:>13.2f}x",
            flush=True,
        )
        if "compiled" in result["throughput"]:
            compiled = result["throughput"]["compiled"]
            memory = result["memory"].get("compiled")
            memory_text = f", peak {memory / 2**20:.0f} MB ({memory / result['memory']['transformers']:.2f}x peer)" if memory else ""
            print(f"{'':<10}compiled ({args.compile_mode}): {compiled:.2f} samples/s = {compiled / ours:.2f}x eager, "
                  f"{compiled / peer:.2f}x transformers{memory_text}", flush=True)


if __name__ == "__main__":
    main()
