"""HERO training path: shapes-video subtitles through the examples, the collator and the CLI; two processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.univl_hero_factories import tiny_hero_config
from safetensors.torch import load_file

from vlpretrain import HeroForPreTraining, HeroModel
from vlpretrain.cli import main as cli_main
from vlpretrain.data.collators import collator_for_config
from vlpretrain.training.recipes import ModelArguments, build_config
from vlpretrain.training.sources import default_tokenizer, load_source, pretraining_examples, source_label_sizes

pytestmark = pytest.mark.usefixtures("one_thread")


def _rule(starts, ends, num_frames, interval):
    """The spec's rule written out directly: each frame to the overlapping subtitle of largest IoU (ties: earlier)."""
    assignment = []
    for frame in range(num_frames):
        low, high = frame * interval, (frame + 1) * interval
        ious = [
            max(0.0, min(end, high) - max(start, low)) / (max(end, high) - min(start, low)) for start, end in zip(starts, ends)
        ]
        best = int(np.argmax(ious))
        assignment.append(best if ious[best] > 0 else -1)
    return assignment


def test_shapes_video_batches_carry_per_subtitle_runs_aligned_by_the_rule():
    tokenizer = default_tokenizer()
    source = load_source("shapes-video", "train", 6, seed=0)
    config = build_config(ModelArguments(model="hero", model_size="tiny"), source_label_sizes(source), tokenizer, 0, 20)
    assert config.frame_interval == pytest.approx(1 / float(source[0]["fps"]))
    examples = [dict(row) for row in pretraining_examples(source, tokenizer, 20)]
    # A third, partly overlapping subtitle in one example, to check the rule beyond the even split.
    examples[1].update(
        subtitle_input_ids=examples[1]["subtitle_input_ids"] + [tokenizer("it goes on")["input_ids"]],
        subtitle_starts=[0.0, 1.7, 2.6], subtitle_ends=[1.9, 3.0, 4.0],
    )
    collator = collator_for_config(config, tokenizer, seed=0)
    assert collator.layout.subtitles and collator.maskers.frame_order is not None
    batch = collator(examples)
    frames = batch["frame_features"].shape[1]
    for row, example in enumerate(examples):
        subtitles = example["subtitle_input_ids"]
        assert len(subtitles) >= 2
        owners = batch["text_subtitle_index"][row]
        assert owners[batch["attention_mask"][row] == 1].tolist() == [i for i, ids in enumerate(subtitles) for _ in ids]
        assert (owners[batch["attention_mask"][row] == 0] == -1).all()
        expected = _rule(example["subtitle_starts"], example["subtitle_ends"], frames, config.frame_interval)
        # The frames were shuffled for frame order modelling; the alignment refers to the original order.
        assert batch["frame_subtitle_index"][row].tolist() == expected
    assert batch["frame_subtitle_index"][0].tolist() == [0] * (frames // 2) + [1] * (frames // 2)
    assert batch["frame_subtitle_index"][1].tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    model = HeroForPreTraining(config).eval()
    output = model(**batch)
    assert all(torch.isfinite(output[f"{name}_loss"]) for name in ("mlm", "frame_feature", "frame_order", "vsm"))


def test_subtitle_collation_rejects_videos_without_subtitles_or_mismatched_times():
    tokenizer = default_tokenizer()
    source = load_source("shapes-video", "train", 2, seed=0)
    config = build_config(ModelArguments(model="hero", model_size="tiny"), source_label_sizes(source), tokenizer, 0, 20)
    examples = [dict(row) for row in pretraining_examples(source, tokenizer, 20)]
    collator = collator_for_config(config, tokenizer, seed=0)
    with pytest.raises(ValueError, match="subtitle_input_ids of example 1 is empty"):
        collator([examples[0], dict(examples[1], subtitle_input_ids=[], subtitle_starts=[], subtitle_ends=[])])
    with pytest.raises(ValueError, match="subtitle_starts of example 0 has 1 times for 2 subtitles"):
        collator([dict(examples[0], subtitle_starts=[0.0], subtitle_ends=[1.0])])
    with pytest.raises(ValueError, match="example 0: subtitles: subtitle 1 has start 3.0 and end 1.0"):
        collator([dict(examples[0], subtitle_starts=[0.0, 3.0], subtitle_ends=[1.0, 1.0])])
    with pytest.raises(ValueError, match=r"examples \[1\] have no frame \(a video shorter than one clip\)"):
        collator([examples[0], dict(examples[1], frame_features=np.zeros((0, 195), np.float32))])
    with pytest.raises(ValueError, match="frame_interval > 0"):
        collator_for_config(config, tokenizer, frame_interval=0.0)


def test_cli_pretraining_feeds_hero_several_subtitles_per_video(tmp_path, monkeypatch):
    seen = []
    original = HeroModel.cross_modal

    def recording(self, input_ids, text_index, frame_features, frame_index, masked_frames=None, **record):
        seen.append((text_index.clone(), frame_index.clone()))
        return original(self, input_ids, text_index, frame_features, frame_index, masked_frames, **record)

    monkeypatch.setattr(HeroModel, "cross_modal", recording)
    argv = ["pretrain", "--model", "hero", "--dataset", "shapes-video", "--model_size", "tiny", "--num_images", "8",
            "--eval_images", "4", "--output_dir", str(tmp_path), "--max_steps", "2", "--per_device_train_batch_size", "4",
            "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true"]
    assert cli_main(argv) == 0
    assert seen
    for text_index, frame_index in seen:
        assert (text_index.max(1).values == 1).all()  # two subtitles per shapes-video clip, each its own run
        assert frame_index.tolist() == [[0, 0, 0, 0, 1, 1, 1, 1]] * frame_index.shape[0]


@pytest.mark.slow
def test_two_processes_run_the_same_objective_every_step(tmp_path):
    script = Path(__file__).resolve().parent / "helpers" / "ddp_hero_train.py"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(port), str(script), str(tmp_path), "6"],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    records = [json.loads((tmp_path / f"record-{rank}.json").read_text()) for rank in (0, 1)]
    assert all(record["world_size"] == 2 and record["task_step"] == 6 for record in records)
    assert records[0]["tasks"] == records[1]["tasks"] and len(records[0]["tasks"]) == 6
    assert len(set(records[0]["tasks"])) > 1  # the draw really varies from step to step
    reference = HeroForPreTraining(tiny_hero_config())
    assert records[0]["tasks"] == [reference.sample_task(step) for step in range(6)]
    weights = [load_file(tmp_path / f"weights-{rank}.safetensors") for rank in (0, 1)]
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), f"{name} differs between ranks"
