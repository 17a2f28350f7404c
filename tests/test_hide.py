"""Temporal Hide-and-Seek in warm-up (``cbp.hide_prob``, ``cbp.hide_len``)."""

from __future__ import annotations

import numpy as np
import torch

from tests.conftest import TINY_SETS
from wtalkit.config import load_config
from wtalkit.models.checkpoint import load_checkpoint
from wtalkit.train.hide import hide_runs

HIDE = ["cbp.hide_prob=0.5", "cbp.hide_len=2"]


def test_hides_whole_runs_on_a_grid_with_the_fill_and_never_padding():
    x = torch.arange(2 * 20 * 3, dtype=torch.float32).view(2, 20, 3)
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1, 13:] = False
    fill = torch.tensor([-1.0, -2.0, -3.0])
    y = hide_runs(x, mask, np.random.default_rng(0), 0.5, 4, fill)
    hidden = (y == fill).all(-1)
    assert torch.equal(y[~hidden], x[~hidden]) and torch.equal(x, torch.arange(120.0).view(2, 20, 3))
    assert not bool(hidden[1, 13:].any())  # padding is never touched
    for b in range(2):
        runs = hidden[b, :12].view(3, 4)  # runs of 4 on the crop's grid: all hidden or none
        assert bool((runs.all(1) | ~runs.any(1)).all())
    assert 0 < int(hidden.sum()) < 40
    z = hide_runs(x, mask, np.random.default_rng(0), 0.5, 4, fill)
    assert torch.equal(y, z)  # the training loop's generator decides: reproducible


def test_rate_follows_prob():
    x = torch.zeros(64, 100, 1)
    mask = torch.ones(64, 100, dtype=torch.bool)
    for p in (0.0, 0.3):
        frac = float((hide_runs(x, mask, np.random.default_rng(1), p, 5, torch.ones(1)) == 1).float().mean())
        assert abs(frac - p) < 0.03


def test_warmup_with_hiding_differs_from_without_and_resumes_bit_identically(tiny_dataset, tmp_path):
    from wtalkit.train.warmup import train_warmup

    plain = load_checkpoint(train_warmup(tiny_dataset, tmp_path / "plain", load_config("demo", TINY_SETS)))
    cfg = load_config("demo", TINY_SETS + HIDE)
    full = load_checkpoint(train_warmup(tiny_dataset, tmp_path / "full", cfg))["models"]["cbp"]
    assert any(not torch.equal(full[k], plain["models"]["cbp"][k]) for k in full)
    train_warmup(tiny_dataset, tmp_path / "part", cfg, stop_after_epochs=1)
    resumed = load_checkpoint(train_warmup(tiny_dataset, tmp_path / "part", cfg))["models"]["cbp"]
    for k in full:
        assert torch.equal(full[k], resumed[k]), k
    assert load_config("demo").cbp.hide_prob == 0.0  # off unless asked for
