"""Train a tiny LXMERT for two steps under torchrun (or alone) and record what each rank saw and ended with.

Arguments: output folder, per-device batch size and, optionally, ``fsdp`` to shard the model with the shipped
``examples/fsdp_config.json`` (``--fsdp "full_shard auto_wrap"``) instead of replicating it (DDP)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import TrainingArguments

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpers.factories import image_text_batch, tiny_lxmert_config  # noqa: E402
from vlpretrain import LxmertForPreTraining  # noqa: E402
from vlpretrain.training.trainer import VLPretrainingTrainer  # noqa: E402


class RecordingDataset(torch.utils.data.Dataset):
    """Fixed samples (no padding, every label present) that remember which indices this process read."""

    def __init__(self, size: int):
        config = tiny_lxmert_config()
        batch = image_text_batch(config, batch=size, text_length=6, regions=4, seed=7)
        batch["attention_mask"][:] = 1
        batch["region_attention_mask"][:] = 1
        generator = torch.Generator().manual_seed(7)
        batch["region_features"] = torch.randn(size, 4, config.region_feature_size, generator=generator)
        batch["region_feature_targets"] = batch["region_features"].clone()
        batch["region_boxes"] = torch.tensor([0.1, 0.2, 0.6, 0.9]).repeat(size, 4, 1)
        batch["answer_labels"] = torch.randint(0, config.num_qa_labels, (size,), generator=generator)
        self.batch = batch
        self.seen: list[int] = []

    def __len__(self) -> int:
        return next(iter(self.batch.values())).shape[0]

    def __getitem__(self, index: int) -> dict:
        self.seen.append(int(index))
        return {name: value[index] for name, value in self.batch.items()}


class SequentialTrainer(VLPretrainingTrainer):
    """Read the data in order, so one process and two processes see the same global batches."""

    def _get_train_sampler(self, *args, **kwargs):
        return torch.utils.data.SequentialSampler(self.train_dataset)


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def main(output_dir: str, per_device_batch_size: int, sharding: str = "ddp") -> None:
    config = tiny_lxmert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    model = LxmertForPreTraining(config)
    dataset = RecordingDataset(16)
    args = TrainingArguments(
        output_dir=output_dir, per_device_train_batch_size=per_device_batch_size, max_steps=2, learning_rate=1e-2,
        logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, seed=0, disable_tqdm=True,
        ddp_backend="gloo" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None, dataloader_num_workers=0,
        **({"fsdp": "full_shard auto_wrap", "fsdp_config": str(EXAMPLES / "fsdp_config.json")} if sharding == "fsdp" else {}),
    )
    trainer = SequentialTrainer(model=model, args=args, train_dataset=dataset)
    trainer.train()
    rank = args.process_index
    state = trainer.accelerator.get_state_dict(trainer.model_wrapped) if sharding == "fsdp" else model.state_dict()
    if state is not None:
        save_file({name: value.detach().contiguous() for name, value in state.items() if name != "mlm_head.decoder.weight"},
                  os.path.join(output_dir, f"weights-{rank}.safetensors"))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    with open(os.path.join(output_dir, f"record-{rank}.json"), "w") as stream:
        json.dump({"seen": dataset.seen, "losses": losses, "world_size": args.world_size,
                   "fsdp_enabled": trainer.is_fsdp_enabled}, stream)


if __name__ == "__main__":
    main(*sys.argv[1:2], int(sys.argv[2]), *sys.argv[3:4])
