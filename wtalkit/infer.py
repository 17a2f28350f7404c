"""Inference: frame scores -> video classes -> proposals -> soft-NMS -> results JSON.

The paper's pipeline on the CBP branch: keep the classes whose video score
exceeds ``theta_cls`` (the top-scoring class when none does, so every video
gets detections), threshold the frame scores of each kept class at every
``theta_loc``, turn connected runs into proposals scored by their maximum frame
score, then Gaussian soft-NMS per class. ``--branch vlp|fused`` runs the same
post-processing on the VLP branch or on the average of both (analysis only).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from wtalkit.config import Config, InferConfig
from wtalkit.data.features import Dataset, StreamMeta, load_feature_file
from wtalkit.errors import WtalError
from wtalkit.proposals import proposals_from_scores
from wtalkit.softnms import soft_nms
from wtalkit.timeaxis import SnippetGrid, resample_indices
from wtalkit.train.run import check_compatible, checkpoint_config, load_checkpoint, resolve_checkpoint

BRANCHES = ("cbp", "vlp", "fused")


def detections(probs: np.ndarray, video_scores: np.ndarray, grid: SnippetGrid, classes: list,
               cfg: InferConfig) -> list:
    """ActivityNet-style detections for one video from frame probabilities ``[T, C]``."""
    keep = np.flatnonzero(video_scores > cfg.theta_cls)
    if len(keep) == 0:
        keep = np.array([int(np.argmax(video_scores))])
    props = proposals_from_scores(probs, keep, cfg.theta_loc, grid)
    props = soft_nms(props, sigma=cfg.nms_sigma, max_keep=cfg.max_proposals, min_score=cfg.min_score)
    return [{"label": classes[int(c)], "score": round(float(s), 6), "segment": [round(float(a), 3), round(float(b), 3)]}
            for c, a, b, s in props]


class Predictor:
    """A trained model ready for inference, loaded from a run folder or checkpoint file."""

    def __init__(self, run_or_ckpt, branch: str = "cbp", device: str = "cpu", cfg: Config | None = None):
        if branch not in BRANCHES:
            raise WtalError(f"unknown branch '{branch}'; choose from {', '.join(BRANCHES)}")
        self.path = resolve_checkpoint(run_or_ckpt)
        self.ckpt = load_checkpoint(self.path)
        self.cfg = cfg or checkpoint_config(self.ckpt)
        self.classes = list(self.ckpt["classes"])
        self.metas = {k: StreamMeta.from_dict(v) for k, v in self.ckpt["streams"].items()}
        self.branch = branch
        self.device = torch.device(device)
        self.models = {}
        needed = ("cbp",) if branch == "cbp" else (("vlp",) if branch == "vlp" else ("cbp", "vlp"))
        for name in needed:
            if name not in self.ckpt["models"]:
                raise WtalError(f"{self.path} has no trained {name.upper()} branch (needed for --branch {branch})")
            self.models[name] = self._build(name)

    @property
    def streams(self) -> tuple:
        return tuple(self.models)

    @property
    def grid(self) -> SnippetGrid:
        return self.metas[self.streams[0]].grid

    def _build(self, name: str):
        if name == "cbp":
            from wtalkit.models.cbp import CBPBranch

            m = CBPBranch(self.metas["cbp"].dim, len(self.classes), self.cfg.cbp)
        else:
            from wtalkit.models.build import build_vlp_from_checkpoint

            m = build_vlp_from_checkpoint(self.ckpt, self.cfg, self.classes, device=self.device)
        from wtalkit.models.build import load_branch

        load_branch(m, self.ckpt["models"][name], name, self.path)
        return m.to(self.device).eval()

    @torch.inference_mode()
    def branch_scores(self, name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frame probabilities ``[T, C]`` and video scores ``[C]`` of one branch on one video."""
        model = self.models[name]
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None].to(self.device)
        out = model(t, None)
        probs = out["probs"][0].float()
        if name == "cbp":
            video = model.video_scores(out["logits"], None)[0]
        else:
            from wtalkit.models.cbp import topk_pool

            video = topk_pool(out["probs"], None, self.cfg.cbp.topk_ratio)[0]
        return probs.cpu().numpy(), video.float().cpu().numpy()

    def scores(self, feats: dict) -> tuple[np.ndarray, np.ndarray]:
        """Frame and video scores of the selected branch (or the fusion) from ``{stream: [T, D]}``."""
        if self.branch != "fused":
            return self.branch_scores(self.branch, feats[self.branch])
        pc, vc = self.branch_scores("cbp", feats["cbp"])
        pv, vv = self.branch_scores("vlp", feats["vlp"])
        w = self.cfg.train.fuse_weight if self.cfg.train.fuse == "weighted" else 0.5
        return w * pc + (1 - w) * pv, w * vc + (1 - w) * vv

    def align(self, feats: dict, metas: dict) -> dict:
        """Put every stream on the first stream's grid (nearest by time)."""
        main = self.streams[0]
        n = len(feats[main])
        out = {main: feats[main]}
        for s in self.streams[1:]:
            if metas[s].grid != metas[main].grid or len(feats[s]) != n:
                out[s] = feats[s][resample_indices(metas[s].grid, metas[main].grid, n, len(feats[s]))]
            else:
                out[s] = feats[s]
        return out

    def localize(self, feats: dict, metas: dict | None = None) -> tuple[list, np.ndarray, np.ndarray]:
        """Detections for one video: ``(detections, frame_probs, video_scores)``."""
        metas = metas or self.metas
        feats = self.align(feats, metas)
        probs, video = self.scores(feats)
        return detections(probs, video, metas[self.streams[0]].grid, self.classes, self.cfg.infer), probs, video


def localize_dataset(predictor: Predictor, dataset_dir, subset: str | None, on_video=None) -> dict:
    """Results JSON for a subset of a dataset (``{"results": {VIDEO: [...]}}``)."""
    ds = Dataset(dataset_dir)
    metas = {s: ds.stream(s).meta for s in predictor.streams}
    check_compatible(predictor.ckpt, ds.classes, metas, str(ds.root))
    vids = ds.videos(subset, stream=predictor.streams[0])
    results = {}
    for v in vids:
        feats = {s: ds.stream(s).load(v.name) for s in predictor.streams}
        results[v.name], _, _ = predictor.localize(feats, metas)
        if on_video:
            on_video(v.name)
    return {"results": results}


def localize_feature_files(predictor: Predictor, files: list) -> dict:
    """Results for loose feature files: ``VIDEO.npy`` of the first stream, other streams found as
    ``../STREAM/VIDEO.npy`` beside it (the dataset layout); each folder's ``meta.json`` gives the grid."""
    from wtalkit.data.annotations import read_json

    results = {}
    for f in files:
        f = Path(f)
        feats, metas = {}, {}
        for s in predictor.streams:
            path = f if s == predictor.streams[0] else f.parent.parent / s / f.name
            meta_path = path.parent / "meta.json"
            meta = StreamMeta.from_dict(read_json(meta_path), str(meta_path)) if meta_path.exists() else predictor.metas[s]
            feats[s] = load_feature_file(path, predictor.metas[s].dim)
            metas[s] = meta
        check_compatible(predictor.ckpt, predictor.classes, metas, str(f))
        results[f.stem], _, _ = predictor.localize(feats, metas)
    return {"results": results}
