"""RoIAlign in plain torch, shared by the in-process region featurizer and end-to-end models."""

from __future__ import annotations

import torch


def _bilinear_axis(coordinates: torch.Tensor, size: int) -> tuple[torch.Tensor, ...]:
    """Per-axis terms of torchvision's ``bilinear_interpolate``: valid mask, low/high indices, weights."""
    valid = (coordinates >= -1.0) & (coordinates <= size)
    coordinates = coordinates.clamp(min=0)
    low = coordinates.floor().long()
    at_edge = low >= size - 1
    low = torch.where(at_edge, torch.full_like(low, size - 1), low)
    high = torch.where(at_edge, low, low + 1)
    coordinates = torch.where(at_edge, low.to(coordinates.dtype), coordinates)
    high_weight = coordinates - low.to(coordinates.dtype)
    return valid, low, high, 1.0 - high_weight, high_weight


def roi_align(
    feature_map: torch.Tensor,
    boxes: torch.Tensor,
    output_size: int,
    spatial_scale: tuple[float, float],
    sampling_ratio: int = 2,
    aligned: bool = True,
    chunk_size: int = 16,
) -> torch.Tensor:
    """RoIAlign of (x1, y1, x2, y2) input-pixel boxes over one (C, H, W) map; returns (R, C, P, P).

    Matches torchvision's ``roi_align`` for a positive ``sampling_ratio``: each of the P x P bins averages
    ``sampling_ratio``^2 bilinear samples; with ``aligned=True`` box corners are shifted by -0.5 pixel so
    that box edges fall on pixel edges; points beyond one pixel outside the map contribute zero.
    """
    if feature_map.ndim != 3:
        raise ValueError(f"roi_align: feature_map must be (C, H, W), got {tuple(feature_map.shape)}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"roi_align: boxes must be (R, 4), got {tuple(boxes.shape)}")
    if sampling_ratio <= 0 or output_size <= 0:
        raise ValueError(f"roi_align: output_size and sampling_ratio must be positive, got {output_size}, {sampling_ratio}")
    channels, height, width = feature_map.shape
    flat = feature_map.reshape(channels, height * width)
    scale_x, scale_y = spatial_scale
    offset = 0.5 if aligned else 0.0
    outputs = []
    steps = (torch.arange(output_size * sampling_ratio, dtype=feature_map.dtype, device=feature_map.device) + 0.5) / sampling_ratio
    for start in range(0, boxes.shape[0], chunk_size):
        chunk = boxes[start : start + chunk_size].to(device=feature_map.device, dtype=feature_map.dtype)
        x1 = chunk[:, 0] * scale_x - offset
        y1 = chunk[:, 1] * scale_y - offset
        roi_width = chunk[:, 2] * scale_x - offset - x1
        roi_height = chunk[:, 3] * scale_y - offset - y1
        if not aligned:
            roi_width, roi_height = roi_width.clamp(min=1.0), roi_height.clamp(min=1.0)
        xs = x1[:, None] + steps[None, :] * (roi_width / output_size)[:, None]
        ys = y1[:, None] + steps[None, :] * (roi_height / output_size)[:, None]
        valid_y, y_low, y_high, weight_y_low, weight_y_high = _bilinear_axis(ys, height)
        valid_x, x_low, x_high, weight_x_low, weight_x_high = _bilinear_axis(xs, width)
        sampled = 0
        for row_index, row_weight in ((y_low, weight_y_low), (y_high, weight_y_high)):
            for column_index, column_weight in ((x_low, weight_x_low), (x_high, weight_x_high)):
                index = row_index[:, :, None] * width + column_index[:, None, :]
                weight = row_weight[:, :, None] * column_weight[:, None, :]
                sampled = sampled + flat[:, index] * weight
        sampled = sampled * (valid_y[:, :, None] & valid_x[:, None, :])
        rois = len(chunk)
        sampled = sampled.reshape(channels, rois, output_size, sampling_ratio, output_size, sampling_ratio)
        outputs.append(sampled.mean(dim=(3, 5)).permute(1, 0, 2, 3))
    if not outputs:
        return feature_map.new_zeros((0, channels, output_size, output_size))
    return torch.cat(outputs, dim=0)
