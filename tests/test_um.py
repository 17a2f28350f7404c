"""UM (Lee et al., AAAI 2021) as the CBP branch: shapes, masking, hand-computed losses, training on top."""

import math

import numpy as np
import pytest
import torch

from wtalkit.config import CBPConfig, UMConfig, load_config
from wtalkit.errors import WtalError
from wtalkit.models.build import build_cbp
from wtalkit.models.cbp import topk_pool
from wtalkit.models.checkpoint import load_checkpoint
from wtalkit.models.um import UM, select_mean
from wtalkit.train.run import Run
from wtalkit.train.warmup import train_warmup

KEYS = {"probs", "features", "video", "loc", "actionness", "cas", "video_bkg", "feat_act", "feat_bkg", "magnitudes"}


def tiny_um(feat_dim=8, classes=3, **um):
    torch.manual_seed(0)
    return UM(feat_dim, classes, CBPConfig(arch="um", um=UMConfig(**{"hidden_dim": 16, **um})))


def um_cfg(clip, *extra):
    return load_config(
        "thumos14-um",
        [
            "data.num_segments=64",
            "data.batch_size=4",
            "cbp.um.hidden_dim=16",
            "train.warmup_epochs=6",
            "optim.lr=0.003",
            f"vlp.clip_model={clip}",
            "vlp.temporal_heads=2",
            "train.rounds=1",
            "train.b_epochs=1",
            "train.f_epochs=1",
            "infer.upsample=4",
        ]
        + list(extra),
    )


def test_forward_shapes_keys_and_ranges():
    m = tiny_um()
    with torch.no_grad():
        out = m(torch.rand(2, 20, 8))
    assert set(out) >= KEYS
    assert out["probs"].shape == out["loc"].shape == out["cas"].shape == (2, 20, 3)
    assert out["features"].shape == (2, 20, 16) and out["actionness"].shape == (2, 20)
    assert out["video"].shape == out["video_bkg"].shape == (2, 3)
    assert out["feat_act"].shape == out["feat_bkg"].shape == (2, 16)
    for k in ("probs", "loc", "actionness", "video"):
        assert float(out[k].min()) >= 0 and float(out[k].max()) <= 1, k
    assert torch.allclose(out["video"].sum(-1), torch.ones(2))
    assert torch.allclose(out["loc"].amax(1), torch.ones(2, 3))  # per-class min-max over the video


def test_eval_is_deterministic_train_is_seeded():
    m = tiny_um()
    x = torch.rand(2, 30, 8)
    m.eval()
    a, b = m(x), m(x)
    assert all(torch.equal(a[k], b[k]) for k in a)
    m.train()
    torch.manual_seed(5)
    a = m(x)
    torch.manual_seed(5)
    b = m(x)
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = m(x)  # another dropout draw selects other snippets
    assert not torch.equal(a["feat_act"], c["feat_act"])


def test_hand_computed_selection_and_inference_signals():
    # identity embedding (centre tap) on non-negative inputs: f_t = x_t, magnitudes known by hand
    m = UM(2, 2, CBPConfig(arch="um", um=UMConfig(hidden_dim=2, r_act=9, r_bkg=4))).eval()
    with torch.no_grad():
        m.embed.weight.zero_()
        m.embed.bias.zero_()
        m.embed.weight[:, :, 1] = torch.eye(2)
        m.classifier.weight[:, :, 0] = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    x = torch.tensor([[3, 4], [0, 1], [1, 0], [6, 8], [0, 2], [2, 0], [0, 3], [1, 1], [2, 2]], dtype=torch.float32)
    out = m(x[None])
    mag = x.norm(dim=1)  # 5, 1, 1, 10, 2, 2, 3, 1.41, 2.83 -> k_act = 9 // 9 = 1, k_bkg = 9 // 4 = 2
    assert torch.allclose(out["magnitudes"][0], mag)
    assert torch.allclose(out["feat_act"][0], torch.tensor([6.0, 8.0]))  # the largest magnitude
    assert torch.allclose(out["feat_bkg"][0], torch.tensor([0.5, 0.5]))  # mean of snippets 1 and 2 (magnitude 1)
    assert torch.allclose(out["video"][0], torch.tensor([6.0, 8.0]).softmax(0))  # top-1 CAS (6, 8)
    assert torch.allclose(out["video_bkg"][0], torch.tensor([0.5, 0.5]).softmax(0))
    act = ((mag - 1.0) / (10.0 - 1.0)).clamp(0, 1)  # between the background (1) and action (10) means
    assert torch.allclose(out["actionness"][0], act)
    probs = x.softmax(1) * act[:, None]
    assert torch.allclose(out["probs"][0], probs)
    lo, hi = probs.min(0).values, probs.max(0).values
    assert torch.allclose(out["loc"][0], (probs - lo) / (hi - lo))


def test_padding_never_selected_nor_averaged():
    m = tiny_um().eval()
    x = torch.rand(1, 18, 8)
    padded = torch.cat([x, 100 * torch.rand(1, 9, 8)], 1)  # huge padded inputs would win every top-k
    mask = torch.zeros(1, 27, dtype=torch.bool)
    mask[0, :18] = True
    with torch.no_grad():
        a, b = m(x), m(padded, mask)
    for k in ("video", "video_bkg", "feat_act", "feat_bkg"):
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    for k in ("probs", "loc", "actionness", "cas", "features"):
        assert torch.allclose(a[k], b[k][:, :18], atol=1e-6), k
    for k in ("probs", "loc", "actionness"):
        assert float(b[k][:, 18:].abs().max()) == 0, k
    # the helpers on their own: a video with 4 valid frames of 8, k = 2
    v = torch.arange(8.0).view(1, 8, 1)
    mask = torch.tensor([[True] * 4 + [False] * 4])
    k = torch.tensor([2])
    assert float(topk_pool(v, mask, 2)) == 2.5 and float(topk_pool(v, mask, 2, largest=False)) == 0.5
    assert float(select_mean(v, v[..., 0], mask, k, 2)) == 2.5
    assert float(select_mean(v, v[..., 0], mask, torch.tensor([1]), 3)) == 3.0  # kmax > k: extra picks weigh 0


def test_loss_terms_hand_computed():
    m = tiny_um(classes=2, alpha=0.5, beta=2.0, margin=10.0)
    out = {
        "video": torch.tensor([[0.8, 0.2], [0.6, 0.4]]),
        "video_bkg": torch.tensor([[0.6, 0.4], [0.5, 0.5]]),
        "feat_act": torch.tensor([[3.0, 4.0], [5.0, 12.0]]),  # norms 5 (< margin) and 13 (> margin)
        "feat_bkg": torch.tensor([[0.0, 2.0], [0.0, 0.0]]),
    }
    labels = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # normalised targets (1, 0) and (0.5, 0.5)
    total, parts = m.loss(out, None, labels)
    cls = -(math.log(0.8) + math.log(0.8) + 0.5 * math.log(0.6) + 0.5 * math.log(0.4) + 0.5 * math.log(0.4)
            + 0.5 * math.log(0.6)) / 4  # fmt: skip
    be = -(0.5 * math.log(0.6) + 0.5 * math.log(0.4)) * 2 / 4 - math.log(0.5) * 2 / 4
    um = ((10 - 5 + 2) ** 2 + 0.0) / 2
    assert parts["cls"].item() == pytest.approx(cls, rel=1e-6)
    assert parts["be"].item() == pytest.approx(be, rel=1e-6)
    assert parts["um"].item() == pytest.approx(um, rel=1e-6)
    assert total.item() == pytest.approx(cls + 0.5 * um + 2.0 * be, rel=1e-6)
    assert all(not v.requires_grad and v.dim() == 0 for v in parts.values())


def test_loss_backpropagates_through_a_forward_pass():
    m = tiny_um().train()
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1, 15:] = False
    out = m(torch.rand(2, 20, 8), mask)
    total, _ = m.loss(out, mask, torch.tensor([[1.0, 0, 0], [0, 1.0, 1.0]]))
    total.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


def test_presets_and_config_checks(tiny_clip_path):
    c = load_config("thumos14-um")
    assert c.cbp.arch == "um" and c.data.sampling == "uniform" and c.data.num_segments == 750
    assert c.data.batch_size == 16 and c.train.warmup_epochs * 200 == 10_000 * 16
    assert c.infer.proposals == "oic" and c.infer.nms == "hard" and c.infer.upsample == 24
    assert np.allclose(c.infer.theta_loc, np.arange(0, 0.25, 0.025))
    assert np.allclose(c.infer.theta_act, np.arange(0.4, 0.625, 0.025))
    a = load_config("anet12-um")
    assert a.cbp.arch == "um" and a.data.test_subset == "validation"
    assert isinstance(build_cbp(um_cfg(tiny_clip_path), 32, 20), UM)
    for bad in ("cbp.um.r_act=0", "cbp.um.margin=0", "cbp.um.alpha=-1", "cbp.um.dropout=1", "cbp.um.hidden_dim=0"):
        with pytest.raises(WtalError, match=r"^invalid config: .*cbp\.um"):
            load_config("thumos14-um", [bad])


@pytest.fixture(scope="module")
def um_warm(tiny_dataset, tiny_clip_path, tmp_path_factory):
    run = tmp_path_factory.mktemp("um_warm")
    train_warmup(tiny_dataset, run, um_cfg(tiny_clip_path))
    return run


def test_warmup_lowers_the_um_loss(um_warm):
    losses = [r["loss"] for r in Run(um_warm).records() if r.get("stage") == "warmup"]
    assert len(losses) == 6 and losses[-1] < losses[0]
    ckpt = load_checkpoint(um_warm / "warmup.pt")
    assert "embed.weight" in ckpt["models"]["cbp"] and ckpt["config"]["cbp"]["arch"] == "um"


def test_evaluate_a_um_run_end_to_end(um_warm, tiny_dataset):
    from wtalkit.localize.evaluate import evaluate_run
    from wtalkit.localize.predict import Predictor, localize_dataset

    res = localize_dataset(Predictor(um_warm), tiny_dataset, "test")
    assert len(res["results"]) == 4 and all(res["results"].values())
    r = evaluate_run(um_warm, tiny_dataset)
    assert r.mAP.shape == (7,) and np.isfinite(r.mAP).all()


def test_alternate_runs_on_top_of_a_um_warmup(um_warm, tiny_dataset, tiny_clip_path, tmp_path):
    from wtalkit.train.alternate import train_alternate

    final = train_alternate(tiny_dataset, tmp_path, um_cfg(tiny_clip_path), warmup_ckpt=um_warm / "warmup.pt")
    a = load_checkpoint(um_warm / "warmup.pt")["models"]["cbp"]
    b = load_checkpoint(final)["models"]["cbp"]
    assert set(a) == set(b) and any(not torch.equal(a[k], b[k]) for k in a)


def test_bce_equals_bceloss_and_keeps_gradients_finite_on_saturated_scores():
    """A saturated softmax gives scores of exactly 0 and 1: the loss must match nn.BCELoss (the authors')
    and its gradient must stay finite (a clamped log gave 0 * inf = NaN and NaN weights)."""
    from wtalkit.models.um import bce

    logits = torch.tensor([[200.0, 0.0, -200.0], [0.3, -0.2, 0.1]], requires_grad=True)
    p = logits.softmax(-1)
    assert (p == 0).any() and (p == 1).any()
    target = torch.tensor([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
    loss = bce(p, target)
    torch.testing.assert_close(loss, torch.nn.BCELoss()(p, target))
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    ref = -(target * p.detach().log().clamp(min=-100) + (1 - target) * (1 - p.detach()).log().clamp(min=-100)).mean()
    torch.testing.assert_close(loss.detach(), ref)  # the same value as the log-clamp formula
