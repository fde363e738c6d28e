"""Hub repository ids wherever the package reads a checkpoint or model folder.

A reference that exists on disk is used as it is. Otherwise an ``ORG/NAME`` reference is a Hub repository, fetched
with ``huggingface_hub.snapshot_download`` into the Hugging Face cache at ``revision`` (a branch, tag or commit;
default the main branch). ``HF_HUB_OFFLINE=1`` serves it from the cache only; ``HF_ENDPOINT`` points at another Hub.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
# Framework files no converter or loader of the package reads (TensorFlow, Flax, ONNX, Rust weights).
SKIPPED_FILES = ["*.h5", "*.msgpack", "*.ot", "*.onnx", "tf_model*", "flax_model*", "rust_model*"]


def resolve_path(reference: str | os.PathLike, revision: str | None = None, what: str = "path") -> Path:
    """The local file or folder ``reference`` names, downloading a Hub repo id first (see the module docstring)."""
    path = Path(reference)
    if path.exists():
        if revision is not None:
            raise ValueError(f"--revision: {revision!r} applies to Hub repo ids, but {what} {reference} is a local path")
        return path
    text = str(reference)
    if not REPO_ID.fullmatch(text):
        raise FileNotFoundError(f"{what}: {text} is neither an existing file or folder nor a Hub repo id (ORG/NAME)")
    from huggingface_hub import snapshot_download

    at = f" at revision {revision}" if revision else ""
    try:
        return Path(snapshot_download(text, revision=revision, ignore_patterns=SKIPPED_FILES))
    except Exception as error:  # repository, revision or network errors and offline misses all mean: not found
        reason = " ".join(str(error).split())[:300]
        raise FileNotFoundError(
            f"{what}: {text} is not a local path and the Hub repository could not be fetched{at} "
            f"({type(error).__name__}: {reason})"
        ) from error
