"""HERO's subtitle grouping with static shapes equals the release's per-subtitle runs (and VSM's fixed query slots the
per-query loss).

The model runs every subtitle of a video at once (one sequence per video, attention kept inside each subtitle, local
positions from ranks); the reference below runs each subtitle on its own, as linjieli222/HERO model/encoder.py
does, one video and one subtitle at a time. Both use the same seeded weights.
"""

from __future__ import annotations

import pytest
import torch
from helpers.univl_hero_factories import hero_batch, tiny_hero_config

from vlpretrain import HeroForPreTraining, HeroForVideoQuestionAnswering, HeroModel
from vlpretrain.modeling.hero import hinge_ranking_loss, video_scores
from vlpretrain.modeling.layers import key_padding_mask
from vlpretrain.modeling.losses import classification_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_cross_modal(hero, input_ids, text_index, frame_features, frame_index, appended=None):
    """Frame outputs (B, F, H) and token outputs (B, T, H) of the cross-modal transformer, one subtitle at a time:
    [its frames ; its tokens (; ``appended[b]``, only for subtitles with frames)], positions 0.. in each part."""
    config = hero.config
    matched = frame_features.new_zeros(*frame_index.shape, config.hidden_size)
    text = frame_features.new_zeros(*text_index.shape, config.hidden_size)
    for row in range(frame_index.shape[0]):
        numbers = set(text_index[row][text_index[row] >= 0].tolist()) | set(frame_index[row][frame_index[row] >= 0].tolist())
        for number in sorted(numbers):
            frames = (frame_index[row] == number).nonzero().squeeze(1)
            tokens = (text_index[row] == number).nonzero().squeeze(1)
            ids = input_ids[row, tokens]
            if appended is not None and frames.numel():
                ids = torch.cat([ids, appended[row]])
            positions = torch.arange(frames.numel()).clamp_max(config.max_frames - 1)[None]
            frame_embeds = hero.frame_embeddings(
                frame_features[row, frames][None], positions, torch.ones_like(positions),
                token_type_embeddings=hero.embeddings.token_type_embeddings,
            )
            states = torch.cat([frame_embeds, hero.embeddings(ids[None], torch.ones_like(ids)[None])], 1)
            for layer in hero.cross_layers:
                states, _ = layer(states)
            matched[row, frames] = states[0, : frames.numel()]
            text[row, tokens] = states[0, frames.numel() : frames.numel() + tokens.numel()]
    return matched, text


def reference_temporal(hero, fused, frame_mask):
    positions = torch.arange(fused.shape[1])[None]
    states = hero.temporal_dropout(hero.temporal_norm(fused + hero.temporal_position_embeddings(positions)))
    mask = key_padding_mask(frame_mask, states.dtype, "eager")
    for layer in hero.temporal_layers:
        states, _ = layer(states, mask)
    return states


def edge_case_batch(config) -> dict:
    """Subtitle numbers with gaps, a subtitle with frames and no token, one with tokens and no frame, a video with no
    matched frame, padded tokens and frames."""
    generator = torch.Generator().manual_seed(3)
    input_ids = torch.randint(3, config.vocab_size, (3, 8), generator=generator)
    attention_mask = torch.tensor([[1] * 8, [1] * 6 + [0] * 2, [1] * 8])
    text_subtitle_index = torch.tensor([[0, 0, 3, 3, 3, 7, 7, -1], [2, 2, 2, 5, 5, 5, 9, 9], [0, 0, 0, 0, 1, 1, 1, 1]])
    frame_subtitle_index = torch.tensor([[0, 3, 3, 4, 4, 7, -1], [2, 2, 5, 5, 5, 5, 5], [-1] * 7])
    frame_attention_mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2, [1] * 7])
    frame_features = torch.randn(3, 7, config.frame_feature_size, generator=generator)
    return dict(
        input_ids=input_ids, attention_mask=attention_mask, frame_features=frame_features,
        frame_attention_mask=frame_attention_mask, text_subtitle_index=text_subtitle_index,
        frame_subtitle_index=frame_subtitle_index,
    )


def _masked_indices(batch):
    text_index = batch["text_subtitle_index"].masked_fill(batch["attention_mask"] == 0, -1)
    frame_index = batch["frame_subtitle_index"].masked_fill(batch["frame_attention_mask"] == 0, -1)
    return text_index, frame_index


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("make_batch", [lambda config: hero_batch(config, targets=False), edge_case_batch])
def test_hero_model_equals_the_per_subtitle_runs(make_batch, attention):
    config = tiny_hero_config(max_frames=8)
    torch.manual_seed(0)
    model = HeroModel(config).eval()
    model.set_attn_implementation(attention)
    batch = make_batch(config)
    output = model(**batch)
    text_index, frame_index = _masked_indices(batch)
    with torch.no_grad():
        matched, text = reference_cross_modal(model, batch["input_ids"], text_index, batch["frame_features"], frame_index)
        fused = model.frame_transform(batch["frame_features"]) + matched
        frames = reference_temporal(model, fused, batch["frame_attention_mask"])
    torch.testing.assert_close(output.text_last_hidden_state, text)
    torch.testing.assert_close(output.visual_last_hidden_state, frames)
    assert output.text_last_hidden_state[text_index < 0].abs().max() == 0


def test_video_qa_fuses_each_candidate_appended_to_every_subtitle_with_frames():
    config = tiny_hero_config(max_frames=8)
    torch.manual_seed(0)
    model = HeroForVideoQuestionAnswering(config).eval()
    batch = edge_case_batch(config)
    batch["frame_subtitle_index"][2, :3] = 1  # video 2: frames 0-2 show subtitle 1
    candidates = torch.randint(3, 40, (3, 2, 5), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(candidates)
    mask[0, 1, 3:] = 0
    ids, index, frame_index, frame_mask = model._candidate_inputs(
        candidates, mask, batch["frame_features"], batch["frame_attention_mask"], batch["input_ids"],
        batch["text_subtitle_index"], batch["frame_subtitle_index"],
    )
    features = batch["frame_features"].repeat_interleave(2, 0)
    fused, _, _ = model.hero.fuse(ids, index, features, frame_index)
    text_index, subtitle_frames = _masked_indices(batch)
    for choice in range(2):
        appended = [candidates[row, choice][mask[row, choice].bool()] for row in range(3)]
        with torch.no_grad():
            matched, _ = reference_cross_modal(model.hero, batch["input_ids"], text_index, batch["frame_features"], subtitle_frames, appended)
        expected = model.hero.frame_transform(batch["frame_features"]) + matched
        torch.testing.assert_close(fused[choice::2], expected)


def reference_vsm_loss(model, batch):
    """The VSM loss one query at a time, as before the static rewrite, when every candidate subtitle is drawn (at
    most ``vsm_queries_per_video`` per video): queries of the exact width, no left-out query slots."""
    config, hero = model.config, model.hero
    text_index, frame_index = _masked_indices(batch)
    input_ids, frame_mask = batch["input_ids"], batch["frame_attention_mask"]
    queries = []
    for row in range(input_ids.shape[0]):
        with_frames = set(frame_index[row][frame_index[row] >= 0].tolist())
        numbers = [number for number in sorted(set(text_index[row][text_index[row] >= 0].tolist())) if number in with_frames]
        assert len(numbers) <= config.vsm_queries_per_video  # the draw takes them all
        if numbers:
            queries += [(row, number) for number in numbers + [numbers[-1]] * (config.vsm_queries_per_video - len(numbers))]
    owner = torch.tensor([row for row, _ in queries])
    width = max(int((text_index[row] == number).sum()) for row, number in queries)
    query_ids = torch.zeros(len(queries), width, dtype=torch.long)
    query_mask = torch.zeros_like(query_ids)
    kept_index, starts, ends = text_index.clone(), [], []
    for slot, (row, number) in enumerate(queries):
        tokens = (text_index[row] == number).nonzero().squeeze(1)
        query_ids[slot, : tokens.numel()] = input_ids[row, tokens]
        query_ids[slot, 0] = config.bos_token_id
        query_mask[slot, : tokens.numel()] = 1
        kept_index[row, tokens[1:]] = -1
        aligned = (frame_index[row] == number).nonzero().squeeze(1)
        starts.append(int(aligned[0]))
        ends.append(min(max(int(aligned[0]) + 1, int(aligned[-1])), int(frame_mask[row].sum()) - 1))
    query_states = hero.encode_text_only(query_ids, query_mask).last_hidden_state
    vectors = model.matching_heads.query_encoder(query_states, query_mask)
    fused, _, _ = hero.fuse(input_ids, kept_index, batch["frame_features"], frame_index)
    frames = hero.temporal(fused, frame_mask).last_hidden_state
    weights = (config.vsm_margin, config.vsm_negative_video_weight, config.vsm_negative_query_weight)
    loss = hinge_ranking_loss(video_scores(vectors, frames, frame_mask), owner, *weights)
    start_logits, end_logits = model.matching_heads.span_logits(vectors, frames[owner], frame_mask[owner])
    span = classification_loss(start_logits, torch.tensor(starts)) + classification_loss(end_logits, torch.tensor(ends))
    return loss + config.vsm_span_weight * span


@pytest.mark.parametrize("make_batch", [lambda config: hero_batch(config, targets=False), edge_case_batch])
def test_vsm_with_fixed_query_slots_equals_the_per_query_loss(make_batch):
    config = tiny_hero_config(max_frames=8, bos_token_id=1, vsm_span_weight=0.5)
    torch.manual_seed(0)
    model = HeroForPreTraining(config).eval()
    batch = make_batch(config)  # the edge cases hold a video without any subtitle to query (no matched frame)
    with torch.no_grad():
        expected = reference_vsm_loss(model, batch)
        torch.testing.assert_close(model(**batch, task="vsm").vsm_loss, expected)
