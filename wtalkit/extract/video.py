"""Decoding videos onto a time-based frame grid (decord).

Feature streams are sampled on a regular grid at the stream's ``fps`` (25 by
default), whatever the file's native frame rate: grid frame ``i`` is at time
``i / fps`` and shows the native frame nearest that time, i.e. native index
``round(i / fps * native_fps)``. Resampling by *time* keeps snippet ``k`` on
the same seconds ``[k*stride/fps, (k+1)*stride/fps)`` for a 30 fps file as for
a 25 fps one (resampling by frame index would stretch the time axis).

A video has ``grid_length(info, fps)`` grid frames: those whose time falls
inside the video, ``i / fps < duration``.

Every decoding failure (not a video, empty, corrupt, truncated, zero frames)
becomes a one-line :class:`~wtalkit.errors.WtalError`.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wtalkit.errors import WtalError
from wtalkit.timeaxis import SnippetGrid

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts")


@dataclass(frozen=True)
class VideoInfo:
    fps: float  # native (average) frame rate
    num_frames: int  # native frames
    duration: float  # seconds = num_frames / fps
    width: int
    height: int


def _decord():
    import decord

    # decord/ffmpeg print their own errors on stderr; ours are one line, raised as WtalError.
    decord.logging.set_level(decord.logging.QUIET)
    return decord


_DECORD_PREFIX = re.compile(r"\[\d\d:\d\d:\d\d\]\s*\S+?\.(?:cc|h|cpp):\d+:\s*")
_CHECK_FAILED = re.compile(r"Check failed: .*?\(-?\d+ vs\. -?\d+\)\s*")


def _one_line(e: BaseException) -> str:
    """decord's messages carry C++ source locations and check expressions: keep the human part, one line."""
    msg = " ".join(str(e).split())
    msg = _CHECK_FAILED.sub("", _DECORD_PREFIX.sub("", msg)).strip()
    return (msg or type(e).__name__)[:200]


def _open(path, width: int = -1, height: int = -1, num_threads: int = 1):
    decord = _decord()
    path = Path(path)
    if not path.exists():
        raise WtalError(f"video not found: {path}")
    if not path.is_file():
        raise WtalError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise WtalError(f"{path}: empty file")
    try:
        with _quiet_stderr():
            vr = decord.VideoReader(str(path), width=width, height=height, num_threads=num_threads)
    except Exception as e:  # decord raises RuntimeError / DECORDError for anything unreadable
        msg = _one_line(e)
        if msg.startswith("Error reading"):  # decord's only words for "ffmpeg cannot open it"
            msg = "not a video file, or corrupt/truncated"
        raise WtalError(f"{path}: cannot open as a video ({msg})") from None
    return vr


_stderr_lock = threading.Lock()


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 while decord opens a file.

    decord's C++ logger writes "ERROR opening: ..." straight to the process's
    stderr whatever its log level; the same failure reaches the user as our
    one-line error instead.
    """
    with _stderr_lock:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no usable fd 2 (embedded interpreters)
            yield
            return
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def probe(path) -> VideoInfo:
    """Frame rate, frame count, duration and size of a video (one-line error if unreadable)."""
    vr = _open(path)
    n = len(vr)
    fps = float(vr.get_avg_fps())
    if n <= 0:
        raise WtalError(f"{path}: video has zero frames")
    if not (math.isfinite(fps) and fps > 0):
        raise WtalError(f"{path}: video has no valid frame rate")
    try:
        h, w = vr[0].shape[:2]
    except Exception as e:
        raise WtalError(f"{path}: cannot decode video ({_one_line(e)})") from None
    return VideoInfo(fps=fps, num_frames=int(n), duration=n / fps, width=int(w), height=int(h))


def grid_length(info: VideoInfo, fps: float) -> int:
    """Number of grid frames at ``fps`` inside the video (``i / fps < duration``)."""
    return max(0, math.ceil(float(SnippetGrid(fps, 1, 1).to_snippet(info.duration)) - 1e-6))


def native_indices(grid_idx, fps: float, info: VideoInfo) -> np.ndarray:
    """Native frame nearest to the time of each grid frame (resampling by time)."""
    t = SnippetGrid(fps, 1, 1).to_seconds(grid_idx)
    idx = np.floor(t * info.fps + 0.5).astype(np.int64)
    return np.clip(idx, 0, info.num_frames - 1)


def iter_frames(
    path,
    fps: float,
    batch: int = 32,
    start: float = 0.0,
    indices: Sequence[int] | None = None,
    size: tuple[int, int] | None = None,
    num_threads: int = 1,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(times_s [n], frames uint8 [n, H, W, 3])`` batches on the time grid at ``fps``.

    See :func:`iter_grid_frames` for the arguments; this variant gives times in seconds.
    """
    for grid, frames in iter_grid_frames(path, fps, batch, start, indices, size, num_threads):
        yield SnippetGrid(fps, 1, 1).to_seconds(grid), frames


def iter_grid_frames(
    path,
    fps: float,
    batch: int = 32,
    start: float = 0.0,
    indices: Sequence[int] | None = None,
    size: tuple[int, int] | None = None,
    num_threads: int = 1,
    info: VideoInfo | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(grid_indices int64 [n], frames uint8 [n, H, W, 3])`` batches on the time grid at ``fps``.

    Grid frame ``i`` is at ``i / fps`` s and is the native frame nearest that
    time. ``start`` skips grid frames before that time. ``indices`` (sorted
    grid-frame indices) decodes only those frames, e.g. the centre frame of
    each snippet; ``size=(height, width)`` lets the decoder resize (cheaper
    than converting full-resolution frames that are shrunk right after).
    """
    if not (fps > 0):
        raise WtalError(f"frame rate must be positive, got {fps}")
    if batch < 1:
        raise WtalError(f"batch must be >= 1, got {batch}")
    info = probe(path) if info is None else info
    n_grid = grid_length(info, fps)
    if indices is None:
        grid = np.arange(max(0, math.ceil(start * fps - 1e-6)), n_grid, dtype=np.int64)
    else:
        grid = np.asarray(indices, dtype=np.int64)
        if grid.size and (np.any(np.diff(grid) < 0) or grid[0] < 0):
            raise ValueError("indices must be sorted and non-negative")
        grid = grid[(grid < n_grid) & (grid >= start * fps - 1e-6)]
    if grid.size == 0:
        return
    h, w = size if size is not None else (-1, -1)
    vr = _open(path, width=w, height=h, num_threads=num_threads)
    native = native_indices(grid, fps, info)
    for i in range(0, grid.size, batch):
        g = grid[i : i + batch]
        nat = native[i : i + batch]
        # Several grid frames can map to one native frame (upsampling): decode each once.
        uniq, inverse = np.unique(nat, return_inverse=True)
        try:
            frames = vr.get_batch(uniq.tolist()).asnumpy()
        except Exception as e:
            raise WtalError(
                f"{path}: cannot decode frame {int(uniq[0])}-{int(uniq[-1])} of {info.num_frames} ({_one_line(e)})"
            ) from None
        if len(uniq) != len(g):
            frames = frames[inverse]
        yield g, frames
