"""Readers for the region-feature files that vision-language peers publish.

Every reader yields :class:`RegionRecord` objects with boxes normalised to [0, 1] corner coordinates
(x1, y1, x2, y2), float32 features and, when the file has them, the detector's object/attribute labels,
confidences and class distributions. Formats:

- the LXMERT / bottom-up-attention base64 TSV (``read_tsv``);
- per-image ``.npz`` files of bottom-up-attention.pytorch (``x``, ``bbox``, ``image_h``, ``image_w``, ``info``)
  and of UNITER (``features``, ``norm_bb``, ``conf``, ``soft_labels``) (``read_npz``);
- HDF5, either the bottom-up-attention-vqa layout (``image_features``, ``image_bb``, ``spatial_features``,
  optional ``pos_boxes``) or one group per image (``read_hdf5``);
- LMDB, either UNITER's image database (msgpack or compressed-npz values, ``__keys__`` index) or one ``.npz``
  blob per key (``read_lmdb``).

Nothing is ever unpickled silently: numpy files are opened with ``allow_pickle=False``; the pickled ``info``
dictionary of bottom-up-attention.pytorch files is read only when the caller passes ``pickled_info="trust"``.
Errors name the file and the row; with ``skip_corrupt=True`` a bad row is logged, counted in
:class:`ReadStats` and skipped instead.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..utils.log import get_logger
from .optional import optional_import

logger = get_logger(__name__)

TSV_FIELDNAMES = (
    "img_id",
    "img_h",
    "img_w",
    "objects_id",
    "objects_conf",
    "attrs_id",
    "attrs_conf",
    "num_boxes",
    "boxes",
    "features",
)

# How far (in pixels) a published box may lie outside the image before it is rejected; detectors clip to
# [0, W - 1], so anything further out means the file and the image size disagree.
BOX_TOLERANCE_PIXELS = 1.0
# The same tolerance for boxes that are already normalised.
BOX_TOLERANCE_NORMALISED = 1e-3

PICKLED_INFO_CHOICES = ("error", "ignore", "trust")


class CorruptRecordError(ValueError):
    """A row of a feature file is malformed; the message names the file and the row."""


@dataclass
class RegionRecord:
    """The regions of one image: normalised corner boxes, features and optional detector outputs."""

    image_id: str
    image_height: int | None
    image_width: int | None
    boxes: np.ndarray
    features: np.ndarray
    object_ids: np.ndarray | None = None
    object_confidences: np.ndarray | None = None
    attribute_ids: np.ndarray | None = None
    attribute_confidences: np.ndarray | None = None
    class_probabilities: np.ndarray | None = None

    @property
    def num_regions(self) -> int:
        """Number of regions (rows of ``features``)."""
        return int(self.features.shape[0])


@dataclass
class ReadStats:
    """Counts of a read: rows read, rows skipped and a short description of each skipped row."""

    read: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    def record_skip(self, message: str) -> None:
        """Log and count one skipped row."""
        self.skipped += 1
        self.errors.append(message)
        logger.warning("skipping corrupt row: %s", message)


def normalize_boxes(
    pixel_boxes: np.ndarray, image_width: float, image_height: float, where: str = "boxes"
) -> np.ndarray:
    """Turn pixel (x1, y1, x2, y2) boxes into [0, 1] boxes, rejecting boxes outside the image or inverted."""
    pixel_boxes = np.asarray(pixel_boxes, dtype=np.float64)
    if pixel_boxes.ndim != 2 or pixel_boxes.shape[1] != 4:
        raise ValueError(f"{where}: expected pixel boxes of shape (num_boxes, 4), got {pixel_boxes.shape}")
    if not (image_width > 0 and image_height > 0):
        raise ValueError(f"{where}: image size must be positive, got width={image_width}, height={image_height}")
    check_finite(pixel_boxes, where, "box")
    x1, y1, x2, y2 = pixel_boxes.T
    if (x2 < x1).any() or (y2 < y1).any():
        row = int(np.flatnonzero((x2 < x1) | (y2 < y1))[0])
        raise ValueError(f"{where}: box {row} {pixel_boxes[row].tolist()} has x2 < x1 or y2 < y1")
    limits = np.array([image_width, image_height, image_width, image_height])
    outside = (pixel_boxes < -BOX_TOLERANCE_PIXELS) | (pixel_boxes > limits + BOX_TOLERANCE_PIXELS)
    if outside.any():
        row = int(np.flatnonzero(outside.any(axis=1))[0])
        raise ValueError(
            f"{where}: box {row} {pixel_boxes[row].tolist()} lies outside the {image_width}x{image_height} image"
        )
    return np.clip(pixel_boxes / limits, 0.0, 1.0).astype(np.float32)


def check_finite(values: np.ndarray, where: str, unit: str = "row") -> None:
    """Raise ``ValueError`` naming ``where`` and the first ``unit`` (leading index) holding a NaN or infinite value."""
    finite = np.isfinite(values)
    if not finite.all():
        row = int(np.flatnonzero(~finite.reshape(len(values), -1).all(axis=1))[0]) if np.ndim(values) else 0
        raise ValueError(f"{where}: NaN or infinite value in {unit} {row}")


def validate_normalized_boxes(boxes: np.ndarray, where: str = "boxes") -> np.ndarray:
    """Check boxes already in [0, 1] corner form and return them as float32 (clipped by the small tolerance)."""
    boxes = np.asarray(boxes, dtype=np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{where}: expected normalised boxes of shape (num_boxes, 4), got {boxes.shape}")
    check_finite(boxes, where, "box")
    if ((boxes < -BOX_TOLERANCE_NORMALISED) | (boxes > 1 + BOX_TOLERANCE_NORMALISED)).any():
        row = int(np.flatnonzero(((boxes < -BOX_TOLERANCE_NORMALISED) | (boxes > 1 + BOX_TOLERANCE_NORMALISED)).any(1))[0])
        raise ValueError(f"{where}: box {row} {boxes[row].tolist()} is outside [0, 1]; expected normalised x1, y1, x2, y2")
    if (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
        row = int(np.flatnonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))[0])
        raise ValueError(f"{where}: box {row} {boxes[row].tolist()} has x2 < x1 or y2 < y1")
    return np.clip(boxes, 0.0, 1.0)


def validate_record(record: RegionRecord, where: str, feature_size: int | None = None) -> RegionRecord:
    """Check the shapes, dtypes and value ranges of a record; raise ``ValueError`` naming ``where``."""
    features = np.asarray(record.features)
    if features.ndim != 2:
        raise ValueError(f"{where}: features must have shape (num_boxes, feature_size), got {features.shape}")
    if not np.issubdtype(features.dtype, np.floating):
        raise ValueError(f"{where}: features must be floating point, got {features.dtype}")
    if feature_size is not None and features.shape[1] != feature_size:
        raise ValueError(f"{where}: feature size {features.shape[1]} differs from the expected {feature_size}")
    num_regions = features.shape[0]
    if num_regions == 0:
        raise ValueError(f"{where}: 0 regions; a row needs at least one region")
    check_finite(features, f"{where}: features", "region")
    boxes = validate_normalized_boxes(record.boxes, where=f"{where}: boxes")
    if boxes.shape[0] != num_regions:
        raise ValueError(f"{where}: {boxes.shape[0]} boxes for {num_regions} feature rows")
    for name in ("object_ids", "object_confidences", "attribute_ids", "attribute_confidences"):
        value = getattr(record, name)
        if value is not None and np.asarray(value).shape != (num_regions,):
            raise ValueError(f"{where}: {name} has shape {np.asarray(value).shape}, expected ({num_regions},)")
    probabilities = record.class_probabilities
    if probabilities is not None:
        probabilities = np.asarray(probabilities, dtype=np.float32)
        if probabilities.ndim != 2 or probabilities.shape[0] != num_regions:
            raise ValueError(f"{where}: class_probabilities has shape {probabilities.shape}, expected ({num_regions}, C)")
    for name in ("image_height", "image_width"):
        value = getattr(record, name)
        if value is not None and int(value) <= 0:
            raise ValueError(f"{where}: {name} must be positive, got {value}")
    return RegionRecord(
        image_id=str(record.image_id),
        image_height=None if record.image_height is None else int(record.image_height),
        image_width=None if record.image_width is None else int(record.image_width),
        boxes=boxes,
        features=features.astype(np.float32, copy=False),
        object_ids=_optional(record.object_ids, np.int64),
        object_confidences=_optional(record.object_confidences, np.float32),
        attribute_ids=_optional(record.attribute_ids, np.int64),
        attribute_confidences=_optional(record.attribute_confidences, np.float32),
        class_probabilities=probabilities,
    )


def _optional(value: np.ndarray | None, dtype: type) -> np.ndarray | None:
    return None if value is None else np.asarray(value).astype(dtype, copy=False)


def _guarded(
    rows: Iterable[tuple[str, RegionRecord | Exception]],
    skip_corrupt: bool,
    stats: ReadStats | None,
    feature_size: int | None,
) -> Iterator[RegionRecord]:
    """Validate each parsed row; raise on the first bad one or, with ``skip_corrupt``, count and skip it."""
    stats = stats if stats is not None else ReadStats()
    for where, parsed in rows:
        try:
            if isinstance(parsed, Exception):
                raise CorruptRecordError(f"{where}: {parsed}") from parsed
            record = validate_record(parsed, where, feature_size)
        except ValueError as error:
            if not skip_corrupt:
                raise CorruptRecordError(str(error)) from error
            stats.record_skip(str(error))
            continue
        stats.read += 1
        yield record


# ----------------------------------------------------------------------------------------------- TSV


def _decode_array(text: bytes | str, dtype: type, name: str) -> np.ndarray:
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as error:
        raise ValueError(f"field {name!r} is not valid base64 ({error})") from error
    itemsize = np.dtype(dtype).itemsize
    if len(raw) % itemsize:
        raise ValueError(f"field {name!r} holds {len(raw)} bytes, not a whole number of {np.dtype(dtype).name} values")
    return np.frombuffer(raw, dtype=dtype)


def _parse_tsv_line(fields: list[bytes], feature_size: int | None) -> RegionRecord:
    if len(fields) != len(TSV_FIELDNAMES) or not all(fields):
        raise ValueError(
            f"truncated or malformed line ({len(fields)} fields, {sum(1 for field in fields if not field)} empty; "
            f"expected the {len(TSV_FIELDNAMES)} fields {list(TSV_FIELDNAMES)})"
        )
    row = dict(zip(TSV_FIELDNAMES, fields))
    try:
        height, width, num_boxes = int(row["img_h"]), int(row["img_w"]), int(row["num_boxes"])
    except ValueError as error:
        raise ValueError(f"img_h, img_w and num_boxes must be integers ({error})") from error
    if num_boxes <= 0:
        raise ValueError(f"num_boxes must be positive, got {num_boxes}")
    boxes = _decode_array(row["boxes"], np.float32, "boxes")
    if boxes.size != num_boxes * 4:
        raise ValueError(f"boxes hold {boxes.size} values, expected num_boxes * 4 = {num_boxes * 4}")
    features = _decode_array(row["features"], np.float32, "features")
    if features.size % num_boxes:
        raise ValueError(f"features hold {features.size} values, not a multiple of num_boxes = {num_boxes}")
    features = features.reshape(num_boxes, -1)
    if feature_size is not None and features.shape[1] != feature_size:
        raise ValueError(f"feature size {features.shape[1]} differs from the expected {feature_size}")
    labels = {}
    for name, dtype in (("objects_id", np.int64), ("objects_conf", np.float32), ("attrs_id", np.int64), ("attrs_conf", np.float32)):
        labels[name] = _decode_array(row[name], dtype, name)
        if labels[name].size != num_boxes:
            raise ValueError(f"{name} holds {labels[name].size} values, expected num_boxes = {num_boxes}")
    return RegionRecord(
        image_id=row["img_id"].decode("utf-8"),
        image_height=height,
        image_width=width,
        boxes=normalize_boxes(boxes.reshape(num_boxes, 4), width, height),
        features=features,
        object_ids=labels["objects_id"],
        object_confidences=labels["objects_conf"],
        attribute_ids=labels["attrs_id"],
        attribute_confidences=labels["attrs_conf"],
    )


def read_tsv(
    path: str | os.PathLike,
    skip_corrupt: bool = False,
    stats: ReadStats | None = None,
    feature_size: int | None = None,
) -> Iterator[RegionRecord]:
    """Stream the records of an LXMERT / bottom-up-attention base64 TSV file (one image per line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TSV feature file not found: {path}")

    def rows() -> Iterator[tuple[str, RegionRecord | Exception]]:
        # Lines are split by hand rather than with the csv module: the layout has no quoting, and this reads
        # about twice as fast on 36 x 2048 features.
        with path.open("rb") as stream:
            for line_number, line in enumerate(stream, start=1):
                line = line.rstrip(b"\r\n")
                if not line:
                    continue
                fields = line.split(b"\t")
                where = f"{path}, row {line_number} (img_id={fields[0].decode('utf-8', errors='replace')!r})"
                try:
                    yield where, _parse_tsv_line(fields, feature_size)
                except ValueError as error:
                    yield where, error

    return _guarded(rows(), skip_corrupt, stats, feature_size)


def _encode_field(value: np.ndarray | None, count: int, dtype: type, default: float) -> str:
    """Base64 of a raw numpy buffer, as the TSV layout stores each array field (``default`` when absent)."""
    array = np.full(count, default, dtype=dtype) if value is None else np.asarray(value, dtype=dtype)
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def write_tsv(path: str | os.PathLike, records: Iterable[RegionRecord]) -> None:
    """Write records in the LXMERT TSV layout (pixel boxes); used by tests and to hand features to peers' code."""
    with Path(path).open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=TSV_FIELDNAMES, delimiter="\t")
        for record in records:
            if record.image_width is None or record.image_height is None:
                raise ValueError(f"record {record.image_id!r}: the TSV layout needs the image size")
            count = record.num_regions
            scale = np.array([record.image_width, record.image_height] * 2, dtype=np.float32)
            writer.writerow(
                {
                    "img_id": record.image_id,
                    "img_h": record.image_height,
                    "img_w": record.image_width,
                    "objects_id": _encode_field(record.object_ids, count, np.int64, 0),
                    "objects_conf": _encode_field(record.object_confidences, count, np.float32, 0.0),
                    "attrs_id": _encode_field(record.attribute_ids, count, np.int64, 0),
                    "attrs_conf": _encode_field(record.attribute_confidences, count, np.float32, 0.0),
                    "num_boxes": count,
                    "boxes": _encode_field(np.asarray(record.boxes, np.float32) * scale, count * 4, np.float32, 0.0),
                    "features": _encode_field(record.features, count * record.features.shape[1], np.float32, 0.0),
                }
            )


# ----------------------------------------------------------------------------------------------- NPZ


def _npz_arrays_to_record(
    arrays: dict[str, np.ndarray], image_id: str, info: dict | None, where: str
) -> RegionRecord:
    """Build a record from the arrays of one bottom-up-attention.pytorch or UNITER npz."""
    if "x" in arrays or "bbox" in arrays:
        for key in ("x", "bbox", "image_h", "image_w"):
            if key not in arrays:
                raise ValueError(f"bottom-up-attention.pytorch layout: key {key!r} is missing (keys: {sorted(arrays)})")
        height, width = int(arrays["image_h"]), int(arrays["image_w"])
        features = arrays["x"]
        pixel_boxes = arrays["bbox"]
        if "num_bbox" in arrays and int(arrays["num_bbox"]) != features.shape[0]:
            raise ValueError(f"num_bbox={int(arrays['num_bbox'])} but x has {features.shape[0]} rows")
        if pixel_boxes.ndim != 2 or pixel_boxes.shape[0] != features.shape[0]:
            raise ValueError(f"bbox has shape {pixel_boxes.shape}, expected ({features.shape[0]}, 4)")
        info = info or {}
        return RegionRecord(
            image_id=image_id,
            image_height=height,
            image_width=width,
            boxes=normalize_boxes(pixel_boxes, width, height),
            features=features,
            object_ids=info.get("objects_id"),
            object_confidences=info.get("objects_conf"),
            attribute_ids=info.get("attrs_id"),
            attribute_confidences=info.get("attrs_conf"),
            class_probabilities=info.get("cls_prob"),
        )
    if "features" in arrays and "norm_bb" in arrays:
        norm_bb = np.asarray(arrays["norm_bb"], dtype=np.float32)
        if norm_bb.ndim != 2 or norm_bb.shape[1] < 4:
            raise ValueError(f"norm_bb has shape {norm_bb.shape}, expected (num_boxes, 7) or (num_boxes, 4)")
        probabilities = arrays.get("soft_labels")
        confidences = arrays.get("conf")
        object_ids = None
        if probabilities is not None and probabilities.ndim == 2 and probabilities.shape[1] > 1:
            # UNITER's soft_labels have the background class at index 0, as the bottom-up-attention detector.
            object_ids = probabilities[:, 1:].argmax(axis=1) + 1
        return RegionRecord(
            image_id=image_id,
            image_height=None,
            image_width=None,
            boxes=norm_bb[:, :4],
            features=np.asarray(arrays["features"], dtype=np.float32),
            object_ids=object_ids,
            object_confidences=confidences,
            class_probabilities=probabilities,
        )
    raise ValueError(
        f"unrecognised npz layout with keys {sorted(arrays)}; expected bottom-up-attention.pytorch keys "
        "(x, bbox, image_h, image_w[, num_bbox, info]) or UNITER keys (features, norm_bb[, conf, soft_labels])"
    )


def _load_npz(source: str | os.PathLike | io.BytesIO, image_id: str, pickled_info: str, where: str) -> RegionRecord:
    with np.load(source, allow_pickle=False) as archive:
        arrays = {}
        needs_pickle = []
        for key in archive.files:
            try:
                arrays[key] = archive[key]
            except ValueError as error:
                if "allow_pickle" not in str(error):
                    raise
                needs_pickle.append(key)
    info = None
    unexpected = [key for key in needs_pickle if key != "info"]
    if unexpected:
        raise ValueError(f"keys {unexpected} hold pickled Python objects; refusing to unpickle them")
    if needs_pickle:
        if pickled_info == "error":
            raise ValueError(
                "the 'info' entry (object/attribute labels) is a pickled Python dict; pass pickled_info='trust' "
                "(CLI: --pickled-info trust) if you trust this file, or pickled_info='ignore' to read boxes and "
                "features only"
            )
        if pickled_info == "trust":
            if isinstance(source, io.BytesIO):
                source.seek(0)
            with np.load(source, allow_pickle=True) as archive:
                value = archive["info"]
            info = value.item() if value.shape == () else None
            if not isinstance(info, dict):
                raise ValueError(f"'info' is a {type(info).__name__}, expected a dict")
    return _npz_arrays_to_record(arrays, image_id, info, where)


def read_npz(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    skip_corrupt: bool = False,
    stats: ReadStats | None = None,
    feature_size: int | None = None,
    pickled_info: str = "error",
) -> Iterator[RegionRecord]:
    """Stream records from per-image ``.npz`` files (a folder, one file or a list); the id is the file stem."""
    if pickled_info not in PICKLED_INFO_CHOICES:
        raise ValueError(f"pickled_info must be one of {PICKLED_INFO_CHOICES}, got {pickled_info!r}")
    if isinstance(source, (str, os.PathLike)):
        source = Path(source)
        if source.is_dir():
            files = sorted(source.glob("*.npz"))
        elif source.is_file():
            files = [source]
        else:
            raise FileNotFoundError(f"npz feature file or folder not found: {source}")
    else:
        files = [Path(item) for item in source]

    def rows() -> Iterator[tuple[str, RegionRecord | Exception]]:
        for file in files:
            where = f"{file}"
            try:
                yield where, _load_npz(file, file.stem, pickled_info, where)
            except FileNotFoundError:
                raise
            except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as error:
                yield where, ValueError(f"cannot read npz ({type(error).__name__}: {error})")

    return _guarded(rows(), skip_corrupt, stats, feature_size)


# ---------------------------------------------------------------------------------------------- HDF5


def _load_image_ids(image_ids: Sequence[str] | str | os.PathLike | None) -> list[str] | None:
    if image_ids is None or isinstance(image_ids, list):
        return image_ids
    if isinstance(image_ids, (str, os.PathLike)):
        data = json.loads(Path(image_ids).read_text(encoding="utf-8"))
        if isinstance(data, dict):
            # {image_id: row index}, the JSON form of bottom-up-attention-vqa's imgid2idx mapping
            ordered = sorted(data.items(), key=lambda item: int(item[1]))
            return [str(key) for key, _ in ordered]
        return [str(item) for item in data]
    return [str(item) for item in image_ids]


def read_hdf5(
    path: str | os.PathLike,
    skip_corrupt: bool = False,
    stats: ReadStats | None = None,
    feature_size: int | None = None,
    image_ids: Sequence[str] | str | os.PathLike | None = None,
) -> Iterator[RegionRecord]:
    """Stream records from an HDF5 file.

    Two layouts are recognised. bottom-up-attention-vqa's ``trainval36.hdf5``: datasets ``image_features``
    (N, 36, D) or (total, D) with ``pos_boxes`` (N, 2) row ranges, ``image_bb`` (pixel boxes) and
    ``spatial_features`` (whose first four columns are the normalised boxes); its image ids live in a pickle,
    so pass them as ``image_ids`` (a list, or a JSON list / ``{id: index}`` file) or store an ``image_ids``
    dataset. Or one group per image holding ``features`` and ``boxes`` (pixels) with ``image_h`` / ``image_w``
    attributes and optional ``objects_id``, ``objects_conf``, ``attrs_id``, ``attrs_conf``, ``cls_prob``.
    """
    h5py = optional_import("h5py")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"HDF5 feature file not found: {path}")
    ids = _load_image_ids(image_ids)

    def rows() -> Iterator[tuple[str, RegionRecord | Exception]]:
        try:
            handle = h5py.File(path, "r")
        except OSError as error:
            raise ValueError(f"{path}: not a readable HDF5 file ({error})") from error
        with handle:
            if "image_features" in handle:
                yield from _hdf5_flat_rows(handle, path, ids)
            else:
                for name in sorted(handle.keys()):
                    where = f"{path}, group {name!r}"
                    try:
                        yield where, _hdf5_group_record(handle[name], name)
                    except (ValueError, KeyError, OSError, IndexError, TypeError, AttributeError) as error:
                        yield where, ValueError(f"{type(error).__name__}: {error}")

    return _guarded(rows(), skip_corrupt, stats, feature_size)


def _hdf5_flat_rows(handle, path: Path, ids: list[str] | None) -> Iterator[tuple[str, RegionRecord | Exception]]:
    missing = [name for name in ("image_bb", "spatial_features") if name not in handle]
    if missing:
        raise ValueError(
            f"{path}: the bottom-up-attention-vqa layout (it has 'image_features') also needs the datasets {missing} "
            "(pixel boxes 'image_bb', normalised boxes in the first 4 columns of 'spatial_features')"
        )
    features, pixel_boxes, spatial = handle["image_features"], handle["image_bb"], handle["spatial_features"]
    for name, dataset, columns in (("image_bb", pixel_boxes, 4), ("spatial_features", spatial, 4)):
        if dataset.ndim not in (2, 3) or dataset.shape[-1] < columns:
            raise ValueError(f"{path}: dataset {name!r} has shape {dataset.shape}; expected at least {columns} columns")
    if "pos_boxes" in handle:
        ranges = np.asarray(handle["pos_boxes"])
        if ranges.ndim != 2 or ranges.shape[1] != 2:
            raise ValueError(f"{path}: dataset 'pos_boxes' has shape {ranges.shape}; expected (N, 2) row ranges")
    else:
        if features.ndim != 3:
            raise ValueError(f"{path}: image_features has shape {features.shape}; expected (N, R, D) or a pos_boxes dataset")
        per_image = features.shape[1]
        ranges = np.stack([np.arange(features.shape[0]) * per_image, (np.arange(features.shape[0]) + 1) * per_image], 1)
    if ids is None and "image_ids" in handle:
        ids = [item.decode() if isinstance(item, bytes) else str(item) for item in handle["image_ids"][()]]
    if ids is not None and len(ids) != len(ranges):
        raise ValueError(f"{path}: {len(ids)} image ids for {len(ranges)} images")
    flat = features.ndim == 2
    for index, (start, end) in enumerate(ranges):
        image_id = ids[index] if ids is not None else str(index)
        where = f"{path}, row {index} (image_id={image_id!r})"
        try:
            if flat:
                region_features, boxes, normalised = features[start:end], pixel_boxes[start:end], spatial[start:end]
            else:
                region_features, boxes, normalised = features[index], pixel_boxes[index], spatial[index]
            normalised = np.asarray(normalised, dtype=np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                widths = np.asarray(boxes)[:, 2] / normalised[:, 2]
                heights = np.asarray(boxes)[:, 3] / normalised[:, 3]
            width = int(round(float(np.nanmax(widths)))) if np.isfinite(widths).any() else None
            height = int(round(float(np.nanmax(heights)))) if np.isfinite(heights).any() else None
            yield where, RegionRecord(
                image_id=image_id,
                image_height=height,
                image_width=width,
                boxes=normalised[:, :4],
                features=np.asarray(region_features),
            )
        except (ValueError, OSError, IndexError, KeyError) as error:
            yield where, ValueError(f"{type(error).__name__}: {error}")


def _hdf5_group_record(group, name: str) -> RegionRecord:
    if "features" not in group or "boxes" not in group:
        raise ValueError(f"group has datasets {sorted(group.keys())}; expected 'features' and 'boxes'")
    height = int(group.attrs.get("image_h", group["image_h"][()] if "image_h" in group else 0))
    width = int(group.attrs.get("image_w", group["image_w"][()] if "image_w" in group else 0))
    if height <= 0 or width <= 0:
        raise ValueError("image_h / image_w attributes are missing or not positive")
    optional = {key: np.asarray(group[key]) for key in ("objects_id", "objects_conf", "attrs_id", "attrs_conf", "cls_prob") if key in group}
    return RegionRecord(
        image_id=name,
        image_height=height,
        image_width=width,
        boxes=normalize_boxes(np.asarray(group["boxes"]), width, height),
        features=np.asarray(group["features"]),
        object_ids=optional.get("objects_id"),
        object_confidences=optional.get("objects_conf"),
        attribute_ids=optional.get("attrs_id"),
        attribute_confidences=optional.get("attrs_conf"),
        class_probabilities=optional.get("cls_prob"),
    )


# ---------------------------------------------------------------------------------------------- LMDB


def _decode_msgpack_array(obj: dict) -> dict | np.ndarray:
    """Decode msgpack_numpy's array encoding without pickle (object and structured arrays are refused).

    msgpack_numpy writes ``{b"nd": True, b"type": "<f2", b"kind": b"", b"shape": [...], b"data": ...}`` (bytes
    keys; older writers used str keys), and ``b"nd": False`` for numpy scalars.
    """
    fields = {key.decode() if isinstance(key, bytes) else key: value for key, value in obj.items()}
    if "nd" not in fields or "data" not in fields or "type" not in fields:
        return obj
    if fields.get("kind", b"") not in ("", b""):
        raise ValueError(f"msgpack array of kind {fields['kind']!r} would need pickle; refusing to decode")
    dtype_name = fields["type"].decode() if isinstance(fields["type"], bytes) else fields["type"]
    if not isinstance(dtype_name, str):
        raise ValueError(f"msgpack array with dtype description {dtype_name!r} is not supported")
    dtype = np.dtype(dtype_name)
    if dtype.hasobject:
        raise ValueError("msgpack array with object dtype would need pickle; refusing to decode")
    values = np.frombuffer(fields["data"], dtype=dtype)
    return values.reshape(fields["shape"]) if fields["nd"] else values[0]


def _decode_lmdb_value(value: bytes, image_id: str, pickled_info: str, where: str) -> RegionRecord:
    if value[:2] == b"PK":
        return _load_npz(io.BytesIO(value), image_id, pickled_info, where)
    msgpack = optional_import("msgpack")
    try:
        arrays = msgpack.unpackb(value, raw=False, object_hook=_decode_msgpack_array)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError, TypeError) as error:
        raise ValueError(f"value is neither an npz archive nor msgpack ({error})") from error
    if not isinstance(arrays, dict):
        raise ValueError(f"msgpack value decodes to a {type(arrays).__name__}, expected a dict of arrays")
    arrays = {key: np.asarray(item) for key, item in arrays.items()}
    return _npz_arrays_to_record(arrays, image_id, None, where)


def read_lmdb(
    path: str | os.PathLike,
    skip_corrupt: bool = False,
    stats: ReadStats | None = None,
    feature_size: int | None = None,
    pickled_info: str = "error",
) -> Iterator[RegionRecord]:
    """Stream records from an LMDB image database (UNITER msgpack / compressed-npz values, or npz blobs).

    The key is the image id (a trailing ``.npz`` of UNITER keys is dropped); UNITER's ``__keys__`` index entry
    is skipped.
    """
    lmdb = optional_import("lmdb")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"LMDB feature database not found: {path}")

    def rows() -> Iterator[tuple[str, RegionRecord | Exception]]:
        try:
            environment = lmdb.open(str(path), readonly=True, lock=False, readahead=False, subdir=path.is_dir())
        except lmdb.Error as error:
            raise ValueError(f"{path}: not a readable LMDB database ({error})") from error
        with environment, environment.begin(buffers=False) as transaction:
            for key, value in transaction.cursor():
                name = key.decode("utf-8", errors="replace")
                if name.startswith("__") and name.endswith("__"):
                    continue
                image_id = name[: -len(".npz")] if name.endswith(".npz") else name
                where = f"{path}, key {name!r}"
                try:
                    yield where, _decode_lmdb_value(bytes(value), image_id, pickled_info, where)
                except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as error:
                    yield where, ValueError(str(error))

    return _guarded(rows(), skip_corrupt, stats, feature_size)


READERS = {"tsv": read_tsv, "npz": read_npz, "hdf5": read_hdf5, "lmdb": read_lmdb}


def read_regions(
    format_name: str,
    source: str | os.PathLike,
    skip_corrupt: bool = False,
    stats: ReadStats | None = None,
    feature_size: int | None = None,
    **options,
) -> Iterator[RegionRecord]:
    """Dispatch to the reader of ``format_name`` (``tsv``, ``npz``, ``hdf5`` or ``lmdb``)."""
    if format_name not in READERS:
        raise ValueError(f"format must be one of {sorted(READERS)}, got {format_name!r}")
    return READERS[format_name](source, skip_corrupt=skip_corrupt, stats=stats, feature_size=feature_size, **options)
