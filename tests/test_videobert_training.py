"""`vlpretrain pretrain --model videobert --dataset shapes-video` runs end to end and saves a loadable folder."""

from __future__ import annotations

import json

from transformers import AutoModelForPreTraining

from vlpretrain.cli import main as cli_main


def test_pretrain_cli_on_shapes_video(tmp_path):
    argv = ["pretrain", "--model", "videobert", "--dataset", "shapes-video", "--model_size", "tiny", "--num_images", "8",
            "--eval_images", "4", "--max_steps", "2", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4",
            "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none", "--use_cpu", "--disable_tqdm", "true",
            "--output_dir", str(tmp_path)]
    assert cli_main(argv) == 0
    final = tmp_path / "final"
    config = json.loads((final / "config.json").read_text())
    model = AutoModelForPreTraining.from_pretrained(final)
    assert model.config.model_type == config["model_type"]
    assert config["visual_words_fitted"] and (final / "visual_words.safetensors").exists()
    assert config["frame_feature_size"] == 195
