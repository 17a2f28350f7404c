"""Core pipeline timings: warm-up per epoch, localize per video, score, on the demo's data.

    python benchmarks/bench_core.py [--data DEMO_DIR/data] [--epochs 3]

Builds the demo dataset (as ``wtalkit demo`` does) unless ``--data`` points at one, then times
warm-up epochs (demo preset and the THUMOS14 model size at T=1000), localizing the test
split video by video, and ``score`` on the resulting file. Prints a table.
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
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 epoch, 20 test videos")
    args = ap.parse_args()
    if args.quick:
        args.epochs = 1

    from wtalkit.config import load_config
    from wtalkit.data.annotations import load_annotations
    from wtalkit.data.features import Dataset
    from wtalkit.data.loader import FeatureBank
    from wtalkit.demo import build_demo_data
    from wtalkit.eval.detection import evaluate_detection
    from wtalkit.localize.predict import Predictor
    from wtalkit.models.build import build_cbp
    from wtalkit.train.optim import make_optimizer
    from wtalkit.train.warmup import cbp_epoch, train_warmup

    tmp = Path(tempfile.mkdtemp(prefix="wtalkit-bench-core-"))
    data = args.data
    if data is None:
        _, data = build_demo_data(tmp, quick=False, seed=0)
    ds = Dataset(data)
    bank = FeatureBank(ds, "train", ("cbp",), require_labels=True)
    rows = []
    for preset, sets in (("demo", []), ("thumos14", [])):
        cfg = load_config(preset, sets)
        model = build_cbp(cfg, bank.dim("cbp"), len(ds.classes))
        opt = make_optimizer(model.parameters(), cfg)
        rng = np.random.default_rng(0)
        times = []
        for _ in range(args.epochs):
            t0 = time.perf_counter()
            cbp_epoch(model, opt, bank, rng, cfg)
            times.append(time.perf_counter() - t0)
        rows.append(
            (
                f"warm-up epoch, {preset} model (T={cfg.data.num_segments}, {len(bank)} videos)",
                statistics.median(times),
                "s/epoch",
            )
        )

    cfg = load_config("demo", ["train.warmup_epochs=1"])
    ck = Path(data).parent / "run" / "warmup.pt"  # a demo folder's trained warm-up, if there is one
    if not ck.exists():
        ck = train_warmup(data, tmp / "run", load_config("demo"))
    pred = Predictor(ck)
    test = ds.videos("test", stream="cbp")[: 20 if args.quick else None]
    feats = [{"cbp": ds.stream("cbp").load(v.name)} for v in test]
    results, t0 = {}, time.perf_counter()
    for v, f in zip(test, feats):
        results[v.name] = pred.localize(f)[0]
    per_video = (time.perf_counter() - t0) / len(test)
    rows.append(
        (
            f"localize per video (demo model, mean T={np.mean([len(f['cbp']) for f in feats]):.0f})",
            per_video * 1e3,
            "ms/video",
        )
    )
    ann = load_annotations(Path(data) / "annotations.json")
    t0 = time.perf_counter()
    evaluate_detection(ann, results, None, cfg.eval.tiou)
    rows.append(
        (f"score, in-process ({sum(map(len, results.values()))} predictions)", (time.perf_counter() - t0) * 1e3, "ms")
    )

    from rich.console import Console
    from rich.table import Table

    table = Table(title="wtalkit core timings (this machine; medians)")
    table.add_column("what")
    table.add_column("time", justify="right")
    table.add_column("unit")
    for what, value, unit in rows:
        table.add_row(what, f"{value:.3g}", unit)
    Console().print(table)
    print("THUMOS-sized score file (213 videos, ~50k predictions): python benchmarks/bench_score.py")


if __name__ == "__main__":
    main()
