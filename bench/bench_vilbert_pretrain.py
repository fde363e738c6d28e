"""Pretraining-step benchmark: vlpretrain's ViLBERT (6-layer release) against vlpretrain's LXMERT as a reference point.

Both are built at their paper's base size (ViLBERT: 12 text layers of 768, 6 visual and 6 co-attention layers of
1024, 239M parameters with its heads; LXMERT: 9/5/5 layers of 768, 228M) and get a batch of the same shape
(8 samples, 20 tokens, 36 regions of 2048-d; ViLBERT adds its global image token) with every objective's
targets: ViLBERT's MLM, masked-region KL over 1601 classes and alignment; LXMERT's five objectives. They run
forward + backward + AdamW step alternately so machine noise hits both alike. Printed: samples/s of each, the
ratio, and peak memory of each step (measured as ``step_timing.py`` says), in float32 and bf16 autocast; ``--compile``
adds ViLBERT under ``torch.compile``.

Usage: ``python bench/bench_vilbert_pretrain.py [--device cpu|cuda] [--steps 6] [--dtypes float32 bfloat16] [--compile]``
"""

from __future__ import annotations

import argparse

import torch
from bench_lxmert_pretrain import make_batch
from step_timing import Contender, add_step_arguments, compiled_twin, device_name, optimizer_for, print_header, report

from vlpretrain import LxmertConfig, LxmertForPreTraining, VilbertConfig, VilbertForPreTraining


def vilbert_batch(lxmert_batch: dict, generator: torch.Generator) -> dict:
    """The same text and regions with ViLBERT's targets: detector distributions of masked regions and alignment."""
    batch = {name: lxmert_batch[name] for name in ("input_ids", "attention_mask", "token_type_ids", "labels",
                                                   "region_features", "region_boxes", "masked_regions", "matched_labels")}
    shape = (*batch["region_features"].shape[:2], 1601)
    logits = torch.randn(shape, generator=generator).to(batch["region_features"].device)
    batch["region_class_targets"] = torch.softmax(logits, dim=-1)
    return batch


def contenders(args: argparse.Namespace, device: torch.device) -> dict[str, Contender]:
    """ViLBERT, LXMERT and (``--compile``) ViLBERT compiled, from the same seed."""
    torch.manual_seed(0)
    vilbert = VilbertForPreTraining(VilbertConfig()).to(device).train()
    lxmert = LxmertForPreTraining(LxmertConfig()).to(device).train()
    lxmert_batch, _ = make_batch(args.batch_size, 20, 36, device)
    batch = vilbert_batch(lxmert_batch, torch.Generator().manual_seed(1))
    models = {
        "vlpretrain ViLBERT": Contender(vilbert, optimizer_for(vilbert, device, args.fused_optimizer), batch),
        "LXMERT": Contender(lxmert, optimizer_for(lxmert, device, args.fused_optimizer), lxmert_batch),
    }
    if args.compile:
        models["vlpretrain ViLBERT compiled"] = compiled_twin(vilbert, batch, device, args.compile_mode, args.fused_optimizer)
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_step_arguments(parser)
    args = parser.parse_args()
    device = torch.device(args.device)
    print_header(f"Pretraining step, base sizes, batch {args.batch_size}, 20 tokens, 36 regions, on {device_name(device)}", "LXMERT")
    for dtype in args.dtypes:
        models = contenders(args, device)
        report(models, dtype, device, args, reference="LXMERT")
    counts = {name: sum(p.numel() for p in contender.module.parameters()) / 1e6 for name, contender in models.items()}
    print("parameters: " + ", ".join(f"{name} {count:.1f}M" for name, count in counts.items()))


if __name__ == "__main__":
    main()
