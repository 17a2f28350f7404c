"""Frame scores -> temporal proposals.

For each kept class and each threshold, connected runs of snippets whose
score is >= the threshold become proposals; a proposal's span in seconds comes
from :func:`wtalkit.timeaxis.SnippetGrid.to_seconds`. Its score is either

* ``max`` (the paper's reading, wtalkit's default): the maximum frame score inside the run, or
* ``oic``, the outer-inner contrast of AutoLoc (Shou et al., ECCV 2018) as W-TALC, CO2-Net and
  DELU score proposals: the mean score inside the run minus the mean score of an outer band of
  ``outer`` times its length on each side (cut at the video's ends; 0 when the band is empty),
  plus ``gamma`` times the class's video score. A band of ``outer * L`` snippets is truncated
  toward zero, as those implementations do.
"""

from __future__ import annotations

import numpy as np

from wtalkit.timeaxis import SnippetGrid


def runs_above(scores: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive ``(first, last)`` snippet indices of runs with ``scores >= threshold`` and ``scores > 0``
    (so a threshold of 0 keeps the positive scores, as UM's zeroing below the threshold does); ``scores [T]``."""
    scores = np.asarray(scores)
    on = np.concatenate([[False], (scores >= threshold) & (scores > 0), [False]])
    edges = np.flatnonzero(on[1:] != on[:-1])
    return edges[0::2], edges[1::2] - 1


def run_max(scores: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Maximum of ``scores[first[i]:last[i] + 1]`` for every run, in one ``reduceat``."""
    if len(first) == 0:
        return np.zeros(0, dtype=np.float64)
    padded = np.append(np.asarray(scores, dtype=np.float64), -np.inf)  # so last + 1 == T is a valid index
    bounds = np.stack([first, last + 1], axis=1).ravel()
    return np.maximum.reduceat(padded, bounds)[0::2]


def run_oic(
    scores: np.ndarray, first: np.ndarray, last: np.ndarray, video_score: float, outer: float = 0.25, gamma: float = 0.2
) -> np.ndarray:
    """Outer-inner contrast of every inclusive run ``first..last`` of ``scores [T]`` (see the module doc)."""
    if len(first) == 0:
        return np.zeros(0, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    cs = np.concatenate([[0.0], np.cumsum(s)])
    n = (last - first + 1).astype(np.float64)
    inner = (cs[last + 1] - cs[first]) / n
    lo = np.maximum(0, np.trunc(first - outer * n).astype(np.int64))
    hi = np.minimum(len(s) - 1, np.trunc(last + outer * n).astype(np.int64))
    count = (first - lo) + np.maximum(hi - last, 0)
    total = (cs[first] - cs[lo]) + np.where(hi > last, cs[np.maximum(hi, last) + 1] - cs[last + 1], 0.0)
    band = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    return inner - band + gamma * float(video_score)


def upsample_scores(x: np.ndarray, factor: int) -> np.ndarray:
    """``x [T, ...]`` linearly interpolated at the positions ``0, 1/factor, 2/factor, ...`` (``T * factor``
    of them; past the last snippet the last slope is extended), as UM refines its scores before thresholding."""
    x = np.asarray(x, dtype=np.float64)
    if factor == 1 or len(x) == 0:
        return x
    pos = np.arange(len(x) * factor) / factor
    lo = np.minimum(np.floor(pos).astype(np.int64), max(len(x) - 2, 0))
    hi = np.minimum(lo + 1, len(x) - 1)
    w = (pos - lo).reshape((-1,) + (1,) * (x.ndim - 1))
    return x[lo] * (1 - w) + x[hi] * w


def proposals_from_scores(
    probs: np.ndarray,
    class_ids,
    thresholds,
    grid: SnippetGrid,
    score_kind: str = "max",
    video_scores=None,
    outer: float = 0.25,
    gamma: float = 0.2,
    *,
    actionness: np.ndarray | None = None,
    act_thresholds=(),
    upsample: int = 1,
    oic_zero_below: bool = False,
) -> np.ndarray:
    """Proposals for the classes ``class_ids`` from frame scores ``probs [T, C]``.

    Runs are cut where a class's column is >= each of ``thresholds`` and, when ``actionness [T]`` is
    given, where the class-agnostic actionness is >= each of ``act_thresholds``; every run is scored on
    the class's column. ``upsample`` > 1 first interpolates both signals to that many points per
    snippet (runs then start and end between snippet boundaries). ``oic_zero_below``: a run cut at a
    class threshold is scored on the class's column with the values below that threshold set to 0
    (UM's post-processing), so the same run can score differently at different thresholds.

    Returns a float array ``[N, 4]`` of ``(class_id, start_s, end_s, score)``; ``score_kind`` is ``max``
    or ``oic`` (which needs ``video_scores [C]``). A run found again at another threshold (same class,
    same snippets) is kept once, with its highest score.
    """
    probs = upsample_scores(probs, upsample)
    act_runs = []
    if actionness is not None and len(act_thresholds):
        act = upsample_scores(actionness, upsample)
        act_runs = [runs_above(act, thr) for thr in act_thresholds]
    parts = []
    for c in class_ids:
        col = probs[:, c]
        # (first, last, the scores the runs are scored on): the class's column, or for oic_zero_below the
        # column with the values below the run's own threshold set to 0
        cuts = [
            (*runs_above(col, thr), np.where(col >= thr, col, 0.0) if oic_zero_below else col) for thr in thresholds
        ]
        cuts += [(first, last, col) for first, last in act_runs]
        rows = []
        for first, last, values in cuts:
            if len(first) == 0:
                continue
            score = (
                run_max(values, first, last)
                if score_kind == "max"
                else run_oic(values, first, last, video_scores[c], outer, gamma)
            )
            rows.append(np.stack([first, last, score], axis=1))
        if not rows:
            continue
        rows = np.concatenate(rows)
        # a run found again at another threshold is kept once, with its best score (stable: first wins ties)
        rows = rows[np.lexsort((-rows[:, 2], rows[:, 1], rows[:, 0]))]
        rows = rows[np.r_[True, np.any(np.diff(rows[:, :2], axis=0) != 0, axis=1)]]
        first, last = rows[:, 0].astype(np.int64), rows[:, 1].astype(np.int64)
        parts.append(
            np.stack(
                [
                    np.full(len(first), c, dtype=np.float64),
                    grid.to_seconds(first / upsample),
                    grid.to_seconds((last + 1) / upsample),
                    rows[:, 2],
                ],
                axis=1,
            )
        )
    return np.concatenate(parts) if parts else np.zeros((0, 4), dtype=np.float64)
