"""VideoBERT: joint sequence, objectives, generation, kernels, checkpointing, save/load, remote code, bad input."""

from __future__ import annotations

import textwrap

import pytest
import torch
from helpers.actbert_videobert_factories import (
    clip_features,
    fitted_tokenizer,
    fitted_videobert,
    tiny_videobert_config,
    video_text_batch,
)
from helpers.fresh_process import run_fresh_process
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoModelForMaskedLM, AutoModelForPreTraining, AutoModelForSequenceClassification

from vlpretrain import (
    VideoBertForConditionalGeneration,
    VideoBertForPreTraining,
    VideoBertForVideoTextRetrieval,
    VideoBertModel,
    VisualWordTokenizer,
)
from vlpretrain.data.collators import collator_for_config


def test_joint_sequence_layout_and_quantisation():
    model = fitted_videobert(VideoBertModel).eval()
    config = model.config
    batch = video_text_batch(config, labels=False)
    words = model.quantize(batch["frame_features"])
    assert torch.equal(words, fitted_tokenizer().encode(batch["frame_features"]))
    ids, mask, types, start = model.joint_sequence(batch["input_ids"], batch["attention_mask"], words,
                                                   batch["frame_attention_mask"])
    assert start == 7 and ids.shape == (3, 6 + 1 + 5 + 1)
    assert (ids[:, 6] == config.video_separator_id).all() and (ids[:, -1] == config.sep_token_id).all()
    assert torch.equal(ids[:, 7:12], words + config.vocab_size)
    assert (types[:, :7] == 0).all() and (types[:, 7:] == 1).all()
    assert torch.equal(mask[1, 7:12], batch["frame_attention_mask"][1])
    output = model(**batch)
    assert output.visual_last_hidden_state.shape == (3, 5, 32) and output.text_last_hidden_state.shape == (3, 6, 32)


def test_objectives_are_returned_weighted_and_switchable():
    config = tiny_videobert_config(loss_weights={"mlm": 1.0, "visual_word": 2.0, "matching": 0.5})
    model = fitted_videobert(VideoBertForPreTraining, config).eval()
    batch = video_text_batch(config)
    output = model(**batch)
    expected = output.mlm_loss + 2.0 * output.visual_word_loss + 0.5 * output.matching_loss
    torch.testing.assert_close(output.loss, expected)
    assert output.prediction_logits.shape == (3, config.joint_vocab_size)  # labelled positions only
    assert output.visual_word_logits.shape == (3, config.joint_vocab_size)
    off = fitted_videobert(VideoBertForPreTraining, tiny_videobert_config(loss_weights={"mlm": 1.0})).eval()
    result = off(**batch)
    assert off.alignment_head is None and result.visual_word_loss is None and result.matching_loss is None
    torch.testing.assert_close(result.loss, result.mlm_loss)


def test_visual_word_targets_are_the_words_of_the_unmasked_clips():
    model = fitted_videobert(VideoBertForPreTraining).eval()
    batch = video_text_batch(model.config)
    words = model.video_bert.quantize(batch["frame_feature_targets"])
    labels = torch.full_like(words, -100)
    labels[:, 1] = words[:, 1]
    explicit = model(**{**batch, "visual_word_labels": labels})
    torch.testing.assert_close(explicit.visual_word_loss, model(**batch).visual_word_loss)


def test_collator_builds_the_videobert_batch():
    from vlpretrain.training.sources import default_tokenizer

    tokenizer = default_tokenizer()
    config = tiny_videobert_config(vocab_size=len(tokenizer), max_position_embeddings=64)
    collator = collator_for_config(config, tokenizer, seed=0, frame_mask_probability=0.5)
    examples = [{"input_ids": tokenizer("a red circle moves left")["input_ids"], "frame_features": clip_features(4, seed=i),
                 "video_id": i} for i in range(4)]
    batch = collator(examples)
    assert {"labels", "masked_frames", "frame_feature_targets", "matched_labels"} <= set(batch)
    model = fitted_videobert(VideoBertForPreTraining, config)
    output = model(**batch)
    assert output.visual_word_loss is not None and torch.isfinite(output.loss)


def test_activation_checkpointing_keeps_gradients():
    batch = video_text_batch(tiny_videobert_config())

    def grads(checkpointing: bool) -> dict[str, torch.Tensor]:
        model = fitted_videobert(VideoBertForPreTraining, tiny_videobert_config(hidden_dropout_prob=0.0,
                                 attention_probs_dropout_prob=0.0))
        model.train()
        if checkpointing:
            model.activation_checkpointing_enable()
        model(**batch).loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    plain, checkpointed = grads(False), grads(True)
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(plain[name], checkpointed[name], rtol=1e-4, atol=1e-6)


def test_loss_of_every_objective_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    model = fitted_videobert(VideoBertForPreTraining)
    batch = video_text_batch(model.config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    keys = ("mlm_loss", "visual_word_loss", "matching_loss")
    model.eval()
    with torch.no_grad():
        first = {k: float(model(**batch)[k]) for k in keys}
    model.train()
    for _ in range(25):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        last = model(**batch)
    for key in keys:
        assert float(last[key]) < first[key], (key, first[key], float(last[key]))


def test_generate_text_to_video_and_continuation():
    model = fitted_videobert(VideoBertForConditionalGeneration).eval()
    config = model.config
    batch = video_text_batch(config, labels=False)
    prompt = model.text_to_video_prompt(batch["input_ids"][1:], batch["attention_mask"][1:])
    sequences = model.generate(**prompt, max_new_tokens=4, do_sample=False)
    words = model.generated_visual_words(sequences, prompt["input_ids"].shape[1])
    assert words.shape == (2, 4) and int(words.min()) >= 0 and int(words.max()) < config.num_visual_words
    # Greedy = argmax of the forward at each step.
    step = model(**prompt).logits[:, -1]
    assert torch.equal(step.argmax(-1) - config.vocab_size, words[:, 0])
    continuation = model.continuation_prompt(frame_features=batch["frame_features"][:, :3])
    assert torch.equal(continuation["input_ids"][:, 2:] - config.vocab_size, model.video_bert.quantize(batch["frame_features"][:, :3]))
    future = model.generate(**continuation, max_new_tokens=3, do_sample=True, top_k=3)
    future_words = model.generated_visual_words(future, continuation["input_ids"].shape[1])
    clips = model.visual_word_tokenizer().nearest_clips(future_words, clip_features())
    assert clips.shape == (3, 3)


def test_pretraining_checkpoint_loads_into_every_head_and_the_auto_classes(tmp_path):
    model = fitted_videobert(VideoBertForPreTraining).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "visual_words.json").exists() and not (tmp_path / "processing_visual_words.py").exists()
    tokenizer = VisualWordTokenizer.from_pretrained(tmp_path)
    torch.testing.assert_close(tokenizer.centroids, model.video_bert.visual_word_centroids)
    batch = video_text_batch(model.config)
    reloaded = AutoModelForPreTraining.from_pretrained(tmp_path).eval()
    assert type(reloaded) is VideoBertForPreTraining and reloaded.config.visual_words_fitted
    torch.testing.assert_close(reloaded(**batch).loss, model(**batch).loss)
    assert type(AutoModel.from_pretrained(tmp_path)) is VideoBertModel
    retrieval = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(retrieval) is VideoBertForVideoTextRetrieval
    torch.testing.assert_close(retrieval.alignment_head.weight, model.alignment_head.weight)
    generator = AutoModelForMaskedLM.from_pretrained(tmp_path)
    assert type(generator) is VideoBertForConditionalGeneration
    torch.testing.assert_close(generator.mlm_head.decoder.weight, model.mlm_head.decoder.weight)
    assert generator.mlm_head.decoder.weight.data_ptr() == generator.video_bert.embeddings.word_embeddings.weight.data_ptr()


FRESH_PROCESS = textwrap.dedent(
    """
    import sys
    sys.modules["vlpretrain"] = None
    import torch, transformers
    from safetensors.torch import load_file, save_file
    folder, inputs_path, outputs_path = sys.argv[1:4]
    inputs = load_file(inputs_path)
    model = transformers.AutoModelForPreTraining.from_pretrained(folder, trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
    with torch.no_grad():
        out = model(**inputs)
    tokenizer_module = sys.modules[type(model).__module__.rsplit(".", 1)[0] + ".processing_visual_words"]
    tokenizer = tokenizer_module.VisualWordTokenizer.from_pretrained(folder)
    words = tokenizer.encode(inputs["frame_feature_targets"])
    generator = transformers.AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True).eval()
    prompt = generator.text_to_video_prompt(inputs["input_ids"])
    generated = generator.generate(**prompt, max_new_tokens=2, do_sample=False)
    save_file({"loss": out.loss.reshape(1), "words": words, "generated": generated}, outputs_path)
    """
)


@pytest.mark.slow
def test_fresh_process_loads_model_and_tokenizer_with_transformers_alone(tmp_path):
    model = fitted_videobert(VideoBertForPreTraining).eval()
    model.save_pretrained(tmp_path / "model", remote_code=True)
    batch = {k: v.contiguous() for k, v in video_text_batch(model.config).items()}
    batch["masked_frames"] = batch["masked_frames"].long()
    save_file(batch, tmp_path / "inputs.safetensors")
    run_fresh_process(
        FRESH_PROCESS, tmp_path, tmp_path / "model", tmp_path / "inputs.safetensors", tmp_path / "out.safetensors",
    )
    remote = load_file(tmp_path / "out.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(remote["loss"][0], model(**batch).loss)
    assert torch.equal(remote["words"], fitted_tokenizer().encode(batch["frame_feature_targets"]))
    generator = VideoBertForConditionalGeneration.from_pretrained(tmp_path / "model").eval()
    prompt = generator.text_to_video_prompt(batch["input_ids"])
    assert torch.equal(remote["generated"], generator.generate(**prompt, max_new_tokens=2, do_sample=False))


def test_bad_inputs_raise_before_compute():
    config = tiny_videobert_config()
    unfitted = VideoBertForPreTraining(config)
    batch = video_text_batch(config)
    with pytest.raises(ValueError, match="no fitted visual-word tokenizer"):
        unfitted(**batch)
    model = fitted_videobert(VideoBertForPreTraining)
    with pytest.raises(ValueError, match="frame_features: expected shape"):
        model(**{**batch, "frame_features": batch["frame_features"][..., :-1]})
    inputs = video_text_batch(config, labels=False)
    words = torch.zeros(3, 5, dtype=torch.long)
    with pytest.raises(ValueError, match=r"visual_word_ids: expected ids in \[0, 9\)"):
        model.video_bert(input_ids=inputs["input_ids"], visual_word_ids=words + 9)
    with pytest.raises(ValueError, match="either frame_features or visual_word_ids"):
        model.video_bert(**inputs, visual_word_ids=words)
    with pytest.raises(ValueError, match="masked_frames: expected shape"):
        model(**{**batch, "masked_frames": batch["masked_frames"][:, :2]})
    with pytest.raises(ValueError, match="tokenizer: has 2 levels x 4 clusters"):
        model.set_visual_word_tokenizer(VisualWordTokenizer(2, 4, batch_size=64).fit(clip_features()))
    with pytest.raises(ValueError, match="over 15-d features; the config expects 2 x 3 over 16-d"):
        model.set_visual_word_tokenizer(VisualWordTokenizer(2, 3, batch_size=64).fit(clip_features(size=15)))
    with pytest.raises(ValueError, match="expected a fitted VisualWordTokenizer"):
        model.set_visual_word_tokenizer(VisualWordTokenizer(2, 3))
    with pytest.raises(ValueError, match=r"visual_word_labels: expected integer visual-word ids in \[0, 9\) or -100"):
        model(**{**batch, "visual_word_labels": torch.full(batch["masked_frames"].shape, 9)})
    with pytest.raises(ValueError, match="frame_features: expected finite values"):
        model(**{**batch, "frame_features": batch["frame_features"].masked_fill(batch["masked_frames"][..., None], float("nan"))})
    generator = fitted_videobert(VideoBertForConditionalGeneration)
    with pytest.raises(ValueError, match="joint-vocabulary ids"):
        generator(input_ids=torch.tensor([[config.joint_vocab_size]]))


def test_base_size_builds_on_meta():
    from vlpretrain import VideoBertConfig

    with torch.device("meta"):
        model = VideoBertForPreTraining(VideoBertConfig())
    assert model.video_bert.embeddings.word_embeddings.weight.shape == (51259, 1024)
    assert sum(p.numel() for p in model.parameters()) > 300_000_000


def test_a_row_gives_the_same_outputs_whatever_the_other_rows_lengths():
    """Positions count each row's own tokens (packed), so padding added for longer rows changes nothing."""
    model = fitted_videobert(VideoBertModel).eval()
    generator = torch.Generator().manual_seed(3)
    short_text = torch.tensor([[101, 7, 8, 102]])
    short_words = torch.randint(0, model.config.num_visual_words, (1, 2), generator=generator)
    alone = model(input_ids=short_text, visual_word_ids=short_words)
    long_text = torch.tensor([[101, 9, 10, 11, 12, 13, 14, 102]])
    long_words = torch.randint(0, model.config.num_visual_words, (1, 5), generator=generator)
    for first in (True, False):  # the short row first or second in the batch
        rows = [0, 1] if first else [1, 0]
        input_ids = torch.cat([torch.nn.functional.pad(short_text, (0, 4)), long_text])[rows]
        attention_mask = torch.tensor([[1, 1, 1, 1, 0, 0, 0, 0], [1] * 8])[rows]
        words = torch.cat([torch.nn.functional.pad(short_words, (0, 3)), long_words])[rows]
        frame_mask = torch.tensor([[1, 1, 0, 0, 0], [1] * 5])[rows]
        batched = model(input_ids=input_ids, attention_mask=attention_mask, visual_word_ids=words, frame_attention_mask=frame_mask)
        row = 0 if first else 1
        torch.testing.assert_close(batched.text_last_hidden_state[row, :4], alone.text_last_hidden_state[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(batched.visual_last_hidden_state[row, :2], alone.visual_last_hidden_state[0], atol=1e-5, rtol=1e-4)
        # the final [SEP] right after the row's own visual words
        torch.testing.assert_close(batched.last_hidden_state[row, -1], alone.last_hidden_state[0, -1], atol=1e-5, rtol=1e-4)


def test_masked_clips_are_80_percent_mask_10_percent_another_clip_10_percent_kept():
    from vlpretrain.training.sources import default_tokenizer

    tokenizer = default_tokenizer()
    config = tiny_videobert_config(vocab_size=len(tokenizer), max_position_embeddings=64)
    collator = collator_for_config(config, tokenizer, seed=0, frame_mask_probability=0.5)
    assert (collator.maskers.frames.zero_probability, collator.maskers.frames.swap_probability) == (0.8, 0.1)
    examples = [{"input_ids": [101, 7, 102], "frame_features": clip_features(20, seed=i), "video_id": i} for i in range(40)]
    batch = collator(examples)
    masked = batch["masked_frames"]
    features, originals = batch["frame_features"][masked], batch["frame_feature_targets"][masked]
    zeroed = (features == 0).all(-1)
    kept = (features == originals).all(-1)
    swapped = ~zeroed & ~kept
    total = int(masked.sum())
    assert total > 300
    assert abs(int(zeroed.sum()) / total - 0.8) < 0.06 and abs(int(kept.sum()) / total - 0.1) < 0.05
    assert abs(int(swapped.sum()) / total - 0.1) < 0.05
    # Only the zeroed clips become [MASK]; the others enter as the visual word of the feature they carry.
    model = fitted_videobert(VideoBertModel, config).eval()
    words = model.quantize(batch["frame_features"])
    ids, _, _, start = model.joint_sequence(None, None, words, batch["frame_attention_mask"],
                                            masked & (batch["frame_features"] == 0).all(-1))
    seen = []
    model.encode_joint = lambda ids, *args, original=model.encode_joint, **kwargs: seen.append(ids) or original(ids, *args, **kwargs)
    model(frame_features=batch["frame_features"], frame_attention_mask=batch["frame_attention_mask"], masked_frames=masked)
    visual = seen[0][:, start : start + words.shape[1]]
    assert (visual[masked & (batch["frame_features"] == 0).all(-1)] == config.mask_token_id).all()
    assert torch.equal(visual[masked & ~(batch["frame_features"] == 0).all(-1)], (words + config.vocab_size)[masked & ~(batch["frame_features"] == 0).all(-1)])
    assert torch.equal(seen[0], ids)
