"""Which classes does inference localize in each test video? The video-class step of the CBP branch.

    python benchmarks/bench_video_classes.py --out DIR [--regimes i3d,plain,short-core] [--seeds 0,1,2]
                                             [--tag TAG] [--theta-cls 0.85,0.5,0.2] [--multi-threshold]

Reads the runs that ``bench_cbp_regimes.py --out DIR`` trained (``DIR/runs[-TAG]/REGIME-sSEED``: its
``warmup.pt`` and ``alternate.pt``) and, for each ``infer.theta_cls``, scores the test split with the
run's own config and that one value changed. Inference localizes the classes whose video score is
above ``theta_cls`` (the top one when none is), so per model and threshold it prints:

* ``recall``: the share of (test video, true class) pairs whose class is localized (an instance of
  a class that is not localized can never be found, whatever the frame scores);
* ``recall, 2+ classes``: the same over the test videos with two or more classes;
* ``false / video``: localized classes that are not in the video, per video;
* avg mAP 0.1-0.7 (%), and with ``--multi-threshold`` also with nine ``infer.theta_loc`` 0.1 ... 0.9.

Mean ± std over seeds. Evaluation only: nothing is chosen from the test labels here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from bench_cbp_regimes import DEFAULT_REGIMES, NINE


def class_stats(predictor, data: Path, thetas: list[float]) -> list[tuple[float, float, float]]:
    """Per ``theta_cls``: (recall of true classes, recall on videos with 2+ classes, false classes per video).

    The video scores do not depend on the threshold, so each test video runs through the model once.
    """
    from wtalkit.data.features import Dataset
    from wtalkit.localize.predict import kept_classes

    ds = Dataset(data)
    cidx = ds.annotations.class_index()
    rec, multi, false = [], [], []  # [video][theta]
    for v in ds.videos(predictor.cfg.data.test_subset, stream="cbp"):
        video = predictor.outputs({"cbp": ds.stream("cbp").load(v.name)})["video"]
        true = {cidx[c] for c in v.labels}
        kept = [set(kept_classes(video, t).tolist()) for t in thetas]
        rec.append([len(k & true) / len(true) for k in kept])
        multi.append(len(true) > 1)
        false.append([len(k - true) for k in kept])
    rec, false, multi = np.array(rec), np.array(false), np.array(multi)
    on_multi = rec[multi].mean(0) if multi.any() else np.full(len(thetas), np.nan)
    return [(float(r), float(m), float(f)) for r, m, f in zip(rec.mean(0), on_multi, false.mean(0))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="the --out folder of bench_cbp_regimes.py")
    ap.add_argument("--regimes", default=DEFAULT_REGIMES)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--tag", default="")
    ap.add_argument("--theta-cls", default="0.85,0.5,0.2")
    ap.add_argument("--multi-threshold", action="store_true")
    args = ap.parse_args()

    from wtalkit.config import load_config
    from wtalkit.eval.report import average_columns
    from wtalkit.localize.evaluate import evaluate_run
    from wtalkit.localize.predict import Predictor

    runs = args.out / (f"runs-{args.tag}" if args.tag else "runs")
    rows = {}
    for regime in args.regimes.split(","):
        for seed in args.seeds.split(","):
            run, data = runs / f"{regime}-s{seed}", args.out / f"{regime}-s{seed}"
            for model in ("warmup", "alternate"):
                ckpt = run / f"{model}.pt"
                if not ckpt.exists():
                    continue
                thetas = args.theta_cls.split(",")
                predictor = Predictor(ckpt, branch="cbp", device="cpu")
                for theta, stats in zip(thetas, class_stats(predictor, data, [float(t) for t in thetas])):
                    sets = [f"infer.theta_cls={theta}"]
                    cfg = load_config(str(run / "config.yaml"), sets)
                    maps = [evaluate_run(ckpt, data, "cbp", cfg=cfg, device="cpu")]
                    if args.multi_threshold:
                        nine = load_config(str(run / "config.yaml"), [*sets, f"infer.theta_loc={NINE}"])
                        maps.append(evaluate_run(ckpt, data, "cbp", cfg=nine, device="cpu"))
                    avg = [100 * average_columns(r.tiou, r.mAP)[-1][1] for r in maps]
                    rows.setdefault((regime, model, theta), []).append([*stats, *avg])
    head = ["recall", "recall, 2+ classes", "false / video", "avg 0.1-0.7"] + (
        ["9 thr."] if args.multi_threshold else []
    )
    print(f"{'regime':<11} {'model':<10} {'theta_cls':>9} " + " ".join(f"{h:>18}" for h in head))
    for (regime, model, theta), vals in rows.items():
        a = np.array(vals)
        sd = a.std(0, ddof=1) if len(a) > 1 else 0 * a[0]
        cells = [f"{m:.2f} ± {s:.2f}" for m, s in zip(a.mean(0)[:3], sd[:3])]
        cells += [f"{m:.1f} ± {s:.1f}" for m, s in zip(a.mean(0)[3:], sd[3:])]
        print(f"{regime:<11} {model:<10} {theta:>9} " + " ".join(f"{c:>18}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
