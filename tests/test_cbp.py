"""CBP branch: masking, top-k / bottom-k pooling and the MIL loss."""

import torch
import torch.nn.functional as F

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


def test_mil_loss_has_a_background_term():
    labels = torch.tensor([[1.0, 0.0]])
    mask = torch.ones(1, 16, dtype=torch.bool)
    clean = torch.full((1, 16, 2), -5.0)
    clean[0, :4, 0] = 5.0  # class 0 fires on 4 frames only
    flat = clean.clone()
    flat[0, :, 0] = 5.0  # class 0 fires everywhere: no background left in a positive video
    assert mil_loss(clean, mask, labels, 8) < mil_loss(flat, mask, labels, 8)
    # with the bottom-k term removed both would be equally good
    top_only = lambda x: F.binary_cross_entropy_with_logits(topk_pool(x, mask, 8), labels)  # noqa: E731
    assert torch.isclose(top_only(clean), top_only(flat))


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
