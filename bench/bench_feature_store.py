"""Read throughput of a warm feature store against reading the LXMERT TSV directly.

Writes N images of 36 x 2048 float32 region features as a feature store (fixed-shape ``Array2D`` columns)
and a smaller LXMERT base64 TSV (``--tsv-images``), then measures images per second for:

- the TSV read the way LXMERT's loader does it (csv + base64 + ``np.frombuffer``, no checks), and through
  ``read_tsv`` (with the package's validation);
- the store, warm (one untimed pass first), in contiguous batches:
  ``dataset.with_format("numpy")[i:i + B]`` (``datasets``' formatting, which copies),
  ``read_batch`` handed to ``torch.from_numpy`` with every 4 KiB page of the batch touched (zero-copy views of
  the memory map: what a training loop receives), and ``read_batch`` followed by a sum over every value (every
  byte read, bounded by memory bandwidth; the target of 20,000 images/s is judged on this figure).

Usage: python bench/bench_feature_store.py [--num-images 2048] [--batch-size 1024] [--repeats 5]
"""

from __future__ import annotations

import argparse
import base64
import csv
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlpretrain.processing.readers import TSV_FIELDNAMES, RegionRecord, read_tsv, write_tsv  # noqa: E402
from vlpretrain.processing.store import load_feature_store, read_batch, write_feature_store  # noqa: E402

PAGE_FLOATS = 4096 // 4


def synthetic_records(count: int, regions: int, dim: int):
    """Deterministic records: 36 boxes in a 640x480 image, random features (one base block, shifted per image)."""
    rng = np.random.default_rng(0)
    base = rng.random((regions, dim), dtype=np.float32)
    corners = np.sort(rng.random((regions, 2, 2), dtype=np.float32), axis=1).reshape(regions, 4)
    for index in range(count):
        yield RegionRecord(f"img{index:07d}", 480, 640, corners, base + np.float32(index % 7))


def time_passes(function, repeats: int) -> float:
    """Median seconds of ``repeats`` timed calls after one untimed warm-up call."""
    function()
    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        durations.append(time.perf_counter() - start)
    return statistics.median(durations)


def read_tsv_like_lxmert(path: Path) -> int:
    """LXMERT's ``load_obj_tsv`` inner loop: decode boxes and features of every line."""
    csv.field_size_limit(sys.maxsize)
    count = 0
    with path.open(newline="") as stream:
        for row in csv.DictReader(stream, TSV_FIELDNAMES, delimiter="\t"):
            boxes = int(row["num_boxes"])
            np.frombuffer(base64.b64decode(row["boxes"]), dtype=np.float32).reshape(boxes, 4)
            np.frombuffer(base64.b64decode(row["features"]), dtype=np.float32).reshape(boxes, -1)
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-images", type=int, default=2048)
    parser.add_argument("--regions", type=int, default=36)
    parser.add_argument("--feature-size", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tsv-images", type=int, default=256, help="images read from the TSV (its readers are slow)")
    parser.add_argument("--work-dir", default=None, help="where to write the temporary files (default: a temp folder)")
    args = parser.parse_args()
    # The zero-copy views are read-only (a memory map); torch warns once about wrapping them, which is expected.
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

    work = Path(tempfile.mkdtemp(prefix="bench-feature-store-", dir=args.work_dir))
    try:
        count, size = args.num_images, args.batch_size
        # The TSV readers are ~100x slower than the store, so they are timed on a smaller file.
        tsv_count = min(count, args.tsv_images)
        tsv_sample = work / "sample.tsv"
        write_tsv(tsv_sample, synthetic_records(tsv_count, args.regions, args.feature_size))
        write_feature_store(synthetic_records(count, args.regions, args.feature_size), work / "store", num_regions=args.regions)
        dataset = load_feature_store(work / "store")
        formatted = dataset.with_format("numpy", columns=["features", "boxes"])
        print(
            f"{count} images of {args.regions} x {args.feature_size} float32 "
            f"({count * args.regions * args.feature_size * 4 / 2**20:.0f} MiB of features); "
            f"TSV timed on {tsv_count} images ({tsv_sample.stat().st_size / 2**20:.0f} MiB); store batches of {size}; "
            f"median of {args.repeats} warm passes"
        )

        def store_formatted() -> None:
            for start in range(0, count, size):
                batch = formatted[start : start + size]
                assert batch["features"].shape[1:] == (args.regions, args.feature_size)

        def store_views() -> None:
            for start in range(0, count, size):
                batch = read_batch(dataset, start, min(start + size, count), columns=["features", "boxes"])
                features = torch.from_numpy(batch["features"])
                torch.from_numpy(batch["boxes"])
                features.view(-1)[::PAGE_FLOATS].sum()

        def store_full_sum() -> None:
            for start in range(0, count, size):
                batch = read_batch(dataset, start, min(start + size, count), columns=["features"])
                torch.from_numpy(batch["features"]).sum()

        tsv_lxmert, tsv_validated = "TSV, LXMERT-style csv + base64 (no checks)", "TSV, read_tsv (validated)"
        store_copy, store_view = 'store, with_format("numpy")[i:i+B] (copies)', "store, read_batch -> torch.from_numpy, pages touched"
        store_sum = "store, read_batch + sum over every value"
        results = {
            tsv_lxmert: tsv_count / time_passes(lambda: read_tsv_like_lxmert(tsv_sample), 1),
            tsv_validated: tsv_count / time_passes(lambda: sum(1 for _ in read_tsv(tsv_sample)), 1),
            store_copy: count / time_passes(store_formatted, args.repeats),
            store_view: count / time_passes(store_views, args.repeats),
            store_sum: count / time_passes(store_full_sum, args.repeats),
        }
        width = max(len(name) for name in results)
        for name, rate in results.items():
            print(f"  {name:<{width}}  {rate:12,.0f} images/s")
        baseline = results[tsv_lxmert]
        for name in (store_copy, store_view, store_sum):
            print(f"ratio {name} / TSV (LXMERT-style): {results[name] / baseline:,.1f}x")
        # The target is judged on the strictest store figure: every byte of every feature is read.
        verdict = "met" if results[store_sum] >= 20_000 else "NOT met"
        print(f"target >= 20,000 images/s from a warm store (read_batch + sum over every value): {verdict} ({results[store_sum]:,.0f})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
