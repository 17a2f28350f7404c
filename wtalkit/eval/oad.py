"""Online action detection (OAD) metrics: per-frame mAP and calibrated mAP.

Input are the JSON lines written by ``wtalkit online``, one object per frame::

    {"video": NAME, "frame": INDEX, "t": SECONDS, "scores": {CLASS: PROB, ...}, "top": CLASS}

Each frame is labelled from ``annotations.json`` at its own time ``t``: it is a
positive of class ``c`` when ``start <= t <= end`` for a ground-truth segment of
``c`` (a frame can be positive for several classes), and a negative of every
class when it lies in no segment (background is never scored as a class).
Frames inside an *ambiguous* span -- a THUMOS ``Ambiguous_test.txt`` line
``video start end`` or a segment labelled ``Ambiguous`` in the annotations --
are dropped before anything is computed.

Two metrics per class, frames of all videos pooled:

* **AP** (THUMOS14 per-frame mAP, as in the OAD literature: TRN, OadTR, LSTR,
  OV-OAD). Identical to ``sklearn.metrics.average_precision_score``: frames
  ranked by score, tied scores form one threshold, AP = sum over thresholds of
  (recall gain) x precision.
* **cAP** (TVSeries calibrated AP, De Geest et al., ECCV 2016). The precision
  is calibrated to a balanced positive/negative ratio,
  ``cPrec = TP / (TP + FP / w)`` with ``w = #negatives / #positives``, and
  averaged over the positive frames. Ties are handled like AP's.

The means (mAP, mcAP) average over the classes that are scored *and* have at
least one positive frame; the others are reported, not averaged.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wtalkit.data.annotations import Annotations
from wtalkit.errors import WtalError
from wtalkit.timeaxis import inside

AMBIGUOUS = "ambiguous"  # segments with this label (any case) mark frames to ignore


@dataclass
class OADResult:
    classes: list  # evaluated: scored and with at least one positive frame
    ap: np.ndarray  # [n_classes] per-frame AP (fractions)
    cap: np.ndarray  # [n_classes] calibrated AP
    n_positive: np.ndarray  # [n_classes] positive frames
    n_frames: int  # frames evaluated (after dropping ambiguous ones)
    n_dropped: int = 0  # ambiguous frames dropped
    n_videos: int = 0
    no_positives: list = field(default_factory=list)  # scored classes without any positive frame
    not_scored: list = field(default_factory=list)  # annotation classes with positives that were not scored

    @property
    def mAP(self) -> float:
        return float(np.mean(self.ap))

    @property
    def mcAP(self) -> float:
        return float(np.mean(self.cap))

    def to_json(self) -> dict:
        return {
            "classes": list(self.classes),
            "ap": [float(x) for x in self.ap],
            "cap": [float(x) for x in self.cap],
            "mAP": self.mAP,
            "mcAP": self.mcAP,
            "frames": self.n_frames,
            "dropped_ambiguous": self.n_dropped,
        }


# --------------------------------------------------------------------------- metrics


def ranked_precision_ap(y_true, y_score, calibrated: bool = False) -> float:
    """Per-frame AP (``calibrated=False``) or calibrated AP of one class.

    ``y_true`` are booleans, ``y_score`` finite scores. Frames with equal score
    are one threshold: every positive among them gets the precision measured
    after all of them, as ``sklearn.metrics.average_precision_score`` does.
    Returns NaN when there is no positive frame.
    """
    y = np.asarray(y_true, bool)
    s = np.asarray(y_score, np.float64)
    order = np.argsort(-s, kind="stable")
    y, s = y[order], s[order]
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    n_pos, n_neg = int(tp[-1]) if y.size else 0, int(fp[-1]) if y.size else 0
    if n_pos == 0:
        return float("nan")
    ends = np.append(np.flatnonzero(s[1:] != s[:-1]), s.size - 1)  # last frame of each tie block
    tp_e, fp_e = tp[ends].astype(np.float64), fp[ends].astype(np.float64)
    if calibrated:
        if n_neg == 0:
            prec = np.ones_like(tp_e)
        else:
            w = n_neg / n_pos
            prec = tp_e / (tp_e + fp_e / w)
    else:
        prec = tp_e / (tp_e + fp_e)
    gain = np.diff(tp_e, prepend=0.0)  # positives reached at each threshold
    return float(np.sum(gain * prec) / n_pos)


def evaluate_oad(annotations: Annotations, frames: dict, ambiguous: dict | None = None) -> OADResult:
    """Per-frame AP and calibrated AP of online scores against the annotations.

    ``frames``: video -> ``(times [N], scores [N, C], classes [C])``; every
    video must be in the annotations and every scored class an annotation
    class. ``ambiguous``: video -> ``[(start, end), ...]`` spans whose frames
    are ignored (segments labelled "Ambiguous" in the annotations always are).
    """
    if not frames:
        raise WtalError("no frames to evaluate")
    ambiguous = ambiguous or {}
    class_set = set(annotations.classes)
    scored = None
    all_y, all_s = [], []
    n_dropped = 0
    for video, (times, scores, classes) in frames.items():
        v = annotations.videos.get(video)
        if v is None:
            raise WtalError(f"video '{video}' is not in the annotations")
        classes = list(classes)
        if scored is None:
            scored = classes
            unknown = [c for c in classes if c not in class_set]
            if unknown:
                raise WtalError(f"scored class '{unknown[0]}' is not a class of the annotations")
        elif classes != scored:
            raise WtalError(
                f"video '{video}' scores classes {classes[:3]}..., other videos {scored[:3]}...; "
                "all videos must score the same classes"
            )
        times = np.asarray(times, np.float64)
        scores = np.asarray(scores, np.float64)
        if times.ndim != 1 or scores.shape != (times.size, len(classes)):
            raise WtalError(
                f"video '{video}': expected times [N] and scores [N, {len(classes)}], "
                f"got {list(times.shape)} and {list(scores.shape)}"
            )
        if not (np.isfinite(times).all() and np.isfinite(scores).all()):
            raise WtalError(f"video '{video}': times and scores must be finite numbers")
        drop = inside(times, [(s, e) for s, e, lab in v.segments if lab.lower() == AMBIGUOUS])
        drop |= inside(times, ambiguous.get(video, ()))
        n_dropped += int(drop.sum())
        keep = ~drop
        y = np.zeros((times.size, len(classes)), bool)
        col = {c: k for k, c in enumerate(classes)}
        for s, e, lab in v.segments:
            if lab in col:
                y[:, col[lab]] |= (times >= s) & (times <= e)
        all_y.append(y[keep])
        all_s.append(scores[keep])
    y = np.concatenate(all_y)
    s = np.concatenate(all_s)
    if y.shape[0] == 0:
        raise WtalError("every frame is ambiguous: nothing to evaluate")

    n_pos = y.sum(axis=0)
    evaluated = [k for k, c in enumerate(scored) if n_pos[k] > 0 and c.lower() != AMBIGUOUS]
    no_pos = [c for k, c in enumerate(scored) if n_pos[k] == 0 and c.lower() != AMBIGUOUS]
    if not evaluated:
        raise WtalError("no scored class has a positive frame in the evaluated videos")
    scored_set = set(scored)
    positives_elsewhere = {lab for video in frames for _, _, lab in annotations.videos[video].segments}
    not_scored = [
        c for c in annotations.classes if c in positives_elsewhere and c not in scored_set and c.lower() != AMBIGUOUS
    ]
    ap = np.array([ranked_precision_ap(y[:, k], s[:, k]) for k in evaluated])
    cap = np.array([ranked_precision_ap(y[:, k], s[:, k], calibrated=True) for k in evaluated])
    return OADResult(
        classes=[scored[k] for k in evaluated],
        ap=ap,
        cap=cap,
        n_positive=n_pos[evaluated],
        n_frames=int(y.shape[0]),
        n_dropped=n_dropped,
        n_videos=len(frames),
        no_positives=no_pos,
        not_scored=not_scored,
    )


# --------------------------------------------------------------------------- input


def _jsonl_files(path) -> list:
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            raise WtalError(f"{path}: no *.jsonl files in this folder")
        return files
    if not path.exists():
        raise WtalError(f"file not found: {path}")
    return [path]


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def load_frames(path) -> dict:
    """Read ``wtalkit online`` frame lines from a ``.jsonl`` file or a folder of them.

    Returns video -> ``(times [N], scores [N, C], classes [C])`` with frames in
    time order. Malformed lines, segment lines (``--segments`` output),
    inconsistent class sets and repeated frames are one-line errors.
    """
    per_video: dict = {}
    for f in _jsonl_files(path):
        try:
            fh = open(f, "rb")  # noqa: SIM115 (closed by the `with` below; open errors reported first)
        except OSError as e:
            raise WtalError(f"{f}: cannot read ({e.strerror})") from None
        with fh:
            for lineno, raw in enumerate(fh, 1):
                at = f"{f}:{lineno}"
                try:  # decoded line by line: a bad byte is reported with its line, not as a traceback
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise WtalError(f"{at}: not UTF-8 text") from None
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise WtalError(f"{at}: malformed JSON ({e.msg})") from None
                if not isinstance(rec, dict):
                    raise WtalError(f"{at}: expected a JSON object per line")
                if "scores" not in rec and ("results" in rec or "database" in rec):
                    raise WtalError(
                        f"{at}: this is a results/annotations JSON file, not `wtalkit online` "
                        "frame lines (use --protocol detection for results files)"
                    )
                if "scores" not in rec and "start" in rec:
                    raise WtalError(
                        f"{at}: this is a segment line (wtalkit online --segments); "
                        "--protocol oad needs per-frame lines"
                    )
                video, t, sc = rec.get("video"), rec.get("t"), rec.get("scores")
                if not isinstance(video, str):
                    raise WtalError(f"{at}: 'video' must be a string")
                if not _number(t):
                    raise WtalError(f"{at}: 't' must be a finite number of seconds")
                if not isinstance(sc, dict) or not sc:
                    raise WtalError(f"{at}: 'scores' must be a non-empty object {{CLASS: PROB}}")
                entry = per_video.setdefault(
                    video, {"classes": list(sc), "keys": set(sc), "t": [], "s": [], "frame": [], "where": at}
                )
                if sc.keys() != entry["keys"]:
                    raise WtalError(f"{at}: scores a different set of classes than {entry['where']}")
                row = [sc[c] for c in entry["classes"]]
                if not all(_number(x) for x in row):
                    raise WtalError(f"{at}: every score must be a finite number")
                entry["t"].append(float(t))
                entry["s"].append(row)
                entry["frame"].append(rec.get("frame"))
    if not per_video:
        raise WtalError(f"{path}: no frame lines")
    out = {}
    for video, entry in per_video.items():
        times = np.asarray(entry["t"], np.float64)
        order = np.argsort(times, kind="stable")
        times = times[order]
        if times.size > 1 and (np.diff(times) == 0).any():
            k = int(np.flatnonzero(np.diff(times) == 0)[0])
            raise WtalError(f"video '{video}': frame at t = {times[k]} s appears twice")
        out[video] = (times, np.asarray(entry["s"], np.float64)[order], entry["classes"])
    return out


def load_ambiguous(path) -> dict:
    """THUMOS ``Ambiguous_test.txt``: ``video start end`` per line -> video -> [(start, end)]."""
    path = Path(path)
    if not path.exists():
        raise WtalError(f"file not found: {path}")
    spans: dict = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise WtalError(f"{path}: cannot read ({getattr(e, 'strerror', None) or 'not UTF-8 text'})") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) != 3:
                raise ValueError
            s, e = float(parts[1]), float(parts[2])
            if not (math.isfinite(s) and math.isfinite(e)) or e < s:
                raise ValueError
        except ValueError:
            raise WtalError(f"{path}:{lineno}: expected 'video start end' with start <= end") from None
        spans.setdefault(parts[0], []).append((s, e))
    return spans


def score_oad(annotations_path, frames_path, subset: str | None = None, ambiguous_path=None) -> OADResult:
    """Load everything and evaluate: the library side of ``wtalkit score --protocol oad``.

    With ``subset``, only the videos of that subset are evaluated.
    """
    from wtalkit.data.annotations import load_annotations

    ann = load_annotations(annotations_path)
    frames = load_frames(frames_path)
    if subset is not None:
        frames = {v: x for v, x in frames.items() if v not in ann.videos or ann.videos[v].subset == subset}
        if not frames:
            raise WtalError(f"no scored video belongs to subset '{subset}'")
    amb = load_ambiguous(ambiguous_path) if ambiguous_path else None
    return evaluate_oad(ann, frames, amb)
