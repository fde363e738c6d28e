"""Configuration of ERNIE-ViL (Yu et al. 2021): ViLBERT's two-stream topology with scene-graph prediction."""

from __future__ import annotations

from .base import VLPretrainConfig
from .vilbert import _check_two_stream_sizes

ERNIE_VIL_OBJECTIVES = ("mlm", "region_class", "matching", "scene_object", "scene_attribute", "scene_relation")


class ErnieVilConfig(VLPretrainConfig):
    r"""Configuration of [`ErnieVilModel`] and its heads.

    The defaults are ERNIE-ViL base. The model's ``ernie_vil_config.base.json`` is not in the released code,
    so the following are decisions, not verified facts (read against PaddlePaddle/ERNIE, branch ``repro``,
    ``ernie-vil/model/ernie_vil.py`` and ``conf/``):

    - visual stream 1024 wide, 8 heads, FFN 1024; co-attention 1024 wide with 8 heads (as ViLBERT);
    - ``type_vocab_size`` 4 (ERNIE 2.0-en's ``sent_type_vocab_size``), vocabulary 30522, 512 positions;
    - ``num_object_labels`` 1601 (``class_size``);
    - GELU is the exact (erf) form;
    - the pretraining heads (not released) are ViLBERT's: the masked-LM head predicts masked caption tokens
      for MLM *and* for the three scene-graph objectives, a region head predicts the detector distribution,
      and a 2-way head on the fused pooled vector predicts image-text matching (1 = matched).

    Verified from the code: 12 text / 6 visual layers, co-layers after text layers 6..11 and before visual
    layers 0..5, text FFN 4 x ``hidden_size``, LayerNorm epsilon 1e-5 (Paddle's default), ReLU poolers to
    the co-attention width and product fusion. The original masks padded query rows too (outer-product
    masks); the outputs at valid positions equal key-only masking, which is what this implementation uses.

    Args:
        vocab_size / hidden_size / num_hidden_layers / num_attention_heads / hidden_act: the text stream;
            its FFN width is always 4 x ``hidden_size`` (``intermediate_size`` is derived, as in the code).
        v_hidden_size / v_num_hidden_layers / v_num_attention_heads / v_intermediate_size: the visual stream.
        co_hidden_size / co_num_attention_heads: co-attention width and heads; also the poolers' width.
        t_biattention_id / v_biattention_id: co-layer placement. ERNIE-ViL's encoder runs exactly one layer of
            each stream after the last co-layer, so ``t_biattention_id[-1] + 1 == num_hidden_layers`` and
            ``v_biattention_id[-1] + 1 == v_num_hidden_layers`` are required.
        region_feature_size / num_object_labels / add_global_image_token: as in ViLBERT.
        vqa_hidden_size / vqa_dropout: the VQA head (``vqa_fc_w_0``: 2048 with ReLU, dropout 0.5).
        loss_weights: ``mlm``, ``region_class``, ``matching``, ``scene_object``, ``scene_attribute``,
            ``scene_relation``; all 1 by default (the paper gives no weights); 0 switches one off.
    """

    model_type = "vlpretrain-ernie-vil"
    objectives = ERNIE_VIL_OBJECTIVES
    # The shared ViLBERT-family modules read the co-attention sizes under ViLBERT's names.
    attribute_map = {"bi_hidden_size": "co_hidden_size", "bi_num_attention_heads": "co_num_attention_heads"}

    num_hidden_layers: int = 12
    intermediate_size: int | None = None
    type_vocab_size: int = 4
    layer_norm_eps: float = 1e-5
    region_feature_size: int = 2048
    v_hidden_size: int = 1024
    v_num_hidden_layers: int = 6
    v_num_attention_heads: int = 8
    v_intermediate_size: int = 1024
    co_hidden_size: int = 1024
    co_num_attention_heads: int = 8
    t_biattention_id: list[int] | None = None
    v_biattention_id: list[int] | None = None
    num_object_labels: int = 1601
    add_global_image_token: bool = True
    vqa_hidden_size: int = 2048
    vqa_dropout: float = 0.5

    def __post_init__(self, **kwargs):
        expected_intermediate = 4 * self.hidden_size
        if self.intermediate_size not in (None, expected_intermediate):
            raise ValueError(
                f"intermediate_size: ERNIE-ViL's text FFN is 4 x hidden_size = {expected_intermediate}, got "
                f"{self.intermediate_size}"
            )
        self.intermediate_size = expected_intermediate
        co_layers = min(6, self.num_hidden_layers, self.v_num_hidden_layers)
        if self.t_biattention_id is None:
            self.t_biattention_id = list(range(self.num_hidden_layers - co_layers, self.num_hidden_layers))
        if self.v_biattention_id is None:
            self.v_biattention_id = list(range(self.v_num_hidden_layers - co_layers, self.v_num_hidden_layers))
        self.t_biattention_id = [int(index) for index in self.t_biattention_id]
        self.v_biattention_id = [int(index) for index in self.v_biattention_id]
        _check_two_stream_sizes(self, self.co_hidden_size, self.co_num_attention_heads)
        for name, ids, count in (
            ("t_biattention_id", self.t_biattention_id, self.num_hidden_layers),
            ("v_biattention_id", self.v_biattention_id, self.v_num_hidden_layers),
        ):
            if not ids or ids[-1] + 1 != count:
                raise ValueError(
                    f"{name}: ERNIE-ViL runs exactly one layer after the last co-layer, so its last entry must be "
                    f"{count - 1} (the stream has {count} layers), got {ids}"
                )
        super().__post_init__(**kwargs)
