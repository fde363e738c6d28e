"""A narrow S3D config and random checkpoints laid out like ``s3d_howto100m.pth`` (antoine77340/S3D_HowTo100M), written
from the release's module structure independently of the package's model."""

from __future__ import annotations

import numpy as np
import torch

from vlpretrain.configuration.s3d import S3DConfig

BLOCKS = ("mixed_3b", "mixed_3c", "mixed_4b", "mixed_4c", "mixed_4d", "mixed_4e", "mixed_4f", "mixed_5b", "mixed_5c")
# The release's widths divided by 16 (at least 1): same structure, about 1/200 of the compute.
TINY_WIDTHS = [
    [4, 6, 8, 1, 2, 2], [8, 8, 12, 2, 6, 4], [12, 6, 13, 1, 3, 4], [10, 7, 14, 2, 4, 4], [8, 8, 16, 2, 4, 4],
    [7, 9, 18, 2, 4, 4], [16, 10, 20, 2, 8, 8], [16, 10, 20, 2, 8, 8], [24, 12, 24, 3, 8, 8],
]
TINY_FEATURE_SIZE = 24 + 24 + 8 + 8


def tiny_s3d_config(**overrides) -> S3DConfig:
    """S3D with 1/16 of the release's widths and a 40-word text tower (64-d pooled features, 8-d joint space)."""
    values = dict(
        stem_channels=4, conv_2c_channels=12, inception_widths=TINY_WIDTHS, embedding_size=8, text_vocab_size=40,
        word_embedding_size=6, text_hidden_size=10,
    )
    values.update(overrides)
    return S3DConfig(**values)


def release_s3d_state_dict(
    widths: list[list[int]] = TINY_WIDTHS, stem: int = 4, conv_2c: int = 12, embedding: int = 8,
    text: tuple[int, int, int] | None = (40, 6, 10), num_batches_tracked: bool = False, seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Random tensors under the names and shapes of the release (``STConv3D``: ``conv1``/``bn1`` and, separable,
    ``conv2``/``bn2``; ``SelfGating``: ``fc``); BatchNorm statistics are random too so that eval mode matters."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def normal(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * scale

    def norm(prefix: str, channels: int) -> None:
        state[f"{prefix}.weight"] = 1.0 + 0.2 * normal(channels)
        state[f"{prefix}.bias"] = 0.1 * normal(channels)
        state[f"{prefix}.running_mean"] = 0.1 * normal(channels)
        state[f"{prefix}.running_var"] = 0.5 + torch.rand(channels, generator=generator)
        if num_batches_tracked:
            state[f"{prefix}.num_batches_tracked"] = torch.tensor(1000)

    def unit(prefix: str, cin: int, cout: int, kernel: tuple[int, int, int], separable: bool = False) -> None:
        if separable:
            state[f"{prefix}.conv1.weight"] = normal(cout, cin, 1, kernel[1], kernel[2], scale=(cin * kernel[1] * kernel[2]) ** -0.5)
            norm(f"{prefix}.bn1", cout)
            state[f"{prefix}.conv2.weight"] = normal(cout, cout, kernel[0], 1, 1, scale=(cout * kernel[0]) ** -0.5)
            norm(f"{prefix}.bn2", cout)
        else:
            state[f"{prefix}.conv1.weight"] = normal(cout, cin, *kernel, scale=(cin * int(np.prod(kernel))) ** -0.5)
            norm(f"{prefix}.bn1", cout)

    def gating(prefix: str, channels: int) -> None:
        state[f"{prefix}.fc.weight"] = normal(channels, channels, scale=channels ** -0.5)
        state[f"{prefix}.fc.bias"] = 0.1 * normal(channels)

    unit("conv1", 24, stem, (2, 4, 4))
    unit("conv_2b", stem, stem, (1, 1, 1))
    unit("conv_2c", stem, conv_2c, (3, 3, 3), separable=True)
    gating("gating", conv_2c)
    channels = conv_2c
    for block, (b0, b1a, b1b, b2a, b2b, b3b) in zip(BLOCKS, widths):
        unit(f"{block}.conv_b0", channels, b0, (1, 1, 1))
        unit(f"{block}.conv_b1_a", channels, b1a, (1, 1, 1))
        unit(f"{block}.conv_b1_b", b1a, b1b, (3, 3, 3), separable=True)
        unit(f"{block}.conv_b2_a", channels, b2a, (1, 1, 1))
        unit(f"{block}.conv_b2_b", b2a, b2b, (3, 3, 3), separable=True)
        unit(f"{block}.conv_b3_b", channels, b3b, (1, 1, 1))
        for index, width in enumerate((b0, b1b, b2b, b3b)):
            gating(f"{block}.gating_b{index}", width)
        channels = b0 + b1b + b2b + b3b
    state["fc.weight"] = normal(embedding, channels, scale=channels ** -0.5)
    state["fc.bias"] = 0.1 * normal(embedding)
    if text is not None:
        vocabulary, word_size, hidden = text
        state["text_module.word_embd.weight"] = normal(vocabulary, word_size)
        state["text_module.fc1.weight"] = normal(hidden, word_size, scale=word_size ** -0.5)
        state["text_module.fc1.bias"] = 0.1 * normal(hidden)
        state["text_module.fc2.weight"] = normal(embedding, hidden, scale=hidden ** -0.5)
        state["text_module.fc2.bias"] = 0.1 * normal(embedding)
    return state


def converted_tiny_s3d(folder, **state_kwargs):
    """Write a random release-layout checkpoint, convert it with the package's converter and return the folder."""
    from vlpretrain.hub.convert.s3d import convert_s3d_howto100m

    torch.save(release_s3d_state_dict(**state_kwargs), folder / "s3d_howto100m.pth")
    return convert_s3d_howto100m(folder / "s3d_howto100m.pth", folder / "s3d")
