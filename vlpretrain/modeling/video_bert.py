"""VideoBERT (Sun et al., ICCV 2019): one BERT over ``[CLS] text [SEP] [>] visual words [SEP]``.

Clip features become visual words inside the model (nearest fitted leaf centroid, see
``processing/visual_words.py``); the joint vocabulary is text WordPiece + visual words + ``[>]``. Objectives:
masked text tokens, masked visual words (same softmax) and linguistic-visual alignment on the raw ``[CLS]``
state. [`VideoBertForConditionalGeneration`] generates visual words left to right with ``generate()``: each
step appends ``[MASK]`` and predicts it over the visual words (text -> video and video continuation).
See [`VideoBertConfig`] for the decisions where no code exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import GenerationConfig, GenerationMixin
from transformers import initialization as init
from transformers.modeling_outputs import CausalLMOutput
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from ..configuration.video_bert import VideoBertConfig
from ..processing.visual_words import VisualWordTokenizer
from .base import VLPreTrainedModel, check_video_text_inputs, resized_rows
from .embeddings import TextEmbeddings
from .heads import MaskedLanguageModelingHead
from .input_checks import check_values
from .layers import TransformerLayer, key_padding_mask, run_layers
from .losses import IGNORE_INDEX, classification_loss, select_rows
from .outputs import SingleStreamRetrievalOutput, StreamOutput, recording_flags


@dataclass
class VideoBertRecords(ModelOutput):
    """With ``output_hidden_states`` / ``output_attentions``, the joint sequence's embeddings followed by every
    layer's output / every layer's attention weights."""

    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class VideoBertEncoding(ModelOutput):
    """Final states of the joint sequence, with the slices of the text tokens and of the visual words.

    ``visual_word_ids`` (batch, frames) are the words the frames were quantised to (before masking).
    """

    last_hidden_state: torch.Tensor | None = None
    text_last_hidden_state: torch.Tensor | None = None
    visual_last_hidden_state: torch.Tensor | None = None
    visual_word_ids: torch.Tensor | None = None


@dataclass
class VideoBertModelOutput(VideoBertRecords, VideoBertEncoding):
    """[`VideoBertModel`]'s outputs: those of [`VideoBertEncoding`], then the [`VideoBertRecords`]."""


@dataclass
class VideoBertPreTrainingLosses(ModelOutput):
    """Losses (each unweighted, and ``loss`` their weighted sum) and predictions of [`VideoBertForPreTraining`].

    ``prediction_logits`` holds the labelled text positions only when ``labels`` are given (num_labelled, joint
    vocab), else every text position; ``visual_word_logits`` likewise for the masked frames.
    """

    loss: torch.Tensor | None = None
    mlm_loss: torch.Tensor | None = None
    visual_word_loss: torch.Tensor | None = None
    matching_loss: torch.Tensor | None = None
    prediction_logits: torch.Tensor | None = None
    visual_word_logits: torch.Tensor | None = None
    matching_logits: torch.Tensor | None = None
    visual_word_ids: torch.Tensor | None = None


@dataclass
class VideoBertForPreTrainingOutput(VideoBertRecords, VideoBertPreTrainingLosses):
    """[`VideoBertForPreTraining`]'s outputs: those of [`VideoBertPreTrainingLosses`], then the [`VideoBertRecords`]."""


class VideoBertPreTrainedModel(VLPreTrainedModel):
    """Base class of the VideoBERT models: config, weight prefix, the visual-word tokenizer's save/load."""

    config: VideoBertConfig
    config_class = VideoBertConfig
    base_model_prefix = "video_bert"
    input_modalities = ("video", "text")
    _no_split_modules = ["TransformerLayer", "TextEmbeddings"]

    def text_stream_prefix(self) -> dict[str, str]:
        prefix = "" if self.base_model is self else f"{self.base_model_prefix}."
        return {"embeddings": f"{prefix}embeddings.", "layers": f"{prefix}layers."}

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, VideoBertModel):  # no visual words until a tokenizer is fitted (set_visual_word_tokenizer)
            init.zeros_(module.visual_word_centroids)

    def resize_token_embeddings(
        self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None, mean_resizing: bool = True
    ) -> nn.Embedding:
        """Resize the *text* vocabulary to ``new_num_tokens`` (``config.vocab_size``). The joint table keeps its
        visual-word and ``[>]`` rows after the text rows (they move with it and never shrink); tied decoders and
        their output bias follow. New text rows start N(0, ``initializer_range``); ``mean_resizing`` is not used."""
        embeddings = self.get_input_embeddings()
        if new_num_tokens is None:
            return embeddings
        if pad_to_multiple_of:
            new_num_tokens = -(-new_num_tokens // pad_to_multiple_of) * pad_to_multiple_of
        config = self.config
        old_sizes = [config.vocab_size, config.num_visual_words + 1]
        new_sizes = [new_num_tokens, config.num_visual_words + 1]
        old_weight = embeddings.weight
        resized = nn.Embedding(sum(new_sizes), embeddings.embedding_dim, padding_idx=embeddings.padding_idx)
        resized.to(device=old_weight.device, dtype=old_weight.dtype)
        resized.weight.data = resized_rows(old_weight.data, old_sizes, new_sizes, std=config.initializer_range)
        self.set_input_embeddings(resized)
        self.follow_resized_embeddings(old_weight, resized, old_sizes, new_sizes)
        config.vocab_size = new_num_tokens
        return resized

    def visual_word_tokenizer(self) -> VisualWordTokenizer:
        """The fitted tokenizer held by the model (its leaf centroids; upper levels are their means)."""
        body = self.base_model
        if not self.config.visual_words_fitted:
            raise ValueError("tokenizer: this VideoBERT has no fitted visual-word tokenizer; call set_visual_word_tokenizer")
        return VisualWordTokenizer.from_leaf_centroids(
            body.visual_word_centroids, self.config.num_visual_levels, self.config.num_visual_clusters
        )

    def set_visual_word_tokenizer(self, tokenizer: VisualWordTokenizer) -> None:
        """Load a fitted tokenizer's leaf centroids; visual-word embeddings start at them when the sizes agree."""
        config, body = self.config, self.base_model
        if not tokenizer.is_fitted:
            raise ValueError("tokenizer: expected a fitted VisualWordTokenizer, got an unfitted one")
        if (tokenizer.num_levels, tokenizer.num_clusters, tokenizer.feature_size) != (
            config.num_visual_levels, config.num_visual_clusters, config.frame_feature_size
        ):
            raise ValueError(
                f"tokenizer: has {tokenizer.num_levels} levels x {tokenizer.num_clusters} clusters over "
                f"{tokenizer.feature_size}-d features; the config expects {config.num_visual_levels} x "
                f"{config.num_visual_clusters} over {config.frame_feature_size}-d"
            )
        with torch.no_grad():
            body.visual_word_centroids.copy_(tokenizer.centroids.to(body.visual_word_centroids))
            if config.frame_feature_size == config.hidden_size:
                table = body.embeddings.word_embeddings.weight
                table[config.vocab_size : config.vocab_size + config.num_visual_words] = tokenizer.centroids.to(table)
        config.visual_words_fitted = True

    def prepare_for_training_data(self, source) -> None:
        """Before pretraining (called by the ``pretrain`` recipe): fit a visual-word tokenizer on the source's
        ``frame_features`` (all frames of all videos) when the model has none (seed 0: a run is reproducible)."""
        if self.config.visual_words_fitted:
            return
        frames = np.concatenate([np.asarray(row, dtype=np.float32) for row in source["frame_features"]])
        tokenizer = VisualWordTokenizer(self.config.num_visual_levels, self.config.num_visual_clusters)
        self.set_visual_word_tokenizer(tokenizer.fit(frames))

    def save_extra_files(self, folder: Path) -> None:
        """When fitted, the visual-word tokenizer (``visual_words.json`` / ``.safetensors``) next to the weights."""
        if self.config.visual_words_fitted:
            self.visual_word_tokenizer().write_files(folder)


class VideoBertModel(VideoBertPreTrainedModel):
    """The VideoBERT encoder: joint embeddings (text + visual words + ``[>]``) and a BERT stack."""

    hub_auto_class = "AutoModel"

    def __init__(self, config: VideoBertConfig):
        super().__init__(config)
        self.embeddings = TextEmbeddings(config)
        self.embeddings.word_embeddings = nn.Embedding(config.joint_vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_hidden_layers))
        self.register_buffer("visual_word_centroids", torch.zeros(config.num_visual_words, config.frame_feature_size))
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def require_fitted_tokenizer(self) -> None:
        """Raise ``ValueError`` when the model holds no fitted visual-word tokenizer."""
        if not self.config.visual_words_fitted:
            raise ValueError(
                "frame_features: this VideoBERT has no fitted visual-word tokenizer (config.visual_words_fitted is "
                "False); fit one (`vlpretrain visual-words fit`) and call set_visual_word_tokenizer, or pass visual_word_ids"
            )

    def quantize(self, frame_features: torch.Tensor) -> torch.Tensor:
        """Visual-word ids (batch, frames) of clip features (batch, frames, frame_feature_size): nearest leaf."""
        self.require_fitted_tokenizer()
        centres = self.visual_word_centroids.float()
        flat = frame_features.detach().float().reshape(-1, centres.shape[1])
        distances = (centres**2).sum(-1)[None, :] - 2.0 * flat @ centres.T
        return distances.argmin(-1).reshape(frame_features.shape[:-1])

    def check_inputs(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        frame_features: torch.Tensor | None, frame_attention_mask: torch.Tensor | None,
        visual_word_ids: torch.Tensor | None,
    ) -> None:
        """Validate the inputs before any compute (``ValueError`` naming the argument)."""
        config = self.config
        if frame_features is not None and visual_word_ids is not None:
            raise ValueError("visual_word_ids: pass either frame_features or visual_word_ids, not both")
        if input_ids is None and frame_features is None and visual_word_ids is None:
            raise ValueError("input_ids: expected text ids, frame_features or visual_word_ids; got none of them")
        if input_ids is not None and (input_ids.dim() != 2 or input_ids.is_floating_point()):
            raise ValueError(f"input_ids: expected an integer (batch, text_length) tensor, got {tuple(input_ids.shape)} {input_ids.dtype}")
        compiling = torch.compiler.is_compiling()  # range checks read the tensors: eager calls only
        if input_ids is not None and input_ids.numel() and not compiling and (int(input_ids.min()) < 0 or int(input_ids.max()) >= config.vocab_size):
            raise ValueError(f"input_ids: expected text token ids in [0, {config.vocab_size}); visual words go in visual_word_ids")
        if frame_features is not None:
            reference = input_ids if input_ids is not None else torch.zeros(frame_features.shape[0], 1, dtype=torch.long)
            check_video_text_inputs(config, reference, attention_mask, None, frame_features, frame_attention_mask)
            self.require_fitted_tokenizer()
            check_values(config, {"frame_features": frame_features}, {})  # also for prompts built outside forward
        if visual_word_ids is not None:
            if visual_word_ids.dim() != 2 or visual_word_ids.is_floating_point():
                raise ValueError(f"visual_word_ids: expected an integer (batch, frames) tensor, got {tuple(visual_word_ids.shape)}")
            if not compiling and visual_word_ids.numel() and (int(visual_word_ids.min()) < 0 or int(visual_word_ids.max()) >= config.num_visual_words):
                raise ValueError(
                    f"visual_word_ids: expected ids in [0, {config.num_visual_words}), got values in "
                    f"[{int(visual_word_ids.min())}, {int(visual_word_ids.max())}]"
                )
            if input_ids is not None and visual_word_ids.shape[0] != input_ids.shape[0]:
                raise ValueError(f"visual_word_ids: expected batch {input_ids.shape[0]} like input_ids, got {visual_word_ids.shape[0]}")
            if frame_attention_mask is not None and frame_attention_mask.shape != visual_word_ids.shape:
                raise ValueError(f"frame_attention_mask: expected shape {tuple(visual_word_ids.shape)}, got {tuple(frame_attention_mask.shape)}")
        if input_ids is not None and attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask: expected shape {tuple(input_ids.shape)}, got {tuple(attention_mask.shape)}")
        text = 0 if input_ids is None else input_ids.shape[1]
        frames = 0
        if frame_features is not None or visual_word_ids is not None:
            frames = (frame_features if frame_features is not None else visual_word_ids).shape[1] + 2
        if text + frames + (1 if input_ids is None else 0) > config.max_position_embeddings:
            raise ValueError(
                f"input_ids: text ({text}) plus frames with [>] and [SEP] ({frames}) exceed max_position_embeddings "
                f"({config.max_position_embeddings})"
            )

    def joint_sequence(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        visual_word_ids: torch.Tensor | None,
        frame_attention_mask: torch.Tensor | None,
        masked_frames: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """Joint ids, attention mask and token types of ``[CLS] text [SEP] [>] v ... [SEP]``, and where the visual
        words start. Masked frames become ``[MASK]``; visual word ``k`` becomes ``vocab_size + k``."""
        config = self.config
        reference = input_ids if input_ids is not None else visual_word_ids
        batch, device = reference.shape[0], reference.device
        if input_ids is None:
            input_ids = torch.full((batch, 1), config.cls_token_id, dtype=torch.long, device=device)
        text_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.long()
        if visual_word_ids is None:
            return input_ids.long(), text_mask, torch.zeros_like(input_ids), input_ids.shape[1]
        visual = visual_word_ids.long() + config.vocab_size
        if masked_frames is not None:
            visual = visual.masked_fill(masked_frames.bool(), config.mask_token_id)
        frame_mask = torch.ones_like(visual) if frame_attention_mask is None else frame_attention_mask.long()
        one = torch.ones(batch, 1, dtype=torch.long, device=device)
        ids = torch.cat([input_ids.long(), one * config.video_separator_id, visual, one * config.sep_token_id], 1)
        mask = torch.cat([text_mask, one, frame_mask, one], 1)
        types = torch.cat([torch.zeros_like(input_ids), 0 * one, torch.ones_like(visual), one], 1)
        return ids, mask, types, input_ids.shape[1] + 1

    def encode_joint(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        types: torch.Tensor,
        output_attentions: bool = False, output_hidden_states: bool = False,
    ) -> StreamOutput:
        """The BERT stack over a joint sequence (ids in the joint vocabulary).

        Each token's position is its index among the attended tokens of its row (``mask``), as if every sequence were
        packed without padding: ``[>]``, the visual words and the final ``[SEP]`` keep their positions whatever padding
        the other rows of the batch add (padded positions are never attended)."""
        positions = (mask.long().cumsum(1) - 1).clamp_min(0)
        hidden = self.embeddings(input_ids=ids, token_type_ids=types, position_ids=positions)
        return run_layers(
            self.layers, hidden, key_padding_mask(mask, hidden.dtype, self.config._attn_implementation),
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        frame_features: torch.Tensor | None = None, frame_attention_mask: torch.Tensor | None = None,
        visual_word_ids: torch.Tensor | None = None, masked_frames: torch.Tensor | None = None,
        output_attentions: bool | None = None, output_hidden_states: bool | None = None,
    ) -> VideoBertModelOutput:
        """Encode text (``input_ids`` (B, T) with the tokenizer's ``[CLS]``/``[SEP]``) and video (``frame_features``
        (B, F, D) quantised here, or ``visual_word_ids`` (B, F)); either side may be absent. ``token_type_ids`` are
        derived from the layout (text 0, video 1) and the argument is ignored. ``masked_frames`` (B, F) replaces
        those visual words by ``[MASK]``; with ``frame_features``, only the masked clips whose features are all zero
        (the collator's 80 %; the rest of the masked clips are kept or swapped)."""
        self.check_inputs(input_ids, attention_mask, frame_features, frame_attention_mask, visual_word_ids)
        return self.encode(
            input_ids=input_ids, attention_mask=attention_mask, frame_features=frame_features,
            frame_attention_mask=frame_attention_mask, visual_word_ids=visual_word_ids, masked_frames=masked_frames,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )

    def encode(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        frame_features: torch.Tensor | None, frame_attention_mask: torch.Tensor | None,
        visual_word_ids: torch.Tensor | None,
        masked_frames: torch.Tensor | None = None,
        output_attentions: bool | None = None, output_hidden_states: bool | None = None,
    ) -> VideoBertModelOutput:
        """The forward pass on checked inputs (used by the task heads)."""
        if frame_features is not None:
            visual_word_ids = self.quantize(frame_features)
            if masked_frames is not None:
                # The collator zeroes 80 % of the masked clips (they become [MASK]); the others are quantised: 10 %
                # carry another clip's feature (a random word), 10 % their own (BERT's 80 / 10 / 10).
                masked_frames = masked_frames.bool() & (frame_features == 0).all(-1)
        ids, mask, types, visual_start = self.joint_sequence(
            input_ids, attention_mask, visual_word_ids, frame_attention_mask, masked_frames
        )
        joint = self.encode_joint(ids, mask, types, **recording_flags(self.config, output_attentions, output_hidden_states))
        hidden = joint.last_hidden_state
        num_frames = 0 if visual_word_ids is None else visual_word_ids.shape[1]
        return VideoBertModelOutput(
            last_hidden_state=hidden,
            text_last_hidden_state=hidden[:, : input_ids.shape[1]] if input_ids is not None else None,
            visual_last_hidden_state=hidden[:, visual_start : visual_start + num_frames] if num_frames else None,
            visual_word_ids=visual_word_ids,
            hidden_states=joint.hidden_states,
            attentions=joint.attentions,
        )


class _VideoBertWithLMHead(VideoBertPreTrainedModel):
    """Shared pieces of the models with the MLM head over the joint vocabulary (tied to the embeddings)."""

    _tied_weights_keys = {"mlm_head.decoder.weight": "video_bert.embeddings.word_embeddings.weight"}


class VideoBertForPreTraining(_VideoBertWithLMHead):
    """VideoBERT with masked text completion (``labels``), masked visual-word completion (``masked_frames`` with
    ``frame_feature_targets`` or ``visual_word_labels``) and linguistic-visual alignment (``matched_labels``:
    1 aligned, 0 not)."""

    hub_auto_class = "AutoModelForPreTraining"

    def __init__(self, config: VideoBertConfig):
        super().__init__(config)
        self.video_bert = VideoBertModel(config)
        self.mlm_head = MaskedLanguageModelingHead(config.hidden_size, config.joint_vocab_size, config.hidden_act, config.layer_norm_eps)
        self.alignment_head = nn.Linear(config.hidden_size, 2) if config.objective_enabled("matching") else None
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        frame_features: torch.Tensor | None = None, frame_attention_mask: torch.Tensor | None = None,
        visual_word_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None, masked_frames: torch.Tensor | None = None,
        frame_feature_targets: torch.Tensor | None = None, visual_word_labels: torch.Tensor | None = None,
        matched_labels: torch.Tensor | None = None,
        output_attentions: bool | None = None, output_hidden_states: bool | None = None,
    ) -> VideoBertForPreTrainingOutput:
        config, body = self.config, self.video_bert
        body.check_inputs(input_ids, attention_mask, frame_features, frame_attention_mask, visual_word_ids)
        video = frame_features if frame_features is not None else visual_word_ids
        _check_targets(
            input_ids, video, labels=labels, masked_frames=masked_frames, frame_feature_targets=frame_feature_targets,
            visual_word_labels=visual_word_labels, matched_labels=matched_labels, num_visual_words=config.num_visual_words,
        )
        if frame_feature_targets is not None:
            body.check_inputs(
                input_ids=None, attention_mask=None, frame_features=frame_feature_targets,
                frame_attention_mask=frame_attention_mask, visual_word_ids=None,
            )
        encoded = body.encode(
            input_ids=input_ids, attention_mask=attention_mask, frame_features=frame_features,
            frame_attention_mask=frame_attention_mask, visual_word_ids=visual_word_ids, masked_frames=masked_frames,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )
        text, visual = encoded.text_last_hidden_state, encoded.visual_last_hidden_state
        # The labelled text tokens and masked frames, found with one device sync.
        selections: dict[str, torch.Tensor] = {}
        if text is not None and labels is not None and config.objective_enabled("mlm"):
            selections["mlm"] = labels != IGNORE_INDEX
        if visual is not None and masked_frames is not None and config.objective_enabled("visual_word"):
            visual_targets = visual_word_labels
            if visual_targets is None:
                # Words of the unmasked clips: the collator's original features, else the given (unmasked) ids.
                words = body.quantize(frame_feature_targets) if frame_feature_targets is not None else encoded.visual_word_ids
                valid = masked_frames.bool() if frame_attention_mask is None else masked_frames.bool() & frame_attention_mask.bool()
                visual_targets = words.masked_fill(~valid, IGNORE_INDEX)
            selections["visual_word"] = visual_targets != IGNORE_INDEX
        rows = dict(zip(selections, select_rows(*selections.values())))
        losses: dict[str, torch.Tensor] = {}
        prediction_logits = visual_logits = matching_logits = None
        if "mlm" in rows:
            prediction_logits = self.mlm_head(text, rows["mlm"])
            losses["mlm"] = classification_loss(prediction_logits, labels.reshape(-1).index_select(0, rows["mlm"]))
        elif text is not None:
            prediction_logits = self.mlm_head(text)
        if "visual_word" in rows:
            visual_logits = self.mlm_head(visual, rows["visual_word"])
            targets = visual_targets.reshape(-1).index_select(0, rows["visual_word"]) + config.vocab_size
            losses["visual_word"] = classification_loss(visual_logits, targets)
        if self.alignment_head is not None and text is not None and visual is not None:
            matching_logits = self.alignment_head(encoded.last_hidden_state[:, 0])
            if matched_labels is not None:
                losses["matching"] = classification_loss(matching_logits, matched_labels)
        loss = sum(config.loss_weights[name] * value for name, value in losses.items()) if losses else None
        return VideoBertForPreTrainingOutput(
            loss=loss,
            mlm_loss=losses.get("mlm"),
            visual_word_loss=losses.get("visual_word"),
            matching_loss=losses.get("matching"),
            prediction_logits=prediction_logits,
            visual_word_logits=visual_logits,
            matching_logits=matching_logits,
            visual_word_ids=encoded.visual_word_ids,
            hidden_states=encoded.hidden_states,
            attentions=encoded.attentions,
        )


class VideoBertForVideoTextRetrieval(VideoBertPreTrainedModel):
    """VideoBERT scoring (video, text) pairs with the alignment head on the final ``[CLS]`` state; ``scores`` =
    aligned minus not-aligned logit; ``labels`` (1 aligned, 0 not) train it. The head has the pretraining name."""

    hub_auto_class = "AutoModelForSequenceClassification"

    def __init__(self, config: VideoBertConfig):
        super().__init__(config)
        self.video_bert = VideoBertModel(config)
        self.alignment_head = nn.Linear(config.hidden_size, 2)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
        frame_features: torch.Tensor | None = None, frame_attention_mask: torch.Tensor | None = None,
        visual_word_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
        output_attentions: bool | None = None, output_hidden_states: bool | None = None,
    ) -> SingleStreamRetrievalOutput:
        if input_ids is None or (frame_features is None and visual_word_ids is None):
            raise ValueError("input_ids: retrieval scores text against video; pass input_ids and frame_features (or visual_word_ids)")
        self.video_bert.check_inputs(input_ids, attention_mask, frame_features, frame_attention_mask, visual_word_ids)
        if labels is not None and (labels.is_floating_point() or tuple(labels.shape) != (input_ids.shape[0],)):
            raise ValueError(f"labels: expected integer alignment labels of shape ({input_ids.shape[0]},)")
        encoded = self.video_bert.encode(
            input_ids=input_ids, attention_mask=attention_mask, frame_features=frame_features,
            frame_attention_mask=frame_attention_mask, visual_word_ids=visual_word_ids,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )
        pooled = encoded.last_hidden_state[:, 0]
        logits = self.alignment_head(pooled)
        loss = classification_loss(logits, labels) if labels is not None else None
        return SingleStreamRetrievalOutput(
            loss=loss, logits=logits, scores=logits[:, 1] - logits[:, 0], pooled_output=pooled,
            hidden_states=encoded.hidden_states, attentions=encoded.attentions,
        )


class VideoBertForConditionalGeneration(_VideoBertWithLMHead, GenerationMixin):
    """VideoBERT generating visual words with ``generate()``: text -> video and video continuation.

    ``input_ids`` here are **joint-vocabulary** ids (build prompts with :meth:`text_to_video_prompt` or
    :meth:`continuation_prompt`). Each step appends ``[MASK]`` to the sequence, runs the bidirectional encoder
    and returns the logits of that position restricted to the visual words (every other id gets the lowest
    score), so greedy search, sampling and beam search of ``generate()`` all produce visual words. There is no
    key/value cache (the encoder is bidirectional). Turn the output into words with :meth:`generated_visual_words`
    and show them with ``VisualWordTokenizer.nearest_clips``.
    """

    hub_auto_class = "AutoModelForMaskedLM"

    def __init__(self, config: VideoBertConfig):
        super().__init__(config)
        self.video_bert = VideoBertModel(config)
        self.mlm_head = MaskedLanguageModelingHead(config.hidden_size, config.joint_vocab_size, config.hidden_act, config.layer_norm_eps)
        self.post_init()
        self.generation_config = GenerationConfig(
            pad_token_id=config.pad_token_id, eos_token_id=None, bos_token_id=config.cls_token_id, use_cache=False
        )

    def text_to_video_prompt(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``[CLS] text [SEP] [>]`` for text -> video generation (text ids from the tokenizer, left-padded or unpadded)."""
        self.video_bert.check_inputs(
            input_ids=input_ids, attention_mask=attention_mask, frame_features=None, frame_attention_mask=None, visual_word_ids=None
        )
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.long()
        separator = torch.full_like(input_ids[:, :1], self.config.video_separator_id)
        return {"input_ids": torch.cat([input_ids.long(), separator], 1), "attention_mask": torch.cat([mask, torch.ones_like(separator)], 1)}

    def continuation_prompt(
        self, frame_features: torch.Tensor | None = None, visual_word_ids: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """``[CLS] [>] v1 ... vk`` for video continuation (future visual words) from clip features or word ids."""
        body = self.video_bert
        body.check_inputs(
            input_ids=None, attention_mask=None, frame_features=frame_features, frame_attention_mask=None,
            visual_word_ids=visual_word_ids,
        )
        words = body.quantize(frame_features) if frame_features is not None else visual_word_ids.long()
        prefix = torch.tensor([[self.config.cls_token_id, self.config.video_separator_id]], device=words.device)
        ids = torch.cat([prefix.expand(words.shape[0], 2), words + self.config.vocab_size], 1)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def generated_visual_words(self, sequences: torch.Tensor, prompt_length: int) -> torch.Tensor:
        """Visual-word ids (batch, new tokens) of ``generate()``'s output after a prompt of ``prompt_length``."""
        words = sequences[:, prompt_length:] - self.config.vocab_size
        if words.numel() and (int(words.min()) < 0 or int(words.max()) >= self.config.num_visual_words):
            raise ValueError("sequences: the generated part holds ids outside the visual words")
        return words

    def input_bounds(self) -> dict[str, str | int]:
        """``input_ids`` are joint-vocabulary ids here (``forward`` checks them)."""
        return {name: bound for name, bound in super().input_bounds().items() if name != "input_ids"}

    def prepare_inputs_for_generation(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs
    ) -> dict[str, torch.Tensor | None]:
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None, output_hidden_states: bool | None = None,
        **kwargs,
    ) -> CausalLMOutput:
        """Logits (batch, 1, joint vocab) of the next visual word after joint-vocabulary ``input_ids``."""
        config = self.config
        if input_ids is None or input_ids.dim() != 2 or input_ids.is_floating_point():
            raise ValueError("input_ids: expected integer joint-vocabulary ids of shape (batch, length)")
        if int(input_ids.min()) < 0 or int(input_ids.max()) >= config.joint_vocab_size:
            raise ValueError(f"input_ids: expected joint-vocabulary ids in [0, {config.joint_vocab_size})")
        if input_ids.shape[1] + 1 > config.max_position_embeddings:
            raise ValueError(f"input_ids: {input_ids.shape[1]} tokens plus [MASK] exceed max_position_embeddings ({config.max_position_embeddings})")
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.long()
        ids = torch.cat([input_ids, torch.full_like(input_ids[:, :1], config.mask_token_id)], 1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        is_separator = (ids == config.video_separator_id).long()
        types = ((is_separator.cumsum(1) - is_separator) > 0).long()
        joint = self.video_bert.encode_joint(ids, mask, types, **recording_flags(config, output_attentions, output_hidden_states))
        logits = self.mlm_head(joint.last_hidden_state[:, -1:]).float()
        allowed = torch.zeros(config.joint_vocab_size, dtype=torch.bool, device=logits.device)
        allowed[config.vocab_size : config.vocab_size + config.num_visual_words] = True
        logits = logits.masked_fill(~allowed, torch.finfo(logits.dtype).min)
        return CausalLMOutput(logits=logits, hidden_states=joint.hidden_states, attentions=joint.attentions)


def _check_targets(
    input_ids: torch.Tensor | None,
    video: torch.Tensor | None,
    *,
    labels: torch.Tensor | None,
    masked_frames: torch.Tensor | None,
    frame_feature_targets: torch.Tensor | None,
    visual_word_labels: torch.Tensor | None,
    matched_labels: torch.Tensor | None,
    num_visual_words: int,
) -> None:
    """Shapes of the pretraining targets against the inputs (and visual-word labels against the vocabulary), before any
    compute."""
    if labels is not None and (input_ids is None or labels.shape != input_ids.shape or labels.is_floating_point()):
        raise ValueError(f"labels: expected integer ids shaped like input_ids {None if input_ids is None else tuple(input_ids.shape)}")
    frames = None if video is None else tuple(video.shape[:2])
    for name, tensor in (("masked_frames", masked_frames), ("visual_word_labels", visual_word_labels)):
        if tensor is not None and (frames is None or tuple(tensor.shape) != frames):
            raise ValueError(f"{name}: expected shape {frames} (batch, frames)")
    if visual_word_labels is not None and (visual_word_labels.is_floating_point() or not torch.compiler.is_compiling() and bool(
            ((visual_word_labels != IGNORE_INDEX) & ((visual_word_labels < 0) | (visual_word_labels >= num_visual_words))).any())):
        raise ValueError(f"visual_word_labels: expected integer visual-word ids in [0, {num_visual_words}) or -100")
    if frame_feature_targets is not None and (frames is None or tuple(frame_feature_targets.shape[:2]) != frames):
        raise ValueError(f"frame_feature_targets: expected shape {frames} + (frame_feature_size,)")
    if matched_labels is not None:
        batch = (input_ids if input_ids is not None else video).shape[0]
        if matched_labels.is_floating_point() or tuple(matched_labels.shape) != (batch,):
            raise ValueError(f"matched_labels: expected integer labels of shape ({batch},)")
