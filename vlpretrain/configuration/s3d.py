"""Configuration of S3D-G as trained with MIL-NCE on HowTo100M (Miech et al. 2020), the clip feature extractor of UniVL."""

from __future__ import annotations

from transformers import PreTrainedConfig

# Output widths of the inception blocks of antoine77340/S3D_HowTo100M s3dg.py, in order mixed_3b, 3c, 4b-4f, 5b, 5c:
# branch 0 (1x1x1), branch 1 (1x1x1 -> separable 3x3x3), branch 2 (1x1x1 -> separable 3x3x3), branch 3 (pool -> 1x1x1).
S3D_BLOCK_NAMES = ("mixed_3b", "mixed_3c", "mixed_4b", "mixed_4c", "mixed_4d", "mixed_4e", "mixed_4f", "mixed_5b", "mixed_5c")
S3D_INCEPTION_WIDTHS = (
    (64, 96, 128, 16, 32, 32),
    (128, 128, 192, 32, 96, 64),
    (192, 96, 208, 16, 48, 64),
    (160, 112, 224, 24, 64, 64),
    (128, 128, 256, 24, 64, 64),
    (112, 144, 288, 32, 64, 64),
    (256, 160, 320, 32, 128, 128),
    (256, 160, 320, 32, 128, 128),
    (384, 192, 384, 48, 128, 128),
)


class S3DConfig(PreTrainedConfig):
    r"""Configuration of [`S3DModel`].

    Defaults are the released ``s3d_howto100m.pth`` (antoine77340/S3D_HowTo100M): space-to-depth stem (2x2x2 blocks
    of the RGB input become 24 channels), self-gated inception blocks, the 1024-d ``mixed_5c`` average and a
    1024 -> 512 projection into the joint text-video space; the text tower embeds up to 16 word ids (word2vec
    vocabulary of 66,250 words, id 0 = padding), projects them to 2048, max-pools and projects to 512.

    Args:
        num_channels: colour channels of ``pixel_values_videos`` (3, RGB).
        stem_channels / conv_2c_channels: widths of ``conv1`` / ``conv_2b`` (64) and ``conv_2c`` (192).
        inception_widths: six widths per inception block (see ``S3D_INCEPTION_WIDTHS``); the last block's
            branch outputs 0, 2, 4 and 5 add up to the pooled feature size (1024).
        embedding_size: size of the joint text-video space (512).
        use_text_module: build the text tower (the release ships its weights; UniVL's extractor ignores them).
        text_vocab_size / word_embedding_size / text_hidden_size / max_words: the text tower (66250 / 300 / 2048 / 16).
        batch_norm_eps / batch_norm_momentum: PyTorch BatchNorm3d defaults, as in the release (1e-5 / 0.1).
        initializer_range: std of the normal initialisation of linear and convolution weights (new models only).

    Smaller ``stem_channels`` / ``conv_2c_channels`` / ``inception_widths`` give the same architecture narrower;
    the tests use such a config, the released weights need the defaults.
    """

    model_type = "vlpretrain-s3d"

    num_channels: int = 3
    stem_channels: int = 64
    conv_2c_channels: int = 192
    inception_widths: list | None = None
    embedding_size: int = 512
    use_text_module: bool = True
    text_vocab_size: int = 66250
    word_embedding_size: int = 300
    text_hidden_size: int = 2048
    max_words: int = 16
    batch_norm_eps: float = 1e-5
    batch_norm_momentum: float = 0.1
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        widths = [list(block) for block in (S3D_INCEPTION_WIDTHS if self.inception_widths is None else self.inception_widths)]
        if len(widths) != len(S3D_BLOCK_NAMES) or any(len(block) != 6 or min(block) <= 0 for block in widths):
            raise ValueError(
                f"inception_widths: expected {len(S3D_BLOCK_NAMES)} lists of 6 positive widths "
                f"({', '.join(S3D_BLOCK_NAMES)}), got {self.inception_widths!r}"
            )
        self.inception_widths = widths
        for name in ("num_channels", "stem_channels", "conv_2c_channels", "embedding_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        super().__post_init__(**kwargs)

    @property
    def feature_size(self) -> int:
        """Size of the pooled ``mixed_5c`` feature (1024 for the release)."""
        b0, _, b1, _, b2, b3 = self.inception_widths[-1]
        return b0 + b1 + b2 + b3
