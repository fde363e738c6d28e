"""The bottom-up-attention detector: box arithmetic, conversion from both release layouts, save / load / remote
code, batch independence, the region featurizer and CLI over image files, bad inputs, and PNG -> LXMERT VQA."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import torch
import transformers
from helpers.bottom_up_attention_factories import (
    TINY,
    bua_caffe_state_dict,
    frcnn_vg_state_dict,
    write_bua_caffe,
    write_frcnn_vg,
    write_vocabularies,
)
from helpers.fresh_process import run_fresh_process
from helpers.processing import minilm_tokenizer, random_image
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForObjectDetection, pipeline

from vlpretrain import (
    BottomUpAttentionDetector,
    BottomUpAttentionImageProcessor,
    LxmertForQuestionAnswering,
    RegionFeaturizer,
    VisionLanguageProcessor,
)
from vlpretrain.cli import main
from vlpretrain.modeling.bottom_up_attention import caffe_cell_anchors, greedy_nms, roi_pool
from vlpretrain.processing.bottom_up_attention import opencv_resize_linear
from vlpretrain.processing.provenance import feature_provenance
from vlpretrain.processing.store import load_feature_store, read_store_metadata

pytestmark = pytest.mark.usefixtures("one_thread")

# Small test-time settings so a tiny detector runs in well under a second per image.
FAST = {"rpn_pre_nms_top_n": 500, "rpn_post_nms_top_n": 40, "min_boxes": 4, "max_boxes": 12}
SMALL_IMAGES = BottomUpAttentionImageProcessor(shortest_edge=96, longest_edge=160)


def _convert(tmp_path, layout: str, **overrides):
    destination = tmp_path / f"{layout}-converted"
    vocab_args = []
    if layout == "frcnn-vg":
        source = write_frcnn_vg(tmp_path / "frcnn-vg", **{"input.min_size_test": 96, "input.max_size_test": 160})
    else:
        source = write_bua_caffe(tmp_path / "bua" / "bua-caffe-frcn-r101_with_attributes.pth")
        objects, attributes = write_vocabularies(tmp_path / "vocab", TINY["labels"], TINY["attributes"])
        vocab_args = ["--objects-vocab", str(objects), "--attributes-vocab", str(attributes)]
    main(["convert", "--from", layout, str(source), "--output-dir", str(destination), "--config-overrides",
          json.dumps({**FAST, **overrides}), *vocab_args])
    if layout == "bua-caffe":
        SMALL_IMAGES.save_pretrained(destination)
    return destination


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("bua")
    return {layout: _convert(root, layout) for layout in ("frcnn-vg", "bua-caffe")}


def _pixels(processor, images):
    return processor.preprocess(images)


# ------------------------------------------------------------------------------------------- arithmetic


def test_caffe_anchors_are_the_published_ones():
    # py-faster-rcnn / bottom-up-attention lib/rpn/generate_anchors.py prints these for scales (8, 16, 32).
    expected = [[-84, -40, 99, 55], [-176, -88, 191, 103], [-360, -184, 375, 199], [-56, -56, 71, 71],
                [-120, -120, 135, 135], [-248, -248, 263, 263], [-36, -80, 51, 95], [-80, -168, 95, 183],
                [-168, -344, 183, 359]]
    assert caffe_cell_anchors(16, [0.5, 1.0, 2.0], [128, 256, 512]).tolist() == expected
    assert caffe_cell_anchors(16, [0.5, 1.0, 2.0], [64, 128, 256, 512]).shape == (12, 4)


def _reference_roi_pool(feature_map, box, size, scale):
    """torchvision's roi_pool_kernel.cpp, one bin at a time, in float32."""
    channels, height, width = feature_map.shape
    start_w, start_h, end_w, end_h = (int(math.copysign(math.floor(abs(float(np.float32(v) * np.float32(scale))) + 0.5), v)) for v in box)
    roi_w, roi_h = max(end_w - start_w + 1, 1), max(end_h - start_h + 1, 1)
    bin_h, bin_w = np.float32(roi_h) / np.float32(size), np.float32(roi_w) / np.float32(size)
    out = torch.zeros(channels, size, size)
    for ph in range(size):
        for pw in range(size):
            hstart = min(max(int(math.floor(np.float32(ph) * bin_h)) + start_h, 0), height)
            hend = min(max(int(math.ceil(np.float32(ph + 1) * bin_h)) + start_h, 0), height)
            wstart = min(max(int(math.floor(np.float32(pw) * bin_w)) + start_w, 0), width)
            wend = min(max(int(math.ceil(np.float32(pw + 1) * bin_w)) + start_w, 0), width)
            if hend > hstart and wend > wstart:
                out[:, ph, pw] = feature_map[:, hstart:hend, wstart:wend].amax(dim=(1, 2))
    return out


def test_roi_pool_matches_the_kernel_including_float_bin_edges_and_borders():
    generator = torch.Generator().manual_seed(0)
    feature_map = torch.randn(3, 40, 70, generator=generator)
    # 61 cells wide at P = 14 is where float32 and exact bin edges differ; the last box runs off the map.
    boxes = torch.tensor([[0.0, 0.0, 976.0, 300.0], [8.0, 24.0, 200.0, 90.0], [100.0, 100.0, 101.0, 101.0],
                          [600.0, 500.0, 1200.0, 700.0], [7.5, 8.4, 40.0, 23.5]])
    pooled = roi_pool(feature_map, boxes, 14, 1 / 16)
    for index, box in enumerate(boxes.tolist()):
        torch.testing.assert_close(pooled[index], _reference_roi_pool(feature_map, box, 14, 1 / 16), atol=0, rtol=0)


def test_nms_follows_caffe_or_torchvision_arithmetic():
    # IoU with +1 areas: 100 / (100 + 100 - 100 * ...) chosen so that caffe's IoU is exactly 0.5.
    boxes = torch.tensor([[0.0, 0.0, 9.0, 9.0], [0.0, 0.0, 9.0, 19.0], [30.0, 30.0, 40.0, 40.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert greedy_nms(boxes, scores, 0.5, caffe=True).tolist() == [0, 2]  # +1: IoU 100/200 = 0.5 >= 0.5
    assert greedy_nms(boxes, scores, 0.5, caffe=False).tolist() == [0, 1, 2]  # 81/171 < 0.5
    assert greedy_nms(boxes, scores, 0.47, caffe=False).tolist() == [0, 2]
    assert greedy_nms(boxes, scores, 0.9, caffe=True, limit=2).tolist() == [0, 1]


def test_image_processor_resize_rules():
    caffe = BottomUpAttentionImageProcessor()
    assert caffe.resized_size(480, 640)[:2] == (600, 800)
    assert caffe.resized_size(300, 1000)[:2] == (300, 1000)  # 600 / 300 * 1000 > 1000: scale by the long side
    port = BottomUpAttentionImageProcessor(resize_rule="torch")
    assert port.resized_size(333, 500)[:2] == (600, 901)
    image = random_image(30, 50, seed=1)
    inputs = caffe.preprocess([image])
    assert inputs["image_sizes"].tolist() == [[600, 1000]] and inputs["original_sizes"].tolist() == [[30, 50]]
    # BGR order and mean subtraction: a flat image stays flat.
    flat = caffe.preprocess([np.full((40, 40, 3), (10, 20, 30), dtype=np.uint8)])["pixel_values"][0]
    torch.testing.assert_close(flat[:, 5, 5], torch.tensor([30 - 102.9801, 20 - 115.9465, 10 - 122.7717]))


def _reference_cv2_linear(image: np.ndarray, height: int, width: int, scale: float) -> np.ndarray:
    """cv2.resize(fx=fy=scale, INTER_LINEAR) on a float32 (H, W) image, pixel by pixel (imgproc/src/resize.cpp)."""

    def taps(size: int, index: int) -> tuple[int, int, np.float32]:
        position = np.float32((index + 0.5) * (1.0 / scale) - 0.5)
        low = int(np.floor(position))
        fraction = np.float32(position - np.float32(low))
        if low < 0:
            return 0, 0, np.float32(0)
        if low >= size - 1:
            return size - 1, size - 1, np.float32(0)
        return low, low + 1, fraction

    rows = np.zeros((image.shape[0], width), np.float32)
    for x in range(width):
        low, high, fraction = taps(image.shape[1], x)
        rows[:, x] = image[:, low] * (np.float32(1) - fraction) + image[:, high] * fraction
    out = np.zeros((height, width), np.float32)
    for y in range(height):
        low, high, fraction = taps(image.shape[0], y)
        out[y] = rows[low] * (np.float32(1) - fraction) + rows[high] * fraction
    return out


@pytest.mark.parametrize("scale", [600 / 37, 0.37])
def test_opencv_resize_follows_the_scale_factor(scale):
    image = np.random.default_rng(0).normal(size=(37, 53)).astype(np.float32) * 100
    height, width = round(37 * scale), round(53 * scale)
    ours = opencv_resize_linear(torch.from_numpy(image)[None], height, width, scale)[0].numpy()
    np.testing.assert_allclose(ours, _reference_cv2_linear(image, height, width, scale), rtol=0, atol=1e-4)


# ------------------------------------------------------------------------------------------- conversion


def test_frcnn_vg_conversion_maps_the_port_layout(converted):
    model = AutoModelForObjectDetection.from_pretrained(converted["frcnn-vg"])
    original = frcnn_vg_state_dict()
    state = model.state_dict()
    predictor = "roi_heads.box_predictor."
    assert isinstance(model, BottomUpAttentionDetector)
    # Background (the port's last row) becomes class 0; "no attribute" (last) becomes attribute 0.
    torch.testing.assert_close(state["box_predictor.cls_score.weight"][0], original[predictor + "cls_score.weight"][-1])
    torch.testing.assert_close(state["box_predictor.cls_score.weight"][1:], original[predictor + "cls_score.weight"][:-1])
    torch.testing.assert_close(state["box_predictor.attr_score.bias"][0], original[predictor + "attr_score.bias"][-1])
    torch.testing.assert_close(state["box_predictor.cls_embedding.weight"][0], original[predictor + "cls_embedding.weight"][-1])
    assert state["box_predictor.bbox_pred.weight"][:4].abs().sum() == 0
    torch.testing.assert_close(state["box_predictor.bbox_pred.weight"][4:], original[predictor + "bbox_pred.weight"])
    torch.testing.assert_close(state["rpn_head.cell_anchors"], original["proposal_generator.anchor_generator.cell_anchors.0"])
    torch.testing.assert_close(state["backbone.res3.0.conv1.norm.running_var"], original["backbone.res3.0.conv1.norm.running_var"])
    config = model.config
    assert (config.nms_threshold, config.min_boxes, config.max_boxes) == ([0.3, 0.5, 0.7], 4, 12)
    assert config.bbox_reg_weights == [10.0, 10.0, 5.0, 5.0] and not config.rpn_two_class_scores
    assert config.id2label[0] == "LABEL_0" and config.attribute_id2label[3] == "ATTRIBUTE_3"
    processor = AutoImageProcessor.from_pretrained(converted["frcnn-vg"])
    assert (processor.shortest_edge, processor.longest_edge, processor.colour_order) == (96, 160, "BGR")


def test_bua_caffe_conversion_keeps_caffe_order_and_reads_vocabularies(converted):
    model = AutoModelForObjectDetection.from_pretrained(converted["bua-caffe"])
    original = bua_caffe_state_dict()
    state = model.state_dict()
    torch.testing.assert_close(state["box_predictor.cls_score.weight"], original["roi_heads.box_predictor.cls_score.weight"])
    torch.testing.assert_close(state["box_predictor.attr_score.weight"], original["roi_heads.box_predictor.attr_linear2.weight"])
    torch.testing.assert_close(state["rpn_head.objectness_logits.weight"], original["proposal_generator.rpn_head.objectness_logits.weight"])
    assert state["rpn_head.cell_anchors"][0].tolist() == [-38.0, -16.0, 53.0, 31.0]  # caffe, scale 4, ratio 0.5
    assert model.config.rpn_two_class_scores and model.config.box_selection == "bottom-up"
    assert model.config.id2label[2] == "thing2" and model.config.attribute_id2label[1] == "colour1"


def test_conversion_errors_name_the_mismatching_keys(tmp_path):
    state = bua_caffe_state_dict()
    del state["roi_heads.res5.0.conv2.weight"]
    torch.save({"model": state}, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"missing \['res5\.0\.conv2\.weight'\]"):
        main(["convert", "--from", "bua-caffe", str(tmp_path / "missing.pth"), "--output-dir", str(tmp_path / "a")])
    state = bua_caffe_state_dict()
    state["roi_heads.box_predictor.attr_linear1.weight"] = torch.zeros(32, 99)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match=r"box_predictor\.fc_attr\.weight has shape \(32, 99\)"):
        main(["convert", "--from", "bua-caffe", str(tmp_path / "shape.pth"), "--output-dir", str(tmp_path / "b")])
    state = frcnn_vg_state_dict()
    state["roi_heads.box_head.fc6.weight"] = torch.zeros(1)
    write_frcnn_vg(tmp_path / "extra", state=state)
    with pytest.raises(ValueError, match=r"roi_heads\.box_head\.fc6\.weight"):
        main(["convert", "--from", "frcnn-vg", str(tmp_path / "extra"), "--output-dir", str(tmp_path / "c")])
    torch.save({"model": bua_caffe_state_dict(), "args": argparse.Namespace(lr=0.1)}, tmp_path / "pickled.pth")
    with pytest.raises(ValueError, match="weights_only"):
        main(["convert", "--from", "bua-caffe", str(tmp_path / "pickled.pth"), "--output-dir", str(tmp_path / "d")])
    assert not any((tmp_path / name).exists() for name in "abcd")


# ------------------------------------------------------------------------------------------- model behaviour


@pytest.mark.parametrize("box_selection", ["bottom-up", "transformers-demo"])
def test_batch_gives_the_same_regions_as_single_images(converted, box_selection):
    model = AutoModelForObjectDetection.from_pretrained(converted["frcnn-vg"]).eval()
    processor = BottomUpAttentionImageProcessor(shortest_edge=96, longest_edge=160,
                                                resize_rule="opencv" if box_selection == "bottom-up" else "torch")
    images = [random_image(60, 100, seed=0), random_image(90, 70, seed=1), random_image(50, 50, seed=2)]
    batch = model(**_pixels(processor, images), box_selection=box_selection)
    assert int(batch.num_boxes.max()) == batch.boxes.shape[1]
    for index, image in enumerate(images):
        single = model(**_pixels(processor, [image]), box_selection=box_selection)
        count = int(single.num_boxes[0])
        assert int(batch.num_boxes[index]) == count and 4 <= count <= 12
        for name in ("boxes", "features", "object_ids", "attribute_ids", "class_probabilities", "attribute_confidences"):
            torch.testing.assert_close(getattr(batch, name)[index, :count], getattr(single, name)[0], atol=1e-5, rtol=1e-5)
        assert batch.features[index, count:].abs().sum() == 0


def test_region_selection_rules(converted):
    model = AutoModelForObjectDetection.from_pretrained(converted["bua-caffe"]).eval()
    image = random_image(70, 110, seed=3)
    caffe = model(**_pixels(SMALL_IMAGES, [image]))
    count = int(caffe.num_boxes[0])
    probabilities = caffe.class_probabilities[0, :count]
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(count))
    # Object ids skip background; the confidence is the unrenormalised probability of that class.
    torch.testing.assert_close(caffe.object_confidences[0, :count], probabilities[:, 1:].max(-1).values)
    assert torch.equal(caffe.object_ids[0, :count], probabilities[:, 1:].argmax(-1))
    # Caffe boxes are proposals in original pixels: inside the image, x2 <= width - 1 / scale.
    boxes = caffe.boxes[0, :count]
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 110).all() and (boxes[:, 3] <= 70).all()
    torch.testing.assert_close(caffe.normalized_boxes[0, :count], boxes / torch.tensor([110.0, 70.0, 110.0, 70.0]))
    demo = model(**_pixels(SMALL_IMAGES, [image]), box_selection="transformers-demo")
    scores = demo.object_confidences[0, : int(demo.num_boxes[0])]
    assert torch.equal(scores, scores.sort(descending=True).values)


@pytest.mark.slow
def test_save_load_export_and_remote_code_in_a_fresh_process(converted, tmp_path):
    model = AutoModelForObjectDetection.from_pretrained(converted["frcnn-vg"]).eval()
    model.save_pretrained(tmp_path / "saved")
    processor = AutoImageProcessor.from_pretrained(converted["frcnn-vg"])
    processor.save_pretrained(tmp_path / "saved")
    image = random_image(64, 96, seed=4)
    Image.fromarray(image).save(tmp_path / "image.png")
    expected = model(**processor.preprocess([image]))
    reloaded = AutoModelForObjectDetection.from_pretrained(tmp_path / "saved").eval()
    torch.testing.assert_close(reloaded(**processor.preprocess([image])).features, expected.features)
    np.save(tmp_path / "expected.npy", expected.features[0].numpy())
    assert main(["export", str(tmp_path / "saved"), "--output-dir", str(tmp_path / "exported")]) == 0
    assert "2048" not in (tmp_path / "exported" / "README.md").read_text() and "128-d" in (tmp_path / "exported" / "README.md").read_text()
    script = (
        "import re, sys, numpy as np, torch\n"
        "from PIL import Image\n"
        "from transformers import AutoImageProcessor, AutoModelForObjectDetection\n"
        "folder = sys.argv[1]\n"
        "model = AutoModelForObjectDetection.from_pretrained(folder, trust_remote_code=True).eval()\n"
        "processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)\n"
        "assert type(model).__module__.startswith('transformers_modules'), type(model).__module__\n"
        "outputs = model(**processor.preprocess([np.asarray(Image.open(sys.argv[2]).convert('RGB'))]))\n"
        "np.testing.assert_allclose(outputs.features[0].numpy(), np.load(sys.argv[3]), atol=1e-5)\n"
        "card = open(folder + '/README.md').read()\n"
        "exec(re.search(r'```python\\n(.*?)```', card, re.S).group(1), {})  # the card's snippet runs as written\n"
    )
    run_fresh_process(script, tmp_path, tmp_path / "exported", tmp_path / "image.png", tmp_path / "expected.npy")


# ------------------------------------------------------------------------------------------- featurizer, CLI, inputs


def test_region_featurizer_uses_the_detector_features(converted, tmp_path):
    featurizer = RegionFeaturizer.from_pretrained_models(detector=str(converted["bua-caffe"]))
    path = tmp_path / "photo.png"
    Image.fromarray(random_image(72, 120, seed=5)).save(path)
    record = featurizer.featurize_image(path)
    detector = featurizer.detector
    outputs = detector(**SMALL_IMAGES.preprocess([random_image(72, 120, seed=5)]))
    count = int(outputs.num_boxes[0])
    assert record.image_id == "photo" and (record.image_height, record.image_width) == (72, 120)
    assert record.features.shape == (count, 128) and record.class_probabilities.shape == (count, TINY["labels"] + 1)
    np.testing.assert_allclose(record.features, outputs.features[0, :count].numpy(), atol=1e-6)
    np.testing.assert_allclose(record.boxes, outputs.normalized_boxes[0, :count].numpy(), atol=1e-6)
    assert record.attribute_ids.dtype == np.int64 and record.attribute_confidences.shape == (count,)
    info = feature_provenance(featurizer, "regions")
    assert info["extractor"] == "bottom_up_attention" and info["settings"]["box_selection"] == "bottom-up"
    assert len(info["weights"]["detector"]["sha256"]) == 64 and info["settings"]["image_processor"]["resize_rule"] == "opencv"
    demo = RegionFeaturizer.from_pretrained_models(detector=str(converted["bua-caffe"]), box_selection="transformers-demo")
    assert feature_provenance(demo, "regions")["settings"]["box_selection"] == "transformers-demo"
    assert 4 <= demo.featurize_image(path).num_regions <= 12


def test_bad_images_raise_clear_errors_or_are_skipped(converted, tmp_path):
    featurizer = RegionFeaturizer.from_pretrained_models(detector=str(converted["frcnn-vg"]))
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "broken.jpg").write_bytes(b"not an image")
    Image.new("RGB", (1, 1)).save(folder / "dot.png")
    Image.new("RGB", (2000, 3)).save(folder / "strip.png")
    Image.fromarray(random_image(50, 60, seed=6)[:, :, 0], mode="L").save(folder / "grey.png")
    Image.fromarray(np.dstack([random_image(50, 60, seed=7), np.full((50, 60), 128, np.uint8)]), mode="RGBA").save(folder / "alpha.png")
    for name, message in (("broken.jpg", "cannot decode"), ("dot.png", "1x1 image"), ("strip.png", "aspect ratio")):
        with pytest.raises(ValueError, match=message) as error:
            featurizer.featurize_image(folder / name, where=str(folder / name))
        assert name in str(error.value)
    with pytest.raises(ValueError, match="a 0x4 image"):
        BottomUpAttentionImageProcessor().preprocess([np.zeros((4, 0, 3), np.uint8)])
    assert featurizer.featurize_image(folder / "grey.png").num_regions >= 4
    assert featurizer.featurize_image(folder / "alpha.png").num_regions >= 4
    arguments = ["features", "extract", "--images", str(folder), "--output-dir", str(tmp_path / "store"),
                 "--detector", str(converted["frcnn-vg"]), "--box-selection", "transformers-demo"]
    with pytest.raises(ValueError, match="broken.jpg"):
        main(arguments)
    assert main(arguments + ["--skip-corrupt"]) == 0
    store = load_feature_store(tmp_path / "store").with_format("numpy")
    assert sorted(store[:]["id"].tolist()) == ["alpha", "grey"]
    metadata = read_store_metadata(tmp_path / "store")
    assert metadata["num_skipped"] == 3 and metadata["featurizer"]["box_selection"] == "transformers-demo"


def test_png_to_lxmert_vqa_answer(converted, tmp_path):
    tokenizer = minilm_tokenizer()
    answers = {0: "yes", 1: "no", 2: "two"}
    torch.manual_seed(0)
    released = transformers.LxmertForQuestionAnswering(transformers.LxmertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_attention_heads=4, intermediate_size=37, l_layers=1, r_layers=1,
        x_layers=1, visual_feat_dim=128, num_qa_labels=3, id2label=answers))
    released.save_pretrained(tmp_path / "released")
    main(["convert", "--from", "lxmert-hf", str(tmp_path / "released"), "--output-dir", str(tmp_path / "lxmert")])
    converted_lxmert = LxmertForQuestionAnswering.from_pretrained(tmp_path / "lxmert").eval()
    featurizer = RegionFeaturizer.from_pretrained_models(detector=str(converted["frcnn-vg"]))
    processor = VisionLanguageProcessor.from_featurizer(tokenizer, featurizer, max_text_length=12)
    path = tmp_path / "scene.png"
    Image.fromarray(random_image(80, 120, seed=8)).save(path)
    vqa = pipeline("vlpretrain-vqa", model=converted_lxmert, processor=processor)
    result = vqa(str(path), question="how many things are there?", top_k=2)
    with torch.no_grad():
        logits = converted_lxmert(**processor(text=["how many things are there?"], images=[str(path)])).logits[0]
    best = int(logits.argmax())
    assert result[0] == {"answer": answers[best], "score": pytest.approx(float(logits[best].sigmoid()), abs=1e-6)}
    # The detector and its image settings travel with a saved processor.
    processor.save_pretrained(tmp_path / "processor")
    reloaded = VisionLanguageProcessor.from_pretrained(tmp_path / "processor")
    assert reloaded.region_featurizer.uses_bottom_up_detector
    np.testing.assert_array_equal(reloaded.region_featurizer.featurize_image(path).features, featurizer.featurize_image(path).features)
    assert reloaded.region_featurizer.bottom_up_image_processor.to_dict() == featurizer.bottom_up_image_processor.to_dict()
