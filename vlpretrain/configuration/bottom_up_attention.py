"""Configuration of the bottom-up-attention Faster R-CNN (Anderson et al. 2018): ResNet-101 C4 trained on Visual Genome."""

from __future__ import annotations

import math

from transformers import PreTrainedConfig

BOX_SELECTIONS = ("bottom-up", "transformers-demo")


class BottomUpAttentionConfig(PreTrainedConfig):
    r"""Configuration of [`BottomUpAttentionDetector`].

    Defaults are the caffe release (peteanderson80/bottom-up-attention ``models/vg/ResNet-101/
    faster_rcnn_end2end_final/test.prototxt`` and ``lib/fast_rcnn/config.py`` ``TEST.*``): 1600 object classes and
    400 attributes of Visual Genome, RPN top 6000 / NMS 0.7 / top 300, per-class NMS 0.3, confidence 0.2, 10-100
    boxes.

    Args:
        stem_out_channels / res2_out_channels / res2_bottleneck_channels: widths of the stem and of res2 (each
            later stage doubles them).
        stage_blocks: bottleneck blocks of res2, res3 and res4 (3, 4, 23 for ResNet-101; smaller for tests).
        res5_blocks: blocks of the res5 RoI head (stride 1, dilation ``res5_dilation`` in its 3x3 convs).
        batch_norm_eps: epsilon of the frozen BatchNorms (caffe's default 1e-5).
        rpn_hidden_channels: width of the RPN's 3x3 conv.
        rpn_two_class_scores: the RPN predicts two softmax scores per anchor (caffe, bottom-up-attention.pytorch)
            instead of one logit (the transformers port).
        anchor_ratios / anchor_sizes: the cell anchors (h / w ratios, sides in pixels); the converted model stores
            the release's own anchors, these only describe how the default ones were generated.
        anchor_offset: grid offset of the anchors in units of ``feature_stride`` (0 for caffe's anchors, which
            are centred at (7.5, 7.5); the port's ``anchor_generator.offset``).
        feature_stride: stride of res4 (16).
        rpn_pre_nms_top_n / rpn_post_nms_top_n / rpn_nms_threshold / rpn_min_size: test-time proposal selection.
            ``rpn_min_size`` is in original-image pixels for "bottom-up" (multiplied by the resize scale, as caffe's
            ``RPN_MIN_SIZE``) and in network-input pixels for "transformers-demo" (detectron2's ``min_size``).
        pooler_resolution: RoI pooling output (14 x 14, caffe ``roi_pool5``), spatial scale 1 / ``feature_stride``.
        num_labels / id2label: foreground object classes; background is class 0 of the 1 + ``num_labels``
            logits (caffe order; the transformers port's last-row background is moved there on conversion).
        num_attributes / attribute_id2label: attributes; index 0 of the 1 + ``num_attributes`` logits is
            "no attribute".
        attribute_embedding_size / attribute_hidden_size: the attribute head's class embedding and hidden layer.
        bbox_reg_weights: divisors of the (dx, dy, dw, dh) box deltas of the class-specific box regression.
        rpn_bbox_reg_weights: the same for the RPN.
        box_delta_clamp: upper bound of dw, dh before ``exp`` (log(1000 / 16), as detectron2 and
            bottom-up-attention.pytorch).
        box_selection: the test-time rules, "bottom-up" (caffe ``tools/generate_tsv.py``: caffe box arithmetic
            with +1 widths, RPN proposals as boxes, per-class NMS, ``max_conf >= confidence_threshold``,
            ``min_boxes``..``max_boxes``, attribute confidences from the full softmax) or "transformers-demo"
            (the LXMERT research-project port: detectron2 box arithmetic, regressed box of the best class,
            class-agnostic NMS tried at each of ``nms_threshold``, first ``max_boxes`` accepted when at least
            ``min_boxes`` remain, attribute softmax without "no attribute").
        nms_threshold: per-class NMS IoU ("bottom-up") or the class-agnostic thresholds tried in order
            ("transformers-demo"; a float or a list).
        confidence_threshold / min_boxes / max_boxes: region count rules (36 / 36 for LXMERT's ``obj36`` files).
    """

    model_type = "bottom_up_attention"

    stem_out_channels: int = 64
    res2_out_channels: int = 256
    res2_bottleneck_channels: int = 64
    stage_blocks: list[int] | tuple[int, ...] = (3, 4, 23)
    res5_blocks: int = 3
    res5_dilation: int = 2
    batch_norm_eps: float = 1e-5
    rpn_hidden_channels: int = 512
    rpn_two_class_scores: bool = True
    anchor_ratios: list[float] | tuple[float, ...] = (0.5, 1.0, 2.0)
    anchor_sizes: list[float] | tuple[float, ...] = (64.0, 128.0, 256.0, 512.0)
    anchor_offset: float = 0.0
    feature_stride: int = 16
    rpn_pre_nms_top_n: int = 6000
    rpn_post_nms_top_n: int = 300
    rpn_nms_threshold: float = 0.7
    rpn_min_size: float = 16.0
    pooler_resolution: int = 14
    num_attributes: int = 400
    attribute_id2label: dict | None = None
    attribute_embedding_size: int = 256
    attribute_hidden_size: int = 512
    bbox_reg_weights: list[float] | tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    rpn_bbox_reg_weights: list[float] | tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    box_delta_clamp: float = math.log(1000.0 / 16)
    box_selection: str = "bottom-up"
    nms_threshold: float | list[float] = 0.3
    confidence_threshold: float = 0.2
    min_boxes: int = 10
    max_boxes: int = 100
    initializer_range: float = 0.01

    def __post_init__(self, **kwargs):
        if "num_labels" not in kwargs and self.id2label is None:
            kwargs["num_labels"] = 1600
        super().__post_init__(**kwargs)
        self.stage_blocks = [int(count) for count in self.stage_blocks]
        self.anchor_ratios = [float(value) for value in self.anchor_ratios]
        self.anchor_sizes = [float(value) for value in self.anchor_sizes]
        self.bbox_reg_weights = [float(value) for value in self.bbox_reg_weights]
        self.rpn_bbox_reg_weights = [float(value) for value in self.rpn_bbox_reg_weights]
        if self.attribute_id2label is None:
            self.attribute_id2label = {index: f"ATTRIBUTE_{index}" for index in range(self.num_attributes)}
        self.attribute_id2label = {int(key): value for key, value in self.attribute_id2label.items()}
        self.validate_settings()

    def validate_settings(self) -> None:
        """Raise ``ValueError`` naming the setting when a test-time value is out of range."""
        if self.box_selection not in BOX_SELECTIONS:
            raise ValueError(f"box_selection must be one of {BOX_SELECTIONS}, got {self.box_selection!r}")
        if len(self.stage_blocks) != 3 or min(self.stage_blocks) < 1 or self.res5_blocks < 1:
            raise ValueError(f"stage_blocks must give 3 positive counts (res2-res4), got {self.stage_blocks}")
        if len(self.attribute_id2label) != self.num_attributes:
            raise ValueError(f"attribute_id2label has {len(self.attribute_id2label)} names for {self.num_attributes} attributes")
        thresholds = self.nms_thresholds
        if not thresholds or not all(0.0 <= value <= 1.0 for value in thresholds):
            raise ValueError(f"nms_threshold must be in [0, 1] (or a list of such), got {self.nms_threshold!r}")
        if not 0 < self.min_boxes <= self.max_boxes:
            raise ValueError(f"need 0 < min_boxes <= max_boxes, got {self.min_boxes}, {self.max_boxes}")
        if self.rpn_pre_nms_top_n < 1 or self.rpn_post_nms_top_n < 1:
            raise ValueError("rpn_pre_nms_top_n and rpn_post_nms_top_n must be positive")
        for name in ("bbox_reg_weights", "rpn_bbox_reg_weights"):
            if len(getattr(self, name)) != 4:
                raise ValueError(f"{name} must have 4 values (dx, dy, dw, dh), got {getattr(self, name)}")

    @property
    def nms_thresholds(self) -> list[float]:
        """``nms_threshold`` as a list (the "transformers-demo" rule tries them in order)."""
        value = self.nms_threshold
        return [float(item) for item in value] if isinstance(value, (list, tuple)) else [float(value)]

    @property
    def num_anchors(self) -> int:
        return len(self.anchor_ratios) * len(self.anchor_sizes)

    @property
    def res4_out_channels(self) -> int:
        return self.res2_out_channels * 4

    @property
    def res5_out_channels(self) -> int:
        return self.res2_out_channels * 8
