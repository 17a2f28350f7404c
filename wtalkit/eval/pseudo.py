"""The paper's Table-3 metric: foreground / background IoU of ternary pseudo-labels against ground truth.

Quality (the paper's Table 3) is measured class-agnostically: a frame is
*foreground* when some class is 1, *background* when every class is 0, and
*uncertain* otherwise. ``fg_iou = |pred_fg ∩ gt_fg| / |pred_fg ∪ gt_fg|`` and
likewise for background; an uncertain frame belongs to neither predicted
set, so it enlarges the union (through the ground truth) without ever
entering an intersection: abstaining costs IoU. Intersections and unions are
summed over all videos of a dataset before dividing.
"""

from __future__ import annotations

import numpy as np

from wtalkit.errors import WtalError


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
            raise WtalError(
                f"pseudo-labels {list(pseudo.shape)} and ground truth {list(gt_fg.shape)} must be [T, C] and [T]"
            )
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
        return {
            "fg_iou": float(iou[0]),
            "bg_iou": float(iou[1]),
            "mean": float(defined.mean()) if len(defined) else float("nan"),
            "uncertain": self.uncertain / self.frames if self.frames else float("nan"),
        }
