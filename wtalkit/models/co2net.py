"""CO2-Net as a CBP architecture (``cbp.arch: co2net``).

Hong, Feng, Xu, Shan & Zheng, "Cross-modal Consensus Network for Weakly Supervised Temporal Action
Localization", ACM MM 2021. Written from the paper, with the authors' public code (commit e879687)
read for what the paper leaves open; it implements the CBP interface of :mod:`wtalkit.models.cbp`.

**Input.** Snippet features ``[B, T, D]``: the first ``cbp.co2net.rgb_dim`` dims are the RGB stream,
the rest optical flow (I3D: 1024 + 1024). Padded frames (``mask`` False) are zeroed on entry and
after every layer that mixes neighbouring frames, so a temporal convolution sees past a video's end
exactly the zeros its own padding would give: the valid frames' outputs do not depend on padding.

**Cross-modal consensus module (CCM, paper Sec. 3.2)**, one per modality (*main* = RGB with flow as
*auxiliary*, and the reverse). A global-context gate ``G = LReLU(W_g · mean_t(X_main))`` (one value
per channel from the main modality's average over the valid frames) and a local bit-wise gate
``L = LReLU(conv3(X_aux))`` from the auxiliary modality give the filtered features
``X̃ = sigmoid(G ⊙ L) ⊙ X_main`` (Eqs. 1-3); a three-layer temporal convolution with a sigmoid turns
``X̃`` into a frame attention ``A_m ∈ [0, 1]`` (Eq. 4). (The authors' ``W_g`` is a width-3
convolution applied to a length-1 sequence, i.e. only its centre tap acts; here it is a linear
layer, initialised like that tap.) Dropout 0.5 follows each gate, the first attention layer and the
attention logit, as in the authors' code.

**Classification (Sec. 3.3).** The fused features ``F = LReLU(conv1(X̃_rgb ‖ X̃_flow))`` (dropout
``p``; ``cbp.co2net.embed_dim`` wide, the authors' 2048) feed a classifier (dropout ``p``, conv3, LeakyReLU, dropout ``p``, conv1) over ``C + 1``
outputs, the last being background: the class activation sequence ``CAS [B, T, C + 1]``. The fused
attention is ``A = (A_rgb + A_flow) / 2``. ``cbp.co2net.pool_kernel > 1`` smooths CAS and the three
attentions with a zero-padded moving average (the authors' ActivityNet model ``ANT_CO2``; kernel
``(max_seqlen // 5) // 2 * 2 + 1 = 13`` for their ``max_seqlen`` 60).

**Loss (Sec. 3.4)**, :meth:`CO2Net.loss`, all means over valid frames only:

* ``L_mil``: multiple-instance learning on the raw CAS with background switched on — the video logits
  are the means of the top ``k = max(1, ⌊T_valid / topk_ratio⌋)`` frame logits of each output, and the
  loss is the cross-entropy of their softmax against the labels with background, normalised by
  ``(Σ y + 1e-4)`` as the authors do;
* ``L_supp``: the same on the attention-suppressed CAS ``A ⊙ (CAS − m) + m`` (``m``: each frame's
  minimum over the ``C + 1`` outputs) with background switched *off* (Eq. 8);
* ``L_co``: the co-activity similarity loss of W-TALC on the suppressed CAS and the fused features, over
  the batch's first ``pairs`` pairs of videos sharing a class (``data.similar_pairs``): per class,
  temporal-softmax-weighted high and low feature means, and hinge ``max(0, d(H1, H2) − d(H1, L2) + 0.5)``
  (and the symmetric term) on cosine distances, averaged over the pairs' shared classes;
* ``L_mut`` (mutual learning, Eq. 6): ``½ MSE(A_rgb, sg(A_flow)) + ½ MSE(A_flow, sg(A_rgb))``;
* ``L_norm``: the mean attention (sparsity), and ``L_guide``: the mean ``|1 − A − softmax(CAS)_bg|``,
  each averaged over ``A``, ``A_rgb`` and ``A_flow``.

``L = L_mil + L_supp + α3 L_co + α4 L_mut + α1 L_norm + α2 L_guide`` (α = 0.8, 0.8, 1, 1).

**Inference (the interface).** As the authors localise: ``loc = CAS_c ⊙ A`` (the class's CAS
weighted by the attention, the scores OIC averages), ``actionness = A`` (the signal thresholded at
``infer.theta_act``) and ``video`` = the softmax over the ``C + 1`` top-k means (``k = ⌊T_valid /
video_topk_ratio⌋``, 10) of ``CAS ⊙ A``, background column dropped.

``probs`` (pseudo-labels, ``L_kd``, pseudo-label mIoU) is ``A · softmax_c(CAS_1..C)``: the probability
that a frame is foreground (the attention) times the probability of each action class given that it
is one. Why this form: (1) in CO2-Net *where* an action is, is decided by the attention alone
(proposals are runs of ``A``; the background column only enters the loss through the guide term),
so ``probs`` must carry ``A`` for alternate training's ``L_kd`` to reach the part of the network that
localises — a softmax of the raw CAS would distil only into the classifier; (2) on background
frames ``A → 0`` gives ``probs → 0`` (a confident background pseudo-label), where a softmax of the
attention-weighted logits ``CAS ⊙ A`` would tend to the uniform ``1 / (C + 1)`` instead; (3) it stays
a proper probability in [0, 1] whose classes sum to ``A``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from wtalkit.config import CBPConfig
from wtalkit.errors import WtalError
from wtalkit.models.cbp import input_standardizer, topk_pool


def _leaky(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


def _zero_pad(x: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
    """``x [B, ch, T]`` with padded frames (``m [B, 1, T]`` 0) set to 0."""
    return x if m is None else x * m


def _kaiming_(module: nn.Module, fan_in: int | None = None) -> None:
    """The authors' initialisation: Kaiming-uniform weights (gain √2), zero bias."""
    fan_in = fan_in or module.weight[0].numel()
    bound = math.sqrt(6.0 / fan_in)
    with torch.no_grad():
        module.weight.uniform_(-bound, bound)
        if module.bias is not None:
            module.bias.zero_()


class ConsensusModule(nn.Module):
    """One CCM (paper Eqs. 1-4): filters the main modality with gates from both, returns ``(A, X̃)``."""

    def __init__(self, main_dim: int, aux_dim: int, attn_dim: int, gate_dropout: float = 0.5):
        super().__init__()
        self.global_gate = nn.Linear(main_dim, main_dim)
        self.local_gate = nn.Conv1d(aux_dim, main_dim, 3, padding=1)
        self.attn1 = nn.Conv1d(main_dim, attn_dim, 3, padding=1)
        self.attn2 = nn.Conv1d(attn_dim, attn_dim, 3, padding=1)
        self.attn_out = nn.Conv1d(attn_dim, 1, 1)
        self.drop = nn.Dropout(gate_dropout)
        _kaiming_(self.global_gate, fan_in=3 * main_dim)  # as the centre tap of a width-3 convolution
        for conv in (self.local_gate, self.attn1, self.attn2, self.attn_out):
            _kaiming_(conv)

    def forward(self, main: torch.Tensor, aux: torch.Tensor, m: torch.Tensor | None) -> tuple:
        """``main [B, Dm, T]``, ``aux [B, Da, T]`` (padded frames zero), ``m [B, 1, T]`` float or None ->
        ``(A [B, 1, T], X̃ [B, Dm, T])``."""
        if m is None:
            avg = main.mean(-1)
        else:
            avg = main.sum(-1) / m.sum(-1).clamp_min(1)
        g = self.drop(_leaky(self.global_gate(avg)))[..., None]  # [B, Dm, 1]
        local = self.drop(_leaky(self.local_gate(aux)))
        filtered = torch.sigmoid(local * g) * main
        h = _zero_pad(self.drop(_leaky(self.attn1(filtered))), m)
        h = _leaky(self.attn2(h))
        attn = torch.sigmoid(self.drop(self.attn_out(h)))
        return attn, filtered


class CO2Net(nn.Module):
    """The ``co2net`` CBP architecture (see the module docstring)."""

    arch = "co2net"

    def __init__(self, feat_dim: int, num_classes: int, cfg: CBPConfig | None = None):
        super().__init__()
        cfg = cfg or CBPConfig()
        c = cfg.co2net
        if not 0 < c.rgb_dim < feat_dim:
            raise WtalError(
                f"cbp.arch co2net needs RGB and flow halves: the 'cbp' features have {feat_dim} dims, "
                f"cbp.co2net.rgb_dim is {c.rgb_dim} (it must be smaller; the rest is flow)"
            )
        self.cfg, self.feat_dim, self.num_classes = c, feat_dim, num_classes
        self.standardize = input_standardizer(feat_dim, cfg)
        self.rgb_dim, flow_dim = c.rgb_dim, feat_dim - c.rgb_dim
        self.rgb_ccm = ConsensusModule(self.rgb_dim, flow_dim, c.attn_dim)
        self.flow_ccm = ConsensusModule(flow_dim, self.rgb_dim, c.attn_dim)
        self.fusion = nn.Conv1d(feat_dim, c.embed_dim, 1)
        self.cls_conv = nn.Conv1d(c.embed_dim, c.embed_dim, 3, padding=1)
        self.cls_out = nn.Conv1d(c.embed_dim, num_classes + 1, 1)  # the last output is background
        self.drop = nn.Dropout(c.dropout)
        for conv in (self.fusion, self.cls_conv, self.cls_out):
            _kaiming_(conv)

    # ---- forward -------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
        """``x [B, T, D]``, ``mask [B, T]`` (True = real snippet) ->

        ``cas [B, T, C + 1]`` (logits, last = background), ``attn [B, T]`` (= ``actionness``),
        ``rgb_attn`` / ``flow_attn [B, T]``, ``features [B, T, embed_dim]`` (fused), ``probs [B, T, C]``,
        ``loc [B, T, C]`` (``CAS ⊙ A``), ``video [B, C]``.
        """
        if self.standardize is not None:
            x = self.standardize(x, mask)
        m = None if mask is None else mask[:, None, :].to(x.dtype)  # [B, 1, T]
        feat = _zero_pad(x.transpose(1, 2), m)
        rgb, flow = feat[:, : self.rgb_dim], feat[:, self.rgb_dim :]
        a_rgb, f_rgb = self.rgb_ccm(rgb, flow, m)
        a_flow, f_flow = self.flow_ccm(flow, rgb, m)
        fused = _zero_pad(self.drop(_leaky(self.fusion(torch.cat([f_rgb, f_flow], 1)))), m)
        h = self.drop(_leaky(self.cls_conv(self.drop(fused))))
        cas = self.cls_out(h)
        if self.cfg.pool_kernel > 1:
            cas, a_rgb, a_flow = (self._smooth(t, m) for t in (cas, a_rgb, a_flow))
        attn = (a_rgb + a_flow) / 2
        cas, attn = cas.transpose(1, 2), attn[:, 0]
        weighted = cas * attn[..., None]
        return {
            "cas": cas,
            "attn": attn,
            "rgb_attn": a_rgb[:, 0],
            "flow_attn": a_flow[:, 0],
            "features": fused.transpose(1, 2),
            "probs": attn[..., None] * cas[..., :-1].softmax(-1),
            "loc": weighted[..., :-1],
            "actionness": attn,
            "video": topk_pool(weighted, mask, self.cfg.video_topk_ratio).softmax(-1)[:, :-1],
        }

    def _smooth(self, t: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
        """Moving average over ``pool_kernel`` frames, zero-padded (``count_include_pad``), as ANT_CO2."""
        k = self.cfg.pool_kernel
        return F.avg_pool1d(_zero_pad(t, m), k, 1, padding=k // 2, count_include_pad=True)

    # ---- loss ----------------------------------------------------------------------------------

    def loss(self, out: dict, mask: torch.Tensor | None, labels: torch.Tensor, pairs: int = 0) -> tuple:
        """CO2-Net's objective (module docstring) -> ``(total, {term: detached 0-dim tensor})``."""
        c = self.cfg
        cas, attn, a_rgb, a_flow = out["cas"], out["attn"], out["rgb_attn"], out["flow_attn"]
        labels = labels.to(cas.dtype)
        valid = torch.ones_like(attn) if mask is None else mask.to(attn.dtype)
        n_valid = valid.sum().clamp_min(1)

        def mean(t: torch.Tensor) -> torch.Tensor:
            return (t * valid).sum() / n_valid

        supp = suppressed_cas(cas, attn)
        mil = mil_topk_loss(cas, mask, labels, c.topk_ratio, background=True)
        mil_supp = mil_topk_loss(supp, mask, labels, c.topk_ratio, background=False)
        co = co_activity_loss(out["features"], supp[..., :-1], mask, labels, pairs)
        mutual = 0.5 * mean((a_rgb - a_flow.detach()) ** 2) + 0.5 * mean((a_flow - a_rgb.detach()) ** 2)
        bg = cas.softmax(-1)[..., -1]
        norm = (mean(attn) + mean(a_rgb) + mean(a_flow)) / 3
        guide = sum(mean((1 - a - bg).abs()) for a in (attn, a_rgb, a_flow)) / 3
        total = mil + mil_supp + c.alpha3 * co + c.alpha4 * mutual + c.alpha1 * norm + c.alpha2 * guide
        parts = {"mil": mil, "mil_supp": mil_supp, "co": co, "mutual": mutual, "norm": norm, "guide": guide}
        return total, {k: v.detach() for k, v in parts.items()}


def suppressed_cas(cas: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    """``A ⊙ (CAS − m) + m`` with ``m`` each frame's minimum over the outputs (paper Eq. 7)."""
    low = cas.min(-1, keepdim=True).values
    return attn[..., None] * (cas - low) + low


def mil_topk_loss(
    cas: torch.Tensor, mask: torch.Tensor | None, labels: torch.Tensor, ratio: float, background: bool
) -> torch.Tensor:
    """Top-k MIL cross-entropy on ``cas [B, T, C + 1]``; the background target is 1 or 0 (``background``).

    The target is the labels with background, divided by their sum + 1e-4 (the authors' normalisation).
    """
    bg = torch.full_like(labels[:, :1], 1.0 if background else 0.0)
    target = torch.cat([labels, bg], 1)
    target = target / (target.sum(1, keepdim=True) + 1e-4)
    return -(target * F.log_softmax(topk_pool(cas, mask, ratio), -1)).sum(1).mean()


def co_activity_loss(
    features: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor | None, labels: torch.Tensor, pairs: int
) -> torch.Tensor:
    """W-TALC's co-activity similarity loss over the batch's first ``pairs`` pairs ``(0, 1), (2, 3), ...``.

    ``features [B, T, D]``, ``scores [B, T, C]``: per video and class, the temporal softmax ``w`` of the
    scores over the valid frames gives a high-activity feature ``H = Σ w x`` and a low-activity one
    ``L = Σ (1 − w) x / max(n − 1, 1)``; with the cosine distance ``d``, each shared class of a pair adds
    ``½ max(0, d(H1, H2) − d(H1, L2) + ½) + ½ max(0, d(H1, H2) − d(H2, L1) + ½)``; the sum is divided
    by the number of shared classes (0 without pairs).
    """
    if pairs <= 0:
        return features.sum() * 0.0
    x, s, y = features[: 2 * pairs], scores[: 2 * pairs], labels[: 2 * pairs]
    if mask is None:
        valid = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    else:
        valid = mask[: 2 * pairs]
    w = s.masked_fill(~valid[..., None], float("-inf")).softmax(1)  # [2P, T, C]
    n = valid.sum(1).to(x.dtype).clamp_min(2) - 1  # max(n - 1, 1)
    high = torch.einsum("btd,btc->bcd", x, w)
    low = torch.einsum("btd,btc->bcd", x, (1 - w) * valid[..., None]) / n[:, None, None]

    def dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return 1 - (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-12)

    h1, h2, l1, l2 = high[0::2], high[1::2], low[0::2], low[1::2]
    d1 = dist(h1, h2)
    shared = y[0::2] * y[1::2]  # [P, C]
    hinge = 0.5 * F.relu(d1 - dist(h1, l2) + 0.5) + 0.5 * F.relu(d1 - dist(h2, l1) + 0.5)
    return (hinge * shared).sum() / shared.sum().clamp_min(1)
