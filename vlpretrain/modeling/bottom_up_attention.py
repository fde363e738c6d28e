"""The bottom-up-attention Faster R-CNN (Anderson et al. 2018) in plain torch: ResNet-101 C4, Visual Genome heads.

Test-time inference only, reproducing two released pipelines, chosen by ``config.box_selection``:

- "bottom-up": the caffe original (peteanderson80/bottom-up-attention ``lib/rpn/proposal_layer.py``,
  ``lib/fast_rcnn/bbox_transform.py``, ``lib/nms/cpu_nms.pyx``, ``tools/generate_tsv.py``), as reimplemented by
  MILVLG/bottom-up-attention.pytorch: box widths ``x2 - x1 + 1``, clipping to ``w - 1``, NMS suppressing at
  IoU ``>=``, the RPN proposals themselves as region boxes, per-class NMS and a confidence threshold.
- "transformers-demo": the LXMERT research project of huggingface/transformers (``modeling_frcnn.py``, a copy of
  detectron2 parts): widths ``x2 - x1``, clipping to ``w``, NMS at IoU ``>``, top-k before clipping, the
  regressed box of the best class and one class-agnostic NMS.

Each image of a batch is cropped to its own size and run alone, so results never depend on the other images
(the port runs padded batches, so border features and its ``norm_box`` change with the batch).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from ..configuration.bottom_up_attention import BOX_SELECTIONS, BottomUpAttentionConfig
from .base import VLPreTrainedModel


@dataclass
class BottomUpAttentionOutput(ModelOutput):
    """Selected regions per image, zero-padded to the largest count of the batch (``num_boxes`` gives the real one).

    Args:
        boxes: (batch, regions, 4) x1, y1, x2, y2 in original-image pixels.
        normalized_boxes: the same divided by the original width / height.
        features: (batch, regions, 2048) mean-pooled res5 features of each region's proposal.
        object_ids / object_confidences: best foreground class (0-based, background excluded) and its probability.
        attribute_ids / attribute_confidences: best attribute (0-based, "no attribute" excluded) and its probability.
        class_probabilities: (batch, regions, 1 + num_labels) softmax over background (column 0) and the classes.
        num_boxes: (batch,) regions kept per image.
    """

    boxes: torch.Tensor | None = None
    normalized_boxes: torch.Tensor | None = None
    features: torch.Tensor | None = None
    object_ids: torch.Tensor | None = None
    object_confidences: torch.Tensor | None = None
    attribute_ids: torch.Tensor | None = None
    attribute_confidences: torch.Tensor | None = None
    class_probabilities: torch.Tensor | None = None
    num_boxes: torch.Tensor | None = None


# ---------------------------------------------------------------------------------------------- box arithmetic


def caffe_cell_anchors(base_size: int, ratios: list[float], sizes: list[float]) -> torch.Tensor:
    """Caffe's integer anchors around (7.5, 7.5) for a 16-px base window, ratio-major (``lib/rpn/generate_anchors.py``)."""
    base = np.array([0.0, 0.0, base_size - 1.0, base_size - 1.0])

    def centre_and_size(anchor: np.ndarray) -> tuple[float, float, float, float]:
        width, height = anchor[2] - anchor[0] + 1, anchor[3] - anchor[1] + 1
        return width, height, anchor[0] + 0.5 * (width - 1), anchor[1] + 0.5 * (height - 1)

    def windows(widths: np.ndarray, heights: np.ndarray, centre_x: float, centre_y: float) -> np.ndarray:
        return np.stack(
            [centre_x - 0.5 * (widths - 1), centre_y - 0.5 * (heights - 1), centre_x + 0.5 * (widths - 1), centre_y + 0.5 * (heights - 1)],
            axis=1,
        )

    width, height, centre_x, centre_y = centre_and_size(base)
    ratio_widths = np.round(np.sqrt(width * height / np.asarray(ratios, dtype=np.float64)))
    ratio_heights = np.round(ratio_widths * np.asarray(ratios, dtype=np.float64))
    scales = np.asarray(sizes, dtype=np.float64) / base_size
    anchors = []
    for ratio_anchor in windows(ratio_widths, ratio_heights, centre_x, centre_y):
        width, height, centre_x, centre_y = centre_and_size(ratio_anchor)
        anchors.append(windows(width * scales, height * scales, centre_x, centre_y))
    return torch.tensor(np.concatenate(anchors), dtype=torch.float32)


def decode_boxes(boxes: torch.Tensor, deltas: torch.Tensor, weights: list[float], clamp: float, plus_one: float) -> torch.Tensor:
    """Apply (N, 4K) deltas to (N, 4) boxes (``bbox_transform_inv`` / detectron2 ``apply_deltas``); returns (N, 4K)."""
    widths = boxes[:, 2] - boxes[:, 0] + plus_one
    heights = boxes[:, 3] - boxes[:, 1] + plus_one
    centre_x = boxes[:, 0] + 0.5 * widths
    centre_y = boxes[:, 1] + 0.5 * heights
    dx, dy = deltas[:, 0::4] / weights[0], deltas[:, 1::4] / weights[1]
    dw = (deltas[:, 2::4] / weights[2]).clamp(max=clamp)
    dh = (deltas[:, 3::4] / weights[3]).clamp(max=clamp)
    new_centre_x = dx * widths[:, None] + centre_x[:, None]
    new_centre_y = dy * heights[:, None] + centre_y[:, None]
    new_widths = torch.exp(dw) * widths[:, None]
    new_heights = torch.exp(dh) * heights[:, None]
    decoded = torch.stack(
        [new_centre_x - 0.5 * new_widths, new_centre_y - 0.5 * new_heights, new_centre_x + 0.5 * new_widths, new_centre_y + 0.5 * new_heights],
        dim=-1,
    )
    return decoded.reshape(deltas.shape)


def clip_boxes(boxes: torch.Tensor, height: int, width: int, plus_one: float) -> torch.Tensor:
    """Clip (N, 4K) boxes to ``[0, width - plus_one] x [0, height - plus_one]``."""
    limits = boxes.new_tensor([width - plus_one, height - plus_one]).repeat(boxes.shape[-1] // 2)
    return torch.minimum(boxes.clamp(min=0), limits)


def pairwise_iou(boxes_a: torch.Tensor, boxes_b: torch.Tensor, plus_one: float) -> torch.Tensor:
    """IoU of (N, 4) and (M, 4) boxes with the NMS arithmetic of the chosen pipeline (caffe's +1 areas or not)."""
    area_a = (boxes_a[:, 2] - boxes_a[:, 0] + plus_one) * (boxes_a[:, 3] - boxes_a[:, 1] + plus_one)
    area_b = (boxes_b[:, 2] - boxes_b[:, 0] + plus_one) * (boxes_b[:, 3] - boxes_b[:, 1] + plus_one)
    width = (torch.minimum(boxes_a[:, None, 2], boxes_b[None, :, 2]) - torch.maximum(boxes_a[:, None, 0], boxes_b[None, :, 0]) + plus_one).clamp(min=0)
    height = (torch.minimum(boxes_a[:, None, 3], boxes_b[None, :, 3]) - torch.maximum(boxes_a[:, None, 1], boxes_b[None, :, 1]) + plus_one).clamp(min=0)
    intersection = width * height
    return intersection / (area_a[:, None] + area_b[None, :] - intersection)


def greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float, caffe: bool, limit: int | None = None) -> torch.Tensor:
    """Greedy NMS; indices of kept boxes by decreasing score, at most ``limit`` of them.

    caffe (``cpu_nms.pyx``, MILVLG ``nms_cpu.cpp``): +1 areas, suppress at IoU ``>=``; otherwise torchvision's
    ``nms``: plain areas, suppress at IoU ``>``. Equal scores keep input order.
    """
    order = torch.argsort(scores, descending=True, stable=True)
    ordered = boxes[order]
    plus_one = 1.0 if caffe else 0.0
    suppressed = torch.zeros(len(order), dtype=torch.bool, device=boxes.device)
    keep: list[int] = []
    limit = len(order) if limit is None else limit
    position = 0
    while position < len(order) and len(keep) < limit:
        keep.append(position)
        overlap = pairwise_iou(ordered[position : position + 1], ordered[position + 1 :], plus_one)[0]
        hit = overlap >= threshold if caffe else overlap > threshold
        suppressed[position + 1 :] |= hit
        remaining = torch.nonzero(~suppressed[position + 1 :])
        if len(remaining) == 0:
            break
        position = position + 1 + int(remaining[0])
    return order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]


def _round_half_away_from_zero(values: torch.Tensor) -> torch.Tensor:
    truncated = torch.trunc(values)
    return truncated + torch.where((values - truncated).abs() >= 0.5, torch.sign(values), torch.zeros_like(values))


def roi_pool(feature_map: torch.Tensor, boxes: torch.Tensor, output_size: int, spatial_scale: float) -> torch.Tensor:
    """Caffe's / torchvision's RoIPool of (R, 4) input-pixel boxes over one (C, H, W) map; returns (R, C, P, P).

    Box corners times ``spatial_scale`` are rounded half away from zero; the RoI spans ``max(end - start + 1, 1)``
    cells split into P bins of float size; bin p covers ``[floor(p * size), ceil((p + 1) * size))`` plus the start,
    clipped to the map; each bin is the max of its cells, an empty bin 0 (caffe ``roi_pooling_layer.cpp``,
    pytorch/vision ``roi_pool_kernel.cpp``). Bin limits are computed in float32 as there.
    """
    channels, height, width = feature_map.shape
    corners = _round_half_away_from_zero(boxes.float() * spatial_scale)
    start_x, start_y, end_x, end_y = corners.unbind(-1)
    size_x = (end_x - start_x + 1).clamp(min=1)
    size_y = (end_y - start_y + 1).clamp(min=1)
    steps = torch.arange(output_size + 1, dtype=torch.float32, device=boxes.device)
    edges_x = torch.stack([torch.floor(steps[:-1] * (size_x / output_size)[:, None]), torch.ceil(steps[1:] * (size_x / output_size)[:, None])])
    edges_y = torch.stack([torch.floor(steps[:-1] * (size_y / output_size)[:, None]), torch.ceil(steps[1:] * (size_y / output_size)[:, None])])
    edges_x = (edges_x + start_x[None, :, None]).clamp(0, width).long().tolist()
    edges_y = (edges_y + start_y[None, :, None]).clamp(0, height).long().tolist()
    pooled = feature_map.new_zeros((len(boxes), channels, output_size, output_size))
    for index in range(len(boxes)):
        x_starts, x_ends = edges_x[0][index], edges_x[1][index]
        y_starts, y_ends = edges_y[0][index], edges_y[1][index]
        top, bottom = min(y_starts), max(y_ends)
        if bottom <= top or max(x_ends) <= min(x_starts):
            continue
        rows = feature_map[:, top:bottom]
        columns = torch.stack(
            [rows[:, :, x0:x1].amax(dim=-1) if x1 > x0 else rows.new_full(rows.shape[:2], float("-inf")) for x0, x1 in zip(x_starts, x_ends)],
            dim=-1,
        )
        for bin_y, (y0, y1) in enumerate(zip(y_starts, y_ends)):
            if y1 > y0:
                pooled[index, :, bin_y] = columns[:, y0 - top : y1 - top].amax(dim=1)
    # Bins empty along x produced -inf above; RoIPool reports 0 for empty bins.
    return pooled.masked_fill_(pooled == float("-inf"), 0.0)


# ---------------------------------------------------------------------------------------------- layers


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics (caffe ``BatchNorm(use_global_stats) + Scale``; the port's eval-mode
    ``BatchNorm2d``), computed by ``batch_norm`` in inference mode as the port does, so its outputs are reproduced
    to float rounding."""

    def __init__(self, channels: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(channels))
        self.register_buffer("bias", torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return nn.functional.batch_norm(hidden, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


class ConvFrozenBatchNorm(nn.Module):
    """Bias-free conv followed by a frozen BatchNorm (detectron2's ``Conv2d(norm=...)`` key layout)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, eps: float, stride: int = 1, padding: int = 0, dilation: int = 1) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.norm = FrozenBatchNorm2d(out_channels, eps)
        self.stride, self.padding, self.dilation = stride, padding, dilation

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.norm(nn.functional.conv2d(hidden, self.weight, None, self.stride, self.padding, self.dilation))


class BottleneckBlock(nn.Module):
    """ResNet bottleneck with the stride in the first 1x1 conv (MSRA / caffe ``res*_branch2a``)."""

    def __init__(self, in_channels: int, bottleneck_channels: int, out_channels: int, stride: int, dilation: int, eps: float) -> None:
        super().__init__()
        self.shortcut = ConvFrozenBatchNorm(in_channels, out_channels, 1, eps, stride=stride) if in_channels != out_channels else None
        self.conv1 = ConvFrozenBatchNorm(in_channels, bottleneck_channels, 1, eps, stride=stride)
        self.conv2 = ConvFrozenBatchNorm(bottleneck_channels, bottleneck_channels, 3, eps, padding=dilation, dilation=dilation)
        self.conv3 = ConvFrozenBatchNorm(bottleneck_channels, out_channels, 1, eps)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        shortcut = hidden if self.shortcut is None else self.shortcut(hidden)
        out = torch.relu_(self.conv1(hidden))
        out = torch.relu_(self.conv2(out))
        return torch.relu_(self.conv3(out) + shortcut)


def make_stage(num_blocks: int, in_channels: int, bottleneck_channels: int, out_channels: int, stride: int, dilation: int, eps: float) -> nn.Sequential:
    blocks = [BottleneckBlock(in_channels, bottleneck_channels, out_channels, stride, dilation, eps)]
    blocks += [BottleneckBlock(out_channels, bottleneck_channels, out_channels, 1, dilation, eps) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)


class Stem(nn.Module):
    """7x7/2 conv + frozen BN + ReLU, then caffe's 3x3/2 max-pool without padding in ceil mode (``pool1``)."""

    def __init__(self, out_channels: int, eps: float) -> None:
        super().__init__()
        self.conv1 = ConvFrozenBatchNorm(3, out_channels, 7, eps, stride=2, padding=3)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu_(self.conv1(pixel_values))
        return nn.functional.max_pool2d(hidden, kernel_size=3, stride=2, padding=0, ceil_mode=True)


class ResNetC4Backbone(nn.Module):
    """Stem, res2, res3 and res4 (stride 16)."""

    def __init__(self, config: BottomUpAttentionConfig) -> None:
        super().__init__()
        eps = config.batch_norm_eps
        self.stem = Stem(config.stem_out_channels, eps)
        in_channels, out_channels, bottleneck = config.stem_out_channels, config.res2_out_channels, config.res2_bottleneck_channels
        for index, num_blocks in enumerate(config.stage_blocks):
            stage = make_stage(num_blocks, in_channels, bottleneck, out_channels, 1 if index == 0 else 2, 1, eps)
            self.add_module(f"res{index + 2}", stage)
            in_channels, out_channels, bottleneck = out_channels, out_channels * 2, bottleneck * 2

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.res4(self.res3(self.res2(self.stem(pixel_values))))


class RPNHead(nn.Module):
    """3x3 conv + ReLU, then per-anchor objectness (2 softmax scores or 1 logit) and box deltas; holds the cell anchors."""

    def __init__(self, config: BottomUpAttentionConfig) -> None:
        super().__init__()
        anchors = config.num_anchors
        self.two_class_scores = config.rpn_two_class_scores
        self.conv = nn.Conv2d(config.res4_out_channels, config.rpn_hidden_channels, 3, padding=1)
        self.objectness_logits = nn.Conv2d(config.rpn_hidden_channels, anchors * (2 if self.two_class_scores else 1), 1)
        self.anchor_deltas = nn.Conv2d(config.rpn_hidden_channels, anchors * 4, 1)
        self.register_buffer("cell_anchors", caffe_cell_anchors(config.feature_stride, config.anchor_ratios, config.anchor_sizes))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores (H*W*A,) in (y, x, anchor) order (foreground probability or logit) and deltas (H*W*A, 4)."""
        hidden = torch.relu(self.conv(features))
        scores = self.objectness_logits(hidden)[0]
        anchors = len(self.cell_anchors)
        if self.two_class_scores:
            # Caffe's rpn_cls_prob: channels [0, A) background, [A, 2A) foreground, softmax per anchor.
            scores = torch.softmax(torch.stack([scores[:anchors], scores[anchors:]]), dim=0)[1]
        deltas = self.anchor_deltas(hidden)[0]
        height, width = deltas.shape[-2:]
        return scores.permute(1, 2, 0).reshape(-1), deltas.reshape(anchors, 4, height, width).permute(2, 3, 0, 1).reshape(-1, 4)


class BoxPredictor(nn.Module):
    """Class scores (background first), class-specific deltas and the attribute head (caffe ``cls_embedding``,
    ``fc_attr``, ``attr_score``): the argmax class over all logits is embedded and concatenated to the feature."""

    def __init__(self, config: BottomUpAttentionConfig) -> None:
        super().__init__()
        feature_size, classes = config.res5_out_channels, config.num_labels + 1
        self.cls_score = nn.Linear(feature_size, classes)
        self.bbox_pred = nn.Linear(feature_size, classes * 4)
        self.cls_embedding = nn.Embedding(classes, config.attribute_embedding_size)
        self.fc_attr = nn.Linear(feature_size + config.attribute_embedding_size, config.attribute_hidden_size)
        self.attr_score = nn.Linear(config.attribute_hidden_size, config.num_attributes + 1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        class_logits = self.cls_score(features)
        embedded = self.cls_embedding(class_logits.argmax(dim=-1))
        attribute_logits = self.attr_score(torch.relu(self.fc_attr(torch.cat([features, embedded], dim=-1))))
        return class_logits, self.bbox_pred(features), attribute_logits


# ---------------------------------------------------------------------------------------------- model


class BottomUpAttentionPreTrainedModel(VLPreTrainedModel):
    config_class = BottomUpAttentionConfig
    base_model_prefix = "detector"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = False
    _supports_sdpa = False
    _supports_attention_backend = False

    def _init_weights(self, module: nn.Module) -> None:
        from transformers import initialization as init

        std = self.config.initializer_range
        if isinstance(module, ConvFrozenBatchNorm):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, FrozenBatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            init.normal_(module.weight, mean=0.0, std=std)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, RPNHead):
            init.copy_(module.cell_anchors, caffe_cell_anchors(self.config.feature_stride, self.config.anchor_ratios, self.config.anchor_sizes))


class BottomUpAttentionDetector(BottomUpAttentionPreTrainedModel):
    """Faster R-CNN with a ResNet-101 C4 backbone and Visual Genome object + attribute heads, inference only.

    Input: ``pixel_values`` (B, 3, H, W) from :class:`BottomUpAttentionImageProcessor` (BGR, mean-subtracted,
    padded bottom/right), ``image_sizes`` (B, 2) resized (h, w) of each image, ``original_sizes`` (B, 2) and
    ``scale_factors`` (B,) the resize factor (caffe's single ``im_scale``). Output: :class:`BottomUpAttentionOutput`.
    """

    hub_auto_class = "AutoModelForObjectDetection"

    def __init__(self, config: BottomUpAttentionConfig) -> None:
        super().__init__(config)
        self.backbone = ResNetC4Backbone(config)
        self.rpn_head = RPNHead(config)
        in_channels = config.res4_out_channels
        self.res5 = make_stage(config.res5_blocks, in_channels, config.res2_bottleneck_channels * 8, config.res5_out_channels, 1,
                               config.res5_dilation, config.batch_norm_eps)
        self.box_predictor = BoxPredictor(config)
        self.post_init()

    def extractor_settings(self) -> dict:
        """The test-time settings that determine the features (for provenance records)."""
        keys = ("box_selection", "nms_threshold", "confidence_threshold", "min_boxes", "max_boxes", "rpn_pre_nms_top_n",
                "rpn_post_nms_top_n", "rpn_nms_threshold", "rpn_min_size", "pooler_resolution", "anchor_offset",
                "bbox_reg_weights", "rpn_bbox_reg_weights", "box_delta_clamp")
        return {"extractor": "bottom-up-attention", **{key: getattr(self.config, key) for key in keys}}

    # ------------------------------------------------------------------ proposals

    def propose(self, features: torch.Tensor, height: int, width: int, scale: float, caffe: bool) -> torch.Tensor:
        """RPN proposals (R, 4) in network-input pixels, by decreasing objectness (``caffe``: the "bottom-up" rules)."""
        config = self.config
        plus_one = 1.0 if caffe else 0.0
        scores, deltas = self.rpn_head(features)
        grid_height, grid_width = features.shape[-2:]
        stride = config.feature_stride
        shift_x = torch.arange(grid_width, device=features.device, dtype=torch.float32) * stride + config.anchor_offset * stride
        shift_y = torch.arange(grid_height, device=features.device, dtype=torch.float32) * stride + config.anchor_offset * stride
        shift_y, shift_x = torch.meshgrid(shift_y, shift_x, indexing="ij")
        shifts = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=-1).reshape(-1, 1, 4)
        anchors = (shifts + self.rpn_head.cell_anchors.float()[None]).reshape(-1, 4)
        proposals = decode_boxes(anchors, deltas.float(), config.rpn_bbox_reg_weights, config.box_delta_clamp, plus_one)
        scores = scores.float()
        if caffe:
            # proposal_layer.py: clip, drop boxes with a side < min_size * scale, sort, top-k, NMS, top-k.
            proposals = clip_boxes(proposals, height, width, plus_one)
            sides = proposals[:, 2:] - proposals[:, :2] + 1
            large = (sides >= config.rpn_min_size * scale).all(dim=-1)
            proposals, scores = proposals[large], scores[large]
            order = torch.argsort(scores, descending=True, stable=True)[: config.rpn_pre_nms_top_n]
            proposals, scores = proposals[order], scores[order]
        else:
            # find_top_rpn_proposals: top-k logits, clip, drop boxes with a side <= min_size, NMS, top-k.
            order = torch.argsort(scores, descending=True, stable=True)[: config.rpn_pre_nms_top_n]
            proposals, scores = clip_boxes(proposals[order], height, width, plus_one), scores[order]
            sides = proposals[:, 2:] - proposals[:, :2]
            large = (sides > config.rpn_min_size).all(dim=-1)
            proposals, scores = proposals[large], scores[large]
        keep = greedy_nms(proposals, scores, config.rpn_nms_threshold, caffe, config.rpn_post_nms_top_n)
        return proposals[keep]

    def region_features(self, features: torch.Tensor, proposals: torch.Tensor, chunk_size: int = 64) -> torch.Tensor:
        """RoI-pool res4 at each proposal, run res5 and average over the pooled grid: (R, 2048)."""
        pooled = roi_pool(features[0], proposals, self.config.pooler_resolution, 1.0 / self.config.feature_stride)
        outputs = [self.res5(pooled[start : start + chunk_size]).mean(dim=(2, 3)) for start in range(0, len(pooled), chunk_size)]
        return torch.cat(outputs) if outputs else pooled.new_zeros((0, self.config.res5_out_channels))

    # ------------------------------------------------------------------ selection

    def _select_bottom_up(self, proposals, class_probabilities, attribute_probabilities, scale):
        """generate_tsv.py: per-class NMS on the proposals, max_conf, threshold, min/max boxes."""
        config = self.config
        boxes = proposals / scale
        overlaps = pairwise_iou(boxes, boxes, 1.0) >= config.nms_thresholds[0]
        class_scores = class_probabilities[:, 1:].T  # (K, R)
        order = torch.argsort(class_scores, dim=1, descending=True, stable=True)
        classes = torch.arange(len(class_scores), device=boxes.device)
        suppressed = torch.zeros_like(class_scores, dtype=torch.bool)
        kept = torch.zeros_like(suppressed)
        for rank in range(order.shape[1]):
            box = order[:, rank]
            alive = ~suppressed[classes, box]
            kept[classes, box] |= alive
            suppressed |= alive[:, None] & overlaps[box]
        max_conf = torch.where(kept, class_scores, torch.zeros_like(class_scores)).amax(dim=0)
        confident = torch.nonzero(max_conf >= config.confidence_threshold).flatten()
        if config.min_boxes <= len(confident) <= config.max_boxes:
            selected = confident
        else:
            # np.argsort(max_conf)[::-1]: ascending (stable) then reversed.
            descending = torch.argsort(max_conf, stable=True).flip(0)
            selected = descending[: config.min_boxes if len(confident) < config.min_boxes else config.max_boxes]
        object_confidences, object_ids = class_probabilities[selected, 1:].max(dim=-1)
        attribute_confidences, attribute_ids = attribute_probabilities[selected, 1:].max(dim=-1)
        return selected, boxes[selected], object_ids, object_confidences, attribute_ids, attribute_confidences

    def _select_transformers_demo(self, proposals, class_probabilities, box_deltas, attribute_logits, input_size, original_size):
        """modeling_frcnn.py ROIOutputs: regressed box of the best class, class-agnostic NMS, min/max detections."""
        config = self.config
        height, width = input_size
        foreground = class_probabilities[:, 1:]
        deltas = box_deltas[:, 4:]
        boxes = decode_boxes(proposals, deltas, config.bbox_reg_weights, config.box_delta_clamp, 0.0)
        boxes = clip_boxes(boxes, height, width, 0.0).reshape(len(proposals), config.num_labels, 4)
        object_confidences, object_ids = foreground.max(dim=-1)
        best_boxes = boxes[torch.arange(len(boxes), device=boxes.device), object_ids]
        # Thresholds are tried in order until min_boxes survive; if none does, the last one's result is kept
        # (the port fails there).
        for threshold in config.nms_thresholds:
            selected = greedy_nms(best_boxes, object_confidences, threshold, False, config.max_boxes)
            if len(selected) >= config.min_boxes:
                break
        attribute_confidences, attribute_ids = torch.softmax(attribute_logits[:, 1:], dim=-1).max(dim=-1)
        scale_yx = torch.tensor([original_size[0] / height, original_size[1] / width], device=boxes.device)
        scaled = best_boxes[selected] * scale_yx.flip(0).repeat(2)
        return (selected, scaled, object_ids[selected], object_confidences[selected], attribute_ids[selected],
                attribute_confidences[selected])

    # ------------------------------------------------------------------ forward

    def _check_inputs(self, pixel_values, image_sizes, original_sizes, scale_factors) -> tuple:
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            raise ValueError(f"pixel_values: expected a (batch, 3, height, width) tensor, got {getattr(pixel_values, 'shape', type(pixel_values))}")
        batch = pixel_values.shape[0]
        full = torch.tensor([pixel_values.shape[-2:]] * batch)
        image_sizes = full if image_sizes is None else torch.as_tensor(image_sizes).reshape(-1, 2).cpu()
        original_sizes = image_sizes if original_sizes is None else torch.as_tensor(original_sizes).reshape(-1, 2).cpu()
        if scale_factors is None:
            scale_factors = image_sizes[:, 0].double() / original_sizes[:, 0].double()
        scale_factors = torch.as_tensor(scale_factors, dtype=torch.float64).reshape(-1).cpu()
        for name, value in (("image_sizes", image_sizes), ("original_sizes", original_sizes), ("scale_factors", scale_factors)):
            if len(value) != batch:
                raise ValueError(f"{name}: {len(value)} entries for a batch of {batch} images")
        minimum = 2 * self.config.feature_stride
        if (image_sizes < minimum).any() or (image_sizes > full).any() or (original_sizes < 1).any() or (scale_factors <= 0).any():
            raise ValueError(
                f"image_sizes must lie within pixel_values {tuple(pixel_values.shape[-2:])} with each side >= {minimum} "
                f"pixels, original_sizes and scale_factors must be positive; got {image_sizes.tolist()}, "
                f"{original_sizes.tolist()}, {scale_factors.tolist()}"
            )
        return image_sizes.tolist(), original_sizes.tolist(), scale_factors.tolist()

    @can_return_tuple
    @torch.inference_mode()
    def forward(
        self,
        pixel_values: torch.Tensor,
        image_sizes: torch.Tensor | None = None,
        original_sizes: torch.Tensor | None = None,
        scale_factors: torch.Tensor | None = None,
        box_selection: str | None = None,
        **kwargs,
    ) -> BottomUpAttentionOutput:
        """Detect and describe the regions of each image; ``box_selection`` overrides the config's rules."""
        box_selection = self.config.box_selection if box_selection is None else box_selection
        if box_selection not in BOX_SELECTIONS:
            raise ValueError(f"box_selection must be one of {BOX_SELECTIONS}, got {box_selection!r}")
        caffe = box_selection == "bottom-up"
        if self.training:
            raise NotImplementedError("BottomUpAttentionDetector is inference only (as the released code); call .eval()")
        image_sizes, original_sizes, scale_factors = self._check_inputs(pixel_values, image_sizes, original_sizes, scale_factors)
        results = []
        for index, ((height, width), original_size, scale) in enumerate(zip(image_sizes, original_sizes, scale_factors)):
            pixels = pixel_values[index : index + 1, :, :height, :width].to(self.dtype)
            features = self.backbone(pixels)
            proposals = self.propose(features, height, width, scale, caffe)
            pooled = self.region_features(features, proposals).float()
            class_logits, box_deltas, attribute_logits = self.box_predictor(pooled.to(self.dtype))
            class_logits, box_deltas, attribute_logits = class_logits.float(), box_deltas.float(), attribute_logits.float()
            class_probabilities = torch.softmax(class_logits, dim=-1)
            if caffe:
                selection = self._select_bottom_up(proposals, class_probabilities, torch.softmax(attribute_logits, dim=-1), scale)
            else:
                selection = self._select_transformers_demo(proposals, class_probabilities, box_deltas, attribute_logits, (height, width), original_size)
            selected, boxes, *labels = selection
            results.append((boxes, pooled[selected], class_probabilities[selected], labels, original_size))
        return self._pack(results)

    def _pack(self, results: list) -> BottomUpAttentionOutput:
        most = max(len(boxes) for boxes, *_ in results)

        def padded(tensors: list[torch.Tensor]) -> torch.Tensor:
            return torch.stack([nn.functional.pad(t, (0, 0) * (t.ndim - 1) + (0, most - len(t))) for t in tensors])

        boxes = [item[0] for item in results]
        sizes = [box.new_tensor([width, height, width, height]) for box, (height, width) in zip(boxes, (item[4] for item in results))]
        return BottomUpAttentionOutput(
            boxes=padded(boxes),
            normalized_boxes=padded([box / size for box, size in zip(boxes, sizes)]),
            features=padded([item[1] for item in results]),
            class_probabilities=padded([item[2] for item in results]),
            object_ids=padded([item[3][0] for item in results]),
            object_confidences=padded([item[3][1] for item in results]),
            attribute_ids=padded([item[3][2] for item in results]),
            attribute_confidences=padded([item[3][3] for item in results]),
            num_boxes=torch.tensor([len(box) for box in boxes]),
        )


__all__ = ["BottomUpAttentionDetector", "BottomUpAttentionOutput", "BottomUpAttentionPreTrainedModel"]
