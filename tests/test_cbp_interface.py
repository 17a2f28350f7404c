"""The pieces every CBP architecture shares: batch sampling options, the generalised post-processing
(actionness thresholds, upsampling, hard NMS) and the interface of the transformer architecture."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wtalkit.config import CBPConfig, InferConfig, load_config
from wtalkit.data.features import Dataset
from wtalkit.data.loader import FeatureBank, perturbed_indices
from wtalkit.errors import WtalError
from wtalkit.localize.predict import detections
from wtalkit.localize.proposals import proposals_from_scores, upsample_scores
from wtalkit.localize.softnms import hard_nms, soft_nms
from wtalkit.models.cbp import CBPBranch
from wtalkit.timeaxis import SnippetGrid

GRID = SnippetGrid(25.0, 16, 16)


def test_perturbed_indices_one_per_bin():
    rng = np.random.default_rng(0)
    for n, T in [(100, 10), (7, 7), (5, 12), (1000, 750), (1, 4)]:
        for _ in range(20):
            idx = perturbed_indices(n, T, rng)
            assert len(idx) == T and idx.min() >= 0 and idx.max() <= n - 1
            assert np.all(np.diff(idx) >= 0)
            edges = np.arange(T + 1) * n / T
            assert np.all(idx >= np.floor(edges[:-1]))  # in (or at the start of) its own bin
    assert np.array_equal(perturbed_indices(9, 9, rng), np.arange(9))


def test_uniform_sampling_covers_whole_videos_without_padding(tiny_dataset):
    bank = FeatureBank(Dataset(tiny_dataset), "train", ("cbp",), require_labels=True)
    batches = list(bank.batches(np.random.default_rng(0), 16, 3, sampling="uniform"))
    assert sum(len(b["idx"]) for b in batches) == len(bank)
    for b in batches:
        assert b["mask"].all() and b["x"]["cbp"].shape[1] == 16 and b["pairs"] == 0
        for row, i, idx in zip(b["x"]["cbp"], b["idx"], b["offsets"]):
            assert idx[-1] >= bank.lengths()[i] * 15 // 16  # reaches the end of the video
            np.testing.assert_array_equal(row.numpy(), bank.rows("cbp", i, 0, bank.lengths()[i])[idx])


def test_similar_pairs_lead_every_batch(tiny_dataset):
    bank = FeatureBank(Dataset(tiny_dataset), "train", ("cbp",), require_labels=True)
    batches = list(bank.batches(np.random.default_rng(1), 32, 6, similar_pairs=2))
    assert len(batches) == -(-len(bank) // 6)
    for b in batches:
        assert b["pairs"] == 2 and len(b["idx"]) <= 6
        for p in range(2):
            shared = b["labels"][2 * p] * b["labels"][2 * p + 1]
            assert shared.sum() > 0 and b["idx"][2 * p] != b["idx"][2 * p + 1]


def test_crop_batches_unchanged_by_the_new_options(tiny_dataset):
    """The default path draws exactly what it drew before the options existed (resumes depend on it)."""
    bank = FeatureBank(Dataset(tiny_dataset), "train", ("cbp",), require_labels=True)
    a = list(bank.batches(np.random.default_rng(5), 32, 3))
    rng = np.random.default_rng(5)
    order = rng.permutation(len(bank))
    for k, b in enumerate(a):
        idx = [int(i) for i in order[3 * k : 3 * k + 3]]
        assert b["idx"] == idx and b["offsets"] == [bank.crop(i, 32, rng) for i in idx]


def test_upsample_scores_is_linear_interpolation():
    x = np.array([0.0, 1.0, 3.0])
    up = upsample_scores(x, 4)
    np.testing.assert_allclose(up[:8], [0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5])
    np.testing.assert_allclose(up[8:], [3.0, 3.5, 4.0, 4.5])  # last slope extended
    np.testing.assert_array_equal(upsample_scores(x, 1), x)
    two = upsample_scores(np.stack([x, 2 * x], 1), 2)
    np.testing.assert_allclose(two[:, 1], 2 * two[:, 0])


def test_actionness_runs_are_scored_on_each_class_column():
    T = 20
    probs = np.zeros((T, 2))
    probs[5:10, 1] = 0.8
    act = np.zeros(T)
    act[4:12] = 0.9
    props = proposals_from_scores(probs, [1], [], GRID, "max", actionness=act, act_thresholds=[0.5])
    assert props.shape == (1, 4)
    np.testing.assert_allclose(props[0, 1:3], GRID.to_seconds([4, 12]))
    assert props[0, 3] == pytest.approx(0.8)
    both = proposals_from_scores(probs, [1], [0.5], GRID, "max", actionness=act, act_thresholds=[0.5])
    assert len(both) == 2  # the class run 5..9 and the actionness run 4..11


def test_upsampled_runs_end_between_snippets():
    probs = np.zeros((10, 1))
    probs[3:6, 0] = 1.0
    coarse = proposals_from_scores(probs, [0], [0.5], GRID)
    fine = proposals_from_scores(probs, [0], [0.5], GRID, upsample=4)
    np.testing.assert_allclose(coarse[0, 1:3], GRID.to_seconds([3, 6]))
    # the interpolated ramp crosses 0.5 half-way between snippets 2 and 3 and between 5 and 6
    np.testing.assert_allclose(fine[0, 1:3], GRID.to_seconds([2.5, 5.75]))


def slow_hard_nms(props, iou):
    out = []
    for c in sorted(set(props[:, 0])):
        rows = sorted(props[props[:, 0] == c].tolist(), key=lambda r: -r[3])
        while rows:
            best = rows.pop(0)
            out.append(best)
            keep = []
            for r in rows:
                inter = max(0.0, min(best[2], r[2]) - max(best[1], r[1]))
                union = (best[2] - best[1]) + (r[2] - r[1]) - inter
                if not inter / union > iou:
                    keep.append(r)
            rows = keep
    return np.array(sorted(out, key=lambda r: -r[3]))


def test_hard_nms_against_a_loop():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(1, 40))
        s = rng.uniform(0, 50, n)
        props = np.stack([rng.integers(0, 3, n), s, s + rng.uniform(0.5, 10, n), rng.random(n)], 1)
        np.testing.assert_allclose(hard_nms(props, 0.6), slow_hard_nms(props, 0.6))
    assert hard_nms(np.zeros((0, 4))).shape == (0, 4)


def test_nms_ties_keep_input_order():
    props = np.array([[0, 0.0, 10.0, 0.5], [0, 1.0, 10.0, 0.5]])
    assert hard_nms(props, 0.5)[0, 1] == 0.0
    assert soft_nms(props)[0, 1] == 0.0


def test_detections_hard_nms_and_actionness():
    T = 30
    probs = np.zeros((T, 2))
    probs[5:15, 0] = np.linspace(0.5, 1.0, 10)
    act = (probs[:, 0] > 0).astype(float)
    cfg = InferConfig(theta_cls=0.5, theta_loc=[], theta_act=[0.5], proposals="oic", nms="hard")
    dets = detections(probs, np.array([0.9, 0.1]), GRID, ["a", "b"], cfg, actionness=act)
    assert [d["label"] for d in dets] == ["a"]
    assert dets[0]["segment"] == [round(float(GRID.to_seconds(5)), 3), round(float(GRID.to_seconds(15)), 3)]


def test_transformer_meets_the_interface():
    m = CBPBranch(8, 3, CBPConfig(hidden_dim=16, num_heads=2, num_layers=1)).eval()
    x, mask = torch.randn(2, 10, 8), torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False
    out = m(x, mask)
    assert out["probs"].shape == (2, 10, 3) and out["features"].shape == (2, 10, 16) and out["video"].shape == (2, 3)
    loss, parts = m.loss(out, mask, torch.tensor([[1.0, 0, 0], [0, 1, 0]]))
    assert loss.ndim == 0 and set(parts) == {"cls"}
    # padded frames do not change the valid frames' video score
    x2 = x.clone()
    x2[1, 6:] = 100.0
    torch.testing.assert_close(m(x2, mask)["video"][1], out["video"][1])


def test_config_rejects_bad_arch_and_options():
    for bad in ["cbp.arch=i3d", "data.similar_pairs=6", "infer.theta_loc=[]", "infer.upsample=0", "infer.nms=soft2"]:
        with pytest.raises(WtalError):
            load_config("demo", [bad])
    assert load_config("demo", ["infer.theta_loc=[]", "infer.theta_act=[0.5]"]).infer.theta_act == [0.5]


def test_oic_zero_below_scores_each_threshold_on_its_zeroed_column():
    """UM's rule: a run cut at θ is scored on the column with values < θ set to 0."""
    col = np.array([0.05, 0.15, 0.6, 0.7, 0.2, 0.05, 0.0, 0.0])
    probs = col[:, None]
    video = np.array([0.5])
    plain = proposals_from_scores(probs, [0], [0.1, 0.5], GRID, "oic", video, 0.5, 0.2)
    zeroed = proposals_from_scores(probs, [0], [0.1, 0.5], GRID, "oic", video, 0.5, 0.2, oic_zero_below=True)
    np.testing.assert_array_equal(plain[:, :3], zeroed[:, :3])  # the same runs: 1..4 and 2..3

    def oic(values, a, b):  # slow reference: inner mean - mean of int(0.5 * L) frames each side + 0.2 * video
        n = b - a + 1
        lo, hi = max(0, int(a - 0.5 * n)), min(len(values) - 1, int(b + 0.5 * n))
        outer = [values[i] for i in list(range(lo, a)) + list(range(b + 1, hi + 1))]
        return values[a : b + 1].mean() - (np.mean(outer) if outer else 0.0) + 0.2 * 0.5

    z1, z5 = np.where(col >= 0.1, col, 0), np.where(col >= 0.5, col, 0)
    want = {(1, 4): oic(z1, 1, 4), (2, 3): oic(z5, 2, 3)}
    step = float(GRID.to_seconds(1))
    got = {(round(r[1] / step), round(r[2] / step) - 1): r[3] for r in zeroed}
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k])


def test_threshold_zero_keeps_only_positive_scores():
    props = proposals_from_scores(np.array([[0.0], [0.3], [0.0], [0.4]]), [0], [0.0], GRID)
    assert len(props) == 2
