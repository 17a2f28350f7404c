"""Features read lazily from disk give exactly the batches (and training) that in-RAM features give."""

from __future__ import annotations

import numpy as np
import torch

from wtalkit.data.features import Dataset
from wtalkit.data.loader import FeatureBank


def test_lazy_bank_equals_in_memory_bank(tiny_dataset):
    ds = Dataset(tiny_dataset)
    lazy = FeatureBank(ds, "train", ("cbp", "vlp"), require_labels=True)
    ram = FeatureBank(ds, "train", ("cbp", "vlp"), require_labels=True, in_memory=True)
    assert not lazy.in_memory and all(not f for f in lazy.feats.values())  # nothing held in RAM
    np.testing.assert_array_equal(lazy.lengths(), ram.lengths())
    for T in (16, 64, 10_000):
        a = list(lazy.batches(np.random.default_rng(3), T, 3))
        b = list(ram.batches(np.random.default_rng(3), T, 3))
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert torch.equal(x["mask"], y["mask"]) and torch.equal(x["labels"], y["labels"])
            for s in ("cbp", "vlp"):
                assert torch.equal(x["x"][s], y["x"][s])


def test_lazy_file_reads_are_validated_once(tiny_dataset, tmp_path):
    """A NaN in a feature file is found when the bank is built, not in the middle of an epoch."""
    import shutil

    import pytest

    from wtalkit.errors import WtalError

    copy = tmp_path / "d"
    shutil.copytree(tiny_dataset, copy)
    ds = Dataset(copy)
    name = ds.videos("train", stream="cbp")[0].name
    path = ds.stream("cbp").path(name)
    x = np.load(path)
    x[len(x) // 2, 3] = np.nan
    np.save(path, x)
    with pytest.raises(WtalError, match="NaN"):
        FeatureBank(Dataset(copy), "train", ("cbp",), require_labels=True)


def test_training_precision_and_autocast(tiny_dataset, tmp_path):
    import pytest

    from tests.conftest import TINY_SETS
    from wtalkit.config import load_config
    from wtalkit.device import training_precision
    from wtalkit.errors import WtalError
    from wtalkit.models.checkpoint import load_checkpoint
    from wtalkit.train.warmup import train_warmup

    assert training_precision("auto", "cpu") == "fp32"
    assert training_precision("bf16", "cpu") == "bf16"
    with pytest.raises(WtalError, match="fp16 training needs a CUDA GPU"):
        training_precision("fp16", "cpu")
    runs = {}
    for p in ("fp32", "bf16"):
        cfg = load_config("demo", [*TINY_SETS, "train.device=cpu", f"train.precision={p}"])
        runs[p] = load_checkpoint(train_warmup(tiny_dataset, tmp_path / p, cfg))["models"]["cbp"]
    # bf16 autocast really ran (other weights) and stayed close to fp32 over a few steps
    diffs = [float((runs["fp32"][k] - runs["bf16"][k]).abs().max()) for k in runs["fp32"]]
    assert max(diffs) > 0 and max(diffs) < 0.1


def test_training_writes_tensorboard_curves(tiny_dataset, tmp_path):
    """With the optional tensorboard extra (installed by the test command), a warm-up writes its loss curve."""
    import pytest

    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tests.conftest import TINY_SETS
    from wtalkit.config import load_config
    from wtalkit.train.warmup import train_warmup

    cfg = load_config("demo", [*TINY_SETS, "train.device=cpu"])
    train_warmup(tiny_dataset, tmp_path / "run", cfg)
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    acc.Reload()
    loss = acc.Scalars("warmup/loss")
    assert [e.step for e in loss] == [1, 2, 3]
    logged = [
        r["loss"] for r in map(__import__("json").loads, (tmp_path / "run" / "log.jsonl").read_text().splitlines())
    ]
    np.testing.assert_allclose([e.value for e in loss], logged, rtol=1e-6)


def test_prefetched_batches_equal_unprefetched(tiny_dataset):
    """Reading the next batch in a background thread changes nothing: same batches, same RNG state after."""
    bank = FeatureBank(Dataset(tiny_dataset), "train", ("cbp", "vlp"), require_labels=True)
    for kwargs in ({}, {"sampling": "uniform"}, {"similar_pairs": 1}):
        r1, r2 = np.random.default_rng(7), np.random.default_rng(7)
        a = list(bank.batches(r1, 32, 4, prefetch=True, **kwargs))
        b = list(bank.batches(r2, 32, 4, prefetch=False, **kwargs))
        assert len(a) == len(b) > 1 and r1.random() == r2.random()
        for x, y in zip(a, b):
            assert x["idx"] == y["idx"] and torch.equal(x["mask"], y["mask"])
            assert all(torch.equal(x["x"][s], y["x"][s]) for s in ("cbp", "vlp"))


def test_prefetch_raises_in_the_caller_and_stops_when_left_early():
    import threading

    import pytest

    from wtalkit.data.loader import prefetched
    from wtalkit.errors import WtalError

    def make(i):
        if i == 2:
            raise WtalError("bad file")
        return i

    seen = []
    with pytest.raises(WtalError, match="bad file"):
        for v in prefetched(make, range(5)):
            seen.append(v)
    assert seen == [0, 1]  # the items before the bad one reach the caller first

    def workers():
        return sum(t.name == "wtalkit-prefetch" for t in threading.enumerate())

    before = workers()
    gen = prefetched(lambda i: i, range(1000))
    assert next(gen) == 0 and workers() == before + 1
    gen.close()  # leaving the loop early: the worker is stopped, not left blocked on its queue
    assert workers() == before


def test_a_warmup_epoch_with_prefetch_equals_one_without(tiny_dataset, monkeypatch):
    """The training loop as a GPU runs it (next batch read in a thread), checked on the CPU: same loss, same
    weights, same RNG state after, with Hide-and-Seek drawing from the same generator between batches."""
    from tests.conftest import TINY_SETS
    from wtalkit.config import load_config
    from wtalkit.models.build import build_cbp
    from wtalkit.train.optim import make_optimizer
    from wtalkit.train.warmup import cbp_epoch

    cfg = load_config("demo", TINY_SETS + ["cbp.hide_prob=0.5", "cbp.hide_len=2"])
    bank = FeatureBank(Dataset(tiny_dataset), "train", ("cbp",), require_labels=True)
    real = FeatureBank.batches
    runs = []
    for prefetch in (False, True):
        monkeypatch.setattr(
            FeatureBank, "batches", lambda self, rng, _p=prefetch, **kw: real(self, rng, **{**kw, "prefetch": _p})
        )
        torch.manual_seed(0)
        model = build_cbp(cfg, bank.dim("cbp"), len(bank.classes))
        opt = make_optimizer(model.parameters(), cfg)
        rng = np.random.default_rng(11)
        fill = torch.zeros(bank.dim("cbp"))
        loss = cbp_epoch(model, opt, bank, rng, cfg, hide_fill=fill)
        runs.append((loss, model.state_dict(), rng.random()))
    (l0, w0, r0), (l1, w1, r1) = runs
    assert l0 == l1 and r0 == r1 and all(torch.equal(w0[k], w1[k]) for k in w0)


def test_training_prefetches_only_off_the_cpu():
    from wtalkit.config import load_config
    from wtalkit.data.loader import batch_options

    data = load_config("demo").data
    assert batch_options(data)["prefetch"] is False
    assert batch_options(data, torch.device("cpu"))["prefetch"] is False
    assert batch_options(data, torch.device("cuda", 0))["prefetch"] is True  # a device object needs no GPU
