"""What every training-step benchmark of ``bench/`` shares: one step (forward, backward, AdamW), its peak memory, the
alternating timing loop and the compiled twin that ``--compile`` adds.

Models are timed in rotation (one step of each, repeated) so that machine noise hits all alike; the median step is
reported. Peak memory of one model's step is its parameters, gradients and AdamW state plus what the step allocates
on top of what was resident before it: on CUDA ``torch.cuda.max_memory_allocated`` during the step minus the memory
allocated before it; on CPU, where PyTorch keeps no allocator statistics, the bytes of tensors saved for backward
(the activations), deduplicated by storage. A compiled graph does not expose its saved tensors, so compiled models
have no CPU memory figure.

``--compile`` adds a twin of the benchmarked model (same weights) under ``torch.compile``; ``--compile-mode
reduce-overhead`` replays the step's kernels as CUDA graphs (what removes launch overhead at small batches) and
``--fused-optimizer`` uses AdamW's fused CUDA kernel for every model.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class Contender:
    """A model in the rotation: its optimizer and the batch it is fed (in its own input names)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    batch: dict
    eager_module: torch.nn.Module | None = None  # the module a compiled contender wraps (for memory and counts)

    @property
    def module(self) -> torch.nn.Module:
        return self.eager_module if self.eager_module is not None else self.model


def add_step_arguments(parser: argparse.ArgumentParser, steps: int = 6, batch_size: int = 8) -> None:
    """The options every training-step benchmark takes."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    parser.add_argument("--steps", type=int, default=steps, help="timed steps per model (median is reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model first (compilation happens here)")
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--compile", action="store_true", help="also time the model under torch.compile (same weights)")
    parser.add_argument("--compile-mode", default="default", help="torch.compile mode: default, reduce-overhead, max-autotune")
    parser.add_argument("--fused-optimizer", action="store_true", help="AdamW's fused kernel (CUDA) for every model")


def optimizer_for(model: torch.nn.Module, device: torch.device, fused: bool = False, lr: float = 1e-4) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=lr, fused=True if fused and device.type == "cuda" else None)


def compiled_twin(model: torch.nn.Module, batch: dict, device: torch.device, mode: str, fused: bool) -> Contender:
    """A copy of ``model`` (same weights, own optimizer) under ``torch.compile``."""
    twin = copy.deepcopy(model)
    compiled = torch.compile(twin, mode=None if mode == "default" else mode)
    return Contender(compiled, optimizer_for(twin, device, fused), batch, eager_module=twin)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


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


def train_step(model, optimizer, batch, dtype: str, device: torch.device, meter: SavedTensorMeter | None = None) -> None:
    """Forward (bf16 autocast when ``dtype`` is bfloat16), backward, optimizer step."""
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bfloat16" else contextlib.nullcontext()
    hooks = torch.autograd.graph.saved_tensors_hooks(meter.pack, lambda tensor: tensor) if meter else contextlib.nullcontext()
    with autocast, hooks:
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=False)


def measure_memory(
    contender: Contender, dtype: str, device: torch.device, saved_bytes: Callable[[SavedTensorMeter, torch.nn.Module], int] | None = None
) -> int | None:
    """Peak bytes of one step (see the module docstring); None for a compiled model on CPU. ``saved_bytes`` counts the
    CPU meter differently (e.g. leaving out parameter storages autograd saves)."""
    model, optimizer, batch = contender.model, contender.optimizer, contender.batch
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        resident = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        train_step(model, optimizer, batch, dtype, device)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - resident + state_bytes(contender.module, optimizer)
    if contender.eager_module is not None:
        return None
    meter = SavedTensorMeter()
    train_step(model, optimizer, batch, dtype, device, meter)
    saved = saved_bytes(meter, model) if saved_bytes is not None else meter.bytes
    return saved + state_bytes(model, optimizer)


def time_steps(contenders: dict[str, Contender], dtype: str, device: torch.device, steps: int, warmup: int) -> dict[str, float]:
    """Median seconds per step of each contender, timed in rotation after ``warmup`` untimed steps each."""
    for contender in contenders.values():
        for _ in range(warmup):
            train_step(contender.model, contender.optimizer, contender.batch, dtype, device)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(steps):
        for name, contender in contenders.items():
            synchronize(device)
            start = time.perf_counter()
            train_step(contender.model, contender.optimizer, contender.batch, dtype, device)
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"


def report(
    contenders: dict[str, Contender], dtype: str, device: torch.device, args: argparse.Namespace, reference: str,
    saved_bytes: Callable[[SavedTensorMeter, torch.nn.Module], int] | None = None,
) -> dict[str, tuple[float, float | None]]:
    """Time and measure every contender and print one line each: samples/s, peak MB and both as ratios to
    ``reference``. Returns {name: (samples/s, peak bytes or None)}."""
    seconds = time_steps(contenders, dtype, device, args.steps, args.warmup)
    results = {}
    for name, contender in contenders.items():
        results[name] = (args.batch_size / seconds[name], measure_memory(contender, dtype, device, saved_bytes))
    base_speed, base_memory = results[reference]
    for name, (speed, memory) in results.items():
        memory_text = "        -" if memory is None else f"{memory / 2**20:9.0f}"
        ratio_text = "      -" if memory is None or base_memory is None else f"{memory / base_memory:6.2f}x"
        print(f"{dtype:<10}{name:<26}{speed:>11.2f}{speed / base_speed:>17.2f}x{memory_text}{ratio_text}", flush=True)
    return results


def print_header(title: str, reference: str) -> None:
    print(title)
    print(f"{'dtype':<10}{'model':<26}{'samples/s':>11}{'vs ' + reference:>18}{'peak MB':>9}{'vs ref':>7}")


def print_verdicts(results: dict[str, tuple[float, float | None]], reference: str, target: float, dtype: str) -> None:
    """One line per vlpretrain contender: its speed ratio to ``reference`` against ``target``, and memory no higher."""
    base_speed, base_memory = results[reference]
    for name, (speed, memory) in results.items():
        if not name.startswith("vlpretrain"):
            continue
        speed_met = "met" if speed / base_speed >= target else "NOT met"
        memory_met = "not measured" if memory is None or base_memory is None else (
            f"{memory / base_memory:.2f}x, " + ("met" if memory <= base_memory else "NOT met"))
        print(f"{dtype}: {name} {speed / base_speed:.2f}x {reference} (target >= {target}x: {speed_met}); memory {memory_met}")
