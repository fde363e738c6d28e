"""Configuration of VideoBERT (Sun et al., ICCV 2019): one BERT over text and visual words."""

from __future__ import annotations

from .base import VLPretrainConfig

VIDEO_BERT_OBJECTIVES = ("mlm", "visual_word", "matching")


class VideoBertConfig(VLPretrainConfig):
    r"""Configuration of [`VideoBertModel`] and its heads.

    Defaults are the paper's: BERT-large (24 layers, 1024 wide, 16 heads, FFN 4096), a WordPiece vocabulary of
    30522 plus 12^4 = 20,736 visual words (hierarchical k-means, 4 levels x 12 clusters, over 1024-d S3D clip
    features) plus the ``[>]`` token: visual word ``k`` is id ``vocab_size + k`` and ``[>]`` is
    ``vocab_size + num_visual_words`` (the re-implementations' layout; 51,259 ids in all).

    Decisions (no official code exists; see the spec's unverified items):

    - **Sequence**: ``[CLS] text [SEP] [>] v1 ... vm [SEP]``: the text keeps the tokenizer's own ``[SEP]`` before
      ``[>]`` (the paper writes ``[CLS] text [>] v ... [SEP]``), so the collators' token ids need no rewriting.
      Token types are 0 for the text and ``[>]``, 1 for the visual words and the final ``[SEP]``. Text-only
      (no frames) and video-only (no ``input_ids``: ``[CLS] [>] v ... [SEP]``) inputs are accepted too.
    - **Where clips become words**: inside the model. The fitted leaf centroids are a buffer of the model
      (``visual_word_centroids``, saved in its safetensors; ``visual_words_fitted`` records that they are
      real), and ``frame_features`` are quantised by a flat nearest-leaf search, as the re-implementation does.
      ``vlpretrain pretrain`` fits a tokenizer on the training clips when the model has none
      (``prepare_for_training_data``); ``save_pretrained`` also writes the tokenizer files
      (``visual_words.json`` / ``.safetensors``) so ``VisualWordTokenizer.from_pretrained(folder)`` loads it.
      ``visual_word_ids`` may be passed instead of features.
    - **Objectives** (``loss_weights`` keys, also the collator's objective names): ``mlm`` (masked text tokens;
      text-only completion), ``visual_word`` (the collator's masked frames become ``[MASK]``; targets are the
      words of the unmasked features; video-only completion over the same softmax) and ``matching``
      (linguistic-visual alignment: Linear(hidden, 2) on the raw final ``[CLS]`` state, as MDSKUL's
      ``vis_lin_align``; the collator's negatives are captions of other videos, where the paper uses another
      time of the same video). Weights are 1 each; the paper does not give them. 15 % of the tokens and of the clips
      are masked, each BERT style (80 / 10 / 10): a masked clip's feature is zeroed (it enters as ``[MASK]``), replaced
      by another clip of the batch (it enters as that clip's visual word, the random word) or kept, 80 / 10 / 10
      (``frame_mask_style``, read by ``collator_for_config``); the target is the word of the original clip.
    - **Positions**: each sequence is numbered as if packed (positions count the attended tokens only), so a row's
      outputs do not depend on the padding other rows of its batch add.
    - Visual-word embeddings start at the centroids when the feature size equals the hidden size (paper);
      otherwise they stay N(0, 0.02). The paper freezes the input embeddings; here they are trained.

    Args:
        vocab_size: text WordPiece vocabulary (bert-large-uncased: 30522).
        hidden_size / num_hidden_layers / num_attention_heads / intermediate_size / hidden_act: the BERT.
        hidden_dropout_prob / attention_probs_dropout_prob / max_position_embeddings / type_vocab_size /
            initializer_range / layer_norm_eps: as in BERT.
        frame_feature_size: clip feature size (S3D: 1024).
        num_visual_levels / num_visual_clusters: the k-means tree (visual words = clusters ** levels).
        visual_words_fitted: whether ``visual_word_centroids`` hold a fitted tokenizer.
        cls_token_id / sep_token_id / mask_token_id / pad_token_id: text special tokens (bert-base-uncased ids).
        loss_weights: weight of each objective in ``loss``; 0 or missing switches it off.
        tie_word_embeddings: tie the MLM decoder to the joint embedding table.
    """

    model_type = "vlpretrain-videobert"
    objectives = VIDEO_BERT_OBJECTIVES
    modalities = ("frames",)
    region_mask_style = None
    # (zeroed, swapped) shares of the masked clips; the rest are kept (collators.collator_for_config).
    frame_mask_style = (0.8, 0.1)
    lora_target_modules = ("qkv", "output.dense", "fc_in")

    hidden_size: int = 1024
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    frame_feature_size: int = 1024
    num_visual_levels: int = 4
    num_visual_clusters: int = 12
    visual_words_fitted: bool = False
    cls_token_id: int = 101
    sep_token_id: int = 102
    mask_token_id: int = 103

    def __post_init__(self, **kwargs):
        if self.num_visual_levels < 1 or self.num_visual_clusters < 2:
            raise ValueError(
                f"num_visual_levels must be >= 1 and num_visual_clusters >= 2, got {self.num_visual_levels} and "
                f"{self.num_visual_clusters}"
            )
        for name in ("cls_token_id", "sep_token_id", "mask_token_id"):
            if not 0 <= getattr(self, name) < self.vocab_size:
                raise ValueError(f"{name} must be a text token id in [0, {self.vocab_size}), got {getattr(self, name)}")
        super().__post_init__(**kwargs)

    @property
    def num_visual_words(self) -> int:
        """Number of visual words: ``num_visual_clusters ** num_visual_levels``."""
        return self.num_visual_clusters**self.num_visual_levels

    @property
    def video_separator_id(self) -> int:
        """Id of the ``[>]`` token that separates text from visual words."""
        return self.vocab_size + self.num_visual_words

    @property
    def joint_vocab_size(self) -> int:
        """Text + visual words + ``[>]``: the embedding table and MLM softmax size."""
        return self.vocab_size + self.num_visual_words + 1
