"""Pretraining-step benchmark: vlpretrain's LxmertForPreTraining against transformers' LxmertForPreTraining.

Both models are built at the paper's base size (9/5/5 layers, hidden 768, 36 regions of 2048-d), get the
same batch (8 samples, 20 tokens, all five objectives' targets) and run forward + backward + AdamW step,
alternating between the two so machine noise hits both alike. Printed: samples/s of each and their
ratio, and the peak memory of each step and its ratio, in float32 and in bfloat16 autocast.

Peak memory is measured as ``bench/step_timing.py`` describes. With ``--compile`` ours under ``torch.compile``
(same weights) joins the rotation and its ratios to eager and to the peer are printed too (compilation happens in
the warm-up steps; ``--compile-mode reduce-overhead`` replays CUDA graphs, ``--fused-optimizer`` uses fused AdamW).
The last line of each dtype says whether the issue's target (>= 1.5x the peer, memory no higher) is met.
``--size tiny|small`` uses the registry's narrow presets for a quick check of the script on a CPU.

Usage: ``python bench/bench_lxmert_pretrain.py [--device cpu|cuda] [--steps 6] [--dtypes float32 bfloat16]
[--batch-size 8] [--compile] [--compile-mode default] [--fused-optimizer] [--size base]``
"""

from __future__ import annotations

import argparse

import torch
import transformers
from step_timing import Contender, add_step_arguments, compiled_twin, device_name, optimizer_for, print_header, print_verdicts, report

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


SPEED_TARGET = 1.5  # issue 19: at least 1.5x transformers' LXMERT at batch 8 and 64, memory no higher


def contenders(args: argparse.Namespace, device: torch.device) -> dict[str, Contender]:
    """Ours, transformers' LXMERT and (``--compile``) ours compiled, from the same seed."""
    torch.manual_seed(0)
    ours_config, peer_config = configs(args.size)
    ours = LxmertForPreTraining(ours_config).to(device).train()
    theirs = transformers.LxmertForPreTraining(peer_config).to(device).train()
    ours_batch, theirs_batch = make_batch(args.batch_size, 20, 36, device)
    models = {
        "vlpretrain": Contender(ours, optimizer_for(ours, device, args.fused_optimizer), ours_batch),
        "transformers": Contender(theirs, optimizer_for(theirs, device, args.fused_optimizer), theirs_batch),
    }
    if args.compile:
        models["vlpretrain compiled"] = compiled_twin(ours, ours_batch, device, args.compile_mode, args.fused_optimizer)
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_step_arguments(parser)
    parser.add_argument("--size", default="base", choices=["base", "small", "tiny"])
    args = parser.parse_args()
    device = torch.device(args.device)
    print_header(f"LXMERT pretraining step, {args.size} size, batch {args.batch_size}, 20 tokens, 36 regions, on "
                 f"{device_name(device)}", "transformers")
    for dtype in args.dtypes:
        results = report(contenders(args, device), dtype, device, args, reference="transformers")
        print_verdicts(results, "transformers", SPEED_TARGET, dtype)


if __name__ == "__main__":
    main()
