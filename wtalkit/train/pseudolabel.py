"""Frame scores and confident pseudo-labels of a branch over a dataset split.

``branch``: ``cbp`` / ``vlp`` (the trained branches of a run) or ``raw-vlp``
(zero-shot CLIP with plain prompt templates, no training: the only-F teacher
and the paper's "raw VLP" row). Pseudo-labels use the video-level labels of
the annotations (``wtalkit.train.pseudo.ternary_labels``); where ground-truth
segments exist, the paper's Table-3 metrics (FG/BG mIoU) are computed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from wtalkit.data.features import Dataset
from wtalkit.data.loader import multi_hot
from wtalkit.errors import WtalError
from wtalkit.eval.pseudo import FBIoU
from wtalkit.models.cbp import topk_pool
from wtalkit.models.checkpoint import check_compatible, checkpoint_config, load_checkpoint, resolve_checkpoint
from wtalkit.train.pseudo import check_pseudo_dir, gt_foreground, pseudo_meta, save_pseudo_labels, ternary_labels

BRANCHES = ("cbp", "vlp", "raw-vlp")


class RawVLPScorer:
    """Zero-shot CLIP frame scores: ``softmax(logit_scale · cos(F_vis, prompt(class)))``."""

    def __init__(self, clip_spec: str, classes: list, templates: list, device="auto"):
        from wtalkit.device import resolve_device
        from wtalkit.models.clip import load_clip
        from wtalkit.models.vlp import RawVLP

        self.device = resolve_device(device)
        self.model = RawVLP(load_clip(clip_spec, device=self.device), classes, templates).to(self.device)

    @torch.inference_mode()
    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.model(torch.from_numpy(x).to(self.device)[None])["probs"][0].cpu().numpy()


def branch_scores(run, dataset_dir, branch: str, subset: str | None, templates=None, device="auto", cfg=None) -> dict:
    """``{video: (frame_probs [T, C], video_scores [C])}`` of one branch on a split."""
    if branch not in BRANCHES:
        raise WtalError(f"unknown branch '{branch}'; choose from {', '.join(BRANCHES)}")
    ds = Dataset(dataset_dir)
    ckpt_path = resolve_checkpoint(run)
    cfg = cfg or checkpoint_config(load_checkpoint(ckpt_path))
    stream = "cbp" if branch == "cbp" else "vlp"
    out = {}
    if branch == "raw-vlp":
        scorer = RawVLPScorer(cfg.vlp.clip_model, ds.classes, list(templates or cfg.vlp.templates), device)
        for v in ds.videos(subset, stream="vlp"):
            p = scorer(ds.stream("vlp").load(v.name))
            out[v.name] = (p, topk_pool(torch.from_numpy(p)[None], None, cfg.cbp.topk_ratio)[0].numpy())
        return out
    from wtalkit.models.trained import TrainedModel

    pred = TrainedModel(ckpt_path, branch=branch, device=device, cfg=cfg)
    check_compatible(pred.ckpt, ds.classes, {stream: ds.stream(stream).meta}, str(ds.root))
    for v in ds.videos(subset, stream=stream):
        out[v.name] = pred.branch_scores(branch, ds.stream(stream).load(v.name))
    return out


def pseudo_labels(
    run,
    dataset_dir,
    branch: str,
    subset: str | None,
    out_dir=None,
    templates=None,
    device="auto",
    cfg=None,
    overwrite: bool = False,
) -> tuple[dict, dict | None]:
    """Ternary pseudo-labels of a split (written to ``out_dir`` when given) and Table-3 metrics (or None).

    ``cfg`` defaults to the checkpoint's config (δh, δl, CLIP model and templates come from it).
    ``out_dir`` must be new or empty, or a pseudo-label folder to replace with ``overwrite``.
    """
    if out_dir is not None:
        check_pseudo_dir(out_dir, overwrite)
    ds = Dataset(dataset_dir)
    cfg = cfg or checkpoint_config(load_checkpoint(resolve_checkpoint(run)))
    scores = branch_scores(run, dataset_dir, branch, subset, templates, device, cfg)
    cidx = ds.annotations.class_index()
    stream = "cbp" if branch == "cbp" else "vlp"
    grid = ds.stream(stream).meta.grid
    labels, acc = {}, FBIoU()
    for name, (probs, _) in scores.items():
        v = ds.annotations.videos[name]
        if not v.labels:
            continue  # no video-level labels: nothing is confident
        labels[name] = ternary_labels(probs, multi_hot(v.labels, cidx), cfg.pseudo.delta_h, cfg.pseudo.delta_l)
        if v.segments:
            acc.update(labels[name], gt_foreground(v, grid, len(probs)))
    if not labels:
        raise WtalError(f"no video of subset '{subset}' has video-level labels to make pseudo-labels from")
    if out_dir is not None:
        save_pseudo_labels(
            Path(out_dir), labels, pseudo_meta(ds.classes, branch, cfg.pseudo.delta_h, cfg.pseudo.delta_l, grid)
        )
    return labels, (acc.compute() if acc.frames else None)


def pseudolabel_run(
    run,
    *,
    branch: str = "cbp",
    dataset=None,
    subset: str | None = None,
    out_dir=None,
    templates=None,
    overrides=(),
    device: str | None = None,
    overwrite: bool = False,
) -> tuple[dict, dict | None, str]:
    """``wtalkit pseudolabel``: ``(labels, Table-3 metrics or None, subset)`` with the run's config and
    ``overrides`` on top; the dataset defaults to the run's, the subset to the config's training subset."""
    from wtalkit.config import load_config
    from wtalkit.models.clip import check_template

    for t in templates or ():
        check_template(t)
    ckpt = load_checkpoint(resolve_checkpoint(run))
    cfg = load_config(None, overrides, base=checkpoint_config(ckpt).to_dict())
    dataset = dataset or ckpt.get("dataset")
    if not dataset:
        raise WtalError("no --dataset given and the run does not record one")
    subset = subset or cfg.data.train_subset
    labels, metrics = pseudo_labels(
        run, dataset, branch, subset, out_dir, templates, device or cfg.train.device, cfg, overwrite
    )
    return labels, metrics, subset
