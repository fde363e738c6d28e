"""Input embeddings shared by the architectures: text tokens and detected regions."""

from __future__ import annotations

import torch
from torch import nn


class TextEmbeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm and dropout (BERT).

    ``padding_idx`` is applied to all three tables when given, as LXMERT's original code does; BERT
    itself only pads the word table.
    """

    def __init__(self, config, pad_all_tables: bool = False):
        super().__init__()
        pad = config.pad_token_id
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=pad)
        self.position_embeddings = nn.Embedding(
            config.max_position_embeddings, config.hidden_size, padding_idx=pad if pad_all_tables else None
        )
        self.token_type_embeddings = nn.Embedding(
            config.type_vocab_size, config.hidden_size, padding_idx=pad if pad_all_tables else None
        )
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
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
        self.dropout = nn.Dropout(dropout)

    def forward(self, region_features: torch.Tensor, region_boxes: torch.Tensor) -> torch.Tensor:
        boxes = region_boxes.to(region_features.dtype)
        if self.box_size == 5:
            area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
            boxes = torch.cat([boxes, area[..., None]], dim=-1)
        features = self.feature_norm(self.feature_proj(region_features))
        positions = self.box_norm(self.box_proj(boxes))
        combined = features + positions
        if self.combine == "mean":
            combined = combined / 2
        return self.dropout(combined)
