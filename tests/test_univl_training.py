"""UniVL end to end: CLI pretraining on shapes-video, conversion through the CLI, remote-code export, captioning."""

from __future__ import annotations

import os
import textwrap

import pytest
import torch
import transformers
from helpers.fresh_process import run_fresh_process
from helpers.univl_hero_factories import original_univl_state_dict, tiny_univl_config, video_text_batch
from safetensors.torch import load_file, save_file

from vlpretrain import UnivlForCaptioning, UnivlForPreTraining
from vlpretrain.cli import main as cli_main
from vlpretrain.training.sources import default_tokenizer, load_source

OBJECTIVES = ("contrastive", "mlm", "frame_feature", "alignment", "reconstruction")


pytestmark = pytest.mark.usefixtures("one_thread")


def test_cli_pretrain_on_shapes_video_logs_every_objective(tmp_path):
    argv = ["pretrain", "--model", "univl", "--dataset", "shapes-video", "--model_size", "tiny", "--num_images", "16",
            "--eval_images", "8", "--output_dir", str(tmp_path), "--max_steps", "2", "--per_device_train_batch_size", "8",
            "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true"]
    assert cli_main(argv) == 0
    model = transformers.AutoModelForPreTraining.from_pretrained(tmp_path / "final")
    assert type(model) is UnivlForPreTraining and model.config.frame_feature_size == 195
    state = (tmp_path / "final" / "config.json").read_text()
    assert '"vlpretrain-univl"' in state


def test_stage_two_continues_from_a_stage_one_folder(tmp_path):
    common = ["--dataset", "shapes-video", "--num_images", "8", "--eval_images", "4", "--max_steps", "1",
              "--per_device_train_batch_size", "4", "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true"]
    stage_one = tmp_path / "one"
    assert cli_main(["pretrain", "--model", "univl", "--model_size", "tiny", "--config_overrides", '{"stage": 1}',
                     "--output_dir", str(stage_one), *common]) == 0
    weights = '{"contrastive": 1, "mlm": 1, "frame_feature": 1, "alignment": 1, "reconstruction": 1}'
    assert cli_main(["pretrain", "--model", str(stage_one / "final"), "--config_overrides",
                     f'{{"stage": 2, "loss_weights": {weights}}}', "--output_dir", str(tmp_path / "two"), *common]) == 0
    first = UnivlForPreTraining.from_pretrained(stage_one / "final")
    second = UnivlForPreTraining.from_pretrained(tmp_path / "two" / "final")
    assert first.config.stage == 1 and second.config.stage == 2 and second.mlm_head is not None
    assert all(weight == 1.0 for weight in second.config.loss_weights.values())
    # One stage-II step moved the text encoder a little from where stage I left it (not a fresh initialisation).
    before, after = first.univl.embeddings.word_embeddings.weight, second.univl.embeddings.word_embeddings.weight
    assert (after - before).abs().max() < 0.01 < (after - UnivlForPreTraining(second.config).univl.embeddings.word_embeddings.weight).abs().max()


def test_cli_converts_a_checkpoint_laid_out_like_the_release(tmp_path):
    config = tiny_univl_config()
    original = original_univl_state_dict(config)
    torch.save(original, tmp_path / "univl.pretrained.bin")
    assert cli_main(["convert", "--from", "univl", str(tmp_path / "univl.pretrained.bin"), "--output-dir", str(tmp_path / "out")]) == 0
    model = UnivlForPreTraining.from_pretrained(tmp_path / "out")
    assert model.config.num_decoder_layers == 1 and model.config.max_cross_positions == 40
    torch.testing.assert_close(model.univl.embeddings.word_embeddings.weight, original["bert.embeddings.word_embeddings.weight"])
    torch.testing.assert_close(model.frame_head.bias, original["cls_visual.predictions.bias"])
    torch.save({"net": {"weights": torch.zeros(1)}, "optimizer": "sgd"}, tmp_path / "pickled.bin")
    with pytest.raises(ValueError):
        cli_main(["convert", "--from", "univl", str(tmp_path / "pickled.bin"), "--output-dir", str(tmp_path / "bad")])


FRESH_PROCESS = textwrap.dedent(
    """
    import sys
    sys.modules["vlpretrain"] = None
    import torch, transformers
    from safetensors.torch import load_file, save_file

    folder, inputs_path, outputs_path = sys.argv[1:4]
    inputs = load_file(inputs_path)
    model = transformers.AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
    with torch.no_grad():
        logits = model(frame_features=inputs["frame_features"], frame_attention_mask=inputs["frame_attention_mask"],
                       decoder_input_ids=inputs["caption"]).logits
    generated = model.generate(frame_features=inputs["frame_features"], frame_attention_mask=inputs["frame_attention_mask"])
    save_file({"logits": logits.contiguous(), "generated": generated.contiguous()}, outputs_path)
    """
)


@pytest.mark.slow
def test_exported_captioner_loads_and_generates_in_a_fresh_process(tmp_path):
    model = UnivlForCaptioning(tiny_univl_config()).eval()
    model.save_pretrained(tmp_path / "export", remote_code=True)
    assert {"modeling_univl.py", "configuration_univl.py"} <= set(os.listdir(tmp_path / "export"))
    batch = video_text_batch(model.config, targets=False)
    inputs = {"frame_features": batch["frame_features"], "frame_attention_mask": batch["frame_attention_mask"],
              "caption": torch.randint(3, 60, (3, 5))}
    save_file(inputs, tmp_path / "inputs.safetensors")
    run_fresh_process(
        FRESH_PROCESS, tmp_path, tmp_path / "export", tmp_path / "inputs.safetensors", tmp_path / "outputs.safetensors",
    )
    remote = load_file(tmp_path / "outputs.safetensors")
    with torch.no_grad():
        local = model(frame_features=inputs["frame_features"], frame_attention_mask=inputs["frame_attention_mask"],
                      decoder_input_ids=inputs["caption"]).logits
    torch.testing.assert_close(remote["logits"], local)
    generated = model.generate(frame_features=inputs["frame_features"], frame_attention_mask=inputs["frame_attention_mask"])
    assert torch.equal(remote["generated"], generated)


def test_short_captioning_fine_tune_generates_shapes_video_captions():
    tokenizer = default_tokenizer()
    videos = load_source("shapes-video", "train", 8, seed=0)
    config = tiny_univl_config(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id, frame_feature_size=195, max_position_embeddings=32, max_frames=16,
        max_cross_positions=48, max_caption_length=12, hidden_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    model = UnivlForCaptioning(config)
    captions = tokenizer(list(videos["caption"]), padding=True, return_tensors="pt")
    labels = captions.input_ids[:, 1:].masked_fill(captions.attention_mask[:, 1:] == 0, -100)
    features = torch.stack([torch.tensor(row) for row in videos["frame_features"]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = model(frame_features=features, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.4 * losses[0], losses
    model.eval()
    generated = model.generate(frame_features=features)
    texts = tokenizer.batch_decode(generated, skip_special_tokens=True)
    assert all(text.strip() for text in texts)
    assert sum(text.split()[0] == "a" for text in texts) >= 4  # shapes-video captions start with "a <colour> <shape>"
