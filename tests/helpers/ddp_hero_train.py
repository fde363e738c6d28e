"""Train a tiny HERO for a few steps under torchrun (gloo) and record the objective each step ran and the weights."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import TrainingArguments

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpers.univl_hero_factories import hero_batch, tiny_hero_config  # noqa: E402
from vlpretrain import HeroForPreTraining  # noqa: E402
from vlpretrain.configuration.hero import HERO_OBJECTIVES  # noqa: E402
from vlpretrain.training.trainer import VLPretrainingTrainer  # noqa: E402


class VideoDataset(torch.utils.data.Dataset):
    """Nine fixed HERO examples (three random batches of three videos with subtitles and every target)."""

    def __init__(self):
        config = tiny_hero_config()
        batches = [hero_batch(config, seed=seed) for seed in range(3)]
        self.batch = {name: torch.cat([batch[name] for batch in batches]) for name in batches[0]}

    def __len__(self) -> int:
        return self.batch["input_ids"].shape[0]

    def __getitem__(self, index: int) -> dict:
        return {name: value[index] for name, value in self.batch.items()}


class TaskRecordingTrainer(VLPretrainingTrainer):
    """Remember the objective of every training forward pass."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tasks: list[str] = []

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        self.tasks.append(HERO_OBJECTIVES[int(outputs["task"])])
        return (loss, outputs) if return_outputs else loss


def main(output_dir: str, steps: int) -> None:
    torch.manual_seed(0)
    model = HeroForPreTraining(tiny_hero_config())
    args = TrainingArguments(
        output_dir=output_dir, per_device_train_batch_size=2, max_steps=steps, learning_rate=1e-2, logging_steps=1,
        save_strategy="no", report_to=[], use_cpu=True, seed=0, disable_tqdm=True, ddp_backend="gloo",
        ddp_find_unused_parameters=True, dataloader_num_workers=0,
    )
    trainer = TaskRecordingTrainer(model=model, args=args, train_dataset=VideoDataset())
    trainer.train()
    rank = args.process_index
    tied = set(model._tied_weights_keys)
    save_file({name: value.detach().contiguous() for name, value in model.state_dict().items() if name not in tied},
              os.path.join(output_dir, f"weights-{rank}.safetensors"))
    with open(os.path.join(output_dir, f"record-{rank}.json"), "w") as stream:
        json.dump({"tasks": trainer.tasks, "world_size": args.world_size, "task_step": int(model.task_step)}, stream)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
