"""Alternate B/F training on a tiny dataset: it changes CBP, resumes exactly, and honours the ablations."""

import pytest
import torch

from tests.conftest import TINY_SETS
from wtalkit.config import load_config
from wtalkit.errors import WtalError
from wtalkit.localize.predict import Predictor
from wtalkit.models.checkpoint import load_checkpoint
from wtalkit.train.alternate import plan, train_alternate
from wtalkit.train.warmup import train_warmup


@pytest.fixture(scope="module")
def warm(tiny_dataset, tiny_clip_path, tmp_path_factory):
    run = tmp_path_factory.mktemp("warm")
    train_warmup(tiny_dataset, run, cfg(tiny_clip_path))
    return run / "warmup.pt"


def cfg(clip, *extra):
    return load_config("demo", TINY_SETS + [f"vlp.clip_model={clip}", "train.rounds=2"] + list(extra))


def test_plan_orders_steps():
    c = load_config("demo", ["train.rounds=2", "train.b_epochs=1", "train.f_epochs=2"])
    assert plan(c) == [(1, "B", 1), (1, "F", 1), (1, "F", 2), (2, "B", 1), (2, "F", 1), (2, "F", 2)]
    c = load_config("demo", ["train.rounds=2", "train.schedule=only-f", "train.f_epochs=1"])
    assert plan(c) == [(1, "F", 1), (2, "F", 1)]


def test_alternate_changes_cbp_and_writes_rounds(tiny_dataset, tiny_clip_path, warm, tmp_path):
    rows = []
    final = train_alternate(
        tiny_dataset,
        tmp_path,
        cfg(tiny_clip_path),
        warmup_ckpt=warm,
        evaluate=lambda p: rows.append(p.name) or {"ok": 1},
    )
    assert rows == ["round_1.pt", "round_2.pt"]
    a = load_checkpoint(warm)["models"]["cbp"]
    b = load_checkpoint(final)["models"]["cbp"]
    assert any(not torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(1, 50, 32)
    p_warm = Predictor(warm).branch_scores("cbp", x[0].numpy())[0]
    p_alt = Predictor(final).branch_scores("cbp", x[0].numpy())[0]
    assert abs(p_warm - p_alt).max() > 1e-4
    # the VLP branch is in the checkpoint and usable for analysis
    assert Predictor(final, branch="fused").branch_scores("vlp", torch.randn(50, 32).numpy())[0].shape == (50, 20)


def test_resume_equals_uninterrupted(tiny_dataset, tiny_clip_path, warm, tmp_path):
    full = train_alternate(tiny_dataset, tmp_path / "full", cfg(tiny_clip_path), warmup_ckpt=warm)
    part = train_alternate(tiny_dataset, tmp_path / "part", cfg(tiny_clip_path), warmup_ckpt=warm, stop_after_epochs=1)
    assert part.name == "alternate_last.pt"
    resumed = train_alternate(tiny_dataset, tmp_path / "part", cfg(tiny_clip_path), warmup_ckpt=warm)
    a, b = load_checkpoint(full)["models"], load_checkpoint(resumed)["models"]
    for branch in ("cbp", "vlp"):
        for k, v in a[branch].items():
            if isinstance(v, torch.Tensor):
                assert torch.equal(v, b[branch][k]), (branch, k)


def test_only_f_leaves_vlp_and_only_b_leaves_cbp(tiny_dataset, tiny_clip_path, warm, tmp_path):
    only_b = train_alternate(
        tiny_dataset, tmp_path / "b", cfg(tiny_clip_path, "train.schedule=only-b"), warmup_ckpt=warm
    )
    ck = load_checkpoint(only_b)
    w = load_checkpoint(warm)["models"]["cbp"]
    assert all(torch.equal(w[k], ck["models"]["cbp"][k]) for k in w)
    assert ck["default_branch"] == "fused"
    only_f = train_alternate(
        tiny_dataset,
        tmp_path / "f",
        cfg(tiny_clip_path, "train.schedule=only-f", "loss.use_fb=false"),
        warmup_ckpt=warm,
    )
    ck = load_checkpoint(only_f)
    assert any(not torch.equal(w[k], ck["models"]["cbp"][k]) for k in w)
    assert torch.equal(
        ck["models"]["vlp"]["temporal.blocks.0.attn.out_proj.weight"],
        torch.zeros_like(ck["models"]["vlp"]["temporal.blocks.0.attn.out_proj.weight"]),
    )


def test_needs_warmup(tiny_dataset, tiny_clip_path, tmp_path):
    with pytest.raises(WtalError, match="no warm-up checkpoint"):
        train_alternate(tiny_dataset, tmp_path, cfg(tiny_clip_path))
