"""Feature stores: region or frame features as a memory-mapped ``datasets`` Arrow dataset.

A store is a folder of Arrow shards (``data-00000.arrow``, ...) plus ``feature_store.json`` (kind, schema,
row and skip counts, provenance). One row per image (``kind="regions"``) or per video (``kind="frames"``).
Loading memory-maps the shards, so a store far larger than RAM opens instantly; ``streaming=True`` gives an
``IterableDataset`` whose shards can be split across processes with
``datasets.distributed.split_dataset_by_node``.

Region columns: ``id``, ``image_height``, ``image_width``, ``num_regions``, ``boxes`` (R, 4: normalised
x1, y1, x2, y2), ``features`` (R, D) and, when the source has them, ``object_ids``, ``object_confidences``,
``attribute_ids``, ``attribute_confidences``, ``class_probabilities`` (R, C). Frame columns: ``id``,
``num_frames``, ``clip_seconds``, ``duration``, ``features`` (F, D).

Writing goes to a temporary folder next to the target, which replaces the target only once every shard is
complete: an interrupted conversion leaves any previous store untouched.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
from datasets import Array2D, Dataset, Features, IterableDataset, List, Value, concatenate_datasets
from datasets.arrow_writer import ArrowWriter

from ..utils.folders import atomic_write_text, check_output_directory, replace_directory, staging_directory
from ..utils.log import get_logger
from ..utils.progress import progress_bar
from .frames import FrameRecord
from .provenance import warn_if_features_differ
from .readers import ReadStats, RegionRecord, validate_record

logger = get_logger(__name__)

STORE_METADATA_FILE = "feature_store.json"
STORE_FORMAT_VERSION = 1
TARGET_SHARD_BYTES = 512 * 1024 * 1024
# Rows are written in Arrow record batches of ROWS_PER_RECORD_BATCH rows (fewer when that would exceed
# MAX_RECORD_BATCH_BYTES, halving down to a power of two): a contiguous batch that starts at a multiple of
# that size lies in one record batch, which ``read_batch`` returns as a zero-copy view of the memory map.
# The writer buffers one record batch in memory (about 300 MB for 36 x 2048 float32 regions).
ROWS_PER_RECORD_BATCH = 1024
MAX_RECORD_BATCH_BYTES = 512 * 1024 * 1024
MAX_LOGGED_ERRORS = 100
FEATURE_DTYPES = ("float32", "float16")

_LABEL_COLUMNS = {
    "object_ids": "int64",
    "object_confidences": "float32",
    "attribute_ids": "int64",
    "attribute_confidences": "float32",
}


@dataclass
class StoreSummary:
    """What a conversion wrote: folder, rows written and skipped, shards, and the skip messages."""

    path: Path
    num_rows: int
    num_skipped: int
    num_shards: int
    errors: list[str] = field(default_factory=list)


class FeatureStoreWriter:
    """Write region or frame records into a new store; use as a context manager or call ``close``.

    The schema (feature size, optional label columns, class count) is fixed by the first record; a later
    record that disagrees raises ``ValueError`` naming it, or is skipped and counted with ``skip_corrupt``.
    ``num_regions`` makes region arrays fixed-shape (the fastest layout to read); without it each image may
    have its own number of regions. An existing ``output_dir`` is replaced (atomically, on ``close``) only when it
    is empty or a feature store, or with ``overwrite=True``; a file there is refused.
    ``feature_dtype="float16"`` stores the features (not boxes or labels) in half
    precision: half the disk and read bandwidth; the collators read them back as float32 (the model's dtype, or
    bf16 under autocast), and detector features lose nothing that bf16 training keeps.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        kind: str = "regions",
        num_regions: int | None = None,
        skip_corrupt: bool = False,
        metadata: dict | None = None,
        rows_per_shard: int | None = None,
        overwrite: bool = False,
        feature_dtype: str = "float32",
    ) -> None:
        if feature_dtype not in FEATURE_DTYPES:
            raise ValueError(f"feature_dtype must be one of {FEATURE_DTYPES}, got {feature_dtype!r}")
        if kind not in ("regions", "frames"):
            raise ValueError(f"kind must be 'regions' or 'frames', got {kind!r}")
        if num_regions is not None and (kind != "regions" or num_regions <= 0):
            raise ValueError(f"num_regions must be a positive int and only applies to region stores, got {num_regions!r}")
        if rows_per_shard is not None and rows_per_shard <= 0:
            raise ValueError(f"rows_per_shard must be positive, got {rows_per_shard}")
        self.overwrite = overwrite
        self.output_dir = check_output_directory(output_dir, is_feature_store, "a feature store", overwrite)
        self.kind = kind
        self.num_regions = num_regions
        self.skip_corrupt = skip_corrupt
        self.metadata = dict(metadata or {})
        self.rows_per_shard = rows_per_shard
        self.feature_dtype = feature_dtype
        self.metadata.setdefault("feature_dtype", feature_dtype)
        self.stats = ReadStats()
        self._workdir = staging_directory(self.output_dir)
        self._staging = self._workdir / self.output_dir.name
        self._staging.mkdir()
        self._features: Features | None = None
        self._writer: ArrowWriter | None = None
        self._rows_in_shard = 0
        self._shards: list[str] = []
        self._pending: list[dict] = []
        self._rows_per_record_batch = ROWS_PER_RECORD_BATCH
        self._closed = False

    def __enter__(self) -> FeatureStoreWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, record: RegionRecord | FrameRecord, where: str | None = None) -> bool:
        """Add one record; return False when it was skipped as corrupt (``skip_corrupt=True``)."""
        where = where or f"record {getattr(record, 'image_id', getattr(record, 'video_id', '?'))!r}"
        try:
            row = self._row(record, where)
        except ValueError as error:
            if not self.skip_corrupt:
                raise
            self.stats.record_skip(str(error))
            return False
        self._pending.append(row)
        self.stats.read += 1
        if len(self._pending) >= self._rows_per_record_batch:
            self._flush()
        return True

    def count_skipped(self, stats: ReadStats) -> None:
        """Fold the skip counts of a reader into this store's metadata."""
        self.stats.skipped += stats.skipped
        self.stats.errors.extend(stats.errors)

    def close(self) -> StoreSummary:
        """Finish the shards, write ``feature_store.json`` and move the store into place."""
        if self._closed:
            raise ValueError("this store writer is already closed")
        self._flush()
        if self._writer is not None:
            self._writer.finalize()
            self._writer = None
        if self._features is None:
            self.abort()
            raise ValueError(f"no valid records to write to {self.output_dir} ({self.stats.skipped} skipped)")
        metadata = {
            "format_version": STORE_FORMAT_VERSION,
            "kind": self.kind,
            "num_rows": self.stats.read,
            "num_skipped": self.stats.skipped,
            "errors": self.stats.errors[:MAX_LOGGED_ERRORS],
            "shards": self._shards,
            "features": self._features.to_dict(),
            **self.metadata,
        }
        atomic_write_text(self._staging / STORE_METADATA_FILE, json.dumps(metadata, indent=2, sort_keys=True) + "\n")
        try:
            check_output_directory(self.output_dir, is_feature_store, "a feature store", self.overwrite)
            replace_directory(self._staging, self.output_dir)
        finally:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._closed = True
        return StoreSummary(self.output_dir, self.stats.read, self.stats.skipped, len(self._shards), list(self.stats.errors))

    def abort(self) -> None:
        """Drop everything written so far; the target folder is left as it was."""
        if self._writer is not None:
            try:
                self._writer.finalize()
            except Exception:  # noqa: BLE001 - the writer is being discarded; its own error is irrelevant
                logger.debug("ignoring an error while discarding a partial shard", exc_info=True)
            self._writer = None
        shutil.rmtree(self._workdir, ignore_errors=True)
        self._closed = True

    # ------------------------------------------------------------------ internals

    def _row(self, record: RegionRecord | FrameRecord, where: str) -> dict:
        if self.kind == "regions":
            if not isinstance(record, RegionRecord):
                raise ValueError(f"{where}: a region store takes RegionRecord objects, got {type(record).__name__}")
            return self._region_row(record, where)
        if not isinstance(record, FrameRecord):
            raise ValueError(f"{where}: a frame store takes FrameRecord objects, got {type(record).__name__}")
        return self._frame_row(record, where)

    def _region_row(self, record: RegionRecord, where: str) -> dict:
        record = validate_record(record, where)
        num_regions, feature_size = record.features.shape
        if self.num_regions is not None and num_regions != self.num_regions:
            raise ValueError(f"{where}: {num_regions} regions, but this store holds exactly {self.num_regions} per image")
        row = {
            "id": record.image_id,
            "image_height": record.image_height,
            "image_width": record.image_width,
            "num_regions": num_regions,
            "boxes": np.asarray(record.boxes, dtype=np.float32),
            "features": np.asarray(record.features, dtype=self.feature_dtype),
        }
        for name in _LABEL_COLUMNS:
            value = getattr(record, name)
            if value is not None:
                row[name] = np.asarray(value)
        if record.class_probabilities is not None:
            row["class_probabilities"] = np.asarray(record.class_probabilities, dtype=np.float32)
        if self._features is None:
            regions = self.num_regions
            columns = {
                "id": Value("string"),
                "image_height": Value("int32"),
                "image_width": Value("int32"),
                "num_regions": Value("int32"),
                "boxes": Array2D((regions, 4), "float32"),
                "features": Array2D((regions, feature_size), self.feature_dtype),
            }
            for name, dtype in _LABEL_COLUMNS.items():
                if name in row:
                    columns[name] = List(Value(dtype))
            if "class_probabilities" in row:
                columns["class_probabilities"] = Array2D((regions, row["class_probabilities"].shape[1]), "float32")
            self._start(Features(columns), bytes_per_row=row["features"].nbytes + row["boxes"].nbytes)
        self._check_schema(row, where, feature_size)
        return row

    def _frame_row(self, record: FrameRecord, where: str) -> dict:
        features = np.asarray(record.features, dtype=self.feature_dtype)
        if features.ndim != 2 or features.shape[0] == 0:
            raise ValueError(f"{where}: frame features must have shape (num_frames >= 1, D), got {features.shape}")
        row = {
            "id": record.video_id,
            "num_frames": int(features.shape[0]),
            "clip_seconds": record.clip_seconds,
            "duration": record.duration,
            "features": features,
        }
        if self._features is None:
            columns = {
                "id": Value("string"),
                "num_frames": Value("int32"),
                "clip_seconds": Value("float32"),
                "duration": Value("float32"),
                "features": Array2D((None, features.shape[1]), self.feature_dtype),
            }
            self._start(Features(columns), bytes_per_row=features.nbytes)
        self._check_schema(row, where, features.shape[1])
        return row

    def _check_schema(self, row: dict, where: str, feature_size: int) -> None:
        expected_size = self._features["features"].shape[1]
        if feature_size != expected_size:
            raise ValueError(f"{where}: feature size {feature_size} differs from the store's {expected_size} (set by its first record)")
        if set(row) != set(self._features):
            raise ValueError(
                f"{where}: has columns {sorted(row)}, but the store's first record set {sorted(self._features)}"
            )
        if "class_probabilities" in row:
            classes = self._features["class_probabilities"].shape[1]
            if row["class_probabilities"].shape[1] != classes:
                raise ValueError(f"{where}: {row['class_probabilities'].shape[1]} classes, the store has {classes}")

    def _start(self, features: Features, bytes_per_row: int) -> None:
        self._features = features
        bytes_per_row = max(1, bytes_per_row)
        while self._rows_per_record_batch > 1 and self._rows_per_record_batch * bytes_per_row > MAX_RECORD_BATCH_BYTES:
            self._rows_per_record_batch //= 2
        if self.rows_per_shard is None:
            batches_per_shard = max(1, TARGET_SHARD_BYTES // (self._rows_per_record_batch * bytes_per_row))
            self.rows_per_shard = batches_per_shard * self._rows_per_record_batch

    def _flush(self) -> None:
        while self._pending:
            if self._writer is None:
                name = f"data-{len(self._shards):05d}.arrow"
                self._shards.append(name)
                self._writer = ArrowWriter(features=self._features, path=str(self._staging / name), writer_batch_size=self._rows_per_record_batch)
                self._rows_in_shard = 0
            room = self.rows_per_shard - self._rows_in_shard
            batch, self._pending = self._pending[:room], self._pending[room:]
            self._writer.write_batch({column: [row[column] for row in batch] for column in self._features})
            self._rows_in_shard += len(batch)
            if self._rows_in_shard >= self.rows_per_shard:
                self._writer.finalize()
                self._writer = None


def write_feature_store(
    records: Iterable[RegionRecord | FrameRecord],
    output_dir: str | os.PathLike,
    kind: str = "regions",
    num_regions: int | None = None,
    skip_corrupt: bool = False,
    metadata: dict | None = None,
    reader_stats: ReadStats | None = None,
    rows_per_shard: int | None = None,
    progress: bool = False,
    overwrite: bool = False,
    feature_dtype: str = "float32",
) -> StoreSummary:
    """Write every record of ``records`` into a new store at ``output_dir`` (atomic: all or nothing); features in
    ``feature_dtype`` (``float32`` or ``float16``). An existing ``output_dir`` is replaced only when it is empty or
    a feature store, or with ``overwrite=True``."""
    writer = FeatureStoreWriter(
        output_dir, kind, num_regions, skip_corrupt, metadata, rows_per_shard, overwrite=overwrite, feature_dtype=feature_dtype
    )
    try:
        iterator = progress_bar(records, f"writing {kind}", unit="row") if progress else records
        for record in iterator:
            writer.write(record)
        if reader_stats is not None:
            writer.count_skipped(reader_stats)
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def is_feature_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a store written by :class:`FeatureStoreWriter` (its ``feature_store.json``)."""
    return (Path(path) / STORE_METADATA_FILE).is_file()


def read_store_metadata(path: str | os.PathLike) -> dict:
    """Return the ``feature_store.json`` of a store, raising ``FileNotFoundError`` when it is not a store."""
    metadata_file = Path(path) / STORE_METADATA_FILE
    if not metadata_file.is_file():
        raise FileNotFoundError(f"{path} is not a feature store (no {STORE_METADATA_FILE})")
    return json.loads(metadata_file.read_text(encoding="utf-8"))


def check_feature_provenance(model, dataset: str | os.PathLike) -> None:
    """Compare the provenance of a feature store with the features ``model`` expects (``model.config
    .feature_provenance``): warn naming both extractors when they differ; a model without a record takes the
    store's, so its saved config and model card name the features it was trained on. Not a store: nothing to do."""
    if not (Path(dataset) / STORE_METADATA_FILE).is_file():
        return
    found = read_store_metadata(dataset).get("provenance")
    expected = getattr(model.config, "feature_provenance", None)
    if expected:
        warn_if_features_differ(expected, found, f"dataset {dataset}")
    elif found:
        model.config.feature_provenance = found


def load_feature_store(path: str | os.PathLike, streaming: bool = False) -> Dataset | IterableDataset:
    """Open a store memory-mapped (``Dataset``) or, with ``streaming=True``, as a sharded ``IterableDataset``."""
    metadata = read_store_metadata(path)
    shards = [Path(path) / name for name in metadata["shards"]]
    missing = [str(shard) for shard in shards if not shard.is_file()]
    if missing:
        raise FileNotFoundError(f"feature store {path} is missing shards {missing}")
    dataset = concatenate_datasets([Dataset.from_file(str(shard), in_memory=False) for shard in shards])
    if streaming:
        return dataset.to_iterable_dataset(num_shards=len(shards))
    return dataset


def record_from_row(row: dict) -> RegionRecord:
    """Turn one row of a region store (numpy-formatted or plain lists) back into a ``RegionRecord``."""
    def optional(name: str, dtype: type) -> np.ndarray | None:
        return None if row.get(name) is None else np.asarray(row[name], dtype=dtype)

    return RegionRecord(
        image_id=row["id"],
        image_height=row.get("image_height"),
        image_width=row.get("image_width"),
        boxes=np.asarray(row["boxes"], dtype=np.float32),
        features=np.asarray(row["features"], dtype=np.float32),
        object_ids=optional("object_ids", np.int64),
        object_confidences=optional("object_confidences", np.float32),
        attribute_ids=optional("attribute_ids", np.int64),
        attribute_confidences=optional("attribute_confidences", np.float32),
        class_probabilities=optional("class_probabilities", np.float32),
    )


def read_batch(dataset: Dataset, start: int, stop: int, columns: Sequence[str] | None = None) -> dict[str, np.ndarray | list]:
    """Rows ``[start, stop)`` of a store as numpy arrays read straight from the memory-mapped Arrow buffers.

    Fixed-shape columns (e.g. ``features`` of a store written with ``num_regions``) come back as one
    (B, R, D) array that is a zero-copy view of the memory map when the rows lie in one record batch, and a
    single copy otherwise; variable-shape columns come back as a list of per-row views; scalar columns as
    arrays. This is the fast path for contiguous batches; ``dataset.with_format("numpy")[start:stop]`` gives
    the same values through ``datasets``' formatting.
    """
    if getattr(dataset, "_indices", None) is not None:
        raise ValueError("read_batch needs a dataset without an indices mapping; call dataset.flatten_indices() first")
    if not 0 <= start <= stop <= len(dataset):
        raise ValueError(f"read_batch: need 0 <= start <= stop <= {len(dataset)}, got start={start}, stop={stop}")
    columns = list(dataset.column_names if columns is None else columns)
    unknown = sorted(set(columns) - set(dataset.column_names))
    if unknown:
        raise ValueError(f"read_batch: unknown columns {unknown}; the store has {dataset.column_names}")
    table = dataset.data.table.slice(start, stop - start)
    batch = {}
    for name in columns:
        feature = dataset.features[name]
        chunks = [chunk.storage if isinstance(chunk, pa.ExtensionArray) else chunk for chunk in table.column(name).chunks]
        if isinstance(feature, Array2D):
            if feature.shape[0] is not None:
                pieces = [chunk.flatten().flatten().to_numpy(zero_copy_only=True).reshape(-1, *feature.shape) for chunk in chunks]
                if not pieces:
                    batch[name] = np.empty((0, *feature.shape), dtype=feature.dtype)
                else:
                    batch[name] = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
            else:
                batch[name] = [
                    chunk[index].values.flatten().to_numpy(zero_copy_only=True).reshape(-1, feature.shape[1])
                    for chunk in chunks
                    for index in range(len(chunk))
                ]
        elif isinstance(feature, List):
            batch[name] = [chunk[index].values.to_numpy(zero_copy_only=False) for chunk in chunks for index in range(len(chunk))]
        else:
            batch[name] = np.concatenate([chunk.to_numpy(zero_copy_only=False) for chunk in chunks]) if chunks else np.array([])
    return batch
