"""Does reading the next batch in a background thread overlap with training? Warm-up epochs with and without.

    python benchmarks/bench_prefetch.py [--data DEMO_DIR/data] [--epochs 3] [--device cpu|cuda]

Times whole warm-up epochs (``wtalkit.train.warmup.cbp_epoch``) of the demo and the THUMOS14 model
size on the demo's data (built as ``wtalkit demo`` does unless ``--data`` is given) with
``FeatureBank.batches(prefetch=True)`` (what training on a GPU uses) and ``prefetch=False`` (the CPU), alternating the two in
one run so that both see the same machine load, and also the two parts alone: reading an epoch's
batches and computing on batches already read. Prints medians and the ratio without / with; perfect
overlap would bring the epoch down to the larger of the two parts.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="an existing demo dataset folder")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per setting (alternated)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import torch

    from wtalkit.config import load_config
    from wtalkit.data.features import Dataset
    from wtalkit.data.loader import FeatureBank, batch_options
    from wtalkit.demo import build_demo_data
    from wtalkit.device import resolve_device
    from wtalkit.models.build import build_cbp
    from wtalkit.train.optim import make_optimizer
    from wtalkit.train.warmup import cbp_epoch

    device = resolve_device(args.device)
    data = args.data
    if data is None:
        _, data = build_demo_data(Path(tempfile.mkdtemp(prefix="wtalkit-bench-prefetch-")), quick=False, seed=0)
    ds = Dataset(data)
    bank = FeatureBank(ds, "train", ("cbp",), require_labels=True)
    real = FeatureBank.batches
    print(f"{len(bank)} training videos, device {device}, torch threads {torch.get_num_threads()}")
    print(f"{'model':<10} {'read only':>10} {'compute only':>13} {'no prefetch':>12} {'prefetch':>9} {'ratio':>6}")
    for preset in ("demo", "thumos14"):
        cfg = load_config(preset)
        model = build_cbp(cfg, bank.dim("cbp"), len(ds.classes)).to(device)
        opt = make_optimizer(model.parameters(), cfg)
        rng = np.random.default_rng(0)
        opts = batch_options(cfg.data)
        t0 = time.perf_counter()
        held = list(bank.batches(rng, **opts))  # batch_options without a device: no prefetch
        read = time.perf_counter() - t0

        def replay(self, rng, _held=held, **kw):  # the same epoch, already in memory: compute only
            return iter(_held)

        times: dict = {"compute": [], False: [], True: []}
        for _ in range(args.epochs):
            for key in ("compute", False, True):
                if key == "compute":
                    FeatureBank.batches = replay
                else:
                    FeatureBank.batches = lambda self, rng, _p=key, **kw: real(self, rng, **{**kw, "prefetch": _p})
                try:
                    t0 = time.perf_counter()
                    cbp_epoch(model, opt, bank, rng, cfg)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    times[key].append(time.perf_counter() - t0)
                finally:
                    FeatureBank.batches = real
        med = {k: statistics.median(v) for k, v in times.items()}
        print(
            f"{preset:<10} {read:>9.2f}s {med['compute']:>12.2f}s {med[False]:>11.2f}s {med[True]:>8.2f}s "
            f"{med[False] / med[True]:>6.2f}"
        )


if __name__ == "__main__":
    main()
