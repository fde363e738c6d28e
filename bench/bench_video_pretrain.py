"""Pretraining-step benchmark of the video-text models at base size: UniVL stage II and HERO, SDPA against eager.

UniVL: 8 (caption, clip) pairs, 48 tokens, 48 S3D features of 1024-d, all five objectives (the alignment objective
cross-encodes all 8 x 8 pairs). HERO: 8 videos of 50 frames (4352-d) with 5 subtitles of 12 tokens each, all four
objectives in one step (``sample_tasks=False``; a sampled training step runs one of them). Each step is forward +
backward + AdamW; the two attention kernels (and, with ``--compile``, the SDPA model compiled) alternate so machine
noise hits all alike. Printed per model, kernel and dtype: samples/s (median over steps) and peak memory of a step,
measured as ``step_timing.py`` says, with both as ratios to the SDPA model.

Usage: ``python bench/bench_video_pretrain.py [--device cpu|cuda] [--steps 4] [--batch-size 8] [--dtypes float32 bfloat16]
[--models univl hero] [--compile] [--compile-mode default] [--fused-optimizer]``
"""

from __future__ import annotations

import argparse

import torch
from step_timing import Contender, add_step_arguments, compiled_twin, device_name, optimizer_for, print_header, report

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


BUILDERS = {
    "univl": ("UniVL stage II (5 objectives)", lambda: UnivlForPreTraining(UnivlConfig(enhance_visual_probability=0.0)), univl_batch),
    "hero": ("HERO (4 objectives)", lambda: HeroForPreTraining(HeroConfig(sample_tasks=False)), hero_batch),
}


def contenders(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, Contender]:
    """The model with each attention kernel (same seed, same batch) and, with ``--compile``, the SDPA one compiled."""
    _, build, make_batch = BUILDERS[name]
    batch = {key: value.to(device) for key, value in make_batch(args.batch_size, torch.Generator().manual_seed(0)).items()}
    models = {}
    for kernel in ("sdpa", "eager"):
        torch.manual_seed(0)
        model = build().to(device).train()
        model.set_attn_implementation(kernel)
        models[f"vlpretrain {kernel}"] = Contender(model, optimizer_for(model, device, args.fused_optimizer, lr=1e-5), batch)
    if args.compile:
        sdpa = models["vlpretrain sdpa"].model
        models["vlpretrain sdpa compiled"] = compiled_twin(sdpa, batch, device, args.compile_mode, args.fused_optimizer)
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_step_arguments(parser, steps=4)
    parser.add_argument("--models", nargs="+", default=["univl", "hero"], choices=sorted(BUILDERS))
    args = parser.parse_args()
    device = torch.device(args.device)
    for name in args.models:
        print_header(f"{BUILDERS[name][0]}, base size, batch {args.batch_size}, on {device_name(device)}", "sdpa")
        for dtype in args.dtypes:
            report(contenders(name, args, device), dtype, device, args, reference="vlpretrain sdpa")


if __name__ == "__main__":
    main()
