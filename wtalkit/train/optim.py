"""The optimizer every wtalkit training uses (Adam, ``optim.weight_decay``, the stage's rate).

Warm-up trains at ``optim.lr``; the B and F steps of alternate training at ``optim.alternate_lr``
when it is set (> 0), else at ``optim.lr`` (:meth:`wtalkit.config.OptimConfig.rate`).
"""

from __future__ import annotations

from typing import Literal

import torch

from wtalkit.config import Config


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, params, scaler, grad_clip: float) -> None:
    """One training step: clear the gradients, backpropagate (scaled when ``scaler`` is enabled, i.e.
    fp16), clip the gradients' global norm to ``grad_clip`` when it is > 0, update."""
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip > 0:
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    scaler.step(opt)
    scaler.update()


def make_optimizer(params, cfg: Config, stage: Literal["warmup", "alternate"] = "warmup") -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=cfg.optim.rate(stage), weight_decay=cfg.optim.weight_decay)
