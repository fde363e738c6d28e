"""In-process region features: plain-torch RoIAlign and NMS, detector/backbone featurizer with tiny models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers.processing import random_image, tiny_backbone, tiny_detector, tiny_detr

from vlpretrain.processing.regions import RegionFeaturizer, box_iou, nms, roi_align


def _reference_roi_align(feature_map, box, output_size, scale, sampling_ratio):
    """torchvision's roi_align (aligned=True) written as plain loops, one sample at a time."""
    channels, height, width = feature_map.shape
    x1, y1, x2, y2 = (value * factor - 0.5 for value, factor in zip(box, (scale[0], scale[1], scale[0], scale[1])))
    bin_w, bin_h = (x2 - x1) / output_size, (y2 - y1) / output_size
    out = torch.zeros(channels, output_size, output_size, dtype=torch.float64)
    for ph in range(output_size):
        for pw in range(output_size):
            total = torch.zeros(channels, dtype=torch.float64)
            for iy in range(sampling_ratio):
                for ix in range(sampling_ratio):
                    y = y1 + ph * bin_h + (iy + 0.5) * bin_h / sampling_ratio
                    x = x1 + pw * bin_w + (ix + 0.5) * bin_w / sampling_ratio
                    if y < -1.0 or y > height or x < -1.0 or x > width:
                        continue
                    y, x = max(y, 0.0), max(x, 0.0)
                    y_low, x_low = int(math.floor(y)), int(math.floor(x))
                    if y_low >= height - 1:
                        y_low = y_high = height - 1
                        y = float(y_low)
                    else:
                        y_high = y_low + 1
                    if x_low >= width - 1:
                        x_low = x_high = width - 1
                        x = float(x_low)
                    else:
                        x_high = x_low + 1
                    ly, lx = y - y_low, x - x_low
                    total += (
                        (1 - ly) * (1 - lx) * feature_map[:, y_low, x_low].double()
                        + (1 - ly) * lx * feature_map[:, y_low, x_high].double()
                        + ly * (1 - lx) * feature_map[:, y_high, x_low].double()
                        + ly * lx * feature_map[:, y_high, x_high].double()
                    )
            out[:, ph, pw] = total / sampling_ratio**2
    return out


def test_roi_align_matches_reference_loops_including_borders():
    generator = torch.Generator().manual_seed(0)
    feature_map = torch.randn(3, 6, 9, generator=generator)
    boxes = torch.tensor([[4.0, 3.0, 20.0, 17.0], [0.0, 0.0, 36.0, 24.0], [30.0, 18.0, 36.0, 24.0], [-3.0, -2.0, 5.0, 30.0]])
    ours = roi_align(feature_map, boxes, output_size=3, spatial_scale=(0.25, 0.25), sampling_ratio=2, chunk_size=3)
    assert ours.shape == (4, 3, 3, 3)
    for index, box in enumerate(boxes.tolist()):
        expected = _reference_roi_align(feature_map, box, 3, (0.25, 0.25), 2)
        torch.testing.assert_close(ours[index].double(), expected, atol=1e-5, rtol=1e-5)


def test_roi_align_is_exact_on_a_linear_map():
    ys, xs = torch.meshgrid(torch.arange(10.0), torch.arange(12.0), indexing="ij")
    feature_map = torch.stack([2 * xs + 3 * ys + 1])
    boxes = torch.tensor([[8.0, 8.0, 40.0, 30.0], [12.0, 4.0, 20.0, 36.0]])
    pooled = roi_align(feature_map, boxes, 7, (0.25, 0.25)).mean(dim=(2, 3))[:, 0]
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2 * 0.25 - 0.5
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2 * 0.25 - 0.5
    torch.testing.assert_close(pooled, 2 * centre_x + 3 * centre_y + 1)


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.0]])
    scores = torch.tensor([0.6, 0.9, 0.5, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.95).tolist() == [1, 3, 0, 2]
    assert box_iou(boxes[:1], boxes[:1]).item() == pytest.approx(1.0)


@pytest.fixture(scope="module")
def featurizer():
    return RegionFeaturizer.from_models(backbone=tiny_backbone(), detector=tiny_detector(), shortest_edge=64, longest_edge=112)


def test_fixed_regions_with_class_distributions(featurizer):
    record = featurizer([random_image()], image_ids=["cat"])[0]
    assert record.image_id == "cat" and (record.image_height, record.image_width) == (48, 80)
    assert record.features.shape == (36, 16) and record.boxes.shape == (36, 4)
    assert (record.boxes >= 0).all() and (record.boxes <= 1).all()
    assert (record.boxes[:, 2] >= record.boxes[:, 0]).all()
    assert record.class_probabilities.shape == (36, 6)  # 5 classes + DETR-style no-object
    np.testing.assert_allclose(record.class_probabilities.sum(1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(record.object_ids, record.class_probabilities[:, :5].argmax(1))
    np.testing.assert_allclose(record.object_confidences, record.class_probabilities[:, :5].max(1), atol=1e-6)


@pytest.mark.parametrize("kind, classes", [("detr", 6), ("conditional_detr", 5)])
def test_other_detr_family_detectors(kind, classes):
    featurizer = RegionFeaturizer.from_models(backbone=tiny_backbone(), detector=tiny_detr(kind), shortest_edge=64, longest_edge=112, num_regions=20)
    record = featurizer([random_image()])[0]
    assert record.features.shape == (20, 16) and record.class_probabilities.shape == (20, classes)
    np.testing.assert_array_equal(record.object_ids, record.class_probabilities[:, :5].argmax(1))


def test_results_do_not_depend_on_the_batch(featurizer):
    first, second = random_image(seed=1), random_image(60, 50, seed=2)
    together = featurizer([first, second])
    alone = featurizer([second])[0]
    np.testing.assert_array_equal(together[1].features, alone.features)
    np.testing.assert_array_equal(together[1].boxes, alone.boxes)


def test_adaptive_regions_by_confidence():
    adaptive = RegionFeaturizer.from_models(
        backbone=tiny_backbone(), detector=tiny_detector(), shortest_edge=64, longest_edge=112,
        num_regions=None, min_regions=10, max_regions=15, confidence_threshold=0.0, nms_threshold=0.9,
    )
    record = adaptive([random_image()])[0]
    assert 10 <= record.num_regions <= 15
    strict = RegionFeaturizer.from_models(
        backbone=tiny_backbone(), detector=tiny_detector(), shortest_edge=64, longest_edge=112,
        num_regions=None, min_regions=10, max_regions=15, confidence_threshold=1.01,
    )
    assert strict([random_image()])[0].num_regions == 10


def test_user_boxes_and_whole_image_box(featurizer):
    image = random_image()
    record = featurizer([image], boxes=[np.array([[0.0, 0.0, 80.0, 48.0], [10.0, 5.0, 30.0, 40.0]])])[0]
    np.testing.assert_allclose(record.boxes[0], [0, 0, 1, 1])
    assert record.class_probabilities is None and record.features.shape == (2, 16)
    # the whole-image box pools (almost) the whole feature map: compare with the plain mean of the map
    pixels = featurizer.pixel_values(featurizer_image(image))
    feature_map = featurizer.backbone(pixel_values=pixels).feature_maps[-1][0]
    assert np.corrcoef(record.features[0], feature_map.mean(dim=(1, 2)).detach().numpy())[0, 1] > 0.95
    with pytest.raises(ValueError, match=r"images\[0\]: boxes: box 0 .*outside the 80x48 image"):
        featurizer([image], boxes=[np.array([[0.0, 0.0, 200.0, 48.0]])])


def featurizer_image(array):
    from PIL import Image

    return Image.fromarray(array)


def test_masked_regions_zero_their_pixels_before_the_backbone(featurizer):
    seen = []
    handle = featurizer.backbone.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["pixel_values"].clone()), with_kwargs=True)
    try:
        boxes = [np.array([[0.0, 0.0, 40.0, 24.0], [40.0, 24.0, 80.0, 48.0]])]
        plain = featurizer([random_image()], boxes=boxes)[0]
        masked = featurizer([random_image()], boxes=boxes, masked_regions=[[0]])[0]
    finally:
        handle.remove()
    unmasked_pixels, masked_pixels = seen
    height, width = masked_pixels.shape[-2:]
    assert (masked_pixels[..., : height // 2, : width // 2] == 0).all()
    torch.testing.assert_close(masked_pixels[..., height // 2 :, :], unmasked_pixels[..., height // 2 :, :])
    assert not np.allclose(plain.features[0], masked.features[0])
    with pytest.raises(ValueError, match="masked_regions"):
        featurizer([random_image()], boxes=boxes, masked_regions=[[5]])


def test_colour_order_is_applied():
    rgb = RegionFeaturizer.from_models(backbone=tiny_backbone(), shortest_edge=32, longest_edge=64)
    bgr = RegionFeaturizer.from_models(backbone=tiny_backbone(), shortest_edge=32, longest_edge=64, colour_order="BGR",
                                       image_mean=[0.406, 0.456, 0.485], image_std=[0.225, 0.224, 0.229])
    image = featurizer_image(random_image())
    torch.testing.assert_close(bgr.pixel_values(image), rgb.pixel_values(image).flip(1))


def test_bad_images_and_settings(tmp_path, featurizer):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not a jpeg")
    with pytest.raises(ValueError, match=r"images\[0\] .*broken.jpg.*cannot decode image file"):
        featurizer([str(broken)])
    with pytest.raises(FileNotFoundError, match="nowhere.png"):
        featurizer([str(tmp_path / "nowhere.png")])
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        featurizer([np.zeros((4, 4), dtype=np.float32)])
    with pytest.raises(ValueError, match="unknown keys \\['num_boxes'\\]"):
        RegionFeaturizer({"num_boxes": 36})
    with pytest.raises(ValueError, match="colour_order"):
        RegionFeaturizer({"colour_order": "RBG"})
    too_many = RegionFeaturizer.from_models(backbone=tiny_backbone(), detector=tiny_detector(queries=20), shortest_edge=64, longest_edge=112)
    with pytest.raises(ValueError, match="proposes 20 boxes, fewer than the 36 regions"):
        too_many([random_image()])
