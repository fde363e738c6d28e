"""Loss functions of the pretraining objectives, written once and used by every architecture.

Conventions: ignored positions carry -100; per-region weights (detector confidences, mask
indicators) multiply per-region losses, which are then averaged over *all* regions, as LXMERT's
original code does.
"""

from __future__ import annotations

import torch
from torch import nn

IGNORE_INDEX = -100


@torch.compiler.disable
def select_rows(*masks: torch.Tensor) -> list[torch.Tensor]:
    """The flat (row-major) indices of the True entries of each boolean ``mask``, all found with one device sync.

    Targets select a data-dependent number of rows (labelled tokens, masked regions or frames); counting them all
    at once keeps a pretraining step to a single host sync, and so to a single ``torch.compile`` graph break, where
    boolean indexing would sync (and break the graph) once per selection. Use the indices with ``index_select`` on
    the states flattened to (rows, width). Compiled callers run it eagerly: a sync traced inside a called function
    would break the graph three times (in the caller, and before and after the sync in here).
    """
    counts = torch.stack([mask.sum() for mask in masks]).tolist() if masks else []
    return [torch.nonzero_static(mask.flatten(), size=count).squeeze(1) for mask, count in zip(masks, counts, strict=True)]


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the rows whose label is not -100; 0 (with a graph) when there is none.

    Used for masked language modelling (``logits`` may already be restricted to labelled rows),
    matching and single-answer QA. Dividing by the clamped count instead of relying on PyTorch's
    mean avoids NaN for batches with nothing to predict, without a device sync.
    """
    logits = logits.reshape(-1, logits.shape[-1]).float()
    labels = labels.reshape(-1)
    total = nn.functional.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (labels != IGNORE_INDEX).sum().clamp_min(1)


def _mean_over_regions(per_region: torch.Tensor, valid_regions: torch.Tensor | None) -> torch.Tensor:
    if valid_regions is None:
        return per_region.mean()
    valid = valid_regions.reshape(per_region.shape).to(per_region.dtype)
    return (per_region * valid).sum() / valid.sum().clamp_min(1.0)


def weighted_region_classification_loss(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, valid_regions: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-region cross-entropy to a hard label times a per-region weight, averaged over all valid regions."""
    losses = nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none"
    )
    return _mean_over_regions(losses * weights.reshape(-1).to(losses.dtype), valid_regions)


def region_distribution_loss(
    logits: torch.Tensor, target_distribution: torch.Tensor, region_mask: torch.Tensor
) -> torch.Tensor:
    """KL divergence from the detector's class distribution to the prediction, averaged over the masked regions."""
    log_probs = nn.functional.log_softmax(logits.float(), dim=-1)
    target = target_distribution.float()
    per_region = (target * (torch.log(target.clamp_min(1e-12)) - log_probs)).sum(-1)
    mask = region_mask.to(per_region.dtype)
    return (per_region * mask).sum() / mask.sum().clamp_min(1.0)


def region_feature_regression_loss(
    predictions: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    valid_regions: torch.Tensor | None = None,
    kind: str = "smooth_l1",
) -> torch.Tensor:
    """Feature regression (smooth-L1 or L2, averaged over feature dims) times a per-region weight, mean over regions."""
    if kind == "smooth_l1":
        losses = nn.functional.smooth_l1_loss(predictions.float(), targets.float(), reduction="none")
    elif kind == "l2":
        losses = nn.functional.mse_loss(predictions.float(), targets.float(), reduction="none")
    else:
        raise ValueError(f"kind must be 'smooth_l1' or 'l2', got {kind!r}")
    return _mean_over_regions(losses.mean(-1) * weights.to(losses.dtype), valid_regions)


def soft_score_loss(logits: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """VQA recipe: binary cross-entropy against soft answer scores, times the number of answers."""
    return nn.functional.binary_cross_entropy_with_logits(logits.float(), scores.float()) * logits.shape[-1]


def soft_cross_entropy_loss(logits: torch.Tensor, target_distribution: torch.Tensor, region_mask: torch.Tensor) -> torch.Tensor:
    """Soft-label cross-entropy -sum(p * log softmax(logits)), averaged over the selected regions (VL-BERT MVRC)."""
    log_probs = nn.functional.log_softmax(logits.float(), dim=-1)
    per_region = -(target_distribution.float() * log_probs).sum(-1)
    mask = region_mask.to(per_region.dtype)
    return (per_region * mask).sum() / mask.sum().clamp_min(1.0)


def in_batch_contrastive_loss(text_embeds: torch.Tensor, visual_embeds: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE over matched (text i, visual i) pairs with the other pairs of the batch as negatives.

    Inputs are L2-normalised (pairs, hidden) embeddings; with fewer than two pairs there is no negative and the
    loss is 0 (with a graph).
    """
    if text_embeds.shape[0] < 2:
        return (text_embeds.sum() + visual_embeds.sum()) * 0.0
    logits = text_embeds.float() @ visual_embeds.float().T / temperature
    targets = torch.arange(logits.shape[0], device=logits.device)
    return (nn.functional.cross_entropy(logits, targets) + nn.functional.cross_entropy(logits.T, targets)) / 2


def mil_nce_loss(scores: torch.Tensor, positive_mask: torch.Tensor) -> torch.Tensor:
    """UniVL's MIL-NCE over an (N texts x N videos) score matrix (``MILNCELoss``), averaged over the videos.

    For video i the numerator is logsumexp of ``scores[P(i), i]`` (P(i): the texts paired with the same video,
    ``positive_mask[:, i]``); the denominator is logsumexp of the whole column ``scores[:, i]`` plus row
    ``scores[i, :]`` with its positives removed (text i against the other videos).
    """
    scores = scores.float()
    positives = positive_mask.bool()
    very_negative = torch.finfo(scores.dtype).min
    numerator = torch.logsumexp(scores.T.masked_fill(~positives.T, very_negative), dim=-1)
    row_negatives = scores.masked_fill(positives, very_negative)
    denominator = torch.logsumexp(torch.cat([scores.T, row_negatives], dim=-1), dim=-1)
    return (denominator - numerator).mean()


def frame_nce_loss(
    predictions: torch.Tensor, targets: torch.Tensor, valid_frames: torch.Tensor, masked_frames: torch.Tensor
) -> torch.Tensor:
    """Masked frame modelling as NCE over every valid frame of the batch (UniVL CMFM), no temperature.

    ``predictions`` and ``targets`` are (B, F, D); each masked frame's prediction is scored by dot product against
    the targets of all valid frames of the batch, and the positive is its own frame. Averaged over masked frames;
    0 (with a graph) when nothing is masked.
    """
    valid = valid_frames.bool()
    masked = masked_frames.bool() & valid
    queries = predictions[masked].float()
    if queries.shape[0] == 0:
        return predictions.sum() * 0.0
    logits = queries @ targets[valid].float().T
    positive = torch.cumsum(valid.flatten().long(), 0)[masked.flatten()] - 1
    return nn.functional.cross_entropy(logits, positive)


def diagonal_cross_entropy(scores: torch.Tensor, positive_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Row-wise softmax cross-entropy of a square score matrix with the diagonal as target (UniVL ``CrossEn``).

    ``positive_mask`` (N, N), True where column j shows the same item as row i's own (a duplicate video in the batch),
    leaves those off-diagonal columns out of row i's softmax: an identical input is not a negative (it would score
    exactly like the target and hold the loss at log 2 or more).
    """
    scores = scores.float()
    targets = torch.arange(scores.shape[0], device=scores.device)
    if positive_mask is not None:
        duplicates = positive_mask.bool() & (targets[:, None] != targets[None, :])
        scores = scores.masked_fill(duplicates, torch.finfo(scores.dtype).min)
    return nn.functional.cross_entropy(scores, targets)


def max_margin_ranking_loss(scores: torch.Tensor, margin: float) -> torch.Tensor:
    """Bidirectional hinge on a square (text x video) score matrix, averaged over the whole matrix
    (UniVL ``MaxMarginRankingLoss``): relu(margin + s[i, j] - s[i, i]) + relu(margin + s[i, j] - s[j, j])."""
    scores = scores.float()
    diagonal = scores.diagonal()
    return (
        nn.functional.relu(margin + scores - diagonal[:, None]) + nn.functional.relu(margin + scores - diagonal[None, :])
    ).mean()
