"""Pretraining-step benchmark: vlpretrain's ViLBERT (6-layer release) against vlpretrain's LXMERT as a reference point.

Both are built at their paper's base size (ViLBERT: 12 text layers of 768, 6 visual and 6 co-attention layers of
1024, 239M parameters with its heads; LXMERT: 9/5/5 layers of 768, 228M) and get a batch of the same shape
(8 samples, 20 tokens, 36 regions of 2048-d; ViLBERT adds its global image token) with every objective's
targets: ViLBERT's MLM, masked-region KL over 1601 classes and alignment; LXMERT's five objectives. They run
forward + backward + AdamW step alternately so machine noise hits both alike. Printed: samples/s of each, the
ratio, and peak memory of each step (measured as in ``bench_lxmert_pretrain.py``), in float32 and bf16 autocast.

Usage: ``python bench/bench_vilbert_pretrain.py [--device cpu|cuda] [--steps 6] [--dtypes float32 bfloat16]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from bench_lxmert_pretrain import make_batch, measure_memory, synchronize, train_step

from vlpretrain import LxmertConfig, LxmertForPreTraining, VilbertConfig, VilbertForPreTraining


def vilbert_batch(lxmert_batch: dict, generator: torch.Generator) -> dict:
    """The same text and regions with ViLBERT's targets: detector distributions of masked regions and alignment."""
    batch = {name: lxmert_batch[name] for name in ("input_ids", "attention_mask", "token_type_ids", "labels",
                                                   "region_features", "region_boxes", "masked_regions", "matched_labels")}
    shape = (*batch["region_features"].shape[:2], 1601)
    logits = torch.randn(shape, generator=generator).to(batch["region_features"].device)
    batch["region_class_targets"] = torch.softmax(logits, dim=-1)
    return batch


def run(device: torch.device, dtype: str, steps: int, warmup: int, batch_size: int) -> dict:
    torch.manual_seed(0)
    vilbert = VilbertForPreTraining(VilbertConfig()).to(device).train()
    lxmert = LxmertForPreTraining(LxmertConfig()).to(device).train()
    lxmert_batch, _ = make_batch(batch_size, 20, 36, device)
    models = {
        "vilbert": (vilbert, torch.optim.AdamW(vilbert.parameters(), lr=1e-4),
                    vilbert_batch(lxmert_batch, torch.Generator().manual_seed(1))),
        "lxmert": (lxmert, torch.optim.AdamW(lxmert.parameters(), lr=1e-4), lxmert_batch),
    }
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
    memory = {name: measure_memory(model, optimizer, batch, dtype, device) for name, (model, optimizer, batch) in models.items()}
    throughput = {name: batch_size / statistics.median(values) for name, values in times.items()}
    parameters = {name: sum(p.numel() for p in model.parameters()) for name, (model, _, _) in models.items()}
    return {"throughput": throughput, "memory": memory, "parameters": parameters}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    parser.add_argument("--steps", type=int, default=6, help="timed steps per model (median is reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"Pretraining step, base sizes, batch {args.batch_size}, 20 tokens, 36 regions, on {name}")
    print(f"{'dtype':<10}{'ViLBERT s/s':>13}{'LXMERT s/s':>13}{'speed ratio':>13}{'ViLBERT MB':>12}{'LXMERT MB':>12}{'memory ratio':>14}")
    for dtype in args.dtypes:
        result = run(device, dtype, args.steps, args.warmup, args.batch_size)
        ours, reference = result["throughput"]["vilbert"], result["throughput"]["lxmert"]
        ours_memory, reference_memory = result["memory"]["vilbert"] / 2**20, result["memory"]["lxmert"] / 2**20
        print(
            f"{dtype:<10}{ours:>13.2f}{reference:>13.2f}{ours / reference:>12.2f}x{ours_memory:>12.0f}"
            f"{reference_memory:>12.0f}{ours_memory / reference_memory:>13.2f}x",
            flush=True,
        )
    counts = result["parameters"]
    print(f"parameters: ViLBERT {counts['vilbert'] / 1e6:.1f}M, LXMERT {counts['lxmert'] / 1e6:.1f}M")


if __name__ == "__main__":
    main()
