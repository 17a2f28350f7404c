"""Confident pseudo-labels: thresholding, ground truth on the snippet grid, and their files.

One branch teaches the other only where it is confident (Ju et al. 2023,
Sec. 3.3). Frame-class scores are turned into ternary labels:

* ``1``  (confident foreground): score > ``delta_h`` and the class is one of
  the video's labels;
* ``0``  (confident background): score < ``delta_l``, or the class is not in
  the video's labels (weak supervision says it never occurs);
* ``-1`` (uncertain): everything else, including scores exactly equal to
  either threshold. Uncertain entries are ignored by the distillation losses.

Their quality (the paper's Table 3) is :mod:`wtalkit.eval.pseudo`.

On disk (``wtalkit pseudolabel``)::

    PSEUDO_DIR/VIDEO.npy   int8 [T, C] in {1, 0, -1}
    PSEUDO_DIR/meta.json   {"format", "classes", "branch", "delta_h", "delta_l",
                            "grid": {"fps", "snippet_length", "snippet_stride"}, "videos"}

``meta.json`` is written last and lists the videos, so a folder is only read
through a complete ``meta.json`` and stale ``.npy`` files are never picked up.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from wtalkit import io as wio
from wtalkit.errors import WtalError
from wtalkit.timeaxis import SnippetGrid, segment_labels

FORMAT = "wtalkit-pseudo-v1"
BRANCHES = ("cbp", "vlp", "raw-vlp")


def ternary_labels(scores, video_labels, delta_h: float = 0.3, delta_l: float = 0.1):
    """Confident ternary labels from frame-class scores.

    ``scores [T, C]`` or ``[B, T, C]`` (numpy or torch), ``video_labels``
    multi-hot ``[C]`` or ``[B, C]`` (bool or 0/1). Returns int8 labels of the
    scores' shape and library (numpy in, numpy out; torch in, torch out).
    """
    if not (0 <= delta_l <= delta_h <= 1):
        raise WtalError(f"need 0 <= delta_l <= delta_h <= 1, got delta_l={delta_l}, delta_h={delta_h}")
    torch = sys.modules.get("torch")  # a torch tensor implies torch is imported; never import it here
    if torch is not None and isinstance(scores, torch.Tensor):
        labels = torch.as_tensor(video_labels, device=scores.device).bool()
        if scores.ndim < 2 or labels.shape[-1] != scores.shape[-1]:
            raise WtalError(
                f"scores {list(scores.shape)} and video labels {list(labels.shape)} disagree on the class count"
            )
        present = labels.unsqueeze(-2)  # [..., 1, C]
        out = torch.full(scores.shape, -1, dtype=torch.int8, device=scores.device)
        out = torch.where((scores > delta_h) & present, torch.ones_like(out), out)
        return torch.where((scores < delta_l) | ~present, torch.zeros_like(out), out)
    scores = np.asarray(scores)
    labels = np.asarray(video_labels).astype(bool)
    if scores.ndim < 2 or labels.shape[-1] != scores.shape[-1]:
        raise WtalError(
            f"scores {list(scores.shape)} and video labels {list(labels.shape)} disagree on the class count"
        )
    present = labels[..., None, :]
    out = np.where((scores > delta_h) & present, 1, -1)
    out = np.where((scores < delta_l) | ~present, 0, out)
    return out.astype(np.int8)


def resolve_conflicts(teacher, student):
    """The teacher's ternary labels, with entries on which the two branches confidently disagree made uncertain.

    ``teacher`` and ``student`` are ternary labels of the same shape (numpy or torch, as
    :func:`ternary_labels` returns them). An entry is a *conflict* when one branch says confident
    foreground (``1``) and the other confident background (``0``); it becomes ``-1`` (ignored by the
    losses). Entries where the student is uncertain keep the teacher's label, so the student still
    learns what it does not know. Absent classes are ``0`` for both branches and never conflict.
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(teacher, torch.Tensor):
        student = torch.as_tensor(student, device=teacher.device)
        if student.shape != teacher.shape:
            raise WtalError(f"teacher {list(teacher.shape)} and student {list(student.shape)} labels differ in shape")
        clash = ((teacher == 1) & (student == 0)) | ((teacher == 0) & (student == 1))
        return torch.where(clash, torch.full_like(teacher, -1), teacher)
    teacher, student = np.asarray(teacher), np.asarray(student)
    if student.shape != teacher.shape:
        raise WtalError(f"teacher {list(teacher.shape)} and student {list(student.shape)} labels differ in shape")
    clash = ((teacher == 1) & (student == 0)) | ((teacher == 0) & (student == 1))
    return np.where(clash, -1, teacher).astype(np.int8)


class Agreement:
    """Class-agnostic agreement of two branches' ternary labels on the same frames (no ground truth).

    Per frame, a branch says *foreground* when some class is ``1`` and *background* when every class
    is ``0`` (the Table-3 reading, :mod:`wtalkit.eval.pseudo`). Summed over videos,
    ``fg = |fg_a ∩ fg_b| / |fg_a ∪ fg_b|`` and ``bg`` likewise; ``score`` is their mean, an empty
    union counting 0 (two branches that both call everything background agree on nothing in the
    foreground). Used to choose the alternate round without test labels.
    """

    def __init__(self):
        self.inter = np.zeros(2, dtype=np.int64)
        self.union = np.zeros(2, dtype=np.int64)

    def update(self, a, b) -> None:
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.ndim != 2:
            raise WtalError(f"labels {list(a.shape)} and {list(b.shape)} must both be [T, C]")
        fa, fb = (a == 1).any(1), (b == 1).any(1)
        ba, bb = (a == 0).all(1), (b == 0).all(1)
        self.inter += [np.sum(fa & fb), np.sum(ba & bb)]
        self.union += [np.sum(fa | fb), np.sum(ba | bb)]

    def compute(self) -> dict:
        iou = self.inter / np.maximum(self.union, 1)
        return {"fg": float(iou[0]), "bg": float(iou[1]), "score": float(iou.mean())}


def select_round(criteria: dict) -> int:
    """The round with the highest criterion (``{round: value}``); the earliest among equals, NaN never."""
    finite = {r: v for r, v in criteria.items() if v == v}
    if not finite:
        raise WtalError("no round has a finite selection criterion")
    best = max(finite.values())
    return min(r for r, v in finite.items() if v == best)


# --- ground truth on the snippet grid -------------------------------------------------------


def gt_snippet_labels(video, grid: SnippetGrid, num_snippets: int, classes: list) -> np.ndarray:
    """Per-snippet ground truth ``bool [T, C]`` from a :class:`~wtalkit.data.annotations.Video`.

    Rule (:func:`wtalkit.timeaxis.segment_labels`): snippet ``k`` belongs to a segment
    ``[s, e]`` of class ``c`` when the centre of the time span it owns satisfies ``s <= centre <= e``.
    """
    if not video.segments:
        raise WtalError(f"video '{video.name}' has no temporal annotations to evaluate pseudo-labels against")
    unknown = sorted({label for _, _, label in video.segments} - set(classes))
    if unknown:
        raise WtalError(f"video '{video.name}': label '{unknown[0]}' is not one of the {len(classes)} classes")
    return segment_labels(grid.centres(num_snippets), video.segments, classes)


def gt_foreground(video, grid: SnippetGrid, num_snippets: int) -> np.ndarray:
    """Class-agnostic per-snippet ground truth ``bool [T]`` (same centre rule as :func:`gt_snippet_labels`)."""
    classes = sorted({label for _, _, label in video.segments})
    return gt_snippet_labels(video, grid, num_snippets, classes).any(axis=1)


# --- files ------------------------------------------------------------------------------------


def pseudo_meta(classes: list, branch: str, delta_h: float, delta_l: float, grid: SnippetGrid) -> dict:
    """The ``meta.json`` content describing a pseudo-label folder (``videos`` is filled on save)."""
    return {
        "format": FORMAT,
        "classes": list(classes),
        "branch": branch,
        "delta_h": float(delta_h),
        "delta_l": float(delta_l),
        "grid": {"fps": float(grid.fps), "snippet_length": int(grid.length), "snippet_stride": int(grid.stride)},
    }


def _check_labels(name: str, arr: np.ndarray, num_classes: int, where: str) -> np.ndarray:
    if arr.ndim != 2 or arr.shape[1] != num_classes:
        raise WtalError(f"{where}: pseudo-labels of '{name}' must be [T, {num_classes}], got {list(arr.shape)}")
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise WtalError(f"{where}: pseudo-labels of '{name}' must be integers, got {arr.dtype}")
    if not np.isin(arr, (-1, 0, 1)).all():
        raise WtalError(f"{where}: pseudo-labels of '{name}' must be 1, 0 or -1")
    return arr.astype(np.int8)


def check_pseudo_dir(out_dir, overwrite: bool = False) -> None:
    """Fail before any work unless ``out_dir`` is new, empty, or (with ``overwrite``) a pseudo-label folder."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise WtalError(f"-o: {out_dir} exists and is not a folder")
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return
    meta = out_dir / "meta.json"
    try:
        ours = json.loads(meta.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise WtalError(f"-o: {out_dir} is not empty and holds no wtalkit pseudo-labels; choose a new folder")
    if not overwrite:
        raise WtalError(f"-o: {out_dir} already holds pseudo-labels; pass --overwrite to replace them")


def save_pseudo_labels(out_dir, labels: dict, meta: dict) -> Path:
    """Write ``VIDEO.npy`` (int8 ``[T, C]``) per video, then ``meta.json``; every file atomically.

    ``meta`` as built by :func:`pseudo_meta`; its ``classes`` fix ``C``.
    Everything is validated before the first file is written.
    """
    out_dir = Path(out_dir)
    missing = [k for k in ("classes", "branch", "delta_h", "delta_l", "grid") if k not in meta]
    if missing:
        raise WtalError(f"pseudo-label meta lacks '{missing[0]}'")
    C = len(meta["classes"])
    checked = {}
    for name, arr in labels.items():
        if not name or "/" in name or name.startswith("."):
            raise WtalError(f"cannot use '{name}' as a pseudo-label file name")
        checked[name] = _check_labels(name, np.asarray(arr), C, str(out_dir))
    if out_dir.exists() and not out_dir.is_dir():
        raise WtalError(f"{out_dir} exists and is not a folder")
    for name, arr in checked.items():
        wio.save_npy(out_dir / f"{name}.npy", arr)
    full = dict(meta)
    full.setdefault("format", FORMAT)
    full["videos"] = sorted(checked)
    wio.write_json(out_dir / "meta.json", full)
    return out_dir
