"""All-pairs cross-encoder retrieval against two-stage retrieval on a 1,000-image x 5,000-caption synthetic gallery.

The data is built so that a small LXMERT learns it in well under a minute on CPU: each image has three regions,
one per attribute (colour, shape, place; 10 values each, so the 1,000 images are all distinct), whose features
are a fixed random vector per attribute value plus noise. Its 5 captions name the three values in 5 templates
that are not used for training. A tiny ``LxmertForImageTextRetrieval`` is trained on the gallery images with
training-template captions: matching loss on positives and hard negatives (one attribute changed) plus the
in-batch contrastive loss (``contrastive_loss_weight``) that makes the first stage useful.

Then, text-to-image in the same run:
- all-pairs: the full model forward on every (caption, image) pair, measured on a subset of queries (5M pairs is
  hours on 2 CPU cores) and its time extrapolated linearly to all 5,000 queries (printed as such);
- two-stage: ``RetrievalIndex`` (gallery encoded once, including that time) with k = 16, 64, 128, on all queries.
Recall@1/5/10 come from the package's metric functions; R@1 is also given on the all-pairs subset.

Run: ``python bench/bench_retrieval.py`` (defaults take a few minutes on 2 cores); ``--queries 500 --steps 20
--all-pairs-queries 10`` is a quick check that it runs (its figures mean nothing).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from vlpretrain import LxmertConfig, LxmertForImageTextRetrieval
from vlpretrain.metrics.retrieval.ranking import positives_from_ids, recall_at_k
from vlpretrain.pipelines.retrieval_index import RetrievalIndex
from vlpretrain.training.sources import default_tokenizer

VALUES = {
    "colour": ["red", "blue", "green", "yellow", "black", "white", "orange", "purple", "pink", "brown"],
    "shape": ["circle", "square", "triangle", "star", "heart", "cross", "ring", "arrow", "moon", "diamond"],
    "place": ["left", "right", "top", "bottom", "middle", "corner", "edge", "front", "back", "side"],
}
TRAIN_TEMPLATES = ["a {colour} {shape} at the {place}", "{colour} {shape} , {place}", "the {shape} is {colour} , {place} side"]
QUERY_TEMPLATES = [
    "a {colour} {shape} on the {place}",
    "there is a {shape} , it is {colour} , {place}",
    "{place} : one {colour} {shape}",
    "the {colour} one is a {shape} near the {place}",
    "{shape} in {colour} at the {place}",
]
FEATURE_SIZE = 32


def make_gallery(seed: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Region features (1000, 3, D), boxes (1000, 3, 4) and the attribute values (1000, 3) of every image."""
    generator = np.random.default_rng(seed)
    prototypes = generator.standard_normal((3, 10, FEATURE_SIZE)).astype(np.float32)
    values = np.array([(c, s, p) for c in range(10) for s in range(10) for p in range(10)])
    features = prototypes[np.arange(3)[None, :], values] + 0.3 * generator.standard_normal((len(values), 3, FEATURE_SIZE))
    corners = generator.random((len(values), 3, 2, 2))
    boxes = np.concatenate([corners.min(2), corners.max(2)], -1)
    return torch.tensor(features, dtype=torch.float32), torch.tensor(boxes, dtype=torch.float32), values


def caption(values: np.ndarray, template: str) -> str:
    return template.format(**{name: VALUES[name][value] for name, value in zip(VALUES, values)})


class CompactTokenizer:
    """The BERT WordPiece tokenizer with its ids renumbered to the few the synthetic captions use (the embedding
    table, and so the small model's training time, stays small); id 0 stays padding."""

    def __init__(self, tokenizer, texts: list[str]):
        self.tokenizer = tokenizer
        used = sorted({token for ids in tokenizer(texts)["input_ids"] for token in ids} | {tokenizer.pad_token_id})
        self.lookup = torch.zeros(max(used) + 1, dtype=torch.long)
        self.lookup[torch.tensor(used)] = torch.arange(len(used))
        self.vocab_size = len(used)

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer(texts, padding=True, return_tensors="pt")
        return {"input_ids": self.lookup[encoded["input_ids"]], "attention_mask": encoded["attention_mask"]}


def train(model, tokenizer, features, boxes, values, steps: int, batch: int, seed: int) -> float:
    """Matching (positives + one-attribute hard negatives) plus the contrastive loss; returns seconds."""
    generator = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        images = generator.choice(len(values), batch, replace=False)
        negatives = values[images].copy()
        changed = generator.integers(0, 3, batch)
        negatives[np.arange(batch), changed] = (negatives[np.arange(batch), changed] + generator.integers(1, 10, batch)) % 10
        templates = generator.choice(TRAIN_TEMPLATES, 2 * batch)
        texts = [caption(v, t) for v, t in zip(np.concatenate([values[images], negatives]), templates)]
        encoded = tokenizer(texts)
        rows = np.concatenate([images, images])
        output = model(
            input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"],
            region_features=features[rows], region_boxes=boxes[rows],
            labels=torch.tensor([1] * batch + [0] * batch),
        )
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
    model.eval()
    return time.perf_counter() - start


@torch.no_grad()
def all_pairs(model, queries: dict, features, boxes, pair_batch: int) -> tuple[torch.Tensor, float]:
    """(queries, images) scores from the full forward of every pair, and the seconds it took."""
    count, gallery = queries["input_ids"].shape[0], features.shape[0]
    scores = torch.zeros(count, gallery)
    start = time.perf_counter()
    for row in range(count):
        for begin in range(0, gallery, pair_batch):
            end = min(begin + pair_batch, gallery)
            size = end - begin
            output = model(
                input_ids=queries["input_ids"][row : row + 1].expand(size, -1),
                attention_mask=queries["attention_mask"][row : row + 1].expand(size, -1),
                region_features=features[begin:end], region_boxes=boxes[begin:end],
            )
            scores[row, begin:end] = output.scores
    return scores, time.perf_counter() - start


def recalls(similarity: torch.Tensor, positives: np.ndarray) -> list[float]:
    return [100 * recall_at_k(similarity.numpy(), k, positives) for k in (1, 5, 10)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=500, help="training steps of the small model")
    parser.add_argument("--batch", type=int, default=64, help="images per training step (plus as many negatives)")
    parser.add_argument("--all-pairs-queries", type=int, default=200, help="queries scored all-pairs (time extrapolated)")
    parser.add_argument("--queries", type=int, default=None, help="use only this many of the 5,000 queries (a quick check)")
    parser.add_argument("--chunk-size", type=int, default=256, help="query chunk and pair batch of the two-stage search")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (more than the free cores oversubscribes)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    features, boxes, values = make_gallery(args.seed)
    texts = [caption(values[image], template) for image in range(len(values)) for template in QUERY_TEMPLATES]
    train_texts = [caption(values[image], template) for image in range(len(values)) for template in TRAIN_TEMPLATES]
    tokenizer = CompactTokenizer(default_tokenizer(), texts + train_texts)
    config = LxmertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=64, num_attention_heads=4, intermediate_size=128, num_text_layers=2,
        num_visual_layers=1, num_cross_layers=1, region_feature_size=FEATURE_SIZE, max_position_embeddings=32,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, contrastive_loss_weight=1.0,
        loss_weights={"matching": 1.0},
    )
    model = LxmertForImageTextRetrieval(config)
    train_seconds = train(model, tokenizer, features, boxes, values, args.steps, args.batch, args.seed)
    print(f"trained {args.steps} steps in {train_seconds:.1f} s", flush=True)

    query_image = np.repeat(np.arange(len(values)), len(QUERY_TEMPLATES))
    order = np.random.default_rng(args.seed + 1).permutation(len(texts))  # the all-pairs subset is a random sample
    order = order[: args.queries]
    texts, query_image = [texts[i] for i in order], query_image[order]
    queries = tokenizer(texts)
    positives = positives_from_ids(query_image, np.arange(len(values)))
    subset = args.all_pairs_queries
    print(f"gallery {len(values)} images x {len(texts)} caption queries, {args.threads} threads", flush=True)

    pair_scores, pair_seconds = all_pairs(model, {k: v[:subset] for k, v in queries.items()}, features, boxes, 1000)
    all_pairs_seconds = pair_seconds * len(texts) / subset
    subset_recalls = recalls(pair_scores, positives[:subset])
    rows = [("all-pairs (full forward)", f"{subset} (time x{len(texts) // subset})", all_pairs_seconds,
             subset_recalls, subset_recalls[0])]

    for k in (16, 64, 128):
        start = time.perf_counter()
        index = RetrievalIndex("visual")
        index.add(model, {"region_features": features, "region_boxes": boxes}, chunk_size=args.chunk_size)
        result = index.search(model, queries, top_k=10, shortlist_size=k, chunk_size=args.chunk_size)
        seconds = time.perf_counter() - start
        similarity = result.similarity(len(index))
        rows.append((f"two-stage k={k}", str(len(texts)), seconds, recalls(similarity, positives),
                     recalls(similarity[:subset], positives[:subset])[0]))

    print()
    print(f"| method | queries | wall s | speed-up | R@1 | R@5 | R@10 | R@1 on the {subset} all-pairs queries |")
    print("|---|---|---|---|---|---|---|---|")
    for name, count, seconds, (r1, r5, r10), subset_r1 in rows:
        speedup = all_pairs_seconds / seconds
        print(f"| {name} | {count} | {seconds:.1f} | {speedup:.0f}x | {r1:.1f} | {r5:.1f} | {r10:.1f} | {subset_r1:.1f} |")
    print(f"\nall-pairs R@K are over its {subset} queries; two-stage R@1/5/10 over all {len(texts)}.")
    print(f"all-pairs wall time is extrapolated: {pair_seconds:.1f} s measured for {subset} queries x "
          f"{len(values)} images, scaled to {len(texts)} queries; two-stage times include encoding the gallery.")


if __name__ == "__main__":
    main()
