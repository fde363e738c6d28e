"""Pretraining-step benchmark: vlpretrain's VlBertForPreTraining against transformers' VisualBertForPreTraining.

Both are single-stream BERT-base models (12 layers, hidden 768) over 20 tokens and 36 regions of 2048-d features,
fed the same batch (8 samples): VL-BERT with its released objectives (MLM with visual clues, text-only MLM on a
quarter of the rows, masked RoI classification to a 1601-class detector distribution), VisualBERT with its own
(MLM + sentence-image prediction). Each runs forward + backward + AdamW step, alternating between the two so
machine noise hits both alike. Printed: samples/s of each and their ratio, and the peak memory of each step and
its ratio, in float32 and in bfloat16 autocast. Memory is measured as in ``bench_lxmert_pretrain.py``
(CUDA: allocator peak of the step plus parameters, gradients and optimizer state; CPU: bytes saved for backward
plus the same state), except that on CPU the parameters autograd saves (a Linear saves its weight) are not counted
a second time among the saved bytes: they are already in the state. ``--count-saved-parameters`` restores the
LXMERT benchmark's count.

Where VL-BERT's step saves work (same maths): the regions of text-only rows and every padded position are dropped
from the position-wise work of each layer (``TokenPacking``), the last layer runs only at the positions the heads
read (labelled tokens, masked regions, [CLS] with a pooler), and the MLM and masked-RoI heads run on those rows only.
The last lines say whether the issue's targets (>= 1.2x throughput, memory no higher) are met.

Usage: ``python bench/bench_vlbert_pretrain.py [--device cpu|cuda] [--steps 6] [--dtypes float32 bfloat16]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import transformers
from bench_lxmert_pretrain import SavedTensorMeter, measure_memory, state_bytes, synchronize, train_step

from vlpretrain import VlBertConfig, VlBertForPreTraining

SPEED_TARGET = 1.2  # issue 6: at least 1.2x VisualBERT's throughput, with no more memory


def make_batch(batch: int, text_length: int, regions: int, device: torch.device, seed: int = 0) -> tuple[dict, dict]:
    """The same captions, regions and masked tokens in both models' input conventions."""
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
    masked[:, 0] = True
    distribution = torch.softmax(torch.randn(batch, regions, 1601, generator=generator), -1)
    text_only = torch.arange(batch) % 4 == 3
    ours = dict(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        token_type_ids=torch.zeros_like(input_ids),
        labels=mlm_labels,
        region_features=features.masked_fill(masked[..., None], 0.0),
        region_boxes=boxes,
        masked_regions=masked,
        region_class_targets=distribution,
        text_only=text_only,
    )
    theirs = dict(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        token_type_ids=torch.zeros_like(input_ids),
        visual_embeds=features,
        visual_attention_mask=torch.ones(batch, regions, dtype=torch.long),
        visual_token_type_ids=torch.ones(batch, regions, dtype=torch.long),
        labels=torch.cat([mlm_labels, torch.full((batch, regions), -100)], 1),
        sentence_image_labels=torch.randint(0, 2, (batch,), generator=generator),
    )
    return ({key: value.to(device) for key, value in ours.items()}, {key: value.to(device) for key, value in theirs.items()})


def step_memory(model, optimizer, batch, dtype: str, device: torch.device, count_saved_parameters: bool) -> int:
    """Peak memory of one step; on CPU the saved-for-backward bytes leave out parameter storages unless asked."""
    if device.type == "cuda" or count_saved_parameters:
        return measure_memory(model, optimizer, batch, dtype, device)
    meter = SavedTensorMeter()
    train_step(model, optimizer, batch, dtype, device, meter)
    parameters = {parameter.untyped_storage().data_ptr() for parameter in model.parameters()}
    saved = sum(size for pointer, size in meter.storages.items() if pointer not in parameters)
    return saved + state_bytes(model, optimizer)


def run(device: torch.device, dtype: str, steps: int, warmup: int, batch_size: int, count_saved_parameters: bool) -> dict:
    torch.manual_seed(0)
    ours = VlBertForPreTraining(VlBertConfig()).to(device).train()
    theirs = transformers.VisualBertForPreTraining(transformers.VisualBertConfig(visual_embedding_dim=2048)).to(device).train()
    ours_batch, theirs_batch = make_batch(batch_size, 20, 36, device)
    models = {
        "vlpretrain": (ours, torch.optim.AdamW(ours.parameters(), lr=1e-4), ours_batch),
        "transformers": (theirs, torch.optim.AdamW(theirs.parameters(), lr=1e-4), theirs_batch),
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
    memory = {
        name: step_memory(model, optimizer, batch, dtype, device, count_saved_parameters)
        for name, (model, optimizer, batch) in models.items()
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
    parser.add_argument("--count-saved-parameters", action="store_true", help="CPU: count saved weights again")
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"VL-BERT vs VisualBERT pretraining step, base size, batch {args.batch_size}, 20 tokens, 36 regions, on {name}")
    print(f"{'dtype':<10}{'ours samples/s':>16}{'peer samples/s':>16}{'speed ratio':>13}{'ours peak MB':>14}{'peer peak MB':>14}{'memory ratio':>14}")
    verdicts = []
    for dtype in args.dtypes:
        result = run(device, dtype, args.steps, args.warmup, args.batch_size, args.count_saved_parameters)
        ours, peer = result["throughput"]["vlpretrain"], result["throughput"]["transformers"]
        ours_memory, peer_memory = result["memory"]["vlpretrain"] / 2**20, result["memory"]["transformers"] / 2**20
        print(
            f"{dtype:<10}{ours:>16.2f}{peer:>16.2f}{ours / peer:>12.2f}x{ours_memory:>14.0f}{peer_memory:>14.0f}"
            f"{ours_memory / peer_memory:>13.2f}x",
            flush=True,
        )
        speed_met = "met" if ours / peer >= SPEED_TARGET else "NOT met"
        memory_met = "met" if ours_memory <= peer_memory else "NOT met"
        verdicts.append(
            f"{dtype}: speed ratio {ours / peer:.2f}x (target >= {SPEED_TARGET}x: {speed_met}), "
            f"memory ratio {ours_memory / peer_memory:.2f}x (target <= 1.00x: {memory_met})"
        )
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()
