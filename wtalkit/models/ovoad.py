"""OV-OAD: open-vocabulary online action detection learned from text.

Zhao et al., "Does Video-Text Pretraining Help Open-Vocabulary Online Action
Detection?" (NeurIPS 2024). The detector sees a sliding window of frozen CLIP
frame embeddings ending at the current frame and scores the current frame
against *any* list of class names through CLIP's text encoder, so classes
never seen in training can be detected (zero-shot).

Architecture (one window ``x: [B, W, D]``, ``W = 32`` frames at 4 fps, ``D``
the CLIP embedding size):

1. **Distant-neighbouring-frame transformer.** The window splits into
   ``W - N = 24`` distant-past frames and ``N = 8`` neighbouring frames. All
   are projected to ``width`` with learned positional encodings. The
   neighbouring tokens (queries) go through ``decoder_layers`` (4) pre-norm
   decoder layers: causal self-attention (token ``i`` sees neighbours
   ``<= i``), cross-attention to the distant-past tokens, MLP. The last
   neighbouring token is the *current-frame token*, aligned with text.
2. **Action clustering.** ``num_groups`` learnable group tokens are bound to
   the window's frame tokens (distant tokens + decoded neighbouring tokens)
   by ``cluster_layers`` object-centric decoder units: self-attention among
   groups, then slot attention whose softmax runs over the **groups** (for
   every frame the assignment weights over groups sum to 1; groups compete
   for frames), a weighted-mean update, MLP. ``group_layers`` transformer
   layers then mix the groups, and the final groups read out the
   frame-to-group assignment ``A[G, W]`` once more (same softmax over groups).
3. **Background mask.** The first ``bg_groups`` groups are background
   groups: a frame's background probability is its assignment weight to
   them (``bg_mask = sum_{g < bg_groups} A[g, t]``), supervised by a dice
   loss against annotated background frames.
4. **Text side.** CLIP's text encoder stays frozen; its (per-template)
   embeddings pass through a light residual MLP adapter
   ``t' = normalise(t + r * MLP(t))`` (``r = adapter_ratio``), then templates
   are averaged.
5. **Heads** (``head``) map the current-frame token and the groups into
   CLIP's space (L2-normalised):

   * ``pool`` (default): the tokens decide *which frames*, CLIP decides
     *what*. The frame embedding of neighbour ``i`` is an attention pooling
     of the window's CLIP frame embeddings at positions ``<= Wd + i``
     (queries: the decoded tokens, keys: the window tokens); a group's
     embedding is the assignment-weighted mean of the CLIP embeddings of its
     frames.
   * ``residual``: ``normalise(raw + MLP(token))`` with ``raw`` the CLIP
     embedding of the frame / the group's pooled frames, the MLP's last layer
     starting at zero.
   * ``projection``: ``normalise(MLP(token))``, the paper's projection heads.

   ``visual_adapter`` optionally passes the CLIP frame embeddings through a
   linear map (identity at init) before pooling.

Per-frame score (current frame, ``K`` classes + background, last)::

    p_group = softmax(s * <g_cur, T>)   g_cur: the current frame's group embedding
    p_frame = softmax(s * <f_cur, T>)   f_cur: the current-frame token embedding
    p_cls   = (p_group + alpha * p_frame) / (1 + alpha)
    probs   = [(1 - bg) * p_cls, bg]    bg = bg_mask at the current frame

Deviations from the paper (documented; the first is the one that matters):

* **The default ``pool`` heads.** Trained from the captions of a small
  vocabulary (20 classes in ``examples/ovoad_zero_shot.py``), projection
  heads learn to map every window onto one of the *seen* caption directions:
  the training loss falls fast (0.14 after 3 epochs, vs 2.3 for ``pool``),
  but unseen classes are then told apart *worse* than by raw CLIP. Group
  scores alone (no background mask) on the unseen vocabulary, per-frame mAP:
  ``projection`` 11.6, ``residual`` 14.8, ``pool`` 29.8; raw CLIP frame
  19.4. The paper avoids this with millions of diverse captions; with few
  captions, keeping the content in CLIP's space and learning only *where to
  look* (which frames make the current action, which are background)
  transfers. Full model, same data (``--ablation``): projection 23.1,
  residual 26.6, pool 52.7; CLIP baselines 19.4 (frame) / 19.7 (window).
* *The current frame's group* is the soft mixture of the foreground groups
  weighted by the frame's assignment (renormalised over foreground groups)
  rather than the arg-max group; it is differentiable and equal to the
  arg-max group when the assignment is confident. The paper's fusion is a sum
  of scores; here the two distributions are averaged (``alpha`` = 0.1 as in
  the paper) so the result stays a probability distribution.
* The background probability comes from the mask only; no background prompt
  is used (the ``background`` name given to the scorer is accepted for
  interface compatibility).
* Windows shorter than ``W`` (the first frames of a stream) are left-padded
  with zeros and a validity mask; padded frames are never attended to and
  never pooled, and a learned "null" memory token keeps cross-attention
  defined when the distant past is empty.

``OVOAD.forward`` is pure and batched; every output for the current frame
depends only on frames of the window, i.e. on frames ``<= t`` when the window
ends at ``t`` (:class:`OVOADScorer` streams exactly that way).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from wtalkit.errors import WtalError

CHECKPOINT_FORMAT = "wtalkit-ovoad"
CHECKPOINT_VERSION = 1
FEATURE_FPS = 4.0  # the frame rate the window (24 + 8 frames) is defined at
PROBE_TEXT = "a video of a person doing something."  # fingerprints the CLIP text encoder
HEADS = ("pool", "residual", "projection")


@dataclass
class OVOADConfig:
    """Model hyper-parameters (saved in every checkpoint)."""

    embed_dim: int = 512  # D: CLIP embedding size of the frame features and texts
    width: int = 256  # transformer width
    heads: int = 4
    window: int = 32  # W: frames per window (distant past + neighbouring)
    neighbours: int = 8  # N: neighbouring frames (decoder queries); the last is the current frame
    decoder_layers: int = 4
    num_groups: int = 8  # group tokens, background groups included
    bg_groups: int = 1  # the first bg_groups groups form the background mask
    cluster_layers: int = 2  # object-centric decoder units (group self-attn + slot attention)
    group_layers: int = 1  # transformer layers over the groups
    slot_temperature: float = 1.0  # softmax temperature of the slot attention (over groups)
    mlp_ratio: float = 2.0
    dropout: float = 0.1
    adapter_hidden: int = 0  # hidden size of the text adapter; 0 = embed_dim // 4
    adapter_ratio: float = 0.2  # r in t' = t + r * MLP(t)
    head: str = "pool"  # pool | residual | projection: how tokens become CLIP-space embeddings
    visual_adapter: bool = False  # a linear map (identity at init) on the input CLIP features
    alpha: float = 0.1  # weight of the current-frame token in the per-frame score
    logit_scale_init: float = 1 / 0.07
    logit_scale_max: float = 100.0

    def validate(self) -> OVOADConfig:
        checks = [
            (self.embed_dim >= 1 and self.width >= 1, "embed_dim and width must be >= 1"),
            (self.heads >= 1 and self.width % self.heads == 0, "width must be divisible by heads"),
            (1 <= self.neighbours <= self.window, "need 1 <= neighbours <= window"),
            (self.decoder_layers >= 1, "decoder_layers must be >= 1"),
            (0 <= self.bg_groups < self.num_groups, "need 0 <= bg_groups < num_groups"),
            (self.cluster_layers >= 1, "cluster_layers must be >= 1"),
            (self.group_layers >= 0, "group_layers must be >= 0"),
            (self.slot_temperature > 0, "slot_temperature must be positive"),
            (self.mlp_ratio > 0, "mlp_ratio must be positive"),
            (0 <= self.dropout < 1, "dropout must be in [0, 1)"),
            (self.adapter_hidden >= 0 and self.adapter_ratio >= 0, "adapter_hidden and adapter_ratio must be >= 0"),
            (self.alpha >= 0, "alpha must be >= 0"),
            (self.head in HEADS, f"head must be one of {', '.join(HEADS)}"),
            (0 < self.logit_scale_init <= self.logit_scale_max, "need 0 < logit_scale_init <= logit_scale_max"),
        ]
        for ok, msg in checks:
            if not ok:
                raise WtalError(f"invalid ovoad model config: {msg}")
        return self

    @classmethod
    def from_dict(cls, data, prefix: str = "model.") -> OVOADConfig:
        """Strict construction: unknown keys and ill-typed values are one-line errors."""
        from wtalkit.config import from_dict

        return from_dict(cls, data, prefix).validate()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- blocks


class Mlp(nn.Sequential):
    def __init__(self, dim: int, hidden: int, out: int | None = None, dropout: float = 0.0):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out or dim))


class Attention(nn.Module):
    """Multi-head attention with an explicit boolean ``allowed[B, Nq, Nk]`` mask."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x, mem=None, allowed=None):
        mem = x if mem is None else mem
        B, Nq, C = x.shape
        h = self.heads
        q = self.q(x).view(B, Nq, h, C // h).transpose(1, 2)
        k, v = self.kv(mem).view(B, mem.shape[1], 2, h, C // h).permute(2, 0, 3, 1, 4)
        mask = None if allowed is None else allowed[:, None]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(B, Nq, C))


class DecoderLayer(nn.Module):
    """Pre-norm: causal self-attention, cross-attention to the distant past, MLP."""

    def __init__(self, dim, heads, mlp_ratio, dropout):
        super().__init__()
        self.n1, self.n2, self.n3, self.nm = (nn.LayerNorm(dim) for _ in range(4))
        self.self_attn = Attention(dim, heads, dropout)
        self.cross_attn = Attention(dim, heads, dropout)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout=dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, q, mem, self_allowed, cross_allowed):
        q = q + self.drop(self.self_attn(self.n1(q), allowed=self_allowed))
        q = q + self.drop(self.cross_attn(self.n2(q), self.nm(mem), allowed=cross_allowed))
        return q + self.drop(self.mlp(self.n3(q)))


class EncoderLayer(nn.Module):
    """Pre-norm transformer layer (used over the groups)."""

    def __init__(self, dim, heads, mlp_ratio, dropout):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout=dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        x = x + self.drop(self.attn(self.n1(x)))
        return x + self.drop(self.mlp(self.n2(x)))


class GroupAssign(nn.Module):
    """Frame-to-group assignment ``A[B, G, W]``: a softmax over the *groups* (groups compete for frames)."""

    def __init__(self, dim: int, temperature: float = 1.0):
        super().__init__()
        self.q, self.k = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.scale = dim**-0.5 / temperature

    def forward(self, groups, frames):
        return (torch.einsum("bgc,bwc->bgw", self.q(groups), self.k(frames)) * self.scale).softmax(dim=1)


class SlotAttention(nn.Module):
    """Slot attention: :class:`GroupAssign`, then each group takes the weighted mean of its frames.

    Returns the update ``[B, G, C]`` and the assignment ``A[B, G, W]`` with
    ``A.sum(1) == 1`` for every frame (padded frames included; they are
    excluded from the update through ``valid``).
    """

    def __init__(self, dim: int, temperature: float = 1.0, eps: float = 1e-6):
        super().__init__()
        self.assign = GroupAssign(dim, temperature)
        self.v, self.proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.eps = eps

    def forward(self, groups, frames, valid):
        assign = self.assign(groups, frames)
        w = assign * valid[:, None, :].to(assign.dtype)
        update = torch.einsum("bgw,bwc->bgc", w, self.v(frames)) / (w.sum(-1, keepdim=True) + self.eps)
        return self.proj(update), assign


class ClusterUnit(nn.Module):
    """Object-centric decoder unit: group self-attention, slot attention, MLP."""

    def __init__(self, dim, heads, mlp_ratio, dropout, temperature):
        super().__init__()
        self.n1, self.n2, self.n3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads, dropout)
        self.slot = SlotAttention(dim, temperature)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout=dropout)

    def forward(self, groups, frames, valid):
        groups = groups + self.self_attn(self.n1(groups))
        update, assign = self.slot(self.n2(groups), frames, valid)
        groups = groups + update
        return groups + self.mlp(self.n3(groups)), assign


class ResidualHead(nn.Module):
    """Token -> CLIP space: ``normalise(raw + MLP(token))`` (MLP's last layer starts at 0), or
    ``normalise(MLP(token))`` without ``residual`` (a plain projection head)."""

    def __init__(self, width: int, out: int, residual: bool):
        super().__init__()
        self.residual = residual
        self.norm = nn.LayerNorm(width)
        self.mlp = Mlp(width, width, out)
        if residual:
            nn.init.zeros_(self.mlp[-1].weight)
            nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, tok, raw):
        y = self.mlp(self.norm(tok))
        return F.normalize(raw + y if self.residual else y, dim=-1)


class PoolHead(nn.Module):
    """Token -> CLIP space by attention pooling: ``normalise(sum_j a_ij raw_j)``.

    The token only chooses *which* frames to pool (causally: neighbour ``i``
    pools window positions ``<= Wd + i``); the content stays in CLIP's space.
    """

    def __init__(self, width: int):
        super().__init__()
        self.nq, self.nk = nn.LayerNorm(width), nn.LayerNorm(width)
        self.q, self.k = nn.Linear(width, width), nn.Linear(width, width)
        self.scale = width**-0.5

    def forward(self, q, keys, raw, allowed):
        logits = torch.einsum("bnc,bwc->bnw", self.q(self.nq(q)), self.k(self.nk(keys))) * self.scale
        w = logits.masked_fill(~allowed, float("-inf")).softmax(-1)
        return F.normalize(torch.einsum("bnw,bwd->bnd", w, raw), dim=-1)


class TextAdapter(nn.Module):
    """Residual MLP on frozen CLIP text embeddings: ``normalise(t + r * MLP(t))``."""

    def __init__(self, dim: int, hidden: int, ratio: float):
        super().__init__()
        self.ratio = ratio
        self.mlp = Mlp(dim, hidden)

    def forward(self, t):
        t = F.normalize(t, dim=-1)
        return F.normalize(t + self.ratio * self.mlp(t), dim=-1)


# --------------------------------------------------------------------------- model


class OVOAD(nn.Module):
    def __init__(self, cfg: OVOADConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        C, D = cfg.width, cfg.embed_dim
        self.in_proj = nn.Sequential(nn.Linear(D, C), nn.LayerNorm(C))
        self.pos = nn.Parameter(torch.randn(cfg.window, C) * 0.02)
        self.null_mem = nn.Parameter(torch.randn(1, 1, C) * 0.02)
        self.decoder = nn.ModuleList(
            DecoderLayer(C, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.decoder_layers)
        )
        self.frame_norm = nn.LayerNorm(C)
        self.group_tokens = nn.Parameter(torch.randn(cfg.num_groups, C) * C**-0.5)
        self.cluster = nn.ModuleList(
            ClusterUnit(C, cfg.heads, cfg.mlp_ratio, cfg.dropout, cfg.slot_temperature)
            for _ in range(cfg.cluster_layers)
        )
        self.group_encoder = nn.ModuleList(
            EncoderLayer(C, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.group_layers)
        )
        self.readout_norm = nn.LayerNorm(C)
        self.readout = GroupAssign(C, cfg.slot_temperature)
        if cfg.head == "pool":
            self.frame_head = PoolHead(C)
        else:
            self.frame_head = ResidualHead(C, D, cfg.head == "residual")
            self.group_head = ResidualHead(C, D, cfg.head == "residual")
        self.visual_adapter = nn.Linear(D, D) if cfg.visual_adapter else None
        if self.visual_adapter is not None:
            nn.init.eye_(self.visual_adapter.weight)
            nn.init.zeros_(self.visual_adapter.bias)
        self.text_adapter = TextAdapter(D, cfg.adapter_hidden or max(1, D // 4), cfg.adapter_ratio)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(cfg.logit_scale_init)))

    @property
    def distant(self) -> int:
        return self.cfg.window - self.cfg.neighbours

    def scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=self.cfg.logit_scale_max)

    def encode_text(self, text_emb: torch.Tensor) -> torch.Tensor:
        """Adapted class embeddings from frozen CLIP text embeddings.

        ``[K, D]`` -> ``[K, D]``; ``[K, P, D]`` (P prompt templates per class)
        -> the normalised mean over templates of the adapted embeddings.
        """
        t = self.text_adapter(text_emb)
        if t.dim() == 3:
            t = F.normalize(t.mean(1), dim=-1)
        return t

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> dict:
        """Encode windows ``x[B, W, D]`` (``valid[B, W]`` marks real frames; default all).

        Returns a dict (embeddings are L2-normalised, in CLIP's space):
        ``frame_emb [B, N, D]`` neighbouring-token embeddings (the last is
        ``current_emb [B, D]``), ``group_emb [B, G, D]``, ``assign [B, G, W]``
        (softmax over groups), ``bg_mask [B, W]``, ``current_group_emb [B, D]``,
        ``valid [B, W]``.
        """
        cfg = self.cfg
        B, W, D = x.shape
        if cfg.window != W or cfg.embed_dim != D:
            raise WtalError(f"OV-OAD expects windows of [{cfg.window}, {cfg.embed_dim}], got [{W}, {D}]")
        if valid is None:
            valid = torch.ones(B, W, dtype=torch.bool, device=x.device)
        valid = valid.bool()
        x = x * valid[..., None].to(x.dtype)
        tok = self.in_proj(x) + self.pos
        Wd, N = self.distant, cfg.neighbours
        mem = torch.cat([self.null_mem.expand(B, 1, -1), tok[:, :Wd]], 1)
        q = tok[:, Wd:]
        # A neighbour sees neighbours <= itself that are real frames, and always itself
        # (so a padded query's row is never empty); cross-attention sees real distant
        # frames plus the always-present null token.
        nv = valid[:, Wd:]
        causal = torch.ones(N, N, dtype=torch.bool, device=x.device).tril()
        eye = torch.eye(N, dtype=torch.bool, device=x.device)
        self_allowed = causal & (nv[:, None, :] | eye)
        cross_allowed = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=x.device), valid[:, :Wd]], 1)
        cross_allowed = cross_allowed[:, None, :].expand(B, N, Wd + 1)
        for layer in self.decoder:
            q = layer(q, mem, self_allowed, cross_allowed)
        q = self.frame_norm(q)

        raw = F.normalize(x, dim=-1)  # zeros stay zeros for padded frames
        if self.visual_adapter is not None:
            raw = F.normalize(self.visual_adapter(raw), dim=-1) * valid[..., None].to(x.dtype)
        if cfg.head == "pool":
            # Neighbour i pools real window positions <= Wd + i (always itself).
            pos = torch.arange(W, device=x.device)
            allowed = (pos[None, :] <= Wd + torch.arange(N, device=x.device)[:, None])[None] & valid[:, None, :]
            allowed = allowed | (pos[None, None, :] == (Wd + torch.arange(N, device=x.device))[None, :, None])
            frame_emb = self.frame_head(q, torch.cat([tok[:, :Wd], q], 1), raw, allowed)
        else:
            frame_emb = self.frame_head(q, raw[:, Wd:])

        frames = torch.cat([tok[:, :Wd], q], 1)
        groups = self.group_tokens.expand(B, -1, -1)
        for unit in self.cluster:
            groups, _ = unit(groups, frames, valid)
        for layer in self.group_encoder:
            groups = layer(groups)
        # The final groups read the assignment out once more: it defines the background
        # mask, the current frame's group and (``pool``) what each group pools.
        assign = self.readout(self.readout_norm(groups), frames)
        w = assign * valid[:, None, :].to(assign.dtype)
        raw_groups = torch.einsum("bgw,bwd->bgd", w, raw) / (w.sum(-1, keepdim=True) + 1e-6)
        if cfg.head == "pool":
            group_emb = F.normalize(raw_groups, dim=-1)
        else:
            group_emb = self.group_head(groups, raw_groups)

        nb = cfg.bg_groups
        bg_mask = assign[:, :nb].sum(1) if nb else torch.zeros_like(assign[:, 0])
        fg_w = assign[:, nb:, -1]
        fg_w = fg_w / fg_w.sum(1, keepdim=True).clamp_min(1e-6)
        current_group = F.normalize(torch.einsum("bg,bgd->bd", fg_w, group_emb[:, nb:]), dim=-1)
        return {
            "frame_emb": frame_emb,
            "current_emb": frame_emb[:, -1],
            "group_emb": group_emb,
            "assign": assign,
            "bg_mask": bg_mask,
            "current_group_emb": current_group,
            "valid": valid,
        }

    def class_probs(self, out: dict, text: torch.Tensor) -> torch.Tensor:
        """Current-frame probabilities ``[B, K + 1]`` (background last) for adapted texts ``[K, D]``."""
        s = self.scale()
        p_group = (s * out["current_group_emb"] @ text.T).softmax(-1)
        p_frame = (s * out["current_emb"] @ text.T).softmax(-1)
        a = self.cfg.alpha
        p_cls = (p_group + a * p_frame) / (1 + a)
        bg = out["bg_mask"][:, -1:].clamp(0, 1)
        return torch.cat([(1 - bg) * p_cls, bg], -1)


# --------------------------------------------------------------------------- windows


def make_windows(feats: torch.Tensor, ends, window: int):
    """Windows ending at frames ``ends`` of one video ``feats[T, D]``: ``([n, W, D], valid[n, W])``.

    Frames before the video start are zeros with ``valid = False``.
    """
    ends = torch.as_tensor(ends, dtype=torch.long)
    T, D = feats.shape
    padded = torch.cat([feats.new_zeros(window - 1, D), feats], 0)
    idx = ends[:, None] + torch.arange(window)[None, :]  # into padded
    valid = idx >= window - 1
    return padded[idx], valid


def score_frames(model: OVOAD, feats, text: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Per-frame probabilities ``[T, K + 1]`` of a whole video, each from the window ending at it.

    Identical to streaming the frames through :class:`OVOADScorer` (batched for speed).
    """
    feats = torch.as_tensor(np.asarray(feats, dtype=np.float32))
    out = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for s in range(0, len(feats), batch_size):
                x, v = make_windows(feats, torch.arange(s, min(s + batch_size, len(feats))), model.cfg.window)
                out.append(model.class_probs(model(x, v), text))
    finally:
        model.train(was_training)
    return torch.cat(out).numpy()


# --------------------------------------------------------------------------- checkpoints


def clip_text_templates(clip_model, classnames: list, templates: list) -> torch.Tensor:
    """Frozen CLIP text embeddings ``[K, P, D]`` for every class x template."""
    from wtalkit.models.clip import encode_template_texts

    return encode_template_texts(clip_model, classnames, templates).float().cpu()


def clip_probe(clip_model) -> torch.Tensor:
    """A fingerprint of the text encoder: the embedding of a fixed sentence."""
    from wtalkit.models.clip import encode_texts

    return encode_texts(clip_model, [PROBE_TEXT])[0].float().cpu()


def checkpoint_dict(model: OVOAD, clip_spec: str, probe: torch.Tensor, extra: dict | None = None) -> dict:
    """What a checkpoint holds: config, CLIP spec + fingerprint, trainable weights (no CLIP)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model_config": model.cfg.to_dict(),
        "clip": str(clip_spec),
        "clip_probe": probe.detach().cpu().clone(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "feature_fps": FEATURE_FPS,
        **(extra or {}),
    }


def load_ovoad(path) -> tuple[OVOAD, dict]:
    """Load an OV-OAD checkpoint -> ``(model in eval mode, checkpoint dict)``; bad files are WtalErrors."""
    from wtalkit import io as wio

    ck = wio.load_torch(path, "OV-OAD checkpoint")
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise WtalError(f"{path}: not an OV-OAD checkpoint (no '{CHECKPOINT_FORMAT}' format tag)")
    if ck.get("version") != CHECKPOINT_VERSION:
        raise WtalError(
            f"{path}: OV-OAD checkpoint version {ck.get('version')} is not supported (expected {CHECKPOINT_VERSION})"
        )
    if not isinstance(ck.get("model_config"), dict) or not isinstance(ck.get("state_dict"), dict):
        raise WtalError(f"{path}: OV-OAD checkpoint lacks its model config or weights")
    cfg = OVOADConfig.from_dict(ck["model_config"], "model_config.")
    model = OVOAD(cfg)
    try:
        model.load_state_dict(ck["state_dict"])
    except (KeyError, RuntimeError) as e:
        raise WtalError(
            f"{path}: checkpoint weights do not match its config ({str(e).splitlines()[0][:160]})"
        ) from None
    return model.eval(), ck
