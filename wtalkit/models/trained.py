"""A trained run, loaded for scoring: frame probabilities and video scores of its branches.

Shared by localization (:mod:`wtalkit.localize.predict`) and pseudo-labelling
(:mod:`wtalkit.train.pseudolabel`).
"""

from __future__ import annotations

import numpy as np
import torch

from wtalkit.config import Config
from wtalkit.data.features import StreamMeta
from wtalkit.device import resolve_device
from wtalkit.errors import WtalError
from wtalkit.models.build import build_cbp, build_vlp_from_checkpoint, load_branch
from wtalkit.models.cbp import topk_pool
from wtalkit.models.checkpoint import checkpoint_config, load_checkpoint, resolve_checkpoint
from wtalkit.timeaxis import SnippetGrid, resample_indices

BRANCHES = ("cbp", "vlp", "fused")


class TrainedModel:
    """The trained branch(es) of a run folder or checkpoint file, ready to score videos."""

    def __init__(self, run_or_ckpt, branch: str = "cbp", device: str = "auto", cfg: Config | None = None, ckpt=None):
        """``ckpt``: the checkpoint dict of ``run_or_ckpt`` when the caller has already read it."""
        if branch not in BRANCHES:
            raise WtalError(f"unknown branch '{branch}'; choose from {', '.join(BRANCHES)}")
        self.path = resolve_checkpoint(run_or_ckpt)
        self.ckpt = ckpt if ckpt is not None else load_checkpoint(self.path)
        self.cfg = cfg or checkpoint_config(self.ckpt)
        self.classes = list(self.ckpt["classes"])
        self.metas = {k: StreamMeta.from_dict(v) for k, v in self.ckpt["streams"].items()}
        self.branch = branch
        self.device = resolve_device(device)
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
            m = build_cbp(self.cfg, self.metas["cbp"].dim, len(self.classes))
        else:
            m = build_vlp_from_checkpoint(self.ckpt, self.cfg, self.classes, device=self.device)
        load_branch(m, self.ckpt["models"][name], name, self.path)
        return m.to(self.device).eval()

    @torch.inference_mode()
    def branch_outputs(self, name: str, x: np.ndarray) -> dict:
        """One branch on one video: ``probs [T, C]``, ``video [C]`` and, where the branch gives them,
        ``loc [T, C]`` and ``actionness [T]`` (else None); see the CBP interface in :mod:`wtalkit.models.cbp`."""
        model = self.models[name]
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None].to(self.device)
        out = model(t, None)
        if name == "cbp":
            video = out["video"][0]
        else:
            video = topk_pool(out["probs"], None, self.cfg.cbp.topk_ratio)[0]
        res = {"probs": out["probs"][0], "video": video, "loc": out.get("loc"), "actionness": out.get("actionness")}
        res["loc"] = None if res["loc"] is None else res["loc"][0]
        res["actionness"] = None if res["actionness"] is None else res["actionness"][0]
        return {k: None if v is None else v.float().cpu().numpy() for k, v in res.items()}

    def branch_scores(self, name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frame probabilities ``[T, C]`` and video scores ``[C]`` of one branch on one video."""
        out = self.branch_outputs(name, x)
        return out["probs"], out["video"]

    def outputs(self, feats: dict) -> dict:
        """:meth:`branch_outputs` of the selected branch, or of the fusion (``probs`` and ``video``
        averaged; no ``loc`` / ``actionness``), from ``{stream: [T, D]}``."""
        if self.branch != "fused":
            return self.branch_outputs(self.branch, feats[self.branch])
        pc, vc = self.branch_scores("cbp", feats["cbp"])
        pv, vv = self.branch_scores("vlp", feats["vlp"])
        w = self.cfg.train.fuse_weight if self.cfg.train.fuse == "weighted" else 0.5
        return {"probs": w * pc + (1 - w) * pv, "video": w * vc + (1 - w) * vv, "loc": None, "actionness": None}

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
