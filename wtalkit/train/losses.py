"""Distillation losses.

(Each CBP architecture's own weakly-supervised objective is its ``loss`` method, see
:mod:`wtalkit.models.cbp`.)

Distillation between the two branches (Ju et al. 2023, Sec. 3.4): one
branch's confident ternary pseudo-labels (``1`` foreground, ``0``
background, ``-1`` uncertain; see :mod:`wtalkit.train.pseudo`) supervise the
other branch through

* :func:`kd_loss`, knowledge distillation on the frame-class probabilities,
* :func:`fb_loss`, a foreground-background contrastive loss on the frame
  features,

combined by :func:`distill_loss` as ``L = L_kd + λ · L_fb``.

Shapes: ``B`` videos, ``T`` snippets, ``C`` classes, ``D`` feature dims;
``mask [B, T]`` is True on real snippets (False on padding) and may be None.
Every loss returns a scalar tensor attached to the graph, 0 when nothing
qualifies, so callers can always ``backward()`` and sum losses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wtalkit.config import LossConfig

EPS = 1e-6


def _valid(mask: torch.Tensor | None, shape, device) -> torch.Tensor:
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    return mask.to(device=device, dtype=torch.bool)


def kd_loss(probs: torch.Tensor, pseudo: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Distillation on confident entries: mean Bernoulli KL(h || p) over (frame, class) pairs.

    For a hard target ``h ∈ {0, 1}``, ``KL(h || p) = -[h log p + (1 - h) log(1 - p)]``
    (the target's entropy is 0), with ``p`` clamped to ``[1e-6, 1 - 1e-6]``.
    The sum runs over entries whose pseudo-label is 0 or 1 on valid frames
    and is divided by their number. Uncertain (``-1``) and padded entries are
    replaced before any arithmetic, so they get exactly zero gradient (no
    ``0 * inf``). ``probs [B, T, C]`` in (0, 1) (sigmoid or softmax
    outputs), ``pseudo [B, T, C]`` integer. Computed in float32.
    """
    valid = _valid(mask, probs.shape[:-1], probs.device)
    conf = (pseudo.to(probs.device) >= 0) & valid[..., None]
    probs = probs.float()  # 1 - 1e-6 is 1.0 in half precision
    target = (pseudo.to(probs.device) == 1).float()
    p = torch.where(conf, probs, torch.full_like(probs, 0.5)).clamp(EPS, 1 - EPS)
    per = -(target * p.log() + (1 - target) * (1 - p).log())
    per = torch.where(conf, per, torch.zeros_like(per))
    return per.sum() / conf.sum().clamp_min(1).float()


def _sample(idx: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """At most ``k`` entries of ``idx``, drawn without replacement (CPU permutation, deterministic with a generator)."""
    if k <= 0 or idx.numel() <= k:
        return idx
    perm = torch.randperm(idx.numel(), generator=generator)[:k].to(idx.device)
    return idx[perm]


def fb_loss(
    features: torch.Tensor,
    pseudo: torch.Tensor,
    mask: torch.Tensor | None = None,
    tau: float = 0.07,
    max_anchors: int = 64,
    max_negatives: int = 512,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Foreground-background contrastive loss (InfoNCE) on L2-normalised frame features.

    For each class ``c`` with at least two confident foreground frames in the
    batch (``pseudo[..., c] == 1``), up to ``max_anchors`` of them are drawn;
    each drawn frame is an anchor whose positives are the *other* drawn
    frames of class ``c`` (any video of the batch). Negatives are the
    confident background frames (every class 0) of the *whole batch* (up to
    ``max_negatives`` drawn once per call): all of them are background for
    every class, and a video without confident background still contributes
    anchors. With ``s`` the cosine similarity::

        l(a) = -log( Σ_pos exp(s/τ) / (Σ_pos exp(s/τ) + Σ_neg exp(s/τ)) )

    computed with log-sum-exp, averaged over all anchors of all classes. A
    frame that is foreground for two classes serves in both. 0 (attached to
    the graph) when no class has two foreground frames or there is no
    background frame. ``generator`` makes the draws reproducible.
    """
    B, T, D = features.shape
    C = pseudo.shape[-1]
    zero = features.sum() * 0.0
    valid = _valid(mask, (B, T), features.device).reshape(-1)
    lab = pseudo.reshape(B * T, C).to(features.device)
    bg = valid & (lab == 0).all(dim=1)
    neg_idx = _sample(bg.nonzero().squeeze(1), max_negatives, generator)
    fg = valid[:, None] & (lab == 1)  # [BT, C]
    classes = (fg.sum(0) >= 2).nonzero().squeeze(1)
    if neg_idx.numel() == 0 or classes.numel() == 0:
        return zero
    f = F.normalize(features.reshape(B * T, D).float(), dim=-1)
    neg = f[neg_idx]  # [N, D]
    terms = []
    for c in classes.tolist():
        idx = _sample(fg[:, c].nonzero().squeeze(1), max_anchors, generator)
        a = f[idx]  # [S, D]
        s_pos = (a @ a.t()) / tau
        s_pos = s_pos.masked_fill(torch.eye(len(idx), dtype=torch.bool, device=a.device), float("-inf"))
        s_neg = (a @ neg.t()) / tau
        terms.append(torch.logsumexp(torch.cat([s_pos, s_neg], dim=1), dim=1) - torch.logsumexp(s_pos, dim=1))
    return torch.cat(terms).mean().to(features.dtype)


def distill_loss(
    probs: torch.Tensor,
    features: torch.Tensor,
    pseudo: torch.Tensor,
    mask: torch.Tensor | None,
    cfg: LossConfig | None = None,
    generator: torch.Generator | None = None,
    kd_keep: int | None = None,
) -> tuple:
    """``L = L_kd + λ·L_fb`` from the other branch's pseudo-labels.

    ``cfg.use_kd`` / ``cfg.use_fb`` switch the terms off (the ``--no-kd`` /
    ``--no-fb`` ablations), ``λ = cfg.lambda_fb`` (0.05), ``τ = cfg.tau``.
    ``kd_keep`` (1 or 0), when given, distils only the teacher's confident
    entries of that value (the others count as uncertain for ``L_kd``); ``L_fb``
    always sees every confident frame, since it needs foreground *and* background.
    Returns ``(total, {"kd": ..., "fb": ...})``, the unweighted values for logging as detached
    0-dim tensors (0.0 for a disabled term): reading them is left to the caller, once per epoch,
    so that a training step needs no host sync.
    """
    cfg = cfg or LossConfig()
    total = probs.sum() * 0.0
    parts = {"kd": 0.0, "fb": 0.0}
    if cfg.use_kd:
        kd_pseudo = pseudo if kd_keep is None else torch.where(pseudo == kd_keep, pseudo, torch.full_like(pseudo, -1))
        kd = kd_loss(probs, kd_pseudo, mask)
        total = total + kd
        parts["kd"] = kd.detach()
    if cfg.use_fb:
        fb = fb_loss(features, pseudo, mask, tau=cfg.tau, generator=generator)
        total = total + cfg.lambda_fb * fb
        parts["fb"] = fb.detach()
    return total, parts
