"""Pretraining-step benchmark of ActBERT and VideoBERT at base size (the port's / the paper's defaults).

ActBERT: 12 text + 2 region + 3 action layers and 2 tangled blocks; batch of 36 tokens, 36 regions of 2048-d
(+ the global token), 5 action features of 2048-d, every objective's targets. VideoBERT: BERT-large (24 x 1024)
over 51,259 joint ids; 20 tokens + ``[>]`` + 16 visual words (quantised in the model from 1024-d clip
features with random fitted centroids) + ``[SEP]``, every objective's targets. Each step is forward + backward +
AdamW; printed per dtype: samples/s (median of ``--steps`` after the warm-up) and peak memory of a step (as
``step_timing.py`` says); ``--compile`` adds the model under ``torch.compile`` and its ratio to eager.

Usage: ``python bench/bench_actbert_videobert_pretrain.py [--device cpu|cuda] [--batch-size 4] [--steps 2] [--models actbert videobert]
[--dtypes float32 bfloat16] [--compile]``
"""

from __future__ import annotations

import argparse
import gc

import torch
from step_timing import Contender, add_step_arguments, compiled_twin, device_name, optimizer_for, print_header, report

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


def build(name: str) -> tuple[torch.nn.Module, object]:
    if name == "actbert":
        config = ActBertConfig()
        return ActBertForPreTraining(config), config
    config = VideoBertConfig(visual_words_fitted=True)
    model = VideoBertForPreTraining(config)
    with torch.no_grad():
        model.video_bert.visual_word_centroids.normal_()
    return model, config


TITLES = {"actbert": "ActBERT base", "videobert": "VideoBERT (BERT-large)"}
BATCHES = {"actbert": actbert_batch, "videobert": videobert_batch}


def contenders(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, Contender]:
    """The model and, with ``--compile``, its compiled twin (same weights, same batch)."""
    torch.manual_seed(0)
    model, config = build(name)
    model.to(device).train()
    batch = BATCHES[name](config, args.batch_size, device)
    models = {"vlpretrain": Contender(model, optimizer_for(model, device, args.fused_optimizer, lr=1e-5), batch)}
    if args.compile:
        models["vlpretrain compiled"] = compiled_twin(model, batch, device, args.compile_mode, args.fused_optimizer)
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_step_arguments(parser, steps=2, batch_size=4)
    parser.add_argument("--models", nargs="+", default=["actbert", "videobert"], choices=sorted(TITLES))
    args = parser.parse_args()
    device = torch.device(args.device)
    for name in args.models:
        for dtype in args.dtypes:
            models = contenders(name, args, device)
            parameters = sum(p.numel() for p in models["vlpretrain"].model.parameters()) / 1e6
            print_header(f"{TITLES[name]}, {parameters:.0f}M parameters, batch {args.batch_size}, on {device_name(device)}", "eager")
            report(models, dtype, device, args, reference="vlpretrain")
            del models
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
