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
