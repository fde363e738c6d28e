"""The base ``PreTrainedModel`` of the package: initialisation, checkpointing flags, Hub export, input checks."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init

from ..utils.bert_keys import bert_text_stream_state_dict
from ..utils.folders import staged_save
from ..utils.log import get_logger
from ..utils.remote_code import auto_map_reference, write_flat_modules
from .embeddings import RegionEmbeddings
from .heads import MaskedLanguageModelingHead
from .input_checks import ID_BOUNDS, LABEL_BOUNDS_BY_AUTO_CLASS, check_forward_inputs

logger = get_logger(__name__)


class VLPreTrainedModel(PreTrainedModel):
    """Shared behaviour of every model of the package.

    - Weights start N(0, ``initializer_range``) with zero biases and unit LayerNorms; unlike transformers'
      default, the ``padding_idx`` rows of embeddings keep their random values, as the original code bases do.
    - Layers are ``GradientCheckpointingLayer``s, so ``activation_checkpointing_enable()`` works.
    - ``save_pretrained`` also writes a flat copy of the modules the model needs and an ``auto_map``,
      so the folder loads with transformers alone (``trust_remote_code=True``).
    - ``accepts_loss_kwargs = False``: losses are means over the micro-batch, so the Trainer must scale them for
      gradient accumulation itself.
    """

    base_model_prefix = "model"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_attention_backend = True
    accepts_loss_kwargs = False
    # The Auto class under which this class is listed in an export's ``auto_map`` (None: not listed).
    hub_auto_class: str | None = None
    # The label inputs the Trainer needs in a batch before it asks for the loss (``utils/trainer_labels.py``); None:
    # transformers' rule (every ``forward`` parameter named like a label). ``...ForPreTraining`` classes declare none:
    # their loss comes from whichever targets a batch has.
    trainer_label_names: tuple[str, ...] | None = None
    # The attribute holding the head whose ``decoder`` projects onto the vocabulary (tied to the word embeddings).
    vocabulary_head_name: str = "mlm_head"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__name__.endswith("ForPreTraining") and "trainer_label_names" not in cls.__dict__:
            cls.trainer_label_names = ()

    # The config field giving the longest text the position table holds (None: the family checks its own).
    text_position_limit: str | None = "max_position_embeddings"

    def post_init(self) -> None:
        """Initialise the weights and register the shared input checks (``input_checks.check_forward_inputs``).

        Retrieval heads (``AutoModelForSequenceClassification``) score two classes, 0 not matched and 1 matched, so
        they refuse a config with another ``num_labels`` (a VQA config's answer count, say) before building."""
        if self.hub_auto_class == "AutoModelForSequenceClassification" and self.config.num_labels != 2:
            raise ValueError(
                f"num_labels: {type(self).__name__} scores 2 classes (0 not matched, 1 matched), expected num_labels=2, "
                f"got {self.config.num_labels}; from_pretrained(..., num_labels=2) overrides a checkpoint's value"
            )
        super().post_init()
        self.register_forward_pre_hook(check_forward_inputs, with_kwargs=True)

    def input_bounds(self) -> dict[str, str | int]:
        """Exclusive upper bounds of the integer inputs (config field names or numbers), by argument name;
        integer ``labels`` follow the head's Auto class (token ids for pretraining, answers for VQA, 0/1 for
        matching). A head whose ids mean something else overrides this."""
        bounds = dict(ID_BOUNDS)
        label_bound = LABEL_BOUNDS_BY_AUTO_CLASS.get(self.hub_auto_class or "")
        if label_bound is not None:
            bounds["labels"] = label_bound
        return bounds

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, MaskedLanguageModelingHead):
            init.zeros_(module.bias)
        elif isinstance(module, RegionEmbeddings) and module.zero_feature_embedding is not None:
            init.zeros_(module.zero_feature_embedding)

    def get_output_embeddings(self) -> nn.Linear | None:
        """The vocabulary projection of the model's ``vocabulary_head_name`` head (None for models without one)."""
        head = getattr(self, self.vocabulary_head_name, None)
        return head.decoder if head is not None else None

    def set_output_embeddings(self, value: nn.Linear) -> None:
        getattr(self, self.vocabulary_head_name).decoder = value

    def enable_input_require_grads(self) -> None:
        """transformers' hook on the word embeddings, plus the same on every other input embedding module (regions,
        frames, actions: each ``...Embeddings`` module besides the text one). With frozen embeddings (adapters) and
        reentrant activation checkpointing, a checkpointed layer whose input does not require grad gets no gradient,
        so without these hooks no visual layer of a stream would train."""
        super().enable_input_require_grads()
        hooks = list(getattr(self, "_require_grads_hooks", None) or [])
        text = {id(module.get_input_embeddings()) for module in self.modules() if isinstance(module, PreTrainedModel)}
        for module in self.modules():
            if type(module).__name__.endswith("Embeddings") and not any(id(child) in text for child in module.children()):
                hooks.append(module.register_forward_hook(_outputs_require_grad))
        self._require_grads_hooks = hooks

    def _adjust_missing_and_unexpected_keys(self, loading_info) -> None:
        """Summarise an expected head swap in one line instead of transformers' MISSING / UNEXPECTED table.

        A task model started from another class's checkpoint (VQA from pretraining, say) misses exactly its new
        heads and finds the other class's heads unused. When every missing and unexpected key lies outside the encoder
        and no size mismatches, one warning names the initialised and the dropped heads, and the keys leave the report
        (so ``output_loading_info`` no longer lists them). Anything touching the encoder keeps the full report."""
        super()._adjust_missing_and_unexpected_keys(loading_info)
        missing, unexpected = set(loading_info.missing_keys), set(loading_info.unexpected_keys)
        if not (missing or unexpected) or loading_info.mismatched_keys:
            return
        encoder = {self.base_model_prefix} if self.base_model is not self else {name for name, _ in self.named_children()}
        heads = {key: key.split(".")[0] for key in missing | unexpected}
        if any(head in encoder for head in heads.values()):
            return
        source = (getattr(self.config, "architectures", None) or ["the checkpoint"])[0]
        source_heads = "the pretraining heads" if source.endswith("ForPreTraining") else f"the heads of {source}"
        parts = []
        if missing:
            parts.append(f"initialised the new head(s) {', '.join(sorted({heads[key] for key in missing}))}")
        if unexpected:
            parts.append(f"dropped {source_heads} ({', '.join(sorted({heads[key] for key in unexpected}))})")
        where = getattr(self.config, "_name_or_path", "") or "the checkpoint"
        logger.warning(f"{type(self).__name__} from {where}: {'; '.join(parts)}")
        loading_info.missing_keys = set()
        loading_info.unexpected_keys = set()

    def resize_token_embeddings(
        self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None, mean_resizing: bool = True
    ) -> nn.Embedding:
        """Resize the word embeddings as transformers does (tied decoders follow), and the output bias of every
        masked-language-modelling head decoding to them (kept rows keep their bias, new rows start at 0)."""
        old_weight = self.get_input_embeddings().weight
        old_rows = old_weight.shape[0]
        embeddings = super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
        self.follow_resized_embeddings(old_weight, embeddings, [old_rows], [embeddings.weight.shape[0]])
        return embeddings

    def follow_resized_embeddings(
        self, old_weight: torch.Tensor, embeddings: nn.Embedding, old_sizes: list[int], new_sizes: list[int]
    ) -> None:
        """Point every masked-language-modelling head that decoded to ``old_weight`` at the resized ``embeddings``
        and resize its output bias block by block (``old_sizes`` -> ``new_sizes`` rows, new rows at 0)."""
        for head in self.modules():
            if isinstance(head, MaskedLanguageModelingHead) and head.decoder.weight in (old_weight, embeddings.weight):
                head.decoder.weight = embeddings.weight
                head.decoder.out_features = embeddings.weight.shape[0]
                if head.bias.shape[0] != embeddings.weight.shape[0]:
                    head.bias = nn.Parameter(resized_rows(head.bias.data, old_sizes, new_sizes))

    def hub_auto_map(self) -> dict[str, str]:
        """The ``auto_map`` of an export: the config and every class of this model's module with a ``hub_auto_class``."""
        auto_map = {"AutoConfig": auto_map_reference(type(self.config))}
        module = sys.modules[type(self).__module__]
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == module.__name__ and value.__dict__.get("hub_auto_class"):
                auto_map[value.__dict__["hub_auto_class"]] = auto_map_reference(value)
        return auto_map

    def save_pretrained(self, save_directory: str | os.PathLike, *args, remote_code: bool = False, **kwargs) -> None:
        """Save weights (safetensors), config and :meth:`save_extra_files` into a hidden sibling folder, then swap it
        in place of ``save_directory`` in one rename (files already there that this save does not write are kept), so
        a kill leaves either the old folder or the new one.

        ``remote_code=True`` (what ``vlpretrain export``, ``vlpretrain push`` and ``push_to_hub`` use) also writes the
        flat remote code and the ``auto_map``, so the folder loads with transformers alone (``trust_remote_code``).
        Without it (Trainer checkpoints, say) the folder loads where the package is installed."""
        remote_code = remote_code or getattr(self, "_pushing_to_hub", False)
        auto_map = self.config.__dict__.pop("auto_map", None)
        if remote_code:
            self.config.auto_map = self.hub_auto_map()
        try:
            if not kwargs.get("is_main_process", True):
                # Other ranks only join the collectives of a sharded save; the main rank writes and swaps the folder.
                super().save_pretrained(save_directory, *args, **kwargs)
                return
            with staged_save(save_directory) as staging:
                super().save_pretrained(staging, *args, **kwargs)
                if remote_code:
                    write_flat_modules([type(self).__module__, type(self.config).__module__], staging)
                self.save_extra_files(staging)
        finally:
            if auto_map is not None and not remote_code:
                self.config.auto_map = auto_map

    def push_to_hub(self, *args, **kwargs):
        """transformers' ``push_to_hub``, with the flat remote code (see ``save_pretrained``)."""
        self._pushing_to_hub = True
        try:
            return super().push_to_hub(*args, **kwargs)
        finally:
            del self._pushing_to_hub

    def save_extra_files(self, folder: Path) -> None:
        """Files a model writes next to its weights (saved in the same swap); none by default."""

    def load_text_encoder_from_bert(self, bert: str | os.PathLike | nn.Module) -> list[str]:
        """Initialise the text embeddings and text layers from a BERT checkpoint (path or ``BertModel``).

        Returns the names of the parameters that were loaded. Sizes must match (hidden size, heads,
        intermediate size); the first ``len(text layers)`` BERT layers are used. The key renames are
        ``utils/bert_keys.py``'s, shared with the checkpoint converters (``hub/convert/``) so that the model side
        never imports the converters.
        """
        from transformers import BertModel

        if not isinstance(bert, nn.Module):
            bert = BertModel.from_pretrained(bert)
        state = bert_text_stream_state_dict(bert.state_dict(), self.text_stream_prefix())
        own = self.state_dict()
        selected = {}
        for name, tensor in state.items():
            if name not in own:
                continue
            if own[name].shape != tensor.shape:
                raise ValueError(
                    f"bert: parameter {name} has shape {tuple(tensor.shape)} in the checkpoint but "
                    f"{tuple(own[name].shape)} in this model; the text stream must match BERT's sizes"
                )
            selected[name] = tensor
        if not selected:
            raise ValueError("bert: no parameter of the checkpoint matches this model's text stream")
        self.load_state_dict(selected, strict=False)
        return sorted(selected)

    def text_stream_prefix(self) -> dict[str, str]:
        """Where BERT's embeddings and encoder layers live in this model (overridden by architectures)."""
        raise NotImplementedError(f"{type(self).__name__} does not define a text stream to initialise from BERT")


def _outputs_require_grad(module: nn.Module, inputs, output) -> None:
    """Forward hook: make a module's floating-point output(s) require grad (see ``enable_input_require_grads``)."""
    for tensor in output if isinstance(output, (tuple, list)) else (output,):
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not tensor.requires_grad:
            tensor.requires_grad_(True)


def resized_rows(table: torch.Tensor, old_sizes: list[int], new_sizes: list[int], std: float = 0.0) -> torch.Tensor:
    """``table`` cut into consecutive blocks of ``old_sizes`` rows, each block cut or grown to its ``new_sizes``
    entry: kept rows are copied, new rows are N(0, ``std``) (zeros when ``std`` is 0)."""
    parts = []
    for block, size in zip(table.split(old_sizes), new_sizes):
        grown = block.new_zeros(size, *block.shape[1:])
        if std > 0:
            grown.normal_(0.0, std)
        keep = min(size, block.shape[0])
        grown[:keep] = block[:keep]
        parts.append(grown)
    return torch.cat(parts)


def check_answer_labels(labels: torch.Tensor | None, batch: int, num_labels: int) -> None:
    """Check VQA targets: soft answer scores (batch, num_labels) or answer ids (batch,)."""
    if labels is None:
        return
    if labels.is_floating_point():
        if tuple(labels.shape) != (batch, num_labels):
            raise ValueError(f"labels: expected soft answer scores of shape ({batch}, {num_labels}), got {tuple(labels.shape)}")
    elif tuple(labels.shape) != (batch,):
        raise ValueError(f"labels: expected answer ids of shape ({batch},), got {tuple(labels.shape)}")


def check_match_labels(labels: torch.Tensor | None, batch: int) -> None:
    """Check image/video-text matching targets: integer labels (batch,), 1 matched and 0 not."""
    if labels is not None and (labels.is_floating_point() or tuple(labels.shape) != (batch,)):
        raise ValueError(f"labels: expected match labels (1 matched, 0 not) of shape ({batch},) and integer dtype")


def check_image_text_inputs(
    config,
    input_ids: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    token_type_ids: torch.Tensor | None,
    region_features: torch.Tensor | None,
    region_boxes: torch.Tensor | None,
    region_attention_mask: torch.Tensor | None,
    inputs_embeds: torch.Tensor | None = None,
) -> None:
    """Validate the image-text inputs shared by every image-text model; raise ``ValueError`` before any compute.

    Checks shapes, dtypes, the region feature size against the config, boxes inside [0, 1] with
    x2 >= x1 and y2 >= y1 (padded regions are exempt), 0/1 masks with at least one valid token and region
    per sample, and that padded regions (all-zero feature and box) come with a ``region_attention_mask``.
    """
    if input_ids is None and inputs_embeds is None:
        raise ValueError("input_ids: expected a (batch, text_length) LongTensor, got None")
    if input_ids is not None:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids: expected shape (batch, text_length), got {tuple(input_ids.shape)}")
        if input_ids.dtype not in (torch.long, torch.int32):
            raise ValueError(f"input_ids: expected an integer tensor (torch.long), got {input_ids.dtype}")
        text_shape = tuple(input_ids.shape)
    else:
        if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != config.hidden_size:
            raise ValueError(
                f"inputs_embeds: expected shape (batch, text_length, {config.hidden_size}), got {tuple(inputs_embeds.shape)}"
            )
        text_shape = tuple(inputs_embeds.shape[:2])
    batch = text_shape[0]
    for name, tensor in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
        if tensor is not None and tuple(tensor.shape) != text_shape:
            raise ValueError(f"{name}: expected shape {text_shape} (same as input_ids), got {tuple(tensor.shape)}")
    if token_type_ids is not None and token_type_ids.is_floating_point():
        raise ValueError(f"token_type_ids: expected an integer tensor, got {token_type_ids.dtype}")
    if region_features is None:
        raise ValueError(f"region_features: expected a (batch, regions, {config.region_feature_size}) float tensor, got None")
    if region_boxes is None:
        raise ValueError("region_boxes: expected a (batch, regions, 4) float tensor of (x1, y1, x2, y2) in [0, 1], got None")
    if region_features.dim() != 3 or region_features.shape[0] != batch:
        raise ValueError(
            f"region_features: expected shape ({batch}, regions, {config.region_feature_size}), got {tuple(region_features.shape)}"
        )
    if region_features.shape[-1] != config.region_feature_size:
        raise ValueError(
            f"region_features: expected feature size {config.region_feature_size} (config.region_feature_size), "
            f"got {region_features.shape[-1]}"
        )
    if not region_features.is_floating_point():
        raise ValueError(f"region_features: expected a floating-point tensor, got {region_features.dtype}")
    num_regions = region_features.shape[1]
    if tuple(region_boxes.shape) != (batch, num_regions, 4):
        raise ValueError(
            f"region_boxes: expected shape ({batch}, {num_regions}, 4) as (x1, y1, x2, y2), got {tuple(region_boxes.shape)}"
        )
    if not region_boxes.is_floating_point():
        raise ValueError(f"region_boxes: expected a floating-point tensor, got {region_boxes.dtype}")
    if region_attention_mask is not None and tuple(region_attention_mask.shape) != (batch, num_regions):
        raise ValueError(
            f"region_attention_mask: expected shape ({batch}, {num_regions}), got {tuple(region_attention_mask.shape)}"
        )
    if torch.compiler.is_compiling():  # the value checks below read the tensors: eager calls only
        return

    boxes = region_boxes.detach().float()
    valid_regions = (
        torch.ones(batch, num_regions, dtype=torch.bool, device=boxes.device)
        if region_attention_mask is None
        else region_attention_mask.detach().bool()
    )
    outside = ((boxes < 0) | (boxes > 1)).any(-1) & valid_regions
    inverted = ((boxes[..., 2] < boxes[..., 0]) | (boxes[..., 3] < boxes[..., 1])) & valid_regions
    looks_padded = (boxes == 0).all(-1) & (region_features.detach() == 0).all(-1)
    flags = [
        outside.any(),
        inverted.any(),
        looks_padded.any() if region_attention_mask is None else torch.zeros((), dtype=torch.bool, device=boxes.device),
        ~valid_regions.any(-1).all(),
    ]
    if attention_mask is not None:
        flags.append(((attention_mask != 0) & (attention_mask != 1)).any())
        flags.append(~(attention_mask != 0).any(-1).all())
    if region_attention_mask is not None:
        flags.append(((region_attention_mask != 0) & (region_attention_mask != 1)).any())
    results = torch.stack([flag.to(boxes.device) for flag in flags]).tolist()
    if results[0]:
        where = outside.nonzero()[0].tolist()
        raise ValueError(
            f"region_boxes: expected coordinates normalised to [0, 1]; box {where} is {boxes[where[0], where[1]].tolist()}"
        )
    if results[1]:
        where = inverted.nonzero()[0].tolist()
        raise ValueError(
            f"region_boxes: expected (x1, y1, x2, y2) with x2 >= x1 and y2 >= y1; box {where} is "
            f"{boxes[where[0], where[1]].tolist()}"
        )
    if results[2]:
        where = looks_padded.nonzero()[0].tolist()
        raise ValueError(
            f"region_attention_mask: required when regions are padded; region {where} has an all-zero feature and box. "
            "Pass region_attention_mask (batch, regions) with 0 at padded regions"
        )
    if results[3]:
        raise ValueError("region_attention_mask: every sample needs at least one valid region (a row is all zeros)")
    if attention_mask is not None:
        if results[4]:
            raise ValueError("attention_mask: expected values 0 or 1")
        if results[5]:
            raise ValueError("attention_mask: every sample needs at least one attended token (a row is all zeros)")
    if region_attention_mask is not None and results[-1]:
        raise ValueError("region_attention_mask: expected values 0 or 1")


def retrieval_text_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Check the captions given to a two-stage retrieval encoder (integer (batch, text_length) ids, a mask of the
    same shape) and return their attention mask (all ones when None)."""
    if input_ids.dim() != 2 or input_ids.is_floating_point():
        raise ValueError(f"input_ids: expected an integer (batch, text_length) tensor, got {tuple(input_ids.shape)} {input_ids.dtype}")
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
    if mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask: expected shape {tuple(input_ids.shape)}, got {tuple(mask.shape)}")
    return mask


def retrieval_placeholder_text(features: torch.Tensor, name: str, items: str, feature_size: int) -> torch.Tensor:
    """For a two-stage retrieval encoder given visual ``features`` alone: check they are (batch, ``items``,
    ``feature_size``) and return one placeholder token per example, for the input checks and encoders that expect
    text beside them."""
    if features.dim() != 3:
        raise ValueError(f"{name}: expected (batch, {items}, {feature_size}), got {tuple(features.shape)}")
    return torch.zeros(features.shape[0], 1, dtype=torch.long, device=features.device)


def retrieval_region_mask(
    config, region_features: torch.Tensor, region_boxes: torch.Tensor, region_attention_mask: torch.Tensor | None
) -> torch.Tensor:
    """Check the region sets given to a two-stage retrieval encoder (as ``check_image_text_inputs`` does for a
    forward pass) and return their region mask (all ones when None)."""
    placeholder_text = retrieval_placeholder_text(region_features, "region_features", "regions", config.region_feature_size)
    check_image_text_inputs(config, placeholder_text, None, None, region_features, region_boxes, region_attention_mask)
    if region_attention_mask is None:
        return torch.ones(region_features.shape[:2], dtype=torch.long, device=region_features.device)
    return region_attention_mask


def check_video_text_inputs(
    config,
    input_ids: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    token_type_ids: torch.Tensor | None,
    frame_features: torch.Tensor | None,
    frame_attention_mask: torch.Tensor | None,
    max_frames: int | None = None,
) -> None:
    """Validate the video-text inputs shared by the video models; raise ``ValueError`` before any compute.

    ``input_ids`` (B, T) integer ids with matching ``attention_mask`` / ``token_type_ids``; ``frame_features``
    (B, F, ``config.frame_feature_size``) floats with 1 <= F <= ``max_frames`` (more frames than the model's
    position table is an error: cut or subsample the clip first); ``frame_attention_mask`` (B, F) of 0/1. Every
    sample needs at least one attended token and one valid frame (a video shorter than one clip has no feature and
    cannot be encoded).
    """
    if input_ids is None:
        raise ValueError("input_ids: expected a (batch, text_length) LongTensor, got None")
    if input_ids.dim() != 2 or input_ids.is_floating_point():
        raise ValueError(
            f"input_ids: expected an integer tensor of shape (batch, text_length), got {tuple(input_ids.shape)} {input_ids.dtype}"
        )
    text_shape = tuple(input_ids.shape)
    batch = text_shape[0]
    for name, tensor in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
        if tensor is not None and tuple(tensor.shape) != text_shape:
            raise ValueError(f"{name}: expected shape {text_shape} (same as input_ids), got {tuple(tensor.shape)}")
    if token_type_ids is not None and token_type_ids.is_floating_point():
        raise ValueError(f"token_type_ids: expected an integer tensor, got {token_type_ids.dtype}")
    size = config.frame_feature_size
    if frame_features is None:
        raise ValueError(f"frame_features: expected a (batch, frames, {size}) float tensor, got None")
    if frame_features.dim() != 3 or frame_features.shape[0] != batch or frame_features.shape[-1] != size:
        raise ValueError(
            f"frame_features: expected shape ({batch}, frames, {size}) (config.frame_feature_size), got "
            f"{tuple(frame_features.shape)}"
        )
    if not frame_features.is_floating_point():
        raise ValueError(f"frame_features: expected a floating-point tensor, got {frame_features.dtype}")
    num_frames = frame_features.shape[1]
    if num_frames == 0:
        raise ValueError("frame_features: the video has no frame (shorter than one clip); expected at least one frame")
    if max_frames is not None and num_frames > max_frames:
        raise ValueError(
            f"frame_features: {num_frames} frames is more than the maximum {max_frames}; subsample or cut the video"
        )
    if frame_attention_mask is not None and tuple(frame_attention_mask.shape) != (batch, num_frames):
        raise ValueError(
            f"frame_attention_mask: expected shape ({batch}, {num_frames}), got {tuple(frame_attention_mask.shape)}"
        )
    if torch.compiler.is_compiling():  # the value checks below read the tensors: eager calls only
        return
    flags = []
    for mask in (attention_mask, frame_attention_mask):
        if mask is not None:
            flags += [((mask != 0) & (mask != 1)).any(), ~(mask != 0).any(-1).all()]
    results = torch.stack(flags).tolist() if flags else []
    names = [name for name, mask in (("attention_mask", attention_mask), ("frame_attention_mask", frame_attention_mask)) if mask is not None]
    for index, name in enumerate(names):
        if results[2 * index]:
            raise ValueError(f"{name}: expected values 0 or 1")
        if results[2 * index + 1]:
            raise ValueError(f"{name}: every sample needs at least one valid position (a row is all zeros)")


def check_target_shapes(
    targets: dict[str, torch.Tensor | None],
    expected: dict[str, tuple[tuple[int, ...], str]],
    required: dict[str, tuple[str, ...]] | None = None,
) -> None:
    """Check pretraining targets against their inputs before any compute; raise ``ValueError`` naming the target.

    ``expected`` gives each target's shape and what it holds; a description that starts with "integer" asks for an
    integer tensor, one that starts with "float" for a floating-point one. ``required`` names, for an input among
    ``targets``, the targets that cannot be scored without it (``masked_regions`` for the masked-region targets).
    """
    for name, tensor in targets.items():
        if tensor is None or name not in expected:
            continue
        shape, what = expected[name]
        if tuple(tensor.shape) != tuple(shape):
            raise ValueError(f"{name}: expected shape {tuple(shape)} ({what}), got {tuple(tensor.shape)}")
        wants_integer = what.startswith("integer")
        if (wants_integer or what.startswith("float")) and tensor.is_floating_point() == wants_integer:
            raise ValueError(f"{name}: expected {what}, got {tensor.dtype}")
    for name, needing in (required or {}).items():
        given = [target for target in needing if targets.get(target) is not None]
        if given and targets.get(name) is None:
            raise ValueError(f"{name}: required with {' / '.join(given)}")
