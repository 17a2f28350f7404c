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


# --- issue 13: method rules, the label-free round choice, localize's default branch -----------


def test_rules_are_checked_and_recorded(tiny_dataset, tiny_clip_path, warm, tmp_path):
    from wtalkit.train.alternate import Rules, rules_of

    assert rules_of(cfg(tiny_clip_path)) == Rules()  # the defaults: wtalkit's reading before issue 13
    assert rules_of(cfg(tiny_clip_path), select="agreement").select == "agreement"
    with pytest.raises(WtalError, match="train.conflict"):
        Rules(conflict="vote")
    with pytest.raises(WtalError, match="train.select"):
        Rules(select="test-map")
    final = train_alternate(
        tiny_dataset, tmp_path, cfg(tiny_clip_path), warmup_ckpt=warm, rules=Rules(conflict="uncertain")
    )
    ck = load_checkpoint(final)
    assert ck["rules"] == {"conflict": "uncertain", "f_cls_weight": 1.0, "select": "last"}
    assert ck["selection"]["rule"] == "last" and ck["round"] == 2


def test_conflicting_frames_are_not_distilled(tiny_dataset, tiny_clip_path, warm, monkeypatch):
    """In an F step, the VLP teacher's confident foreground on a frame the CBP student confidently calls
    background reaches the loss as uncertain (-1) under conflict=uncertain, as 1 under the default."""
    import wtalkit.train.alternate as alt

    seen = []

    def spy(probs, features, pseudo, mask, cfg=None, generator=None, kd_keep=None):
        seen.append(pseudo.clone())
        return probs.sum() * 0.0, {"kd": 0.0, "fb": 0.0}

    monkeypatch.setattr(alt, "distill_loss", spy)
    for conflict, expected in (("teacher", 1), ("uncertain", -1)):
        trainer = alt.Trainer(tiny_dataset, load_checkpoint(warm), cfg(tiny_clip_path), rules=alt.Rules(conflict))
        # teacher (VLP) certain of foreground everywhere, student (CBP) certain of background everywhere
        monkeypatch.setattr(
            trainer,
            "pseudo",
            lambda model, x, mask, labels, t=trainer: torch.where(
                labels.bool()[:, None, :].expand(x.shape[0], x.shape[1], -1),
                torch.full((1,), 1 if model is t.vlp else 0, dtype=torch.int8),
                torch.zeros((1,), dtype=torch.int8),
            ),
        )
        seen.clear()
        trainer.epoch("F", __import__("numpy").random.default_rng(0))
        labelled = torch.cat([p[p != 0] for p in seen])
        assert labelled.numel() > 0 and bool((labelled == expected).all()), conflict


def test_agreement_rule_keeps_the_chosen_round(tiny_dataset, tiny_clip_path, warm, tmp_path, monkeypatch):
    import wtalkit.train.alternate as alt

    # a hand-made criterion sequence: round 1 agrees most, so alternate.pt must be round 1's models
    scores = iter([0.7, 0.4])
    monkeypatch.setattr(alt.Trainer, "agreement", lambda self: {"fg": 0.0, "bg": 0.0, "score": next(scores)})
    final = train_alternate(
        tiny_dataset, tmp_path, cfg(tiny_clip_path), warmup_ckpt=warm, rules=alt.Rules(select="agreement")
    )
    ck, r1, r2 = (load_checkpoint(p) for p in (final, tmp_path / "round_1.pt", tmp_path / "round_2.pt"))
    assert ck["round"] == 1 and ck["selection"]["round"] == 1 and ck["selection"]["rule"] == "agreement"
    assert [a["score"] for a in ck["selection"]["agreement"].values()] == [0.7, 0.4]
    assert all(torch.equal(v, r1["models"]["cbp"][k]) for k, v in ck["models"]["cbp"].items())
    assert any(not torch.equal(v, r2["models"]["cbp"][k]) for k, v in ck["models"]["cbp"].items())
    import json

    last = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()][-1]
    assert last["selection"]["round"] == 1 and last["agreement"]["score"] == 0.4


def test_agreement_is_measured_on_training_videos(tiny_dataset, tiny_clip_path, warm):
    import wtalkit.train.alternate as alt

    trainer = alt.Trainer(tiny_dataset, load_checkpoint(warm), cfg(tiny_clip_path))
    assert {v.subset for v in trainer.bank.videos} == {"train"}
    m = trainer.agreement()
    assert set(m) == {"fg", "bg", "score"} and 0.0 <= m["score"] <= 1.0


def test_alternate_steps_train_at_their_own_rate(tiny_dataset, tiny_clip_path, warm):
    import wtalkit.train.alternate as alt

    for extra, lr in ((["optim.lr=0.003", "optim.alternate_lr=0.0002"], 2e-4), (["optim.lr=0.003"], 3e-3)):
        trainer = alt.Trainer(tiny_dataset, load_checkpoint(warm), cfg(tiny_clip_path, *extra))
        assert [g["lr"] for o in (trainer.opt_cbp, trainer.opt_vlp) for g in o.param_groups] == [lr, lr]


def test_resume_with_another_alternate_rate_is_refused(tiny_dataset, tiny_clip_path, warm, tmp_path):
    train_alternate(tiny_dataset, tmp_path, cfg(tiny_clip_path), warmup_ckpt=warm, stop_after_epochs=1)
    with pytest.raises(WtalError, match="another config"):
        train_alternate(tiny_dataset, tmp_path, cfg(tiny_clip_path, "optim.alternate_lr=0.0005"), warmup_ckpt=warm)


def test_localize_uses_the_runs_default_branch(tiny_dataset, tiny_clip_path, warm, tmp_path, monkeypatch):
    import shutil

    import wtalkit.localize.inputs as inputs

    run = tmp_path / "only_b"
    run.mkdir()
    shutil.copy(warm, run / "warmup.pt")
    train_alternate(tiny_dataset, run, cfg(tiny_clip_path, "train.schedule=only-b"))
    assert load_checkpoint(run / "alternate.pt")["default_branch"] == "fused"
    used = []
    real = inputs.Predictor

    def spy(*args, **kwargs):
        p = real(*args, **kwargs)
        used.append(p.branch)
        return p

    monkeypatch.setattr(inputs, "Predictor", spy)
    res, _ = inputs.localize_inputs(run, [], device="cpu")  # only-B is scored fused, as alternate reports it
    assert res["wtalkit"] == {"branch": "fused", "checkpoint": "alternate.pt"}  # recorded in the results
    inputs.localize_inputs(run, [], branch="cbp", device="cpu")  # an explicit --branch still wins
    inputs.localize_inputs(warm, [], device="cpu")  # a warm-up (no default_branch) is CBP
    assert used == ["fused", "cbp", "cbp"]
