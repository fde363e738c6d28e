"""Pretraining-step benchmark of ActBERT and VideoBERT at base size (the port's / the paper's defaults).

ActBERT: 12 text + 2 region + 3 action layers and 2 tangled blocks; batch of 36 tokens, 36 regions of 2048-d
(+ the global token), 5 action features of 2048-d, every objective's targets. VideoBERT: BERT-large (24 x 1024)
over 51,259 joint ids; 20 tokens + ``[>]`` + 16 visual words (quantised in the model from 1024-d clip
features with random fitted centroids) + ``[SEP]``, every objective's targets. Each step is forward + backward +
AdamW; printed: seconds per step (median of ``--steps`` after one warm-up), samples/s, parameters and the
process's peak resident memory after the model's steps (``ru_maxrss``; CPU) or ``max_memory_allocated`` (CUDA).

Usage: ``python bench/bench_actbert_videobert_pretrain.py [--device cpu|cuda] [--batch 4] [--steps 2] [--models actbert videobert]``
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import time

import torch

from vlpretrain import ActBertConfig, ActBertForPreTraining, VideoBertConfig, VideoBertForPreTraining


def actbert_batch(config: ActBertConfig, batch: int, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (batch, 36), generator=g)
    labels = torch.full_like(ids, -100)
    labels[:, 1:6] = ids[:, 1:6]
    corners = torch.rand(batch, 36, 2, 2, generator=g)
    targets = torch.softmax(torch.randn(batch, 36, config.num_object_labels, generator=g), -1)
    values = dict(input_ids=ids, labels=labels, frame_features=torch.rand(batch, 5, 2048, generator=g),
                  region_features=torch.rand(batch, 36, 2048, generator=g),
                  region_boxes=torch.cat([corners.min(2).values, corners.max(2).values], -1),
                  masked_frames=torch.rand(batch, 5, generator=g) < 0.3, action_labels=torch.randint(0, 700, (batch,), generator=g),
                  masked_regions=torch.rand(batch, 36, generator=g) < 0.15, region_class_targets=targets,
                  matched_labels=torch.randint(0, 2, (batch,), generator=g))
    return {k: v.to(device) for k, v in values.items()}


def videobert_batch(config: VideoBertConfig, batch: int, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (batch, 20), generator=g)
    labels = torch.full_like(ids, -100)
    labels[:, 1:4] = ids[:, 1:4]
    features = torch.randn(batch, 16, config.frame_feature_size, generator=g)
    values = dict(input_ids=ids, labels=labels, frame_features=features, frame_feature_targets=features.clone(),
                  masked_frames=torch.rand(batch, 16, generator=g) < 0.15, matched_labels=torch.randint(0, 2, (batch,), generator=g))
    return {k: v.to(device) for k, v in values.items()}


def run(name: str, model: torch.nn.Module, batch: dict, steps: int, device: torch.device) -> None:
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    times = []
    for step in range(steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step:
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    size = next(iter(batch.values())).shape[0]
    params = sum(p.numel() for p in model.parameters()) / 1e6
    if device.type == "cuda":
        memory = f"peak CUDA memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
    else:
        memory = f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"
    print(f"{name}: {params:.0f}M parameters, batch {size}: {seconds:.2f} s/step, {size / seconds:.2f} samples/s, {memory}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=["actbert", "videobert"])
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    if "actbert" in args.models:
        config = ActBertConfig()
        run("ActBERT base", ActBertForPreTraining(config), actbert_batch(config, args.batch, device), args.steps, device)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    if "videobert" in args.models:
        config = VideoBertConfig(visual_words_fitted=True)
        model = VideoBertForPreTraining(config)
        with torch.no_grad():
            model.video_bert.visual_word_centroids.normal_()
        run("VideoBERT (BERT-large)", model, videobert_batch(config, args.batch, device), args.steps, device)


if __name__ == "__main__":
    main()
