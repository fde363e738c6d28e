"""LoRA (and any other peft method) on the package's models through peft's own API.

transformers 5.24's built-in adapter methods (``model.add_adapter`` ...) require peft >= 0.22, which the registry
does not have; ``get_peft_model``, ``PeftModel.from_pretrained`` and ``merge_and_unload`` work with peft 0.21.

Default targets: the config class's ``lora_target_modules`` (LXMERT: ``qkv``, ``output.dense``, ``fc_in``: the
fused attention projections, the attention/feed-forward output projections and the feed-forward input projections
of every layer), restricted to the encoder (``base_model_prefix``), so task heads are not adapted. Architectures
whose config declares none get the names of the shared blocks in ``modeling/layers.py``, which are the same.
Task heads (every top-level module besides the encoder, except one holding tied output embeddings) are trained
fully and saved with the adapter (``modules_to_save``): a fine-tuning head starts untrained.

``vlpretrain finetune --model <pretrained folder> --lora ...`` trains an adapter with the Trainer and saves only the
adapter (plus ``lora_base.json``, which names the base folder, the task and the label set);
:func:`load_lora_model` rebuilds the fine-tuned model from it, merged or not.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from ..registry import architecture_for_config

LORA_BASE_FILE = "lora_base.json"
SHARED_LAYER_TARGETS = ("qkv", "output.dense", "fc_in")
# Bookkeeping entries of config.json that say nothing about the model's shape or labels.
_NOT_CONFIG_VALUES = ("architectures", "auto_map", "transformers_version", "dtype", "_name_or_path")


def lora_target_modules(model: nn.Module) -> str:
    """The default ``target_modules`` of ``model``: a regex over the encoder's module names (see the module doc)."""
    names = getattr(type(model.config), "lora_target_modules", None) or SHARED_LAYER_TARGETS
    encoder = "" if model.base_model is model else re.escape(model.base_model_prefix) + r"\."
    pattern = rf"{encoder}(.*\.)?({'|'.join(re.escape(name) for name in names)})"
    if not any(re.fullmatch(pattern, name) for name, module in model.named_modules() if isinstance(module, nn.Linear)):
        raise ValueError(f"target_modules: no linear layer of {type(model).__name__} matches {list(names)}; pass target_modules")
    return pattern


def lora_modules_to_save(model: nn.Module) -> list[str]:
    """The task heads trained fully next to the adapter: top-level modules besides the encoder (the members of a
    ``ModuleDict`` / ``ModuleList`` one by one, as peft cannot wrap containers) that have parameters, except those
    holding the tied output embeddings."""
    if model.base_model is model:
        return []
    output_embeddings = model.get_output_embeddings()
    heads = []
    pending = [(name, module) for name, module in model.named_children() if name != model.base_model_prefix]
    while pending:
        name, module = pending.pop(0)
        if isinstance(module, (nn.ModuleDict, nn.ModuleList)):
            pending.extend((f"{name}.{child_name}", child) for child_name, child in module.named_children())
        elif next(module.parameters(), None) is not None and not (
            output_embeddings is not None and any(child is output_embeddings for child in module.modules())
        ):
            heads.append(name)
    return heads


def add_lora(
    model: nn.Module, rank: int = 8, alpha: int = 16, dropout: float = 0.0, target_modules: list[str] | str | None = None
) -> PeftModel:
    """Wrap ``model`` with a LoRA adapter (``get_peft_model``); only the adapter and the task heads train."""
    if rank < 1:
        raise ValueError(f"lora_rank: expected a positive integer, got {rank}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"lora_dropout: expected a value in [0, 1), got {dropout}")
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules or lora_target_modules(model),
        modules_to_save=lora_modules_to_save(model) or None,
    )
    return get_peft_model(model, config)


def lora_for_finetuning(model: nn.Module, model_args) -> PeftModel:
    """``add_lora`` with the ``--lora_*`` arguments of ``ModelArguments``; the base must be a saved model folder
    (an adapter is only meaningful on fixed base weights)."""
    if not Path(model_args.model).is_dir():
        raise ValueError(f"model: --lora needs a pretrained model folder as the base, got {model_args.model!r}")
    targets = [name.strip() for name in model_args.lora_target_modules.split(",")] if model_args.lora_target_modules else None
    return add_lora(model, model_args.lora_rank, model_args.lora_alpha, model_args.lora_dropout, targets)


def write_lora_base(folder: str | os.PathLike, base_model: str | os.PathLike, task: str, config) -> Path:
    """Record what an adapter needs besides itself: the base model folder, the task, and the config values of the
    task model that differ from the base folder's (labels, overrides)."""
    base_values = json.loads((Path(base_model) / "config.json").read_text())
    values = json.loads(config.to_json_string(use_diff=False))
    changed = {
        key: value for key, value in values.items() if key not in _NOT_CONFIG_VALUES and base_values.get(key) != value
    }
    path = Path(folder) / LORA_BASE_FILE
    record = {"base_model": str(Path(base_model).resolve()), "task": task, "config": changed}
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


def load_lora_model(adapter_dir: str | os.PathLike, merge: bool = False) -> nn.Module:
    """The fine-tuned model of a ``finetune --lora`` run: base folder plus adapter (merged into plain weights
    with ``merge_and_unload`` when ``merge``)."""
    adapter_dir = Path(adapter_dir)
    record_path = adapter_dir / LORA_BASE_FILE
    if not record_path.exists() or not (adapter_dir / "adapter_config.json").exists():
        raise ValueError(f"adapter_dir: {adapter_dir} has no {LORA_BASE_FILE} and adapter_config.json (not a finetune --lora output)")
    record = json.loads(record_path.read_text())
    base_config = Path(record["base_model"]) / "config.json"
    if not base_config.exists():
        raise ValueError(f"{record_path}: the base model folder {record['base_model']} is missing")
    architecture = architecture_for_config(json.loads(base_config.read_text()))
    base = architecture.model_class(record["task"]).from_pretrained(record["base_model"], **record["config"])
    model = PeftModel.from_pretrained(base, str(adapter_dir))
    return model.merge_and_unload() if merge else model
