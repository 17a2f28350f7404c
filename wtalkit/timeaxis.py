"""Snippet index <-> seconds: the one conversion used everywhere.

A feature stream is sampled on a regular grid of video frames at ``fps``
(the stream's sampling rate, not necessarily the file's native rate):
snippet ``k`` is computed from frames ``[k*stride, k*stride + length)`` and
*owns* the time span ``[k*stride/fps, (k+1)*stride/fps)``. With the usual
``length == stride`` (16/16 at 25 fps for THUMOS14 I3D) the spans tile the
video exactly; with overlapping snippets (stride < length) each snippet still
owns one stride of time, so a run of snippets ``a..b`` maps to
``[a*stride/fps, (b+1)*stride/fps)`` whatever the overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SnippetGrid:
    """The sampling grid of a feature stream (from its ``meta.json``)."""

    fps: float = 25.0
    length: int = 16
    stride: int = 16

    def __post_init__(self):
        if not (self.fps > 0):
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.length < 1 or self.stride < 1:
            raise ValueError(f"snippet length and stride must be >= 1, got {self.length}/{self.stride}")

    @property
    def seconds_per_snippet(self) -> float:
        """Time owned by one snippet (its stride) in seconds."""
        return self.stride / self.fps

    def to_seconds(self, k):
        """Start time in seconds of snippet ``k`` (array-like or scalar).

        ``k`` may be fractional: ``to_seconds(b + 1)`` is the end of snippet ``b``.
        """
        return np.asarray(k, dtype=np.float64) * self.stride / self.fps

    @property
    def window_seconds(self) -> float:
        """Seconds spanned by the frames one snippet is computed from (its length)."""
        return self.length / self.fps

    def span(self, k):
        """``(start, end)`` seconds owned by snippet ``k``."""
        start = self.to_seconds(k)
        return start, start + self.seconds_per_snippet

    def centres(self, n: int):
        """Centre times in seconds of snippets ``0..n-1``: the time that places a snippet inside a segment."""
        return self.to_seconds(np.arange(n) + 0.5)

    def to_snippet(self, seconds):
        """Fractional snippet index of a time in seconds (inverse of :meth:`to_seconds`)."""
        return np.asarray(seconds, dtype=np.float64) * self.fps / self.stride

    def num_snippets(self, num_frames: int, partial: bool = True) -> int:
        """Snippets in a video of ``num_frames`` grid frames.

        With ``partial`` (what ``wtalkit extract`` computes), every stride that holds a frame starts a
        snippet, the trailing one padded with the last frame: ``ceil(num_frames / stride)``. Without,
        only whole snippets count (most public feature releases drop the partial one).
        """
        n = max(0, int(num_frames))
        if partial:
            return -(-n // self.stride)
        return 0 if n < self.length else (n - self.length) // self.stride + 1

    def frame_indices(self, k, n: int = 1):
        """Grid-frame indices of ``n`` evenly spaced frames inside snippet ``k``.

        ``n == 1`` gives the centre frame (rounded down).
        """
        k = np.asarray(k, dtype=np.int64)
        if n == 1:
            offs = np.array([(self.length - 1) // 2])
        else:
            offs = np.round(np.linspace(0, self.length - 1, n)).astype(np.int64)
        return k[..., None] * self.stride + offs


def inside(times, spans) -> np.ndarray:
    """Which ``times`` (seconds) lie in one of the closed ``(start, end)`` spans: the one membership rule
    (ground truth on the snippet grid, OV-OAD frame labels, ignored spans of the OAD evaluation)."""
    times = np.asarray(times, dtype=np.float64)
    mask = np.zeros(times.shape, dtype=bool)
    for s, e in spans:
        mask |= (times >= s) & (times <= e)
    return mask


def segment_labels(times, segments, classes: list) -> np.ndarray:
    """Multi-hot ``bool [N, C]``: time ``n`` has class ``c`` when it lies :func:`inside` a segment of ``c``.

    ``segments``: ``(start, end, label)`` triples; a label not in ``classes`` is a ``KeyError``.
    """
    index = {c: i for i, c in enumerate(classes)}
    times = np.asarray(times, dtype=np.float64)
    out = np.zeros((len(times), len(classes)), dtype=bool)
    for s, e, label in segments:
        out[:, index[label]] |= inside(times, [(s, e)])
    return out


def segment_from_run(grid: SnippetGrid, first: int, last: int) -> tuple[float, float]:
    """Seconds covered by the inclusive run of snippets ``first..last``."""
    return float(grid.to_seconds(first)), float(grid.to_seconds(last + 1))


def resample_indices(src: SnippetGrid, dst: SnippetGrid, n_dst: int, n_src: int) -> np.ndarray:
    """For each of ``n_dst`` snippets on ``dst``, the ``src`` snippet whose span holds its centre time.

    Used to align two feature streams sampled on different grids (nearest by time, clipped to range).
    """
    # 1e-9: a centre that lands on a span boundary up to float rounding belongs to the later span
    idx = np.floor(src.to_snippet(dst.centres(n_dst)) + 1e-9).astype(np.int64)
    return np.clip(idx, 0, max(n_src - 1, 0))


def regrid_indices(src: SnippetGrid, dst: SnippetGrid, n_src: int) -> np.ndarray:
    """A stream of ``n_src`` snippets on ``src`` put on grid ``dst``: for every ``dst`` snippet inside the
    stream's duration (at least one), the ``src`` snippet that owns its centre time (nearest by time)."""
    n_dst = max(1, int(np.floor(float(dst.to_snippet(src.to_seconds(n_src))) + 1e-6)))
    return resample_indices(src, dst, n_dst, n_src)
