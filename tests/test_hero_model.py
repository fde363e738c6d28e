"""HERO: hierarchy, objectives and task sampling, kernels, checkpointing, subtitle alignment, bad inputs, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers
from helpers.univl_hero_factories import hero_batch, tiny_hero_config

from vlpretrain import (
    HeroConfig,
    HeroForPreTraining,
    HeroForVideoMomentRetrieval,
    HeroForVideoQuestionAnswering,
    HeroForVideoTextRetrieval,
    HeroModel,
)
from vlpretrain.cli import main as cli_main
from vlpretrain.processing.subtitles import align_subtitles_to_frames, non_empty_subtitles, subtitle_token_layout

OBJECTIVES = ("mlm", "frame_feature", "frame_order", "vsm")
INPUTS = ("input_ids", "attention_mask", "frame_features", "frame_attention_mask", "text_subtitle_index", "frame_subtitle_index")


pytestmark = pytest.mark.usefixtures("one_thread")


def test_base_size_parameter_count():
    with torch.device("meta"):
        model = HeroForPreTraining(HeroConfig())
    count = sum(parameter.numel() for parameter in model.parameters())
    # The released layout minus the two unused poolers (f_encoder.pooler, c_encoder.pooler: 1.2 M).
    assert round(count / 1e6, 1) == 119.9


def test_subtitle_alignment_rule_and_edge_cases():
    # 4 frames of 1.5 s; subtitle 0 [0, 2.9) overlaps frames 0-1, subtitle 1 [2.8, 6) overlaps frames 1-3.
    assert align_subtitles_to_frames([0.0, 2.8], [2.9, 6.0], 4, 1.5).tolist() == [0, 0, 1, 1]
    # Overlap: frame 1 goes to the larger IoU; ties go to the earlier subtitle.
    assert align_subtitles_to_frames([0.0, 1.5], [3.0, 3.0], 2, 1.5).tolist() == [0, 1]
    assert align_subtitles_to_frames([0.0, 0.0], [3.0, 3.0], 2, 1.5).tolist() == [0, 0]
    # Outside the video: clipped; entirely outside: no frame. Unmatched frames are -1.
    assert align_subtitles_to_frames([-5.0, 100.0], [1.0, 120.0], 3, 1.5).tolist() == [0, -1, -1]
    with pytest.raises(ValueError, match="subtitle 0 has start 2.0 and end 1.0"):
        align_subtitles_to_frames([2.0], [1.0], 3, 1.5)
    with pytest.raises(ValueError, match="shorter than one clip"):
        align_subtitles_to_frames([0.0], [1.0], 0, 1.5)
    assert non_empty_subtitles(["hi", " ", ""], [0, 1, 2], [1, 2, 3]) == (["hi"], [0], [1])
    assert subtitle_token_layout([[5, 6, 7], [8, 9]], max_length=2) == ([5, 6, 8, 9], [0, 0, 1, 1])


def test_hierarchy_scatters_subtitle_frames_back_onto_the_timeline():
    config = tiny_hero_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = HeroModel(config).eval()
    batch = hero_batch(config, targets=False)
    inputs = {name: batch[name] for name in INPUTS}
    matched, text, _ = model.cross_modal(
        inputs["input_ids"], inputs["text_subtitle_index"], inputs["frame_features"], inputs["frame_subtitle_index"], None
    )
    assert matched[0, 4:].abs().max() == 0 and matched[0, :4].abs().min() > 0  # unmatched frames get nothing
    assert text[0, 7:].abs().max() == 0
    # Changing subtitle 1 of video 0 leaves subtitle 0's frames and tokens untouched (per-subtitle attention).
    changed = inputs["input_ids"].clone()
    changed[0, 3:7] = 4
    matched2, text2, _ = model.cross_modal(changed, inputs["text_subtitle_index"], inputs["frame_features"], inputs["frame_subtitle_index"], None)
    torch.testing.assert_close(matched[0, :2], matched2[0, :2])
    torch.testing.assert_close(text[0, :3], text2[0, :3])
    assert not torch.allclose(matched[0, 2:4], matched2[0, 2:4])
    output = model(**inputs)
    assert output.visual_last_hidden_state.shape == (3, 6, 32)


def test_every_objective_runs_in_evaluation_and_one_sampled_task_in_training():
    weights = {"mlm": 1.0, "frame_feature": 0.5, "frame_order": 2.0, "vsm": 1.5}
    model = HeroForPreTraining(tiny_hero_config(loss_weights=weights)).eval()
    batch = hero_batch(model.config)
    output = model(**batch)
    losses = {name: output[f"{name}_loss"] for name in OBJECTIVES}
    assert all(torch.isfinite(value) for value in losses.values())
    torch.testing.assert_close(output.loss, sum(weights[name] * losses[name] for name in OBJECTIVES))
    model.train()
    tasks = []
    for _ in range(12):
        result = model(**batch)
        present = [name for name in OBJECTIVES if result.get(f"{name}_loss") is not None]
        assert present == [OBJECTIVES[int(result.task)]]
        tasks.append(present[0])
    assert set(tasks) == set(OBJECTIVES) and int(model.task_step) == 12
    # Every process of a multi-process run (same seed, same step count) draws the same sequence of tasks.
    other = HeroForPreTraining(tiny_hero_config(loss_weights=weights))
    assert [other.sample_task(step) for step in range(12)] == tasks
    switched = HeroForPreTraining(tiny_hero_config(loss_weights={"mlm": 1.0, "vsm": 1.0})).train()
    assert {OBJECTIVES[int(switched(**batch).task)] for _ in range(6)} <= {"mlm", "vsm"}


def test_regression_variant_and_bad_config():
    model = HeroForPreTraining(tiny_hero_config(frame_feature_loss_type="regression")).eval()
    assert model(**hero_batch(model.config), task="frame_feature").frame_feature_loss > 0
    with pytest.raises(ValueError, match="frame_feature_loss_type"):
        tiny_hero_config(frame_feature_loss_type="l1")
    with pytest.raises(ValueError, match="unknown objectives"):
        tiny_hero_config(task_ratios={"itm": 1.0})


def test_frame_order_sees_the_original_order_in_the_cross_modal_stage():
    config = tiny_hero_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = HeroForPreTraining(config).eval()
    batch = hero_batch(config)
    unshuffled = hero_batch(config)
    unshuffled["frame_features"] = unshuffled["frame_feature_targets"] = hero_batch(config, targets=False)["frame_features"]
    del unshuffled["frame_order_labels"]
    # MLM uses the clean frames in the original order: the same with or without the collator's shuffle.
    torch.testing.assert_close(model(**batch, task="mlm").mlm_loss, model(**unshuffled, task="mlm").mlm_loss)


def test_activation_checkpointing_gives_the_same_gradients():
    config = tiny_hero_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, sample_tasks=False)
    batch = hero_batch(config)
    plain = HeroForPreTraining(config).train()
    checkpointed = HeroForPreTraining(config).train()
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.activation_checkpointing_enable()
    torch.manual_seed(0)
    plain(**batch).loss.backward()
    torch.manual_seed(0)
    checkpointed(**batch).loss.backward()
    for (name, first), second in zip(plain.named_parameters(), checkpointed.parameters()):
        if first.grad is not None:
            torch.testing.assert_close(first.grad, second.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_every_objective_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    config = tiny_hero_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, sample_tasks=False)
    model = HeroForPreTraining(config).train()
    batch = hero_batch(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        output = model(**batch)
        first = first or {name: output[f"{name}_loss"].item() for name in OBJECTIVES}
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
    last = {name: output[f"{name}_loss"].item() for name in OBJECTIVES}
    for name in OBJECTIVES:
        assert last[name] < 0.8 * first[name], (name, first[name], last[name])


def test_retrieval_heads_and_save_load(tmp_path):
    config = tiny_hero_config()
    batch = hero_batch(config, targets=False)
    retrieval = HeroForVideoTextRetrieval(config).eval()
    output = retrieval(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       frame_features=batch["frame_features"], frame_attention_mask=batch["frame_attention_mask"], return_loss=True)
    assert output.logits.shape == (3, 3) and output.loss > 0
    moments = HeroForVideoMomentRetrieval(config).eval()
    result = moments(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], frame_features=batch["frame_features"],
                     frame_attention_mask=batch["frame_attention_mask"], start_positions=torch.tensor([0, 1, 2]),
                     end_positions=torch.tensor([1, 3, 4]))
    assert result.start_logits.shape == (3, 6) and result.loss is not None
    assert result.start_logits[1, 5] < -1e30  # padded frame
    pretraining = HeroForPreTraining(config).eval()
    pretraining.save_pretrained(tmp_path)
    loaded = transformers.AutoModelForPreTraining.from_pretrained(tmp_path).eval()
    assert type(loaded) is HeroForPreTraining
    assert loaded.mlm_head.decoder.weight is loaded.hero.embeddings.word_embeddings.weight
    full = hero_batch(config)
    torch.testing.assert_close(loaded(**full).loss, pretraining(**full).loss)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b.update(frame_features=torch.zeros(3, 9, 12), frame_attention_mask=None, frame_subtitle_index=None,
                            text_subtitle_index=None), "more than the maximum"),
        (lambda b: b.update(frame_subtitle_index=b["frame_subtitle_index"][:, :3]), "frame_subtitle_index"),
        (lambda b: b.update(text_subtitle_index=None), "pass both"),
        (lambda b: b["frame_subtitle_index"].__setitem__((0, 0), -4), "-1 for none"),
        (lambda b: b.update(frame_order_labels=torch.full((3, 6), 7)), "frame_order_labels"),
        (lambda b: b.update(labels=b["labels"][:, :4]), "labels"),
        (lambda b: b.update(input_ids=torch.randint(3, 50, (3, 40)), attention_mask=None, labels=None,
                            text_subtitle_index=torch.zeros(3, 40, dtype=torch.long)), "a subtitle has 40 tokens"),
    ],
)
def test_bad_inputs_raise_before_compute(change, message):
    model = HeroForPreTraining(tiny_hero_config())
    batch = hero_batch(model.config)
    change(batch)
    with pytest.raises(ValueError, match=message):
        model(**batch)


def test_cli_pretrain_on_shapes_video(tmp_path):
    argv = ["pretrain", "--model", "hero", "--dataset", "shapes-video", "--model_size", "tiny", "--num_images", "16",
            "--eval_images", "8", "--output_dir", str(tmp_path), "--max_steps", "3", "--per_device_train_batch_size", "8",
            "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true"]
    assert cli_main(argv) == 0
    model = transformers.AutoModelForPreTraining.from_pretrained(tmp_path / "final")
    assert type(model) is HeroForPreTraining and int(model.task_step) == 3
    assert np.isfinite(float(model.mlm_head.bias.detach().sum()))


def test_converter_puts_every_tensor_in_place(tmp_path):
    from helpers.univl_hero_factories import original_hero_state_dict

    from vlpretrain.hub.convert.video import convert_hero_state_dict

    config = tiny_hero_config()
    original = original_hero_state_dict(config)
    converted = convert_hero_state_dict(original)
    model = HeroForPreTraining(config)
    expected = set(model.state_dict()) - set(model._tied_weights_keys) - {"task_step"}
    assert set(converted) == expected
    with torch.device("meta"):
        base = HeroForPreTraining(HeroConfig())
    layout = original_hero_state_dict(HeroConfig(), device="meta")
    unique = {id(t): t for k, t in layout.items() if ".pooler." not in k and not k.endswith("pad")}
    assert sum(p.numel() for p in base.parameters()) == sum(t.numel() for t in unique.values())

    torch.save({**original, "vocab_padded": True}, tmp_path / "hero-tv-ht100.pt")
    assert cli_main(["convert", "--from", "hero", str(tmp_path / "hero-tv-ht100.pt"), "--output-dir", str(tmp_path / "out")]) == 0
    loaded = HeroForPreTraining.from_pretrained(tmp_path / "out")
    state = loaded.state_dict()
    hidden = config.hidden_size
    torch.testing.assert_close(state["hero.cross_layers.0.attention.qkv.weight"][2 * hidden :],
                               original["v_encoder.f_encoder.encoder.layer.0.attention.self.value.weight"])
    torch.testing.assert_close(state["hero.temporal_layers.0.ffn.output.norm.bias"],
                               original["v_encoder.c_encoder.encoder.layer.0.output.LayerNorm.bias"])
    torch.testing.assert_close(state["matching_heads.query_encoder.self_attention.qkv.bias"][:hidden],
                               original["q_feat_attn.query_self_attention.self.query.bias"])
    torch.testing.assert_close(state["matching_heads.query_encoder.self_attention.output.norm.weight"],
                               original["q_feat_attn.query_self_attention.output.LayerNorm.weight"])
    torch.testing.assert_close(state["frame_head.decoder.weight"], original["v_encoder.feat_regress.net.3.weight"])
    torch.testing.assert_close(state["hero.residual_mask_embedding.weight"], original["v_encoder.mask_embedding.weight"])
    torch.testing.assert_close(state["hero.frame_mask_embedding.weight"], original["v_encoder.f_encoder.img_embeddings.mask_embedding.weight"])
    torch.testing.assert_close(state["frame_order_head.fc_out.bias"], original["v_encoder.fom_output.linear_2.bias"])
    torch.testing.assert_close(state["matching_heads.end_predictor.weight"], original["video_ed_predictor.weight"])
    assert loaded.mlm_head.decoder.weight is loaded.hero.embeddings.word_embeddings.weight
    assert loaded.hero.frame_embeddings.token_type_embeddings is None  # frames use hero.embeddings' table
    with pytest.raises(ValueError, match="no HERO pretraining counterpart"):
        convert_hero_state_dict({**original, "qa_pool.weight": torch.zeros(1, 32)})


def test_processor_aligns_shapes_video_subtitles_for_hero():
    from vlpretrain import VideoLanguageProcessor
    from vlpretrain.training.sources import default_tokenizer, load_source

    tokenizer = default_tokenizer()
    videos = load_source("shapes-video", "train", 2, seed=0)
    processor = VideoLanguageProcessor(tokenizer)
    fps = float(videos[0]["fps"])
    subtitles = [dict(row) for row in videos["subtitles"]]
    subtitles[1] = {"text": subtitles[1]["text"] + ["", "after the end"], "start": subtitles[1]["start"] + [0.0, 50.0],
                    "end": subtitles[1]["end"] + [1.0, 60.0]}
    encoded = processor.encode_subtitled_videos(subtitles, list(videos["frame_features"]), frame_interval=1 / fps)
    frames = encoded["frame_features"].shape[1]
    assert encoded["frame_subtitle_index"][0].tolist() == [0] * (frames // 2) + [1] * (frames // 2)
    assert int(encoded["text_subtitle_index"][1].max()) == 2  # the empty line dropped, the late one kept as text
    assert 2 not in encoded["frame_subtitle_index"][1].tolist()  # ... but it has no frame
    config = tiny_hero_config(vocab_size=len(tokenizer), frame_feature_size=195, max_position_embeddings=64, max_frames=16)
    output = HeroModel(config).eval()(**encoded)
    assert output.visual_last_hidden_state.shape == (2, frames, 32)
    with pytest.raises(ValueError, match="subtitle 0 has start"):
        processor.encode_subtitled_videos([{"text": ["x"], "start": [3.0], "end": [1.0]}], [np.ones((4, 195), np.float32)])


def test_video_question_answering_scores_each_candidate(tmp_path):
    config = tiny_hero_config()
    batch = hero_batch(config, targets=False)
    model = HeroForVideoQuestionAnswering(config).eval()
    candidates = torch.randint(3, 50, (3, 4, 6))
    inputs = dict(input_ids=candidates, frame_features=batch["frame_features"], frame_attention_mask=batch["frame_attention_mask"],
                  subtitle_input_ids=batch["input_ids"], text_subtitle_index=batch["text_subtitle_index"],
                  frame_subtitle_index=batch["frame_subtitle_index"])
    output = model(**inputs, labels=torch.tensor([0, 3, 1]))
    assert output.logits.shape == (3, 4) and output.loss > 0
    swapped = model(**dict(inputs, input_ids=candidates[:, [3, 2, 1, 0]]))
    torch.testing.assert_close(swapped.logits, output.logits[:, [3, 2, 1, 0]])
    model.save_pretrained(tmp_path)
    assert type(transformers.AutoModelForMultipleChoice.from_pretrained(tmp_path)) is HeroForVideoQuestionAnswering
    with pytest.raises(ValueError, match="choices"):
        model(**dict(inputs, input_ids=candidates[:, 0]))


def test_video_qa_appends_each_candidate_to_every_subtitle_with_frames(monkeypatch):
    config = tiny_hero_config()
    model = HeroForVideoQuestionAnswering(config).eval()
    subtitles = torch.tensor([[5, 6, 7, 8, 9, 0, 4]])
    text_index = torch.tensor([[0, 0, 1, 1, 1, -1, 2]])  # subtitle 2 has no frame
    frame_index = torch.tensor([[0, 1, 1, -1]])
    candidates = torch.tensor([[[20, 21, 0], [30, 31, 32]]])
    mask = torch.tensor([[[1, 1, 0], [1, 1, 1]]])
    arguments = (candidates, mask, torch.randn(1, 4, 12), None, subtitles, text_index, frame_index)
    ids, index, frames, frame_mask = model._candidate_inputs(*arguments)
    # Copy slot k holds the k-th subtitle with frames (0, then 1); eagerly there are as many slots as needed.
    assert ids.tolist() == [[5, 6, 7, 8, 9, 0, 4] + [20, 21, 0] * 2, [5, 6, 7, 8, 9, 0, 4] + [30, 31, 32] * 2]
    assert index.tolist() == [[0, 0, 1, 1, 1, -1, 2, 0, 0, -1, 1, 1, -1], [0, 0, 1, 1, 1, -1, 2, 0, 0, 0, 1, 1, 1]]
    assert frames.tolist() == [[0, 1, 1, -1]] * 2 and frame_mask.tolist() == [[1, 1, 1, 1]]
    # Traced (static shapes): one slot per frame, the unused ones masked.
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    static_ids, static_index, _, _ = model._candidate_inputs(*arguments)
    assert static_ids[:, :13].tolist() == ids.tolist() and static_ids.shape == (2, 7 + 4 * 3)
    assert static_index[:, :13].tolist() == index.tolist() and (static_index[:, 13:] == -1).all()
    monkeypatch.undo()
    # Without subtitles the candidate is one subtitle over every valid frame.
    _, index, frames, _ = model._candidate_inputs(candidates, mask, torch.randn(1, 4, 12), torch.tensor([[1, 1, 1, 0]]), None, None, None)
    assert index[:, 1:].tolist() == [[0, 0, -1], [0, 0, 0]] and frames.tolist() == [[0, 0, 0, -1]] * 2


def test_video_qa_answer_and_span_heads_learn_a_fixed_batch():
    torch.manual_seed(0)
    config = tiny_hero_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    batch = hero_batch(config, targets=False)
    model = HeroForVideoQuestionAnswering(config).train()
    candidates = torch.randint(3, 50, (3, 4, 5))
    mask = torch.ones_like(candidates)
    mask[0, 2, 3:] = 0
    inputs = dict(input_ids=candidates, attention_mask=mask, frame_features=batch["frame_features"],
                  frame_attention_mask=batch["frame_attention_mask"], subtitle_input_ids=batch["input_ids"],
                  text_subtitle_index=batch["text_subtitle_index"], frame_subtitle_index=batch["frame_subtitle_index"])
    targets = dict(labels=torch.tensor([2, 0, 3]), start_positions=torch.tensor([1, 0, 2]), end_positions=torch.tensor([3, 4, -100]))
    output = model(**inputs, **targets)
    assert output.logits.shape == (3, 4) and output.start_logits.shape == output.end_logits.shape == (3, 6)
    assert output.start_logits[1, 5] == output.end_logits[1, 5] == torch.finfo(torch.float32).min  # padded frame
    answer_only = model(**inputs, labels=targets["labels"]).loss
    span = (torch.nn.functional.cross_entropy(output.start_logits, targets["start_positions"])
            + torch.nn.functional.cross_entropy(output.end_logits, targets["end_positions"], ignore_index=-100)) / 2
    torch.testing.assert_close(output.loss, answer_only + config.qa_span_weight * span)
    # Each candidate is fused and scored on its own: changing candidate 1 leaves the other candidates' logits alone.
    changed = candidates.clone()
    changed[:, 1] = 7
    with torch.no_grad():
        other = model(**dict(inputs, input_ids=changed))
    torch.testing.assert_close(other.logits[:, [0, 2, 3]], output.logits[:, [0, 2, 3]])
    assert not torch.allclose(other.logits[:, 1], output.logits[:, 1])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = model(**inputs, **targets).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses
    with pytest.raises(ValueError, match="start_positions"):
        model(**inputs, labels=targets["labels"], start_positions=torch.tensor([0, 9, 1]), end_positions=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="pass both or neither"):
        model(**inputs, labels=targets["labels"], start_positions=torch.tensor([0, 1, 1]))


def test_processor_keeps_the_first_frames_and_aligns_subtitles_to_what_is_kept():
    from vlpretrain import VideoLanguageProcessor
    from vlpretrain.training.sources import default_tokenizer

    processor = VideoLanguageProcessor(default_tokenizer(), max_frames=4)
    subtitles = [{"text": ["first half", "second half", "overlaps both"], "start": [0.0, 2.0, 1.2], "end": [2.0, 4.0, 2.6]}]
    encoded = processor.encode_subtitled_videos(subtitles, [np.ones((8, 12), np.float32)], frame_interval=0.5)
    # 8 frames of 0.5 s, more than max_frames=4: the first 4 (0-2 s) are kept and times are clipped to 2 s. The second
    # subtitle then lies outside the video (its text stays, it gets no frame); the third, clipped to [1.2, 2], wins
    # frames 2 [1, 1.5) (IoU 0.3 against 0.25) and 3 [1.5, 2) (0.625 against 0.25).
    assert encoded["frame_features"].shape == (1, 4, 12)
    assert encoded["frame_subtitle_index"].tolist() == [[0, 0, 2, 2]]
    assert int(encoded["text_subtitle_index"].max()) == 2
    with pytest.raises(ValueError, match="no non-empty subtitle"):
        processor.encode_subtitled_videos([{"text": ["", " "], "start": [0.0, 1.0], "end": [1.0, 2.0]}], [np.ones((4, 12), np.float32)])
    with pytest.raises(ValueError, match=r"expected \(F >= 1, D\)"):
        processor.encode_subtitled_videos(subtitles, [np.ones((0, 12), np.float32)])
    model = HeroForVideoTextRetrieval(tiny_hero_config())
    with pytest.raises(ValueError, match="40 query tokens"):
        model(input_ids=torch.randint(3, 50, (2, 40)), frame_features=torch.randn(2, 4, 12))


def test_task_heads_loaded_from_an_encoder_folder_are_initialised(tmp_path):
    HeroModel(tiny_hero_config()).save_pretrained(tmp_path)
    model = HeroForVideoMomentRetrieval.from_pretrained(tmp_path)
    for predictor in (model.matching_heads.start_predictor, model.matching_heads.end_predictor):
        weight = predictor.weight
        # PyTorch's default Conv1d initialisation: uniform within 1 / sqrt(fan_in = 5).
        assert torch.isfinite(weight).all() and 0 < weight.abs().max() <= 5**-0.5


def test_every_objective_and_the_qa_head_run_under_bfloat16_autocast():
    """Heads whose output is bfloat16 under autocast while their input is float32 mask with their own dtype."""
    model = HeroForPreTraining(tiny_hero_config()).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(**hero_batch(model.config))
    assert all(torch.isfinite(output[f"{name}_loss"].float()) for name in OBJECTIVES)


def test_converted_checkpoint_normalises_subtitle_embeddings_with_the_release_eps(tmp_path):
    """The release's SubEmbeddings use LayerNorm eps 1e-5 while its layers use 1e-12 (model/embed.py)."""
    from helpers.univl_hero_factories import original_hero_state_dict

    original = original_hero_state_dict(tiny_hero_config())
    torch.save(original, tmp_path / "hero.pt")
    assert cli_main(["convert", "--from", "hero", str(tmp_path / "hero.pt"), "--output-dir", str(tmp_path / "out")]) == 0
    model = HeroForPreTraining.from_pretrained(tmp_path / "out").eval()
    assert model.config.embedding_layer_norm_eps == 1e-5 and model.config.layer_norm_eps == 1e-12
    assert model.hero.embeddings.norm.eps == 1e-5
    assert model.hero.cross_layers[0].ffn.output.norm.eps == 1e-12
    ids = torch.tensor([[2, 7, 9, 11]])
    prefix = "v_encoder.f_encoder.embeddings."
    # Embeddings whose sum has a small spread, where eps 1e-5 and 1e-12 give clearly different outputs.
    summed = 1e-3 * (original[f"{prefix}word_embeddings.weight"][ids] + original[f"{prefix}position_embeddings.weight"][:4]
                     + original[f"{prefix}token_type_embeddings.weight"][1])
    with torch.no_grad():
        model.hero.embeddings.word_embeddings.weight.mul_(1e-3)
        model.hero.embeddings.position_embeddings.weight.mul_(1e-3)
        model.hero.embeddings.token_type_embeddings.weight.mul_(1e-3)
        ours = model.hero.embeddings(ids, torch.ones_like(ids))
    weight, bias = original[f"{prefix}LayerNorm.weight"], original[f"{prefix}LayerNorm.bias"]
    release = torch.nn.functional.layer_norm(summed, (summed.shape[-1],), weight, bias, 1e-5)
    torch.testing.assert_close(ours, release, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(ours, torch.nn.functional.layer_norm(summed, (summed.shape[-1],), weight, bias, 1e-12), atol=1e-3)


def test_subtitles_are_the_separator_followed_by_their_words():
    """The release feeds ``</s> + ids`` per subtitle (data/data.py); the processor and the training examples agree."""
    from vlpretrain import VideoLanguageProcessor
    from vlpretrain.training.sources import default_tokenizer, load_source, pretraining_examples

    tokenizer = default_tokenizer()
    processor = VideoLanguageProcessor(tokenizer)
    texts = ["a red circle moves", "then it stops"]
    encoded = processor.encode_subtitled_videos(
        [{"text": texts, "start": [0.0, 1.0], "end": [1.0, 2.0]}], [np.ones((4, 12), np.float32)], frame_interval=0.5
    )
    words = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    expected = [tokenizer.sep_token_id] + words[0] + [tokenizer.sep_token_id] + words[1]
    assert encoded["input_ids"][0].tolist() == expected
    assert encoded["text_subtitle_index"][0].tolist() == [0] * (len(words[0]) + 1) + [1] * (len(words[1]) + 1)
    short = processor.encode_subtitled_videos(
        [{"text": texts[:1], "start": [0.0], "end": [1.0]}], [np.ones((4, 12), np.float32)], max_subtitle_length=3
    )
    assert short["input_ids"][0].tolist() == [tokenizer.sep_token_id] + words[0][:2]
    source = load_source("shapes-video", "train", 1, seed=0)
    example = pretraining_examples(source, tokenizer, 20)[0]
    for ids, text in zip(example["subtitle_input_ids"], source[0]["subtitles"]["text"]):
        assert ids == [tokenizer.sep_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"]


def test_vsm_queries_are_subtitles_with_frames_padded_to_five_per_video():
    from vlpretrain.modeling.hero import select_vsm_queries

    # Video 0: subtitles 0-3 have tokens, subtitle 1 has no frame. Video 1: subtitles 0-6, all with frames.
    # Video 2: its only subtitle has no frame (frames unmatched or padded).
    text_index = torch.tensor([[0, 0, 1, 1, 2, 3, 3, -1], [0, 1, 2, 3, 4, 5, 6, 6], [0, 0, 0, -1, -1, -1, -1, -1]])
    frame_index = torch.tensor([[0, 2, 2, 3, -1, -1, -1], [0, 1, 2, 3, 4, 5, 6], [-1, -1, -1, -1, -1, -1, -1]])
    draws = set()
    for seed in range(20):
        subtitles, has_query = select_vsm_queries(text_index, frame_index, 5, torch.tensor(seed))
        video0, video1 = subtitles[0].tolist(), subtitles[1].tolist()
        assert has_query.tolist() == [True, True, False]  # video 2 has no query
        assert video0[:3] == [0, 2, 3] and video0[3:] == [3, 3]  # never subtitle 1; padded with the last one
        assert len(set(video1)) == 5 and video1 == sorted(video1)
        draws.add(tuple(video1))
    assert len(draws) > 5  # the seed changes the draw
    # In the model: the queries start with bos_token_id and the loss is finite and differentiable.
    config = tiny_hero_config(bos_token_id=1)
    model = HeroForPreTraining(config).eval()
    batch = hero_batch(config, targets=False)
    seen = []
    model.hero.encode_text_only = lambda ids, mask, original=model.hero.encode_text_only: seen.append(ids) or original(ids, mask)
    loss = model(**batch, task="vsm").vsm_loss
    assert torch.isfinite(loss) and loss.requires_grad
    assert seen[0].shape[0] == 15 and (seen[0][:, 0] == 1).all()


def _release_video_level_loss(scores, per_video, margin, pool, weight):
    """linjieli222/HERO model/pretrain.py get_video_level_loss (use_all_neg, hinge), queries grouped per video."""
    queries, videos = scores.shape
    masked = scores.clone()
    positives = []
    for video in range(videos):
        rows = slice(video * per_video, (video + 1) * per_video)
        positives.append(scores[rows, video])
        masked[rows, video] = 999
    positives = torch.stack(positives)  # (V, per_video)
    negative_videos = masked.sort(dim=1, descending=True).values[:, 1:]
    loss_ctx = (margin + negative_videos - positives.reshape(queries, 1)).clamp(min=0)
    negative_queries = masked.T.sort(dim=1, descending=True).values[:, per_video:]
    loss_q = (margin + negative_queries[:, None, :] - positives[..., None]).clamp(min=0).reshape(queries, -1)
    for loss in (loss_ctx, loss_q):
        if pool is not None:
            weights = torch.full_like(loss, 0.1)
            weights[:, :pool] = weight
            loss.mul_(weights)
    return loss_ctx.mean(1).mean(0), loss_q.mean(1).mean(0)


def test_vsm_ranking_loss_matches_the_release_with_and_without_hard_negatives():
    from vlpretrain.modeling.hero import hinge_ranking_loss

    scores = torch.rand(4 * 5, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    owner = torch.arange(4).repeat_interleave(5)
    for pool in (None, 2):
        context, query = _release_video_level_loss(scores, 5, 0.1, pool, 10.0)
        ours = hinge_ranking_loss(scores, owner, 0.1, 8.0, 8.0, pool, 10.0)
        torch.testing.assert_close(ours, 8.0 * context + 8.0 * query)
    assert not torch.allclose(hinge_ranking_loss(scores, owner, 0.1, 8.0, 8.0, 2, 10.0), hinge_ranking_loss(scores, owner, 0.1, 8.0, 8.0))


def test_hard_negatives_switch_on_at_the_configured_training_step():
    values = dict(sample_tasks=False, loss_weights={"vsm": 1.0}, vsm_span_probability=0.0, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0, vsm_hard_negative_pool_size=1, vsm_hard_negative_weight=10.0)
    scheduled = HeroForPreTraining(tiny_hero_config(vsm_hard_negative_start_step=1, **values)).train()
    plain = HeroForPreTraining(tiny_hero_config(vsm_hard_negative_start_step=None, **values)).train()
    plain.load_state_dict(scheduled.state_dict())
    batch = hero_batch(scheduled.config, targets=False)
    before = [model(**batch).vsm_loss for model in (scheduled, plain)]  # training forward pass 0
    after = [model(**batch).vsm_loss for model in (scheduled, plain)]  # pass 1: hard negatives from here on
    assert int(scheduled.task_step) == int(plain.task_step) == 2
    torch.testing.assert_close(before[0], before[1])
    assert not torch.allclose(after[0], after[1])


def test_vsm_span_loss_is_the_sum_of_the_start_and_end_cross_entropies():
    """model/pretrain.py: loss_st_ed = lw_st_ed * (loss_st + loss_ed) (video QA averages them instead)."""
    config = tiny_hero_config(vsm_span_weight=1.0)
    model = HeroForPreTraining(config).eval()  # evaluation always includes the span loss
    batch = hero_batch(config, targets=False)
    frames = batch["frame_features"].shape[1]

    def flat(queries, states, mask):
        return torch.zeros(queries.shape[0], frames), torch.zeros(queries.shape[0], frames)

    model.matching_heads.span_logits = flat  # uniform logits: each cross-entropy is log(frames)
    with_span = model(**batch, task="vsm").vsm_loss
    model.config.vsm_span_weight = 0.0
    without = model(**batch, task="vsm").vsm_loss
    torch.testing.assert_close(with_span - without, torch.tensor(2 * np.log(frames), dtype=torch.float32))
