"""Does the CBP branch localize on I3D-shaped features? Warm-up and alternate over regimes x seeds.

    python benchmarks/bench_cbp_regimes.py [--regimes i3d,plain,short-core] [--seeds 0,1,2]
                                           [--rounds 3] [--out DIR] [--export-co2net]
                                           [--no-alternate] [--multi-threshold] [--set KEY=VALUE ...]

Each regime is a set of generator parameters (:class:`wtalkit.data.synthetic.I3DStyle`) for the
``cbp`` stream: 2,048 dims as RGB ‖ flow halves, 16-frame snippets at 25 fps, on the real THUMOS14
temporal layout (``wtalkit/data/thumos14_layout.json``, built from the annotation files in
``../shared/thumos14-reduced-annotations``), 120 training videos with video-level labels only and
60 test videos. The ``vlp`` stream is the demo's CLIP-like stream around a small random CLIP.
For each regime and seed (data seed = training seed) it runs ``warmup`` (demo preset),
``localize`` + ``score`` on the test split, then ``alternate`` and scores its CBP branch, and
prints avg mAP 0.1-0.5 / 0.3-0.7 / 0.1-0.7 as mean ± standard deviation over seeds.

``--export-co2net`` also writes each dataset in the layout of the THUMOS14 "reduced" release
(``Thumos14reduced-I3D-JOINTFeatures.npy`` and the annotation ``.npy`` files) so that other
methods' public code can be run on exactly the same features (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

REGIMES = {
    # non-negative, temporally smooth features with a per-video scene; cores of 35 %
    "i3d": dict(),
    # the simplest reading of "I3D-shaped": zero-mean i.i.d. noise, class evidence on the cores only
    "plain": dict(relu=False, scene=0.0, smooth=0.0, motion=0.0, distractors=0.0),
    # shorter cores, weaker evidence off them, look-alike classes and more background motion
    "short-core": dict(core_fraction=0.2, weak=0.2, confusion=0.5, distractors=0.15),
    # i3d with one of its parts removed (which part makes it hard; not run by default)
    "i3d-noscene": dict(scene=0.0),
    "i3d-nosmooth": dict(smooth=0.0),
    "i3d-norelu": dict(relu=False),
    "i3d-nomotion": dict(motion=0.0, distractors=0.0),
}
DEFAULT_REGIMES = "i3d,plain,short-core"


NINE = "[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9]"  # the field's multi-threshold proposals (CO2-Net, UM)


def export_reduced(data: Path, out: Path) -> None:
    """The dataset in the THUMOS14-reduced layout (object arrays, as the public release; only for peers' code)."""
    from wtalkit.data.annotations import load_annotations
    from wtalkit.data.features import Dataset

    ann = load_annotations(data / "annotations.json")
    ds = Dataset(data)
    grid = ds.stream("cbp").meta.grid
    from wtalkit.data.synthetic import thumos_layout

    layout = {v["name"]: v for v in thumos_layout()["videos"]}
    classes = ann.classes
    names, subsets, feats, durs, labels, segs, labels_all = [], [], [], [], [], [], []
    for v in ann.videos.values():
        names.append(v.name.encode())
        subsets.append(b"validation" if v.subset == "train" else b"test")
        feats.append(ds.stream("cbp").load(v.name))
        durs.append([v.duration])
        inst = [(s, e, classes[c]) for s, e, c in layout[v.name]["segments"]]  # peers read GT only for test
        labels.append([c for _, _, c in inst])
        segs.append([[s, e] for s, e, _ in inst])
        labels_all.append(sorted(set(v.labels)))
    out.mkdir(parents=True, exist_ok=True)

    def obj(xs):
        a = np.empty(len(xs), dtype=object)
        a[:] = xs
        return a

    np.save(out / "Thumos14reduced-I3D-JOINTFeatures.npy", obj(feats), allow_pickle=True)
    ann_dir = out / "Thumos14reduced-Annotations"
    ann_dir.mkdir(exist_ok=True)
    np.save(ann_dir / "videoname.npy", np.array(names))
    np.save(ann_dir / "subset.npy", np.array(subsets))
    np.save(ann_dir / "duration.npy", np.array(durs))
    np.save(ann_dir / "labels.npy", obj(labels), allow_pickle=True)
    np.save(ann_dir / "segments.npy", obj(segs), allow_pickle=True)
    np.save(ann_dir / "labels_all.npy", obj(labels_all), allow_pickle=True)
    np.save(ann_dir / "classlist.npy", np.array([c.encode() for c in classes]))
    (out / "grid.json").write_text(json.dumps({"fps": grid.fps, "stride": grid.stride}))


def make_data(root: Path, regime: str, seed: int) -> tuple[Path, Path]:
    from wtalkit.data.synthetic import I3DStyle
    from wtalkit.demo import write_synthetic_data
    from wtalkit.models.clip import save_random_clip
    from wtalkit.timeaxis import SnippetGrid

    clip = root / "clip.pt"
    if not clip.exists():
        save_random_clip(clip, "demo", seed=0)
    data = root / f"{regime}-s{seed}"
    if not (data / "annotations.json").exists():
        cbp = I3DStyle(**REGIMES[regime])
        write_synthetic_data(data, clip, seed=seed, n_train=120, n_test=60, cbp=cbp, grid=SnippetGrid(25.0, 16, 16))
    return clip, data


def avgs(res) -> list:
    from wtalkit.eval.report import average_columns

    return [100 * v for _, v in average_columns(res.tiou, res.mAP)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--regimes", default=DEFAULT_REGIMES, help=f"any of {', '.join(REGIMES)}")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--export-co2net", action="store_true")
    ap.add_argument("--no-alternate", action="store_true")
    ap.add_argument("--tag", default="", help="train into OUT/runs-TAG (several variants on the same data)")
    ap.add_argument(
        "--multi-threshold",
        action="store_true",
        help="also score every model with the nine thresholds 0.1...0.9 (infer.theta_loc) besides the paper's 0.45",
    )
    ap.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)"
    )
    args = ap.parse_args()

    from wtalkit.config import load_config
    from wtalkit.localize.evaluate import evaluate_run
    from wtalkit.train.alternate import train_alternate
    from wtalkit.train.warmup import train_warmup

    out = args.out or Path(tempfile.mkdtemp(prefix="wtalkit-cbp-regimes-"))
    rows = {}
    for regime in args.regimes.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            t0 = time.perf_counter()
            clip, data = make_data(out, regime, seed)
            if args.export_co2net:
                export_reduced(data, out / "reduced" / f"{regime}-s{seed}")
            sets = [f"vlp.clip_model={clip}", f"train.seed={seed}", f"train.rounds={args.rounds}", *args.sets]
            cfg = load_config("demo", sets)
            multi = load_config("demo", [*sets, f"infer.theta_loc={NINE}"])  # the same model, nine thresholds
            run = out / (f"runs-{args.tag}" if args.tag else "runs") / f"{regime}-s{seed}"

            models = [("warm-up", train_warmup(data, run, cfg, overwrite=True))]
            if not args.no_alternate:
                final = train_alternate(data, run, cfg, warmup_ckpt=models[0][1], overwrite=True)
                models.append((f"alternate ({args.rounds} rounds)", final))
            for name, ckpt in models:
                rows.setdefault((regime, name), []).append(avgs(evaluate_run(ckpt, data, "cbp")))
                if args.multi_threshold:
                    rows.setdefault((regime, name + ", 9 thr."), []).append(
                        avgs(evaluate_run(ckpt, data, "cbp", cfg=multi))
                    )
            print(
                json.dumps(
                    {
                        "regime": regime,
                        "seed": seed,
                        "seconds": round(time.perf_counter() - t0),
                        **{name: [round(x, 1) for x in v[-1]] for (r, name), v in rows.items() if r == regime},
                    }
                ),
                flush=True,
            )
    print(f"\navg mAP (%) on I3D-shaped synthetic data, mean ± std over seeds {args.seeds}")
    print(f"{'regime':<12} {'model':<30} {'0.1-0.5':>13} {'0.3-0.7':>13} {'0.1-0.7':>13}")
    for (regime, name), vals in rows.items():
        cols = np.array(vals)
        cells = [
            f"{m:5.1f} ± {s:4.1f}" for m, s in zip(cols.mean(0), cols.std(0, ddof=1) if len(cols) > 1 else 0 * cols[0])
        ]
        print(f"{regime:<12} {name:<30} " + " ".join(f"{c:>13}" for c in cells))


if __name__ == "__main__":
    main()
