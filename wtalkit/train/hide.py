"""Temporal Hide-and-Seek: hide random runs of a training crop so the CBP branch must find an action's weaker frames.

Singh & Lee, "Hide-and-Seek: Forcing a Network to be Meticulous for Weakly-supervised Object and
Action Localization" (ICCV 2017). A classifier trained with top-k MIL needs only an action's most
discriminative frames (the *core*) to name the video's class, so its frame scores stay low on the rest
of each instance: the incompleteness the paper ascribes to the CBP branch. When the core is hidden in
some crops, the video label can only be explained by the frames around it, and the model learns to
score them too. Each run of ``length`` consecutive snippets (a fixed grid starting at the crop's first
snippet) is hidden with probability ``prob`` by setting its features to ``fill``, the training split's
mean feature (so a hidden snippet looks like an average snippet, not like an outlier); padded
snippets stay as they are. Used by warm-up only (``cbp.hide_prob``, ``cbp.hide_len``); never at
inference, and not in alternate training's F step (hiding there made the final model worse on the
benchmark regimes; README, "The CBP branch on I3D-shaped features"). Off by default.
"""

from __future__ import annotations

import numpy as np
import torch


def hide_runs(x: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator, prob: float, length: int, fill):
    """``x [B, T, D]`` with hidden runs replaced by ``fill [D]``; ``mask [B, T]`` (True = real snippet).

    The hidden runs are drawn from ``rng`` (the training loop's generator, so a resumed run draws the
    same ones). Returns a new tensor; ``x`` is not modified.
    """
    B, T, _ = x.shape
    n_runs = -(-T // length)
    hidden = rng.random((B, n_runs)) < prob  # [B, runs]
    keep = ~np.repeat(hidden, length, axis=1)[:, :T]  # [B, T]
    keep = torch.from_numpy(keep).to(x.device) | ~mask
    fill = torch.as_tensor(fill, dtype=x.dtype, device=x.device)
    return torch.where(keep[..., None], x, fill)
