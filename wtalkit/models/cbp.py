"""The CBP branch: classification-based pre-trained features -> frame class probabilities.

**The CBP interface.** Every CBP architecture (``cbp.arch``: ``transformer`` here,
:mod:`wtalkit.models.co2net`, :mod:`wtalkit.models.um`; built by
:func:`wtalkit.models.build.build_cbp`) is an ``nn.Module`` built as
``Arch(feat_dim, num_classes, cfg.cbp)`` with a class attribute ``arch``, an attribute
``standardize`` (:func:`input_standardizer`: ``None``, or the :class:`InputStandardizer` its
``forward`` applies first and warm-up fits) and

* ``forward(x [B, T, D], mask [B, T] | None) -> dict``, pure, holding at least

  - ``probs [B, T, C]``: frame class probabilities in [0, 1] (pseudo-labels, ``L_kd``, pseudo-label mIoU,
    and the scores proposals are cut from);
  - ``features [B, T, H]``: frame embeddings (``L_fb``);
  - ``video [B, C]``: video class scores in [0, 1] (padded frames never count);

  and optionally ``loc [B, T, C]`` (the scores a proposal is scored with, default ``probs``) and
  ``actionness [B, T]`` (class-agnostic foreground in [0, 1], thresholded at ``infer.theta_act``),
  plus whatever the architecture's own loss needs;
* ``loss(out, mask, labels [B, C], pairs=0) -> (total, {term: detached 0-dim tensor})``: its
  weakly-supervised training objective on video labels (``pairs``: the batch starts with that many
  pairs of videos sharing a class, ``data.similar_pairs``).

Warm-up trains ``loss``; alternate training's F step adds ``L_kd + λ·L_fb`` on ``probs`` and
``features``; localization reads ``probs``/``loc``/``actionness``/``video``.

**The transformer architecture** (wtalkit's reading of the paper). Input: snippet features ``[B, T, D]`` (I3D RGB ‖ flow / Kinetics video models; the
dataset's ``cbp`` stream). The features are LayerNorm-ed and pass through feature
dropout, then a linear + temporal-conv embedding, a stack of pre-norm transformer
blocks (multi-head self-attention, LayerNorm, MLP) and a per-frame linear classifier
over ``C + 1`` outputs: the ``C`` action classes and one *background* class. Frame
probabilities ``P_cb [B, T, C]`` are the softmax over the ``C + 1`` outputs with the
background column dropped, so a frame is an action only where it beats background.

Training (:func:`mil_loss`) is multiple-instance learning with video labels only: the video logit of
each of the ``C + 1`` outputs is the mean of its top-k frame logits
(``k = max(1, T_valid // topk_ratio)``), and the loss is the cross-entropy between
their softmax and the video label with background added (every untrimmed video has
background frames), normalised to sum to one.

Why this form (measured on 2,048-dim I3D-shaped features, see the README's "CBP
branch" section): without input normalisation the large shared mean of non-negative
I3D features left training at chance; with independent per-class sigmoids and a
bottom-k background term nothing tells the model *which* frames are background, and
on high-dimensional inputs it fits the few training videos by what identifies each
video instead of by its action frames (100 % train, chance-level test). The
background class, competing with every action class at every frame, and feature
dropout remove both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wtalkit.config import CBPConfig


class InputStandardizer(nn.Module):
    """``(x - mean) / std`` per feature dimension (``cbp.input_norm: standardize``); padded frames stay 0.

    ``mean`` and ``std`` are buffers: warm-up measures them on the training split
    (:meth:`wtalkit.data.loader.FeatureBank.moments`) and :meth:`fit` stores them, so they travel in
    the checkpoint and every command that loads the branch (``alternate``, ``localize``,
    ``pseudolabel``) applies the same transform. A dimension that is constant on the training
    split is divided by 1.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, mean, std) -> None:
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if mean.shape != self.mean.shape or std.shape != self.std.shape:
            raise ValueError(f"standardisation statistics of {mean.numel()} dims for {self.mean.numel()}-dim features")
        self.mean.copy_(mean)
        self.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        y = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return y if mask is None else y * mask[..., None].to(y.dtype)


def input_standardizer(feat_dim: int, cfg: CBPConfig) -> InputStandardizer | None:
    """The standardisation every CBP architecture applies first (None for ``cbp.input_norm: none``)."""
    return InputStandardizer(feat_dim) if cfg.input_norm == "standardize" else None


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

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + self.drop(self.proj(h.transpose(1, 2).reshape(B, T, D)))
        return x + self.drop(self.mlp(self.norm2(x)))


class CBPBranch(nn.Module):
    """The ``transformer`` CBP architecture (see the module docstring)."""

    arch = "transformer"

    def __init__(self, feat_dim: int, num_classes: int, cfg: CBPConfig | None = None):
        super().__init__()
        cfg = cfg or CBPConfig()
        self.feat_dim, self.num_classes, self.topk_ratio = feat_dim, num_classes, cfg.topk_ratio
        h = cfg.hidden_dim
        self.standardize = input_standardizer(feat_dim, cfg)
        self.in_norm = nn.LayerNorm(feat_dim)
        self.in_drop = nn.Dropout(cfg.input_dropout)
        self.embed = nn.Linear(feat_dim, h)
        # A depthwise temporal convolution gives the blocks local order without absolute positions,
        # so a model trained on T-snippet crops applies unchanged to whole videos of any length.
        self.attn_window = cfg.attn_window
        self.local = nn.Conv1d(h, h, kernel_size=cfg.conv_kernel, padding=cfg.conv_kernel // 2, groups=h)
        self.blocks = nn.ModuleList(
            TransformerBlock(h, cfg.num_heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.num_layers)
        )
        self.norm = nn.LayerNorm(h)
        self.classifier = nn.Linear(h, num_classes + 1)  # the last output is background

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
        """``x [B, T, D]``, ``mask [B, T]`` (True = real snippet) ->

        ``logits [B, T, C + 1]`` (last = background), ``probs [B, T, C]``, ``features [B, T, H]``,
        ``video [B, C]``.
        """
        if self.standardize is not None:
            x = self.standardize(x, mask)
        h = self.embed(self.in_drop(self.in_norm(x)))
        if mask is not None:
            h = h * mask[..., None]
        h = h + self.local(h.transpose(1, 2)).transpose(1, 2)
        attn_mask = attention_mask(mask, x.shape[1], self.attn_window, x.device)
        for blk in self.blocks:
            h = blk(h, mask, attn_mask)
        h = self.norm(h)
        logits = self.classifier(h)
        return {
            "logits": logits,
            "probs": logits.softmax(-1)[..., :-1],
            "features": h,
            "video": self.video_scores(logits, mask),
        }

    def loss(self, out: dict, mask: torch.Tensor | None, labels: torch.Tensor, pairs: int = 0) -> tuple:
        """The MIL loss (:func:`mil_loss`); ``pairs`` is not used by this architecture."""
        cls = mil_loss(out["logits"].float(), mask, labels, self.topk_ratio)
        return cls, {"cls": cls.detach()}

    def video_scores(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Video-level class scores ``[B, C]`` in [0, 1]: softmax over the classes' top-k pooled logits.

        Background is left out: it is present in every video and says nothing about which action is.
        """
        return topk_pool(logits[..., :-1], mask, self.topk_ratio).softmax(-1)


def local_window(T: int, window: int, device) -> torch.Tensor | None:
    """``[T, T]`` bool, True where two snippets are within ``window // 2`` of each other: the band of local
    self-attention (ActionFormer-style) of both branches' temporal transformers. None when ``window <= 0``
    (global attention) or the window covers the whole sequence."""
    if window <= 0 or window >= T:
        return None
    idx = torch.arange(T, device=device)
    return (idx[:, None] - idx[None, :]).abs() <= window // 2


def attention_mask(mask: torch.Tensor | None, T: int, window: int, device) -> torch.Tensor | None:
    """The boolean ``[B | 1, 1, T, T]`` attention mask (True = may attend) of the CBP transformer.

    Keys are the real snippets (``mask``) and, with ``window > 0``, only those within ``window // 2``
    snippets of the query (local attention). Every snippet may attend to itself, so no row is empty.
    """
    allowed = local_window(T, window, device)
    if allowed is None:
        return None if mask is None else mask[:, None, None, :]
    if mask is not None:
        allowed = (allowed[None] & mask[:, None, :]) | torch.eye(T, dtype=torch.bool, device=device)[None]
        return allowed[:, None]
    return allowed[None, None]


def topk_width(T: int, ratio: float) -> int:
    """The static width ``max(1, ⌊T / ratio⌋)`` (at most ``T``) that covers every video's top-k in a batch of length T."""
    return min(T, max(1, int(T // ratio)))


def topk_counts(mask: torch.Tensor, ratio: float) -> torch.Tensor:
    """Each video's ``k = max(1, ⌊T_valid / ratio⌋)`` from ``mask [B, T]``, int64, on the device."""
    return torch.clamp(torch.floor(mask.sum(1).to(torch.float64) / ratio), min=1).long()


def topk_pool(values: torch.Tensor, mask: torch.Tensor | None, ratio: float, largest: bool = True) -> torch.Tensor:
    """Mean of each column's ``k = max(1, ⌊T_valid / ratio⌋)`` largest frames: ``[B, T, K] -> [B, K]``.

    The one top-k pooling of every CBP architecture (MIL video scores, CO2-Net, UM). Each video uses
    its own k from its number of valid frames; padded frames never count. ``largest=False`` pools the
    bottom k instead. No value is read back to the host: the pooled width is ``⌊T / ratio⌋``, from
    the static shape, and each video keeps its first k ranks.
    """
    kmax = topk_width(values.shape[1], ratio)
    if mask is None:
        return values.topk(kmax, dim=1, largest=largest).values.mean(1)
    k = topk_counts(mask, ratio).to(values.dtype)  # [B]
    filled = values.masked_fill(~mask[..., None], float("-inf") if largest else float("inf"))
    top = filled.topk(kmax, dim=1, largest=largest).values  # [B, kmax, K]
    keep = torch.arange(kmax, device=values.device)[None, :] < k[:, None]  # [B, kmax]
    top = torch.where(keep[..., None], top, torch.zeros_like(top))
    return top.sum(1) / k[:, None]


def mil_loss(logits: torch.Tensor, mask: torch.Tensor | None, labels: torch.Tensor, ratio: int) -> torch.Tensor:
    """The MIL classification loss on frame logits ``[B, T, C + 1]`` (last = background), labels ``[B, C]``.

    Cross-entropy between the softmax of the top-k pooled video logits and the video label with
    background switched on, normalised to a distribution.
    """
    target = torch.cat([labels.to(logits.dtype), torch.ones_like(labels[:, :1], dtype=logits.dtype)], dim=1)
    target = target / target.sum(1, keepdim=True)
    video = topk_pool(logits, mask, ratio)
    return -(target * F.log_softmax(video, dim=-1)).sum(1).mean()
