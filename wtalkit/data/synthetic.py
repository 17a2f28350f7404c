"""Synthetic WTAL datasets with the CBP/VLP complementarity the paper builds on.

The demo cannot ship THUMOS14 features, so it draws features on the *real*
THUMOS14 temporal structure (``thumos14_layout.json``: video durations,
instance counts, segment boundaries and classes of the 412 annotated videos)
and models the two feature families as the paper describes them:

* ``cbp`` (classification-based pre-training, "incomplete"): a discriminative
  class direction that is strong only on a sparse *core* of each action
  instance (a contiguous central part plus scattered frames) and weak on the
  rest of it; background is a per-video scene vector plus noise. MIL training
  finds the cores: high true negatives, many false negatives.
* ``vlp`` (CLIP frame features, "over-complete"): frame embeddings built from
  the CLIP text embeddings of the class prompts, so that zero-shot CLIP
  scoring works on them; the class direction covers the *whole* instance but
  also leaks into the context around it (decaying over a few seconds), and
  instances are mixed with a look-alike class. High true positives, many false
  positives.

Nothing here is tuned to a method: the same generator feeds warm-up, the raw
VLP zero-shot baseline, the ablations and alternate training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wtalkit.data.annotations import Annotations, Video
from wtalkit.data.features import FeatureStream, StreamMeta
from wtalkit.timeaxis import SnippetGrid

LAYOUT = Path(__file__).with_name("thumos14_layout.json")

THUMOS_GRID = SnippetGrid(25.0, 16, 16)  # I3D snippets: 16 frames at 25 fps


def thumos_layout() -> dict:
    return json.loads(LAYOUT.read_text())


def _pick_videos(layout: dict, subset: str, n: int, rng, min_dur: float, max_dur: float) -> list:
    pool = [
        v for v in layout["videos"] if v["subset"] == subset and min_dur <= v["duration"] <= max_dur and v["segments"]
    ]
    idx = rng.choice(len(pool), size=min(n, len(pool)), replace=False)
    return [pool[i] for i in sorted(idx)]


def _unit(x, axis=-1):
    return x / np.linalg.norm(x, axis=axis, keepdims=True).clip(1e-12)


@dataclass(frozen=True)
class I3DStyle:
    """How the synthetic ``cbp`` stream imitates two-stream I3D features (RGB ‖ flow, 1,024 + 1,024).

    Real I3D snippet features are non-negative (average-pooled ReLU outputs), temporally smooth,
    dominated by a per-dimension mean and a per-video scene component, and an action changes a
    sparse set of dimensions: mostly in the flow half (motion), less in the RGB half (appearance).
    ``x = relu(mean + scene + smooth noise + a(t) · (signal · proto_c + motion · m))`` per half,
    where ``a(t)`` is 1 on an instance's *core* (a contiguous central ``core_fraction`` plus
    scattered frames) and ``weak`` on the rest of it: the incompleteness of classification
    features. ``confusion`` mixes a fixed look-alike class into each instance; ``distractors``
    is the fraction of background snippets with generic motion but no class.
    """

    dim: int = 2048  # RGB ‖ flow halves
    core_fraction: float = 0.35
    weak: float = 0.3
    signal: float = 3.0  # class evidence on the core (1 = 3 per-dimension noise stds along its direction)
    rgb_share: float = 0.4  # fraction of the class evidence in the RGB half (the rest in flow)
    motion: float = 1.0  # class-agnostic "something moves" component on action snippets
    noise: float = 1.0  # per-dimension noise std relative to the mean profile
    smooth: float = 0.5  # AR(1) coefficient of the noise along time (I3D receptive fields overlap)
    scene: float = 0.3  # per-video scene offset (std, relative to noise)
    confusion: float = 0.0  # strength of a fixed look-alike class inside each instance
    distractors: float = 0.05  # fraction of background snippets with class-agnostic motion
    sparsity: float = 0.1  # fraction of dimensions a class prototype uses
    relu: bool = True  # non-negative features as I3D's; False: zero-mean Gaussian features


class I3DSynth:
    """The fixed parts of an I3D-like stream (mean profile, class prototypes) and a per-video sampler."""

    def __init__(self, style: I3DStyle, num_classes: int, rng: np.random.Generator):
        if style.dim % 2:
            raise ValueError("I3D-like features need an even dimension (RGB ‖ flow halves)")
        self.style = style
        D, h = style.dim, style.dim // 2
        self.half = h
        self.mean = np.abs(rng.standard_normal(D)) * 0.5 + 0.1 if style.relu else np.zeros(D)
        self.sigma = 0.3 * np.ones(D)  # per-dimension noise std
        protos = np.zeros((num_classes, D))
        n_active = max(1, int(round(style.sparsity * h)))
        for c in range(num_classes):
            for lo, share in ((0, style.rgb_share), (h, 1.0 - style.rgb_share)):
                dims = lo + rng.choice(h, n_active, replace=False)
                protos[c, dims] = rng.gamma(2.0, 1.0, n_active)
                # signal 1 = a class direction 3 per-dimension noise stds long, split between the halves
                protos[c, lo : lo + h] *= np.sqrt(share) * 0.9 / np.linalg.norm(protos[c, lo : lo + h])
        self.protos = protos
        motion = np.zeros(D)
        dims = h + rng.choice(h, n_active, replace=False)  # motion lives in the flow half
        motion[dims] = rng.gamma(2.0, 1.0, n_active)
        self.motion = motion * 0.9 / np.linalg.norm(motion)
        self.lookalike = (np.arange(num_classes) + 1 + rng.integers(0, num_classes - 1, num_classes)) % num_classes

    def video(self, T: int, instances: list, rng: np.random.Generator) -> np.ndarray:
        """``instances``: ``(snippet indices inside, class)`` per action instance -> ``[T, D]`` float32."""
        st = self.style
        D = st.dim
        eps = rng.standard_normal((T, D)) * self.sigma * st.noise
        if st.smooth > 0:  # AR(1) along time with the same marginal variance
            a = st.smooth
            for t in range(1, T):
                eps[t] = a * eps[t - 1] + np.sqrt(1 - a * a) * eps[t]
        scene = rng.standard_normal(D) * self.sigma * st.scene
        x = self.mean + scene + eps
        motion_amp = (rng.random(T) < st.distractors).astype(float) * rng.uniform(0.5, 1.0, T)
        for idx, c in instances:
            n = len(idx)
            n_core = max(1, int(round(st.core_fraction * n)))
            start = n // 2 - n_core // 2
            core = np.zeros(n, bool)
            core[start : start + n_core] = True
            core |= rng.random(n) < 0.1
            amp = np.where(core, 1.0, st.weak) * rng.uniform(0.8, 1.2)
            x[idx] += amp[:, None] * st.signal * self.protos[c]
            if st.confusion > 0:
                x[idx] += amp[:, None] * st.confusion * rng.uniform(0.3, 1.0) * self.protos[self.lookalike[c]]
            motion_amp[idx] = np.maximum(motion_amp[idx], amp)
        x += motion_amp[:, None] * st.motion * self.motion
        if st.relu:
            x = np.maximum(x, 0.0)
        return x.astype(np.float32)


def make_synthetic_dataset(
    out_dir,
    *,
    text_embeddings: np.ndarray,
    n_train: int = 60,
    n_test: int = 40,
    cbp: I3DStyle = I3DStyle(),
    grid: SnippetGrid = THUMOS_GRID,
    min_duration: float = 30.0,
    max_duration: float = 600.0,
    seed: int = 0,
    vlp_leak_seconds: float = 4.0,
    confusion: float = 0.6,
    vlp_noise: float = 0.6,
    vlp_signal: float = 3.0,
    long_actions: float = 0.0,
) -> Annotations:
    """Write ``annotations.json`` and ``features/{cbp,vlp}`` under ``out_dir``.

    ``text_embeddings [C, D]``: the CLIP text embeddings of the classes' plain prompts (the VLP stream is
    built around them, so its dimension is the CLIP embedding dimension). Train videos keep only
    video-level labels; test videos keep their segments.

    ``long_actions`` > 0 gives ActivityNet-like videos: each keeps the class of its first THUMOS14
    instance and a single instance covering that fraction of its duration (at a random position);
    0 (the default) keeps the THUMOS14 instances.
    """
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    layout = thumos_layout()
    classes = layout["classes"]
    C = len(classes)
    text = _unit(np.asarray(text_embeddings, dtype=np.float64))
    if text.shape[0] != C:
        raise ValueError(f"need {C} text embeddings, got {text.shape[0]}")
    # class-specific part of the text embeddings (CLIP text embeddings share a large common component)
    t_mean = text.mean(0)
    t_spec = _unit(text - t_mean)
    D = text.shape[1]
    cbp_synth = I3DSynth(cbp, C, rng)
    lookalike = np.roll(rng.permutation(C), 1)[np.argsort(rng.permutation(C))]  # a fixed partner per class
    lookalike = np.where(lookalike == np.arange(C), (np.arange(C) + 1) % C, lookalike)
    image_offset = _unit(rng.standard_normal(D))  # the "modality gap" shared by all frame embeddings

    cbp_stream = FeatureStream.create(
        out_dir / "features" / "cbp", StreamMeta("synthetic-i3d-rgb+flow", cbp.dim, grid.fps, grid.length, grid.stride)
    )
    vlp = FeatureStream.create(
        out_dir / "features" / "vlp", StreamMeta("synthetic-clip", D, grid.fps, grid.length, grid.stride)
    )
    videos = {}
    spec = [("train", "validation", n_train), ("test", "test", n_test)]
    for subset, src_subset, n in spec:
        for v in _pick_videos(layout, src_subset, n, rng, min_duration, max_duration):
            # A few THUMOS14 videos have actions past their recorded duration (as the importer finds):
            # the synthetic video covers them.
            v = dict(v, duration=max([float(v["duration"])] + [float(e) for _, e, _ in v["segments"]]))
            if long_actions > 0:
                length = long_actions * v["duration"]
                start = float(rng.uniform(0, v["duration"] - length))
                v["segments"] = [[start, start + length, v["segments"][0][2]]]
            T = max(1, int(np.floor(grid.to_snippet(v["duration"]))))
            centres = grid.to_seconds(np.arange(T) + 0.5)
            # --- vlp: modality offset + noise, class-specific text direction over (and around) instances
            xv = 1.5 * image_offset + 0.5 * t_mean + vlp_noise * rng.standard_normal((T, D)) / np.sqrt(D) * 4
            strength_v = np.zeros((T, C))
            instances = []
            for s, e, c in v["segments"]:
                inside = (centres >= s) & (centres < e)
                idx = np.flatnonzero(inside)
                if len(idx) == 0:
                    k = int(np.clip(grid.to_snippet((s + e) / 2), 0, T - 1))
                    idx = np.array([k])
                instances.append((idx, c))
                # vlp: full coverage, leak into context, mix with the look-alike class
                dist = np.maximum(s - centres, centres - e)  # < 0 inside
                leak = np.clip(1.0 - np.maximum(dist, 0) / vlp_leak_seconds, 0, 1) * 0.8
                prof = np.where(dist < 0, 1.0, leak)
                strength_v[:, c] = np.maximum(strength_v[:, c], prof)
                mix = confusion * rng.uniform(0.3, 1.0)
                strength_v[:, lookalike[c]] = np.maximum(strength_v[:, lookalike[c]], mix * prof)
            xv += strength_v @ t_spec * vlp_signal
            labels = sorted({classes[c] for _, _, c in v["segments"]})
            if subset == "train":
                segs = []
            else:
                segs = [(float(s), float(e), classes[c]) for s, e, c in v["segments"]]
            videos[v["name"]] = Video(v["name"], subset, float(v["duration"]), segs, labels)
            # --- cbp: I3D-like, class evidence strong on each instance's core only
            cbp_stream.write(v["name"], cbp_synth.video(T, instances, rng))
            vlp.write(v["name"], _unit(xv).astype(np.float32))
    ann = Annotations(list(classes), videos)
    ann.save(out_dir / "annotations.json")
    return ann
