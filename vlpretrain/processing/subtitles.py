"""Frame <-> subtitle alignment from timestamps (HERO's ``scripts/prepro_sub.py`` rule).

Frame i covers [i * interval, (i + 1) * interval). A subtitle [start, end) covers frames floor(start / interval) ..
ceil(end / interval) - 1, and each frame goes to the *one* overlapping subtitle with the largest temporal IoU
(``unique_sub2frames``); frames without a subtitle stay unmatched (-1).

Edge cases, handled by rule:

- times are clipped to [0, video length] (video length = ``num_frames * interval``); a subtitle that lies
  entirely outside the video keeps its text but gets no frame;
- overlapping subtitles: a frame goes to the larger IoU, ties to the earlier subtitle;
- empty subtitles (no non-space text) are dropped before alignment (their index is not used);
- ``end < start`` or a non-finite time is a ``ValueError`` naming the subtitle;
- a video with no frame (shorter than one clip) is a ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def align_subtitles_to_frames(
    starts: Sequence[float], ends: Sequence[float], num_frames: int, frame_interval: float, where: str = "subtitles"
) -> np.ndarray:
    """Return ``frame_subtitle_index`` (num_frames,): the subtitle index of each frame, -1 for unmatched frames;
    errors name ``where``."""
    if num_frames < 1:
        raise ValueError(f"num_frames: the video has {num_frames} frames (shorter than one clip); expected at least 1")
    if not frame_interval > 0:
        raise ValueError(f"frame_interval: expected seconds per frame > 0, got {frame_interval}")
    if len(starts) != len(ends):
        raise ValueError(f"{where}: {len(starts)} start times but {len(ends)} end times")
    length = num_frames * frame_interval
    best_iou = np.zeros(num_frames)
    assignment = np.full(num_frames, -1, dtype=np.int64)
    for index, (start, end) in enumerate(zip(starts, ends)):
        if not all(isinstance(time, (int, float, np.integer, np.floating)) for time in (start, end)):
            raise ValueError(f"{where}: subtitle {index} has start {start!r} and end {end!r}; expected numbers of seconds")
        if not (math.isfinite(start) and math.isfinite(end)) or end < start:
            raise ValueError(f"{where}: subtitle {index} has start {start} and end {end}; expected 0 <= start <= end")
        start, end = min(max(start, 0.0), length), min(max(end, 0.0), length)
        first, last = math.floor(start / frame_interval), math.ceil(end / frame_interval) - 1
        for frame in range(max(first, 0), min(last, num_frames - 1) + 1):
            frame_start, frame_end = frame * frame_interval, (frame + 1) * frame_interval
            overlap = min(end, frame_end) - max(start, frame_start)
            union = max(end, frame_end) - min(start, frame_start)
            iou = overlap / union if union > 0 else 0.0
            if iou > best_iou[frame]:
                best_iou[frame], assignment[frame] = iou, index
    return assignment


def tokenize_subtitles(tokenizer: Any, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
    """Token ids of each subtitle as HERO's release feeds them (``data/data.py``: ``[SEP] + input_ids``): the
    tokenizer's separator (RoBERTa ``</s>``, BERT ``[SEP]``) followed by the subtitle's ids without special tokens,
    ``max_length`` tokens at most in all. Converted checkpoints only ever saw this layout."""
    separator = tokenizer.sep_token_id
    if separator is None:
        raise ValueError("tokenizer: HERO subtitles start with the separator token, and this tokenizer has no sep_token")
    limit = None if max_length is None else max(max_length - 1, 0)
    rows = tokenizer(list(texts), add_special_tokens=False)["input_ids"] if len(texts) else []
    return [[separator] + list(row)[:limit] for row in rows]


def subtitle_token_layout(
    subtitle_ids: Sequence[Sequence[int]], max_length: int | None = None
) -> tuple[list[int], list[int]]:
    """Concatenate per-subtitle token ids into one row: ``(input_ids, text_subtitle_index)``.

    Each subtitle's ids (already starting with the separator, :func:`tokenize_subtitles`) are truncated to
    ``max_length`` tokens; ``text_subtitle_index`` gives each token's subtitle.
    """
    ids: list[int] = []
    owners: list[int] = []
    for index, tokens in enumerate(subtitle_ids):
        tokens = list(tokens)[:max_length]
        ids += tokens
        owners += [index] * len(tokens)
    return ids, owners


def non_empty_subtitles(
    texts: Sequence[str], starts: Sequence[float], ends: Sequence[float], where: str = "subtitles"
) -> tuple[list[str], list[float], list[float]]:
    """Drop subtitles whose text is empty or blank (they carry nothing to encode or to query). Lists of different
    lengths or a text that is not a string raise ``ValueError`` naming ``where`` (nothing is dropped silently)."""
    texts, starts, ends = list(texts), list(starts), list(ends)
    if not len(texts) == len(starts) == len(ends):
        raise ValueError(
            f"{where}: {len(texts)} texts, {len(starts)} start times and {len(ends)} end times; expected one of each per subtitle"
        )
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"{where}: text[{index}] is a {type(text).__name__}, expected a string")
    kept = [(text, start, end) for text, start, end in zip(texts, starts, ends) if text.strip()]
    return [k[0] for k in kept], [k[1] for k in kept], [k[2] for k in kept]
