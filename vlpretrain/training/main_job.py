"""The main job: a small LXMERT pretrained through the HF Trainer, exported, and reloaded with remote code.

This is the foundation's end-to-end check: synthetic region features whose content the captions describe,
a few pretraining steps with all five objectives, a Hub-ready export, and a reload of the export in a fresh
process that cannot import vlpretrain.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from transformers import TrainingArguments

from ..configuration.lxmert import LxmertConfig
from ..hub.export import export_model
from ..modeling.lxmert import LxmertForPreTraining
from .trainer import VLPretrainingTrainer

_RELOAD_SCRIPT = """
import sys
sys.modules["vlpretrain"] = None
import torch, transformers
from safetensors.torch import load_file
model = transformers.AutoModelForPreTraining.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
inputs = load_file(sys.argv[2])
with torch.no_grad():
    print(float(model(**inputs).matching_logits.sum()))
"""


class SyntheticImageText(torch.utils.data.Dataset):
    """Region sets of 1-4 objects (a class code in each feature) with captions naming the objects' classes.

    Deterministic for a seed; objectives' targets (masked tokens, masked regions, object labels, a matching
    label with a swapped caption half of the time, an answer to "how many objects") come with each sample.
    """

    def __init__(self, size: int, config: LxmertConfig, seed: int = 0, regions: int = 6, text_length: int = 8):
        generator = torch.Generator().manual_seed(seed)
        self.samples = []
        num_classes = min(config.num_object_labels, config.vocab_size - 10)
        for _ in range(size):
            count = int(torch.randint(1, 5, (1,), generator=generator))
            classes = torch.randint(0, num_classes, (count,), generator=generator)
            features = torch.zeros(regions, config.region_feature_size)
            features[:count] = 0.1 * torch.randn(count, config.region_feature_size, generator=generator)
            features[torch.arange(count), classes % config.region_feature_size] += 1.0
            boxes = torch.zeros(regions, 4)
            boxes[:count] = torch.tensor([0.1, 0.1, 0.5, 0.5]) + 0.1 * torch.rand(count, 4, generator=generator)
            region_mask = torch.zeros(regions, dtype=torch.long)
            region_mask[:count] = 1
            matched = int(torch.rand(1, generator=generator) < 0.5)
            caption_classes = classes if matched else torch.randint(0, num_classes, (count,), generator=generator)
            input_ids = torch.zeros(text_length, dtype=torch.long)
            input_ids[0], input_ids[count + 1] = 1, 2
            input_ids[1 : count + 1] = caption_classes + 10
            attention_mask = (torch.arange(text_length) <= count + 1).long()
            labels = torch.full((text_length,), -100)
            position = int(torch.randint(1, count + 1, (1,), generator=generator))
            labels[position] = input_ids[position]
            masked_input = input_ids.clone()
            masked_input[position] = 3
            masked_regions = torch.zeros(regions, dtype=torch.bool)
            masked_regions[int(torch.randint(0, count, (1,), generator=generator))] = True
            object_labels = torch.full((regions,), -100)
            object_labels[:count] = classes
            self.samples.append(
                dict(
                    input_ids=masked_input,
                    attention_mask=attention_mask,
                    token_type_ids=torch.zeros(text_length, dtype=torch.long),
                    region_features=features.masked_fill(masked_regions[:, None], 0.0),
                    region_boxes=boxes,
                    region_attention_mask=region_mask,
                    labels=labels,
                    masked_regions=masked_regions,
                    region_feature_targets=features,
                    region_object_labels=object_labels,
                    region_object_confidences=region_mask.float(),
                    region_attribute_labels=torch.where(region_mask.bool(), 0, -100),
                    region_attribute_confidences=region_mask.float(),
                    matched_labels=torch.tensor(matched),
                    answer_labels=torch.tensor(count if matched else -100),
                )
            )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        return self.samples[index]


def run_main_job(output_dir: str, quick: bool = False, seed: int = 0) -> dict:
    """Pretrain a small LXMERT, export it, reload it with transformers alone, and print a summary."""
    start = time.time()
    output = Path(output_dir)
    torch.manual_seed(seed)
    config = LxmertConfig(
        vocab_size=64, hidden_size=64, num_attention_heads=4, intermediate_size=128, num_text_layers=2,
        num_visual_layers=2, num_cross_layers=2, region_feature_size=32, num_object_labels=20,
        num_attribute_labels=4, num_qa_labels=6, max_position_embeddings=16,
    )
    model = LxmertForPreTraining(config)
    train = SyntheticImageText(64 if quick else 512, config, seed=seed)
    evaluation = SyntheticImageText(32 if quick else 128, config, seed=seed + 1)
    args = TrainingArguments(
        output_dir=str(output / "pretrain"),
        per_device_train_batch_size=16,
        per_device_eval_batch_size=32,
        max_steps=10 if quick else 120,
        learning_rate=1e-3,
        warmup_steps=5,
        logging_steps=5 if quick else 20,
        save_strategy="no",
        report_to=[],
        seed=seed,
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
    )
    trainer = VLPretrainingTrainer(model=model, args=args, train_dataset=train, eval_dataset=evaluation)
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    trainer.save_model(str(output / "pretrain" / "final"))
    exported = export_model(output / "pretrain" / "final", output / "export", repo_id="vlpretrain/lxmert-demo")

    sample = {name: value[None].contiguous() for name, value in evaluation[0].items() if name in (
        "input_ids", "attention_mask", "token_type_ids", "region_features", "region_boxes", "region_attention_mask")}
    from safetensors.torch import save_file

    save_file(sample, str(output / "reload_inputs.safetensors"))
    environment = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH="")
    completed = subprocess.run(
        [sys.executable, "-c", _RELOAD_SCRIPT, str(exported), str(output / "reload_inputs.safetensors")],
        capture_output=True, text=True, env=environment, cwd=str(output),
    )
    if completed.returncode != 0:
        raise RuntimeError(f"reloading the export with transformers alone failed:\n{completed.stderr[-2000:]}")
    model.eval()
    with torch.no_grad():
        local = float(model.cpu()(**sample).matching_logits.sum())
    remote = float(completed.stdout.strip().splitlines()[-1])
    summary = {
        "eval_loss_before": round(before["eval_loss"], 4),
        "eval_loss_after": round(after["eval_loss"], 4),
        **{key: round(value, 4) for key, value in after.items() if key.startswith("eval_") and key.endswith("_loss")},
        "export": str(exported),
        "remote_code_reload_matches": abs(local - remote) < 1e-4,
        "wall_time_s": round(time.time() - start, 1),
    }
    print(json.dumps(summary, indent=2))
    return summary
