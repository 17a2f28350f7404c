"""Confident pseudo-labels: thresholding, their quality metric, and their files.

One branch teaches the other only where it is confident (Ju et al. 2023,
Sec. 3.3). Frame-class scores are turned into ternary labels:

* ``1``  (confident foreground): score > ``delta_h`` and the class is one of
  the video's labels;
* ``0``  (confident background): score < ``delta_l``, or the class is not in
  the video's labels (weak supervision says it never occurs);
* ``-1`` (uncertain): everything else, including scores exactly equal to
  either threshold. Uncertain entries are ignored by the distillation losses.

Quality (the paper's Table 3) is measured class-agnostically: a frame is
*foreground* when some class is 1, *background* when every class is 0, and
*uncertain* otherwise. ``fg_iou = |pred_fg ∩ gt_fg| / |pred_fg ∪ gt_fg|`` and
likewise for background; an uncertain frame belongs to neither predicted
set, so it enlarges the union (through the ground truth) without ever
entering an intersection: abstaining costs IoU. Intersections and unions are
summed over all videos of a dataset before dividing.

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
from wtalkit.timeaxis import SnippetGrid

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
            raise WtalError(f"scores {list(scores.shape)} and video labels {list(labels.shape)} disagree on the class count")
        present = labels.unsqueeze(-2)  # [..., 1, C]
        out = torch.full(scores.shape, -1, dtype=torch.int8, device=scores.device)
        out = torch.where((scores > delta_h) & present, torch.ones_like(out), out)
        return torch.where((scores < delta_l) | ~present, torch.zeros_like(out), out)
    scores = np.asarray(scores)
    labels = np.asarray(video_labels).astype(bool)
    if scores.ndim < 2 or labels.shape[-1] != scores.shape[-1]:
        raise WtalError(f"scores {list(scores.shape)} and video labels {list(labels.shape)} disagree on the class count")
    present = labels[..., None, :]
    out = np.where((scores > delta_h) & present, 1, -1)
    out = np.where((scores < delta_l) | ~present, 0, out)
    return out.astype(np.int8)


def multi_hot(labels: list, classes: list) -> np.ndarray:
    """Video-level class names -> bool multi-hot ``[C]``."""
    index = {c: i for i, c in enumerate(classes)}
    out = np.zeros(len(classes), dtype=bool)
    for name in labels:
        if name not in index:
            raise WtalError(f"label '{name}' is not one of the {len(classes)} classes")
        out[index[name]] = True
    return out


# --- ground truth on the snippet grid -------------------------------------------------------

def gt_snippet_labels(video, grid: SnippetGrid, num_snippets: int, classes: list) -> np.ndarray:
    """Per-snippet ground truth ``bool [T, C]`` from a :class:`~wtalkit.data.annotations.Video`.

    Rule: snippet ``k`` belongs to a segment ``[s, e]`` of class ``c`` when the
    centre of the time span it owns (``grid.span(k)``) satisfies
    ``s <= centre <= e``.
    """
    if not video.segments:
        raise WtalError(f"video '{video.name}' has no temporal annotations to evaluate pseudo-labels against")
    index = {c: i for i, c in enumerate(classes)}
    start, end = grid.span(np.arange(num_snippets))
    centre = (start + end) / 2.0  # [T]
    out = np.zeros((num_snippets, len(classes)), dtype=bool)
    for s, e, label in video.segments:
        if label not in index:
            raise WtalError(f"video '{video.name}': label '{label}' is not one of the {len(classes)} classes")
        out[:, index[label]] |= (centre >= s) & (centre <= e)
    return out


def gt_foreground(video, grid: SnippetGrid, num_snippets: int) -> np.ndarray:
    """Class-agnostic per-snippet ground truth ``bool [T]`` (same centre rule as :func:`gt_snippet_labels`)."""
    classes = sorted({label for _, _, label in video.segments})
    return gt_snippet_labels(video, grid, num_snippets, classes).any(axis=1)


# --- Table-3 metric -------------------------------------------------------------------------

class FBIoU:
    """Accumulates foreground/background intersections and unions over videos."""

    def __init__(self):
        self.inter = np.zeros(2, dtype=np.int64)  # [fg, bg]
        self.union = np.zeros(2, dtype=np.int64)
        self.frames = 0
        self.uncertain = 0

    def update(self, pseudo, gt_fg) -> None:
        """Add one video: ``pseudo [T, C]`` ternary labels, ``gt_fg [T]`` bool."""
        pseudo = np.asarray(pseudo)
        gt_fg = np.asarray(gt_fg).astype(bool)
        if pseudo.ndim != 2 or gt_fg.shape != (pseudo.shape[0],):
            raise WtalError(f"pseudo-labels {list(pseudo.shape)} and ground truth {list(gt_fg.shape)} "
                            f"must be [T, C] and [T]")
        pred_fg = (pseudo == 1).any(axis=1)
        pred_bg = (pseudo == 0).all(axis=1)
        gt_bg = ~gt_fg
        self.inter += [np.sum(pred_fg & gt_fg), np.sum(pred_bg & gt_bg)]
        self.union += [np.sum(pred_fg | gt_fg), np.sum(pred_bg | gt_bg)]
        self.frames += len(gt_fg)
        self.uncertain += int(np.sum(~pred_fg & ~pred_bg))

    def compute(self) -> dict:
        """``fg_iou``, ``bg_iou``, ``mean`` (NaN where a union is empty; mean over defined ones) and
        ``uncertain`` (fraction of frames neither foreground nor background)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(self.union > 0, self.inter / np.maximum(self.union, 1), np.nan)
        defined = iou[~np.isnan(iou)]
        return {"fg_iou": float(iou[0]), "bg_iou": float(iou[1]),
                "mean": float(defined.mean()) if len(defined) else float("nan"),
                "uncertain": self.uncertain / self.frames if self.frames else float("nan")}


def fb_miou(pseudo, gt_fg) -> dict:
    """Foreground/background IoU of pseudo-labels (the paper's Table 3).

    ``pseudo [T, C]`` and ``gt_fg [T]`` for one video, or two equally long
    sequences of them for a dataset (intersections and unions are summed over
    videos, then divided). Returns ``dict(fg_iou, bg_iou, mean, uncertain)``.
    """
    acc = FBIoU()
    if isinstance(pseudo, (list, tuple)):
        if not isinstance(gt_fg, (list, tuple)) or len(gt_fg) != len(pseudo):
            raise WtalError("fb_miou needs as many ground-truth arrays as pseudo-label arrays")
        for p, g in zip(pseudo, gt_fg):
            acc.update(p, g)
    else:
        acc.update(pseudo, gt_fg)
    return acc.compute()


# --- files ------------------------------------------------------------------------------------

def pseudo_meta(classes: list, branch: str, delta_h: float, delta_l: float, grid: SnippetGrid) -> dict:
    """The ``meta.json`` content describing a pseudo-label folder (``videos`` is filled on save)."""
    return {"format": FORMAT, "classes": list(classes), "branch": branch,
            "delta_h": float(delta_h), "delta_l": float(delta_l),
            "grid": {"fps": float(grid.fps), "snippet_length": int(grid.length), "snippet_stride": int(grid.stride)}}


def _check_labels(name: str, arr: np.ndarray, num_classes: int, where: str) -> np.ndarray:
    if arr.ndim != 2 or arr.shape[1] != num_classes:
        raise WtalError(f"{where}: pseudo-labels of '{name}' must be [T, {num_classes}], got {list(arr.shape)}")
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise WtalError(f"{where}: pseudo-labels of '{name}' must be integers, got {arr.dtype}")
    if not np.isin(arr, (-1, 0, 1)).all():
        raise WtalError(f"{where}: pseudo-labels of '{name}' must be 1, 0 or -1")
    return arr.astype(np.int8)


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


def load_pseudo_labels(in_dir, videos: list | None = None) -> tuple:
    """Read a pseudo-label folder: ``(labels {video: int8 [T, C]}, meta)``.

    ``videos``: only these (each must be present); default all listed in ``meta.json``.
    """
    in_dir = Path(in_dir)
    meta_path = in_dir / "meta.json"
    if not meta_path.exists():
        raise WtalError(f"not a pseudo-label folder (no meta.json): {in_dir}")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise WtalError(f"{meta_path}: malformed JSON") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("classes"), list) or not isinstance(meta.get("videos"), list):
        raise WtalError(f"{meta_path}: not a wtalkit pseudo-label meta file (needs 'classes' and 'videos')")
    listed = set(meta["videos"])
    wanted = list(meta["videos"]) if videos is None else list(videos)
    absent = [v for v in wanted if v not in listed]
    if absent:
        raise WtalError(f"{in_dir} has no pseudo-labels for video '{absent[0]}' ({len(absent)} missing)")
    C = len(meta["classes"])
    out = {}
    for name in wanted:
        path = in_dir / f"{name}.npy"
        try:
            arr = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise WtalError(f"pseudo-label file missing: {path}") from None
        except (ValueError, OSError, EOFError):
            raise WtalError(f"{path}: not a readable .npy array") from None
        out[name] = _check_labels(name, arr, C, str(path))
    return out, meta
