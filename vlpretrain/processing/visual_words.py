"""VideoBERT's visual words: hierarchical k-means over clip features (Sun et al. 2019, section 3.2;
hierarchical mini-batch k-means as in ammesatyajit/hierarchical-minibatch-kmeans).

A :class:`VisualWordTokenizer` is fitted level by level: level 0 splits all clips into ``num_clusters`` groups,
and every group of level ``l`` is split again into ``num_clusters`` at level ``l + 1`` (paper: 4 levels x 12
clusters = 20,736 leaves). Each split is a mini-batch k-means (Sculley 2010: per-centre learning rate
1 / count) started from k-means++ on a sample, so memory stays at one mini-batch per step plus the clips
themselves (a ``numpy.memmap`` works: only sampled rows and chunks are read). Every split draws from its own
generator seeded with ``(seed, level, node)``, so a fit is deterministic for a seed.

A clip's visual word is its nearest leaf centroid by a flat search over all leaves, as the re-implementation
does (``MiniBatchKMeans.predict`` on the concatenated centres); the paper does not say whether it descends the
tree. The tree is used for fitting only. A group with no clips keeps copies of its parent's centre.

Saved as ``visual_words.json`` (settings) and ``visual_words.safetensors`` (one ``level_<l>`` centroid matrix of
shape (num_clusters ** (l + 1), feature_size) per level): no pickle anywhere.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..utils.folders import staged_save

VISUAL_WORDS_CONFIG_FILE = "visual_words.json"
VISUAL_WORDS_WEIGHTS_FILE = "visual_words.safetensors"
_FORMAT_VERSION = 1
_ASSIGN_CHUNK = 65536


def _kmeans_plus_plus(points: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding on ``points`` (n, D); with fewer than ``k`` distinct picks, points are reused."""
    norms = (points**2).sum(-1)
    picks = [int(torch.randint(len(points), (1,), generator=generator))]
    closest = (norms + norms[picks[0]] - 2.0 * points @ points[picks[0]]).clamp_min(0.0)
    for _ in range(1, k):
        total = float(closest.sum())
        if total <= 0.0:
            index = int(torch.randint(len(points), (1,), generator=generator))
        else:
            index = int(torch.multinomial(closest / total, 1, generator=generator))
        picks.append(index)
        closest = torch.minimum(closest, (norms + norms[index] - 2.0 * points @ points[index]).clamp_min(0.0))
    return points[picks].clone()


def _nearest(points: torch.Tensor, centres: torch.Tensor, centre_norms: torch.Tensor | None = None) -> torch.Tensor:
    """Index of the nearest centre (squared Euclidean distance) for every row of ``points``."""
    norms = (centres**2).sum(-1) if centre_norms is None else centre_norms
    return (norms[None, :] - 2.0 * points @ centres.T).argmin(-1)


class VisualWordTokenizer:
    """Hierarchical k-means quantiser of clip features into ``num_clusters ** num_levels`` visual words.

    Args:
        num_levels / num_clusters: tree depth and branching (paper: 4 and 12).
        batch_size: mini-batch size of every k-means step.
        max_steps: mini-batch steps per split (fewer for small groups: about ``epochs`` passes over the group).
        epochs: passes over a group's clips that bound its number of steps.
        init_size: clips sampled for the k-means++ start of a split.
        seed: seed of every split's generator.
    """

    def __init__(
        self,
        num_levels: int = 4,
        num_clusters: int = 12,
        batch_size: int = 1024,
        max_steps: int = 100,
        epochs: float = 3.0,
        init_size: int = 2048,
        seed: int = 0,
    ):
        for name, value in (("num_levels", num_levels), ("num_clusters", num_clusters), ("batch_size", batch_size),
                            ("max_steps", max_steps), ("init_size", init_size)):
            if int(value) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value}")
        if num_clusters < 2:
            raise ValueError(f"num_clusters: expected at least 2 clusters per level, got {num_clusters}")
        if epochs <= 0:
            raise ValueError(f"epochs: expected a positive number, got {epochs}")
        self.num_levels = int(num_levels)
        self.num_clusters = int(num_clusters)
        self.batch_size = int(batch_size)
        self.max_steps = int(max_steps)
        self.epochs = float(epochs)
        self.init_size = int(init_size)
        self.seed = int(seed)
        self.level_centroids: list[torch.Tensor] | None = None

    @property
    def vocab_size(self) -> int:
        """Number of visual words (leaves of the tree)."""
        return self.num_clusters**self.num_levels

    @property
    def is_fitted(self) -> bool:
        return self.level_centroids is not None

    @property
    def feature_size(self) -> int | None:
        """Size of the clip features the tokenizer was fitted on (None before fitting)."""
        return None if self.level_centroids is None else int(self.level_centroids[0].shape[1])

    @property
    def centroids(self) -> torch.Tensor:
        """The leaf centroids (vocab_size, feature_size); row ``i`` is visual word ``i``."""
        self._check_fitted()
        return self.level_centroids[-1]

    def _check_fitted(self) -> None:
        if self.level_centroids is None:
            raise ValueError("tokenizer: this VisualWordTokenizer is not fitted; call fit(features) or from_pretrained(folder)")

    def fit(
        self, features: np.ndarray, progress: Callable[[int, int], None] | None = None, num_threads: int | None = None
    ) -> VisualWordTokenizer:
        """Fit the tree on clip features (N, D) (an array or a ``numpy.memmap``); returns ``self``.

        ``progress(level, num_levels)`` is called after each level. ``num_threads`` sets torch's CPU threads during
        the fit (restored afterwards): most splits are small matrices, for which one thread is often fastest,
        especially on a shared machine.
        """
        previous_threads = torch.get_num_threads()
        if num_threads is not None:
            torch.set_num_threads(int(num_threads))
        try:
            return self._fit(features, progress)
        finally:
            torch.set_num_threads(previous_threads)

    def _fit(self, features: np.ndarray, progress: Callable[[int, int], None] | None) -> VisualWordTokenizer:
        if not hasattr(features, "shape") or len(features.shape) != 2:
            raise ValueError(f"features: expected a (num_clips, feature_size) array, got {getattr(features, 'shape', type(features))}")
        count, size = int(features.shape[0]), int(features.shape[1])
        if count < 1 or size < 1:
            raise ValueError(f"features: expected at least one clip with a non-empty feature, got shape {tuple(features.shape)}")
        k = self.num_clusters
        node_of = np.zeros(count, dtype=np.int64)
        levels: list[torch.Tensor] = []
        for level in range(self.num_levels):
            num_nodes = k**level
            order = np.argsort(node_of, kind="stable")
            bounds = np.searchsorted(node_of[order], np.arange(num_nodes + 1))
            centres = torch.empty(num_nodes * k, size, dtype=torch.float32)
            next_node = np.empty(count, dtype=np.int64)
            for node in range(num_nodes):
                members = order[bounds[node] : bounds[node + 1]]
                if len(members) == 0:
                    centres[node * k : (node + 1) * k] = levels[-1][node]
                    continue
                generator = torch.Generator().manual_seed(self.seed * 1_000_003 + level * 100_003 + node)
                node_centres = self._fit_split(features, members, generator)
                centres[node * k : (node + 1) * k] = node_centres
                next_node[members] = node * k + self._assign_rows(features, members, node_centres)
            levels.append(centres)
            node_of = next_node
            if progress is not None:
                progress(level + 1, self.num_levels)
        self.level_centroids = levels
        return self

    def _rows(self, features: np.ndarray, rows: np.ndarray) -> torch.Tensor:
        block = np.asarray(features[np.sort(rows)], dtype=np.float32)
        if not np.isfinite(block).all():
            raise ValueError("features: expected finite values, found NaN or inf")
        return torch.from_numpy(block)

    def _fit_split(self, features: np.ndarray, members: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        """Mini-batch k-means of one group of clips into ``num_clusters`` centres."""
        k, count = self.num_clusters, len(members)
        sample = members[torch.randperm(count, generator=generator)[: self.init_size].numpy()]
        centres = _kmeans_plus_plus(self._rows(features, sample), k, generator)
        counts = torch.zeros(k)
        steps = min(self.max_steps, max(1, math.ceil(self.epochs * count / self.batch_size)))
        for _ in range(steps):
            if count <= self.batch_size:
                batch = self._rows(features, members)
            else:
                picks = torch.randint(count, (self.batch_size,), generator=generator).numpy()
                batch = self._rows(features, members[picks])
            assignment = _nearest(batch, centres)
            one_hot = nn.functional.one_hot(assignment, k).to(batch.dtype)
            batch_counts = one_hot.sum(0)
            sums = one_hot.T @ batch
            counts += batch_counts
            centres += (sums - batch_counts[:, None] * centres) / counts.clamp_min(1.0)[:, None]
        return centres

    def _assign_rows(self, features: np.ndarray, members: np.ndarray, centres: torch.Tensor) -> np.ndarray:
        """Nearest of ``centres`` for each member, in the members' order, reading ``_ASSIGN_CHUNK`` rows at a time."""
        out = np.empty(len(members), dtype=np.int64)
        norms = (centres**2).sum(-1)
        for start in range(0, len(members), _ASSIGN_CHUNK):
            chunk = members[start : start + _ASSIGN_CHUNK]
            order = np.argsort(chunk, kind="stable")
            sorted_rows = chunk[order]
            assignment = _nearest(torch.from_numpy(np.asarray(features[sorted_rows], dtype=np.float32)), centres, norms)
            out[start + order] = assignment.numpy()
        return out

    def check_features(self, features: torch.Tensor | np.ndarray, name: str = "features") -> torch.Tensor:
        """Validate clip features (..., feature_size) against the fitted size; return them as a float tensor."""
        self._check_fitted()
        if isinstance(features, np.ndarray) and not features.flags.writeable:
            features = np.array(features)
        tensor = torch.as_tensor(features)
        if tensor.dim() < 1 or tensor.shape[-1] != self.feature_size:
            raise ValueError(
                f"{name}: expected clip features of size {self.feature_size} (the size the visual-word tokenizer was "
                f"fitted on), got shape {tuple(tensor.shape)}"
            )
        if not tensor.is_floating_point():
            raise ValueError(f"{name}: expected a floating-point tensor, got {tensor.dtype}")
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{name}: expected finite clip features, found NaN or inf (they have no nearest visual word)")
        return tensor

    def encode(self, features: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Visual-word ids (...) of clip features (..., feature_size): the nearest leaf centroid."""
        tensor = self.check_features(features)
        leaves = self.centroids.to(tensor.device)
        flat = tensor.reshape(-1, tensor.shape[-1]).float()
        norms = (leaves**2).sum(-1)
        ids = torch.cat([_nearest(flat[s : s + 4096], leaves, norms) for s in range(0, len(flat), 4096)]) if len(flat) else flat.new_zeros(0, dtype=torch.long)
        return ids.reshape(tensor.shape[:-1])

    def check_ids(self, ids: torch.Tensor | np.ndarray, name: str = "visual_word_ids") -> torch.Tensor:
        """Validate visual-word ids against the vocabulary; return them as a long tensor."""
        tensor = torch.as_tensor(ids)
        if tensor.is_floating_point():
            raise ValueError(f"{name}: expected integer visual-word ids, got {tensor.dtype}")
        if tensor.numel() and (int(tensor.min()) < 0 or int(tensor.max()) >= self.vocab_size):
            raise ValueError(
                f"{name}: expected ids in [0, {self.vocab_size}), got values in [{int(tensor.min())}, {int(tensor.max())}]"
            )
        return tensor.long()

    def decode(self, ids: torch.Tensor | np.ndarray) -> torch.Tensor:
        """The centroid (..., feature_size) of each visual-word id."""
        self._check_fitted()
        return self.centroids[self.check_ids(ids)]

    def nearest_clips(self, ids: torch.Tensor | np.ndarray, clip_features: torch.Tensor | np.ndarray) -> torch.Tensor:
        """For each visual-word id, the index of the clip in ``clip_features`` (N, D) nearest to its centroid: what a
        generated visual word looks like, shown by a real clip."""
        gallery = self.check_features(clip_features, "clip_features")
        if gallery.dim() != 2 or len(gallery) == 0:
            raise ValueError(f"clip_features: expected a non-empty (num_clips, {self.feature_size}) gallery, got {tuple(gallery.shape)}")
        centres = self.decode(ids)
        flat = centres.reshape(-1, centres.shape[-1])
        return _nearest(flat, gallery.float().to(flat.device)).reshape(centres.shape[:-1])

    def to_dict(self) -> dict:
        """The settings (everything but the centroids), as saved in ``visual_words.json``."""
        return {
            "format_version": _FORMAT_VERSION,
            "num_levels": self.num_levels,
            "num_clusters": self.num_clusters,
            "batch_size": self.batch_size,
            "max_steps": self.max_steps,
            "epochs": self.epochs,
            "init_size": self.init_size,
            "seed": self.seed,
            "feature_size": self.feature_size,
        }

    def save_pretrained(self, save_directory: str | os.PathLike) -> list[str]:
        """Write ``visual_words.json`` and ``visual_words.safetensors`` into the folder (staged and swapped in
        whole, other files of the folder kept); returns the file paths."""
        self._check_fitted()
        folder = Path(save_directory)
        with staged_save(folder) as staging:
            self.write_files(staging)
        return [str(folder / VISUAL_WORDS_CONFIG_FILE), str(folder / VISUAL_WORDS_WEIGHTS_FILE)]

    def write_files(self, folder: Path) -> None:
        """Write the two files into an existing folder (a staging folder of a save)."""
        self._check_fitted()
        weights = {f"level_{level}": tensor.contiguous() for level, tensor in enumerate(self.level_centroids)}
        save_file(weights, str(folder / VISUAL_WORDS_WEIGHTS_FILE), metadata={"format": "pt"})
        (folder / VISUAL_WORDS_CONFIG_FILE).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> VisualWordTokenizer:
        """Load a tokenizer written by :meth:`save_pretrained` (JSON settings + safetensors centroids)."""
        folder = Path(folder)
        config_path, weights_path = folder / VISUAL_WORDS_CONFIG_FILE, folder / VISUAL_WORDS_WEIGHTS_FILE
        if not config_path.is_file() or not weights_path.is_file():
            raise ValueError(f"folder: {folder} lacks {VISUAL_WORDS_CONFIG_FILE} and {VISUAL_WORDS_WEIGHTS_FILE}")
        try:
            settings = json.loads(config_path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{config_path}: not valid JSON ({error})") from error
        if not isinstance(settings, dict) or settings.pop("format_version", None) != _FORMAT_VERSION:
            raise ValueError(f"{config_path}: unsupported format_version; expected {_FORMAT_VERSION}")
        known = set(cls().to_dict()) - {"format_version"}
        if set(settings) != known:
            raise ValueError(f"{config_path}: expected the settings {sorted(known)}, got {sorted(settings)}")
        feature_size = settings.pop("feature_size")
        tokenizer = cls(**settings)
        weights = load_file(str(weights_path))
        levels = [weights[f"level_{level}"].float() for level in range(tokenizer.num_levels) if f"level_{level}" in weights]
        expected = [(tokenizer.num_clusters ** (level + 1), feature_size) for level in range(tokenizer.num_levels)]
        if [tuple(t.shape) for t in levels] != expected:
            raise ValueError(f"{weights_path}: centroid shapes {[tuple(t.shape) for t in levels]} do not match {expected}")
        tokenizer.level_centroids = levels
        return tokenizer

    @classmethod
    def from_leaf_centroids(cls, centroids: torch.Tensor, num_levels: int, num_clusters: int) -> VisualWordTokenizer:
        """A tokenizer that encodes with given leaf centroids only (e.g. those stored in a VideoBERT checkpoint);
        the upper levels are the means of their children."""
        tokenizer = cls(num_levels=num_levels, num_clusters=num_clusters)
        if centroids.dim() != 2 or centroids.shape[0] != tokenizer.vocab_size:
            raise ValueError(f"centroids: expected ({tokenizer.vocab_size}, feature_size), got {tuple(centroids.shape)}")
        levels = [centroids.detach().float().cpu()]
        for _ in range(num_levels - 1):
            levels.insert(0, levels[0].reshape(-1, num_clusters, levels[0].shape[-1]).mean(1))
        tokenizer.level_centroids = levels
        return tokenizer


def is_visual_word_folder(folder: Path) -> bool:
    """Whether ``folder`` holds only a tokenizer written by :meth:`VisualWordTokenizer.save_pretrained` (a VideoBERT
    model folder also holds these files, but is not a tokenizer folder to replace)."""
    names = {path.name for path in folder.iterdir() if not path.name.startswith(".")}
    return VISUAL_WORDS_CONFIG_FILE in names and names <= {VISUAL_WORDS_CONFIG_FILE, VISUAL_WORDS_WEIGHTS_FILE}
