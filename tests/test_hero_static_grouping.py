"""HERO's subtitle grouping with static shapes equals the release's per-subtitle runs.

The model runs every subtitle of a video at once (one sequence per video, attention kept inside each subtitle, local
positions from ranks); the reference below runs each subtitle on its own, as linjieli222/HERO model/encoder.py
does, one video and one subtitle at a time. Both use the same seeded weights.
"""

from __future__ import annotations

import pytest
import torch
from helpers.univl_hero_factories import hero_batch, tiny_hero_config

from vlpretrain import HeroForVideoQuestionAnswering, HeroModel
from vlpretrain.modeling.layers import key_padding_mask

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
