"""Synthetic open-vocabulary online action detection data (zero-shot pair).

Real OV-OAD experiments pre-train on one vocabulary (ActivityNet captions) and
test on another (THUMOS'14); neither the CLIP weights nor the videos can be
fetched here, so this module builds a small stand-in that has the property
the method relies on: **frame embeddings and text embeddings share
structure**, imperfectly.

What the data model is
----------------------
A *world* (one seed, shared by the two datasets of a pair) fixes:

* the text side: class text embeddings ``t_k`` are the real outputs of the
  given (tiny, random) CLIP text encoder on ``template.format(name)``; the
  frozen encoder is the only link between a class name and its frames, as
  with real CLIP.
* a **modality gap**: a fixed linear map ``M = cos(theta) I + sin(theta) Q``
  (``Q`` a random orthogonal matrix) plus a constant offset ``g``; a frame of
  class ``k`` looks like ``M t_k + g`` rather than ``t_k``. ``M`` is the
  same for every class, seen or unseen, so what a model learns about it on
  one vocabulary transfers to another; the raw cosine between a frame and
  its class text (what the CLIP baselines use) is blurred by ``Q``.
* **context**: every video has a scene vector ``s_v`` (random direction)
  present in all its frames, action and background alike.
* **temporal correlation**: per-frame noise is an AR(1) process
  (``rho``), so neighbouring frames share noise; averaging a window helps
  but does not remove it.

A video is a timeline at 4 fps: alternating background gaps and action
instances of one or two classes per video (THUMOS-like), with log-normal
durations (actions ~2-20 s, gaps ~1-25 s). Foreground frame ``i`` of class
``k``::

    f_i = normalise(a * normalise(M t_k) + c * g + s * s_v + sigma * n_i)

and a background frame drops the class term (``a = 0``): it is scene plus
noise, which the CLIP baselines cannot tell apart from a weak action.
Features are written in wtalkit's dataset format (``annotations.json`` +
``features/vlp/*.npy`` + ``meta.json`` with ``fps = 4``, snippet 1/1).

Nothing here is tuned to a model: the same world parameters serve every
scorer, and the two vocabularies are disjoint lists of action names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from wtalkit import io as wio
from wtalkit.data.annotations import Annotations, Video
from wtalkit.data.features import FeatureStream, StreamMeta
from wtalkit.errors import WtalError
from wtalkit.timeaxis import SnippetGrid

# Disjoint vocabularies: "seen" classes (used for training captions) and
# "unseen" classes (only ever used at test time).
SEEN_CLASSES = [
    "archery",
    "bowling",
    "boxing",
    "canoeing",
    "dancing ballet",
    "fencing",
    "juggling balls",
    "kayaking",
    "knitting",
    "mopping floor",
    "playing drums",
    "playing guitar",
    "playing piano",
    "rock climbing",
    "sailing",
    "shoveling snow",
    "skateboarding",
    "skiing",
    "washing dishes",
    "walking the dog",
]
UNSEEN_CLASSES = [
    "baseball pitch",
    "basketball dunk",
    "billiards",
    "clean and jerk",
    "cliff diving",
    "cricket bowling",
    "golf swing",
    "hammer throw",
    "pole vault",
    "volleyball spiking",
]

FPS = 4.0


@dataclass(frozen=True)
class WorldSpec:
    """Parameters of the synthetic world (documented in the module docstring)."""

    theta_deg: float = 55.0  # angle of the modality-gap rotation mixture
    action_weight: float = 1.0  # a
    offset_weight: float = 0.6  # c: constant modality offset
    scene_weight: float = 0.5  # s: per-video context
    noise: float = 0.9  # sigma: total norm of the per-frame noise
    rho: float = 0.85  # AR(1) temporal correlation of the noise
    action_mean_s: float = 6.0  # median action duration (log-normal)
    gap_mean_s: float = 5.0  # median background gap (log-normal)
    video_s: tuple = (60.0, 150.0)  # video duration range


class SyntheticWorld:
    """The fixed maps shared by a train/test pair (see module docstring)."""

    def __init__(self, dim: int, seed: int = 0, spec: WorldSpec = WorldSpec()):
        self.dim, self.seed, self.spec = dim, seed, spec
        rng = np.random.default_rng(seed)
        q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
        q = q * np.sign(np.diag(r))  # a uniformly random orthogonal matrix
        th = np.deg2rad(spec.theta_deg)
        self.M = np.cos(th) * np.eye(dim) + np.sin(th) * q
        g = rng.standard_normal(dim)
        self.offset = g / np.linalg.norm(g)

    def frame_direction(self, text_emb: np.ndarray) -> np.ndarray:
        """Where a class with text embedding(s) ``[..., D]`` lands in frame space."""
        v = text_emb @ self.M.T
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    def video(self, rng, directions: np.ndarray, classes: list[int], duration: float):
        """Frames ``[T, D]`` and segments ``[(start, end, class_idx)]`` of one video."""
        sp = self.spec
        grid = SnippetGrid(FPS, 1, 1)
        T = int(np.floor(duration * FPS))
        label = np.full(T, -1)
        segs = []
        t = float(rng.uniform(0.5, 8.0))
        while True:
            dur = float(np.clip(rng.lognormal(np.log(sp.action_mean_s), 0.55), 2.0, 20.0))
            if t + dur > duration - 0.5:
                break
            k = int(rng.choice(classes))
            a, b = int(np.ceil(grid.to_snippet(t))), int(np.floor(grid.to_snippet(t + dur)))
            label[a:b] = k
            segs.append((round(float(grid.to_seconds(a)), 3), round(float(grid.to_seconds(b)), 3), k))
            t = t + dur + float(np.clip(rng.lognormal(np.log(sp.gap_mean_s), 0.7), 1.0, 25.0))
        D = self.dim
        scene = rng.standard_normal(D)
        scene /= np.linalg.norm(scene)
        eps = rng.standard_normal((T, D)) / np.sqrt(D)
        noise = np.empty_like(eps)
        noise[0] = eps[0]
        c = np.sqrt(1 - sp.rho**2)
        for i in range(1, T):
            noise[i] = sp.rho * noise[i - 1] + c * eps[i]
        x = sp.offset_weight * self.offset + sp.scene_weight * scene + sp.noise * noise
        fg = label >= 0
        x[fg] += sp.action_weight * directions[label[fg]]
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x.astype(np.float32), segs


def build_synthetic_oad(
    root, class_text, classnames: list, world: SyntheticWorld, n_videos: int, subset: str, seed: int
) -> Path:
    """Write one synthetic dataset folder (annotations + 4 fps ``vlp`` features).

    ``class_text(names) -> [K, D]``: the normalised text embedding of each class name (e.g. CLIP
    prompt embeddings); the frames of an action lie along its class's direction.
    """
    root = Path(root)
    if (root / "annotations.json").exists():
        raise WtalError(f"{root} already holds a dataset; choose an empty folder")
    if n_videos < 1:
        raise WtalError("n_videos must be >= 1")
    text = np.asarray(class_text(list(classnames)), dtype=np.float64)
    if text.shape != (len(classnames), world.dim):
        raise WtalError(
            f"class text embeddings {list(text.shape)} do not match {len(classnames)} classes x {world.dim} dims"
        )
    directions = world.frame_direction(text)
    rng = np.random.default_rng(seed)
    stream = FeatureStream.create(root / "features" / "vlp", StreamMeta("synthetic-clip", world.dim, FPS, 1, 1))
    videos = {}
    for i in range(n_videos):
        name = f"{subset}_{i:04d}"
        n_cls = 1 if rng.random() < 0.7 else 2
        cls = list(rng.choice(len(classnames), size=n_cls, replace=False))
        duration = float(rng.uniform(*world.spec.video_s))
        feats, segs = world.video(rng, directions, cls, duration)
        stream.write(name, feats)
        duration = round(len(feats) / FPS, 3)
        videos[name] = Video(
            name,
            subset,
            duration,
            [(s, e, classnames[k]) for s, e, k in segs],
            sorted({classnames[k] for _, _, k in segs}),
        )
    # Annotations last: a folder with annotations.json is a complete dataset.
    wio.write_json(root / "synthetic.json", {"world_seed": world.seed, "world": asdict(world.spec), "seed": seed})
    Annotations(list(classnames), videos).save(root / "annotations.json")
    return root


def build_zero_shot_pair(
    root,
    class_text,
    dim: int,
    seed: int = 0,
    n_train: int = 60,
    n_test: int = 24,
    seen=None,
    unseen=None,
    spec: WorldSpec = WorldSpec(),
) -> tuple[Path, Path]:
    """Two datasets in ``root/train`` and ``root/test`` with disjoint vocabularies, one world of ``dim`` dims.

    ``class_text(names) -> [K, dim]`` embeds class names (see :func:`build_synthetic_oad`).
    """
    seen = list(SEEN_CLASSES if seen is None else seen)
    unseen = list(UNSEEN_CLASSES if unseen is None else unseen)
    overlap = sorted(set(seen) & set(unseen))
    if overlap:
        raise WtalError(f"the vocabularies must be disjoint; '{overlap[0]}' is in both")
    world = SyntheticWorld(dim, seed, spec)
    root = Path(root)
    train = build_synthetic_oad(root / "train", class_text, seen, world, n_train, "train", seed + 1)
    test = build_synthetic_oad(root / "test", class_text, unseen, world, n_test, "test", seed + 2)
    return train, test
