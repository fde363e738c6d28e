"""Input-path throughput: samples/s of one data-loader worker building pretraining batches with the package's collators.

LXMERT: a region feature store (36 x 2048 float32 features, boxes, object and attribute labels with confidences)
joined to captions and VQA-style questions the way ``vlpretrain pretrain --dataset STORE`` does it
(``load_source`` + ``pretraining_examples``), one example per caption or question, 20 tokens; the collator of
``LxmertConfig`` builds every objective's targets (masked tokens, masked regions with feature targets and
object / attribute labels, swapped captions for matching, answer labels). UniVL: 48 clips x 1024-d frame features
per video with one caption, the stage-II collator (masked tokens and frames, contrastive positives).

A worker's work per batch is timed: fetch ``batch`` random examples from the training dataset (as the recipes
format it) and collate them; the figure is samples per second of that single process (median over batches).
The target for LXMERT is 3x its base-size H100 training step (about 120 samples/s), i.e. 360 samples/s.

Usage: ``python bench/bench_input_path.py [--images 256] [--batch 32] [--batches 30] [--model lxmert univl]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlpretrain import LxmertConfig, UnivlConfig  # noqa: E402
from vlpretrain.data.collators import collator_for_config  # noqa: E402
from vlpretrain.processing.readers import RegionRecord  # noqa: E402
from vlpretrain.processing.store import write_feature_store  # noqa: E402
from vlpretrain.training.sources import (  # noqa: E402
    ArrowRows,
    answer_vocabulary,
    default_tokenizer,
    load_source,
    pretraining_examples,
)

WORDS = ("red", "green", "blue", "large", "small", "square", "circle", "dog", "table", "man", "riding", "next", "to")


def sentence(rng: np.random.Generator, words: int = 24) -> str:
    return " ".join(rng.choice(WORDS, words))


def region_store(folder: Path, images: int, rng: np.random.Generator) -> None:
    """A store of ``images`` rows of 36 regions x 2048 features with detector labels (VG sizes: 1600 / 400)."""
    corners = np.sort(rng.random((36, 2, 2), dtype=np.float32), axis=1).reshape(36, 4)
    base = rng.random((36, 2048), dtype=np.float32)

    def records():
        for index in range(images):
            yield RegionRecord(
                f"img{index}", 480, 640, corners, base + np.float32(index % 7),
                object_ids=rng.integers(0, 1600, 36), object_confidences=rng.random(36, dtype=np.float32),
                attribute_ids=rng.integers(0, 400, 36), attribute_confidences=rng.random(36, dtype=np.float32),
            )

    write_feature_store(records(), folder, num_regions=36)


def annotations(folder: Path, images: int, rng: np.random.Generator) -> dict[str, str]:
    """COCO-captions (two per image) and VQA question / answer files (one question per image)."""
    captions = [{"image_id": f"img{i}", "caption": sentence(rng)} for i in range(images) for _ in range(2)]
    questions = [{"question_id": i, "image_id": f"img{i}", "question": "what " + sentence(rng)} for i in range(images)]
    answers = [{"question_id": i, "answers": [{"answer": str(rng.choice(WORDS))}] * 10} for i in range(images)]
    files = {"captions_file": folder / "captions.json", "questions_file": folder / "questions.json",
             "answers_file": folder / "answers.json"}
    files["captions_file"].write_text(json.dumps({"annotations": captions}))
    files["questions_file"].write_text(json.dumps({"questions": questions}))
    files["answers_file"].write_text(json.dumps({"annotations": answers}))
    return {name: str(path) for name, path in files.items()}


def worker_throughput(examples, collator, batch: int, batches: int, seed: int = 0) -> tuple[float, float, float]:
    """Median samples/s of fetch + collate, and the median seconds of fetching and of collating one batch."""
    rng = np.random.default_rng(seed)
    fetch_times, collate_times = [], []
    for _ in range(batches + 2):
        indices = rng.integers(0, len(examples), batch).tolist()
        start = time.perf_counter()
        rows = [examples[index] for index in indices]
        fetched = time.perf_counter()
        collator(rows)
        fetch_times.append(fetched - start)
        collate_times.append(time.perf_counter() - fetched)
    fetch, collate = statistics.median(fetch_times[2:]), statistics.median(collate_times[2:])
    return batch / (fetch + collate), fetch, collate


def report(name: str, examples, collator, args) -> None:
    rate, fetch, collate = worker_throughput(examples, collator, args.batch, args.batches)
    print(f"{name:<44} {rate:>9.0f} samples/s   fetch {1000 * fetch:7.1f} ms   collate {1000 * collate:7.1f} ms")


def bench_lxmert(args, tokenizer, folder: Path) -> None:
    rng = np.random.default_rng(0)
    region_store(folder / "store", args.images, rng)
    source = load_source(str(folder / "store"), "train", **annotations(folder, args.images, rng))
    examples = pretraining_examples(source, tokenizer, 20, answer_vocabulary(source))
    config = LxmertConfig(vocab_size=len(tokenizer), num_qa_labels=len(answer_vocabulary(source)))
    collator = collator_for_config(config, tokenizer, seed=0, num_regions=36)
    print(f"LXMERT: {len(examples)} examples (36 x 2048 regions, 20 tokens), objectives {list(collator.objectives)}")
    if args.baseline:
        report("  rows as Python lists (datasets default)", examples, collator, args)
    report("  rows as numpy (ArrowRows)   ", ArrowRows(examples), collator, args)


def bench_univl(args, tokenizer) -> None:
    rng = np.random.default_rng(0)
    base = rng.random((48, 1024), dtype=np.float32)
    source = datasets.Dataset.from_dict({
        "video_id": [f"v{i}" for i in range(args.images)],
        "frame_features": [base + np.float32(i % 5) for i in range(args.images)],
        "captions": [[sentence(rng, 40)] for _ in range(args.images)],
    })
    examples = pretraining_examples(source, tokenizer, 48)
    config = UnivlConfig(vocab_size=len(tokenizer))
    collator = collator_for_config(config, tokenizer, seed=0, num_frames=48)
    print(f"UniVL: {len(examples)} examples (48 clips x 1024, 48 tokens), objectives {list(collator.objectives)}")
    if args.baseline:
        report("  rows as Python lists (datasets default)", examples, collator, args)
    report("  rows as numpy (ArrowRows)   ", ArrowRows(examples), collator, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--model", nargs="+", default=["lxmert", "univl"], choices=["lxmert", "univl"])
    parser.add_argument("--baseline", action="store_true", help="also time rows fetched as Python lists")
    args = parser.parse_args()
    datasets.disable_progress_bars()
    tokenizer = default_tokenizer()
    with tempfile.TemporaryDirectory() as folder:
        if "lxmert" in args.model:
            bench_lxmert(args, tokenizer, Path(folder))
        if "univl" in args.model:
            bench_univl(args, tokenizer)


if __name__ == "__main__":
    main()
