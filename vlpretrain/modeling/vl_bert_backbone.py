"""VL-BERT's end-to-end visual backbone: region features computed from pixels instead of read from a feature store.

As jackroos/VL-BERT ``common/fast_rcnn.py``: a ResNet (any transformers ``AutoBackbone``) runs on the image whose
masked regions' pixels are zeroed, and each region's feature is the RoIAlign of one feature map averaged over its
bins. The first ``config.backbone_frozen_stages`` stages and (with ``config.backbone_frozen_batch_norm``) every
BatchNorm stay frozen, as the original's ``FIXED_PARAMS`` and frozen-BN ResNet.

[`RegionBackboneMixin`] adds this to ``VlBertModel``; the backbone stays the model's ``backbone`` attribute, so its
weights keep the keys ``vl_bert.backbone.*``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import AutoBackbone, AutoConfig

from ..configuration.vl_bert import VlBertConfig
from ..utils.roi import roi_align


def build_region_backbone(config: VlBertConfig) -> nn.Module | None:
    """The backbone ``config.backbone_config`` describes (None without one); its feature map must have
    ``config.region_feature_size`` channels."""
    if config.backbone_config is None:
        return None
    backbone = AutoBackbone.from_config(AutoConfig.for_model(**dict(config.backbone_config)))
    channels = backbone.channels[config.backbone_feature_index]
    if channels != config.region_feature_size:
        raise ValueError(
            f"region_feature_size ({config.region_feature_size}) must equal the backbone's channels "
            f"({channels}) in the end-to-end setting"
        )
    return backbone


def backbone_stages(backbone: nn.Module) -> list[nn.Module]:
    """A transformers backbone's stages in the original's numbering: the stem, then each residual stage."""
    stem = getattr(backbone, "embedder", None) or getattr(backbone, "embeddings", None)
    encoder = getattr(backbone, "encoder", None)
    blocks = getattr(encoder, "stages", None) or getattr(encoder, "layers", None)
    if stem is None or blocks is None:
        raise ValueError(
            f"backbone_frozen_stages: {type(backbone).__name__} has no stem (embedder) and encoder stages to freeze; "
            "set backbone_frozen_stages=0"
        )
    return [stem, *blocks]


class RegionBackboneMixin:
    """The end-to-end setting of ``VlBertModel``: freezing, training mode and region pooling of ``self.backbone``."""

    config: VlBertConfig
    backbone: nn.Module | None

    def freeze_backbone_parts(self) -> None:
        """Stop gradients to the first ``config.backbone_frozen_stages`` backbone stages and, with
        ``config.backbone_frozen_batch_norm``, to every BatchNorm's affine parameters (see [`VlBertConfig`])."""
        config = self.config
        if config.backbone_frozen_stages:
            stages = backbone_stages(self.backbone)
            if config.backbone_frozen_stages > len(stages):
                raise ValueError(
                    f"backbone_frozen_stages: the backbone has {len(stages)} stages (stem included), "
                    f"got {config.backbone_frozen_stages}"
                )
            for stage in stages[: config.backbone_frozen_stages]:
                stage.requires_grad_(False)
        if config.backbone_frozen_batch_norm:
            for module in self.backbone_batch_norms():
                module.requires_grad_(False)

    def backbone_batch_norms(self) -> list[nn.Module]:
        """Every BatchNorm of the end-to-end backbone."""
        return [module for module in self.backbone.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]

    def train(self, mode: bool = True):
        """Set the training mode; frozen BatchNorms of the backbone stay in eval mode (fixed statistics).

        The frozen parts are frozen again here: ``from_pretrained`` re-creates every loaded parameter with
        ``requires_grad=True`` and then calls ``eval()``, which lands here.
        """
        super().train(mode)
        if self.backbone is not None:
            self.freeze_backbone_parts()
            if self.config.backbone_frozen_batch_norm:
                for module in self.backbone_batch_norms():
                    module.eval()
        return self

    def check_pixel_inputs(
        self, pixel_values: torch.Tensor | None, region_features: torch.Tensor | None, region_boxes: torch.Tensor | None
    ) -> torch.Tensor | None:
        """Check that ``pixel_values`` come exactly when there is a backbone; return the region features the shared
        image-text checks should see (a stand-in of the backbone's feature size in the end-to-end setting)."""
        if self.backbone is None:
            if pixel_values is not None:
                raise ValueError("pixel_values: this model takes precomputed region_features (config.backbone_config is None)")
            return region_features
        if pixel_values is None or pixel_values.dim() != 4 or pixel_values.shape[1] != 3:
            shape = None if pixel_values is None else tuple(pixel_values.shape)
            raise ValueError(f"pixel_values: expected (batch, 3, height, width) in the end-to-end setting, got {shape}")
        if region_features is not None:
            raise ValueError("region_features: the end-to-end model computes them from pixel_values; pass only boxes")
        if region_boxes is not None and region_boxes.dim() == 3:
            if pixel_values.shape[0] != region_boxes.shape[0]:
                raise ValueError(f"pixel_values: expected batch {region_boxes.shape[0]}, got {pixel_values.shape[0]}")
            return region_boxes.new_ones(()).expand(*region_boxes.shape[:2], self.config.region_feature_size)
        return None

    def pool_regions(self, pixel_values: torch.Tensor, boxes: torch.Tensor, masked_input: torch.Tensor) -> torch.Tensor:
        """End-to-end region features (B, R', C) of ``boxes`` (B, R', 4), normalised, box 0 first when the config adds
        it: zero the pixels of the ``masked_input`` (B, R) regions, run the backbone, RoIAlign and average."""
        config = self.config
        height, width = pixel_values.shape[-2:]
        scale = boxes.new_tensor([width, height, width, height])
        pixel_boxes = boxes.float() * scale  # (B, R', 4) in pixels
        offset = 1 if config.add_image_box else 0
        if bool(masked_input.any()):
            pixel_values = pixel_values.clone()
            for row, region in masked_input.nonzero().tolist():
                x1, y1, x2, y2 = pixel_boxes[row, region + offset].tolist()
                pixel_values[row, :, math.floor(y1) : math.ceil(y2), math.floor(x1) : math.ceil(x2)] = 0.0
        feature_map = self.backbone(pixel_values=pixel_values).feature_maps[config.backbone_feature_index]
        spatial = (feature_map.shape[-1] / width, feature_map.shape[-2] / height)
        pooled = [
            roi_align(feature_map[row], pixel_boxes[row], config.roi_output_size, spatial, config.roi_sampling_ratio).mean(
                dim=(2, 3)
            )
            for row in range(feature_map.shape[0])
        ]
        return torch.stack(pooled)
