"""Progress hooks for dataset extraction, and their Rich rendering on stderr.

Units: a video's progress is counted in grid frames (the frames of the
stream's snippet grid, averaged over the streams), so a long video moves its
bar and its ETA while it is being extracted, not only when it is done.
"""

from __future__ import annotations

import time


class ExtractProgress:
    """Callbacks :func:`~wtalkit.extract.dataset.extract_dataset` makes; the base class ignores them.

    For each video extracted: ``video_start``, ``video_length`` (once it is
    probed), ``video_advance`` as its frames are processed, ``video_end``. On
    Ray these come from the workers, a little later than they happen; a video
    may end without the others if it failed early or its reports were late.
    """

    def start(self, total_videos: int, to_extract: int) -> None:
        """Before any work: all videos given, and how many of them need extracting."""

    def video_start(self, name: str) -> None:
        """A video begins extracting."""

    def video_length(self, name: str, frames: float) -> None:
        """Video ``name`` has ``frames`` grid frames in all (the total of its ``video_advance`` calls)."""

    def video_advance(self, name: str, frames: float) -> None:
        """``frames`` more grid frames of video ``name`` were processed (calls :meth:`advance`)."""
        self.advance(frames)

    def advance(self, frames: float) -> None:
        """``frames`` more video frames (on the stream grid) were processed, whichever video they belong to."""

    def video_end(self, result) -> None:
        """A video is finished (its :class:`~wtalkit.extract.dataset.VideoResult`: done, skipped or failed)."""

    def close(self) -> None:
        """All done (also called on interruption)."""


class RichExtractProgress(ExtractProgress):
    """Videos done / total with an ETA on the first line, then a line per video in flight (frames, ETA).

    The videos line counts the finished part of the videos in flight too
    (frames done / frames in the video), so its ETA moves inside a long
    video. At most ``max_rows`` videos in flight get their own line (on a
    cluster many run at once); the others still count on the videos line.
    """

    def __init__(self, console=None, max_rows: int = 8):
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.max_rows = max_rows
        self._progress = None
        self._task = None
        self._frames = 0.0
        self._t0 = None
        self._videos: dict = {}  # name -> [row task id or None, frames in the video or None, share done]
        self._ended = 0  # videos extracted or failed

    def start(self, total_videos, to_extract):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        skipped = total_videos - to_extract
        if skipped:
            self.console.print(f"{skipped} of {total_videos} videos already extracted (use --overwrite to redo them)")
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("[bold]extract", total=max(1, to_extract), unit="videos", rate="")
        self._t0 = time.perf_counter()

    def _entry(self, name):
        if name not in self._videos:
            self._videos[name] = [None, None, 0.0]
        return self._videos[name]

    def video_start(self, name):
        if self._progress is None:
            return
        entry = self._entry(name)
        if entry[0] is None and sum(e[0] is not None for e in self._videos.values()) < self.max_rows:
            entry[0] = self._progress.add_task(f"  {name}", total=None, unit="frames", rate="")

    def video_length(self, name, frames):
        if self._progress is None:
            return
        entry = self._entry(name)
        entry[1] = max(1.0, float(frames))
        if entry[0] is not None:
            self._progress.update(entry[0], total=entry[1])

    def video_advance(self, name, frames):
        self.advance(frames)
        if self._progress is None:
            return
        entry = self._entry(name)
        if entry[0] is not None:
            self._progress.advance(entry[0], frames)
        if entry[1]:
            entry[2] = min(0.99, entry[2] + frames / entry[1])  # never a whole video before it ends
            self._show_videos()

    def advance(self, frames):
        self._frames += frames
        if self._progress is not None:
            dt = max(1e-6, time.perf_counter() - self._t0)
            self._progress.update(self._task, rate=f"{self._frames / dt:7.1f} frames/s")

    def video_end(self, result):
        if self._progress is None:
            return
        row, _, _ = self._videos.pop(result.name, (None, None, 0.0))
        if row is not None:
            self._progress.remove_task(row)
        if result.status != "skipped":
            self._ended += 1
        self._show_videos()

    def _show_videos(self):
        """Videos ended plus the finished shares of those in flight (set, not summed: whole numbers stay whole)."""
        self._progress.update(self._task, completed=self._ended + sum(e[2] for e in self._videos.values()))

    def close(self):
        if self._progress is not None:
            for row, _, _ in self._videos.values():
                if row is not None:
                    self._progress.remove_task(row)
            self._videos.clear()
            self._progress.stop()
            self._progress = None
