"""Temporal action detection mAP, identical to the ActivityNet official evaluation.

This reproduces ``Evaluation/eval_detection.py`` of activitynet/ActivityNet
(``ANETdetection`` + ``compute_average_precision_detection`` +
``interpolated_prec_rec``) result for result, including how it breaks ties, but
without pandas and without a Python loop over predictions:

* Ground truth is every annotated segment of the videos in ``subset``; mAP
  averages over the classes that have ground truth there (the official
  ``activity_index``). Predictions of a class without ground truth in the
  subset are ignored; a label that is not a class at all is an error.
* Within a class, predictions are ranked with ``scores.argsort()[::-1]`` on the
  class's predictions in file order -- the very call the official code makes,
  so equal scores come out in the same order (NumPy's default sort is not
  stable, so this matters).
* Greedy matching: in rank order, each prediction takes the unmatched ground
  truth segment of its video and class with the highest tIoU, provided that
  tIoU is >= the threshold (the official loop walks the GT of the video in
  ``tiou.argsort()[::-1]`` order, stops at the first one below the threshold
  and skips the already matched ones). Everything else is a false positive,
  including predictions on videos without ground truth of that class.
* AP is the VOC-2011 interpolated area under the whole precision/recall curve.

Why it is fast: matching only interacts inside one (video, class) group, and a
prediction's outcome only depends on the predictions ranked before it. The
candidate pairs (prediction, GT) with tIoU above the smallest threshold are
built for all groups and all thresholds at once, then resolved in a few
vectorized rounds: a prediction whose best free candidate is not wanted by any
earlier unresolved prediction is certainly matched to it (see
:func:`_greedy_match`). The per-prediction GT ranking uses the same
``argsort`` on the same row of tIoUs as the official code, batched over rows of
equal length (a 2-D ``argsort`` sorts each row exactly like the 1-D call).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np

from wtalkit.data.annotations import Annotations, read_json
from wtalkit.errors import WtalError

#: Vectorized matching rounds before the (rare) leftovers are finished by a plain loop.
MAX_VECTOR_ROUNDS = 12
#: THUMOS14 convention: tIoU 0.1:0.1:0.7 (``np.linspace(0.1, 0.7, 7)``, the same floats).
THUMOS_TIOUS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
#: ActivityNet convention: the official default ``np.linspace(0.5, 0.95, 10)``, bit for bit
#: (its 9th value is 0.8999999999999999, not 0.9; shown rounded).
ANET_TIOUS = tuple(float(t) for t in np.linspace(0.5, 0.95, 10))


@dataclass
class DetectionResult:
    """Per-threshold mAP and per-class AP (fractions in [0, 1])."""

    tiou: np.ndarray  # [n_tiou]
    mAP: np.ndarray  # [n_tiou]
    ap: np.ndarray  # [n_tiou, n_classes]
    classes: list  # the classes averaged over: those with ground truth in the subset
    n_gt: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # [n_classes] GT segments
    n_predictions: int = 0  # predictions evaluated (classes with ground truth)
    n_ignored: int = 0  # predictions of classes without ground truth in the subset
    n_outside: int = 0  # evaluated predictions on videos outside the subset (false positives)
    subset: str | None = None
    unknown_videos: list = field(default_factory=list)  # result video ids that are in no subset of the annotations

    @property
    def average(self) -> float:
        """Mean of mAP over the thresholds evaluated."""
        return float(np.mean(self.mAP))

    def to_json(self) -> dict:
        return {
            "tiou": [round(float(t), 10) for t in self.tiou],
            "mAP": [float(m) for m in self.mAP],
            "average": self.average,
        }


# --------------------------------------------------------------------------- input


def load_results(path) -> dict:
    """Read a results file ``{"results": {VIDEO: [{"label", "score", "segment"}]}}``.

    Returns the ``results`` mapping (video -> list of predictions), fully
    validated; any malformed entry is a one-line :class:`WtalError`.
    """
    results = _read_results_doc(path)
    _flatten_results(results, None, str(path))  # validation only
    return results


def _read_results_doc(path) -> dict:
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise WtalError(f"{path}: expected an object with a 'results' mapping (ActivityNet style)")
    return data["results"]


@dataclass
class _Predictions:
    videos: list  # result video names, in file order
    video_of: np.ndarray  # [N] index into ``videos``
    label: np.ndarray  # [N] class index into ``classes`` (-1 when classes is None)
    score: np.ndarray  # [N] float64
    segment: np.ndarray  # [N, 2] float64


def _bad_prediction(results: dict, where: str, classes) -> WtalError:
    """Slow path: find the first malformed prediction and describe it."""
    cset = set(classes) if classes is not None else None
    for video, preds in results.items():
        if not isinstance(preds, list):
            return WtalError(f"{where}: video '{video}': expected a list of predictions")
        for i, p in enumerate(preds):
            at = f"{where}: video '{video}', prediction {i}"
            if not isinstance(p, dict):
                return WtalError(f"{at}: expected an object with 'label', 'score' and 'segment'")
            for key in ("label", "score", "segment"):
                if key not in p:
                    return WtalError(f"{at}: missing '{key}'")
            label, score, seg = p["label"], p["score"], p["segment"]
            if not isinstance(label, str):
                return WtalError(f"{at}: 'label' must be a string")
            if cset is not None and label not in cset:
                return WtalError(f"{at}: label '{label}' is not a class of the annotations")
            if not _is_number(score) or not math.isfinite(score):
                return WtalError(f"{at}: 'score' must be a finite number")
            if (
                not isinstance(seg, (list, tuple))
                or len(seg) != 2
                or not all(_is_number(x) and math.isfinite(x) for x in seg)
            ):
                return WtalError(f"{at}: 'segment' must be [start, end] in seconds")
            if seg[1] < seg[0]:
                return WtalError(f"{at}: segment [{seg[0]}, {seg[1]}] ends before it starts")
    return WtalError(f"{where}: malformed predictions")


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _flatten_results(results, classes, where: str) -> _Predictions:
    """Validate the results mapping and turn it into flat arrays, in file order.

    The common case is a few list comprehensions plus array conversions; only
    when something is wrong does :func:`_bad_prediction` walk the entries one
    by one to name the first bad one.
    """
    if not isinstance(results, dict):
        raise WtalError(f"{where}: 'results' must map video names to lists of predictions")
    videos = [str(v) for v in results]
    counts, labels, scores, segs = [], [], [], []
    numbers = {int, float}
    try:
        for preds in results.values():
            if not isinstance(preds, list):
                raise TypeError
            counts.append(len(preds))
            labels += [p["label"] for p in preds]
            scores += [p["score"] for p in preds]
            segs += [p["segment"] for p in preds]
        # Type checks over whole columns (bools, strings, nested lists are rejected here).
        if not (
            set(map(type, scores)) <= numbers
            and set(map(len, segs)) <= {2}
            and set(map(type, chain.from_iterable(segs))) <= numbers
        ):
            raise TypeError
        score = np.array(scores, dtype=np.float64)
        seg = np.fromiter(chain.from_iterable(segs), np.float64, 2 * len(segs)).reshape(-1, 2)
        if not (np.isfinite(score).all() and np.isfinite(seg).all() and (seg[:, 1] >= seg[:, 0]).all()):
            raise TypeError
        if classes is not None:
            index = {c: i for i, c in enumerate(classes)}
            label = np.array([index[lbl] for lbl in labels], dtype=np.int64)
        else:
            if not set(map(type, labels)) <= {str}:
                raise TypeError
            label = np.full(len(labels), -1, np.int64)
    except (KeyError, TypeError, ValueError, IndexError, OverflowError):
        raise _bad_prediction(results, where, classes) from None
    video_of = np.repeat(np.arange(len(videos)), counts)
    return _Predictions(videos, video_of, label, score, seg)


# --------------------------------------------------------------------------- core


def segment_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Elementwise tIoU of paired segments ``[..., 2]``, bit-identical to the official ``segment_iou``.

    The operations are done in the official order so that equal tIoUs stay
    equal (ties decide which GT a prediction takes).
    """
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    return _pair_tiou(pred[..., 0], pred[..., 1], gt[..., 0], gt[..., 1])


def _pair_tiou(ps, pe, gs, ge):
    tt1 = np.maximum(ps, gs)
    tt2 = np.minimum(pe, ge)
    inter = np.maximum(tt2 - tt1, 0.0)  # == .clip(0): both give +0.0 for negatives
    union = (ge - gs) + (pe - ps) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def interpolated_ap(prec: np.ndarray, rec: np.ndarray) -> np.ndarray:
    """VOC-2011 interpolated AP along the last axis (official ``interpolated_prec_rec``)."""
    shape = prec.shape[:-1]
    mprec = np.concatenate([np.zeros(shape + (1,)), prec, np.zeros(shape + (1,))], axis=-1)
    mrec = np.concatenate([np.zeros(shape + (1,)), rec, np.ones(shape + (1,))], axis=-1)
    mprec = np.maximum.accumulate(mprec[..., ::-1], axis=-1)[..., ::-1]
    step = mrec[..., 1:] - mrec[..., :-1]
    return np.where(step != 0, step * mprec[..., 1:], 0.0).sum(axis=-1)


def _candidate_edges(pred_seg, pred_group, gt_seg, gt_start, gt_count, tmin):
    """Candidate (prediction, GT) pairs with their rank in the prediction's GT order.

    ``pred_*`` are in ranked (score-sorted) order. For each prediction the GT
    of its group are ordered by ``tiou.argsort()[::-1]`` exactly as the
    official loop does; only pairs that can match at the lowest threshold are
    kept (``not tiou < tmin``; a NaN tIoU from two zero-length segments counts,
    as it does officially). Returns ``(pred, gt, rank, tiou)`` arrays.
    """
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    has_gt = pred_group >= 0
    G = np.where(has_gt, gt_count[np.maximum(pred_group, 0)], 0)
    rows = np.flatnonzero(G > 0)
    if rows.size == 0:
        return empty
    G_rows = G[rows]
    first_gt = gt_start[pred_group[rows]]
    offsets = np.cumsum(G_rows) - G_rows  # where each row's pairs begin
    pair_gt = np.repeat(first_gt - offsets, G_rows) + np.arange(int(G_rows.sum()))
    ps = np.ascontiguousarray(pred_seg[rows, 0])
    pe = np.ascontiguousarray(pred_seg[rows, 1])
    tiou = _pair_tiou(np.repeat(ps, G_rows), np.repeat(pe, G_rows), gt_seg[pair_gt, 0], gt_seg[pair_gt, 1])
    # Rows with no candidate at all are false positives everywhere: no need to sort them.
    ok = ~(tiou < tmin)
    any_ok = np.logical_or.reduceat(ok, offsets)
    keep = np.flatnonzero(any_ok)
    if keep.size == 0:
        return empty
    out_p, out_g, out_r, out_t = [], [], [], []
    Gk = G_rows[keep]
    for g in np.flatnonzero(np.bincount(Gk)):
        sel = keep[Gk == g]
        M = tiou[offsets[sel][:, None] + np.arange(g)]  # [n, g], each row in the official GT order
        order = M.argsort(axis=1)[:, ::-1]  # same per-row sort as the official 1-D call
        st = np.take_along_axis(M, order, axis=1)
        cand = ~(st < tmin)
        r_idx, rank = np.nonzero(cand)
        out_p.append(rows[sel][r_idx])
        out_g.append(first_gt[sel][r_idx] + order[r_idx, rank])
        out_r.append(rank)
        out_t.append(st[r_idx, rank])
    return tuple(np.concatenate(a) for a in (out_p, out_g, out_r, out_t))


def _greedy_match(n_pred: int, n_gt: int, edges, tious: np.ndarray) -> np.ndarray:
    """True positives ``[n_tiou, n_pred]`` of the official greedy matching.

    Every threshold is an independent copy of the bipartite graph (node ids
    offset by the threshold index). Each round, every unresolved prediction
    looks at its best candidate GT that is still free; if no *earlier*
    unresolved prediction has that GT among its free candidates, no earlier
    prediction can take it in the serial process either, so the prediction is
    matched to it for sure. The earliest unresolved prediction of a group is
    always matched that way, so every round makes progress; in practice a
    handful of rounds resolve almost everything, and what a chain of
    predictions leaves after :data:`MAX_VECTOR_ROUNDS` is finished by a plain
    loop. Predictions left with no free candidate are false positives (as in
    the serial loop).
    """
    pred, gt, rank, tiou = edges
    T = len(tious)
    tp = np.zeros(T * n_pred, bool)
    if pred.size == 0:
        return tp.reshape(T, n_pred)
    base = np.lexsort((rank, pred))  # by prediction, then its GT order
    pred, gt, tiou = pred[base], gt[base], tiou[base]
    ep, eg = [], []
    for t, thr in enumerate(tious):
        ok = ~(tiou < thr)
        ep.append(pred[ok] + t * n_pred)
        eg.append(gt[ok] + t * n_gt)
    ep, eg = np.concatenate(ep), np.concatenate(eg)  # still sorted by (ep, rank)
    by_gt = np.lexsort((ep, eg))  # positions sorted by (GT, prediction rank)
    locked = np.zeros(T * n_gt, bool)
    earliest = np.zeros(T * n_gt, np.int64)
    for _ in range(MAX_VECTOR_ROUNDS):
        if not ep.size:
            break
        first = np.ones(ep.size, bool)
        first[1:] = ep[1:] != ep[:-1]  # each prediction's best free candidate
        g_sorted = eg[by_gt]
        gfirst = np.ones(g_sorted.size, bool)
        gfirst[1:] = g_sorted[1:] != g_sorted[:-1]
        earliest[g_sorted[gfirst]] = ep[by_gt[gfirst]]  # earliest prediction wanting each GT
        win = first & (earliest[eg] == ep)
        tp[ep[win]] = True
        locked[eg[win]] = True
        keep = ~(locked[eg] | tp[ep])  # drop matched GTs and matched predictions
        new_pos = np.cumsum(keep) - 1
        by_gt = new_pos[by_gt[keep[by_gt]]]
        ep, eg = ep[keep], eg[keep]
    # Long chains (each prediction waiting for the one before) take one round per link:
    # finish what is left serially. Locks taken by later, already matched predictions
    # are never among an earlier prediction's candidates, so this equals the serial loop.
    for p, g in zip(ep.tolist(), eg.tolist()):  # sorted by prediction, then its GT order
        if not (tp[p] or locked[g]):
            tp[p] = locked[g] = True
    return tp.reshape(T, n_pred)


def evaluate_detection(
    annotations: Annotations, results: dict, subset: str | None = None, tious=THUMOS_TIOUS, where: str = "results"
) -> DetectionResult:
    """Detection mAP of ``results`` against the ground truth of ``subset`` (all videos if None).

    ``results`` is the mapping video -> predictions (as returned by
    :func:`load_results`) or a whole results document with a ``results`` key;
    it is validated here (``where`` names it in error messages).
    """
    if isinstance(results, dict) and isinstance(results.get("results"), dict):
        results = results["results"]
    tious = np.asarray(list(tious), dtype=np.float64)
    if tious.ndim != 1 or tious.size == 0 or not np.all((tious > 0) & (tious <= 1)):
        raise WtalError("tIoU thresholds must be a non-empty list of numbers in (0, 1]")
    classes = list(annotations.classes)
    preds = _flatten_results(results, classes, where)

    # Ground truth in the official order: videos in file order, segments in annotation order.
    videos = annotations.subset(subset)
    if not videos:
        names = sorted({v.subset for v in annotations.videos.values()})
        raise WtalError(f"no videos in subset '{subset}' (subsets: {', '.join(names)})")
    vindex = {v.name: i for i, v in enumerate(videos)}
    gt_vid, gt_cls, gt_seg = [], [], []
    cidx = annotations.class_index()
    for i, v in enumerate(videos):
        for s, e, label in v.segments:
            gt_vid.append(i)
            gt_cls.append(cidx[label])
            gt_seg.append((s, e))
    if not gt_seg:
        raise WtalError(f"no ground-truth segments in subset '{subset}'" if subset else "no ground-truth segments")
    V, C = len(videos), len(classes)
    gt_key = np.asarray(gt_cls, np.int64) * V + np.asarray(gt_vid, np.int64)
    gt_order = np.argsort(gt_key, kind="stable")  # groups, keeping the official order inside each
    gt_seg = np.asarray(gt_seg, np.float64)[gt_order]
    gt_count = np.bincount(gt_key, minlength=C * V)
    gt_start = np.cumsum(gt_count) - gt_count
    n_gt_class = gt_count.reshape(C, V).sum(axis=1)
    eval_classes = np.flatnonzero(n_gt_class > 0)

    # Rank predictions class by class with the official call on file-ordered scores.
    by_class = np.argsort(preds.label, kind="stable")
    bounds = np.searchsorted(preds.label[by_class], np.arange(C + 1))
    ranked, class_slices, pos = [], [], 0
    for c in eval_classes:
        idx = by_class[bounds[c] : bounds[c + 1]]
        idx = idx[preds.score[idx].argsort()[::-1]]
        ranked.append(idx)
        class_slices.append((pos, pos + idx.size))
        pos += idx.size
    ranked = np.concatenate(ranked) if ranked else np.zeros(0, np.int64)
    n_eval = ranked.size

    res_to_gt_video = np.array([vindex.get(v, -1) for v in preds.videos], np.int64)
    vid = res_to_gt_video[preds.video_of[ranked]] if n_eval else np.zeros(0, np.int64)
    group = np.where(vid >= 0, preds.label[ranked] * V + vid, -1)
    edges = _candidate_edges(preds.segment[ranked], group, gt_seg, gt_start, gt_count, float(tious.min()))
    tp = _greedy_match(n_eval, len(gt_seg), edges, tious)

    ap = np.zeros((len(tious), len(eval_classes)))
    for k, (c, (a, b)) in enumerate(zip(eval_classes, class_slices)):
        if b == a:
            continue  # a class with ground truth but no predictions has AP 0
        tp_c = tp[:, a:b]
        tp_cum = np.cumsum(tp_c, axis=1).astype(np.float64)
        fp_cum = np.cumsum(~tp_c, axis=1).astype(np.float64)
        rec = tp_cum / float(n_gt_class[c])
        prec = tp_cum / (tp_cum + fp_cum)
        ap[:, k] = interpolated_ap(prec, rec)

    return DetectionResult(
        tiou=tious,
        mAP=ap.mean(axis=1),
        ap=ap,
        classes=[classes[c] for c in eval_classes],
        n_gt=n_gt_class[eval_classes],
        n_predictions=int(n_eval),
        n_ignored=int(preds.score.size - n_eval),
        n_outside=int((vid < 0).sum()),
        subset=subset,
        unknown_videos=[v for v in preds.videos if v not in annotations.videos],
    )


def default_tious(annotations: Annotations) -> tuple:
    """THUMOS14 thresholds when the annotations have a ``test`` subset, ActivityNet's otherwise."""
    if any(v.subset == "test" for v in annotations.videos.values()):
        return THUMOS_TIOUS
    return ANET_TIOUS


def default_subset(annotations: Annotations) -> str | None:
    """``test`` when present, else every video."""
    return "test" if any(v.subset == "test" for v in annotations.videos.values()) else None


def parse_tious(text: str) -> list:
    """``"0.1,0.2,0.3"`` -> ``[0.1, 0.2, 0.3]`` with a one-line error on bad input."""
    out = []
    for part in text.split(","):
        part = part.strip()
        try:
            t = float(part)
        except ValueError:
            raise WtalError(f"--tiou expects comma-separated numbers, got '{part}'") from None
        if not (0 < t <= 1):
            raise WtalError(f"tIoU thresholds must be in (0, 1], got {part}")
        out.append(t)
    if not out:
        raise WtalError("--tiou expects at least one threshold")
    return out


def score_detection(
    annotations_path, results_path, subset: str | None = None, tious=None, preset: str | None = None
) -> DetectionResult:
    """Load, resolve the defaults and evaluate: the library side of ``wtalkit score``.

    ``subset``: a subset name, ``"all"`` for every video, or None for the
    default (the preset's test subset, else ``test`` when present, else all).
    ``tious``: explicit thresholds, or None for the preset's, else
    :func:`default_tious` of the annotations.
    """
    from wtalkit.data.annotations import load_annotations

    path = Path(annotations_path)
    ann = load_annotations(path / "annotations.json" if path.is_dir() else path)
    if preset is not None:
        from wtalkit.config import load_config

        cfg = load_config(preset)
        tious = cfg.eval.tiou if tious is None else tious
        subset = cfg.data.test_subset if subset is None else subset
    if subset is None:
        subset = default_subset(ann)
    elif subset == "all" and not any(v.subset == "all" for v in ann.videos.values()):
        subset = None
    if tious is None:
        tious = default_tious(ann)
    # Validated once, by evaluate_detection (load_results would validate a second time).
    return evaluate_detection(ann, _read_results_doc(results_path), subset, tious, where=str(results_path))


__all__ = [
    "ANET_TIOUS",
    "THUMOS_TIOUS",
    "DetectionResult",
    "default_subset",
    "default_tious",
    "evaluate_detection",
    "interpolated_ap",
    "load_results",
    "parse_tious",
    "score_detection",
    "segment_iou",
]
