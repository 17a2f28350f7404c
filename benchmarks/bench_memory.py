"""Peak resident memory of one warm-up epoch on an ActivityNet1.2-sized feature bank on disk.

ActivityNet1.2 with I3D features: 4,819 training + 2,383 validation videos (9,682 with the test
split), ~200 snippets each, 2,048 float32 dims: ~16 GB on disk. The target (issue 15): peak RSS of a
warm-up epoch below 25 % of the dataset's size on disk and below 4 GB, i.e. bounded by the batch.

The dataset is generated here (random features with the real shapes, video-level labels over 100
classes) at ``--scale`` of the full size (1.0 = 9,682 videos), then one warm-up epoch runs in a fresh
process with the ``anet12`` preset; its peak RSS (ru_maxrss) is compared with the bytes on disk and
with the same process's RSS right after ``import torch`` (the interpreter's own floor).

    python benchmarks/bench_memory.py --scale 0.1 --out /tmp/anet_bench   # ~1.6 GB on disk
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FULL_VIDEOS = 9682
TRAIN_FRACTION = 4819 / 9682

CHILD = r"""
import json, resource, sys, time
import torch
floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
from wtalkit.config import load_config
from wtalkit.train.warmup import train_warmup
cfg = load_config("anet12", ["train.warmup_epochs=1", "train.device=cpu"] + sys.argv[3:])
t0 = time.perf_counter()
train_warmup(sys.argv[1], sys.argv[2], cfg, overwrite=True)
print(json.dumps({"floor_kb": floor, "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "seconds": time.perf_counter() - t0}))
"""


def make_dataset(root: Path, n_videos: int, dim: int, seed: int = 0) -> int:
    """Write an ActivityNet-shaped dataset; returns the feature bytes on disk."""
    from wtalkit.data.annotations import Annotations, Video
    from wtalkit.data.features import FeatureStream, StreamMeta

    rng = np.random.default_rng(seed)
    classes = [f"class_{i:03d}" for i in range(100)]
    stream = FeatureStream.create(root / "features" / "cbp", StreamMeta("i3d-kinetics-rgb+flow", dim, 25.0, 16, 16))
    videos, size = {}, 0
    for i in range(n_videos):
        name = f"v_{i:05d}"
        T = int(rng.integers(60, 340))  # ~200 snippets on average
        if not stream.has(name):
            stream.write(name, rng.random((T, dim), dtype=np.float32))
        size += stream.path(name).stat().st_size
        subset = "train" if i < int(n_videos * TRAIN_FRACTION) else "test"
        videos[name] = Video(name, subset, T * 16 / 25, [], [classes[int(rng.integers(0, 100))]])
    Annotations(classes, videos).save(root / "annotations.json")
    return size


def measure(root: Path, n: int, dim: int) -> dict:
    t0 = time.perf_counter()
    size = make_dataset(root / "data", n, dim)
    made = time.perf_counter() - t0
    res = subprocess.run(
        [sys.executable, "-c", CHILD, str(root / "data"), str(root / "run")], capture_output=True, text=True
    )
    if res.returncode != 0:
        sys.exit(res.stderr[-2000:])
    r = json.loads(res.stdout.strip().splitlines()[-1])
    return {"videos": n, "bytes_on_disk": size, "peak_rss": r["peak_kb"] * 1024, "floor_rss": r["floor_kb"] * 1024,
            "epoch_seconds": r["seconds"], "generate_seconds": made}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=0.1, help="fraction of ActivityNet1.2's 9,682 videos")
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--out", default="/tmp/wtalkit_bench_memory")
    ap.add_argument("--quick", action="store_true", help="--scale 0.02")
    args = ap.parse_args()
    scale = 0.02 if args.quick else args.scale
    rows = []
    # Two sizes, 5x apart: memory bounded by the batch shows as a peak that does not grow with the data.
    for s in (scale / 5, scale):
        n = max(10, int(FULL_VIDEOS * s))
        r = measure(Path(args.out) / f"n{n}", n, args.dim)
        rows.append(r)
        peak, floor, size = r["peak_rss"], r["floor_rss"], r["bytes_on_disk"]
        print(
            f"{n} videos, {size / 1e9:.2f} GB on disk: one warm-up epoch {r['epoch_seconds']:.0f} s, peak RSS "
            f"{peak / 1e9:.2f} GB ({100 * peak / size:.0f} % of the data), {(peak - floor) / 1e9:.2f} GB above the "
            f"torch import floor of {floor / 1e9:.2f} GB",
            flush=True,
        )
    growth = (rows[1]["peak_rss"] - rows[0]["peak_rss"]) / max(1, rows[1]["bytes_on_disk"] - rows[0]["bytes_on_disk"])
    full = 16.0e9
    projected = rows[1]["peak_rss"] + growth * (full - rows[1]["bytes_on_disk"])
    print(
        f"peak RSS grows by {100 * growth:.1f} % of the added data; projected at ActivityNet1.2 size (~16 GB): "
        f"{projected / 1e9:.2f} GB = {100 * projected / full:.1f} % (target < 25 % and < 4 GB)"
    )
    print(json.dumps({"rows": rows, "growth_per_byte": growth, "projected_full_rss": projected}))


if __name__ == "__main__":
    main()
