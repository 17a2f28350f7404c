"""CO2-Net as the CBP branch (``cbp.arch: co2net``): interface, masks, each loss term against a
hand-written reference, a warm-up that learns, alternate training on top, localization, presets."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from tests.conftest import TINY_SETS
from wtalkit.config import CBPConfig, load_config
from wtalkit.errors import WtalError
from wtalkit.models.build import build_cbp
from wtalkit.models.co2net import CO2Net

CO2_SETS = [
    "cbp.arch=co2net",
    "cbp.co2net.rgb_dim=16",
    "cbp.co2net.attn_dim=8",
    "cbp.co2net.embed_dim=24",
    "data.similar_pairs=1",
    "data.sampling=uniform",
    "infer.proposals=oic",
    "infer.theta_cls=0.2",
    "infer.theta_loc=[]",
    "infer.theta_act=[0.3,0.5,0.7]",
    "infer.nms_sigma=0.3",
]


def tiny_cfg(**kw) -> CBPConfig:
    c = CBPConfig(arch="co2net")
    c.co2net.rgb_dim, c.co2net.attn_dim, c.co2net.embed_dim = 16, 8, 24
    for k, v in kw.items():
        setattr(c.co2net, k, v)
    return c


def test_forward_shapes_and_interface():
    torch.manual_seed(0)
    m = CO2Net(32, 5, tiny_cfg())
    x, mask = torch.randn(3, 20, 32), torch.ones(3, 20, dtype=torch.bool)
    mask[2, 12:] = False
    out = m(x, mask)
    shapes = {k: tuple(v.shape) for k, v in out.items()}
    assert shapes["probs"] == shapes["loc"] == (3, 20, 5) and shapes["cas"] == (3, 20, 6)
    assert shapes["features"] == (3, 20, 24) and shapes["video"] == (3, 5)  # embed_dim
    assert shapes["actionness"] == shapes["attn"] == shapes["rgb_attn"] == shapes["flow_attn"] == (3, 20)
    p, a = out["probs"].detach(), out["actionness"].detach()
    assert float(p.min()) >= 0 and float(p.max()) <= 1 and float(a.min()) >= 0 and float(a.max()) <= 1
    torch.testing.assert_close(p.sum(-1), a)  # P(fg) x P(class | fg): the classes sum to the attention
    torch.testing.assert_close(out["attn"], (out["rgb_attn"] + out["flow_attn"]) / 2)
    torch.testing.assert_close(out["loc"], out["cas"][..., :-1] * a[..., None])
    assert float(out["video"].detach().sum(-1).max()) < 1  # softmax over C + 1, background dropped
    total, parts = m.loss(out, mask, torch.eye(5)[[1, 1, 3]], pairs=1)
    assert set(parts) == {"mil", "mil_supp", "co", "mutual", "norm", "guide"} and torch.isfinite(total)
    total.backward()
    assert all(p.grad is not None for p in m.parameters())
    # built by name from a config, and the halves must fit
    assert isinstance(build_cbp(load_config("demo", CO2_SETS), 32, 5), CO2Net)
    with pytest.raises(WtalError, match="rgb_dim"):
        CO2Net(16, 5, tiny_cfg())
    with pytest.raises(WtalError, match="pool_kernel"):
        load_config("demo", ["cbp.co2net.pool_kernel=4"])


@pytest.mark.parametrize("pool_kernel", [1, 5])
def test_padding_does_not_change_valid_frames(pool_kernel):
    torch.manual_seed(1)
    m = CO2Net(32, 4, tiny_cfg(pool_kernel=pool_kernel)).eval()
    x = torch.randn(2, 30, 32)
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[1, 17:] = False
    x[1, 17:] = 100.0  # garbage in the padding
    with torch.no_grad():
        batch = m(x, mask)
        alone = m(x[1:2, :17], None)
        alone_masked = m(x[1:2, :17], torch.ones(1, 17, dtype=torch.bool))
    for k in ("probs", "loc", "actionness", "features", "cas"):
        torch.testing.assert_close(batch[k][1, :17], alone[k][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch["video"][1], alone["video"][0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(alone_masked["video"], alone["video"], atol=1e-6, rtol=1e-5)
    # the loss of the padded video equals its loss alone
    lab = torch.eye(4)[[2, 2]]
    m.train()
    la = m.loss({k: v[1:2] for k, v in batch.items()}, mask[1:2], lab[1:2])[0]
    lb = m.loss(alone, None, lab[1:2])[0]
    torch.testing.assert_close(la, lb, atol=1e-5, rtol=1e-5)


# ---- each loss term against a slow reference ------------------------------------------------------


def _softmax(v):
    e = [math.exp(a - max(v)) for a in v]
    return [a / sum(e) for a in e]


def _ref_mil(cas, n_valid, labels, ratio, background):
    """cas: [B][T][C+1] lists; the top-k mean MIL loss written out by loops."""
    losses = []
    for b, rows in enumerate(cas):
        n = n_valid[b]
        k = max(1, math.floor(n / ratio))
        pooled = [sum(sorted((rows[t][c] for t in range(n)), reverse=True)[:k]) / k for c in range(len(rows[0]))]
        target = list(labels[b]) + [1.0 if background else 0.0]
        z = sum(target) + 1e-4
        logp = [math.log(p) for p in _softmax(pooled)]
        losses.append(-sum(t / z * lp for t, lp in zip(target, logp)))
    return sum(losses) / len(losses)


def _ref_cos_dist(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return 1 - dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _ref_co(feat, supp, n_valid, labels, pairs):
    total, shared_count = 0.0, 0.0
    D, C = len(feat[0][0]), len(labels[0])
    for p in range(pairs):
        hl = []
        for b in (2 * p, 2 * p + 1):
            n = n_valid[b]
            H, L = [], []
            for c in range(C):
                w = _softmax([supp[b][t][c] for t in range(n)])
                H.append([sum(w[t] * feat[b][t][d] for t in range(n)) for d in range(D)])
                L.append([sum((1 - w[t]) * feat[b][t][d] for t in range(n)) / max(n - 1, 1) for d in range(D)])
            hl.append((H, L))
        (H1, L1), (H2, L2) = hl
        for c in range(C):
            s = labels[2 * p][c] * labels[2 * p + 1][c]
            if s == 0:
                continue
            d1 = _ref_cos_dist(H1[c], H2[c])
            total += 0.5 * max(0.0, d1 - _ref_cos_dist(H1[c], L2[c]) + 0.5) * s
            total += 0.5 * max(0.0, d1 - _ref_cos_dist(H2[c], L1[c]) + 0.5) * s
            shared_count += s
    return total / shared_count


def test_each_loss_term_against_a_hand_reference():
    g = torch.Generator().manual_seed(3)
    B, T, C, D = 4, 9, 3, 5
    n_valid = [9, 7, 9, 6]
    mask = torch.tensor([[t < n for t in range(T)] for n in n_valid])
    cas = torch.randn(B, T, C + 1, generator=g, dtype=torch.float64) * 2
    a_rgb = torch.rand(B, T, generator=g, dtype=torch.float64)
    a_flow = torch.rand(B, T, generator=g, dtype=torch.float64)
    attn = (a_rgb + a_flow) / 2
    feat = torch.rand(B, T, D, generator=g, dtype=torch.float64)
    labels = torch.tensor([[1, 0, 1], [1, 1, 0], [0, 1, 0], [0, 1, 0]], dtype=torch.float64)
    out = {"cas": cas, "attn": attn, "rgb_attn": a_rgb, "flow_attn": a_flow, "features": feat}
    cfg = tiny_cfg(topk_ratio=4.0, alpha1=0.3, alpha2=0.7, alpha3=1.5, alpha4=2.0)
    model = CO2Net(32, C, cfg)
    total, parts = model.loss(out, mask, labels, pairs=2)

    L = cas.tolist()
    A, V, F_ = attn.tolist(), a_rgb.tolist(), a_flow.tolist()
    supp = [[[A[b][t] * (x - min(row)) + min(row) for x in row] for t, row in enumerate(L[b])] for b in range(B)]
    lab = labels.tolist()
    ref = {
        "mil": _ref_mil(L, n_valid, lab, 4.0, True),
        "mil_supp": _ref_mil(supp, n_valid, lab, 4.0, False),
        "co": _ref_co(feat.tolist(), [[r[:C] for r in v] for v in supp], n_valid, lab, 2),
    }
    frames = [(b, t) for b in range(B) for t in range(n_valid[b])]
    ref["mutual"] = sum((V[b][t] - F_[b][t]) ** 2 for b, t in frames) / len(frames)  # ½ + ½ of the same value
    ref["norm"] = sum(A[b][t] + V[b][t] + F_[b][t] for b, t in frames) / len(frames) / 3
    bg = [[_softmax(L[b][t])[-1] for t in range(T)] for b in range(B)]
    ref["guide"] = sum(abs(1 - s[b][t] - bg[b][t]) for s in (A, V, F_) for b, t in frames) / len(frames) / 3
    for k, v in ref.items():
        assert float(parts[k]) == pytest.approx(v, rel=1e-9, abs=1e-12), k
    expect = (
        ref["mil"] + ref["mil_supp"] + 1.5 * ref["co"] + 2.0 * ref["mutual"] + 0.3 * ref["norm"] + 0.7 * ref["guide"]
    )
    assert float(total) == pytest.approx(expect, rel=1e-9)
    # without pairs the co-activity term is 0; the mutual term pulls each attention toward the other only
    assert float(model.loss(out, mask, labels, pairs=0)[1]["co"]) == 0.0
    a_rgb.requires_grad_(True)
    out2 = dict(out, rgb_attn=a_rgb, attn=(a_rgb + a_flow) / 2)
    parts2 = model.loss(out2, mask, labels)[1]
    assert all(not v.requires_grad for v in parts2.values())


# ---- training, alternate, localization, presets -----------------------------------------------------


@pytest.fixture(scope="module")
def co2_warm(tiny_dataset, tiny_clip_path, tmp_path_factory):
    run = tmp_path_factory.mktemp("co2warm")
    from wtalkit.train.warmup import train_warmup

    cfg = load_config(
        "demo",
        TINY_SETS + CO2_SETS + [f"vlp.clip_model={tiny_clip_path}", "train.warmup_epochs=12", "optim.lr=0.001"],
    )
    train_warmup(tiny_dataset, run, cfg)
    return run, cfg


def test_warmup_lowers_its_loss(co2_warm):
    run, _ = co2_warm
    losses = [
        r["loss"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if r["stage"] == "warmup"
    ]
    assert len(losses) == 12 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3])


def test_alternate_runs_on_a_co2net_warmup(co2_warm, tiny_dataset, tmp_path):
    from wtalkit.models.checkpoint import load_checkpoint
    from wtalkit.train.alternate import train_alternate

    run, cfg = co2_warm
    final = train_alternate(tiny_dataset, tmp_path, cfg, warmup_ckpt=run / "warmup.pt")
    a = load_checkpoint(run / "warmup.pt")["models"]["cbp"]
    b = load_checkpoint(final)["models"]["cbp"]
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_localize_and_evaluate_a_co2net_run(co2_warm, tiny_dataset):
    from wtalkit.localize.evaluate import evaluate_run

    run, _ = co2_warm
    res = evaluate_run(run, tiny_dataset, device="cpu")
    assert res.mAP.shape == (7,) and np.isfinite(res.mAP).all()
    assert res.n_predictions + res.n_ignored > 0  # it localized something


def test_presets_load():
    t = load_config("thumos14-co2net")
    assert t.cbp.arch == "co2net" and t.data.similar_pairs == 3 and t.data.sampling == "uniform"
    assert t.train.warmup_epochs * t.data.batch_size == 5000 * 10 // 200 * 10  # 5000 iterations on 200 videos
    assert t.infer.proposals == "oic" and t.infer.theta_loc == [] and t.infer.nms_sigma == 0.3
    np.testing.assert_allclose(t.infer.theta_act, np.linspace(0.1, 0.9, 10))
    a = load_config("anet12-co2net")
    assert a.cbp.arch == "co2net" and a.cbp.co2net.pool_kernel == 13 and a.cbp.co2net.topk_ratio == 5
