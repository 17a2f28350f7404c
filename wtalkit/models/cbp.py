"""The CBP branch: classification-based pre-trained features -> frame class probabilities.

Input: snippet features ``[B, T, D]`` (I3D / Kinetics video models; the
dataset's ``cbp`` stream). A linear+temporal-conv embedding, a stack of
pre-norm transformer blocks (multi-head self-attention, LayerNorm, MLP) and a
per-frame linear classifier give logits ``[B, T, C]``; frame probabilities are
their sigmoids (``P_cb``). The branch is trained by multiple-instance learning:
the video score of class ``c`` is the mean of its top-k frame logits
(``k = max(1, T_valid // topk_ratio)``) passed through a sigmoid, and the
classification loss is the binary cross-entropy against the video-level labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wtalkit.config import CBPConfig


class TransformerBlock(nn.Module):
    """Pre-norm block: x + MHSA(LN(x)); x + MLP(LN(x)). Padded frames are masked out as keys.

    Attention is ``scaled_dot_product_attention`` (fused kernels on CPU and GPU). There is no
    dropout on the ``[T, T]`` attention weights: on CPU, sampling that mask costs more than the
    attention itself; dropout acts on the residual branches instead.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        attn_mask = None if mask is None else mask[:, None, None, :]  # True = may attend
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + self.drop(self.proj(h.transpose(1, 2).reshape(B, T, D)))
        return x + self.drop(self.mlp(self.norm2(x)))


class CBPBranch(nn.Module):
    def __init__(self, feat_dim: int, num_classes: int, cfg: CBPConfig | None = None):
        super().__init__()
        cfg = cfg or CBPConfig()
        self.feat_dim, self.num_classes, self.topk_ratio = feat_dim, num_classes, cfg.topk_ratio
        h = cfg.hidden_dim
        self.in_drop = nn.Dropout(cfg.dropout)
        self.embed = nn.Linear(feat_dim, h)
        # A depthwise temporal convolution gives the blocks local order without absolute positions,
        # so a model trained on T-snippet crops applies unchanged to whole videos of any length.
        self.local = nn.Conv1d(h, h, kernel_size=3, padding=1, groups=h)
        self.blocks = nn.ModuleList(
            TransformerBlock(h, cfg.num_heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.num_layers))
        self.norm = nn.LayerNorm(h)
        self.classifier = nn.Linear(h, num_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
        """``x [B, T, D]``, ``mask [B, T]`` (True = real snippet) -> probs/logits ``[B, T, C]``, features ``[B, T, H]``."""
        h = self.embed(self.in_drop(x))
        if mask is not None:
            h = h * mask[..., None]
        h = h + self.local(h.transpose(1, 2)).transpose(1, 2)
        for blk in self.blocks:
            h = blk(h, mask)
        h = self.norm(h)
        logits = self.classifier(h)
        return {"logits": logits, "probs": torch.sigmoid(logits), "features": h}

    def video_logits(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return topk_pool(logits, mask, self.topk_ratio)


def topk_pool(logits: torch.Tensor, mask: torch.Tensor | None, ratio: int, largest: bool = True) -> torch.Tensor:
    """Mean of the top ``k = max(1, T_valid // ratio)`` frame logits per class: ``[B, T, C] -> [B, C]``.

    Each video uses its own k from its number of valid frames; padded frames never count.
    ``largest=False`` pools the bottom k instead.
    """
    B, T, C = logits.shape
    if mask is None:
        mask = torch.ones(B, T, dtype=torch.bool, device=logits.device)
    valid = mask.sum(1)  # [B]
    k = torch.clamp(valid // ratio, min=1)  # [B]
    filled = logits.masked_fill(~mask[..., None], float("-inf") if largest else float("inf"))
    kmax = int(k.max())
    top, _ = filled.topk(kmax, dim=1, largest=largest)  # [B, kmax, C]
    keep = (torch.arange(kmax, device=logits.device)[None, :] < k[:, None]).to(logits.dtype)  # [B, kmax]
    top = torch.where(keep[..., None] > 0, top, torch.zeros_like(top))
    return top.sum(1) / k[:, None].to(logits.dtype)


def mil_loss(logits: torch.Tensor, mask: torch.Tensor | None, labels: torch.Tensor, ratio: int) -> torch.Tensor:
    """The classification loss on frame logits ``[B, T, C]`` with video labels ``[B, C]``.

    * top-k MIL: BCE between the sigmoid of the top-k mean logit and the video label;
    * bottom-k background term: for each class *present* in a video, the mean of its
      bottom-k frame logits is pushed to 0 (BCE against 0). An untrimmed video always
      has frames where its action is absent; without this term, sigmoid MIL leaves
      background frames of positive videos near 0.5, and the CBP branch loses the
      high true-negative rate the method relies on.
    """
    labels = labels.to(logits.dtype)
    top = topk_pool(logits, mask, ratio)
    cls = F.binary_cross_entropy_with_logits(top, labels)
    bottom = topk_pool(logits, mask, ratio, largest=False)
    bg = F.binary_cross_entropy_with_logits(bottom, torch.zeros_like(bottom), weight=labels, reduction="sum")
    return cls + bg / labels.sum().clamp_min(1.0)
