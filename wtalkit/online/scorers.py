"""Causal per-frame scorers for open-vocabulary online action detection.

A :class:`Scorer` holds the state of ONE stream. Frames arrive one at a time
(``step``) or in chunks (``step_many``, the same computation vectorised); the
score of frame ``t`` depends only on frames ``0..t`` -- nothing looks ahead, so
cutting a stream after frame ``t`` leaves every score up to ``t`` unchanged.

The CLIP baselines of OV-OAD (Zhao et al., NeurIPS 2024) are zero-shot: a frame
representation is compared by cosine similarity with the class-prompt text
embeddings, and ``softmax(100 * cos)`` is taken over the K classes plus one
background prompt (always the last column). They differ only in the visual
query:

* ``clip-frame``  (CLIP-I):  the current frame embedding;
* ``clip-window`` (CLIP-II): the mean of the last ``window`` frame embeddings;
* ``clip-ema``:              an exponential moving average of frame embeddings.

Every frame embedding is L2-normalised before it is pooled, so frames weigh
equally whatever their norm, and the pooled query is normalised again (CLIP's
cosine similarity).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wtalkit.errors import WtalError

DEFAULT_TEMPLATES = ("A photo of action {}.",)
DEFAULT_BACKGROUND = "background"
LOGIT_SCALE = 100.0  # CLIP's learned temperature, fixed at its trained value for zero-shot scoring
MODELS = ("clip-frame", "clip-window", "clip-ema", "ovoad")


def _l2n(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def text_classifier(clip_model, classnames: list, templates: list, background: str) -> np.ndarray:
    """Normalised text embeddings ``[K+1, D]`` of the classes and (last) the background prompt.

    Each row is the normalised mean of its template embeddings (CLIP prompt
    ensembling); the background prompt goes through the same templates.
    """
    from wtalkit.models.clip import class_words, encode_class_prompts

    names = [class_words(c) for c in classnames] + [background]
    return encode_class_prompts(clip_model, names, list(templates)).cpu().numpy().astype(np.float32)


class Scorer:
    """One stream's online scorer: probabilities over the K classes + background (last)."""

    num_classes: int  # K, without the background

    def reset(self) -> None:
        """Forget the stream seen so far (start a new video)."""
        raise NotImplementedError

    def step(self, emb: np.ndarray) -> np.ndarray:
        """Score one new frame embedding ``[D]``; returns ``[K+1]`` probabilities."""
        return self.step_many(np.asarray(emb)[None])[0]

    def step_many(self, embs: np.ndarray) -> np.ndarray:
        """Score ``n`` consecutive new frames ``[n, D]`` -> ``[n, K+1]``; same as ``n`` calls of ``step``."""
        return (
            np.stack([self.step(e) for e in np.asarray(embs)])
            if len(embs)
            else np.zeros((0, self.num_classes + 1), np.float32)
        )


class ClipScorer(Scorer):
    """Zero-shot CLIP scoring of a causally pooled visual query (base of the three baselines)."""

    def __init__(self, text_emb: np.ndarray, logit_scale: float = LOGIT_SCALE):
        # Scoring runs in float64: with the x100 temperature, float32 rounding that depends on
        # the batch shape would otherwise make chunked and frame-by-frame scores differ.
        self.text = np.asarray(text_emb, dtype=np.float64)  # [K+1, D], normalised rows
        self.num_classes = self.text.shape[0] - 1
        self.dim = self.text.shape[1]
        self.logit_scale = float(logit_scale)
        self.reset()

    def reset(self) -> None:
        pass

    def _queries(self, embs: np.ndarray) -> np.ndarray:
        """The pooled (unnormalised) query of each new frame, updating the state."""
        raise NotImplementedError

    def step_many(self, embs: np.ndarray) -> np.ndarray:
        embs = np.asarray(embs, dtype=np.float64)
        if embs.ndim != 2 or embs.shape[1] != self.dim:
            raise WtalError(f"frame embeddings must be [n, {self.dim}], got {list(embs.shape)}")
        if len(embs) == 0:
            return np.zeros((0, self.num_classes + 1), np.float32)
        q = _l2n(self._queries(_l2n(embs)))
        return softmax(self.logit_scale * (q @ self.text.T)).astype(np.float32)


class ClipFrameScorer(ClipScorer):
    """CLIP-I: the current frame alone."""

    def _queries(self, embs):
        return embs


class ClipWindowScorer(ClipScorer):
    """CLIP-II: the mean of the last ``window`` frames (fewer at the start of the stream)."""

    def __init__(self, text_emb, window: int = 8, logit_scale: float = LOGIT_SCALE):
        if int(window) < 1:
            raise WtalError(f"--window must be >= 1, got {window}")
        self.window = int(window)
        super().__init__(text_emb, logit_scale)

    def reset(self) -> None:
        self._hist = np.zeros((0, self.dim))  # the last window-1 normalised frames

    def _queries(self, embs):
        n, w = len(embs), self.window
        seq = np.concatenate([self._hist, embs])  # history then the new frames
        # Zero rows in front make every frame's window full-length; zeros do not change
        # the sum, and the query is renormalised, so sum == mean for scoring.
        pad = np.zeros((w - 1, self.dim))
        full = np.concatenate([pad, seq])
        csum = np.lib.stride_tricks.sliding_window_view(full, w, axis=0).sum(-1)  # [len(seq), D]
        self._hist = seq[-(w - 1) :] if w > 1 else seq[:0]
        return csum[-n:]


class ClipEMAScorer(ClipScorer):
    """Exponential moving average of the frame embeddings: ``m_t = a e_t + (1 - a) m_{t-1}``, ``m_0 = e_0``."""

    def __init__(self, text_emb, alpha: float = 0.3, logit_scale: float = LOGIT_SCALE):
        if not (0.0 < float(alpha) <= 1.0):
            raise WtalError(f"--ema-alpha must be in (0, 1], got {alpha}")
        self.alpha = float(alpha)
        super().__init__(text_emb, logit_scale)

    def reset(self) -> None:
        self._m = None

    def _queries(self, embs):
        out = np.empty_like(embs)
        m, a = self._m, self.alpha
        for i, e in enumerate(embs):  # a recurrence: sequential by nature, cheap (one D-vector per frame)
            m = e.copy() if m is None else a * e + (1.0 - a) * m
            out[i] = m
        self._m = m
        return out


def build_scorer(name: str, clip_model, classnames: list, templates: list, background: str, **options) -> Scorer:
    """The scorer ``name`` for these classes.

    ``templates`` may be empty: the CLIP baselines then use
    :data:`DEFAULT_TEMPLATES`, an ovoad checkpoint its own training templates.
    Options: ``window`` (clip-window, default 8), ``ema_alpha`` (clip-ema,
    default 0.3), ``checkpoint`` (ovoad, required), ``logit_scale`` (CLIP
    baselines, default 100). Unknown or misplaced options are rejected.
    """
    classnames = list(classnames)
    templates = list(templates or [])
    _check_classes(classnames, background)
    options = {k: v for k, v in options.items() if v is not None}
    allowed = {
        "clip-frame": {"logit_scale"},
        "clip-window": {"window", "logit_scale"},
        "clip-ema": {"ema_alpha", "logit_scale"},
        "ovoad": {"checkpoint"},
    }
    if name not in allowed:
        raise WtalError(f"unknown online model '{name}' (choose from {', '.join(MODELS)})")
    extra = sorted(set(options) - allowed[name])
    if extra:
        raise WtalError(f"option '{extra[0]}' does not apply to --model {name}")
    if name == "ovoad":
        if not options.get("checkpoint"):
            raise WtalError("--model ovoad needs --checkpoint PATH")
        return build_ovoad_scorer(options["checkpoint"], clip_model, classnames, templates, background)
    text = text_classifier(clip_model, classnames, templates or list(DEFAULT_TEMPLATES), background)
    scale = options.get("logit_scale", LOGIT_SCALE)
    if name == "clip-frame":
        return ClipFrameScorer(text, scale)
    if name == "clip-window":
        return ClipWindowScorer(text, options.get("window", 8), scale)
    return ClipEMAScorer(text, options.get("ema_alpha", 0.3), scale)


def _check_classes(classnames: list, background: str) -> None:
    if not classnames:
        raise WtalError("no classes given (use --classes 'a, b, ...' or --classes-file FILE)")
    seen = set()
    for c in classnames:
        if not isinstance(c, str) or not c.strip():
            raise WtalError("class names must be non-empty strings")
        if c in seen:
            raise WtalError(f"class '{c}' is given twice")
        seen.add(c)
    if not background or not background.strip():
        raise WtalError("the background prompt must be a non-empty string")
    if background in seen:
        raise WtalError(f"the background prompt '{background}' is also a class name")


class OVOADScorer(Scorer):
    """One stream's state for ``wtalkit online``: ``reset()``, ``step(emb) -> probs[K + 1]``.

    Keeps the last ``window - 1`` frame embeddings; each new frame is scored
    from the window ending at it (left-padded at the stream start), so the
    score at frame ``t`` depends only on frames ``<= t``. ``step_many``
    scores a chunk of consecutive frames at once (the same windows, batched).
    Scoring runs in float64 so that chunked and frame-by-frame results agree
    to rounding. Frames must come at ``fps``, the rate the checkpoint was
    trained at (its ``feature_fps``, 4 fps): ``wtalkit online`` puts every
    stream on that grid.
    """

    def __init__(self, model, text, classnames: list, batch_size: int = 256, fps: float | None = None):
        from wtalkit.models.ovoad import FEATURE_FPS

        self.fps = float(fps or FEATURE_FPS)  # the frame rate its windows are defined at (the checkpoint's)
        self.model = model.double().eval()
        self.text = text.double()
        self.classnames = list(classnames)
        self.num_classes = len(self.classnames)
        self.dim = model.cfg.embed_dim
        self.batch_size = batch_size
        self.reset()

    def reset(self) -> None:
        import torch

        self._hist = torch.zeros(0, self.dim, dtype=torch.float64)

    def step(self, emb) -> np.ndarray:
        return self.step_many(np.asarray(emb)[None])[0]

    def step_many(self, embs) -> np.ndarray:
        embs = np.asarray(embs, dtype=np.float64)
        if embs.ndim != 2 or embs.shape[1] != self.dim:
            raise WtalError(f"frame embeddings must be [n, {self.dim}], got {list(embs.shape)}")
        if not np.isfinite(embs).all():
            raise WtalError("frame embeddings contain NaN or infinite values")
        if len(embs) == 0:
            return np.zeros((0, self.num_classes + 1), np.float32)
        import torch

        from wtalkit.models.ovoad import make_windows

        W = self.model.cfg.window
        seq = torch.cat([self._hist, torch.from_numpy(embs)])
        h = len(self._hist)
        out = []
        with torch.inference_mode():
            for s in range(h, len(seq), self.batch_size):
                # Frames before ``seq`` are more than W - 1 frames back or do not exist:
                # padding them is exact.
                x, v = make_windows(seq, torch.arange(s, min(s + self.batch_size, len(seq))), W)
                out.append(self.model.class_probs(self.model(x, v), self.text))
        self._hist = seq[-(W - 1) :] if W > 1 else seq[:0]
        return torch.cat(out).numpy().astype(np.float32)


def build_ovoad_scorer(checkpoint, clip_model, classnames, templates, background=None) -> OVOADScorer:
    """The ``ovoad`` scorer of ``wtalkit online``.

    ``clip_model``: a loaded CLIP model (or a name/path for
    :func:`wtalkit.models.clip.load_clip`); its text encoder must be the one the
    checkpoint was trained with (checked via a fingerprint). ``background`` is
    accepted for interface compatibility: OV-OAD's background probability
    comes from its background mask, not a prompt.
    """
    import torch

    from wtalkit.models.clip import class_words, clip_embed_dim, load_clip
    from wtalkit.models.ovoad import FEATURE_FPS, clip_probe, clip_text_templates, load_ovoad

    model, ck = load_ovoad(checkpoint)
    if isinstance(clip_model, (str, Path)):
        clip_model = load_clip(str(clip_model))
    if clip_embed_dim(clip_model) != model.cfg.embed_dim:
        raise WtalError(
            f"{checkpoint}: trained for {model.cfg.embed_dim}-d CLIP embeddings, "
            f"the given CLIP model has {clip_embed_dim(clip_model)}"
        )
    probe = clip_probe(clip_model)
    saved = ck.get("clip_probe")  # absent or of another size: nothing to compare
    if isinstance(saved, torch.Tensor) and saved.shape == probe.shape and float(saved @ probe) < 0.999:
        raise WtalError(
            f"{checkpoint}: trained with CLIP '{ck.get('clip')}', but the given CLIP model has a different text encoder"
        )
    templates = list(templates or ck.get("templates") or ["{}"])
    with torch.inference_mode():
        text = model.encode_text(clip_text_templates(clip_model, [class_words(c) for c in classnames], templates))
    fps = ck.get("feature_fps", FEATURE_FPS)
    if not isinstance(fps, (int, float)) or not (0 < float(fps) < 1e4):
        raise WtalError(f"{checkpoint}: its feature_fps {fps!r} is not a frame rate")
    return OVOADScorer(model, text, classnames, fps=float(fps))
