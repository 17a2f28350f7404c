"""The optimizer every wtalkit training uses (Adam, ``optim.weight_decay``, the stage's rate).

Warm-up trains at ``optim.lr``; the B and F steps of alternate training at ``optim.alternate_lr``
when it is set (> 0), else at ``optim.lr`` (:meth:`wtalkit.config.OptimConfig.rate`).
"""

from __future__ import annotations

from typing import Literal

import torch

from wtalkit.config import Config


def make_optimizer(params, cfg: Config, stage: Literal["warmup", "alternate"] = "warmup") -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=cfg.optim.rate(stage), weight_decay=cfg.optim.weight_decay)
