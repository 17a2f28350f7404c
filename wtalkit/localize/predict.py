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

from wtalkit.config import InferConfig
from wtalkit.data.features import Dataset, StreamMeta, load_feature_file
from wtalkit.localize.proposals import proposals_from_scores
from wtalkit.localize.softnms import hard_nms, soft_nms
from wtalkit.models.checkpoint import check_compatible
from wtalkit.models.trained import TrainedModel
from wtalkit.timeaxis import SnippetGrid


def kept_classes(video_scores: np.ndarray, theta_cls: float) -> np.ndarray:
    """The classes a video is localized for: those whose video score is above ``theta_cls``, else the top one."""
    keep = np.flatnonzero(video_scores > theta_cls)
    return keep if len(keep) else np.array([int(np.argmax(video_scores))])


def detections(
    probs: np.ndarray,
    video_scores: np.ndarray,
    grid: SnippetGrid,
    classes: list,
    cfg: InferConfig,
    *,
    loc: np.ndarray | None = None,
    actionness: np.ndarray | None = None,
) -> list:
    """ActivityNet-style detections for one video from frame probabilities ``[T, C]``.

    ``loc [T, C]`` (default ``probs``): the class scores runs are cut from (``infer.theta_loc``) and
    proposals scored on; ``actionness [T]``: a class-agnostic signal cut at ``infer.theta_act``.
    """
    keep = kept_classes(video_scores, cfg.theta_cls)
    props = proposals_from_scores(
        probs if loc is None else loc,
        keep,
        cfg.theta_loc,
        grid,
        cfg.proposals,
        video_scores,
        cfg.oic_outer,
        cfg.oic_gamma,
        actionness=actionness,
        act_thresholds=cfg.theta_act,
        upsample=cfg.upsample,
        oic_zero_below=cfg.oic_zero_below,
    )
    if cfg.nms == "hard":
        props = hard_nms(props, iou=cfg.nms_iou, max_keep=cfg.max_proposals, min_score=cfg.min_score)
    else:
        props = soft_nms(props, sigma=cfg.nms_sigma, max_keep=cfg.max_proposals, min_score=cfg.min_score)
    return [
        {"label": classes[int(c)], "score": round(float(s), 6), "segment": [round(float(a), 3), round(float(b), 3)]}
        for c, a, b, s in props
    ]


class Predictor(TrainedModel):
    """A trained model ready for localization, loaded from a run folder or checkpoint file."""

    def localize(self, feats: dict, metas: dict | None = None) -> tuple[list, np.ndarray, np.ndarray]:
        """Detections for one video: ``(detections, frame_probs, video_scores)``."""
        metas = metas or self.metas
        feats = self.align(feats, metas)
        out = self.outputs(feats)
        grid = metas[self.streams[0]].grid
        dets = detections(
            out["probs"], out["video"], grid, self.classes, self.cfg.infer, loc=out["loc"], actionness=out["actionness"]
        )
        return dets, out["probs"], out["video"]


def localize_dataset(predictor: Predictor, dataset_dir, subset: str | None, on_video=None) -> dict:
    """Results JSON for a subset of a dataset (``{"results": {VIDEO: [...]}}``); ``dataset_dir`` is a
    folder or an open :class:`~wtalkit.data.features.Dataset`."""
    from wtalkit.localize.video import clip_to_duration

    ds = dataset_dir if isinstance(dataset_dir, Dataset) else Dataset(dataset_dir)
    metas = {s: ds.stream(s).meta for s in predictor.streams}
    check_compatible(predictor.ckpt, ds.classes, metas, str(ds.root))
    vids = ds.videos(subset, stream=predictor.streams[0])
    results = {}
    for v in vids:
        feats = {s: ds.stream(s).load(v.name) for s in predictor.streams}
        dets, _, _ = predictor.localize(feats, metas)
        results[v.name] = clip_to_duration(dets, v.duration)  # the trailing partial snippet can pass the end
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
            meta = (
                StreamMeta.from_dict(read_json(meta_path), str(meta_path)) if meta_path.exists() else predictor.metas[s]
            )
            feats[s] = load_feature_file(path, predictor.metas[s].dim)
            metas[s] = meta
        check_compatible(predictor.ckpt, predictor.classes, metas, str(f))
        results[f.stem], _, _ = predictor.localize(feats, metas)
    return {"results": results}
