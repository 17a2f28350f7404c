"""Action segments closed online from per-frame scores (hysteresis thresholding).

Per class, a segment opens at the first frame whose probability reaches
``start_threshold`` and stays open until a frame falls below
``stop_threshold`` (lower than the start threshold, so a score hovering around
one value does not make the segment flicker). It is emitted as soon as it
closes -- nothing waits for the end of the video -- and segments still open
when the stream ends are closed there.

Frame ``i`` owns ``[t_i, t_i + frame_duration)``: a segment over frames
``a..b`` is ``[t_a, t_b + frame_duration)``, i.e. it ends at the time of the
first frame that closed it. Its score is the mean class probability over its
frames. Segments shorter than ``min_length`` seconds are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wtalkit.errors import WtalError


@dataclass(frozen=True)
class Segment:
    label: str
    start: float
    end: float
    score: float

    def to_record(self, video: str) -> dict:
        return {
            "video": video,
            "label": self.label,
            "start": round(self.start, 6),
            "end": round(self.end, 6),
            "score": round(self.score, 6),
        }


class HysteresisSegmenter:
    """Online per-class segmenter; feed it frames in order with :meth:`push`, then :meth:`flush`."""

    def __init__(
        self,
        classes: list,
        frame_duration: float,
        start_threshold: float = 0.5,
        stop_threshold: float = 0.3,
        min_length: float = 0.0,
    ):
        if not (0.0 <= stop_threshold <= start_threshold <= 1.0):
            raise WtalError(
                f"need 0 <= --stop-threshold <= --start-threshold <= 1, got {stop_threshold} and {start_threshold}"
            )
        if not (frame_duration > 0):
            raise WtalError(f"frame duration must be positive, got {frame_duration}")
        if min_length < 0:
            raise WtalError(f"--min-length must be >= 0, got {min_length}")
        self.classes = list(classes)
        self.frame_duration = float(frame_duration)
        self.start_threshold = float(start_threshold)
        self.stop_threshold = float(stop_threshold)
        self.min_length = float(min_length)
        self.reset()

    def reset(self) -> None:
        k = len(self.classes)
        self._open = np.zeros(k, bool)
        self._start = np.zeros(k)
        self._sum = np.zeros(k)
        self._count = np.zeros(k, np.int64)
        self._last_t = None

    @property
    def open_labels(self) -> list:
        return [c for c, o in zip(self.classes, self._open) if o]

    def _close(self, which: np.ndarray, end: float) -> list:
        out = []
        for k in np.flatnonzero(which):
            seg = Segment(self.classes[k], float(self._start[k]), float(end), float(self._sum[k] / self._count[k]))
            if seg.end - seg.start >= self.min_length - 1e-9:
                out.append(seg)
        self._open[which] = False
        self._sum[which] = 0.0
        self._count[which] = 0
        return out

    def push(self, t: float, probs: np.ndarray) -> list:
        """Add frame at time ``t`` with class probabilities ``[K]``; returns the segments it closes."""
        probs = np.asarray(probs, dtype=np.float64)
        if probs.shape != (len(self.classes),):
            raise WtalError(f"expected {len(self.classes)} class scores, got shape {list(probs.shape)}")
        if self._last_t is not None and t <= self._last_t:
            raise WtalError(f"frame times must increase (got {t} after {self._last_t})")
        self._last_t = float(t)
        closed = self._close(self._open & (probs < self.stop_threshold), t)
        opening = ~self._open & (probs >= self.start_threshold)
        self._open |= opening
        self._start[opening] = t
        self._sum[self._open] += probs[self._open]
        self._count[self._open] += 1
        return closed

    def flush(self) -> list:
        """Close every open segment at the end of the last frame (end of stream)."""
        if self._last_t is None:
            return []
        return self._close(self._open.copy(), self._last_t + self.frame_duration)


def segments_from_scores(times, probs, classes, frame_duration, **kw) -> list:
    """All segments of a whole score sequence ``[T, K]`` (the online segmenter run to the end)."""
    seg = HysteresisSegmenter(classes, frame_duration, **kw)
    out = []
    for t, p in zip(times, probs):
        out += seg.push(float(t), p)
    return out + seg.flush()
