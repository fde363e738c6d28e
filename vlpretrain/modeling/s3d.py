"""S3D-G trained with MIL-NCE on HowTo100M (Miech et al. 2020; S3D-G: Xie et al. 2018): UniVL's clip feature extractor.

Faithful to antoine77340/S3D_HowTo100M ``s3dg.py`` (module names match ``s3d_howto100m.pth``):

- the input (B, 3, T, H, W) RGB in [0, 1] (no mean or std) is cut into 2x2x2 blocks that become 24 channels in
  (dt, dh, dw, c) order (space-to-depth); ``conv1`` (2x4x4, padding (1, 2, 2)) is followed by dropping the first
  time step, row and column, which reproduces TensorFlow's "SAME" padding of the original 4x4x4 stride-2 conv;
- every unit is conv (no bias) -> BatchNorm3d -> ReLU; a "separable" 3x3x3 unit is a 1x3x3 spatial unit then a
  3x1x1 temporal unit;
- the four stage max-pools zero-pad ``max(kernel - stride, 0)`` (the extra pixel at the end; inputs are
  non-negative after ReLU) and round their output size up (``ceil_mode``); the pool of branch 3 of each inception
  block is a plain 3x3x3 stride-1 pool with implicit -inf padding;
- self-gating ``x * sigmoid(W mean_{T,H,W}(x) + b)`` after ``conv_2c`` (always on in the release: its ``gating``
  flag is overwritten by the module) and on every inception branch;
- ``mixed_5c`` is averaged over time and space (1024-d, UniVL's feature) and projected by ``fc`` to the 512-d
  ``video_embedding``;
- the text tower: word embeddings (id 0 = padding, not masked) -> Linear + ReLU -> max over the words -> Linear.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from ..configuration.s3d import S3D_BLOCK_NAMES, S3DConfig
from .base import VLPreTrainedModel

# (kernel, stride) of the stage pools, with the stage that follows each.
_STAGE_POOLS = {
    "maxpool_2a": ((1, 3, 3), (1, 2, 2)),
    "maxpool_3a": ((1, 3, 3), (1, 2, 2)),
    "maxpool_4a": ((3, 3, 3), (2, 2, 2)),
    "maxpool_5a": ((2, 2, 2), (2, 2, 2)),
}


@dataclass
class S3DOutput(ModelOutput):
    """Outputs of [`S3DModel`].

    Args:
        last_hidden_state: (batch, 1024, T', H', W') the ``mixed_5c`` map (T' = T / 8, H' = H / 32 for even sizes).
        pooler_output: (batch, 1024) ``mixed_5c`` averaged over time and space: the clip feature UniVL uses.
        video_embeds: (batch, 512) ``fc(pooler_output)``, the joint text-video embedding (``video_embedding``).
    """

    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    video_embeds: torch.Tensor | None = None


class S3DUnit(nn.Module):
    """Conv3d (no bias) -> BatchNorm3d -> ReLU; ``separable`` splits a k x k x k kernel into 1 x k x k then k x 1 x 1
    (each with its own BatchNorm and ReLU), as ``STConv3D`` of the release."""

    def __init__(self, config: S3DConfig, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int, int],
                 padding: int | tuple[int, int, int] = 0, separable: bool = False) -> None:
        super().__init__()
        norm = dict(eps=config.batch_norm_eps, momentum=config.batch_norm_momentum)
        self.separable = separable
        if separable:
            size = kernel_size if isinstance(kernel_size, int) else kernel_size[1]
            pad = padding if isinstance(padding, int) else padding[1]
            self.conv1 = nn.Conv3d(in_channels, out_channels, (1, size, size), padding=(0, pad, pad), bias=False)
            self.bn1 = nn.BatchNorm3d(out_channels, **norm)
            self.conv2 = nn.Conv3d(out_channels, out_channels, (size, 1, 1), padding=(pad, 0, 0), bias=False)
            self.bn2 = nn.BatchNorm3d(out_channels, **norm)
        else:
            self.conv1 = nn.Conv3d(in_channels, out_channels, kernel_size, padding=padding, bias=False)
            self.bn1 = nn.BatchNorm3d(out_channels, **norm)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        hidden = F.relu(self.bn1(self.conv1(hidden)))
        if self.separable:
            hidden = F.relu(self.bn2(self.conv2(hidden)))
        return hidden


class S3DSelfGating(nn.Module):
    """``x * sigmoid(fc(mean over T, H, W of x))`` per channel (S3D-G's feature gating)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, channels)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        weights = torch.sigmoid(self.fc(hidden.mean(dim=(2, 3, 4))))
        return hidden * weights[:, :, None, None, None]


class S3DInceptionBlock(nn.Module):
    """Four gated branches concatenated: 1x1x1; 1x1x1 -> separable 3x3x3 (twice); 3x3x3 max-pool -> 1x1x1."""

    def __init__(self, config: S3DConfig, in_channels: int, widths: list[int]) -> None:
        super().__init__()
        b0, b1_a, b1_b, b2_a, b2_b, b3_b = widths
        self.conv_b0 = S3DUnit(config, in_channels, b0, 1)
        self.conv_b1_a = S3DUnit(config, in_channels, b1_a, 1)
        self.conv_b1_b = S3DUnit(config, b1_a, b1_b, 3, padding=1, separable=True)
        self.conv_b2_a = S3DUnit(config, in_channels, b2_a, 1)
        self.conv_b2_b = S3DUnit(config, b2_a, b2_b, 3, padding=1, separable=True)
        self.conv_b3_b = S3DUnit(config, in_channels, b3_b, 1)
        self.gating_b0 = S3DSelfGating(b0)
        self.gating_b1 = S3DSelfGating(b1_b)
        self.gating_b2 = S3DSelfGating(b2_b)
        self.gating_b3 = S3DSelfGating(b3_b)
        self.out_channels = b0 + b1_b + b2_b + b3_b

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        branch0 = self.gating_b0(self.conv_b0(hidden))
        branch1 = self.gating_b1(self.conv_b1_b(self.conv_b1_a(hidden)))
        branch2 = self.gating_b2(self.conv_b2_b(self.conv_b2_a(hidden)))
        branch3 = self.gating_b3(self.conv_b3_b(F.max_pool3d(hidden, kernel_size=3, stride=1, padding=1)))
        return torch.cat((branch0, branch1, branch2, branch3), dim=1)


def same_max_pool3d(hidden: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """The release's ``MaxPool3dTFPadding``: zero-pad ``max(k - s, 0)`` per axis (floor half before, the rest after),
    then max-pool with ``ceil_mode``."""
    pads = []
    for size, step in zip(reversed(kernel), reversed(stride)):  # F.pad wants (W, H, T) pairs
        total = max(size - step, 0)
        pads += [total // 2, total - total // 2]
    return F.max_pool3d(F.pad(hidden, pads), kernel, stride, ceil_mode=True)


def _pooled_length(length: int, kernel: int, stride: int) -> int:
    """Output length of :func:`same_max_pool3d` along one axis (0: the input is too short)."""
    padded = length + max(kernel - stride, 0)
    if padded < kernel:
        return 0
    out = -(-(padded - kernel) // stride) + 1
    return out - 1 if (out - 1) * stride >= padded else out


def s3d_output_size(frames: int, height: int, width: int) -> tuple[int, int, int]:
    """(T', H', W') of the ``mixed_5c`` map for an input of ``frames`` x ``height`` x ``width`` (a 0: too small)."""
    sizes = [frames // 2, height // 2, width // 2]
    for kernel, stride in _STAGE_POOLS.values():
        sizes = [_pooled_length(size, k, s) for size, k, s in zip(sizes, kernel, stride)]
    return tuple(sizes)


class S3DTextModule(nn.Module):
    """The release's ``Sentence_Embedding`` on word ids: embed -> Linear + ReLU -> max over words -> Linear."""

    def __init__(self, config: S3DConfig) -> None:
        super().__init__()
        self.word_embd = nn.Embedding(config.text_vocab_size, config.word_embedding_size)
        self.fc1 = nn.Linear(config.word_embedding_size, config.text_hidden_size)
        self.fc2 = nn.Linear(config.text_hidden_size, config.embedding_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden = F.relu(self.fc1(self.word_embd(input_ids)))
        return self.fc2(hidden.max(dim=1).values)


class S3DPreTrainedModel(VLPreTrainedModel):
    """Initialisation and input checks shared by the S3D classes."""

    config_class = S3DConfig
    base_model_prefix = "s3d"
    main_input_name = "pixel_values_videos"
    input_modalities = ("video", "text")
    supports_gradient_checkpointing = False
    _supports_sdpa = False
    _supports_attention_backend = False
    # The layout ``pixel_values_videos`` is read in: (batch, channels, frames, height, width).
    video_input_layout = "channels_first"

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Conv3d, nn.Linear, nn.Embedding)):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if getattr(module, "bias", None) is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm3d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)


class S3DModel(S3DPreTrainedModel):
    """S3D-G video tower (and, with ``config.use_text_module``, the text tower) of the MIL-NCE HowTo100M release.

    ``forward(pixel_values_videos)``: (B, 3, T, H, W) RGB in [0, 1], T, H and W even (the release was trained on
    T = 32 frames of 224 x 224; UniVL's features use T = 16, one clip per second); returns :class:`S3DOutput`.
    """

    hub_auto_class = "AutoModel"

    def __init__(self, config: S3DConfig) -> None:
        super().__init__(config)
        stem, conv_2c = config.stem_channels, config.conv_2c_channels
        self.conv1 = S3DUnit(config, 8 * config.num_channels, stem, (2, 4, 4), padding=(1, 2, 2))
        self.conv_2b = S3DUnit(config, stem, stem, 1)
        self.conv_2c = S3DUnit(config, stem, conv_2c, 3, padding=1, separable=True)
        self.gating = S3DSelfGating(conv_2c)
        channels = conv_2c
        for name, widths in zip(S3D_BLOCK_NAMES, config.inception_widths):
            block = S3DInceptionBlock(config, channels, widths)
            self.add_module(name, block)
            channels = block.out_channels
        self.fc = nn.Linear(channels, config.embedding_size)
        self.text_module = S3DTextModule(config) if config.use_text_module else None
        self.post_init()

    def _check_video(self, pixel_values_videos: torch.Tensor) -> None:
        if not isinstance(pixel_values_videos, torch.Tensor) or pixel_values_videos.ndim != 5:
            shape = tuple(pixel_values_videos.shape) if isinstance(pixel_values_videos, torch.Tensor) else type(pixel_values_videos).__name__
            raise ValueError(f"pixel_values_videos: expected a (batch, channels, frames, height, width) tensor, got {shape}")
        _, channels, frames, height, width = pixel_values_videos.shape
        if channels != self.config.num_channels:
            raise ValueError(
                f"pixel_values_videos: expected {self.config.num_channels} channels in dimension 1 (batch, channels, "
                f"frames, height, width), got shape {tuple(pixel_values_videos.shape)}"
            )
        if frames % 2 or height % 2 or width % 2:
            raise ValueError(f"pixel_values_videos: frames, height and width must be even (space-to-depth), got {(frames, height, width)}")
        if 0 in s3d_output_size(frames, height, width):
            raise ValueError(
                f"pixel_values_videos: {frames} frames of {height}x{width} are too small for S3D's four pooling stages "
                "(at least 6 frames of 32x32; the release uses 16-32 frames of 224x224)"
            )
        if not pixel_values_videos.is_floating_point():
            raise ValueError(f"pixel_values_videos: expected floating point values in [0, 1], got {pixel_values_videos.dtype}")

    @staticmethod
    def space_to_depth(video: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, 8C, T/2, H/2, W/2), channel index ((dt * 2 + dh) * 2 + dw) * C + c."""
        batch, channels, frames, height, width = video.shape
        blocks = video.reshape(batch, channels, frames // 2, 2, height // 2, 2, width // 2, 2)
        blocks = blocks.permute(0, 3, 5, 7, 1, 2, 4, 6)
        return blocks.reshape(batch, 8 * channels, frames // 2, height // 2, width // 2)

    @can_return_tuple
    def forward(self, pixel_values_videos: torch.Tensor, **kwargs) -> S3DOutput:
        """Run the video tower; ``pooler_output`` is the 1024-d ``mixed_5c`` feature, ``video_embeds`` its projection."""
        if kwargs:
            raise ValueError(f"S3DModel.forward: unexpected arguments {sorted(kwargs)}; expected pixel_values_videos")
        self._check_video(pixel_values_videos)
        # Channels-last activations let the CPU (oneDNN) and GPU convolutions skip layout conversions: 1.55x on CPU,
        # same values to float rounding (bench/bench_s3d.py).
        hidden = self.conv1(self.space_to_depth(pixel_values_videos).contiguous(memory_format=torch.channels_last_3d))
        hidden = hidden[:, :, 1:, 1:, 1:]
        hidden = same_max_pool3d(hidden, *_STAGE_POOLS["maxpool_2a"])
        hidden = self.gating(self.conv_2c(self.conv_2b(hidden)))
        hidden = same_max_pool3d(hidden, *_STAGE_POOLS["maxpool_3a"])
        for name in S3D_BLOCK_NAMES:
            if name in ("mixed_4b", "mixed_5b"):
                hidden = same_max_pool3d(hidden, *_STAGE_POOLS["maxpool_4a" if name == "mixed_4b" else "maxpool_5a"])
            hidden = getattr(self, name)(hidden)
        pooled = hidden.mean(dim=(2, 3, 4))
        return S3DOutput(last_hidden_state=hidden, pooler_output=pooled, video_embeds=self.fc(pooled))

    def get_video_features(self, pixel_values_videos: torch.Tensor) -> torch.Tensor:
        """(B, 512) joint-space video embeddings (the release's ``video_embedding``)."""
        return self(pixel_values_videos).video_embeds

    def get_text_features(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, 512) joint-space text embeddings from (B, words) ids of the release's vocabulary (``s3d_dict.npy``:
        word i has id i + 1, 0 pads; the release keeps 16 words)."""
        if self.text_module is None:
            raise ValueError("get_text_features: this S3D model was built without the text tower (use_text_module=False)")
        if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2 or input_ids.is_floating_point():
            raise ValueError(f"input_ids: expected a (batch, words) integer tensor, got {getattr(input_ids, 'shape', input_ids)!r}")
        if not torch.compiler.is_compiling() and input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= self.config.text_vocab_size):
            raise ValueError(f"input_ids: word ids must lie in [0, {self.config.text_vocab_size}), got {input_ids.min()}..{input_ids.max()}")
        return self.text_module(input_ids)


__all__ = ["S3DModel", "S3DOutput", "S3DPreTrainedModel"]
