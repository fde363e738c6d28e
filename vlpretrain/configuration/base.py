"""The configuration fields and checks every architecture of the package shares."""

from __future__ import annotations

from typing import ClassVar

from transformers import PreTrainedConfig


class VLPretrainConfig(PreTrainedConfig):
    r"""Base of the package's configs: BERT's text-encoder fields, the pretraining objectives with their loss
    weights, and what data preparation must know about the model's inputs.

    Args:
        vocab_size: WordPiece vocabulary size (bert-base-uncased: 30522).
        hidden_size / num_attention_heads / intermediate_size / hidden_act: text-encoder sizes.
        hidden_dropout_prob / attention_probs_dropout_prob: dropout after sub-blocks and on attention weights.
        max_position_embeddings / type_vocab_size: text embedding tables.
        initializer_range: standard deviation of the N(0, std) weight initialisation.
        layer_norm_eps: epsilon of the text encoder's LayerNorms.
        loss_weights: weight of each pretraining objective in the summed ``loss``; an objective whose weight is 0
            (or missing) is switched off and its head is not built. ``None`` gives ``default_loss_weights()``.
        tie_word_embeddings: tie the masked-LM decoder to the word embeddings.

    Class attributes (not saved): ``objectives``, the objective names ``loss_weights`` accepts, in order;
    ``modalities``, the visual inputs the model reads (``"regions"``, ``"frames"`` or both), from which the
    collator decides what to pad and mask; ``region_mask_style``, how masked regions' features are replaced
    (``data.maskers.REGION_MASK_STYLES``); ``frame_mask_style``, the (zeroed, swapped) shares of masked frames,
    the rest kept (``None``: the collator's default).
    """

    objectives: ClassVar[tuple[str, ...]] = ()
    modalities: ClassVar[tuple[str, ...]] = ("regions",)
    region_mask_style: ClassVar[str | None] = "vilbert"
    frame_mask_style: ClassVar[tuple[float, float] | None] = None

    vocab_size: int = 30522
    hidden_size: int = 768
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    loss_weights: dict | None = None
    pad_token_id: int | None = 0
    tie_word_embeddings: bool = True

    def default_loss_weights(self) -> dict[str, float]:
        """The weights used when ``loss_weights`` is None: every objective at 1."""
        return {name: 1.0 for name in self.objectives}

    def checked_loss_weights(self, weights: dict | None) -> dict[str, float]:
        """``weights`` with every objective present (missing ones at 0); unknown names and negative or
        non-numeric weights are refused. Idempotent, so a subclass may call it before the base does."""
        return self.checked_objective_values("loss_weights", weights, self.default_loss_weights())

    def checked_objective_values(self, field: str, values: dict | None, defaults: dict[str, float]) -> dict[str, float]:
        """A per-objective mapping of config ``field`` (``defaults`` when None) with every objective present
        (missing ones at 0); unknown names and negative or non-numeric values are refused, naming ``field``."""
        values = dict(defaults if values is None else values)
        unknown = sorted(set(values) - set(self.objectives))
        if unknown:
            raise ValueError(f"{field}: unknown objectives {unknown}; expected a subset of {list(self.objectives)}")
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{field}: {name!r} must be a number >= 0, got {value!r}")
        return {name: float(values.get(name, 0.0)) for name in self.objectives}

    def __post_init__(self, **kwargs):
        self.loss_weights = self.checked_loss_weights(self.loss_weights)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads ({self.num_attention_heads})"
            )
        super().__post_init__(**kwargs)

    def objective_enabled(self, name: str) -> bool:
        """Whether the pretraining objective ``name`` is switched on."""
        return self.loss_weights.get(name, 0.0) > 0.0
