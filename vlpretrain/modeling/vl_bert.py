"""VL-BERT (Su et al., ICLR 2020): one BERT stream over text tokens, region tokens and ``[END]``.

Faithful to jackroos/VL-BERT (``common/visual_linguistic_bert.py``, ``common/fast_rcnn.py``): every token's input is
LN(token + visual feature + segment + position); region tokens carry the ``[IMG]`` embedding, segment C and one
shared position id (the number of real text tokens); text tokens carry the whole-image box's representation as
their visual clue; the region representation is ReLU(Linear(Dropout([geometry sinusoid; appearance]))); the visual
LayerNorms start with gain 0. The joint sequence is laid out as [text (padded)] [box 0, regions (padded)] [END]
with explicit position ids, which equals the original's seamless concatenation (attention ignores order).

Package conventions: ignored labels are -100 (the original uses -1), ``matched_labels`` 1 = matched (as the
original), boxes are normalised (x1, y1, x2, y2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoBackbone, AutoConfig
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.utils import ModelOutput

from ..configuration.vl_bert import VlBertConfig
from ..utils.roi import roi_align
from .base import VLPreTrainedModel, check_answer_labels, check_image_text_inputs, check_match_labels
from .embeddings import join_streams, sinusoidal_box_embedding
from .heads import MaskedLanguageModelingHead, Pooler, PredictionHeadTransform
from .layers import TokenPacking, TransformerLayer, key_padding_mask, masked_mean
from .losses import IGNORE_INDEX, classification_loss, soft_cross_entropy_loss, soft_score_loss
from .outputs import (
    ImageTextRetrievalOutput,
    RegionScoringOutput,
    SingleStreamModelOutput,
    VisualQuestionAnsweringOutput,
)

TEXT_SEGMENT, REGION_SEGMENT = 0, 2


@dataclass
class VlBertForPreTrainingOutput(ModelOutput):
    """Losses and predictions of [`VlBertForPreTraining`].

    Each objective's loss is returned on its own (unweighted) and ``loss`` is their sum weighted by
    ``config.loss_weights``. With ``labels``, ``prediction_logits`` holds only the labelled positions
    (num_labelled, vocab) in row-major order; without, (batch, text_length, vocab). Likewise with
    ``region_class_targets``, ``region_class_logits`` holds only the regions the loss reads (masked, valid regions
    of image-text rows; (num_selected, classes) in row-major order); without, (batch, regions, classes).
    """

    loss: torch.Tensor | None = None
    mlm_loss: torch.Tensor | None = None
    text_mlm_loss: torch.Tensor | None = None
    region_class_loss: torch.Tensor | None = None
    matching_loss: torch.Tensor | None = None
    prediction_logits: torch.Tensor | None = None
    region_class_logits: torch.Tensor | None = None
    matching_logits: torch.Tensor | None = None
    pooled_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class VlBertForMultipleChoiceOutput(ModelOutput):
    """Scores of each answer choice (batch, num_choices) of [`VlBertForMultipleChoice`].

    ``loss`` = ``choice_loss`` (per-choice sigmoid BCE, with ``labels``) + ``config.vcr_object_loss_weight`` x
    ``object_loss`` (object classification of every valid region's final state, with ``region_object_labels``);
    ``object_logits`` (batch, num_choices, regions, ``config.vcr_num_object_labels``).
    """

    loss: torch.Tensor | None = None
    choice_loss: torch.Tensor | None = None
    object_loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    object_logits: torch.Tensor | None = None


class VlBertPreTrainedModel(VLPreTrainedModel):
    """Base class of the VL-BERT models: config class, weight prefix, and the original's special initialisations."""

    config: VlBertConfig
    config_class = VlBertConfig
    base_model_prefix = "vl_bert"
    _no_split_modules = ["TransformerLayer", "VlBertEmbeddings"]

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, VisualLayerNorm):
            init.constant_(module.weight, self.config.visual_scale_init)
        elif isinstance(module, ZeroInitEmbedding):
            init.zeros_(module.weight)

    def text_stream_prefix(self) -> dict[str, str]:
        prefix = "" if self.base_model is self else f"{self.base_model_prefix}."
        return {"embeddings": f"{prefix}embeddings.", "layers": f"{prefix}layers."}


class VisualLayerNorm(nn.LayerNorm):
    """LayerNorm of the visual feature embeddings, whose gain starts at ``config.visual_scale_init`` (0 originally)."""


class ZeroInitEmbedding(nn.Embedding):
    """An embedding table initialised to zero (``object_mask_visual_embedding``)."""


class VlBertEmbeddings(nn.Module):
    """The joint input sequence: text with visual clues, the region tokens and ``[END]`` (see the module docstring)."""

    def __init__(self, config: VlBertConfig):
        super().__init__()
        hidden = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, hidden, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, hidden)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, hidden)
        self.end_embedding = nn.Embedding(1, hidden)
        self.object_linguistic_embedding = nn.Embedding(1, hidden)
        self.object_mask_word_embedding = nn.Embedding(1, hidden)
        self.object_mask_visual_embedding = ZeroInitEmbedding(1, config.region_feature_size)
        self.aux_text_visual_embedding = nn.Embedding(1, hidden)
        self.region_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.region_projection = nn.Linear(config.geometry_size + config.region_feature_size, hidden)
        self.visual_ln_text = VisualLayerNorm(hidden, eps=config.layer_norm_eps)
        self.visual_ln_object = VisualLayerNorm(hidden, eps=config.layer_norm_eps)
        self.norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.config = config

    def region_representations(self, appearance: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """ReLU(Linear(Dropout([geometry sinusoid; appearance]))) per region (``obj_downsample``)."""
        config = self.config
        geometry = sinusoidal_box_embedding(boxes, config.geometry_size, config.geometry_wavelength, config.geometry_scale)
        joint = torch.cat([geometry.to(appearance.dtype), appearance], dim=-1)
        return torch.relu(self.region_projection(self.region_dropout(joint)))

    def forward(
        self,
        input_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        region_reps: torch.Tensor,
        region_mask: torch.Tensor,
        masked_input: torch.Tensor,
        text_only: torch.Tensor,
        token_region_ids: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the embedded joint sequence (B, T + R' + 1, H) and its 0/1 key mask.

        ``region_reps`` (B, R', H) include box 0 first when the config adds it; ``masked_input`` (B, R') marks
        masked RoIs; ``text_only`` (B,) rows drop the regions; ``token_region_ids`` (B, T) name, per text token,
        the region whose representation is its visual clue (-1: box 0, as for every token outside VCR).
        """
        words = self.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        batch, text_length = words.shape[:2]
        num_regions = region_reps.shape[1]
        text_count = attention_mask.sum(1)
        text_positions = (attention_mask.cumsum(1) - 1).clamp_min(0)
        text_types = torch.zeros_like(attention_mask) if token_type_ids is None else token_type_ids

        visual_objects = self.visual_ln_object(region_reps)
        clue = region_reps[:, :1].expand(batch, text_length, -1)
        if token_region_ids is not None:
            index = token_region_ids.clamp_min(0)[..., None].expand(-1, -1, region_reps.shape[-1])
            clue = torch.where(token_region_ids[..., None] >= 0, region_reps.gather(1, index), clue)
        clue = torch.where(text_only[:, None, None], self.aux_text_visual_embedding.weight.to(clue.dtype), clue)
        text = words + self.visual_ln_text(clue) + self.token_type_embeddings(text_types)
        text = text + self.position_embeddings(text_positions)

        object_words = torch.where(
            masked_input[..., None],
            self.object_mask_word_embedding.weight,
            self.object_linguistic_embedding.weight,
        )
        region_position = self.position_embeddings(text_count)[:, None]
        regions = object_words + visual_objects + self.token_type_embeddings.weight[REGION_SEGMENT] + region_position
        end = (
            self.end_embedding.weight
            + self.token_type_embeddings.weight[REGION_SEGMENT]
            + self.position_embeddings(text_count + 1)
        )[:, None]
        region_mask = region_mask.bool() & ~text_only[:, None]
        embeddings, mask = join_streams(
            (text, attention_mask),
            (regions.to(text.dtype), region_mask.expand(batch, num_regions)),
            (end.to(text.dtype), attention_mask.new_ones(batch, 1)),
        )
        return self.dropout(self.norm(embeddings)), mask


class VlBertRegionHead(nn.Module):
    """VL-BERT's region heads (``mvrc_head``, RefCOCO ``final_mlp``): dense -> GELU (no LayerNorm) -> Linear."""

    def __init__(self, hidden_size: int, output_size: int, activation: str = "gelu", dropout: float = 0.0):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.activation = ACT2FN[activation]
        self.dropout = nn.Dropout(dropout)
        self.decoder = nn.Linear(hidden_size, output_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.dropout(self.activation(self.dense(hidden_states))))


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


class VlBertObjectClassificationHead(nn.Module):
    """VCR's auxiliary object classifier (``cnn_loss_reg``): the masked-RoI head's transform (dense -> GELU, same
    parameter names as ``VlBertRegionHead``, so a pretraining checkpoint initialises it) -> Dropout -> Linear."""

    def __init__(self, hidden_size: int, num_labels: int, activation: str = "gelu", dropout: float = 0.0):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.activation = ACT2FN[activation]
        self.dropout = nn.Dropout(dropout)
        # not named "...classifier": peft matches ``modules_to_save`` by name suffix and would wrap it a second time
        # inside this head next to the choice ``classifier``, breaking adapter reloads
        self.object_scores = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.object_scores(self.dropout(self.activation(self.dense(hidden_states))))


class VlBertModel(VlBertPreTrainedModel):
    """The VL-BERT stream, with an optional end-to-end region backbone and an optional tanh [CLS] pooler."""

    hub_auto_class = "AutoModel"

    def __init__(self, config: VlBertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = VlBertEmbeddings(config)
        self.layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_hidden_layers))
        self.pooler = Pooler(config.hidden_size, config.hidden_size, "tanh") if add_pooling_layer else None
        self.backbone = None
        if config.backbone_config is not None:
            backbone_values = dict(config.backbone_config)
            self.backbone = AutoBackbone.from_config(AutoConfig.for_model(**backbone_values))
            channels = self.backbone.channels[config.backbone_feature_index]
            if channels != config.region_feature_size:
                raise ValueError(
                    f"region_feature_size ({config.region_feature_size}) must equal the backbone's channels "
                    f"({channels}) in the end-to-end setting"
                )
            self.freeze_backbone_parts()
        self.post_init()

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

    def train(self, mode: bool = True) -> VlBertModel:
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

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        region_features: torch.Tensor | None = None,
        region_boxes: torch.Tensor | None = None,
        region_attention_mask: torch.Tensor | None = None,
        masked_regions: torch.Tensor | None = None,
        text_only: torch.Tensor | None = None,
        token_region_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_sizes: torch.Tensor | None = None,
        kept_regions: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> SingleStreamModelOutput | tuple:
        """Encode captions/questions with their regions.

        Inputs follow the package's naming table: ``input_ids`` (B, T), ``attention_mask`` (B, T),
        ``token_type_ids`` (B, T; 0 = text A, 1 = text B), ``region_features`` (B, R, D), ``region_boxes`` (B, R, 4)
        normalised (x1, y1, x2, y2), ``region_attention_mask`` (B, R). Optional: ``masked_regions`` (B, R) masked
        RoIs, ``text_only`` (B,) rows of a text-only corpus, ``token_region_ids`` (B, T) the region each token names
        (-1 for none; VCR), ``pixel_values`` (B, 3, H, W) instead of ``region_features`` in the end-to-end setting,
        ``image_sizes`` (B, 2) each image's (height, width) in pixels (required by ``config.image_box_style``
        "pixels"), ``kept_regions`` (B, R) the regions of ``masked_regions`` that keep their input (the 10 % "keep"
        branch: targets only; without it, precomputed features count as masked only when zeroed, and in the
        end-to-end setting every region of ``masked_regions`` is masked). Invalid inputs raise ``ValueError``
        before any compute.
        """
        self.check_inputs(
            input_ids, attention_mask, token_type_ids, region_features, region_boxes, region_attention_mask,
            masked_regions, text_only, token_region_ids, pixel_values, inputs_embeds, image_sizes, kept_regions,
        )
        output = self.encode(
            input_ids, attention_mask, token_type_ids, region_features, region_boxes, region_attention_mask,
            masked_regions, text_only, token_region_ids, pixel_values, inputs_embeds, output_attentions,
            output_hidden_states, image_sizes=image_sizes, kept_regions=kept_regions,
        )
        return_dict = self.config.return_dict if return_dict is None else return_dict
        return output if return_dict else output.to_tuple()

    def check_inputs(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        region_features: torch.Tensor | None,
        region_boxes: torch.Tensor | None,
        region_attention_mask: torch.Tensor | None,
        masked_regions: torch.Tensor | None = None,
        text_only: torch.Tensor | None = None,
        token_region_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        image_sizes: torch.Tensor | None = None,
        kept_regions: torch.Tensor | None = None,
    ) -> None:
        """Validate every input (shared image-text checks plus VL-BERT's own) before any compute."""
        config = self.config
        if self.backbone is not None:
            if pixel_values is None or pixel_values.dim() != 4 or pixel_values.shape[1] != 3:
                shape = None if pixel_values is None else tuple(pixel_values.shape)
                raise ValueError(f"pixel_values: expected (batch, 3, height, width) in the end-to-end setting, got {shape}")
            if region_features is not None:
                raise ValueError("region_features: the end-to-end model computes them from pixel_values; pass only boxes")
            if region_boxes is not None and region_boxes.dim() == 3:
                shape = (*region_boxes.shape[:2], config.region_feature_size)
                region_features = region_boxes.new_ones(()).expand(shape)
        elif pixel_values is not None:
            raise ValueError("pixel_values: this model takes precomputed region_features (config.backbone_config is None)")
        check_image_text_inputs(
            config, input_ids, attention_mask, token_type_ids, region_features, region_boxes, region_attention_mask,
            inputs_embeds,
        )
        if self.backbone is not None and pixel_values.shape[0] != region_boxes.shape[0]:
            raise ValueError(f"pixel_values: expected batch {region_boxes.shape[0]}, got {pixel_values.shape[0]}")
        text_shape = tuple((input_ids if input_ids is not None else inputs_embeds).shape[:2])
        batch, regions = region_boxes.shape[:2]
        if masked_regions is not None and tuple(masked_regions.shape) != (batch, regions):
            raise ValueError(f"masked_regions: expected shape ({batch}, {regions}), got {tuple(masked_regions.shape)}")
        if text_only is not None and (tuple(text_only.shape) != (batch,) or text_only.is_floating_point()):
            raise ValueError(f"text_only: expected a boolean tensor of shape ({batch},), got {tuple(text_only.shape)} {text_only.dtype}")
        if kept_regions is not None and tuple(kept_regions.shape) != (batch, regions):
            raise ValueError(f"kept_regions: expected shape ({batch}, {regions}) like masked_regions, got {tuple(kept_regions.shape)}")
        pixel_box = config.add_image_box and config.image_box_style == "pixels"
        if (pixel_box or image_sizes is not None) and (image_sizes is None or tuple(image_sizes.shape) != (batch, 2)):
            raise ValueError(
                f"image_sizes: expected each image's (height, width) in pixels, shape ({batch}, 2) (config.image_box_style "
                f"'pixels' places the whole-image box as the original does), got {None if image_sizes is None else tuple(image_sizes.shape)}"
            )
        if text_shape[1] + 2 > config.max_position_embeddings:
            raise ValueError(
                f"input_ids: {text_shape[1]} tokens plus the region and [END] positions exceed "
                f"max_position_embeddings ({config.max_position_embeddings})"
            )
        if token_region_ids is not None and (tuple(token_region_ids.shape) != text_shape or token_region_ids.is_floating_point()):
            raise ValueError(f"token_region_ids: expected integer ids of shape {text_shape}, got {tuple(token_region_ids.shape)}")
        if torch.compiler.is_compiling():  # the value checks below read the tensors: eager calls only
            return
        flags = {}
        if image_sizes is not None:
            flags["image_sizes"] = (image_sizes < 2).any()
        if token_region_ids is not None:
            flags["token_region_ids"] = ((token_region_ids >= regions) | (token_region_ids < -1)).any()
        if token_type_ids is not None:
            flags["token_type_ids"] = ((token_type_ids < 0) | (token_type_ids > 1)).any()
        failed = dict(zip(flags, torch.stack(list(flags.values())).tolist())) if flags else {}
        if failed.get("token_region_ids"):
            raise ValueError(f"token_region_ids: expected region indices in [-1, {regions}), -1 for none")
        if failed.get("image_sizes"):
            raise ValueError("image_sizes: expected (height, width) of at least 2 pixels each")
        if failed.get("token_type_ids"):
            raise ValueError("token_type_ids: expected 0 (text A) or 1 (text B); segment 2 is reserved for regions")

    def region_appearance(
        self,
        region_features: torch.Tensor | None,
        region_boxes: torch.Tensor,
        valid: torch.Tensor,
        masked_input: torch.Tensor,
        pixel_values: torch.Tensor | None,
        image_sizes: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Appearance features and boxes of every region token, box 0 (the whole image) first when configured.

        Box 0 is (0, 0, 1, 1), or with ``config.image_box_style`` "pixels" the original's (0, 0, W - 1, H - 1) in
        pixels (jackroos/VL-BERT ``pretrain/data/datasets/conceptual_captions.py``, ``image_box``) normalised by
        the image size: (0, 0, 1 - 1 / W, 1 - 1 / H).
        """
        config = self.config
        batch = region_boxes.shape[0]
        whole = region_boxes.new_tensor([0.0, 0.0, 1.0, 1.0]).expand(batch, 1, 4)
        if config.image_box_style == "pixels":
            height, width = image_sizes.to(region_boxes.dtype).unbind(-1)
            corner = torch.stack([1 - 1 / width, 1 - 1 / height], dim=-1)
            whole = torch.cat([torch.zeros_like(corner), corner], dim=-1)[:, None]
        boxes = torch.cat([whole, region_boxes], dim=1) if config.add_image_box else region_boxes
        if self.backbone is not None:
            return self.pool_regions(pixel_values, boxes, masked_input), boxes
        features = torch.where(
            masked_input[..., None], self.embeddings.object_mask_visual_embedding.weight.to(region_features.dtype), region_features
        )
        if config.add_image_box:
            mean = masked_mean(features, valid & ~masked_input, keepdim=True)
            features = torch.cat([mean, features], dim=1)
        return features, boxes

    def pool_regions(self, pixel_values: torch.Tensor, boxes: torch.Tensor, masked_input: torch.Tensor) -> torch.Tensor:
        """End-to-end region features: zero the masked regions' pixels, run the backbone, RoIAlign and average."""
        config = self.config
        height, width = pixel_values.shape[-2:]
        scale = boxes.new_tensor([width, height, width, height])
        pixel_boxes = boxes.float() * scale
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

    def encode(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        region_features: torch.Tensor | None,
        region_boxes: torch.Tensor,
        region_attention_mask: torch.Tensor | None,
        masked_regions: torch.Tensor | None = None,
        text_only: torch.Tensor | None = None,
        token_region_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        output_positions: torch.Tensor | None = None,
        image_sizes: torch.Tensor | None = None,
        kept_regions: torch.Tensor | None = None,
    ) -> SingleStreamModelOutput:
        """The forward pass on inputs already checked by ``check_inputs`` (used by the task heads).

        Padded positions (padded text, padded regions, every region of a text-only row) are dropped from the
        position-wise work of every layer (``TokenPacking``); their output states are 0. ``output_positions``
        (B, T + R) bool over [text; given regions]: only these positions (and [CLS] when there is a pooler) are
        computed in the last layer, whose other output states are then 0; the pretraining heads need no more.
        """
        config = self.config
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        reference = input_ids if input_ids is not None else inputs_embeds[..., 0]
        batch, text_length = reference.shape[:2]
        device = region_boxes.device
        if attention_mask is None:
            attention_mask = torch.ones(batch, text_length, dtype=torch.long, device=device)
        num_regions = region_boxes.shape[1]
        valid = (
            torch.ones(batch, num_regions, dtype=torch.bool, device=device)
            if region_attention_mask is None
            else region_attention_mask.bool()
        )
        masked_input = torch.zeros_like(valid) if masked_regions is None else masked_regions.bool() & valid
        if kept_regions is not None:
            masked_input = masked_input & ~kept_regions.bool()
        elif self.backbone is None and masked_regions is not None:
            masked_input = masked_input & (region_features == 0).all(-1)
        text_only = torch.zeros(batch, dtype=torch.bool, device=device) if text_only is None else text_only.bool()
        appearance, boxes = self.region_appearance(
            region_features, region_boxes, valid, masked_input, pixel_values, image_sizes
        )
        region_reps = self.embeddings.region_representations(appearance, boxes)
        offset = 1 if config.add_image_box else 0
        if offset:
            valid = torch.cat([valid.new_ones(batch, 1), valid], dim=1)
            masked_input = torch.cat([masked_input.new_zeros(batch, 1), masked_input], dim=1)
            if token_region_ids is not None:
                token_region_ids = torch.where(token_region_ids >= 0, token_region_ids + 1, token_region_ids)
        hidden, mask = self.embeddings(
            input_ids, inputs_embeds, attention_mask.long(), token_type_ids, region_reps, valid, masked_input,
            text_only, token_region_ids,
        )
        attention = key_padding_mask(mask, hidden.dtype, config._attn_implementation, drop_if_unpadded=False)
        length = hidden.shape[1]
        kept = mask.bool().flatten()
        wanted = None
        compiling = torch.compiler.is_compiling()  # packing sizes depend on the mask: traced graphs run unpacked
        if output_positions is not None and not output_hidden_states and len(self.layers) and not compiling:
            corner = torch.zeros(batch, offset, dtype=torch.bool, device=device)
            end = torch.zeros(batch, 1, dtype=torch.bool, device=device)
            text_wanted, region_wanted = output_positions.bool().split([text_length, num_regions], dim=1)
            if self.pooler is not None:
                text_wanted = text_wanted.clone()
                text_wanted[:, 0] = True
            wanted = torch.cat([text_wanted, corner, region_wanted, end], dim=1).flatten() & kept
        counts = [batch * length] if compiling else torch.stack([kept.sum(), kept.sum() if wanted is None else wanted.sum()]).tolist()
        packing = None
        if counts[0] < batch * length:
            packing = TokenPacking(torch.nonzero_static(kept, size=counts[0]).squeeze(1), batch, length)
            hidden = packing.pack(hidden)
        wanted_positions = output_rows = None
        if wanted is not None:
            wanted_positions = torch.nonzero_static(wanted, size=counts[1]).squeeze(1)
            output_rows = wanted_positions if packing is None else (kept.cumsum(0) - 1).index_select(0, wanted_positions)

        def unpacked(states: torch.Tensor) -> torch.Tensor:
            if compiling:  # zeros at padded positions, as packing.pad gives
                return states.masked_fill(~mask.bool()[..., None], 0.0)
            return states if packing is None else packing.pad(states)

        all_states = (unpacked(hidden),) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            rows = output_rows if index == last else None
            hidden, weights = layer(hidden, attention, output_attentions, packing=packing, output_rows=rows)
            if output_hidden_states:
                all_states += (unpacked(hidden),)
            if output_attentions:
                all_attentions += (weights,)
        if wanted_positions is not None:
            hidden = hidden.new_zeros(batch * length, hidden.shape[-1]).index_copy(0, wanted_positions, hidden)
            hidden = hidden.view(batch, length, -1)
        else:
            hidden = all_states[-1] if output_hidden_states else unpacked(hidden)
        start = text_length + offset
        return SingleStreamModelOutput(
            last_hidden_state=hidden,
            text_last_hidden_state=hidden[:, :text_length],
            visual_last_hidden_state=hidden[:, start : start + num_regions],
            pooled_output=self.pooler(hidden) if self.pooler is not None else None,
            hidden_states=all_states,
            attentions=all_attentions,
        )


class VlBertForPreTraining(VlBertPreTrainedModel):
    """VL-BERT with its pretraining objectives.

    Objectives (each on when its ``config.loss_weights`` entry is > 0 and its labels are passed): MLM with visual
    clues (``labels`` on image-text rows), text-only MLM (``labels`` on rows flagged by ``text_only``), masked RoI
    classification with linguistic clues (``region_class_targets`` (B, R, C), the detector's class distribution,
    on ``masked_regions``; soft cross-entropy) and, off by default as in the released configs, the sentence-image
    relationship (``matched_labels``, 1 = matched, on the pooled [CLS]).
    """

    hub_auto_class = "AutoModelForPreTraining"
    _tied_weights_keys = {"mlm_head.decoder.weight": "vl_bert.embeddings.word_embeddings.weight"}

    def __init__(self, config: VlBertConfig):
        super().__init__(config)
        self.vl_bert = VlBertModel(config, add_pooling_layer=config.objective_enabled("matching"))
        hidden = config.hidden_size
        self.mlm_head = MaskedLanguageModelingHead(hidden, config.vocab_size, config.hidden_act, config.layer_norm_eps)
        self.region_class_head = (
            VlBertRegionHead(hidden, config.num_object_labels, config.hidden_act)
            if config.objective_enabled("region_class")
            else None
        )
        self.relationship_head = nn.Linear(hidden, 2) if config.objective_enabled("matching") else None
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.mlm_head.decoder

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.mlm_head.decoder = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        region_features: torch.Tensor | None = None,
        region_boxes: torch.Tensor | None = None,
        region_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        masked_regions: torch.Tensor | None = None,
        region_class_targets: torch.Tensor | None = None,
        matched_labels: torch.Tensor | None = None,
        text_only: torch.Tensor | None = None,
        token_region_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_sizes: torch.Tensor | None = None,
        kept_regions: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> VlBertForPreTrainingOutput | tuple:
        config = self.config
        return_dict = config.return_dict if return_dict is None else return_dict
        self.vl_bert.check_inputs(
            input_ids, attention_mask, token_type_ids, region_features, region_boxes, region_attention_mask,
            masked_regions, text_only, token_region_ids, pixel_values, inputs_embeds, image_sizes, kept_regions,
        )
        reference = input_ids if input_ids is not None else inputs_embeds[..., 0]
        batch, text_length = reference.shape[:2]
        regions = region_boxes.shape[1]
        if labels is not None and (tuple(labels.shape) != (batch, text_length) or labels.is_floating_point()):
            raise ValueError(f"labels: expected integer token ids of shape ({batch}, {text_length}), got {tuple(labels.shape)}")
        if matched_labels is not None and (tuple(matched_labels.shape) != (batch,) or matched_labels.is_floating_point()):
            raise ValueError(f"matched_labels: expected integer labels (1 matched, 0 not) of shape ({batch},)")
        if region_class_targets is not None:
            expected = (batch, regions, config.num_object_labels)
            if tuple(region_class_targets.shape) != expected or not region_class_targets.is_floating_point():
                raise ValueError(
                    f"region_class_targets: expected detector class distributions of shape {expected} (float), "
                    f"got {tuple(region_class_targets.shape)}"
                )
            if masked_regions is None:
                raise ValueError("masked_regions: required with region_class_targets (which regions were masked)")
        text_rows = torch.zeros(batch, dtype=torch.bool, device=reference.device) if text_only is None else text_only.bool()
        predicted_tokens = predicted_regions = None
        if labels is not None and (config.objective_enabled("mlm") or config.objective_enabled("text_mlm")):
            predicted_tokens = labels != IGNORE_INDEX
        if self.region_class_head is not None and region_class_targets is not None:
            predicted_regions = masked_regions.bool() & ~text_rows[:, None]
            if region_attention_mask is not None:
                predicted_regions = predicted_regions & region_attention_mask.bool()
        output_positions = None
        if predicted_tokens is not None and (predicted_regions is not None or self.region_class_head is None):
            # Every head has targets: the last layer computes only the positions they read.
            regions_read = predicted_regions
            if regions_read is None:
                regions_read = torch.zeros(batch, regions, dtype=torch.bool, device=predicted_tokens.device)
            output_positions = torch.cat([predicted_tokens, regions_read], dim=1)
        encoded = self.vl_bert.encode(
            input_ids, attention_mask, token_type_ids, region_features, region_boxes, region_attention_mask,
            masked_regions, text_only, token_region_ids, pixel_values, inputs_embeds, output_attentions,
            output_hidden_states, output_positions, image_sizes=image_sizes, kept_regions=kept_regions,
        )
        losses: dict[str, torch.Tensor] = {}
        if predicted_tokens is not None:
            rows = predicted_tokens.flatten().nonzero().squeeze(1)  # one wait for the device, not one per boolean index
            prediction_logits = self.mlm_head(encoded.text_last_hidden_state.flatten(0, 1).index_select(0, rows))
            selected = labels.flatten().index_select(0, rows)
            from_text_only = text_rows[:, None].expand_as(labels).flatten().index_select(0, rows)
            if config.objective_enabled("mlm"):
                losses["mlm"] = classification_loss(
                    prediction_logits, selected.masked_fill(from_text_only, IGNORE_INDEX)
                )
            if config.objective_enabled("text_mlm") and text_only is not None:
                losses["text_mlm"] = classification_loss(
                    prediction_logits, selected.masked_fill(~from_text_only, IGNORE_INDEX)
                )
        else:
            prediction_logits = self.mlm_head(encoded.text_last_hidden_state)

        region_class_logits = None
        if predicted_regions is not None:
            rows = predicted_regions.flatten().nonzero().squeeze(1)
            region_states = encoded.visual_last_hidden_state.flatten(0, 1).index_select(0, rows)
            region_class_logits = self.region_class_head(region_states)
            targets = region_class_targets.flatten(0, 1).index_select(0, rows)
            losses["region_class"] = soft_cross_entropy_loss(region_class_logits, targets, targets.new_ones(rows.shape[0]))
        elif self.region_class_head is not None:
            region_class_logits = self.region_class_head(encoded.visual_last_hidden_state)
        matching_logits = None
        if self.relationship_head is not None:
            matching_logits = self.relationship_head(encoded.pooled_output)
            if matched_labels is not None:
                losses["matching"] = classification_loss(
                    matching_logits, matched_labels.masked_fill(text_rows, IGNORE_INDEX)
                )
        loss = sum(config.loss_weights[name] * value for name, value in losses.items()) if losses else None
        output = VlBertForPreTrainingOutput(
            loss=loss,
            mlm_loss=losses.get("mlm"),
            text_mlm_loss=losses.get("text_mlm"),
            region_class_loss=losses.get("region_class"),
            matching_loss=losses.get("matching"),
            prediction_logits=prediction_logits,
            region_class_logits=region_class_logits,
            matching_logits=matching_logits,
            pooled_output=encoded.pooled_output,
            hidden_states=encoded.hidden_states,
            attentions=encoded.attentions,
        )
        return output if return_dict else output.to_tuple()


class VlBertForQuestionAnswering(VlBertPreTrainedModel):
    """VL-BERT for VQA: the answer is read at a ``[MASK]`` answer slot, as in ``vqa/modules/resnet_vlbert_for_vqa.py``.

    The model appends ``[MASK] [SEP]`` (segment B) to each question itself, so the package's question-only inputs
    work unchanged: ``[CLS] question [SEP] [MASK] [SEP] [IMG]... [END]``. The slot's final state goes through
    ``final_mlp`` (BERT transform, dropout, Linear to ``config.num_labels``). ``labels``: soft scores (B, A), BCE
    times the number of answers, or answer ids (B,), cross-entropy.
    """

    hub_auto_class = "AutoModelForVisualQuestionAnswering"

    def __init__(self, config: VlBertConfig):
        super().__init__(config)
        self.vl_bert = VlBertModel(config, add_pooling_layer=False)
        self.answer_transform = PredictionHeadTransform(config.hidden_size, config.hidden_act, config.layer_norm_eps)
        self.answer_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.answer_classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        region_features: torch.Tensor | None = None,
        region_boxes: torch.Tensor | None = None,
        region_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_sizes: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> VisualQuestionAnsweringOutput | tuple:
        config = self.config
        return_dict = config.return_dict if return_dict is None else return_dict
        self.vl_bert.check_inputs(
            input_ids, attention_mask, token_type_ids, region_features, region_boxes, region_attention_mask,
            pixel_values=pixel_values, image_sizes=image_sizes,
        )
        batch = input_ids.shape[0]
        check_answer_labels(labels, batch, config.num_labels)
        slot = input_ids.new_tensor([config.mask_token_id, config.sep_token_id]).expand(batch, 2)
        attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        token_type_ids = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        encoded = self.vl_bert.encode(
            torch.cat([input_ids, slot], 1),
            torch.cat([attention_mask, torch.ones_like(slot)], 1),
            torch.cat([token_type_ids, torch.ones_like(slot)], 1),
            region_features, region_boxes, region_attention_mask, pixel_values=pixel_values, image_sizes=image_sizes,
        )
        answer_state = encoded.text_last_hidden_state[:, input_ids.shape[1]]
        logits = self.answer_classifier(self.answer_dropout(self.answer_transform(answer_state)))
        loss = None
        if labels is not None:
            loss = soft_score_loss(logits, labels) if labels.is_floating_point() else classification_loss(logits, labels)
        output = VisualQuestionAnsweringOutput(loss=loss, logits=logits, pooled_output=answer_state)
        return output if return_dict else output.to_tuple()


class VlBertForImageTextRetrieval(VlBertPreTrainedModel):
    """VL-BERT scoring (image, caption) pairs with the sentence-image relationship head on the pooled [CLS].

    ``scores`` = matched minus mismatched logit; ``labels`` (1 matched, 0 not) train it with cross-entropy. The
    head has the pretraining name (``relationship_head``), so a pretraining checkpoint with it loads whole.
    """

    hub_auto_class = "AutoModelForSequenceClassification"

    def __init__(self, config: VlBertConfig):
        super().__init__(config)
        self.vl_bert = VlBertModel(config)
        self.relationship_head = nn.Linear(config.hidden_size, 2)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        region_features: torch.Tensor | None = None,
        region_boxes: torch.Tensor | None = None,
        region_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_sizes: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> ImageTextRetrievalOutput | tuple:
        return_dict = self.config.return_dict if return_dict is None else return_dict
        self.vl_bert.check_inputs(
            input_ids, attention_mask, token_type_ids, region_features, region_boxes, region_attention_mask,
            pixel_values=pixel_values, image_sizes=image_sizes,
        )
        batch = input_ids.shape[0]
        check_match_labels(labels, batch)
        encoded = self.vl_bert.encode(
            input_ids, attention_mask, token_type_ids, region_features, region_boxes, region_attention_mask,
            pixel_values=pixel_values, image_sizes=image_sizes,
        )
        logits = self.relationship_head(encoded.pooled_output)
        loss = classification_loss(logits, labels) if labels is not None else None
        output = ImageTextRetrievalOutput(
            loss=loss, logits=logits, scores=logits[:, 1] - logits[:, 0], pooled_output=encoded.pooled_output
        )
        return output if return_dict else output.to_tuple()


class VlBertForReferringExpressions(VlBertPreTrainedModel):
    """VL-BERT for RefCOCO+: every region's final state -> ``final_mlp`` (dense, GELU, dropout, Linear to 1).

    ``logits`` (B, R), one per given region; ``labels`` (B, R) are 0/1 (IoU > 0.5 with the referred box), trained
    with binary cross-entropy over the valid regions, as ``refcoco/modules/resnet_vlbert_for_refcoco.py``.
    """

    def __init__(self, config: VlBertConfig):
        super().__init__(config)
        self.vl_bert = VlBertModel(config, add_pooling_layer=False)
        self.region_head = VlBertRegionHead(config.hidden_size, 1, config.hidden_act, config.hidden_dropout_prob)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        region_features: torch.Tensor | None = None,
        region_boxes: torch.Tensor | None = None,
        region_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_sizes: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> RegionScoringOutput | tuple:
        return_dict = self.config.return_dict if return_dict is None else return_dict
        self.vl_bert.check_inputs(
            input_ids, attention_mask, token_type_ids, region_features, region_boxes, region_attention_mask,
            pixel_values=pixel_values, image_sizes=image_sizes,
        )
        shape = tuple(region_boxes.shape[:2])
        if labels is not None and tuple(labels.shape) != shape:
            raise ValueError(f"labels: expected 0/1 region labels of shape {shape}, got {tuple(labels.shape)}")
        encoded = self.vl_bert.encode(
            input_ids, attention_mask, token_type_ids, region_features, region_boxes, region_attention_mask,
            pixel_values=pixel_values, image_sizes=image_sizes,
        )
        logits = self.region_head(encoded.visual_last_hidden_state).squeeze(-1)
        valid = torch.ones_like(logits) if region_attention_mask is None else region_attention_mask.to(logits.dtype)
        logits = logits.masked_fill(valid == 0, torch.finfo(logits.dtype).min)
        loss = None
        if labels is not None:
            per_region = nn.functional.binary_cross_entropy_with_logits(
                logits.float().clamp_min(-1e4), labels.float(), reduction="none"
            )
            loss = (per_region * valid).sum() / valid.sum().clamp_min(1.0)
        output = RegionScoringOutput(loss=loss, logits=logits)
        return output if return_dict else output.to_tuple()


class VlBertForMultipleChoice(VlBertPreTrainedModel):
    """VL-BERT for VCR (Q->A, QA->R): each choice is encoded with the image; tanh pooler -> dropout -> Linear(1).

    Text inputs are (B, C, T): ``[CLS] question [SEP] answer [SEP]`` per choice with segment ids 0/1; regions are
    (B, R, ...) and shared by the choices; ``token_region_ids`` (B, C, T) give the region named by each token (-1:
    none). ``labels`` (B,) index the right choice; the loss is per-choice sigmoid BCE, as the original
    (``CLASSIFIER_SIGMOID``). ``region_object_labels`` (B, R) (the detected objects' classes, -100 ignored) add the
    original's CNN regularisation loss (``cnn_loss_reg`` on top): every valid region's final state in every
    choice -> ``region_class_head`` -> cross-entropy averaged over those (choice, region) pairs, times
    ``config.vcr_object_loss_weight``. Its transform has the pretraining MVRC head's names
    (``region_class_head.dense``), so loading a pretraining checkpoint initialises it from that head, as the
    original does; its classifier is new.
    """

    hub_auto_class = "AutoModelForMultipleChoice"

    def input_bounds(self) -> dict[str, str | int]:
        """The object labels here are VCR's classes (``config.vcr_num_object_labels``)."""
        return {**super().input_bounds(), "region_object_labels": "vcr_num_object_labels"}

    def __init__(self, config: VlBertConfig):
        super().__init__(config)
        self.vl_bert = VlBertModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.region_class_head = (
            VlBertObjectClassificationHead(
                config.hidden_size, config.vcr_num_object_labels, config.hidden_act, config.hidden_dropout_prob
            )
            if config.vcr_object_loss_weight > 0
            else None
        )
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        region_features: torch.Tensor | None = None,
        region_boxes: torch.Tensor | None = None,
        region_attention_mask: torch.Tensor | None = None,
        token_region_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        region_object_labels: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_sizes: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> VlBertForMultipleChoiceOutput | tuple:
        config = self.config
        return_dict = config.return_dict if return_dict is None else return_dict
        if input_ids is None or input_ids.dim() != 3:
            raise ValueError(f"input_ids: expected (batch, choices, text_length), got {None if input_ids is None else tuple(input_ids.shape)}")
        batch, choices, length = input_ids.shape
        for name, tensor in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids), ("token_region_ids", token_region_ids)):
            if tensor is not None and tuple(tensor.shape) != (batch, choices, length):
                raise ValueError(f"{name}: expected shape {(batch, choices, length)} like input_ids, got {tuple(tensor.shape)}")
        if labels is not None and (tuple(labels.shape) != (batch,) or labels.is_floating_point()):
            raise ValueError(f"labels: expected the right choice's index, shape ({batch},) integer")
        if labels is not None and bool(((labels < 0) | (labels >= choices)).any()):
            raise ValueError(f"labels: expected choice indices in [0, {choices})")

        def per_choice(tensor: torch.Tensor | None) -> torch.Tensor | None:
            if tensor is None:
                return None
            return tensor[:, None].expand(batch, choices, *tensor.shape[1:]).reshape(batch * choices, *tensor.shape[1:])

        def flat(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor.reshape(batch * choices, length)

        inputs = (
            flat(input_ids), flat(attention_mask), flat(token_type_ids), per_choice(region_features),
            per_choice(region_boxes), per_choice(region_attention_mask),
        )
        extra = dict(pixel_values=per_choice(pixel_values), image_sizes=per_choice(image_sizes))
        self.vl_bert.check_inputs(*inputs, token_region_ids=flat(token_region_ids), **extra)
        if region_object_labels is not None:
            if self.region_class_head is None:
                raise ValueError("region_object_labels: config.vcr_object_loss_weight is 0, so there is no object head")
            regions = region_boxes.shape[1]
            if region_object_labels.is_floating_point() or tuple(region_object_labels.shape) != (batch, regions):
                raise ValueError(
                    f"region_object_labels: expected integer object classes of shape ({batch}, {regions}), got "
                    f"{tuple(region_object_labels.shape)} {region_object_labels.dtype}"
                )
            outside = (region_object_labels != IGNORE_INDEX) & (
                (region_object_labels < 0) | (region_object_labels >= config.vcr_num_object_labels)
            )
            if bool(outside.any()):
                raise ValueError(
                    f"region_object_labels: expected classes in [0, {config.vcr_num_object_labels}) or -100 (ignored)"
                )
        encoded = self.vl_bert.encode(*inputs, token_region_ids=flat(token_region_ids), **extra)
        logits = self.classifier(self.dropout(encoded.pooled_output)).view(batch, choices)
        choice_loss = object_loss = object_logits = None
        if labels is not None:
            targets = nn.functional.one_hot(labels, choices).float()
            choice_loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), targets)
        if self.region_class_head is not None:
            object_logits = self.region_class_head(encoded.visual_last_hidden_state)
            object_logits = object_logits.view(batch, choices, *object_logits.shape[1:])
            if region_object_labels is not None:
                targets = region_object_labels
                if region_attention_mask is not None:
                    targets = targets.masked_fill(region_attention_mask == 0, IGNORE_INDEX)
                object_loss = classification_loss(object_logits, targets[:, None].expand(batch, choices, -1))
        loss = choice_loss
        if object_loss is not None:
            weighted = config.vcr_object_loss_weight * object_loss
            loss = weighted if loss is None else loss + weighted
        output = VlBertForMultipleChoiceOutput(
            loss=loss, choice_loss=choice_loss, object_loss=object_loss, logits=logits, object_logits=object_logits
        )
        return output if return_dict else output.to_tuple()
