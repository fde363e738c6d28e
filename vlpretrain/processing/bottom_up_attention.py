"""Image processor of the bottom-up-attention detector: BGR, mean subtraction and the release's resize.

Two resize rules, matching the detector's ``box_selection``:

- "opencv" (caffe ``lib/fast_rcnn/test.py _get_image_blob``, MILVLG ``utils/extract_utils.py get_image_blob``):
  subtract the BGR means, scale ``s = shortest_edge / short`` unless ``round(s * long) > longest_edge`` (then
  ``s = longest_edge / long``), output sides ``round(side * s)`` (half to even, as OpenCV's ``cvRound``) and bilinear
  sampling at source positions ``(x + 0.5) / s - 0.5`` (``cv2.resize(fx=s, fy=s)``: the scale, not the size ratio).
- "torch" (the LXMERT research project's ``processing_image.py``): short side := ``shortest_edge``, both sides
  shrunk if the long one exceeds ``longest_edge``, each rounded with ``int(x + 0.5)``, ``F.interpolate`` bilinear
  (``align_corners=False``) on the 0-255 pixels, then ``(x - mean) / std``.

Images of a batch are padded bottom/right with zeros; ``image_sizes`` tells the detector each image's extent.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

from ..utils.remote_code import atomic_write_text, auto_map_reference, write_flat_modules

RESIZE_RULES = ("opencv", "torch")
# A 0- or 1-pixel side carries no spatial content; the backbone needs a res4 map of at least 2 x 2 cells (stride 16).
MIN_IMAGE_SIDE = 2
MIN_RESIZED_SIDE = 32


class BottomUpAttentionImageProcessor(BaseImageProcessor):
    r"""Turn RGB images into the detector's ``pixel_values`` plus ``image_sizes``, ``original_sizes``, ``scale_factors``.

    Args:
        colour_order: channel order the weights expect ("BGR" for every release: caffe reads with OpenCV).
        image_mean / image_std: per-channel mean and std in ``colour_order`` (caffe ``PIXEL_MEANS``, std 1).
        shortest_edge / longest_edge: the test scale (``TEST.SCALES (600,)``, ``TEST.MAX_SIZE 1000``).
        resize_rule: "opencv" (caffe) or "torch" (the transformers port).
    """

    model_input_names = ["pixel_values", "image_sizes", "original_sizes", "scale_factors"]

    def __init__(
        self,
        colour_order: str = "BGR",
        image_mean: list[float] | tuple[float, ...] = (102.9801, 115.9465, 122.7717),
        image_std: list[float] | tuple[float, ...] = (1.0, 1.0, 1.0),
        shortest_edge: int = 600,
        longest_edge: int = 1000,
        resize_rule: str = "opencv",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if colour_order not in ("RGB", "BGR"):
            raise ValueError(f"colour_order must be 'RGB' or 'BGR', got {colour_order!r}")
        if resize_rule not in RESIZE_RULES:
            raise ValueError(f"resize_rule must be one of {RESIZE_RULES}, got {resize_rule!r}")
        if len(image_mean) != 3 or len(image_std) != 3:
            raise ValueError(f"image_mean and image_std need 3 values, got {image_mean} and {image_std}")
        if not 0 < shortest_edge <= longest_edge:
            raise ValueError(f"need 0 < shortest_edge <= longest_edge, got {shortest_edge}, {longest_edge}")
        self.colour_order = colour_order
        self.image_mean = [float(value) for value in image_mean]
        self.image_std = [float(value) for value in image_std]
        self.shortest_edge = int(shortest_edge)
        self.longest_edge = int(longest_edge)
        self.resize_rule = resize_rule

    def resized_size(self, height: int, width: int) -> tuple[int, int, float]:
        """(height, width, scale) after the release's resize of a ``height`` x ``width`` image."""
        short, long = min(height, width), max(height, width)
        if self.resize_rule == "opencv":
            scale = self.shortest_edge / short
            if round(scale * long) > self.longest_edge:
                scale = self.longest_edge / long
            return round(height * scale), round(width * scale), scale
        scale = self.shortest_edge / short
        new_height, new_width = (self.shortest_edge, scale * width) if height < width else (scale * height, self.shortest_edge)
        if max(new_height, new_width) > self.longest_edge:
            shrink = self.longest_edge / max(new_height, new_width)
            new_height, new_width = new_height * shrink, new_width * shrink
        return int(new_height + 0.5), int(new_width + 0.5), scale

    def _as_array(self, image, where: str) -> np.ndarray:
        if isinstance(image, Image.Image):
            image = np.asarray(image.convert("RGB"))
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"{where}: expected a PIL image or an (H, W, 3) uint8 RGB array, got "
                f"{getattr(image, 'shape', type(image).__name__)} {getattr(image, 'dtype', '')}"
            )
        return image

    def preprocess_one(self, image, where: str = "image") -> tuple[torch.Tensor, tuple[int, int], float]:
        """One image as a normalised (3, h, w) float tensor, its original (height, width) and the resize scale."""
        pixels = self._as_array(image, where)
        height, width = pixels.shape[:2]
        if min(height, width) < MIN_IMAGE_SIDE:
            raise ValueError(f"{where}: a {width}x{height} image; each side must be at least {MIN_IMAGE_SIDE} pixels")
        new_height, new_width, scale = self.resized_size(height, width)
        if min(new_height, new_width) < MIN_RESIZED_SIDE:
            raise ValueError(
                f"{where}: a {width}x{height} image resizes to {new_width}x{new_height}; each side must be at least "
                f"{MIN_RESIZED_SIDE} pixels after resizing (the image is empty, too small or its aspect ratio too extreme)"
            )
        tensor = torch.from_numpy(np.array(pixels, dtype=np.float32)).permute(2, 0, 1)
        if self.colour_order == "BGR":
            tensor = tensor.flip(0)
        mean = torch.tensor(self.image_mean)[:, None, None]
        std = torch.tensor(self.image_std)[:, None, None]
        if self.resize_rule == "opencv":
            normalised = ((tensor - mean) / std)[None]
            resized = opencv_resize_linear(normalised[0], new_height, new_width, scale)
        else:
            resized = nn_interpolate(tensor[None], new_height, new_width)[0]
            resized = (resized - mean) / std
        return resized, (height, width), scale

    def preprocess(self, images, return_tensors: str | None = "pt", where: str = "images", **kwargs) -> BatchFeature:
        """Resize, normalise and pad a list of images (or one image)."""
        if isinstance(images, (Image.Image, np.ndarray)):
            images = [images]
        if len(images) == 0:
            raise ValueError(f"{where}: no images given")
        processed = [self.preprocess_one(image, f"{where}[{index}]") for index, image in enumerate(images)]
        height = max(item[0].shape[1] for item in processed)
        width = max(item[0].shape[2] for item in processed)
        pixel_values = torch.zeros(len(processed), 3, height, width)
        for index, (tensor, _, _) in enumerate(processed):
            pixel_values[index, :, : tensor.shape[1], : tensor.shape[2]] = tensor
        data = {
            "pixel_values": pixel_values,
            "image_sizes": torch.tensor([list(item[0].shape[1:]) for item in processed]),
            "original_sizes": torch.tensor([list(item[1]) for item in processed]),
            "scale_factors": torch.tensor([item[2] for item in processed], dtype=torch.float64),
        }
        return BatchFeature(data=data, tensor_type=return_tensors)

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        """Save ``preprocessor_config.json`` with an ``auto_map`` and the flat remote code of this module."""
        self._auto_class = None
        files = super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        write_flat_modules([type(self).__module__], save_directory)
        config_file = Path(save_directory) / "preprocessor_config.json"
        config = json.loads(config_file.read_text(encoding="utf-8"))
        config["auto_map"] = {"AutoImageProcessor": auto_map_reference(type(self))}
        atomic_write_text(config_file, json.dumps(config, indent=2, sort_keys=True) + "\n")
        self.__dict__.pop("_auto_class", None)
        return files


def _opencv_linear_taps(source_size: int, target_size: int, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices and weights of ``cv2.resize(fx=scale, interpolation=INTER_LINEAR)`` along one axis
    (``imgproc/src/resize.cpp``): position ``float((x + 0.5) / scale - 0.5)`` computed in double, floor and fraction
    in float, positions before the first or from the last pixel take that pixel with weight 1."""
    positions = torch.from_numpy(((np.arange(target_size, dtype=np.float64) + 0.5) * (1.0 / scale) - 0.5).astype(np.float32))
    low = torch.floor(positions)
    fraction = positions - low
    low = low.long()
    outside = (low < 0) | (low >= source_size - 1)
    fraction = torch.where(outside, torch.zeros_like(fraction), fraction)
    low = low.clamp(0, source_size - 1)
    high = torch.where(outside, low, low + 1)
    return low, high, fraction


def opencv_resize_linear(pixels: torch.Tensor, height: int, width: int, scale: float) -> torch.Tensor:
    """Resize a (C, H, W) float image as OpenCV's bilinear ``resize`` with a scale factor: rows then columns."""
    low, high, fraction = _opencv_linear_taps(pixels.shape[2], width, scale)
    horizontal = pixels[:, :, low] * (1.0 - fraction) + pixels[:, :, high] * fraction
    low, high, fraction = _opencv_linear_taps(pixels.shape[1], height, scale)
    return horizontal[:, low, :] * (1.0 - fraction)[:, None] + horizontal[:, high, :] * fraction[:, None]


def nn_interpolate(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``F.interpolate(size=..., mode="bilinear", align_corners=False)`` as in the port."""
    return torch.nn.functional.interpolate(pixels, (height, width), mode="bilinear", align_corners=False)


__all__ = ["BottomUpAttentionImageProcessor"]
