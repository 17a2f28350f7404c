"""Frame scores -> temporal proposals.

For each kept class and each threshold, connected runs of snippets whose
score is >= the threshold become proposals; a proposal's span in seconds comes
from :func:`wtalkit.timeaxis.SnippetGrid.to_seconds` and its score is the
maximum frame score inside the run.
"""

from __future__ import annotations

import numpy as np

from wtalkit.timeaxis import SnippetGrid


def runs_above(scores: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive ``(first, last)`` snippet indices of runs with ``scores >= threshold``; ``scores [T]``."""
    on = np.concatenate([[False], np.asarray(scores) >= threshold, [False]])
    edges = np.flatnonzero(on[1:] != on[:-1])
    return edges[0::2], edges[1::2] - 1


def run_max(scores: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Maximum of ``scores[first[i]:last[i] + 1]`` for every run, in one ``reduceat``."""
    if len(first) == 0:
        return np.zeros(0, dtype=np.float64)
    padded = np.append(np.asarray(scores, dtype=np.float64), -np.inf)  # so last + 1 == T is a valid index
    bounds = np.stack([first, last + 1], axis=1).ravel()
    return np.maximum.reduceat(padded, bounds)[0::2]


def proposals_from_scores(probs: np.ndarray, class_ids, thresholds, grid: SnippetGrid) -> np.ndarray:
    """Proposals for the classes ``class_ids`` from frame probabilities ``probs [T, C]``.

    Returns a float array ``[N, 4]`` of ``(class_id, start_s, end_s, score)``.
    A run found again at another threshold (same class, same snippets) is kept once.
    """
    parts = []
    for c in class_ids:
        col = probs[:, c]
        runs = [runs_above(col, thr) for thr in thresholds]
        first = np.concatenate([r[0] for r in runs])
        last = np.concatenate([r[1] for r in runs])
        if len(first) == 0:
            continue
        uniq = np.unique(np.stack([first, last], axis=1), axis=0)
        first, last = uniq[:, 0], uniq[:, 1]
        parts.append(
            np.stack(
                [
                    np.full(len(first), c, dtype=np.float64),
                    grid.to_seconds(first),
                    grid.to_seconds(last + 1),
                    run_max(col, first, last),
                ],
                axis=1,
            )
        )
    return np.concatenate(parts) if parts else np.zeros((0, 4), dtype=np.float64)
