"""Gaussian soft-NMS for 1-D segments, vectorized across classes (pure numpy).

Bodla et al. 2017: repeatedly take the highest-scoring remaining segment and
decay every other remaining segment of the same class by
``exp(-tIoU^2 / sigma)``. All classes advance together: each iteration picks
one segment per class row of a padded ``[K, N]`` score matrix, so the Python
loop runs ``max_n`` times whatever the number of classes.

Ties are broken deterministically: among equal scores the proposal that came first in the input
(per class) is taken first. :func:`hard_nms` is the classic greedy NMS (UM's post-processing).
"""

from __future__ import annotations

import numpy as np


def segment_iou(seg: np.ndarray, segs: np.ndarray) -> np.ndarray:
    """tIoU between ``seg [..., 2]`` and ``segs [..., N, 2]`` (broadcast over leading dims)."""
    inter = np.clip(np.minimum(seg[..., None, 1], segs[..., 1]) - np.maximum(seg[..., None, 0], segs[..., 0]), 0, None)
    union = (seg[..., None, 1] - seg[..., None, 0]) + (segs[..., 1] - segs[..., 0]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def soft_nms(
    proposals: np.ndarray, sigma: float = 0.5, max_keep: int | None = None, min_score: float = 0.0
) -> np.ndarray:
    """Soft-NMS per class on ``[N, 4]`` rows ``(class, start, end, score)``.

    Returns the kept rows with decayed scores, sorted by descending score,
    at most ``max_keep`` of them (all when None), dropping scores < ``min_score``.
    """
    proposals = np.asarray(proposals, dtype=np.float64).reshape(-1, 4)
    if len(proposals) == 0:
        return proposals.copy()
    classes, inverse, counts = np.unique(proposals[:, 0], return_inverse=True, return_counts=True)
    K, N = len(classes), int(counts.max())
    # scatter rows into a padded [K, N] layout
    order = np.argsort(inverse, kind="stable")
    slot = np.arange(len(proposals)) - np.repeat(np.cumsum(counts) - counts, counts)
    segs = np.zeros((K, N, 2))
    score = np.full((K, N), -np.inf)
    segs[inverse[order], slot] = proposals[order, 1:3]
    score[inverse[order], slot] = proposals[order, 3]

    alive = np.isfinite(score)
    out_seg = np.zeros((K, N, 2))
    out_score = np.full((K, N), -np.inf)
    rows = np.arange(K)
    for step in range(N):
        cur = np.where(alive, score, -np.inf)
        best = cur.argmax(1)  # [K]
        has = alive[rows, best]
        out_seg[:, step] = segs[rows, best]
        out_score[:, step] = np.where(has, cur[rows, best], -np.inf)
        alive[rows, best] = False
        iou = segment_iou(segs[rows, best], segs)  # [K, N]
        decay = np.exp(-(iou**2) / sigma)
        score = np.where(alive & has[:, None], score * decay, score)
    cls = np.repeat(classes[:, None], N, axis=1)
    keep = np.isfinite(out_score) & (out_score >= min_score)
    res = np.concatenate([cls[keep][:, None], out_seg[keep], out_score[keep][:, None]], axis=1)
    res = res[np.argsort(-res[:, 3], kind="stable")]
    return res if max_keep is None else res[:max_keep]


def hard_nms(
    proposals: np.ndarray, iou: float = 0.6, max_keep: int | None = None, min_score: float = 0.0
) -> np.ndarray:
    """Greedy NMS per class on ``[N, 4]`` rows ``(class, start, end, score)``.

    The best remaining proposal is kept and every other one of its class overlapping it by tIoU
    ``> iou`` is dropped. Same ordering, tie-breaking and ``max_keep`` / ``min_score`` as
    :func:`soft_nms` (scores are not changed).
    """
    proposals = np.asarray(proposals, dtype=np.float64).reshape(-1, 4)
    kept = []
    for c in np.unique(proposals[:, 0]):
        rows = proposals[proposals[:, 0] == c]
        rows = rows[np.argsort(-rows[:, 3], kind="stable")]
        alive = np.ones(len(rows), dtype=bool)
        for i in range(len(rows)):
            if alive[i]:
                kept.append(rows[i])
                alive[i + 1 :] &= segment_iou(rows[i, 1:3], rows[i + 1 :, 1:3]) <= iou
    res = np.array(kept, dtype=np.float64).reshape(-1, 4)
    res = res[res[:, 3] >= min_score]
    res = res[np.argsort(-res[:, 3], kind="stable")]
    return res if max_keep is None else res[:max_keep]
