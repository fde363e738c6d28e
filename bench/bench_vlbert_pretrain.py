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
The last lines say whether the issue's targets (>= 1.3x throughput, memory no higher) are met; ``--compile``,
``--compile-mode`` and ``--fused-optimizer`` are those of ``bench/step_timing.py``.

Usage: ``python bench/bench_vlbert_pretrain.py [--device cpu|cuda] [--steps 6] [--dtypes float32 bfloat16] [--batch-size 8]
[--compile] [--compile-mode default] [--fused-optimizer]``
"""

from __future__ import annotations

import argparse

import torch
import transformers
from step_timing import (
    Contender,
    SavedTensorMeter,
    add_step_arguments,
    compiled_twin,
    device_name,
    optimizer_for,
    print_header,
    print_verdicts,
    report,
)

from vlpretrain import VlBertConfig, VlBertForPreTraining

SPEED_TARGET = 1.3  # issue 19: at least 1.3x VisualBERT's throughput at batch 8 and 64, with no more memory


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


def saved_activation_bytes(count_saved_parameters: bool):
    """CPU memory meter: the saved-for-backward bytes, leaving out parameter storages unless asked."""

    def count(meter: SavedTensorMeter, model: torch.nn.Module) -> int:
        if count_saved_parameters:
            return meter.bytes
        parameters = {parameter.untyped_storage().data_ptr() for parameter in model.parameters()}
        return sum(size for pointer, size in meter.storages.items() if pointer not in parameters)

    return count


def contenders(args: argparse.Namespace, device: torch.device) -> dict[str, Contender]:
    """Ours, transformers' VisualBERT and (``--compile``) ours compiled, from the same seed."""
    torch.manual_seed(0)
    ours = VlBertForPreTraining(VlBertConfig()).to(device).train()
    theirs = transformers.VisualBertForPreTraining(transformers.VisualBertConfig(visual_embedding_dim=2048)).to(device).train()
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
    parser.add_argument("--count-saved-parameters", action="store_true", help="CPU: count saved weights again")
    args = parser.parse_args()
    device = torch.device(args.device)
    print_header(f"VL-BERT vs VisualBERT pretraining step, base size, batch {args.batch_size}, 20 tokens, 36 regions, "
                 f"on {device_name(device)}", "transformers")
    for dtype in args.dtypes:
        results = report(contenders(args, device), dtype, device, args, "transformers",
                         saved_activation_bytes(args.count_saved_parameters))
        print_verdicts(results, "transformers", SPEED_TARGET, dtype)


if __name__ == "__main__":
    main()
