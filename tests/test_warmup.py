"""Warm-up training: determinism, resume, and checkpoint compatibility checks."""

import shutil

import numpy as np
import pytest
import torch

from tests.conftest import TINY_SETS
from wtalkit.config import load_config
from wtalkit.errors import WtalError
from wtalkit.localize.predict import Predictor, localize_dataset
from wtalkit.models.checkpoint import load_checkpoint
from wtalkit.train.warmup import train_warmup


def cfg(*extra):
    return load_config("demo", TINY_SETS + list(extra))


def test_resume_equals_uninterrupted(tiny_dataset, tmp_path):
    full = train_warmup(tiny_dataset, tmp_path / "full", cfg())
    part = train_warmup(tiny_dataset, tmp_path / "part", cfg(), stop_after_epochs=1)
    assert part.name == "warmup_last.pt" and not (tmp_path / "part" / "warmup.pt").exists()
    resumed = train_warmup(tiny_dataset, tmp_path / "part", cfg())
    a, b = load_checkpoint(full)["models"]["cbp"], load_checkpoint(resumed)["models"]["cbp"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_training_changes_predictions_and_seed(tiny_dataset, tmp_path):
    # long enough for frames to beat the background class at theta_loc
    c0 = train_warmup(tiny_dataset, tmp_path / "s0", cfg("train.warmup_epochs=40"))
    c1 = train_warmup(tiny_dataset, tmp_path / "s1", cfg("train.warmup_epochs=40", "train.seed=1"))
    a, b = load_checkpoint(c0)["models"]["cbp"], load_checkpoint(c1)["models"]["cbp"]
    assert any(not torch.equal(a[k], b[k]) for k in a)
    # a model trained on 8 videos is not confident everywhere: add a lower theta_loc so each video has runs
    res = localize_dataset(Predictor(tmp_path / "s0", cfg=cfg("infer.theta_loc=[0.2,0.45]")), tiny_dataset, "test")
    assert len(res["results"]) == 4
    for dets in res["results"].values():
        assert dets and all(d["segment"][0] < d["segment"][1] for d in dets)


def test_refuses_to_clobber_and_config_change(tiny_dataset, tmp_path):
    train_warmup(tiny_dataset, tmp_path / "r", cfg())
    with pytest.raises(WtalError, match="already exists"):
        train_warmup(tiny_dataset, tmp_path / "r", cfg())
    train_warmup(tiny_dataset, tmp_path / "q", cfg(), stop_after_epochs=1)
    with pytest.raises(WtalError, match="another config"):
        train_warmup(tiny_dataset, tmp_path / "q", cfg("train.seed=9"))


def test_checkpoint_against_other_features(tiny_dataset, tmp_path):
    train_warmup(tiny_dataset, tmp_path / "r", cfg())
    other = tmp_path / "other"
    shutil.copytree(tiny_dataset, other)
    meta = other / "features" / "cbp" / "meta.json"
    meta.write_text(meta.read_text().replace('"dim": 32', '"dim": 48'))
    for f in (other / "features" / "cbp").glob("*.npy"):
        np.save(f, np.zeros((10, 48), np.float32))
    with pytest.raises(WtalError, match="dimension 48.*expects 32"):
        localize_dataset(Predictor(tmp_path / "r"), other, "test")


def test_diverged_training_stops_with_one_line(tiny_dataset, tiny_clip_path, tmp_path, monkeypatch):
    """A NaN loss (read once per epoch) ends warm-up and alternate training with a one-line error; no
    final checkpoint is written and the last finished epoch's resume checkpoint is kept."""
    from wtalkit.models.cbp import CBPBranch
    from wtalkit.train.alternate import train_alternate

    cfg = load_config("demo", TINY_SETS + [f"vlp.clip_model={tiny_clip_path}", "train.rounds=1"])
    run = tmp_path / "run"
    train_warmup(tiny_dataset, run, cfg)
    real = CBPBranch.loss
    calls = {"n": 0}

    def poisoned(self, out, mask, labels, pairs=0):
        calls["n"] += 1
        loss, parts = real(self, out, mask, labels, pairs)
        return (loss * float("nan"), parts) if calls["n"] > 2 else (loss, parts)

    monkeypatch.setattr(CBPBranch, "loss", poisoned)
    with pytest.raises(WtalError, match="training diverged.*warm-up epoch 2.*warmup_last.pt"):
        train_warmup(tiny_dataset, tmp_path / "again", cfg)
    assert not (tmp_path / "again" / "warmup.pt").exists()
    assert load_checkpoint(tmp_path / "again" / "checkpoints" / "warmup_last.pt")["epoch"] == 1
    calls["n"] = 2  # the F step's first batch is already poisoned
    with pytest.raises(WtalError, match="training diverged.*round 1 F step"):
        train_alternate(tiny_dataset, run, cfg, overwrite=True)
    assert not (run / "alternate.pt").exists()
