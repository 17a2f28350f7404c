"""The optimizer every wtalkit training uses (Adam, ``optim.lr`` and ``optim.weight_decay``)."""

from __future__ import annotations

import torch

from wtalkit.config import Config


def make_optimizer(params, cfg: Config) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
