"""Sources of frame embeddings for the online detector: a video file or a CLIP feature file.

Both yield chunks ``(times [n], embeddings [n, D])`` in stream order, with
``times`` in seconds. A video is sampled at ``fps`` and encoded by the same
CLIP image encoder as ``wtalkit extract``; a feature file (``VIDEO.npy`` of
CLIP image embeddings, e.g. a ``features/vlp`` stream) is read with the time
grid of the ``meta.json`` beside it (frame ``k`` is at
``SnippetGrid.to_seconds(k)``) or, without one, of ``--feature-fps``.
A model that was trained at one frame rate (OV-OAD) gets the stream on its own
grid (:meth:`EmbeddingSource.on_grid`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wtalkit.errors import WtalError
from wtalkit.timeaxis import SnippetGrid, regrid_indices

FEATURE_SUFFIXES = (".npy",)


def is_feature_file(path) -> bool:
    return Path(path).suffix.lower() in FEATURE_SUFFIXES


@dataclass
class EmbeddingSource:
    """One stream of frame embeddings.

    ``grid`` is its time axis (one frame per snippet of a sampled video, the
    feature file's snippet grid); ``dim`` is the embedding size.
    """

    name: str
    kind: str  # "video" | "features"
    grid: SnippetGrid
    dim: int
    _read: Callable[[int], Iterator] = field(repr=False)  # batch -> (times, payload) chunks
    _embed: Callable = field(repr=False, default=lambda x: x)  # payload -> embeddings [n, D]
    _regrid: Callable = field(repr=False, default=None)  # SnippetGrid -> the same stream on that grid

    @property
    def frame_duration(self) -> float:
        """Seconds each frame owns."""
        return self.grid.seconds_per_snippet

    def on_grid(self, grid: SnippetGrid) -> EmbeddingSource:
        """The same stream on ``grid``: a video is sampled at its rate, features are resampled by time."""
        return self if grid == self.grid else self._regrid(grid)

    def read(self, batch: int) -> Iterator[tuple[np.ndarray, object]]:
        """Raw chunks ``(times [n], payload)``, ``1 <= n <= batch``: decoded frames, or feature rows."""
        return self._read(max(1, int(batch)))

    def embed(self, payload) -> np.ndarray:
        """Embeddings ``float32 [n, D]`` of a raw chunk (the CLIP image encoder for video frames)."""
        return np.asarray(self._embed(payload), dtype=np.float32)

    def chunks(self, batch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(times [n], embeddings float32 [n, D])`` in stream order."""
        for times, payload in self.read(batch):
            yield times, self.embed(payload)


def feature_grid(path, feature_fps: float | None = None) -> SnippetGrid:
    """The time grid of a feature file: its stream's ``meta.json`` or ``--feature-fps``."""
    from wtalkit.data.annotations import read_json
    from wtalkit.data.features import StreamMeta

    meta_path = Path(path).parent / "meta.json"
    if meta_path.exists():
        grid = StreamMeta.from_dict(read_json(meta_path), str(meta_path)).grid
        if feature_fps is not None and abs(1.0 / grid.seconds_per_snippet - feature_fps) > 1e-6 * feature_fps:
            raise WtalError(
                f"--feature-fps {feature_fps:g} disagrees with {meta_path} "
                f"({1.0 / grid.seconds_per_snippet:g} snippets per second)"
            )
        return grid
    if feature_fps is None:
        raise WtalError(f"{path}: no meta.json beside the feature file; give its rate with --feature-fps")
    if not (feature_fps > 0):
        raise WtalError(f"--feature-fps must be positive, got {feature_fps}")
    return SnippetGrid(fps=float(feature_fps), length=1, stride=1)


def feature_source(
    path, feature_fps: float | None = None, name: str | None = None, expected_dim: int | None = None
) -> EmbeddingSource:
    """A feature file as a stream; its dimension must be ``expected_dim`` (the CLIP embedding size)."""
    from wtalkit.data.features import StreamMeta, load_feature_file

    path = Path(path)
    if not path.is_file():
        raise WtalError(f"feature file not found: {path}")
    grid = feature_grid(path, feature_fps)
    meta_path = path.parent / "meta.json"
    meta_dim = None
    if meta_path.exists():
        from wtalkit.data.annotations import read_json

        meta_dim = StreamMeta.from_dict(read_json(meta_path), str(meta_path)).dim
    feats = load_feature_file(path, meta_dim)
    if expected_dim is not None and feats.shape[1] != expected_dim:
        raise WtalError(
            f"{path}: feature dimension {feats.shape[1]} does not match the CLIP model's "
            f"embedding dimension {expected_dim}"
        )
    return _feature_stream(name or path.stem, feats, grid)


def _feature_stream(name: str, feats: np.ndarray, grid: SnippetGrid) -> EmbeddingSource:
    times = np.asarray(grid.to_seconds(np.arange(len(feats))), dtype=np.float64)

    def chunks(batch):
        for i in range(0, len(feats), batch):
            yield times[i : i + batch], feats[i : i + batch]

    def regrid(dst: SnippetGrid) -> EmbeddingSource:
        return _feature_stream(name, feats[regrid_indices(grid, dst, len(feats))], dst)

    return EmbeddingSource(name, "features", grid, feats.shape[1], chunks, _regrid=regrid)


def video_source(path, encoder, fps: float = 4.0, name: str | None = None) -> EmbeddingSource:
    """A video sampled at ``fps`` and encoded frame by frame by ``encoder`` (a ``ClipImageEncoder``)."""
    from wtalkit.extract.video import iter_frames

    path = Path(path)
    if not path.is_file():
        raise WtalError(f"video not found: {path}")
    if not (fps > 0):
        raise WtalError(f"--fps must be positive, got {fps}")

    def read(batch):
        for times, frames in iter_frames(path, fps, batch=batch):
            if len(frames):
                yield np.asarray(times, dtype=np.float64), frames

    return EmbeddingSource(
        name or path.stem,
        "video",
        SnippetGrid(float(fps), 1, 1),
        int(encoder.dim),
        read,
        encoder.encode,
        _regrid=lambda grid: video_source(path, encoder, grid.fps / grid.stride, name),
    )
