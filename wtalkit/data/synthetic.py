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
from pathlib import Path

import numpy as np

from wtalkit.data.annotations import Annotations, Video
from wtalkit.data.features import FeatureStream, StreamMeta
from wtalkit.timeaxis import SnippetGrid

LAYOUT = Path(__file__).with_name("thumos14_layout.json")


def thumos_layout() -> dict:
    return json.loads(LAYOUT.read_text())


def _pick_videos(layout: dict, subset: str, n: int, rng, min_dur: float, max_dur: float) -> list:
    pool = [v for v in layout["videos"] if v["subset"] == subset and min_dur <= v["duration"] <= max_dur and v["segments"]]
    idx = rng.choice(len(pool), size=min(n, len(pool)), replace=False)
    return [pool[i] for i in sorted(idx)]


def _unit(x, axis=-1):
    return x / np.linalg.norm(x, axis=axis, keepdims=True).clip(1e-12)


def make_synthetic_dataset(out_dir, *, text_embeddings: np.ndarray, n_train: int = 60, n_test: int = 40,
                           cbp_dim: int = 128, grid: SnippetGrid = SnippetGrid(25.0, 16, 16),
                           min_duration: float = 30.0, max_duration: float = 600.0, seed: int = 0,
                           core_fraction: float = 0.35, weak_cbp: float = 0.35, cbp_noise: float = 0.35,
                           vlp_leak_seconds: float = 4.0, confusion: float = 0.6, vlp_noise: float = 0.6,
                           vlp_signal: float = 3.0) -> Annotations:
    """Write ``annotations.json`` and ``features/{cbp,vlp}`` under ``out_dir``.

    ``text_embeddings [C, D]``: the CLIP text embeddings of the classes' plain prompts (the VLP stream is
    built around them, so its dimension is the CLIP embedding dimension). Train videos keep only
    video-level labels; test videos keep their segments.
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
    cbp_proto = _unit(rng.standard_normal((C, cbp_dim)))
    lookalike = np.roll(rng.permutation(C), 1)[np.argsort(rng.permutation(C))]  # a fixed partner per class
    lookalike = np.where(lookalike == np.arange(C), (np.arange(C) + 1) % C, lookalike)
    image_offset = _unit(rng.standard_normal(D))  # the "modality gap" shared by all frame embeddings

    cbp = FeatureStream.create(out_dir / "features" / "cbp", StreamMeta(
        "synthetic-i3d", cbp_dim, grid.fps, grid.length, grid.stride))
    vlp = FeatureStream.create(out_dir / "features" / "vlp", StreamMeta(
        "synthetic-clip", D, grid.fps, grid.length, grid.stride))
    videos = {}
    spec = [("train", "validation", n_train), ("test", "test", n_test)]
    for subset, src_subset, n in spec:
        for v in _pick_videos(layout, src_subset, n, rng, min_duration, max_duration):
            T = max(1, int(np.floor(grid.to_snippet(v["duration"]))))
            centres = grid.to_seconds(np.arange(T) + 0.5)
            # --- cbp: per-video scene + noise, class direction strong on cores, weak elsewhere
            scene = rng.standard_normal(cbp_dim) * 0.1
            xc = scene + cbp_noise * rng.standard_normal((T, cbp_dim))
            # --- vlp: modality offset + noise, class-specific text direction over (and around) instances
            xv = 1.5 * image_offset + 0.5 * t_mean + vlp_noise * rng.standard_normal((T, D)) / np.sqrt(D) * 4
            strength_v = np.zeros((T, C))
            for s, e, c in v["segments"]:
                inside = (centres >= s) & (centres < e)
                idx = np.flatnonzero(inside)
                if len(idx) == 0:
                    k = int(np.clip(grid.to_snippet((s + e) / 2), 0, T - 1))
                    idx = np.array([k])
                # core: a contiguous central part plus scattered frames
                n_core = max(1, int(round(core_fraction * len(idx))))
                a = len(idx) // 2 - n_core // 2
                core = np.zeros(len(idx), bool)
                core[a:a + n_core] = True
                core |= rng.random(len(idx)) < 0.1
                amp = np.where(core, 1.0, weak_cbp) * rng.uniform(0.8, 1.2)
                xc[idx] += amp[:, None] * cbp_proto[c] * 2.0
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
            cbp.write(v["name"], xc.astype(np.float32))
            vlp.write(v["name"], _unit(xv).astype(np.float32))
    ann = Annotations(list(classes), videos)
    ann.save(out_dir / "annotations.json")
    return ann
