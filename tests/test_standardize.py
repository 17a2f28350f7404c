"""``cbp.input_norm: standardize``: the training split's per-dimension statistics, measured by warm-up,
stored in the checkpoint and applied by every command that loads the CBP branch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.cli_helpers import assert_one_line_error, run_cli
from tests.conftest import TINY_SETS
from wtalkit.config import CBPConfig, load_config
from wtalkit.data.features import Dataset
from wtalkit.data.loader import FeatureBank
from wtalkit.models.build import cbp_architectures
from wtalkit.models.cbp import InputStandardizer
from wtalkit.models.checkpoint import load_checkpoint

STD = "cbp.input_norm=standardize"


def test_moments_equal_numpy_and_keep_precision_under_a_large_mean(tiny_dataset, tmp_path):
    import shutil

    data = tmp_path / "d"
    shutil.copytree(tiny_dataset, data)
    bank0 = FeatureBank(Dataset(data), "train", ("cbp",), require_labels=True)
    for v in bank0.videos:  # a shared offset 1e4 times the class signal, as pooled activations have
        f = data / "features" / "cbp" / f"{v.name}.npy"
        np.save(f, (np.load(f).astype(np.float64) + 1e4).astype(np.float32))
    bank = FeatureBank(Dataset(data), "train", ("cbp",), require_labels=True)
    rows = np.concatenate([bank.rows("cbp", i, 0, n).astype(np.float64) for i, n in enumerate(bank.lengths())])
    mean, std = bank.moments("cbp")
    np.testing.assert_allclose(mean, rows.mean(0), rtol=1e-12)
    np.testing.assert_allclose(std, rows.std(0), rtol=1e-9)
    assert std.min() > 0 and std.max() < 100  # the offset did not leak into the spread


def test_standardizer_zero_mean_unit_std_masks_padding_and_constant_dims():
    torch.manual_seed(0)
    x = torch.randn(2, 50, 4) * torch.tensor([1.0, 5.0, 0.1, 0.0]) + torch.tensor([3.0, -2.0, 40.0, 7.0])
    flat = x.reshape(-1, 4).double()
    s = InputStandardizer(4)
    s.fit(flat.mean(0), flat.std(0, unbiased=False))
    y = s(x).reshape(-1, 4).double()
    np.testing.assert_allclose(y[:, :3].mean(0).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(y[:, :3].std(0, unbiased=False).numpy(), 1, atol=1e-5)
    assert s.std[3] == 1  # a constant dimension is centred, not blown up
    np.testing.assert_allclose(y[:, 3].numpy(), 0, atol=1e-5)
    mask = torch.ones(2, 50, dtype=torch.bool)
    mask[1, 30:] = False
    ym = s(x, mask)
    assert torch.equal(ym[1, 30:], torch.zeros(20, 4)) and torch.allclose(ym[0], s(x)[0])
    with pytest.raises(ValueError, match="dims"):
        s.fit(np.zeros(3), np.ones(3))


def arch_cfg(arch: str) -> CBPConfig:
    c = CBPConfig(arch=arch, input_norm="standardize", hidden_dim=16, num_heads=2, num_layers=1)
    c.co2net.rgb_dim, c.co2net.attn_dim, c.co2net.embed_dim = 16, 8, 24
    c.um.hidden_dim = 16
    return c


@pytest.mark.parametrize("arch", sorted(cbp_architectures()))
def test_every_architecture_is_invariant_to_an_affine_change_of_its_input(arch):
    """Same weights, input a*x+b with statistics (a*mu+b, a*sd) gives exactly the outputs of x with (mu, sd):
    the model sees standardised features, whatever scale and offset the extractor produced."""
    torch.manual_seed(0)
    cls = cbp_architectures()[arch]
    m1 = cls(32, 5, arch_cfg(arch)).eval()
    m2 = cls(32, 5, arch_cfg(arch)).eval()
    m2.load_state_dict(m1.state_dict())
    x = torch.randn(3, 24, 32)
    mask = torch.ones(3, 24, dtype=torch.bool)
    mask[2, 15:] = False
    mu, sd = torch.randn(32), torch.rand(32) + 0.5
    a, b = torch.rand(32) * 9 + 1, torch.randn(32) * 30
    m1.standardize.fit(mu, sd)
    m2.standardize.fit(a * mu + b, a * sd)
    o1, o2 = m1(x, mask), m2(a * x + b, mask)
    for k in ("probs", "video", "features"):
        torch.testing.assert_close(o1[k], o2[k], rtol=1e-3, atol=1e-4)
    # and the statistics matter: without them the offset input gives other scores
    m3 = cls(32, 5, arch_cfg(arch)).eval()
    m3.load_state_dict(m1.state_dict())
    assert not torch.allclose(m3(a * x + b, mask)["probs"], o1["probs"], atol=1e-3)


def test_off_by_default_and_checkpoints_without_it_load_unchanged():
    for arch, cls in cbp_architectures().items():
        c = arch_cfg(arch)
        c.input_norm = "none"
        m = cls(32, 5, c)
        assert m.standardize is None and not any(k.startswith("standardize.") for k in m.state_dict())
    assert load_config("demo").cbp.input_norm == "none"


def test_warmup_stores_the_statistics_and_every_command_applies_them(tiny_dataset, tiny_clip_path, tmp_path):
    from wtalkit.localize.predict import Predictor
    from wtalkit.train.alternate import train_alternate
    from wtalkit.train.warmup import train_warmup

    cfg = load_config("demo", TINY_SETS + [STD, f"vlp.clip_model={tiny_clip_path}", "train.rounds=1"])
    run = tmp_path / "run"
    train_warmup(tiny_dataset, run, cfg)
    state = load_checkpoint(run / "warmup.pt")["models"]["cbp"]
    mean, std = FeatureBank(Dataset(tiny_dataset), "train", ("cbp",), require_labels=True).moments("cbp")
    np.testing.assert_allclose(state["standardize.mean"].numpy(), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state["standardize.std"].numpy(), std, rtol=1e-5)
    # alternate keeps them fixed (they are statistics of the data, not parameters)
    final = train_alternate(tiny_dataset, run, cfg, warmup_ckpt=run / "warmup.pt")
    after = load_checkpoint(final)["models"]["cbp"]
    assert torch.equal(after["standardize.mean"], state["standardize.mean"])
    assert torch.equal(after["standardize.std"], state["standardize.std"])
    # localize / pseudolabel load the branch with them
    pred = Predictor(run)
    assert torch.equal(pred.models["cbp"].standardize.mean, after["standardize.mean"])


def test_cli_rejects_a_bad_value_and_a_mismatched_checkpoint(tiny_dataset, tmp_path):
    res = run_cli(["warmup", tiny_dataset, "-o", tmp_path / "a", "--config", "demo", "--set", "cbp.input_norm=zscore"])
    assert "input_norm" in assert_one_line_error(res)
    sets = [a for s in TINY_SETS + ["train.warmup_epochs=1"] for a in ("--set", s)]
    res = run_cli(["warmup", tiny_dataset, "-o", tmp_path / "b", "--config", "demo", *sets])
    assert res.exit_code == 0, res.output
    res = run_cli(["localize", tmp_path / "b", "--dataset", tiny_dataset, "--set", STD, "-o", tmp_path / "p.json"])
    assert "weights do not fit" in assert_one_line_error(res)


def test_presets_standardise_the_demo_only():
    for name in ("demo-co2net", "demo-um"):
        assert load_config(name).cbp.input_norm == "standardize", name
    for name in ("demo", "thumos14", "anet12", "thumos14-co2net", "anet12-co2net", "thumos14-um", "anet12-um"):
        assert load_config(name).cbp.input_norm == "none", name  # the authors' raw input
    assert load_config("demo-um").optim.lr == 1e-4  # UM's published rate (the demo's x10 does not learn)


def test_a_resumed_standardised_warmup_equals_an_uninterrupted_one(tiny_dataset, tmp_path):
    from wtalkit.train.warmup import train_warmup

    cfg = load_config("demo", TINY_SETS + [STD])
    full = train_warmup(tiny_dataset, tmp_path / "full", cfg)
    train_warmup(tiny_dataset, tmp_path / "part", cfg, stop_after_epochs=1)
    resumed = train_warmup(tiny_dataset, tmp_path / "part", cfg)
    a, b = load_checkpoint(full)["models"]["cbp"], load_checkpoint(resumed)["models"]["cbp"]
    assert "standardize.mean" in a
    for k in a:
        assert torch.equal(a[k], b[k]), k
