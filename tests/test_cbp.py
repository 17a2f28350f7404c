"""CBP branch: masking, top-k / bottom-k pooling, the background class and the MIL loss."""

import torch

from wtalkit.config import CBPConfig
from wtalkit.models.cbp import CBPBranch, mil_loss, topk_pool


def test_topk_pool_per_video_k_and_mask():
    logits = torch.arange(16.0).view(1, 16, 1).repeat(2, 1, 1)
    mask = torch.ones(2, 16, dtype=torch.bool)
    mask[1, 8:] = False  # second video: 8 valid frames -> k = 1
    top = topk_pool(logits, mask, ratio=8)
    assert top[:, 0].tolist() == [14.5, 7.0]  # k=2: mean(15, 14); k=1: max of the valid part
    bottom = topk_pool(logits, mask, ratio=8, largest=False)
    assert bottom[:, 0].tolist() == [0.5, 0.0]


def test_mil_loss_hand_computed():
    # 2 classes + background, 8 frames, k = 1: the video logits are the per-output maxima
    logits = torch.zeros(1, 8, 3)
    logits[0, 2] = torch.tensor([2.0, 0.0, 0.0])
    logits[0, 5] = torch.tensor([0.0, 0.0, 1.0])
    labels = torch.tensor([[1.0, 0.0]])
    video = torch.tensor([2.0, 0.0, 1.0])
    logp = video - torch.logsumexp(video, 0)
    expected = -(0.5 * logp[0] + 0.5 * logp[2])  # target: class 0 and background, normalised
    assert torch.isclose(mil_loss(logits, None, labels, 8), expected)


def test_mil_loss_needs_background_frames_in_a_positive_video():
    labels = torch.tensor([[1.0, 0.0]])
    mask = torch.ones(1, 16, dtype=torch.bool)
    clean = torch.full((1, 16, 3), -5.0)
    clean[0, :4, 0] = 5.0  # class 0 fires on 4 frames, background wins on the rest
    clean[0, 4:, 2] = 5.0
    flat = torch.full((1, 16, 3), -5.0)
    flat[0, :, 0] = 5.0  # class 0 everywhere: no frame is background
    assert mil_loss(clean, mask, labels, 8) < mil_loss(flat, mask, labels, 8)


def test_probabilities_compete_with_background():
    torch.manual_seed(0)
    m = CBPBranch(8, 3, CBPConfig(hidden_dim=16, num_heads=2, num_layers=1)).eval()
    out = m(torch.randn(2, 10, 8))
    assert out["logits"].shape == (2, 10, 4) and out["probs"].shape == (2, 10, 3)
    assert bool((out["probs"].sum(-1) < 1).all())  # the background takes the rest of each frame's mass
    v = m.video_scores(out["logits"])
    assert v.shape == (2, 3) and torch.allclose(v.sum(-1), torch.ones(2))


def test_padding_does_not_change_valid_frames():
    torch.manual_seed(0)
    m = CBPBranch(8, 3, CBPConfig(hidden_dim=16, num_heads=2, num_layers=1, dropout=0.0)).eval()
    x = torch.randn(1, 10, 8)
    padded = torch.cat([x, torch.randn(1, 6, 8)], 1)
    mask = torch.zeros(1, 16, dtype=torch.bool)
    mask[0, :10] = True
    with torch.no_grad():
        a = m(x)["probs"]
        b = m(padded, mask)["probs"][:, :9]  # the last valid frame sees a zeroed neighbour through the conv
    torch.testing.assert_close(a[:, :9], b, atol=1e-5, rtol=1e-5)


def test_a_checkpoint_of_another_architecture_is_a_one_line_error(tiny_dataset, tmp_path):
    import pytest

    from tests.conftest import TINY_SETS
    from wtalkit.config import load_config
    from wtalkit.errors import WtalError
    from wtalkit.localize.predict import Predictor
    from wtalkit.models.checkpoint import load_checkpoint
    from wtalkit.train.warmup import train_warmup

    ck = train_warmup(tiny_dataset, tmp_path / "r", load_config("demo", TINY_SETS + ["train.warmup_epochs=1"]))
    state = load_checkpoint(ck)
    w = state["models"]["cbp"]
    w["classifier.weight"], w["classifier.bias"] = (
        w["classifier.weight"][:-1],
        w["classifier.bias"][:-1],
    )  # 0.1: no background
    torch.save(state, tmp_path / "old.pt")
    with pytest.raises(WtalError, match="do not fit this wtalkit's CBP branch") as e:
        Predictor(tmp_path / "old.pt")
    assert "\n" not in str(e.value)


def test_local_attention_limits_the_receptive_field():
    # one block, window 5 (±2 snippets) after a width-3 convolution (±1): frame j sees frames within ±3
    torch.manual_seed(0)
    cfg = CBPConfig(hidden_dim=16, num_heads=2, num_layers=1, dropout=0.0, attn_window=5)
    m = CBPBranch(8, 3, cfg).eval()
    x = torch.randn(1, 20, 8)
    y = x.clone()
    y[0, 0] = torch.randn(8) * 3
    with torch.no_grad():
        a, b = m(x)["logits"][0], m(y)["logits"][0]
    changed = ((a - b).abs().amax(-1) > 1e-6).nonzero().flatten().tolist()
    assert changed == [0, 1, 2, 3]
    glob = CBPBranch(8, 3, CBPConfig(hidden_dim=16, num_heads=2, num_layers=1, dropout=0.0)).eval()
    glob.load_state_dict(m.state_dict())  # the window adds no parameters
    with torch.no_grad():
        assert bool(((glob(x)["logits"][0] - glob(y)["logits"][0]).abs().amax(-1) > 1e-6).all())


def test_local_attention_with_padding_is_finite_and_ignores_padded_frames():
    torch.manual_seed(0)
    m = CBPBranch(8, 3, CBPConfig(hidden_dim=16, num_heads=2, num_layers=2, dropout=0.0, attn_window=3)).eval()
    x = torch.randn(2, 12, 8)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 5:] = False  # padded queries far from any real frame still attend to themselves
    with torch.no_grad():
        out = m(x, mask)["logits"]
        alone = m(x[1:, :5])["logits"]
    assert bool(torch.isfinite(out).all())
    torch.testing.assert_close(out[1, :4], alone[0, :4], atol=1e-5, rtol=1e-5)
