"""Random-weight bottom-up-attention checkpoints in the two release layouts, written here from the layouts'
descriptions (unc-nlp/frcnn-vg-finetuned: transformers' LXMERT research project ``modeling_frcnn.py``;
bua-caffe: MILVLG/bottom-up-attention.pytorch), independently of the package's converters."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import yaml

# Tiny but structurally complete: 1 block per stage, res4 64 channels, res5 128.
TINY = dict(stem=8, res2_out=16, res2_bottleneck=4, blocks=(1, 1, 1), res5_blocks=1, rpn_hidden=8, labels=6, attributes=4,
            embedding=16, attribute_hidden=32)
FULL = dict(stem=64, res2_out=256, res2_bottleneck=64, blocks=(3, 4, 23), res5_blocks=3, rpn_hidden=512, labels=1600,
            attributes=400, embedding=256, attribute_hidden=512)


def _conv_norm(state: dict, prefix: str, out_channels: int, in_channels: int, kernel: int, generator: torch.Generator,
               batches_tracked: bool) -> None:
    std = math.sqrt(2.0 / (in_channels * kernel * kernel))
    # Residual branches start small (as zero-init-residual ResNets) so 30 random blocks keep activations of order 1.
    gain = 0.2 if prefix.endswith("conv3") else 1.0
    state[f"{prefix}.weight"] = torch.randn(out_channels, in_channels, kernel, kernel, generator=generator) * std
    state[f"{prefix}.norm.weight"] = gain * (1.0 + 0.1 * torch.randn(out_channels, generator=generator))
    state[f"{prefix}.norm.bias"] = 0.1 * torch.randn(out_channels, generator=generator)
    state[f"{prefix}.norm.running_mean"] = 0.1 * torch.randn(out_channels, generator=generator)
    # The stem sees mean-subtracted 0-255 pixels: a large running variance brings its output to order 1.
    variance_scale = 1e4 if prefix.endswith("stem.conv1") else 1.0
    state[f"{prefix}.norm.running_var"] = variance_scale * (0.5 + torch.rand(out_channels, generator=generator))
    if batches_tracked:
        state[f"{prefix}.norm.num_batches_tracked"] = torch.tensor(0)


def _stage(state: dict, prefix: str, blocks: int, in_channels: int, bottleneck: int, out_channels: int, generator, tracked) -> None:
    for index in range(blocks):
        block_in = in_channels if index == 0 else out_channels
        if index == 0:
            _conv_norm(state, f"{prefix}.0.shortcut", out_channels, in_channels, 1, generator, tracked)
        _conv_norm(state, f"{prefix}.{index}.conv1", bottleneck, block_in, 1, generator, tracked)
        _conv_norm(state, f"{prefix}.{index}.conv2", bottleneck, bottleneck, 3, generator, tracked)
        _conv_norm(state, f"{prefix}.{index}.conv3", out_channels, bottleneck, 1, generator, tracked)


def _linear(state: dict, prefix: str, out_features: int, in_features: int, generator, std: float) -> None:
    state[f"{prefix}.weight"] = torch.randn(out_features, in_features, generator=generator) * std
    state[f"{prefix}.bias"] = torch.randn(out_features, generator=generator) * std


def _common(sizes: dict, generator, tracked: bool) -> tuple[dict, int, int]:
    """Backbone and res5 keys (shared by both layouts: detectron2 names)."""
    state: dict = {}
    _conv_norm(state, "backbone.stem.conv1", sizes["stem"], 3, 7, generator, tracked)
    in_channels, out_channels, bottleneck = sizes["stem"], sizes["res2_out"], sizes["res2_bottleneck"]
    for stage, blocks in zip((2, 3, 4), sizes["blocks"]):
        _stage(state, f"backbone.res{stage}", blocks, in_channels, bottleneck, out_channels, generator, tracked)
        in_channels, out_channels, bottleneck = out_channels, out_channels * 2, bottleneck * 2
    _stage(state, "roi_heads.res5", sizes["res5_blocks"], in_channels, bottleneck, out_channels, generator, tracked)
    return state, in_channels, out_channels


def _rpn(state: dict, in_channels: int, hidden: int, scores_per_anchor: int, generator) -> None:
    prefix = "proposal_generator.rpn_head"
    state[f"{prefix}.conv.weight"] = torch.randn(hidden, in_channels, 3, 3, generator=generator) * math.sqrt(2.0 / (9 * in_channels))
    state[f"{prefix}.conv.bias"] = torch.zeros(hidden)
    state[f"{prefix}.objectness_logits.weight"] = torch.randn(12 * scores_per_anchor, hidden, 1, 1, generator=generator) / math.sqrt(hidden)
    state[f"{prefix}.objectness_logits.bias"] = torch.zeros(12 * scores_per_anchor)
    state[f"{prefix}.anchor_deltas.weight"] = torch.randn(48, hidden, 1, 1, generator=generator) * 0.2 / math.sqrt(hidden)
    state[f"{prefix}.anchor_deltas.bias"] = torch.zeros(48)


def detectron2_cell_anchors(sizes=(64, 128, 256, 512), ratios=(0.5, 1.0, 2.0)) -> torch.Tensor:
    """The port's ``AnchorGenerator.generate_cell_anchors``: centred at 0, size-major."""
    anchors = []
    for size in sizes:
        for ratio in ratios:
            width = math.sqrt(size * size / ratio)
            height = ratio * width
            anchors.append([-width / 2, -height / 2, width / 2, height / 2])
    return torch.tensor(anchors)


def frcnn_vg_state_dict(sizes: dict = TINY, seed: int = 0) -> dict[str, torch.Tensor]:
    """A ``GeneralizedRCNN`` state dict of the port: one RPN logit per anchor, background last, 4 x labels deltas."""
    generator = torch.Generator().manual_seed(seed)
    state, res4, res5 = _common(sizes, generator, tracked=True)
    _rpn(state, res4, sizes["rpn_hidden"], 1, generator)
    state["proposal_generator.anchor_generator.cell_anchors.0"] = detectron2_cell_anchors()
    prefix = "roi_heads.box_predictor"
    _linear(state, f"{prefix}.cls_score", sizes["labels"] + 1, res5, generator, 3 / math.sqrt(res5))
    _linear(state, f"{prefix}.bbox_pred", sizes["labels"] * 4, res5, generator, 0.2 / math.sqrt(res5))
    state[f"{prefix}.cls_embedding.weight"] = torch.randn(sizes["labels"] + 1, sizes["embedding"], generator=generator)
    _linear(state, f"{prefix}.fc_attr", sizes["attribute_hidden"], res5 + sizes["embedding"], generator, 1 / math.sqrt(res5))
    _linear(state, f"{prefix}.attr_score", sizes["attributes"] + 1, sizes["attribute_hidden"], generator, 3 / math.sqrt(sizes["attribute_hidden"]))
    return state


def frcnn_vg_yaml(sizes: dict = TINY, **overrides) -> dict:
    """The port's config.yaml (lower-case keys) with the test-time values of the LXMERT demo's Hub file."""
    config = {
        "model": {"device": "cpu", "max_pool": True, "pixel_mean": [102.9801, 115.9465, 122.7717], "pixel_std": [1.0, 1.0, 1.0],
                  "chkpoint": "", "load_proposals": False},
        "backbone": {"freeze_at": 2},
        "resnets": {"depth": 101 if tuple(sizes["blocks"]) == (3, 4, 23) else 50, "norm": "BN", "num_groups": 1,
                    "width_per_group": sizes["res2_bottleneck"], "stem_out_channels": sizes["stem"],
                    "res2_out_channels": sizes["res2_out"], "stride_in_1x1": True, "res5_dilation": 1, "out_features": ["res4"]},
        "anchor_generator": {"sizes": [[64, 128, 256, 512]], "aspect_ratios": [[0.5, 1.0, 2.0]], "offset": 0.0},
        "rpn": {"in_features": ["res4"], "nms_thresh": 0.7, "pre_nms_topk_test": 6000, "post_nms_topk_test": 300,
                "pre_nms_topk_train": 12000, "post_nms_topk_train": 2000, "bbox_reg_weights": [1.0, 1.0, 1.0, 1.0],
                "batch_size_per_image": 256, "positive_fraction": 0.5, "smooth_l1_beta": 0.0, "loss_weight": 1.0,
                "boundary_thresh": -1, "iou_thresholds": [0.3, 0.7], "iou_labels": [0, -1, 1], "head_name": "StandardRPNHead"},
        "proposal_generator": {"hidden_channels": sizes["rpn_hidden"], "min_size": 0},
        "roi_heads": {"num_classes": sizes["labels"], "in_features": ["res4"], "score_thresh_test": 0.2,
                      "nms_thresh_test": [0.3, 0.5, 0.7], "positive_fraction": 0.25, "proposal_append_gt": True,
                      "batch_size_per_image": 512, "iou_thresholds": [0.5], "iou_labels": [0, 1]},
        "roi_box_head": {"pooler_resolution": 14, "pooler_sampling_ratio": 0, "res5halve": False, "attr": True,
                         "num_attrs": sizes["attributes"], "cls_agnostic_bbox_reg": False,
                         "bbox_reg_weights": [10.0, 10.0, 5.0, 5.0], "smooth_l1_beta": 0.0},
        "input": {"format": "BGR", "min_size_test": 600, "max_size_test": 1000},
        "min_detections": 10,
        "max_detections": 36,
        "size_divisibility": 0,
        "pad_value": 0,
    }
    for dotted, value in overrides.items():
        target = config
        *parents, last = dotted.split(".")
        for part in parents:
            target = target[part]
        target[last] = value
    return config


def write_frcnn_vg(folder: Path, sizes: dict = TINY, seed: int = 0, state: dict | None = None, **yaml_overrides) -> Path:
    """``config.yaml`` + ``pytorch_model.bin`` as in unc-nlp/frcnn-vg-finetuned."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(frcnn_vg_yaml(sizes, **yaml_overrides)))
    torch.save(frcnn_vg_state_dict(sizes, seed) if state is None else state, folder / "pytorch_model.bin")
    return folder


def bua_caffe_state_dict(sizes: dict = TINY, seed: int = 0) -> dict[str, torch.Tensor]:
    """MILVLG's caffe conversion: two RPN scores per anchor, background and "no attribute" first, 4 x (1 + labels) deltas."""
    generator = torch.Generator().manual_seed(seed)
    state, res4, res5 = _common(sizes, generator, tracked=False)
    _rpn(state, res4, sizes["rpn_hidden"], 2, generator)
    prefix = "roi_heads.box_predictor"
    _linear(state, f"{prefix}.cls_score", sizes["labels"] + 1, res5, generator, 3 / math.sqrt(res5))
    _linear(state, f"{prefix}.bbox_pred", (sizes["labels"] + 1) * 4, res5, generator, 0.2 / math.sqrt(res5))
    state[f"{prefix}.cls_embed.weight"] = torch.randn(sizes["labels"] + 1, sizes["embedding"], generator=generator)
    _linear(state, f"{prefix}.attr_linear1", sizes["attribute_hidden"], res5 + sizes["embedding"], generator, 1 / math.sqrt(res5))
    _linear(state, f"{prefix}.attr_linear2", sizes["attributes"] + 1, sizes["attribute_hidden"], generator, 3 / math.sqrt(sizes["attribute_hidden"]))
    return state


def write_bua_caffe(path: Path, sizes: dict = TINY, seed: int = 0) -> Path:
    """``bua-caffe-frcn-r101_with_attributes.pth``: detectron2's checkpointer format ``{"model": state}``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": bua_caffe_state_dict(sizes, seed)}, path)
    return path


def write_vocabularies(folder: Path, labels: int, attributes: int) -> tuple[Path, Path]:
    """objects_vocab.txt / attributes_vocab.txt with synonyms after commas, as in data/genome/1600-400-20/."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    objects = folder / "objects_vocab.txt"
    objects.write_text("".join(f"Thing{index},synonym{index}\n" for index in range(labels)))
    attributes_file = folder / "attributes_vocab.txt"
    attributes_file.write_text("".join(f"colour{index}\n" for index in range(attributes)))
    return objects, attributes_file
