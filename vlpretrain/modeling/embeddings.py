"""Input embeddings shared by the architectures: text tokens and detected regions."""

from __future__ import annotations

import torch
from torch import nn

from .layers import masked_mean


class TextEmbeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm and dropout (BERT).

    ``padding_idx`` is applied to all three tables when given, as LXMERT's original code does; BERT
    itself only pads the word table. ``eps`` overrides ``config.layer_norm_eps`` for the LayerNorm (HERO's
    subtitle embeddings use 1e-5 while its transformer layers use 1e-12).
    """

    def __init__(self, config, pad_all_tables: bool = False, eps: float | None = None):
        super().__init__()
        pad = config.pad_token_id
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=pad)
        self.position_embeddings = nn.Embedding(
            config.max_position_embeddings, config.hidden_size, padding_idx=pad if pad_all_tables else None
        )
        self.token_type_embeddings = nn.Embedding(
            config.type_vocab_size, config.hidden_size, padding_idx=pad if pad_all_tables else None
        )
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps if eps is None else eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        length = inputs_embeds.shape[1]
        if position_ids is None:
            position_ids = torch.arange(length, device=inputs_embeds.device)[None, :]
        embeddings = inputs_embeds + self.position_embeddings(position_ids)
        if token_type_ids is None:
            embeddings = embeddings + self.token_type_embeddings.weight[0]
        else:
            embeddings = embeddings + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.norm(embeddings))


class RegionEmbeddings(nn.Module):
    """Project region features and boxes to the hidden size, each through its own Linear + LayerNorm.

    ``combine`` decides how the two are merged: ``"mean"`` ((feature + box) / 2, LXMERT) or ``"sum"``
    (ViLBERT-style). Boxes are (x1, y1, x2, y2) normalised to [0, 1]; with ``box_size=5`` the relative
    area is appended here, so every model takes the same 4-d input.

    An all-zero feature row (a masked region, LXMERT-style, or padding) gets the learned
    ``zero_feature_embedding`` instead of ``LayerNorm(Linear(0))``: that is the LayerNorm of a constant vector (the
    bias), whose backward pass multiplies by 1/sqrt(eps) (1e6 at eps 1e-12). The original's optimizer (BertAdam)
    clipped each parameter on its own, so the blow-up stayed in one bias; under the Trainer's global clipping it
    shrank every other gradient to nothing (initial gradient norms of the masked-region losses were in the
    thousands against about 10 for matching). The vector starts at LayerNorm(bias) (0 at initialisation, and the
    converters set it from the checkpoint), so outputs equal the original's until it trains.
    """

    def __init__(
        self,
        feature_size: int,
        hidden_size: int,
        box_size: int = 4,
        combine: str = "mean",
        eps: float = 1e-12,
        dropout: float = 0.1,
        normalize: bool = True,
    ):
        super().__init__()
        if combine not in ("mean", "sum"):
            raise ValueError(f"combine must be 'mean' or 'sum', got {combine!r}")
        self.box_size = box_size
        self.combine = combine
        self.feature_proj = nn.Linear(feature_size, hidden_size)
        self.feature_norm = nn.LayerNorm(hidden_size, eps=eps) if normalize else nn.Identity()
        self.box_proj = nn.Linear(box_size, hidden_size)
        self.box_norm = nn.LayerNorm(hidden_size, eps=eps) if normalize else nn.Identity()
        self.zero_feature_embedding = nn.Parameter(torch.zeros(hidden_size)) if normalize else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, region_features: torch.Tensor, region_boxes: torch.Tensor) -> torch.Tensor:
        boxes = region_boxes.to(region_features.dtype)
        if self.box_size == 5:
            area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
            boxes = torch.cat([boxes, area[..., None]], dim=-1)
        features = self.feature_norm(self.feature_proj(region_features))
        if self.zero_feature_embedding is not None:
            zero_rows = (region_features == 0).all(-1, keepdim=True)
            features = torch.where(zero_rows, self.zero_feature_embedding.to(features.dtype), features)
        positions = self.box_norm(self.box_proj(boxes))
        combined = features + positions
        if self.combine == "mean":
            combined = combined / 2
        return self.dropout(combined)


def zero_feature_embedding(state: dict[str, torch.Tensor], prefix: str, eps: float) -> torch.Tensor:
    """What an original checkpoint computes for an all-zero region feature, LayerNorm(feature bias): the value of
    ``RegionEmbeddings.zero_feature_embedding`` (under ``prefix``) for converted weights."""
    bias = state[f"{prefix}.feature_proj.bias"].float()
    weight, shift = state[f"{prefix}.feature_norm.weight"].float(), state[f"{prefix}.feature_norm.bias"].float()
    return nn.functional.layer_norm(bias, bias.shape, weight, shift, eps)


def box_with_area(region_boxes: torch.Tensor) -> torch.Tensor:
    """The 5-d box encoding of ViLBERT-style models: (x1, y1, x2, y2, relative area) from normalised corners."""
    area = (region_boxes[..., 2] - region_boxes[..., 0]) * (region_boxes[..., 3] - region_boxes[..., 1])
    return torch.cat([region_boxes, area[..., None]], dim=-1)


def sinusoidal_box_embedding(
    region_boxes: torch.Tensor, size: int = 2048, wavelength: float = 1000.0, scale: float = 100.0
) -> torch.Tensor:
    """VL-BERT's box geometry embedding (``common/utils/bbox.py``): (B, R, 4) corners -> (B, R, ``size``).

    The centre, width and height (normalised to the image, times ``scale``) each give ``size / 8`` sines
    followed by as many cosines of ``v / wavelength ** (i / (size / 8))``, laid out as [xc | yc | w | h].
    """
    if size % 8:
        raise ValueError(f"size must be a multiple of 8 (4 coordinates x sin/cos), got {size}")
    boxes = region_boxes.float()
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2
    extent = boxes[..., 2:] - boxes[..., :2]
    values = torch.cat([centre, extent], dim=-1) * scale
    steps = size // 8
    inverse_frequency = wavelength ** (-torch.arange(steps, dtype=torch.float32, device=boxes.device) / steps)
    angles = values[..., None] * inverse_frequency
    embedding = torch.cat([angles.sin(), angles.cos()], dim=-1)
    return embedding.flatten(-2).to(region_boxes.dtype)


def join_streams(*parts: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate (embeddings (B, L_i, H), 0/1 mask (B, L_i)) parts into one single-stream sequence and mask.

    Single-stream models (VL-BERT, ImageBERT, VisualBERT) give each part explicit position ids, so padding
    inside the joint sequence only needs to be masked: attention is blind to the order of positions.
    """
    embeddings = torch.cat([part[0] for part in parts], dim=1)
    mask = torch.cat([part[1].to(torch.long) for part in parts], dim=1)
    return embeddings, mask


def prepend_global_image_token(
    region_features: torch.Tensor, region_boxes: torch.Tensor, region_attention_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prepend ViLBERT's global "IMG" region: the mean of the valid regions' features, box (0, 0, 1, 1), mask 1.

    The mean is the sum over valid regions divided by their count, so masked (zeroed) regions still count,
    as in vilbert_beta's pretraining loader. Returns features (B, R+1, D), boxes (B, R+1, 4) and mask (B, R+1).
    """
    batch = region_features.shape[0]
    if region_attention_mask is None:
        region_attention_mask = torch.ones(region_features.shape[:2], dtype=torch.long, device=region_features.device)
    mean = masked_mean(region_features, region_attention_mask, keepdim=True)
    whole_image = region_boxes.new_tensor([0.0, 0.0, 1.0, 1.0]).expand(batch, 1, 4)
    ones = region_attention_mask.new_ones(batch, 1)
    return (
        torch.cat([mean, region_features], dim=1),
        torch.cat([whole_image, region_boxes], dim=1),
        torch.cat([ones, region_attention_mask], dim=1),
    )


class SummedRegionEmbeddings(nn.Module):
    """ViLBERT / ERNIE-ViL visual embeddings: LayerNorm(Linear(feature) + Linear(5-d box)) -> dropout.

    Boxes are (x1, y1, x2, y2) normalised to [0, 1]; the relative area is appended here (``box_with_area``).
    One LayerNorm after the sum, no position or type embedding for regions.
    """

    def __init__(self, feature_size: int, hidden_size: int, eps: float = 1e-12, dropout: float = 0.1):
        super().__init__()
        self.feature_proj = nn.Linear(feature_size, hidden_size)
        self.box_proj = nn.Linear(5, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, region_features: torch.Tensor, region_boxes: torch.Tensor) -> torch.Tensor:
        boxes = box_with_area(region_boxes.to(region_features.dtype))
        return self.dropout(self.norm(self.feature_proj(region_features) + self.box_proj(boxes)))


class FrameEmbeddings(nn.Module):
    """Clip/frame features of a video -> hidden size: [LayerNorm(D)] -> Linear(D, H) + position [+ type] -> LayerNorm -> dropout.

    UniVL's video embeddings (``input_norm_eps=None``: the model layer-norms the raw features itself, because the
    masked-frame targets use the same normalisation; no type embedding) and HERO's ``ImageEmbeddings`` (input
    LayerNorm, eps 1e-5, and a token-type embedding). Positions are 0..F-1 unless ``position_ids`` are given.
    """

    def __init__(
        self,
        feature_size: int,
        hidden_size: int,
        max_positions: int,
        eps: float = 1e-12,
        dropout: float = 0.1,
        input_norm_eps: float | None = None,
        type_vocab_size: int = 0,
    ):
        super().__init__()
        self.input_norm = nn.LayerNorm(feature_size, eps=input_norm_eps) if input_norm_eps is not None else None
        self.proj = nn.Linear(feature_size, hidden_size)
        self.position_embeddings = nn.Embedding(max_positions, hidden_size)
        self.token_type_embeddings = nn.Embedding(type_vocab_size, hidden_size) if type_vocab_size else None
        self.norm = nn.LayerNorm(hidden_size, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        frame_features: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        token_type_embeddings: nn.Embedding | None = None,
    ) -> torch.Tensor:
        """``token_type_embeddings``: a table owned elsewhere (HERO's frames use the text table), else the own one."""
        if self.input_norm is not None:
            frame_features = self.input_norm(frame_features)
        if position_ids is None:
            position_ids = torch.arange(frame_features.shape[1], device=frame_features.device)[None, :]
        embeddings = self.proj(frame_features) + self.position_embeddings(position_ids)
        types = self.token_type_embeddings if token_type_embeddings is None else token_type_embeddings
        if types is not None:
            embeddings = embeddings + (types.weight[0] if token_type_ids is None else types(token_type_ids))
        return self.dropout(self.norm(embeddings))
