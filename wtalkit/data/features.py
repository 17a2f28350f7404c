"""Feature streams on disk.

A dataset folder holds ``annotations.json`` and ``features/STREAM/`` for each
stream (``cbp``: classification-pretrained video features, ``vlp``: CLIP frame
features). A stream folder has one float32 ``VIDEO.npy`` of shape ``[T, D]``
per video and a ``meta.json``::

    {"backbone": "i3d-kinetics", "dim": 2048, "fps": 25.0,
     "snippet_length": 16, "snippet_stride": 16}
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from wtalkit import io as wio
from wtalkit.data.annotations import check_video_name, read_json
from wtalkit.errors import WtalError
from wtalkit.timeaxis import SnippetGrid

STREAMS = ("cbp", "vlp")


@dataclass(frozen=True)
class StreamMeta:
    backbone: str
    dim: int
    fps: float = 25.0
    snippet_length: int = 16
    snippet_stride: int = 16

    @property
    def grid(self) -> SnippetGrid:
        return SnippetGrid(self.fps, self.snippet_length, self.snippet_stride)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d, where="meta.json") -> StreamMeta:
        if not isinstance(d, dict):
            raise WtalError(f"{where}: expected an object")
        known = {"backbone", "dim", "fps", "snippet_length", "snippet_stride"}
        extra = sorted(set(d) - known - {"extra"})
        if extra:
            raise WtalError(f"{where}: unknown key '{extra[0]}'")
        if "backbone" not in d or "dim" not in d:
            raise WtalError(f"{where}: missing key '{'backbone' if 'backbone' not in d else 'dim'}'")
        if not isinstance(d["backbone"], str):
            raise WtalError(f"{where}: 'backbone' must be a string")
        fps = _finite(d.get("fps", 25.0))
        if fps is None or fps <= 0:
            raise WtalError(f"{where}: 'fps' must be a finite number > 0, got {_show(d.get('fps'))}")
        ints = {}
        for key, default in (("dim", None), ("snippet_length", 16), ("snippet_stride", 16)):
            x = _finite(d.get(key, default))
            if x is None or x < 1 or not x.is_integer():
                raise WtalError(f"{where}: '{key}' must be a positive integer, got {_show(d.get(key))}")
            ints[key] = int(x)
        return cls(backbone=d["backbone"], fps=fps, **ints)


def _finite(x) -> float | None:
    """``x`` as a finite float if it is a JSON number (not a bool), else None."""
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return None
    try:
        x = float(x)
    except OverflowError:  # an integer beyond float range
        return None
    return x if math.isfinite(x) else None


def _show(x) -> str:
    text = json.dumps(x)
    return text if len(text) <= 40 else text[:37] + "..."


class FeatureStream:
    """One stream folder: ``meta.json`` + ``VIDEO.npy`` files."""

    def __init__(self, folder):
        self.folder = Path(folder)
        meta_path = self.folder / "meta.json"
        if not meta_path.exists():
            raise WtalError(f"feature stream has no meta.json: {self.folder}")
        self.meta = StreamMeta.from_dict(read_json(meta_path), str(meta_path))

    @property
    def name(self) -> str:
        return self.folder.name

    def path(self, video: str) -> Path:
        """``VIDEO.npy`` in this folder; a video id that is not a plain file name is an error."""
        return self.folder / f"{check_video_name(video, str(self.folder))}.npy"

    def has(self, video: str) -> bool:
        return self.path(video).exists()

    def load(self, video: str, mmap: bool = False) -> np.ndarray:
        """``[T, D]`` float32 features (a validated read-only memory map with ``mmap``)."""
        return load_feature_file(self.path(video), self.meta.dim, mmap=mmap)

    def read(self, video: str, rows) -> np.ndarray:
        """float32 rows (a slice or an index array) of an already validated file, without reading the rest."""
        x = np.load(self.path(video), allow_pickle=False, mmap_mode="r")
        return np.array(x[rows], dtype=np.float32)

    def write(self, video: str, feats: np.ndarray) -> None:
        feats = np.asarray(feats, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[1] != self.meta.dim:
            raise WtalError(f"features for '{video}' must be [T, {self.meta.dim}], got {list(feats.shape)}")
        wio.save_npy(self.path(video), feats)

    @classmethod
    def create(cls, folder, meta: StreamMeta) -> FeatureStream:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta_path = folder / "meta.json"
        if meta_path.exists():
            old = StreamMeta.from_dict(read_json(meta_path), str(meta_path))
            if old != meta:
                raise WtalError(f"{meta_path} describes {old}, which differs from the features being written ({meta})")
        else:
            wio.write_json(meta_path, meta.to_dict())
        return cls(folder)


def load_feature_file(path, dim: int | None = None, mmap: bool = False) -> np.ndarray:
    """Load and validate one ``[T, D]`` float feature file.

    ``mmap``: return a read-only memory map instead of reading the file into RAM (validated the same
    way, the finiteness check streaming through it in chunks); slices of it are read on demand.
    """
    path = Path(path)
    if not path.exists():
        raise WtalError(f"feature file not found: {path}")
    try:
        x = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (ValueError, OSError, EOFError) as e:
        raise WtalError(
            f"{path}: not a readable .npy array ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from None
    if x.ndim != 2:
        raise WtalError(f"{path}: features must be a 2-D [T, D] array, got shape {list(x.shape)}")
    if x.shape[0] == 0:
        raise WtalError(f"{path}: empty video (0 snippets)")
    if dim is not None and x.shape[1] != dim:
        raise WtalError(f"{path}: feature dimension {x.shape[1]} does not match the expected {dim}")
    if not np.issubdtype(x.dtype, np.floating):
        raise WtalError(f"{path}: features must be floating point, got {x.dtype}")
    step = max(1, (1 << 24) // max(1, x.shape[1] * x.dtype.itemsize))  # ~16 MB at a time
    if not all(np.isfinite(x[i : i + step]).all() for i in range(0, len(x), step)):
        raise WtalError(f"{path}: features contain NaN or infinite values")
    return x if mmap else x.astype(np.float32, copy=False)


class Dataset:
    """A dataset folder: annotations plus feature streams."""

    def __init__(self, root):
        from wtalkit.data.annotations import load_annotations

        self.root = Path(root)
        if not self.root.is_dir():
            raise WtalError(f"dataset folder not found: {self.root}")
        self.annotations = load_annotations(self.root / "annotations.json")
        self._streams: dict = {}
        #: (subset, stream) -> names of the videos :meth:`videos` left out for lack of a feature file,
        #: so that callers can warn about them.
        self.skipped: dict = {}

    @property
    def classes(self) -> list:
        return self.annotations.classes

    def stream(self, name: str) -> FeatureStream:
        if name not in self._streams:
            folder = self.root / "features" / name
            if not folder.is_dir():
                raise WtalError(f"dataset {self.root} has no '{name}' feature stream (expected {folder})")
            self._streams[name] = FeatureStream(folder)
        return self._streams[name]

    def missing(self, subset: str | None, stream: str) -> list:
        """Names of the videos of ``subset`` that have no feature file in ``stream`` (what :meth:`videos`
        recorded when it ran for them; looked up otherwise)."""
        if (subset, stream) not in self.skipped:
            s = self.stream(stream)
            self.skipped[(subset, stream)] = [v.name for v in self.annotations.subset(subset) if not s.has(v.name)]
        return self.skipped[(subset, stream)]

    def videos(self, subset: str | None, stream: str | None = None) -> list:
        """Videos of a subset; with ``stream``, only those whose features exist (error if none).

        The videos left out for lack of a feature file are recorded in
        ``self.skipped[(subset, stream)]`` (see also :meth:`missing`).
        """
        vids = self.annotations.subset(subset)
        if stream is not None:
            s = self.stream(stream)
            self.skipped[(subset, stream)] = [v.name for v in vids if not s.has(v.name)]
            vids = [v for v in vids if s.has(v.name)]
        if not vids:
            what = f" with '{stream}' features" if stream else ""
            raise WtalError(f"dataset {self.root} has no videos in subset '{subset}'{what}")
        return vids
