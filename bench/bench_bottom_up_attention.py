"""Bottom-up-attention detector: images/s against transformers' LXMERT research-project FRCNN port, same weights.

Random weights in the ``unc-nlp/frcnn-vg-finetuned`` layout (full ResNet-101 size) are written to a temporary folder,
converted with ``vlpretrain convert --from frcnn-vg`` and run with ``box_selection="transformers-demo"``; the port
(``modeling_frcnn.py``, ``processing_image.py``, ``utils.py`` of huggingface/transformers-research-projects
``lxmert/``, formerly ``examples/research_projects/lxmert`` of huggingface/transformers) is copied into a temporary
folder at run time, never into the repository: from ``--port-dir`` when given, else downloaded from GitHub (this
fails without network; then pass ``--port-dir`` with the three files). The port needs torchvision (``RoIPool``,
``nms``, ``batched_nms``), OpenCV and wget; where they are not installed, small stand-ins are written next to the
copy: torchvision's ops by the package's plain-torch ``roi_pool`` / ``greedy_nms`` (torchvision semantics), OpenCV
and wget as import-only stubs (images are handed to the port as BGR tensors, so neither is called).

Printed: images/s of each at batch 1 and batch 4 on the same images at the release scale (short side 600, long
side at most 1000), their ratio, and the largest absolute differences of boxes, features, class and attribute
confidences and the share of equal class / attribute ids (batch 1, per image; in batches the port pads images to a
common size, which changes its features, huggingface/transformers#8769, and its ``norm_box`` fails beyond batch 2,
so for timing it is replaced by a per-image division). On a GPU, the package's detector is also
timed there, with its peak memory.

Usage: python bench/bench_bottom_up_attention.py [--port-dir DIR] [--images 4] [--height 480 --width 640]
       [--iterations 1] [--post-nms-topk 300]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from helpers.bottom_up_attention_factories import FULL, frcnn_vg_yaml, write_frcnn_vg  # noqa: E402

PORT_FILES = ("modeling_frcnn.py", "processing_image.py", "utils.py")
PORT_URL = "https://raw.githubusercontent.com/huggingface/transformers-research-projects/main/lxmert/{}"

TORCHVISION_OPS = '''"""Stand-in for torchvision.ops written by bench_bottom_up_attention.py (torchvision is not installed)."""
import torch
from vlpretrain.modeling.bottom_up_attention import roi_pool
from .boxes import batched_nms, nms


class RoIPool(torch.nn.Module):
    def __init__(self, output_size, spatial_scale):
        super().__init__()
        self.output_size = output_size[0] if isinstance(output_size, (tuple, list)) else output_size
        self.spatial_scale = spatial_scale

    def forward(self, features, rois):
        pooled = features.new_zeros((len(rois), features.shape[1], self.output_size, self.output_size))
        for index in range(features.shape[0]):
            rows = rois[:, 0] == index
            pooled[rows] = roi_pool(features[index], rois[rows, 1:], self.output_size, self.spatial_scale)
        return pooled
'''

TORCHVISION_BOXES = '''"""Stand-in for torchvision.ops.boxes: greedy NMS without +1, suppressing at IoU > threshold."""
from vlpretrain.modeling.bottom_up_attention import greedy_nms


def nms(boxes, scores, iou_threshold):
    return greedy_nms(boxes, scores, iou_threshold, caffe=False)


def batched_nms(boxes, scores, idxs, iou_threshold):
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    return greedy_nms(boxes + offsets[:, None], scores, iou_threshold, caffe=False)
'''


def prepare_port(port_dir: str | None, folder: Path) -> list[str]:
    """Copy (or download) the port into ``folder`` and write stand-ins for what is not installed; return notes."""
    notes = []
    for name in PORT_FILES:
        if port_dir:
            shutil.copy(Path(port_dir) / name, folder / name)
        else:
            try:
                with urllib.request.urlopen(PORT_URL.format(name), timeout=30) as response:
                    (folder / name).write_bytes(response.read())
            except OSError as error:
                raise SystemExit(
                    f"cannot download the port's {name} ({error}); pass --port-dir with {', '.join(PORT_FILES)} "
                    "(huggingface/transformers-research-projects lxmert/)"
                ) from error
    notes.append(f"port copied from {port_dir or PORT_URL.format('')}")
    try:
        import torchvision  # noqa: F401
    except ImportError:
        (folder / "torchvision" / "ops").mkdir(parents=True)
        (folder / "torchvision" / "__init__.py").write_text("")
        (folder / "torchvision" / "ops" / "__init__.py").write_text(TORCHVISION_OPS)
        (folder / "torchvision" / "ops" / "boxes.py").write_text(TORCHVISION_BOXES)
        notes.append("torchvision is not installed: the port's RoIPool / nms are the package's plain-torch versions")
    for module in ("cv2", "wget"):
        try:
            __import__(module)
        except ImportError:
            (folder / f"{module}.py").write_text('"""Import-only stub written by bench_bottom_up_attention.py."""\n')
            notes.append(f"{module} is not installed: an import-only stub is used (never called)")
    return notes


def run_port(port, preprocess, config, images: list[np.ndarray]):
    """The port on a batch of BGR float HWC tensors, as its demo calls it."""
    tensors = [torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1])).float() for image in images]
    pixels, sizes, scales_yx = preprocess(tensors)
    return port(pixels, sizes, scales_yx=scales_yx, padding="max_detections", max_detections=config.max_detections,
                return_tensors="pt")


def run_ours(model, processor, images: list[np.ndarray], device: str = "cpu"):
    inputs = processor.preprocess(images)
    return model(**{key: value.to(device) for key, value in inputs.items()})


def throughput(function, images: list[np.ndarray], batch: int, iterations: int) -> float:
    function(images[:1])  # warm-up
    start = time.perf_counter()
    done = 0
    for _ in range(iterations):
        for first in range(0, len(images) - batch + 1, batch):
            function(images[first : first + batch])
            done += batch
    return done / (time.perf_counter() - start)


def compare(port_output, ours, index: int = 0) -> dict:
    count = int(port_output["preds_per_image"][index])
    mine = int(ours.num_boxes[index])
    if count != mine:
        return {"boxes_kept": f"port {count} vs ours {mine}"}
    pairs = {
        "boxes": (port_output["boxes"][index, :count], ours.boxes[index, :count]),
        "normalized_boxes": (port_output["normalized_boxes"][index, :count], ours.normalized_boxes[index, :count]),
        "features": (port_output["roi_features"][index, :count], ours.features[index, :count]),
        "object_confidences": (port_output["obj_probs"][index, :count], ours.object_confidences[index, :count]),
        "attribute_confidences": (port_output["attr_probs"][index, :count], ours.attribute_confidences[index, :count]),
    }
    result = {name: float((a.float() - b.float().cpu()).abs().max()) for name, (a, b) in pairs.items()}
    result["object_ids_equal"] = float((port_output["obj_ids"][index, :count] == ours.object_ids[index, :count].cpu()).float().mean())
    result["attribute_ids_equal"] = float((port_output["attr_ids"][index, :count] == ours.attribute_ids[index, :count].cpu()).float().mean())
    result["regions"] = count
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-dir", default=None, help="folder with the port's modeling_frcnn.py, processing_image.py, utils.py")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--post-nms-topk", type=int, default=300, help="RPN proposals per image (release: 300)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--parity-images", type=int, default=4, help="images compared one at a time with the port")
    parser.add_argument("--skip-port", action="store_true", help="time only the package's detector")
    args = parser.parse_args()

    from vlpretrain import BottomUpAttentionDetector, BottomUpAttentionImageProcessor
    from vlpretrain.cli import main as cli_main

    torch.set_grad_enabled(False)
    work = Path(tempfile.mkdtemp(prefix="bench-bua-"))
    try:
        overrides = {"rpn.post_nms_topk_test": args.post_nms_topk}
        write_frcnn_vg(work / "frcnn-vg", sizes=FULL, seed=0, **overrides)
        cli_main(["convert", "--from", "frcnn-vg", str(work / "frcnn-vg"), "--output-dir", str(work / "ours"),
                  "--config-overrides", json.dumps({"box_selection": "transformers-demo"})])
        model = BottomUpAttentionDetector.from_pretrained(work / "ours").eval()
        processor = BottomUpAttentionImageProcessor.from_pretrained(work / "ours")
        processor.resize_rule = "torch"
        generator = np.random.default_rng(0)
        images = [generator.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8) for _ in range(args.images)]
        print(f"images: {args.images} x {args.width}x{args.height} -> {processor.resized_size(args.height, args.width)[:2][::-1]}"
              f", RPN proposals {args.post_nms_topk}, threads {torch.get_num_threads()}")
        results = {"ours": {}, "port": {}}
        for batch in args.batch_sizes:
            results["ours"][batch] = throughput(lambda chunk: run_ours(model, processor, chunk), images, batch, args.iterations)
            print(f"CPU batch {batch}: ours {results['ours'][batch]:.4f} images/s", flush=True)
        if not args.skip_port:
            port_folder = work / "port"
            port_folder.mkdir()
            for note in prepare_port(args.port_dir, port_folder):
                print("note:", note)
            sys.path.insert(0, str(port_folder))
            import modeling_frcnn
            import processing_image
            import utils as port_utils

            config = port_utils.Config(frcnn_vg_yaml(FULL, **overrides))
            port = modeling_frcnn.GeneralizedRCNN(config)
            port.load_state_dict(torch.load(work / "frcnn-vg" / "pytorch_model.bin", weights_only=True))
            port.eval()
            preprocess = processing_image.Preprocess(config)
            for index, image in enumerate(images[: args.parity_images]):
                difference = compare(run_port(port, preprocess, config, [image]), run_ours(model, processor, [image]))
                print(f"image {index}, batch 1, max |port - ours|:", difference, flush=True)
            # The port's norm_box broadcasts per-image sizes over the box axis and fails for batches > 2
            # (its demo runs batch 1); for timing larger batches it is replaced by a per-image division.
            modeling_frcnn.norm_box = lambda boxes, raw_sizes: boxes / raw_sizes[:, [1, 0, 1, 0]][:, None, :].to(boxes)
            for batch in args.batch_sizes:
                results["port"][batch] = throughput(lambda chunk: run_port(port, preprocess, config, chunk), images, batch, args.iterations)
                print(f"CPU batch {batch}: port {results['port'][batch]:.4f} images/s", flush=True)
            if len(images) >= 2:
                difference = compare(run_port(port, preprocess, config, images[:2]), run_ours(model, processor, images[:2]), 1)
                print("batch 2, image 1 (port pads the batch):", difference)
        for batch in args.batch_sizes:
            line = f"CPU batch {batch}: ours {results['ours'][batch]:.3f} images/s"
            if batch in results["port"]:
                port_rate = results["port"][batch]
                line += f", port {port_rate:.3f} images/s, ratio {results['ours'][batch] / port_rate:.2f}x"
            print(line)
        if torch.cuda.is_available():
            model.to("cuda")
            for batch in args.batch_sizes:
                torch.cuda.reset_peak_memory_stats()
                rate = throughput(lambda chunk: run_ours(model, processor, chunk, "cuda") and torch.cuda.synchronize(), images, batch, args.iterations)
                print(f"GPU batch {batch}: ours {rate:.2f} images/s, peak memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
