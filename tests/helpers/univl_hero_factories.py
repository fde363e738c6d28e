"""Tiny UniVL / HERO configs, random video-text batches and random checkpoints laid out like the originals."""

from __future__ import annotations

import torch

from vlpretrain.configuration.univl import UnivlConfig


def tiny_univl_config(**overrides) -> UnivlConfig:
    """A tiny stage-II UniVL config (hidden 32, 1 layer per module, 12-d clip features) with every objective on."""
    values = dict(
        vocab_size=60, hidden_size=32, num_attention_heads=4, intermediate_size=48, num_text_layers=1,
        num_visual_layers=1, num_cross_layers=1, num_decoder_layers=1, frame_feature_size=12,
        max_position_embeddings=24, max_frames=10, max_cross_positions=40, bos_token_id=1, eos_token_id=2,
        max_caption_length=8,
    )
    values.update(overrides)
    return UnivlConfig(**values)


def video_text_batch(config, batch: int = 3, text_length: int = 7, frames: int = 5, seed: int = 0, targets: bool = True) -> dict:
    """Random captions ``[CLS] ... [SEP]`` (row 0 padded) and clips (row 1 padded), with MLM / frame targets."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, config.vocab_size, (batch, text_length), generator=generator)
    input_ids[:, 0] = config.bos_token_id
    attention_mask = torch.ones(batch, text_length, dtype=torch.long)
    attention_mask[0, text_length - 2 :] = 0
    input_ids[0, text_length - 3] = config.eos_token_id
    input_ids[0, text_length - 2 :] = config.pad_token_id
    input_ids[1:, -1] = config.eos_token_id
    frame_features = torch.randn(batch, frames, config.frame_feature_size, generator=generator)
    frame_attention_mask = torch.ones(batch, frames, dtype=torch.long)
    frame_attention_mask[1, frames - 2 :] = 0
    frame_features[1, frames - 2 :] = 0
    out = dict(
        input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids),
        frame_features=frame_features, frame_attention_mask=frame_attention_mask,
    )
    if targets:
        labels = torch.full_like(input_ids, -100)
        labels[:, 2] = input_ids[:, 2]
        masked_ids = input_ids.clone()
        masked_ids[:, 2] = 3
        masked_frames = torch.zeros(batch, frames, dtype=torch.bool)
        masked_frames[:, 1] = True
        masked_features = frame_features.clone()
        masked_features[masked_frames] = 0
        out.update(
            input_ids=masked_ids, labels=labels, frame_features=masked_features, masked_frames=masked_frames,
            frame_feature_targets=frame_features, contrastive_positive_mask=torch.eye(batch, dtype=torch.bool),
        )
    return out


def _bert_layer(prefix: str, hidden: int, intermediate: int, make) -> dict[str, torch.Tensor]:
    state = {}
    for part in ("query", "key", "value"):
        state[f"{prefix}attention.self.{part}.weight"] = make(hidden, hidden)
        state[f"{prefix}attention.self.{part}.bias"] = make(hidden)
    state.update({
        f"{prefix}attention.output.dense.weight": make(hidden, hidden), f"{prefix}attention.output.dense.bias": make(hidden),
        f"{prefix}attention.output.LayerNorm.weight": make(hidden), f"{prefix}attention.output.LayerNorm.bias": make(hidden),
        f"{prefix}intermediate.dense.weight": make(intermediate, hidden), f"{prefix}intermediate.dense.bias": make(intermediate),
        f"{prefix}output.dense.weight": make(hidden, intermediate), f"{prefix}output.dense.bias": make(hidden),
        f"{prefix}output.LayerNorm.weight": make(hidden), f"{prefix}output.LayerNorm.bias": make(hidden),
    })
    return state


def _prediction_transform(prefix: str, hidden: int, make) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}transform.dense.weight": make(hidden, hidden), f"{prefix}transform.dense.bias": make(hidden),
        f"{prefix}transform.LayerNorm.weight": make(hidden), f"{prefix}transform.LayerNorm.bias": make(hidden),
    }


def original_univl_state_dict(config: UnivlConfig, device: str = "cpu") -> dict[str, torch.Tensor]:
    """A random state dict with microsoft/UniVL's stage-II key layout; tied tensors are stored once per name."""
    generator = torch.Generator().manual_seed(0) if device == "cpu" else None

    def make(*shape: int) -> torch.Tensor:
        if device == "meta":
            return torch.empty(*shape, device="meta")
        return torch.randn(*shape, generator=generator)

    hidden, inter, vocab, features = config.hidden_size, config.intermediate_size, config.vocab_size, config.frame_feature_size
    words = make(vocab, hidden)
    positions = make(config.max_position_embeddings, hidden)
    video_projection = make(hidden, features)
    state = {
        "bert.embeddings.word_embeddings.weight": words,
        "bert.embeddings.position_embeddings.weight": positions,
        "bert.embeddings.token_type_embeddings.weight": make(config.type_vocab_size, hidden),
        "bert.embeddings.LayerNorm.weight": make(hidden), "bert.embeddings.LayerNorm.bias": make(hidden),
        "bert.pooler.dense.weight": make(hidden, hidden), "bert.pooler.dense.bias": make(hidden),
        "visual.embeddings.word_embeddings.weight": video_projection,
        "visual.embeddings.word_embeddings.bias": make(hidden),
        "visual.embeddings.position_embeddings.weight": make(config.max_frames, hidden),
        "visual.embeddings.LayerNorm.weight": make(hidden), "visual.embeddings.LayerNorm.bias": make(hidden),
        "visual.pooler.dense.weight": make(hidden, hidden), "visual.pooler.dense.bias": make(hidden),
        "cross.embeddings.position_embeddings.weight": make(config.max_cross_positions, hidden),
        "cross.embeddings.token_type_embeddings.weight": make(config.type_vocab_size, hidden),
        "cross.embeddings.LayerNorm.weight": make(hidden), "cross.embeddings.LayerNorm.bias": make(hidden),
        "cross.pooler.dense.weight": make(hidden, hidden), "cross.pooler.dense.bias": make(hidden),
        "decoder.embeddings.word_embeddings.weight": words,
        "decoder.embeddings.position_embeddings.weight": positions,
        "decoder.embeddings.LayerNorm.weight": make(hidden), "decoder.embeddings.LayerNorm.bias": make(hidden),
        "decoder.classifier.cls.predictions.bias": make(vocab),
        "decoder.classifier.cls.predictions.decoder.weight": words,
        "cls.predictions.bias": make(vocab),
        "cls.predictions.decoder.weight": words,
        "cls_visual.predictions.weight": video_projection,
        "cls_visual.predictions.bias": make(features),
        "similarity_dense.weight": make(1, hidden), "similarity_dense.bias": make(1),
        "normalize_video.visual_norm2d.weight": make(features), "normalize_video.visual_norm2d.bias": make(features),
    }
    state.update(_prediction_transform("decoder.classifier.cls.predictions.", hidden, make))
    state.update(_prediction_transform("cls.predictions.", hidden, make))
    state.update(_prediction_transform("cls_visual.predictions.", hidden, make))
    for stream, count in (("bert", config.num_text_layers), ("visual", config.num_visual_layers), ("cross", config.num_cross_layers)):
        for index in range(count):
            state.update(_bert_layer(f"{stream}.encoder.layer.{index}.", hidden, inter, make))
    for index in range(config.num_decoder_layers):
        prefix = f"decoder.decoder.layer.{index}."
        for block in ("slf_attn", "enc_attn"):
            for part in ("query", "key", "value"):
                state[f"{prefix}{block}.att.{part}.weight"] = make(hidden, hidden)
                state[f"{prefix}{block}.att.{part}.bias"] = make(hidden)
            state[f"{prefix}{block}.output.dense.weight"] = make(hidden, hidden)
            state[f"{prefix}{block}.output.dense.bias"] = make(hidden)
            state[f"{prefix}{block}.output.LayerNorm.weight"] = make(hidden)
            state[f"{prefix}{block}.output.LayerNorm.bias"] = make(hidden)
        state.update({
            f"{prefix}intermediate.dense.weight": make(inter, hidden), f"{prefix}intermediate.dense.bias": make(inter),
            f"{prefix}output.dense.weight": make(hidden, inter), f"{prefix}output.dense.bias": make(hidden),
            f"{prefix}output.LayerNorm.weight": make(hidden), f"{prefix}output.LayerNorm.bias": make(hidden),
        })
    return state


def tiny_hero_config(**overrides):
    """A tiny HERO config (hidden 32, 1 cross-modal + 1 temporal layer, 12-d frames, at most 8 frames)."""
    from vlpretrain.configuration.hero import HeroConfig

    values = dict(
        vocab_size=50, hidden_size=32, num_attention_heads=4, intermediate_size=48, num_cross_layers=1,
        num_temporal_layers=1, frame_feature_size=12, max_frames=8, max_position_embeddings=32, pad_token_id=0,
    )
    values.update(overrides)
    return HeroConfig(**values)


def hero_batch(config, seed: int = 0, targets: bool = True) -> dict:
    """Three videos of 6 frames with 2-3 subtitles each (token / frame subtitle indices, some unmatched frames)."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, config.vocab_size, (3, 9), generator=generator)
    attention_mask = torch.ones(3, 9, dtype=torch.long)
    attention_mask[0, 7:] = 0
    text_subtitle_index = torch.tensor([[0, 0, 0, 1, 1, 1, 1, -1, -1], [0, 0, 0, 0, 1, 1, 2, 2, 2], [0, 0, 0, 0, 0, 1, 1, 1, 1]])
    frame_subtitle_index = torch.tensor([[0, 0, 1, 1, -1, -1], [0, 1, 1, 2, 2, -1], [0, 0, 0, 1, 1, 1]])
    frame_features = torch.randn(3, 6, config.frame_feature_size, generator=generator)
    frame_attention_mask = torch.ones(3, 6, dtype=torch.long)
    frame_attention_mask[1, 5] = 0
    frame_features[1, 5] = 0
    out = dict(
        input_ids=input_ids, attention_mask=attention_mask, frame_features=frame_features,
        frame_attention_mask=frame_attention_mask, text_subtitle_index=text_subtitle_index,
        frame_subtitle_index=frame_subtitle_index,
    )
    if targets:
        labels = torch.full_like(input_ids, -100)
        labels[:, 1] = input_ids[:, 1]
        masked_ids = input_ids.clone()
        masked_ids[:, 1] = 3
        masked_frames = torch.zeros(3, 6, dtype=torch.bool)
        masked_frames[:, 2] = True
        order = torch.full((3, 6), -100)
        order[:, 0], order[:, 3] = 3, 0
        shuffled = frame_features.clone()
        shuffled[:, 0], shuffled[:, 3] = frame_features[:, 3], frame_features[:, 0]
        masked_features = shuffled.clone()
        masked_features[masked_frames] = 0
        out.update(
            input_ids=masked_ids, labels=labels, frame_features=masked_features, masked_frames=masked_frames,
            frame_feature_targets=shuffled, frame_order_labels=order,
        )
    return out


def original_hero_state_dict(config, device: str = "cpu") -> dict:
    """A random ``hero-tv-ht100.pt``-like dict: HeroForPretraining keys (tied decoder stored again, pad buffers,
    poolers) plus the non-tensor ``vocab_padded`` entry."""
    generator = torch.Generator().manual_seed(1) if device == "cpu" else None

    def make(*shape: int) -> torch.Tensor:
        if device == "meta":
            return torch.empty(*shape, device="meta")
        return torch.randn(*shape, generator=generator)

    hidden, inter, vocab, features = config.hidden_size, config.intermediate_size, config.vocab_size, config.frame_feature_size
    words = make(vocab, hidden)
    f, c = "v_encoder.f_encoder.", "v_encoder.c_encoder."
    state: dict = {
        f"{f}embeddings.word_embeddings.weight": words,
        f"{f}embeddings.position_embeddings.weight": make(config.max_position_embeddings, hidden),
        f"{f}embeddings.token_type_embeddings.weight": make(config.type_vocab_size, hidden),
        f"{f}embeddings.LayerNorm.weight": make(hidden), f"{f}embeddings.LayerNorm.bias": make(hidden),
        f"{f}img_embeddings.img_linear.weight": make(hidden, features), f"{f}img_embeddings.img_linear.bias": make(hidden),
        f"{f}img_embeddings.img_LayerNorm.weight": make(features), f"{f}img_embeddings.img_LayerNorm.bias": make(features),
        f"{f}img_embeddings.position_embeddings.weight": make(config.max_frames, hidden),
        f"{f}img_embeddings.mask_embedding.weight": make(2, features),
        f"{f}img_embeddings.LayerNorm.weight": make(hidden), f"{f}img_embeddings.LayerNorm.bias": make(hidden),
        f"{f}pooler.dense.weight": make(hidden, hidden), f"{f}pooler.dense.bias": make(hidden),
        f"{f}lm_head.dense.weight": make(hidden, hidden), f"{f}lm_head.dense.bias": make(hidden),
        f"{f}lm_head.LayerNorm.weight": make(hidden), f"{f}lm_head.LayerNorm.bias": make(hidden),
        f"{f}lm_head.decoder.weight": words, f"{f}lm_head.bias": make(vocab),
        f"{f}pad": make(8, hidden), "v_encoder.pad": make(8, hidden),
        "v_encoder.frame_transform.LayerNorm.weight": make(features), "v_encoder.frame_transform.LayerNorm.bias": make(features),
        "v_encoder.frame_transform.net.1.weight": make(hidden, features), "v_encoder.frame_transform.net.1.bias": make(hidden),
        f"{c}embeddings.position_embeddings.weight": make(config.max_position_embeddings, hidden),
        f"{c}embeddings.LayerNorm.weight": make(hidden), f"{c}embeddings.LayerNorm.bias": make(hidden),
        f"{c}pooler.dense.weight": make(hidden, hidden), f"{c}pooler.dense.bias": make(hidden),
        "v_encoder.feat_regress.net.0.weight": make(hidden, hidden), "v_encoder.feat_regress.net.0.bias": make(hidden),
        "v_encoder.feat_regress.net.2.weight": make(hidden), "v_encoder.feat_regress.net.2.bias": make(hidden),
        "v_encoder.feat_regress.net.3.weight": make(features, hidden), "v_encoder.feat_regress.net.3.bias": make(features),
        "v_encoder.mask_embedding.weight": make(2, features),
        "v_encoder.fom_output.linear_1.weight": make(2 * hidden, hidden), "v_encoder.fom_output.linear_1.bias": make(2 * hidden),
        "v_encoder.fom_output.LayerNorm.weight": make(2 * hidden), "v_encoder.fom_output.LayerNorm.bias": make(2 * hidden),
        "v_encoder.fom_output.linear_2.weight": make(config.max_frames, 2 * hidden),
        "v_encoder.fom_output.linear_2.bias": make(config.max_frames),
        "video_query_linear.weight": make(hidden, hidden), "video_query_linear.bias": make(hidden),
        "video_st_predictor.weight": make(1, 1, 5), "video_ed_predictor.weight": make(1, 1, 5),
        "q_feat_attn.query_input_proj.LayerNorm.weight": make(hidden), "q_feat_attn.query_input_proj.LayerNorm.bias": make(hidden),
        "q_feat_attn.query_input_proj.net.1.weight": make(hidden, hidden), "q_feat_attn.query_input_proj.net.1.bias": make(hidden),
        "q_feat_attn.query_pos_embed.position_embeddings.weight": make(config.max_position_embeddings, hidden),
        "q_feat_attn.query_pos_embed.LayerNorm.weight": make(hidden), "q_feat_attn.query_pos_embed.LayerNorm.bias": make(hidden),
        "q_feat_attn.modular_vector_mapping.weight": make(1, hidden),
    }
    for part in ("query", "key", "value"):
        state[f"q_feat_attn.query_self_attention.self.{part}.weight"] = make(hidden, hidden)
        state[f"q_feat_attn.query_self_attention.self.{part}.bias"] = make(hidden)
    for name in ("dense.weight", "dense.bias", "LayerNorm.weight", "LayerNorm.bias"):
        state[f"q_feat_attn.query_self_attention.output.{name}"] = make(hidden, hidden) if name == "dense.weight" else make(hidden)
    for index in range(config.num_cross_layers):
        state.update(_bert_layer(f"{f}encoder.layer.{index}.", hidden, inter, make))
    for index in range(config.num_temporal_layers):
        state.update(_bert_layer(f"{c}encoder.layer.{index}.", hidden, inter, make))
    return state
