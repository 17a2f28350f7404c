"""UM: weakly-supervised temporal action localization by uncertainty modeling (``cbp.arch: um``).

Lee, Wang, Lee & Byun, AAAI 2021. Background frames are treated as out-of-distribution samples:
no background class is learnt; instead the *feature magnitude* of a snippet says how likely it is
to be an action, and background snippets are pushed towards a uniform class distribution.

**Model** (paper Sec. 3.1; the authors' code has the same layers). Snippet features
``x [B, T, D]`` (I3D RGB ‖ flow) pass through a temporal convolution (kernel 3) + ReLU, the
embedded features ``f_t [B, T, H]``; dropout (0.7) and a bias-free 1×1 convolution give the class
activation sequence ``A [B, T, C]`` over the ``C`` action classes only (the classifier has no
background column). Eq. (1)/(2): the video score is the softmax over classes of the mean of each
class's top-``k_act`` activations, ``k_act = T // r_act``.

**Pseudo action/background snippets** (Sec. 3.2, Eq. 3–4). The feature magnitude of a snippet is
``m_t = ‖f_t‖₂``. During training a dropout mask (the same rate) is drawn on the magnitudes; the
``k_act`` snippets of largest masked magnitude are the pseudo action snippets and the ``k_bkg =
T // r_bkg`` snippets of largest masked ``max_t m_t − m_t`` the pseudo background snippets. The
mask is drawn from torch's global RNG (seeded by ``train.seed``), so training is reproducible;
in eval mode there is no mask and the selection is deterministic.

**Losses** (Sec. 3.3, Eq. 5–9), :meth:`UM.loss`:

* ``cls``: binary cross-entropy between the video score and the video label normalised to sum to
  one (mean over videos and classes, as the authors' ``nn.BCELoss``);
* ``um`` (uncertainty modeling, Eq. 6): ``mean_b (max(0, margin − ‖mean of f over the action
  snippets‖) + ‖mean of f over the background snippets‖)²``, weight ``alpha``;
* ``be`` (background entropy, Eq. 8): binary cross-entropy between the softmax over classes of the
  mean activation of the background snippets and the uniform distribution ``1/C``, weight ``beta``.

``total = cls + alpha·um + beta·be``.

**Inference** (Sec. 3.4 and the authors' ``test.py``). The magnitudes are min-max normalised
between the mean magnitude of the ``k_bkg`` smallest and the ``k_act`` largest (clipped to
[0, 1]): that is ``actionness [B, T]``. The localization CAS ``loc [B, T, C]`` is the per-class
min-max normalisation over the video of ``softmax(A) · actionness``. UM cuts proposals from
``loc`` at ``infer.theta_loc`` (0:0.025:0.25) and from ``actionness`` at ``infer.theta_act``
(0.4:0.025:0.625), both upsampled 24× and scored by outer-inner contrast on ``loc``
(``infer.proposals: oic``), then hard NMS at 0.6.

**The CBP interface** (:mod:`wtalkit.models.cbp`): ``video`` is the action score above; ``features``
the embedded ``f_t``; ``probs`` is ``softmax(A) · actionness``, UM's frame evidence before the
per-class min-max (:meth:`UM.forward` says why). Padded frames (``mask`` False) are zeroed before
the convolution, never selected, never averaged, and get 0 in ``probs``/``loc``/``actionness``.
Where the paper's ``T // r`` is 0 (videos shorter than ``r`` snippets) ``k = 1``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wtalkit.config import CBPConfig, UMConfig
from wtalkit.models.cbp import input_standardizer, topk_counts, topk_pool, topk_width


def select_mean(values: torch.Tensor, key: torch.Tensor, mask: torch.Tensor, k: torch.Tensor, kmax: int):
    """Mean of ``values [B, T, F]`` over the ``k[b]`` frames of largest ``key [B, T]`` (valid frames only).

    ``kmax`` (a Python int, ``>= k.max()``) keeps the selection free of host syncs.
    """
    key = key.masked_fill(~mask, float("-inf"))
    idx = key.topk(kmax, dim=1).indices  # [B, kmax]
    w = (torch.arange(kmax, device=key.device)[None, :] < k[:, None]).to(values.dtype) / k[:, None].to(values.dtype)
    picked = values.gather(1, idx[..., None].expand(-1, -1, values.shape[-1]))  # finite everywhere
    return (picked * w[..., None]).sum(1)


def minmax(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """``(x − lo) / (hi − lo)`` clipped to [0, 1]; a non-positive range divides by 1 (the authors' rule)."""
    delta = hi - lo
    delta = torch.where(delta > 0, delta, torch.ones_like(delta))
    return ((x - lo) / delta).clamp(0.0, 1.0)


def bce(p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy, ``torch.nn.BCELoss`` as the authors use it (log clamped at −100), in
    float32 outside autocast.

    Torch's own kernel, not ``log(p).clamp(-100)``: where a probability is exactly 0 or 1 (a saturated
    softmax) the clamped log's gradient is ``0 · inf = NaN``, which silently turned UM's weights into
    NaN in alternate training's F step; the kernel's gradient ``(p − t) / max(p(1 − p), 1e-12)`` stays
    finite.
    """
    with torch.autocast(device_type=p.device.type, enabled=False):
        return F.binary_cross_entropy(p.float(), target.float())


class UM(nn.Module):
    """UM as a CBP architecture (see the module docstring); hyper-parameters from ``cfg.um``."""

    arch = "um"

    def __init__(self, feat_dim: int, num_classes: int, cfg: CBPConfig | None = None):
        super().__init__()
        cfg = cfg or CBPConfig()
        u: UMConfig = cfg.um
        self.cfg = u
        self.standardize = input_standardizer(feat_dim, cfg)
        self.feat_dim, self.num_classes = feat_dim, num_classes
        self.embed = nn.Conv1d(feat_dim, u.hidden_dim, kernel_size=3, padding=1)
        self.drop = nn.Dropout(u.dropout)
        self.classifier = nn.Conv1d(u.hidden_dim, num_classes, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
        """``x [B, T, D]``, ``mask [B, T]`` (True = real snippet) ->

        * ``cas [B, T, C]``: the class activations ``A``; ``features [B, T, H]``: ``f_t``;
          ``magnitudes [B, T]``: ``‖f_t‖₂``;
        * ``video [B, C]``: the action score (Eq. 2); ``video_bkg [B, C]``: the softmax of the mean
          activation of the pseudo background snippets; ``feat_act`` / ``feat_bkg [B, H]``: the mean
          feature of the pseudo action / background snippets (random mask in training mode);
        * ``actionness [B, T]``: the normalised magnitudes; ``loc [B, T, C]``: UM's localization CAS;
        * ``probs [B, T, C]`` = ``softmax(A) · actionness``. Not ``softmax(A)`` alone: with no
          background class its rows sum to one over the actions, so a background frame cannot be
          low for every class (pseudo-labels and ``L_kd`` need that); not ``loc``: its per-video
          per-class min-max puts every class, present or not, at 1 somewhere. The normalisation's
          bounds (mean action / background magnitude) are detached, so ``L_kd`` moves each frame's
          own magnitude and class scores, not the video's reference levels; frames clipped to 0
          or 1 get no gradient through the magnitude.
        """
        if self.standardize is not None:
            x = self.standardize(x, mask)
        B, T, _ = x.shape
        u = self.cfg
        if mask is None:
            mask = torch.ones(B, T, dtype=torch.bool, device=x.device)
        else:
            mask = mask.to(device=x.device, dtype=torch.bool)
            x = x * mask[..., None].to(x.dtype)
        k_act, k_bkg = topk_counts(mask, u.r_act), topk_counts(mask, u.r_bkg)
        ka_max, kb_max = topk_width(T, u.r_act), topk_width(T, u.r_bkg)

        h = F.relu(self.embed(x.transpose(1, 2)))  # [B, H, T]
        cas = self.classifier(self.drop(h)).transpose(1, 2)  # [B, T, C]
        features = h.transpose(1, 2)  # [B, T, H]
        mag = features.norm(p=2, dim=2)  # [B, T]

        # pseudo action / background snippets (Eq. 3-4): a dropout mask on the magnitudes in training
        sel = F.dropout(torch.ones_like(mag), u.dropout, training=True) if self.training else torch.ones_like(mag)
        mag_max = mag.masked_fill(~mask, float("-inf")).max(1, keepdim=True).values
        feat_act = select_mean(features, mag * sel, mask, k_act, ka_max)
        feat_bkg = select_mean(features, (mag_max - mag) * sel, mask, k_bkg, kb_max)
        video_bkg = select_mean(cas, (mag_max - mag) * sel, mask, k_bkg, kb_max).softmax(-1)
        video = topk_pool(cas, mask, u.r_act).softmax(-1)

        # inference signals: magnitudes normalised between the mean background and action magnitudes
        with torch.no_grad():
            hi = topk_pool(mag[..., None], mask, u.r_act)  # [B, 1]
            lo = topk_pool(mag[..., None], mask, u.r_bkg, largest=False)
        m = mask.to(mag.dtype)
        actionness = minmax(mag, lo, hi) * m
        probs = cas.softmax(-1) * actionness[..., None]
        big = torch.finfo(probs.dtype).max
        cmax = probs.masked_fill(~mask[..., None], -big).max(1, keepdim=True).values.clamp(min=0)
        cmin = probs.masked_fill(~mask[..., None], big).min(1, keepdim=True).values.clamp(min=0)
        loc = minmax(probs, cmin, cmax) * m[..., None]
        return {
            "cas": cas,
            "features": features,
            "magnitudes": mag,
            "video": video,
            "video_bkg": video_bkg,
            "feat_act": feat_act,
            "feat_bkg": feat_bkg,
            "actionness": actionness,
            "loc": loc,
            "probs": probs,
        }

    def loss(self, out: dict, mask: torch.Tensor | None, labels: torch.Tensor, pairs: int = 0) -> tuple:
        """``cls + alpha·um + beta·be`` (module docstring, Eq. 5–9); ``pairs`` is not used by UM.

        Returns ``(total, {"cls", "um", "be"})`` with the unweighted terms detached.
        """
        u = self.cfg
        labels = labels.to(out["video"].dtype)
        target = labels / labels.sum(1, keepdim=True).clamp_min(1e-12)
        cls = bce(out["video"], target)
        be = bce(out["video_bkg"], torch.full_like(out["video_bkg"], 1.0 / out["video_bkg"].shape[-1]))
        act = F.relu(u.margin - out["feat_act"].float().norm(p=2, dim=1))
        um = ((act + out["feat_bkg"].float().norm(p=2, dim=1)) ** 2).mean()
        total = cls + u.alpha * um + u.beta * be
        return total, {"cls": cls.detach(), "um": um.detach(), "be": be.detach()}
