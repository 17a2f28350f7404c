"""Progress hooks for dataset extraction, and their Rich rendering on stderr."""

from __future__ import annotations

import time


class ExtractProgress:
    """Callbacks :func:`~wtalkit.extract.dataset.extract_dataset` makes; the base class ignores them."""

    def start(self, total_videos: int, to_extract: int) -> None:
        """Before any work: all videos given, and how many of them need extracting."""

    def video_start(self, name: str) -> None:
        """A video begins extracting."""

    def advance(self, frames: float) -> None:
        """``frames`` more video frames (on the stream grid) were processed."""

    def video_end(self, result) -> None:
        """A video is finished (its :class:`~wtalkit.extract.dataset.VideoResult`: done, skipped or failed)."""

    def close(self) -> None:
        """All done (also called on interruption)."""


class RichExtractProgress(ExtractProgress):
    """Videos done / total, frames per second, elapsed time and ETA, on a Rich console (stderr)."""

    def __init__(self, console=None):
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self._progress = None
        self._task = None
        self._frames = 0.0
        self._t0 = None

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
            TextColumn("[bold]extract"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("videos"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[current]}"),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("extract", total=max(1, to_extract), rate="", current="")
        self._t0 = time.perf_counter()

    def video_start(self, name):
        if self._progress is not None:
            self._progress.update(self._task, current=name)

    def advance(self, frames):
        self._frames += frames
        if self._progress is not None:
            dt = max(1e-6, time.perf_counter() - self._t0)
            self._progress.update(self._task, rate=f"{self._frames / dt:7.1f} frames/s")

    def video_end(self, result):
        if self._progress is not None and result.status != "skipped":
            self._progress.advance(self._task, 1)

    def close(self):
        if self._progress is not None:
            self._progress.update(self._task, current="")
            self._progress.stop()
            self._progress = None
