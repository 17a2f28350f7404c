"""Proposals from hand-made score curves and soft-NMS against a slow loop reference."""

import numpy as np
import pytest

from wtalkit.config import InferConfig
from wtalkit.localize.predict import detections
from wtalkit.localize.proposals import proposals_from_scores, run_max, runs_above
from wtalkit.localize.softnms import soft_nms
from wtalkit.timeaxis import SnippetGrid


def test_runs_above_edges():
    s = np.array([0.5, 0.5, 0.1, 0.45, 0.2, 0.9, 0.9, 0.9])
    first, last = runs_above(s, 0.45)
    assert first.tolist() == [0, 3, 5]
    assert last.tolist() == [1, 3, 7]
    assert run_max(s, first, last).tolist() == [0.5, 0.45, 0.9]
    assert runs_above(np.zeros(4), 0.5)[0].size == 0


def test_proposals_seconds_and_max_score():
    g = SnippetGrid(25.0, 16, 16)
    p = np.zeros((10, 3))
    p[2:5, 1] = [0.5, 0.9, 0.6]
    p[7:10, 1] = 0.7
    p[:, 2] = 0.99  # a class not asked for
    out = proposals_from_scores(p, [0, 1], [0.45, 0.65], g)
    rows = sorted(map(tuple, out.round(6)))
    assert rows == [(1, 1.28, 3.2, 0.9), (1, 1.92, 2.56, 0.9), (1, 4.48, 6.4, 0.7)]


def slow_soft_nms(props, sigma):
    """Reference: the textbook loop, one class at a time."""
    out = []
    for c in sorted(set(props[:, 0])):
        rows = [list(r) for r in props[props[:, 0] == c]]
        while rows:
            i = max(range(len(rows)), key=lambda j: rows[j][3])
            best = rows.pop(i)
            out.append(best)
            for r in rows:
                inter = max(0.0, min(best[2], r[2]) - max(best[1], r[1]))
                union = (best[2] - best[1]) + (r[2] - r[1]) - inter
                iou = inter / union if union > 0 else 0.0
                r[3] *= np.exp(-(iou**2) / sigma)
    out = np.array(out).reshape(-1, 4)
    return out[np.argsort(-out[:, 3], kind="stable")]


@pytest.mark.parametrize("seed", range(8))
def test_soft_nms_matches_loop(seed):
    rng = np.random.default_rng(seed)
    n = rng.integers(1, 60)
    s = rng.uniform(0, 100, n)
    props = np.stack([rng.integers(0, 4, n), s, s + rng.uniform(0.5, 20, n), rng.uniform(0, 1, n)], 1)
    fast = soft_nms(props, sigma=0.5)
    ref = slow_soft_nms(props, 0.5)
    key = lambda a: a[np.lexsort((a[:, 2], a[:, 1], a[:, 0], -a[:, 3].round(12)))]
    np.testing.assert_allclose(key(fast), key(ref), atol=1e-12)


def test_soft_nms_limits_and_empty():
    assert soft_nms(np.zeros((0, 4))).shape == (0, 4)
    props = np.array([[0, 0, 10, 0.9], [0, 0, 10, 0.8], [1, 50, 60, 0.5]])
    out = soft_nms(props, sigma=0.5, max_keep=2)
    assert out.shape == (2, 4)
    assert out[0, 3] == 0.9 and out[1, 3] == 0.5  # the duplicate decayed by exp(-1/0.5)
    out = soft_nms(props, sigma=0.5, min_score=0.2)
    assert 0.8 * np.exp(-2) < 0.2 and len(out) == 2


def test_detections_class_filter_and_fallback():
    g = SnippetGrid(25.0, 16, 16)
    probs = np.zeros((20, 3))
    probs[5:10, 0] = 0.8
    probs[12:15, 2] = 0.6
    cfg = InferConfig()
    dets = detections(probs, np.array([0.9, 0.1, 0.2]), g, ["a", "b", "c"], cfg)
    assert [d["label"] for d in dets] == ["a"]
    assert dets[0]["segment"] == [3.2, 6.4] and dets[0]["score"] == 0.8
    # no class above theta_cls: the top one is kept
    dets = detections(probs, np.array([0.1, 0.2, 0.5]), g, ["a", "b", "c"], cfg)
    assert [d["label"] for d in dets] == ["c"]


def test_outer_inner_contrast_by_hand():
    from wtalkit.localize.proposals import run_oic

    s = np.array([0.0, 0.2, 0.9, 0.8, 0.1, 0.0, 0.0, 0.0])
    # run 2..3 (L = 2): band = trunc(2 - 0.5) = 1 .. 1 on the left, trunc(3 + 0.5) = 3 -> nothing on the right
    np.testing.assert_allclose(run_oic(s, np.array([2]), np.array([3]), 0.5), [0.85 - 0.2 + 0.2 * 0.5])
    # run 1..4 (L = 4): band {0} and {5}; inner mean 0.5
    np.testing.assert_allclose(run_oic(s, np.array([1]), np.array([4]), 0.0), [0.5 - 0.0])
    # a run covering the whole video has no band: 0 is subtracted
    np.testing.assert_allclose(run_oic(s, np.array([0]), np.array([7]), 1.0, gamma=0.1), [s.mean() + 0.1])
    # wider band: outer = 1 -> run 2..3 takes 0..1 and 4..5
    np.testing.assert_allclose(run_oic(s, np.array([2]), np.array([3]), 0.0, outer=1.0), [0.85 - 0.3 / 4])


def test_oic_proposals_through_the_config():
    probs = np.zeros((10, 2))
    probs[3:6, 1] = [0.6, 0.9, 0.6]
    probs[2, 1] = 0.3
    grid = SnippetGrid(25.0, 16, 16)
    cfg = InferConfig(theta_cls=0.5, theta_loc=[0.5], proposals="oic", min_score=-1.0)
    dets = detections(probs, np.array([0.1, 0.9]), grid, ["a", "b"], cfg)
    assert len(dets) == 1 and dets[0]["label"] == "b"
    # inner 0.7; band from trunc(3 - 0.75) = 2 to 2 on the left (0.3), trunc(5 + 0.75) = 5: none on the right
    assert dets[0]["score"] == pytest.approx(0.7 - 0.3 + 0.2 * 0.9)
    assert dets[0]["segment"] == [round(3 * 0.64, 3), round(6 * 0.64, 3)]


def test_a_two_class_video_keeps_both_classes_with_every_preset():
    """Video scores are a softmax over classes (the transformer's and CO2-Net's): two classes present share the
    mass, so a theta_cls >= 0.5 (as the paper's 0.85) would keep only one of them."""
    import torch

    from wtalkit.config import list_presets, load_config
    from wtalkit.models.cbp import CBPBranch

    logits = torch.randn(2, 50, 4)  # 3 classes + background
    assert torch.allclose(CBPBranch(8, 3).video_scores(logits).sum(-1), torch.ones(2))
    g = SnippetGrid(25.0, 16, 16)
    probs = np.zeros((20, 3))
    probs[2:6, 0] = 0.8
    probs[12:16, 1] = 0.7
    for name in list_presets():
        cfg = load_config(name).infer
        video = np.array([0.52, 0.45, 0.03])
        dets = detections(probs, video, g, ["a", "b", "c"], cfg, loc=probs, actionness=probs.max(1))
        assert {d["label"] for d in dets} == {"a", "b"}, name
