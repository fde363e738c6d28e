"""Visual-word (hierarchical mini-batch k-means) fitting benchmark: clips per second and memory.

Fits the paper's tokenizer (4 levels x 12 clusters = 20,736 words) on random 1024-d float32 features held in a
``numpy.memmap`` on disk (as a large feature export would be), then prints clips/s, wall time per level, the
process's peak resident memory (``ru_maxrss``) and the size of the features themselves. The issue's target is
1,000,000 clips (``--num-features 1000000``, a 4 GB file); the default is 200,000 so the run takes about two
minutes on two shared cores; the fit is linear in the number of clips above the per-split step cap, so the
1M figure can be extrapolated from it (the report says which was run).

Usage: ``python bench/bench_visual_words.py [--num-features 200000] [--dim 1024] [--num-threads 1]``
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from vlpretrain.processing.visual_words import VisualWordTokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-features", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--levels", type=int, default=4)
    parser.add_argument("--clusters", type=int, default=12)
    parser.add_argument("--num-threads", type=int, default=1, help="torch threads during the fit (1 is fastest on a shared machine)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clips.f32"
        features = np.memmap(path, dtype=np.float32, mode="w+", shape=(args.num_features, args.dim))
        rng = np.random.default_rng(0)
        for start in range(0, args.num_features, 65536):
            stop = min(start + 65536, args.num_features)
            features[start:stop] = rng.standard_normal((stop - start, args.dim), dtype=np.float32)
        features.flush()
        features = np.memmap(path, dtype=np.float32, mode="r", shape=(args.num_features, args.dim))
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        marks = [time.perf_counter()]
        tokenizer = VisualWordTokenizer(args.levels, args.clusters, seed=0)
        tokenizer.fit(features, progress=lambda level, total: marks.append(time.perf_counter()), num_threads=args.num_threads)
        elapsed = marks[-1] - marks[0]
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        per_level = ", ".join(f"L{i}: {b - a:.1f}s" for i, (a, b) in enumerate(zip(marks, marks[1:])))
        print(f"clips: {args.num_features} x {args.dim} float32 ({args.num_features * args.dim * 4 / 2**30:.2f} GiB memmap)")
        print(f"visual words: {tokenizer.vocab_size} ({args.levels} levels x {args.clusters})")
        print(f"fit: {elapsed:.1f} s, {args.num_features / elapsed:,.0f} clips/s ({per_level})")
        print(f"peak RSS: {peak:.0f} MiB (before fit: {rss_before:.0f} MiB; memmap pages count when read)")
        start = time.perf_counter()
        tokenizer.encode(np.asarray(features[:2000]))
        print(f"encode (flat nearest of {tokenizer.vocab_size} leaves): {2000 / (time.perf_counter() - start):,.0f} clips/s")


if __name__ == "__main__":
    main()
