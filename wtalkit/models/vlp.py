"""The VLP branch: frozen CLIP + learnable prompts + a light temporal transformer.

Visual stream
    Frozen CLIP frame features ``F_vis [B, T, D]`` (the dataset's ``vlp``
    stream) go through ``Φ_temp``, a stack of pre-norm transformer blocks
    whose output projections are zero-initialised: at initialisation
    ``F_vid == F_vis`` exactly, so training starts from the zero-shot CLIP
    model and only learns a temporal correction. Positions are given by a
    sinusoidal encoding added to the *queries and keys* of each block (not to
    the residual stream, which keeps the identity start and lets a model
    trained on ``T``-snippet crops run on whole videos of any length).

Textual stream
    The real CLIP text encoder (token embedding, positional embedding,
    causal transformer, final LayerNorm, projection; all frozen) reads, per
    class, the embedding sequence::

        [SOT, p_1 .. p_a, name tokens, p_a+1 .. p_n, EOT, padding]

    where ``p_i`` are ``n_prompts`` learnable vectors shared by all classes
    (``a = n_prompts // 2`` before the name, the rest after; CoOp's "unified
    context" with the class token in the middle, as in Ju et al. ECCV 2022).
    The class feature is read at the EOT position, which moves with the
    length of the class name; it is computed per class, never with
    ``argmax`` over token ids (the prompts have no ids). With
    ``n_prompts == 0`` the sequence is exactly ``clip.tokenize(name)`` and
    the features equal ``clip_model.encode_text`` (a test checks this).

Scores
    ``P_vl = softmax(s · cos(F_vid, F_txt))`` over classes, with CLIP's own
    frozen logit scale ``s = logit_scale.exp()`` (100 for released models).

Checkpoints
    Only the prompts and ``Φ_temp`` are trained. The CLIP model is kept in a
    plain (unregistered) attribute, so it is neither in ``parameters()`` (the
    optimiser never sees it) nor in ``state_dict()`` (a checkpoint holds a few
    MB, not CLIP's 600 MB); ``state_dict`` carries instead an ``_extra_state``
    entry with the CLIP spec string and class names, and whoever loads the
    checkpoint reloads CLIP from that spec. ``.to()/.cuda()/.float()`` are
    forwarded to CLIP by overriding ``_apply``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from wtalkit.config import VLPConfig
from wtalkit.errors import WtalError
from wtalkit.models.cbp import local_window


def sinusoidal_positions(length: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """The Transformer's fixed sinusoidal encoding ``[length, dim]`` (any length, any even or odd dim)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    half = (dim + 1) // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=device, dtype=torch.float32) / max(half, 1))
    ang = pos * freq[None, :]
    pe = torch.cat([ang.sin(), ang.cos()], dim=1)[:, :dim]
    return pe.to(dtype)


class TemporalBlock(nn.Module):
    """Pre-norm block ``x + Drop(Attn(LN(x))); x + Drop(MLP(LN(x)))``, output projections zero-initialised.

    Positions enter the attention's queries and keys only (DETR style), so a
    freshly built block is the identity on its input.
    """

    def __init__(self, dim: int, heads: int, dropout: float, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        # Dropout acts on the residual branches, not on the attention probabilities: with no attention
        # dropout PyTorch runs a fused attention kernel that never materialises the [B, H, T, T]
        # matrices (at B=10, T=1000 that saves ~1 GB and half the time per layer on CPU).
        self.attn = nn.MultiheadAttention(dim, heads, dropout=0.0, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.drop = nn.Dropout(dropout)
        nn.init.zeros_(self.attn.out_proj.weight)
        nn.init.zeros_(self.attn.out_proj.bias)
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(
        self, x: torch.Tensor, pos: torch.Tensor, key_padding: torch.Tensor | None, band: torch.Tensor | None = None
    ) -> torch.Tensor:
        h = self.norm1(x)
        qk = h + pos
        h, _ = self.attn(qk, qk, h, key_padding_mask=key_padding, attn_mask=band, need_weights=False)
        x = x + self.drop(h)
        return x + self.drop(self.mlp(self.norm2(x)))


class TemporalTransformer(nn.Module):
    """``Φ_temp``: ``[B, T, D] -> [B, T, D]``, the identity at initialisation."""

    def __init__(self, dim: int, layers: int, heads: int, dropout: float, window: int = 0):
        super().__init__()
        self.window = window
        if layers > 0 and dim % heads != 0:
            raise WtalError(f"vlp.temporal_heads ({heads}) must divide the CLIP embedding dimension ({dim})")
        self.blocks = nn.ModuleList(TemporalBlock(dim, heads, dropout) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if not self.blocks:
            return x
        key_padding = None
        if mask is not None and not bool(mask.all()):  # an all-valid mask would only slow attention down
            # A fully padded sequence would make every attention row -inf (NaN); let it attend to itself.
            key_padding = ~mask & mask.any(dim=1, keepdim=True)
        pos = sinusoidal_positions(x.shape[1], x.shape[2], x.device, x.dtype)[None]
        band = local_window(x.shape[1], self.window, x.device)  # local attention (ActionFormer-style window)
        band = None if band is None else ~band  # nn.MultiheadAttention: True = may not attend
        for blk in self.blocks:
            x = blk(x, pos, key_padding, band)
        return x


class PromptTextEncoder(nn.Module):
    """Class names + shared learnable prompts -> CLIP text features ``[C, D]`` (frozen encoder).

    The CLIP model is passed to :meth:`forward`, not stored, so this module
    holds only the prompt vectors (and non-persistent index buffers).
    """

    def __init__(self, clip_model, classnames: list, n_prompts: int, init_std: float):
        super().__init__()
        from wtalkit.models.clip import _import_clip

        clip = _import_clip()
        if not classnames:
            raise WtalError("the VLP branch needs at least one class name")
        ctx_len = int(clip_model.positional_embedding.shape[0])
        width = int(clip_model.token_embedding.weight.shape[1])
        try:
            ids = clip.tokenize(list(classnames), context_length=ctx_len)  # [C, L]: SOT name EOT 0...
        except RuntimeError:
            raise WtalError(f"a class name is too long for CLIP's {ctx_len}-token context") from None
        eot_id = int(ids.max())  # the EOT id is the largest in the vocabulary
        name_len = (ids == eot_id).int().argmax(dim=1) - 1  # tokens between SOT and EOT, per class
        self.n_prompts = n_prompts
        self.n_pre = n_prompts // 2
        eot_pos = name_len + n_prompts + 1
        too_long = int(eot_pos.argmax())
        if int(eot_pos.max()) >= ctx_len:
            raise WtalError(
                f"class name '{classnames[too_long]}' ({int(name_len[too_long])} tokens) with "
                f"{n_prompts} prompt vectors does not fit CLIP's {ctx_len}-token context"
            )
        # Causal attention: outputs up to the last EOT do not depend on later positions, so the
        # sequences are cut after the longest one (clip-anytorch slices its causal mask to fit).
        seq_len = int(eot_pos.max()) + 1

        # source[c, j]: the row of the bank [token embeddings of class c (ctx_len rows); prompts (n rows)]
        # that goes to position j of class c's sequence.
        j = torch.arange(seq_len)[None, :]
        L = name_len[:, None]
        a = self.n_pre
        src = torch.where(j <= a, ctx_len + j - 1, j - a)  # SOT at j=0 (ctx_len - 1 unused), pre-prompts, then name
        src = torch.where(j > a + L, ctx_len + j - L - 1, src)  # post prompts: prompt index a + (j - a - L - 1)
        src = torch.where(j > n_prompts + L, j - n_prompts, src)  # EOT and padding, shifted by n_prompts
        src = torch.where(j == 0, torch.zeros_like(src), src)
        self.register_buffer("token_ids", ids, persistent=False)
        self.register_buffer("source", src, persistent=False)
        self.register_buffer("eot_pos", eot_pos, persistent=False)
        if n_prompts > 0:
            self.prompts = nn.Parameter(torch.randn(n_prompts, width) * init_std)
        else:
            self.register_parameter("prompts", None)

    def forward(self, clip_model) -> torch.Tensor:
        """Unnormalised text features ``[C, D]``; differentiable w.r.t. the prompts."""
        dtype = clip_model.dtype
        tok = clip_model.token_embedding(self.token_ids).type(dtype)  # [C, ctx, W]
        C, ctx, W = tok.shape
        if self.prompts is not None:
            bank = torch.cat([tok, self.prompts.type(dtype)[None].expand(C, -1, -1)], dim=1)
        else:
            bank = tok
        x = torch.gather(bank, 1, self.source[..., None].expand(-1, -1, W))  # [C, S, W]
        x = x + clip_model.positional_embedding[: x.shape[1]].type(dtype)
        x = clip_model.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = clip_model.ln_final(x).type(dtype)
        x = x[torch.arange(C, device=x.device), self.eot_pos]
        return x @ clip_model.text_projection


class VLPBranch(nn.Module):
    """Frame class probabilities ``P_vl`` from CLIP features and prompted class names.

    ``forward`` returns ``probs``/``logits [B, T, C]`` (softmax over classes
    / the scaled cosines before it), ``features [B, T, D]`` = ``F_vid``, the
    temporal transformer's output, *not* normalised (the FB loss and the
    scores normalise it themselves), and ``text [C, D]``, the normalised
    class features.
    """

    def __init__(self, clip_model, classnames: list, cfg: VLPConfig | None = None, vis_dim: int | None = None):
        super().__init__()
        from wtalkit.models.clip import clip_embed_dim

        cfg = cfg or VLPConfig()
        embed = clip_embed_dim(clip_model)
        if vis_dim is not None and vis_dim != embed:
            raise WtalError(
                f"the vlp features have dimension {vis_dim} but CLIP model {cfg.clip_model} embeds to {embed}"
            )
        for p in clip_model.parameters():
            p.requires_grad_(False)
        clip_model.eval()
        object.__setattr__(self, "clip", clip_model)  # unregistered: not in parameters() nor state_dict()
        self.cfg = cfg
        self.classnames = list(classnames)
        self.embed_dim = embed
        # The background "class" (cfg.background, e.g. "background") is encoded with the same prompts and
        # takes part in the softmax, but is never reported: it gives background frames somewhere to put
        # their probability mass, so that "no action here" is representable (see forward).
        self.has_background = bool(cfg.background)
        names = self.classnames + ([cfg.background] if self.has_background else [])
        self.prompt = PromptTextEncoder(clip_model, names, cfg.n_prompts, cfg.prompt_init_std)
        self.temporal = TemporalTransformer(
            embed, cfg.temporal_layers, cfg.temporal_heads, cfg.dropout, cfg.temporal_window
        )
        self._text_cache: tuple | None = None

    # -- CLIP bookkeeping ---------------------------------------------------
    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self.clip._apply(fn)
        self._text_cache = None
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()  # CLIP stays in eval mode (frozen statistics, no dropout)
        return self

    def get_extra_state(self):
        return {"clip_model": self.cfg.clip_model, "classnames": list(self.classnames)}

    def set_extra_state(self, state):
        # Informational: prompts and Φ_temp are class-agnostic, so a checkpoint may be applied to
        # other class names (open vocabulary); the CLIP spec is checked by the dimension match.
        self.loaded_extra_state = state

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale.exp().detach()

    # -- computation ---------------------------------------------------------
    def text_features(self) -> torch.Tensor:
        """Normalised class features ``F_txt [C, D]``.

        Differentiable when grad is enabled. Under ``torch.no_grad`` the result
        is cached until the prompts change (optimizer step or state loading
        bump their version counter), so inference computes it once.
        """
        if torch.is_grad_enabled():
            self._text_cache = None
            return F.normalize(self.prompt(self.clip), dim=-1)
        p = self.prompt.prompts
        key = None if p is None else (p._version, p.data_ptr())
        key = (key, self.clip.token_embedding.weight.data_ptr())
        if self._text_cache is None or self._text_cache[0] != key:
            self._text_cache = (key, F.normalize(self.prompt(self.clip), dim=-1))
        return self._text_cache[1]

    def forward(self, vis: torch.Tensor, mask: torch.Tensor | None = None, text: torch.Tensor | None = None) -> dict:
        """``vis [B, T, D]`` CLIP frame features, ``mask [B, T]`` (True = real snippet).

        ``text``: optional precomputed :meth:`text_features` (normalised ``[C, D]``).
        """
        if vis.shape[-1] != self.embed_dim:
            raise WtalError(
                f"the vlp features have dimension {vis.shape[-1]} but CLIP model "
                f"{self.cfg.clip_model} embeds to {self.embed_dim}"
            )
        feats = self.temporal(vis, mask)
        if text is None:
            text = self.text_features()
        logits = self.logit_scale.to(feats.dtype) * F.normalize(feats, dim=-1) @ text.to(feats.dtype).t()
        probs = logits.softmax(dim=-1)
        if self.has_background:  # drop the background column after the softmax (not renormalised)
            probs, logits, text = probs[..., :-1], logits[..., :-1], text[:-1]
        return {"probs": probs, "logits": logits, "features": feats, "text": text}


class RawVLP(nn.Module):
    """The untrained VLP: zero-shot CLIP with plain prompt templates (``cfg.vlp.templates``)."""

    def __init__(self, clip_model, classes: list, templates: list):
        super().__init__()
        from wtalkit.models.clip import class_words, encode_class_prompts

        self.register_buffer(
            "text", encode_class_prompts(clip_model, [class_words(c) for c in classes], templates).float()
        )
        self.scale = float(clip_model.logit_scale.exp())

    def forward(self, vis, mask=None):
        if vis.shape[-1] != self.text.shape[1]:
            raise WtalError(
                f"the vlp features have dimension {vis.shape[-1]} but the CLIP model embeds to {self.text.shape[1]}"
            )
        logits = self.scale * F.normalize(vis, dim=-1) @ self.text.t()
        return {"probs": logits.softmax(-1), "logits": logits, "features": vis}
