"""Localize a dataset's test split with a checkpoint and score it (per-round and demo evaluation)."""

from __future__ import annotations

from pathlib import Path

from wtalkit.data.annotations import load_annotations
from wtalkit.eval.detection import evaluate_detection
from wtalkit.localize.predict import Predictor, localize_dataset
from wtalkit.models.checkpoint import load_checkpoint, resolve_checkpoint


def evaluate_run(run_or_ckpt, data, branch: str | None = None, cfg=None, device="auto"):
    """Localize the test split with a checkpoint (its default branch unless given) and score it."""
    ckpt = load_checkpoint(resolve_checkpoint(run_or_ckpt))
    branch = branch or ckpt.get("default_branch", "cbp")
    predictor = Predictor(run_or_ckpt, branch=branch, device=device, cfg=cfg, ckpt=ckpt)
    results = localize_dataset(predictor, data, predictor.cfg.data.test_subset)
    ann = load_annotations(Path(data) / "annotations.json")
    return evaluate_detection(ann, results, predictor.cfg.data.test_subset, predictor.cfg.eval.tiou)
