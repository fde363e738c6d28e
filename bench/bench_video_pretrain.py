"""Pretraining-step benchmark of the video-text models at base size: UniVL stage II and HERO, SDPA against eager.

UniVL: 8 (caption, clip) pairs, 48 tokens, 48 S3D features of 1024-d, all five objectives (the alignment objective
cross-encodes all 8 x 8 pairs). HERO: 8 videos of 50 frames (4352-d) with 5 subtitles of 12 tokens each, all four
objectives in one step (``sample_tasks=False``; a sampled training step runs one of them). Each step is forward +
backward + AdamW; the two attention kernels alternate so machine noise hits both alike.

Printed per model and kernel: samples/s (median over steps) and peak memory: on CUDA ``max_memory_allocated`` during
the step (both kernels' models, gradients and optimizer states are resident, plus this step's activations); on CPU
the bytes autograd saves for backward (activations only).

Usage: ``python bench/bench_video_pretrain.py [--device cpu|cuda] [--steps 4] [--batch 8]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vlpretrain import HeroConfig, HeroForPreTraining, UnivlConfig, UnivlForPreTraining


def univl_batch(batch: int, generator: torch.Generator) -> dict:
    input_ids = torch.randint(1000, 30000, (batch, 48), generator=generator)
    input_ids[:, 0], input_ids[:, -1] = 101, 102
    labels = torch.full_like(input_ids, -100)
    labels[:, 3:8] = input_ids[:, 3:8]
    features = torch.randn(batch, 48, 1024, generator=generator)
    masked = torch.rand(batch, 48, generator=generator) < 0.15
    masked[:, 0] = True
    return dict(
        input_ids=input_ids, attention_mask=torch.ones_like(input_ids), frame_features=features.masked_fill(masked[..., None], 0),
        frame_attention_mask=torch.ones(batch, 48, dtype=torch.long), labels=labels, masked_frames=masked,
        frame_feature_targets=features, contrastive_positive_mask=torch.eye(batch, dtype=torch.bool),
    )


def hero_batch(batch: int, generator: torch.Generator) -> dict:
    subtitles, tokens, frames = 5, 12, 50
    input_ids = torch.randint(1000, 50000, (batch, subtitles * tokens), generator=generator)
    labels = torch.full_like(input_ids, -100)
    labels[:, 2::tokens] = input_ids[:, 2::tokens]
    text_index = torch.arange(subtitles).repeat_interleave(tokens).expand(batch, -1).clone()
    frame_index = (torch.arange(frames) * subtitles // frames).expand(batch, -1).clone()
    frame_index[:, -3:] = -1
    features = torch.randn(batch, frames, 4352, generator=generator)
    masked = torch.rand(batch, frames, generator=generator) < 0.15
    masked[:, 0] = True
    order = torch.full((batch, frames), -100)
    order[:, 1], order[:, 4] = 4, 1
    shuffled = features.clone()
    shuffled[:, 1], shuffled[:, 4] = features[:, 4], features[:, 1]
    return dict(
        input_ids=input_ids, attention_mask=torch.ones_like(input_ids), frame_features=shuffled.masked_fill(masked[..., None], 0),
        frame_attention_mask=torch.ones(batch, frames, dtype=torch.long), text_subtitle_index=text_index,
        frame_subtitle_index=frame_index, labels=labels, masked_frames=masked, frame_feature_targets=shuffled,
        frame_order_labels=order,
    )


class SavedTensorMeter:
    """Sum the bytes of distinct storages autograd saves for backward (activation memory, CPU)."""

    def __init__(self):
        self.storages: dict[int, int] = {}

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        self.storages[storage.data_ptr()] = storage.nbytes()
        return tensor


def step(model, optimizer, batch, device) -> tuple[float, float]:
    """One training step; returns (seconds, peak bytes)."""
    meter = SavedTensorMeter()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(meter.pack, lambda tensor: tensor):
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = sum(meter.storages.values())
    return time.perf_counter() - start, peak


def bench(name: str, build, batch: dict, device: torch.device, steps: int, size: int) -> None:
    models = {}
    for kernel in ("sdpa", "eager"):
        torch.manual_seed(0)
        model = build().to(device).train()
        model.set_attn_implementation(kernel)
        models[kernel] = (model, torch.optim.AdamW(model.parameters(), lr=1e-5))
    batch = {key: value.to(device) for key, value in batch.items()}
    times = {kernel: [] for kernel in models}
    peaks = {kernel: 0 for kernel in models}
    for index in range(steps + 1):
        for kernel, (model, optimizer) in models.items():
            seconds, peak = step(model, optimizer, batch, device)
            if index:  # the first step warms up
                times[kernel].append(seconds)
                peaks[kernel] = max(peaks[kernel], peak)
    for kernel in models:
        print(f"{name:24s} {kernel:5s}  {size / statistics.median(times[kernel]):8.2f} samples/s  "
              f"peak {peaks[kernel] / 2**30:6.2f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--models", nargs="+", default=["univl", "hero"], choices=["univl", "hero"])
    args = parser.parse_args()
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    print(f"device {device}, batch {args.batch}, {args.steps} timed steps, float32")
    if "univl" in args.models:
        bench("UniVL stage II (5 obj.)", lambda: UnivlForPreTraining(UnivlConfig(enhance_visual_probability=0.0)),
              univl_batch(args.batch, generator), device, args.steps, args.batch)
    if "hero" in args.models:
        bench("HERO (4 obj.)", lambda: HeroForPreTraining(HeroConfig(sample_tasks=False)),
              hero_batch(args.batch, generator), device, args.steps, args.batch)


if __name__ == "__main__":
    main()
