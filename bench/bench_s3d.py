"""S3D clip-feature throughput: seconds of video per second at UniVL's settings (16-frame clips of 224 x 224, one clip
per second of video), the package's ``S3DModel`` against the reference ``s3dg.py`` of antoine77340/S3D_HowTo100M run
in the same process with the same random weights (release layout) and the same input.

The reference is not part of the package and nothing is downloaded: pass ``--reference path/to/s3dg.py`` (the file
from a clone of antoine77340/S3D_HowTo100M); it is copied into a temporary folder and imported from there, with a
two-word ``dict.npy`` for its text tower. Without it only the package's model is timed.

Printed per model: median seconds per batch of ``--clips`` clips over ``--iterations`` runs after one warm-up,
seconds of video per second, the process CPU time per batch (CPU) or the peak allocated memory (CUDA); then the throughput ratio (package /
reference) and the largest absolute differences of ``mixed_5c`` (1024-d) and ``video_embedding`` (512-d).

Usage: ``python bench/bench_s3d.py [--reference s3dg.py] [--device cpu|cuda] [--clips 4] [--iterations 3] [--threads N]``
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import vlpretrain  # noqa: F401  (registers the Auto classes)
from vlpretrain.configuration.s3d import S3DConfig
from vlpretrain.modeling.s3d import S3DModel


def random_release_weights(model: S3DModel, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights with realistic scales (unit-variance activations) and random BatchNorm statistics."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, tensor in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            state[name] = tensor
        elif name.endswith("running_var") or (".bn" in name and name.endswith(".weight")):
            state[name] = 0.5 + torch.rand(tensor.shape, generator=generator)
        elif name.endswith(("running_mean", "bias")):
            state[name] = 0.1 * torch.randn(tensor.shape, generator=generator)
        else:
            fan_in = tensor[0].numel() if tensor.ndim > 1 else 1
            state[name] = torch.randn(tensor.shape, generator=generator) * fan_in ** -0.5
    return state


def load_reference(path: Path, folder: Path):
    """Import a copy of the reference ``s3dg.py`` from ``folder`` and build its ``S3D`` (text tower included)."""
    shutil.copy(path, folder / "s3dg_reference.py")
    np.save(folder / "dict.npy", np.array(["video", "text"]))
    spec = importlib.util.spec_from_file_location("s3dg_reference", folder / "s3dg_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.S3D(str(folder / "dict.npy"))


def time_model(name: str, forward, video: torch.Tensor, iterations: int, device: torch.device) -> float:
    """Median seconds per call of ``forward(video)``; prints throughput (and peak memory on CUDA)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    times, cpu_times = [], []
    for iteration in range(iterations + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        forward(video)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if iteration:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    seconds = statistics.median(times)
    clips = video.shape[0]
    line = f"{name:>10}: {seconds:.3f} s per {clips} clips = {clips / seconds:.2f} s of video / s"
    if device.type == "cpu":  # on a shared machine wall time includes waiting for a core; CPU time does not
        line += f" (process CPU time {statistics.median(cpu_times):.3f} s per batch)"
    if device.type == "cuda":
        line += f", peak memory {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB"
    print(line)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, help="path to s3dg.py of antoine77340/S3D_HowTo100M")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clips", type=int, default=4, help="1-s clips per batch (16 frames each)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    model = S3DModel(S3DConfig()).eval()
    state = random_release_weights(model)
    model.load_state_dict(state)
    model.to(device)
    video = torch.rand(args.clips, 3, args.frames, args.size, args.size, generator=torch.Generator().manual_seed(1)).to(device)
    print(f"S3D, {args.clips} clips of {args.frames} x {args.size} x {args.size}, device {device}, {torch.get_num_threads()} CPU threads")

    with torch.inference_mode():
        ours_seconds = time_model("vlpretrain", model, video, args.iterations, device)
        ours = model(video)
        if args.reference is None:
            print("no --reference s3dg.py given: the reference was not run")
            return
        if not args.reference.is_file():
            sys.exit(f"--reference: no such file {args.reference}")
        with tempfile.TemporaryDirectory() as folder:
            reference = load_reference(args.reference, Path(folder))
            reference.load_state_dict(state)
            reference.eval().to(device)
            reference_seconds = time_model("reference", reference, video, args.iterations, device)
            expected = reference(video)
    print(f"throughput ratio (vlpretrain / reference): {reference_seconds / ours_seconds:.2f}x")
    print(f"max |diff| mixed_5c: {(ours.pooler_output - expected['mixed_5c']).abs().max().item():.2e}, "
          f"video_embedding: {(ours.video_embeds - expected['video_embedding']).abs().max().item():.2e}")


if __name__ == "__main__":
    main()
