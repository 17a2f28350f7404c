"""Confident pseudo-labels, their metric and files, and the distillation losses."""

import json
import math

import numpy as np
import pytest
import torch

from wtalkit.config import LossConfig
from wtalkit.data.annotations import Video
from wtalkit.data.loader import multi_hot
from wtalkit.errors import WtalError
from wtalkit.eval.pseudo import FBIoU
from wtalkit.timeaxis import SnippetGrid
from wtalkit.train.losses import distill_loss, fb_loss, kd_loss
from wtalkit.train.pseudo import gt_foreground, gt_snippet_labels, pseudo_meta, save_pseudo_labels, ternary_labels

# --- ternary labels ---------------------------------------------------------------------------

SCORES = np.array(
    [
        [0.90, 0.90, 0.05],  # class 0: fg; class 1 not in labels -> 0; class 2: low -> 0
        [0.30, 0.20, 0.29],  # exactly delta_h -> uncertain; 0.29 -> uncertain
        [0.10, 0.31, 0.09],  # exactly delta_l -> uncertain; 0.31 for absent class -> 0; 0.09 -> 0
        [0.31, 0.00, 0.50],
    ],
    dtype=np.float32,
)
LABELS = np.array([1, 0, 1], dtype=bool)
EXPECTED = np.array(
    [
        [1, 0, 0],
        [-1, 0, -1],
        [-1, 0, 0],
        [1, 0, 1],
    ],
    dtype=np.int8,
)


def test_ternary_labels_numpy_thresholds():
    out = ternary_labels(SCORES, LABELS, delta_h=0.3, delta_l=0.1)
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out, EXPECTED)


def test_ternary_labels_torch_and_batched():
    scores = torch.from_numpy(np.stack([SCORES, SCORES[::-1].copy()]))
    labels = torch.tensor([[1, 0, 1], [0, 1, 0]])
    out = ternary_labels(scores, labels, 0.3, 0.1)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.int8 and out.shape == (2, 4, 3)
    np.testing.assert_array_equal(out[0].numpy(), EXPECTED)
    # second video: only class 1 present
    exp1 = np.zeros((4, 3), dtype=np.int8)
    col = SCORES[::-1, 1]  # 0.00, 0.31, 0.20, 0.90
    exp1[:, 1] = np.where(col > 0.3, 1, np.where(col < 0.1, 0, -1))
    np.testing.assert_array_equal(exp1[:, 1], [0, 1, -1, 1])
    np.testing.assert_array_equal(out[1].numpy(), exp1)
    np.testing.assert_array_equal(ternary_labels(scores.numpy(), labels.numpy(), 0.3, 0.1), out.numpy())


def test_ternary_labels_errors():
    with pytest.raises(WtalError):
        ternary_labels(SCORES, LABELS[:2])
    with pytest.raises(WtalError):
        ternary_labels(SCORES, LABELS, delta_h=0.1, delta_l=0.3)


def test_multi_hot():
    np.testing.assert_array_equal(multi_hot(["b"], {"a": 0, "b": 1, "c": 2}), [0, 1, 0])
    with pytest.raises(WtalError):
        multi_hot(["z"], {"a": 0})


# --- L_kd -------------------------------------------------------------------------------------


def test_kd_loss_value_and_zero_grad_on_uncertain_and_padding():
    probs = torch.tensor([[[0.8, 0.3], [0.4, 0.9], [0.6, 0.5]]], requires_grad=True)  # [1, 3, 2]
    pseudo = torch.tensor([[[1, 0], [-1, 1], [0, 1]]])
    mask = torch.tensor([[True, True, False]])  # frame 2 is padding
    loss = kd_loss(probs, pseudo, mask)
    # confident valid entries: (0,0) h=1 p=.8, (0,1) h=0 p=.3, (1,1) h=1 p=.9
    expected = -(math.log(0.8) + math.log(0.7) + math.log(0.9)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    g = probs.grad[0]
    assert g[1, 0].item() == 0.0  # uncertain
    assert torch.all(g[2] == 0.0)  # padding
    assert g[0, 0].item() == pytest.approx(-1 / 0.8 / 3, rel=1e-5)
    assert g[0, 1].item() == pytest.approx(1 / 0.7 / 3, rel=1e-5)


def test_kd_loss_no_confident_entry_is_zero_with_grad():
    probs = torch.rand(2, 4, 3, requires_grad=True)
    loss = kd_loss(probs, torch.full((2, 4, 3), -1))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(probs.grad == 0)


def test_kd_loss_extreme_probs_are_finite():
    probs = torch.tensor([[[0.0, 1.0]]], requires_grad=True)
    loss = kd_loss(probs, torch.tensor([[[1, 0]]]))
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(probs.grad).all()


# --- L_fb -------------------------------------------------------------------------------------


def test_fb_loss_identical_positives_orthogonal_negative():
    # two foreground frames of class 0 with the same feature, one orthogonal background frame
    feats = torch.tensor([[[2.0, 0.0], [5.0, 0.0], [0.0, 3.0]]], requires_grad=True)
    pseudo = torch.tensor([[[1, 0], [1, -1], [0, 0]]])
    loss = fb_loss(feats, pseudo, None, tau=1.0)
    expected = math.log(1 + math.exp(-1.0))  # -log(e^1 / (e^1 + e^0)) for both anchors
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert feats.grad.abs().sum() > 0


def test_fb_loss_hand_computed_two_negatives_across_videos():
    r = 1 / math.sqrt(2)
    # video 0: anchors a1 = e1, a2 = (e1 + e2)/sqrt2 (class 1); video 1: backgrounds e2 and -e1,
    # plus an uncertain frame and a padded "background" frame, which must be ignored.
    feats = torch.tensor(
        [
            [[1.0, 0.0], [r, r], [0.3, -0.7]],
            [[0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]],
        ]
    )
    pseudo = torch.tensor(
        [
            [[0, 1], [0, 1], [-1, 0]],
            [[0, 0], [0, 0], [0, 0]],
        ]
    )
    mask = torch.tensor([[True, True, True], [True, True, False]])
    tau = 0.5
    loss = fb_loss(feats, pseudo, mask, tau=tau)
    e = lambda s: math.exp(s / tau)
    # anchor a1: pos cos(a1,a2)=r; neg cos=0 (e2), -1 (-e1)
    l1 = -math.log(e(r) / (e(r) + e(0) + e(-1)))
    # anchor a2: pos r; neg r (e2), -r (-e1)
    l2 = -math.log(e(r) / (e(r) + e(r) + e(-r)))
    assert loss.item() == pytest.approx((l1 + l2) / 2, rel=1e-6)


def test_fb_loss_zero_when_nothing_qualifies():
    feats = torch.randn(1, 4, 3, requires_grad=True)
    no_bg = torch.tensor([[[1, 0], [1, 0], [-1, -1], [1, 0]]])
    one_fg = torch.tensor([[[1, 0], [0, 0], [0, 0], [-1, 0]]])
    for pseudo in (no_bg, one_fg):
        loss = fb_loss(feats, pseudo, None)
        assert loss.item() == 0.0
        loss.backward()


def test_fb_loss_sampling_is_capped_and_deterministic():
    torch.manual_seed(0)
    feats = torch.randn(2, 200, 8)
    pseudo = torch.zeros(2, 200, 3, dtype=torch.long)
    pseudo[:, :120, 1] = 1
    full = fb_loss(feats, pseudo, None, tau=0.1, max_anchors=0, max_negatives=0)  # 0 = no cap
    a = fb_loss(
        feats, pseudo, None, tau=0.1, max_anchors=16, max_negatives=32, generator=torch.Generator().manual_seed(3)
    )
    b = fb_loss(
        feats, pseudo, None, tau=0.1, max_anchors=16, max_negatives=32, generator=torch.Generator().manual_seed(3)
    )
    c = fb_loss(
        feats, pseudo, None, tau=0.1, max_anchors=16, max_negatives=32, generator=torch.Generator().manual_seed(4)
    )
    assert a.item() == b.item()
    assert a.item() != c.item()
    assert a.item() != full.item()


def test_distill_loss_switches():
    torch.manual_seed(1)
    probs = torch.rand(2, 6, 3, requires_grad=True)
    feats = torch.randn(2, 6, 4, requires_grad=True)
    pseudo = torch.tensor([[1, 0, 0], [1, 0, -1], [0, 0, 0], [0, 0, 0], [-1, 1, 0], [0, 1, 0]]).repeat(2, 1, 1)
    mask = torch.ones(2, 6, dtype=torch.bool)
    kd = kd_loss(probs, pseudo, mask).item()
    fb = fb_loss(feats, pseudo, mask, tau=0.07).item()
    total, parts = distill_loss(probs, feats, pseudo, mask, LossConfig())
    assert total.item() == pytest.approx(kd + 0.05 * fb, rel=1e-5)
    assert parts == pytest.approx({"kd": kd, "fb": fb}, rel=1e-5)
    total, parts = distill_loss(probs, feats, pseudo, mask, LossConfig(use_kd=False))
    assert total.item() == pytest.approx(0.05 * fb, rel=1e-5) and parts["kd"] == 0.0
    total, parts = distill_loss(probs, feats, pseudo, mask, LossConfig(use_fb=False))
    assert total.item() == pytest.approx(kd, rel=1e-6) and parts["fb"] == 0.0
    total.backward()
    assert probs.grad.abs().sum() > 0 and (feats.grad is None or feats.grad.abs().sum() == 0)


# --- Table-3 metric ----------------------------------------------------------------------------


def fb_miou(pseudo, gt):
    acc = FBIoU()
    for p, g in zip(pseudo, gt) if isinstance(pseudo, list) else [(pseudo, gt)]:
        acc.update(p, g)
    return acc.compute()


def test_fb_miou_hand_case_and_dataset_accumulation():
    # frames: fg, fg(uncertain), bg, bg, fg(pred bg)
    pseudo = np.array([[1, 0], [-1, 0], [0, 0], [0, -1], [0, 0]])
    gt = np.array([True, True, False, False, True])
    r = fb_miou(pseudo, gt)
    # pred_fg={0}, gt_fg={0,1,4}: 1/3; pred_bg={2,4}, gt_bg={2,3}: inter {2}, union {2,3,4} -> 1/3
    assert r["fg_iou"] == pytest.approx(1 / 3)
    assert r["bg_iou"] == pytest.approx(1 / 3)
    assert r["mean"] == pytest.approx(1 / 3)
    assert r["uncertain"] == pytest.approx(2 / 5)
    # second video: perfect. Dataset: sums, not mean of per-video IoUs.
    p2 = np.array([[1, 0], [0, 0], [0, 0]])
    g2 = np.array([True, False, False])
    d = fb_miou([pseudo, p2], [gt, g2])
    assert d["fg_iou"] == pytest.approx(2 / 4)
    assert d["bg_iou"] == pytest.approx(3 / 5)
    acc = FBIoU()
    acc.update(pseudo, gt)
    acc.update(p2, g2)
    assert acc.compute() == d
    with pytest.raises(WtalError):
        fb_miou(pseudo, gt[:3])


def test_gt_snippet_labels_centre_rule():
    grid = SnippetGrid(fps=25.0, length=16, stride=16)  # snippets own 0.64 s; centres .32, .96, 1.6, 2.24, 2.88
    video = Video("v", "test", 4.0, segments=[(0.7, 2.0, "b"), (2.8, 3.0, "a")], labels=["a", "b"])
    lab = gt_snippet_labels(video, grid, 5, ["a", "b"])
    np.testing.assert_array_equal(lab[:, 1], [False, True, True, False, False])
    np.testing.assert_array_equal(lab[:, 0], [False, False, False, False, True])
    np.testing.assert_array_equal(gt_foreground(video, grid, 5), [False, True, True, False, True])
    with pytest.raises(WtalError):
        gt_foreground(Video("w", "train", 3.0, labels=["a"]), grid, 3)


# --- files ------------------------------------------------------------------------------------


def test_save_load_roundtrip(tmp_path):
    meta = pseudo_meta(["a", "b"], "cbp", 0.3, 0.1, SnippetGrid(25.0, 16, 16))
    labels = {"v1": np.array([[1, 0], [-1, 0]]), "v2": np.zeros((3, 2), dtype=np.int64)}
    save_pseudo_labels(tmp_path / "pl", labels, meta)
    assert sorted(p.name for p in (tmp_path / "pl").iterdir()) == ["meta.json", "v1.npy", "v2.npy"]
    assert np.load(tmp_path / "pl" / "v1.npy").dtype == np.int8
    m = json.loads((tmp_path / "pl" / "meta.json").read_text())
    assert m["classes"] == ["a", "b"] and m["videos"] == ["v1", "v2"] and m["grid"]["snippet_stride"] == 16
    np.testing.assert_array_equal(np.load(tmp_path / "pl" / "v1.npy", allow_pickle=False), labels["v1"])
    assert m["branch"] == "cbp"


def test_save_rejects_bad_labels_without_writing(tmp_path):
    meta = pseudo_meta(["a", "b"], "vlp", 0.3, 0.1, SnippetGrid())
    with pytest.raises(WtalError):
        save_pseudo_labels(tmp_path / "pl", {"v1": np.zeros((2, 2), dtype=np.int8), "v2": np.array([[2, 0]])}, meta)
    with pytest.raises(WtalError):
        save_pseudo_labels(tmp_path / "pl", {"v1": np.zeros((2, 3), dtype=np.int8)}, meta)
    with pytest.raises(WtalError):
        save_pseudo_labels(tmp_path / "pl", {"v1": np.zeros((2, 2), dtype=np.float32)}, meta)
    assert not (tmp_path / "pl").exists()


# --- conflicting frames, agreement, round selection (issue 13) -------------------------------

from wtalkit.train.pseudo import Agreement, resolve_conflicts, select_round  # noqa: E402


def test_conflicting_entries_become_uncertain():
    # columns: class 0 (in the video), class 1 (not in the video)
    teacher = np.array([[1, 0], [1, 0], [0, 0], [0, 0], [-1, 0], [1, 0]], dtype=np.int8)
    student = np.array([[0, 0], [-1, 0], [1, 0], [0, 0], [1, 0], [1, 0]], dtype=np.int8)
    out = resolve_conflicts(teacher, student)
    # fg vs bg -> -1; student unsure -> teacher's; bg vs fg -> -1; agreement kept; teacher unsure stays -1
    assert out.tolist() == [[-1, 0], [1, 0], [-1, 0], [0, 0], [-1, 0], [1, 0]]
    assert out.dtype == np.int8
    t = resolve_conflicts(torch.from_numpy(teacher), torch.from_numpy(student))
    assert isinstance(t, torch.Tensor) and t.tolist() == out.tolist()
    with pytest.raises(WtalError, match="shape"):
        resolve_conflicts(teacher, student[:3])


def test_conflicts_from_scores_end_to_end():
    # a context frame: the VLP teacher says 0.8 (confident fg), the CBP student 0.02 (confident bg)
    teacher = ternary_labels(np.array([[0.8], [0.8], [0.05]]), np.array([1]))
    student = ternary_labels(np.array([[0.02], [0.2], [0.9]]), np.array([1]))
    assert resolve_conflicts(teacher, student).ravel().tolist() == [-1, 1, -1]


def test_agreement_is_class_agnostic_iou_between_branches():
    acc = Agreement()
    a = np.array([[1, 0], [0, 0], [0, 0], [-1, 0]], dtype=np.int8)
    b = np.array([[0, 1], [0, 0], [1, 0], [0, 0]], dtype=np.int8)
    acc.update(a, b)
    m = acc.compute()
    # fg: a {0}, b {0, 2} -> 1/2; bg: a {1, 2}, b {1, 3} -> 1/3
    assert m["fg"] == pytest.approx(0.5) and m["bg"] == pytest.approx(1 / 3)
    assert m["score"] == pytest.approx((0.5 + 1 / 3) / 2)
    # both branches calling everything background agree on nothing in the foreground
    collapsed = Agreement()
    collapsed.update(np.zeros((4, 2), np.int8), np.zeros((4, 2), np.int8))
    assert collapsed.compute() == {"fg": 0.0, "bg": 1.0, "score": 0.5}


def test_select_round_on_a_hand_made_sequence():
    assert select_round({1: 0.41, 2: 0.47, 3: 0.44}) == 2  # the round that agrees most, not the last
    assert select_round({1: 0.5, 2: 0.5, 3: 0.2}) == 1  # ties: the earliest
    assert select_round({1: float("nan"), 2: 0.1}) == 2  # NaN is never chosen
    with pytest.raises(WtalError, match="finite"):
        select_round({1: float("nan")})
