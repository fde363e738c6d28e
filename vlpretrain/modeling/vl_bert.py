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

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from ..configuration.vl_bert import VlBertConfig
from .base import (
    VLPreTrainedModel,
    check_answer_labels,
    check_image_text_inputs,
    check_match_labels,
    check_target_shapes,
)
from .embeddings import join_streams, sinusoidal_box_embedding
from .heads import MaskedLanguageModelingHead, Pooler, PredictionHeadTransform
from .layers import TokenPacking, TransformerLayer, key_padding_mask, masked_mean, run_layers
from .losses import IGNORE_INDEX, classification_loss, select_rows, soft_cross_entropy_loss, soft_score_loss
from .outputs import (
    SingleStreamModelOutput,
    SingleStreamQuestionAnsweringOutput,
    SingleStreamRegionScoringOutput,
    SingleStreamRetrievalOutput,
    StreamOutput,
)
from .vl_bert_backbone import RegionBackboneMixin, build_region_backbone

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
    ``object_logits`` (batch, num_choices, regions, ``config.vcr_num_object_labels``); ``hidden_states`` /
    ``attentions`` over the (batch x num_choices) encoded sequences when asked for.
    """

    loss: torch.Tensor | None = None
    choice_loss: torch.Tensor | None = None
    object_loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    object_logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class VlBertPreTrainedModel(VLPreTrainedModel):
    """Base class of the VL-BERT models: config class, weight prefix, and the original's special initialisations."""

    config: VlBertConfig
    config_class = VlBertConfig
    base_model_prefix = "vl_bert"
    _input_embed_layer = "word_embeddings"  # transformers' get/set_input_embeddings read embeddings.word_embeddings
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
        *,
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

        ``region_reps`` (B, R', H) include box 0 first when the config adds it; ``region_mask`` / ``masked_input``
        (B, R') mark the valid / masked RoIs; ``text_only`` (B,) rows drop the regions; ``token_region_ids`` (B, T)
        name, per text token, the region whose representation is its visual clue (-1: box 0, as for every token
        outside VCR).
        """
        words = self.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, H)
        batch, text_length = words.shape[:2]
        num_regions = region_reps.shape[1]
        text_count = attention_mask.sum(1)  # (B,) real text tokens: the position id every region token shares
        text_positions = (attention_mask.cumsum(1) - 1).clamp_min(0)  # (B, T) 0, 1, ... over the real tokens
        text_types = torch.zeros_like(attention_mask) if token_type_ids is None else token_type_ids  # (B, T)

        visual_objects = self.visual_ln_object(region_reps)
        clue = region_reps[:, :1].expand(batch, text_length, -1)  # (B, T, H) box 0 for every token
        if token_region_ids is not None:
            index = token_region_ids.clamp_min(0)[..., None].expand(-1, -1, region_reps.shape[-1])  # (B, T, H)
            clue = torch.where(token_region_ids[..., None] >= 0, region_reps.gather(1, index), clue)
        clue = torch.where(text_only[:, None, None], self.aux_text_visual_embedding.weight.to(clue.dtype), clue)
        text = words + self.visual_ln_text(clue) + self.token_type_embeddings(text_types)
        text = text + self.position_embeddings(text_positions)  # (B, T, H)

        object_words = torch.where(
            masked_input[..., None],
            self.object_mask_word_embedding.weight,
            self.object_linguistic_embedding.weight,
        )  # (B, R', H)
        region_position = self.position_embeddings(text_count)[:, None]  # (B, 1, H)
        regions = object_words + visual_objects + self.token_type_embeddings.weight[REGION_SEGMENT] + region_position
        end = (
            self.end_embedding.weight
            + self.token_type_embeddings.weight[REGION_SEGMENT]
            + self.position_embeddings(text_count + 1)
        )[:, None]  # (B, 1, H) [END] at the position after the regions'
        region_mask = region_mask.bool() & ~text_only[:, None]  # (B, R')
        embeddings, mask = join_streams(
            (text, attention_mask),
            (regions.to(text.dtype), region_mask.expand(batch, num_regions)),
            (end.to(text.dtype), attention_mask.new_ones(batch, 1)),
        )  # (B, T + R' + 1, H), (B, T + R' + 1)
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


class VlBertModel(RegionBackboneMixin, VlBertPreTrainedModel):
    """The VL-BERT stream, with an optional end-to-end region backbone (``vl_bert_backbone``) and an optional tanh
    [CLS] pooler.

    The joint sequence has L = T + R' + 1 positions: the text (T, padded), box 0 (the whole image, when
    ``config.add_image_box``) and the given regions (R' = R + 1 or R, padded), then ``[END]``.
    """

    hub_auto_class = "AutoModel"

    def __init__(self, config: VlBertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = VlBertEmbeddings(config)
        self.layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_hidden_layers))
        self.pooler = Pooler(config.hidden_size, config.hidden_size, "tanh") if add_pooling_layer else None
        self.backbone = build_region_backbone(config)
        if self.backbone is not None:
            self.freeze_backbone_parts()
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        region_features: torch.Tensor | None = None, region_boxes: torch.Tensor | None = None, region_attention_mask: torch.Tensor | None = None,
        masked_regions: torch.Tensor | None = None,
        text_only: torch.Tensor | None = None,
        token_region_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_sizes: torch.Tensor | None = None,
        kept_regions: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None, output_hidden_states: bool | None = None,
    ) -> SingleStreamModelOutput:
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
        inputs = dict(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            region_features=region_features, region_boxes=region_boxes, region_attention_mask=region_attention_mask,
            masked_regions=masked_regions, text_only=text_only, token_region_ids=token_region_ids,
            pixel_values=pixel_values, image_sizes=image_sizes, kept_regions=kept_regions, inputs_embeds=inputs_embeds,
        )
        self.check_inputs(**inputs)
        return self.encode(**inputs, output_attentions=output_attentions, output_hidden_states=output_hidden_states)

    def check_inputs(
        self,
        *,
        input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None, token_type_ids: torch.Tensor | None,
        region_features: torch.Tensor | None, region_boxes: torch.Tensor | None, region_attention_mask: torch.Tensor | None,
        masked_regions: torch.Tensor | None = None,
        text_only: torch.Tensor | None = None,
        token_region_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_sizes: torch.Tensor | None = None,
        kept_regions: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> None:
        """Validate every input (shared image-text checks plus VL-BERT's own) before any compute."""
        config = self.config
        # end-to-end: a stand-in of the backbone's feature size, so that the shared checks see the region count
        region_features = self.check_pixel_inputs(pixel_values, region_features, region_boxes)
        check_image_text_inputs(
            config, input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            region_features=region_features, region_boxes=region_boxes, region_attention_mask=region_attention_mask,
            inputs_embeds=inputs_embeds,
        )
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
        """Appearance features (B, R', D) and boxes (B, R', 4) of every region token, box 0 (the whole image) first
        when configured; ``valid`` and ``masked_input`` are (B, R).

        Box 0 is (0, 0, 1, 1), or with ``config.image_box_style`` "pixels" the original's (0, 0, W - 1, H - 1) in
        pixels (jackroos/VL-BERT ``pretrain/data/datasets/conceptual_captions.py``, ``image_box``) normalised by
        the image size: (0, 0, 1 - 1 / W, 1 - 1 / H). Its precomputed feature is the mean of the valid regions that
        are not masked.
        """
        config = self.config
        batch = region_boxes.shape[0]
        whole = region_boxes.new_tensor([0.0, 0.0, 1.0, 1.0]).expand(batch, 1, 4)  # (B, 1, 4)
        if config.image_box_style == "pixels":
            height, width = image_sizes.to(region_boxes.dtype).unbind(-1)  # (B,) each
            corner = torch.stack([1 - 1 / width, 1 - 1 / height], dim=-1)  # (B, 2)
            whole = torch.cat([torch.zeros_like(corner), corner], dim=-1)[:, None]  # (B, 1, 4)
        boxes = torch.cat([whole, region_boxes], dim=1) if config.add_image_box else region_boxes  # (B, R', 4)
        if self.backbone is not None:
            return self.pool_regions(pixel_values, boxes, masked_input), boxes
        features = torch.where(
            masked_input[..., None], self.embeddings.object_mask_visual_embedding.weight.to(region_features.dtype), region_features
        )  # (B, R, D)
        if config.add_image_box:
            mean = masked_mean(features, valid & ~masked_input, keepdim=True)  # (B, 1, D)
            features = torch.cat([mean, features], dim=1)
        return features, boxes

    def encode(
        self,
        *,
        input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None, token_type_ids: torch.Tensor | None,
        region_features: torch.Tensor | None, region_boxes: torch.Tensor, region_attention_mask: torch.Tensor | None,
        masked_regions: torch.Tensor | None = None,
        text_only: torch.Tensor | None = None,
        token_region_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_sizes: torch.Tensor | None = None,
        kept_regions: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_positions: torch.Tensor | None = None,
        output_attentions: bool | None = None, output_hidden_states: bool | None = None,
    ) -> SingleStreamModelOutput:
        """The forward pass on inputs already checked by ``check_inputs`` (used by the task heads).

        ``output_positions`` (B, T + R) bool over [text; given regions]: only these positions (and [CLS] when there
        is a pooler) are computed in the last layer, whose other output states are then 0; the pretraining heads need
        no more. Padded positions are left out of the layers' position-wise work (see ``run_joint_layers``).
        """
        config = self.config
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        reference = input_ids if input_ids is not None else inputs_embeds[..., 0]  # (B, T)
        batch, text_length = reference.shape[:2]
        device = region_boxes.device
        if attention_mask is None:
            attention_mask = torch.ones(batch, text_length, dtype=torch.long, device=device)
        num_regions = region_boxes.shape[1]
        valid = (
            torch.ones(batch, num_regions, dtype=torch.bool, device=device)
            if region_attention_mask is None
            else region_attention_mask.bool()
        )  # (B, R)
        # (B, R) regions whose input is replaced by the mask embeddings
        masked_input = torch.zeros_like(valid) if masked_regions is None else masked_regions.bool() & valid
        if kept_regions is not None:
            masked_input = masked_input & ~kept_regions.bool()
        elif self.backbone is None and masked_regions is not None:
            masked_input = masked_input & (region_features == 0).all(-1)
        text_only = torch.zeros(batch, dtype=torch.bool, device=device) if text_only is None else text_only.bool()
        appearance, boxes = self.region_appearance(
            region_features=region_features, region_boxes=region_boxes, valid=valid, masked_input=masked_input,
            pixel_values=pixel_values, image_sizes=image_sizes,
        )  # (B, R', D), (B, R', 4)
        region_reps = self.embeddings.region_representations(appearance, boxes)  # (B, R', H)
        offset = 1 if config.add_image_box else 0
        if offset:  # box 0 leads the region tokens: valid, never masked, and region ids shift by one
            valid = torch.cat([valid.new_ones(batch, 1), valid], dim=1)  # (B, R')
            masked_input = torch.cat([masked_input.new_zeros(batch, 1), masked_input], dim=1)  # (B, R')
            if token_region_ids is not None:
                token_region_ids = torch.where(token_region_ids >= 0, token_region_ids + 1, token_region_ids)
        hidden, mask = self.embeddings(
            input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask.long(),
            token_type_ids=token_type_ids, region_reps=region_reps, region_mask=valid, masked_input=masked_input,
            text_only=text_only, token_region_ids=token_region_ids,
        )  # (B, L, H), (B, L) with L = T + R' + 1
        wanted = None
        if output_positions is not None:
            wanted = self.joint_positions(output_positions, text_length=text_length, offset=offset)  # (B, L)
        stream = self.run_joint_layers(
            hidden, mask, wanted=wanted, output_attentions=output_attentions, output_hidden_states=output_hidden_states
        )
        hidden = stream.last_hidden_state  # (B, L, H)
        start = text_length + offset
        return SingleStreamModelOutput(
            last_hidden_state=hidden,
            text_last_hidden_state=hidden[:, :text_length],
            visual_last_hidden_state=hidden[:, start : start + num_regions],
            pooled_output=self.pooler(hidden) if self.pooler is not None else None,
            hidden_states=stream.hidden_states,
            attentions=stream.attentions,
        )

    def joint_positions(self, output_positions: torch.Tensor, *, text_length: int, offset: int) -> torch.Tensor:
        """(B, T + R) positions over [text; given regions] -> the same positions (B, L) of the joint sequence
        [text, box 0 (``offset`` of them), regions, END], with [CLS] added when the pooler reads it."""
        batch, length = output_positions.shape
        text_wanted, region_wanted = output_positions.bool().split([text_length, length - text_length], dim=1)
        if self.pooler is not None:
            text_wanted = text_wanted.clone()
            text_wanted[:, 0] = True
        box_zero = text_wanted.new_zeros(batch, offset)  # (B, offset)
        end = text_wanted.new_zeros(batch, 1)  # (B, 1)
        return torch.cat([text_wanted, box_zero, region_wanted, end], dim=1)  # (B, T + offset + R + 1)

    def run_joint_layers(
        self,
        hidden: torch.Tensor,
        mask: torch.Tensor,
        *,
        wanted: torch.Tensor | None,
        output_attentions: bool, output_hidden_states: bool,
    ) -> StreamOutput:
        """Run the layers on the joint sequence ``hidden`` (B, L, H) with its 0/1 key ``mask`` (B, L); the final states
        are (B, L, H) with zeros at the padded positions.

        Padded positions (padded text, padded regions, every region of a text-only row) are dropped from the
        position-wise work of every layer (``TokenPacking``: the layers run on the K kept rows). With ``wanted``
        (B, L) the last layer computes only those rows, and the others come out 0. With ``output_hidden_states``
        each layer's output is brought back to the padded layout (zeros at padding) and the next layer reads that
        tensor, so the recorded states are the ones the model computed and gradients flow through them.
        """
        batch, length = mask.shape
        attention = key_padding_mask(mask, hidden.dtype, self.config._attn_implementation, drop_if_unpadded=False)
        keep = mask.bool()  # (B, L)
        kept = keep.flatten()  # (B * L,)
        packing = wanted_rows = output_rows = None
        if not torch.compiler.is_compiling():  # packing sizes depend on the mask: traced graphs run unpacked
            if wanted is not None and not output_hidden_states and len(self.layers):
                wanted = wanted.flatten() & kept  # (B * L,)
            else:
                wanted = None
            kept_count, wanted_count = torch.stack([kept.sum(), (kept if wanted is None else wanted).sum()]).tolist()
            if kept_count < batch * length:
                packing = TokenPacking(torch.nonzero_static(kept, size=kept_count).squeeze(1), batch, length)
            if wanted is not None:
                wanted_rows = torch.nonzero_static(wanted, size=wanted_count).squeeze(1)  # (W,) rows of (B * L)
                # (W,) the same rows among the packed (K, H) states
                output_rows = wanted_rows if packing is None else (kept.cumsum(0) - 1).index_select(0, wanted_rows)

        def padded(states: torch.Tensor) -> torch.Tensor:
            """Packed (K, H) or (B, L, H) states -> (B, L, H) with zeros at the padded positions."""
            return packing.pad(states) if packing is not None else states.masked_fill(~keep[..., None], 0.0)

        def layer_on_padded_states(layer: nn.Module) -> Callable:
            def run(states: torch.Tensor, attention_mask: torch.Tensor | None, output_attentions: bool = False):
                states = states if packing is None else packing.pack(states)  # (K, H) or (B, L, H)
                states, weights = layer(states, attention_mask, output_attentions=output_attentions, packing=packing)
                return padded(states), weights

            return run

        flags = dict(output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        if output_hidden_states:
            layers = [layer_on_padded_states(layer) for layer in self.layers]
            return run_layers(layers, hidden.masked_fill(~keep[..., None], 0.0), attention, **flags)
        states = hidden if packing is None else packing.pack(hidden)  # (K, H) or (B, L, H)
        if output_rows is None:
            stream = run_layers(self.layers, states, attention, **flags, packing=packing)
        else:
            body = run_layers(self.layers[:-1], states, attention, **flags, packing=packing)
            stream = run_layers(
                self.layers[-1:], body.last_hidden_state, attention, **flags, recorded_attentions=body.attentions,
                packing=packing, output_rows=output_rows,
            )  # (W, H)
        states = stream.last_hidden_state
        if wanted_rows is not None:
            states = states.new_zeros(batch * length, states.shape[-1]).index_copy(0, wanted_rows, states)
            states = states.view(batch, length, -1)
        else:
            states = padded(states)
        return StreamOutput(last_hidden_state=states, attentions=stream.attentions)


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

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        region_features: torch.Tensor | None = None, region_boxes: torch.Tensor | None = None, region_attention_mask: torch.Tensor | None = None,
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
        output_attentions: bool | None = None, output_hidden_states: bool | None = None,
    ) -> VlBertForPreTrainingOutput:
        config = self.config
        inputs = dict(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            region_features=region_features, region_boxes=region_boxes, region_attention_mask=region_attention_mask,
            masked_regions=masked_regions, text_only=text_only, token_region_ids=token_region_ids,
            pixel_values=pixel_values, image_sizes=image_sizes, kept_regions=kept_regions, inputs_embeds=inputs_embeds,
        )
        self.vl_bert.check_inputs(**inputs)
        reference = input_ids if input_ids is not None else inputs_embeds[..., 0]  # (B, T)
        batch, text_length = reference.shape[:2]
        regions = region_boxes.shape[1]
        check_target_shapes(
            {"labels": labels, "matched_labels": matched_labels, "region_class_targets": region_class_targets,
             "masked_regions": masked_regions},
            {
                "labels": ((batch, text_length), "integer token ids"),
                "matched_labels": ((batch,), "integer labels, 1 matched and 0 not"),
                "region_class_targets": ((batch, regions, config.num_object_labels), "float detector class distributions"),
            },
            required={"masked_regions": ("region_class_targets",)},
        )
        text_rows = torch.zeros(batch, dtype=torch.bool, device=reference.device) if text_only is None else text_only.bool()
        selections: dict[str, torch.Tensor] = {}  # (B, T) predicted tokens, (B, R) predicted regions
        if labels is not None and (config.objective_enabled("mlm") or config.objective_enabled("text_mlm")):
            selections["tokens"] = labels != IGNORE_INDEX
        if self.region_class_head is not None and region_class_targets is not None:
            selections["regions"] = masked_regions.bool() & ~text_rows[:, None]
            if region_attention_mask is not None:
                selections["regions"] = selections["regions"] & region_attention_mask.bool()
        output_positions = None
        if "tokens" in selections and ("regions" in selections or self.region_class_head is None):
            # Every head has targets: the last layer computes only the positions they read.
            regions_read = selections.get("regions")
            if regions_read is None:
                regions_read = torch.zeros(batch, regions, dtype=torch.bool, device=reference.device)
            output_positions = torch.cat([selections["tokens"], regions_read], dim=1)  # (B, T + R)
        rows = dict(zip(selections, select_rows(*selections.values())))  # flat indices into (B * T) / (B * R)
        encoded = self.vl_bert.encode(
            **inputs, output_positions=output_positions, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        losses: dict[str, torch.Tensor] = {}
        prediction_logits = self.mlm_head(encoded.text_last_hidden_state, rows.get("tokens"))
        if "tokens" in rows:
            selected = labels.flatten().index_select(0, rows["tokens"])
            from_text_only = text_rows[:, None].expand_as(labels).flatten().index_select(0, rows["tokens"])
            if config.objective_enabled("mlm"):
                losses["mlm"] = classification_loss(
                    prediction_logits, selected.masked_fill(from_text_only, IGNORE_INDEX)
                )
            if config.objective_enabled("text_mlm") and text_only is not None:
                losses["text_mlm"] = classification_loss(
                    prediction_logits, selected.masked_fill(~from_text_only, IGNORE_INDEX)
                )
        region_class_logits = None
        if "regions" in rows:
            region_states = encoded.visual_last_hidden_state.flatten(0, 1).index_select(0, rows["regions"])
            region_class_logits = self.region_class_head(region_states)
            targets = region_class_targets.flatten(0, 1).index_select(0, rows["regions"])
            losses["region_class"] = soft_cross_entropy_loss(
                region_class_logits, targets, targets.new_ones(rows["regions"].shape[0])
            )
        elif self.region_class_head is not None:
            region_class_logits = self.region_class_head(encoded.visual_last_hidden_state)
        matching_logits = None
        if self.relationship_head is not None:
            matching_logits = self.relationship_head(encoded.pooled_output)
            if matched_labels is not None:
                losses["matching"] = classification_loss(
                    matching_logits, matched_labels.masked_fill(text_rows, IGNORE_INDEX)
                )
        return VlBertForPreTrainingOutput(
            loss=sum(config.loss_weights[name] * value for name, value in losses.items()) if losses else None,
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


class VlBertPairHead(VlBertPreTrainedModel):
    """The forward pass shared by the VL-BERT heads that read one encoded image-text pair (VQA, retrieval, referring
    expressions): check the inputs and ``labels``, encode, then ``head_output``. A head defines ``check_labels`` and
    ``head_output``, and ``encoder_inputs`` where it adds to the text."""

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        region_features: torch.Tensor | None = None, region_boxes: torch.Tensor | None = None, region_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_sizes: torch.Tensor | None = None,
        output_attentions: bool | None = None, output_hidden_states: bool | None = None,
    ) -> ModelOutput:
        """Inputs as [`VlBertModel`]'s; ``labels`` as the head's class docstring says."""
        inputs = dict(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            region_features=region_features, region_boxes=region_boxes, region_attention_mask=region_attention_mask,
            pixel_values=pixel_values, image_sizes=image_sizes,
        )
        self.vl_bert.check_inputs(**inputs)
        self.check_labels(labels, inputs)
        encoded = self.vl_bert.encode(
            **self.encoder_inputs(inputs), output_attentions=output_attentions, output_hidden_states=output_hidden_states
        )
        return self.head_output(encoded, labels, inputs)

    def check_labels(self, labels: torch.Tensor | None, inputs: dict[str, torch.Tensor | None]) -> None:
        raise NotImplementedError

    def encoder_inputs(self, inputs: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor | None]:
        """The encoder's inputs made from the checked forward ``inputs`` (as given, unless the head adds to them)."""
        return inputs

    def head_output(
        self, encoded: SingleStreamModelOutput, labels: torch.Tensor | None, inputs: dict[str, torch.Tensor | None]
    ) -> ModelOutput:
        raise NotImplementedError


class VlBertForQuestionAnswering(VlBertPairHead):
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

    def check_labels(self, labels: torch.Tensor | None, inputs: dict[str, torch.Tensor | None]) -> None:
        check_answer_labels(labels, inputs["input_ids"].shape[0], self.config.num_labels)

    def encoder_inputs(self, inputs: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor | None]:
        """The questions (B, T) followed by the answer slot ``[MASK] [SEP]``: (B, T + 2), segment B."""
        input_ids = inputs["input_ids"]
        slot = input_ids.new_tensor([self.config.mask_token_id, self.config.sep_token_id]).expand(input_ids.shape[0], 2)
        attention_mask = torch.ones_like(input_ids) if inputs["attention_mask"] is None else inputs["attention_mask"]
        token_type_ids = torch.zeros_like(input_ids) if inputs["token_type_ids"] is None else inputs["token_type_ids"]
        return dict(
            inputs,
            input_ids=torch.cat([input_ids, slot], 1),
            attention_mask=torch.cat([attention_mask, torch.ones_like(slot)], 1),
            token_type_ids=torch.cat([token_type_ids, torch.ones_like(slot)], 1),
        )

    def head_output(
        self, encoded: SingleStreamModelOutput, labels: torch.Tensor | None, inputs: dict[str, torch.Tensor | None]
    ) -> SingleStreamQuestionAnsweringOutput:
        answer_state = encoded.text_last_hidden_state[:, inputs["input_ids"].shape[1]]  # (B, H) at the [MASK] slot
        logits = self.answer_classifier(self.answer_dropout(self.answer_transform(answer_state)))
        loss = None
        if labels is not None:
            loss = soft_score_loss(logits, labels) if labels.is_floating_point() else classification_loss(logits, labels)
        return SingleStreamQuestionAnsweringOutput(
            loss=loss, logits=logits, pooled_output=answer_state, hidden_states=encoded.hidden_states,
            attentions=encoded.attentions,
        )


class VlBertForImageTextRetrieval(VlBertPairHead):
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

    def check_labels(self, labels: torch.Tensor | None, inputs: dict[str, torch.Tensor | None]) -> None:
        check_match_labels(labels, inputs["input_ids"].shape[0])

    def head_output(
        self, encoded: SingleStreamModelOutput, labels: torch.Tensor | None, inputs: dict[str, torch.Tensor | None]
    ) -> SingleStreamRetrievalOutput:
        logits = self.relationship_head(encoded.pooled_output)
        return SingleStreamRetrievalOutput(
            loss=classification_loss(logits, labels) if labels is not None else None,
            logits=logits,
            scores=logits[:, 1] - logits[:, 0],
            pooled_output=encoded.pooled_output,
            hidden_states=encoded.hidden_states,
            attentions=encoded.attentions,
        )


class VlBertForReferringExpressions(VlBertPairHead):
    """VL-BERT for RefCOCO+: every region's final state -> ``final_mlp`` (dense, GELU, dropout, Linear to 1).

    ``logits`` (B, R), one per given region; ``labels`` (B, R) are 0/1 (IoU > 0.5 with the referred box), trained
    with binary cross-entropy over the valid regions, as ``refcoco/modules/resnet_vlbert_for_refcoco.py``.
    """

    def __init__(self, config: VlBertConfig):
        super().__init__(config)
        self.vl_bert = VlBertModel(config, add_pooling_layer=False)
        self.region_head = VlBertRegionHead(config.hidden_size, 1, config.hidden_act, config.hidden_dropout_prob)
        self.post_init()

    def check_labels(self, labels: torch.Tensor | None, inputs: dict[str, torch.Tensor | None]) -> None:
        shape = tuple(inputs["region_boxes"].shape[:2])
        if labels is not None and tuple(labels.shape) != shape:
            raise ValueError(f"labels: expected 0/1 region labels of shape {shape}, got {tuple(labels.shape)}")

    def head_output(
        self, encoded: SingleStreamModelOutput, labels: torch.Tensor | None, inputs: dict[str, torch.Tensor | None]
    ) -> SingleStreamRegionScoringOutput:
        logits = self.region_head(encoded.visual_last_hidden_state).squeeze(-1)  # (B, R)
        region_attention_mask = inputs["region_attention_mask"]
        valid = torch.ones_like(logits) if region_attention_mask is None else region_attention_mask.to(logits.dtype)
        logits = logits.masked_fill(valid == 0, torch.finfo(logits.dtype).min)
        loss = None
        if labels is not None:
            per_region = nn.functional.binary_cross_entropy_with_logits(
                logits.float().clamp_min(-1e4), labels.float(), reduction="none"
            )
            loss = (per_region * valid).sum() / valid.sum().clamp_min(1.0)
        return SingleStreamRegionScoringOutput(
            loss=loss, logits=logits, hidden_states=encoded.hidden_states, attentions=encoded.attentions
        )


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

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        region_features: torch.Tensor | None = None, region_boxes: torch.Tensor | None = None, region_attention_mask: torch.Tensor | None = None,
        token_region_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        region_object_labels: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_sizes: torch.Tensor | None = None,
        output_attentions: bool | None = None, output_hidden_states: bool | None = None,
    ) -> VlBertForMultipleChoiceOutput:
        config = self.config
        if input_ids is None or input_ids.dim() != 3:
            raise ValueError(f"input_ids: expected (batch, choices, text_length), got {None if input_ids is None else tuple(input_ids.shape)}")
        batch, choices, length = input_ids.shape
        for name, tensor in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids), ("token_region_ids", token_region_ids)):
            if tensor is not None and tuple(tensor.shape) != (batch, choices, length):
                raise ValueError(f"{name}: expected shape {(batch, choices, length)} like input_ids, got {tuple(tensor.shape)}")
        if labels is not None and (tuple(labels.shape) != (batch,) or labels.is_floating_point()):
            raise ValueError(f"labels: expected the right choice's index, shape ({batch},) integer")
        if labels is not None and not torch.compiler.is_compiling() and bool(((labels < 0) | (labels >= choices)).any()):
            raise ValueError(f"labels: expected choice indices in [0, {choices})")

        def per_choice(tensor: torch.Tensor | None) -> torch.Tensor | None:
            """(B, ...) shared by the choices -> (B * C, ...)."""
            if tensor is None:
                return None
            return tensor[:, None].expand(batch, choices, *tensor.shape[1:]).reshape(batch * choices, *tensor.shape[1:])

        def flat(tensor: torch.Tensor | None) -> torch.Tensor | None:
            """(B, C, T) -> (B * C, T)."""
            return None if tensor is None else tensor.reshape(batch * choices, length)

        inputs = dict(
            input_ids=flat(input_ids), attention_mask=flat(attention_mask), token_type_ids=flat(token_type_ids),
            region_features=per_choice(region_features), region_boxes=per_choice(region_boxes),
            region_attention_mask=per_choice(region_attention_mask), token_region_ids=flat(token_region_ids),
            pixel_values=per_choice(pixel_values), image_sizes=per_choice(image_sizes),
        )
        self.vl_bert.check_inputs(**inputs)
        if region_object_labels is not None:
            if self.region_class_head is None:
                raise ValueError("region_object_labels: config.vcr_object_loss_weight is 0, so there is no object head")
            check_target_shapes(
                {"region_object_labels": region_object_labels},
                {"region_object_labels": ((batch, region_boxes.shape[1]), "integer object classes")},
            )
        encoded = self.vl_bert.encode(
            **inputs, output_attentions=output_attentions, output_hidden_states=output_hidden_states
        )
        logits = self.classifier(self.dropout(encoded.pooled_output)).view(batch, choices)
        choice_loss = object_loss = object_logits = None
        if labels is not None:
            targets = nn.functional.one_hot(labels, choices).float()
            choice_loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), targets)
        if self.region_class_head is not None:
            object_logits = self.region_class_head(encoded.visual_last_hidden_state)  # (B * C, R, classes)
            object_logits = object_logits.view(batch, choices, *object_logits.shape[1:])
            if region_object_labels is not None:
                targets = region_object_labels  # (B, R)
                if region_attention_mask is not None:
                    targets = targets.masked_fill(region_attention_mask == 0, IGNORE_INDEX)
                object_loss = classification_loss(object_logits, targets[:, None].expand(batch, choices, -1))
        loss = choice_loss
        if object_loss is not None:
            weighted = config.vcr_object_loss_weight * object_loss
            loss = weighted if loss is None else loss + weighted
        return VlBertForMultipleChoiceOutput(
            loss=loss,
            choice_loss=choice_loss,
            object_loss=object_loss,
            logits=logits,
            object_logits=object_logits,
            hidden_states=encoded.hidden_states,
            attentions=encoded.attentions,
        )
