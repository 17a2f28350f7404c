"""Benchmark ``wtalkit score`` against the official ActivityNet detection evaluation's approach.

Builds a THUMOS14-sized problem -- the 212 real test videos of the THUMOS14
"reduced" annotations (``../shared/thumos14-reduced-annotations`` when present,
a synthetic look-alike otherwise) and ~50k predictions around them -- then times

* ``reference``: the algorithm of ``Evaluation/eval_detection.py``
  (activitynet/ActivityNet) in its own style: pandas DataFrames, ``groupby``
  per class and per video, ``iterrows`` over the ranked predictions (run in one
  process: the official ``joblib`` fan-out over classes is left out, which
  only helps it on a shared 2-core machine). Needs pandas; skipped otherwise.
* ``wtalkit score --json``: the whole command as a subprocess, interpreter
  start-up, imports and JSON parsing included.

and checks that both give the same mAP to 1e-9.

    python benchmarks/bench_score.py            # full size (~50k predictions)
    python benchmarks/bench_score.py --quick    # ~5k predictions, < 1 min
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "thumos14-reduced-annotations"
TIOUS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]


# --------------------------------------------------------------------------- data


def build_annotations(rng) -> tuple[dict, str]:
    """THUMOS14 test annotations: the real ones when available, else a synthetic look-alike."""
    if SHARED.is_dir():
        from wtalkit.data.thumos import read_annotation_dir

        ann = read_annotation_dir(SHARED)
        return ann.to_json(), f"real THUMOS14 test structure ({SHARED})"
    classes = [f"Action{i:02d}" for i in range(20)]
    db = {}
    for v in range(213):
        dur = float(rng.uniform(30, 900))
        segs = []
        for c in rng.choice(20, size=int(rng.integers(1, 3)), replace=False):
            for _ in range(int(rng.integers(1, 40))):
                s = float(rng.uniform(0, dur - 2))
                segs.append({"segment": [round(s, 1), round(min(dur, s + rng.uniform(1, 12)), 1)], "label": classes[c]})
        db[f"video_test_{v:07d}"] = {"subset": "test", "duration": dur, "annotations": segs}
    return {"classes": classes, "database": db}, "synthetic (shared/ not found)"


def build_results(data: dict, n_pred: int, rng) -> dict:
    """~n_pred predictions: jittered copies of GT segments plus random segments, per video."""
    classes = data["classes"]
    test = {k: v for k, v in data["database"].items() if v["subset"] == "test"}
    per_video = max(1, n_pred // len(test))
    results = {}
    for name, v in test.items():
        dur = v["duration"]
        gt = v["annotations"]
        gt_classes = sorted({a["label"] for a in gt})
        cands = gt_classes + [classes[i] for i in rng.choice(len(classes), size=2, replace=False)]
        preds = []
        for _ in range(per_video):
            label = cands[int(rng.integers(len(cands)))]
            own = [a for a in gt if a["label"] == label]
            if own and rng.random() < 0.6:
                s, e = own[int(rng.integers(len(own)))]["segment"]
                length = max(e - s, 0.5)
                s = s + rng.normal(0, 0.3) * length
                e = e + rng.normal(0, 0.3) * length
            else:
                s = rng.uniform(0, dur)
                e = s + rng.exponential(8.0)
            s, e = max(0.0, min(s, e)), max(s, e)
            preds.append(
                {"label": label, "score": round(float(rng.random()), 4), "segment": [round(s, 2), round(e, 2)]}
            )
        results[name] = preds
    return {"results": results}


# --------------------------------------------------------------------------- reference


def reference_map(gt_path: Path, pred_path: Path, subset: str, tious) -> np.ndarray:
    """The official algorithm in the official style (pandas groupby + iterrows)."""
    import pandas as pd

    with open(gt_path) as f:
        data = json.load(f)
    activity_index, rows = {}, []
    for vid, v in data["database"].items():
        if v["subset"] != subset:
            continue
        for a in v["annotations"]:
            if a["label"] not in activity_index:
                activity_index[a["label"]] = len(activity_index)
            rows.append((vid, float(a["segment"][0]), float(a["segment"][1]), activity_index[a["label"]]))
    ground_truth = pd.DataFrame(rows, columns=["video-id", "t-start", "t-end", "label"])
    with open(pred_path) as f:
        res = json.load(f)["results"]
    rows = [
        (vid, float(r["segment"][0]), float(r["segment"][1]), activity_index[r["label"]], r["score"])
        for vid, lst in res.items()
        for r in lst
        if r["label"] in activity_index
    ]
    prediction = pd.DataFrame(rows, columns=["video-id", "t-start", "t-end", "label", "score"])

    ap = np.zeros((len(tious), len(activity_index)))
    gt_by_label = ground_truth.groupby("label")
    pred_by_label = prediction.groupby("label")
    for cidx in activity_index.values():
        gt = gt_by_label.get_group(cidx).reset_index(drop=True)
        try:
            pr = pred_by_label.get_group(cidx).reset_index(drop=True)
        except KeyError:
            continue
        ap[:, cidx] = _reference_class_ap(gt, pr, tious)
    return ap.mean(axis=1)


def _reference_class_ap(ground_truth, prediction, tious):
    npos = float(len(ground_truth))
    lock_gt = np.ones((len(tious), len(ground_truth))) * -1
    sort_idx = prediction["score"].values.argsort()[::-1]
    prediction = prediction.loc[sort_idx].reset_index(drop=True)
    tp = np.zeros((len(tious), len(prediction)))
    fp = np.zeros((len(tious), len(prediction)))
    gt_by_video = ground_truth.groupby("video-id")
    for idx, this_pred in prediction.iterrows():
        try:
            gt_video = gt_by_video.get_group(this_pred["video-id"])
        except KeyError:
            fp[:, idx] = 1
            continue
        this_gt = gt_video.reset_index()
        seg = this_pred[["t-start", "t-end"]].values
        cand = this_gt[["t-start", "t-end"]].values
        inter = (np.minimum(seg[1], cand[:, 1]) - np.maximum(seg[0], cand[:, 0])).clip(0)
        union = (cand[:, 1] - cand[:, 0]) + (seg[1] - seg[0]) - inter
        tiou = inter.astype(float) / union
        order = tiou.argsort()[::-1]
        for t, thr in enumerate(tious):
            for j in order:
                if tiou[j] < thr:
                    fp[t, idx] = 1
                    break
                if lock_gt[t, this_gt.loc[j]["index"]] >= 0:
                    continue
                tp[t, idx] = 1
                lock_gt[t, this_gt.loc[j]["index"]] = idx
                break
            if fp[t, idx] == 0 and tp[t, idx] == 0:
                fp[t, idx] = 1
    tp_c = np.cumsum(tp, axis=1)
    fp_c = np.cumsum(fp, axis=1)
    rec = tp_c / npos
    prec = tp_c / (tp_c + fp_c)
    out = np.zeros(len(tious))
    for t in range(len(tious)):
        mprec = np.hstack([[0], prec[t], [0]])
        mrec = np.hstack([[0], rec[t], [1]])
        for i in range(len(mprec) - 1)[::-1]:
            mprec[i] = max(mprec[i], mprec[i + 1])
        i = np.where(mrec[1:] != mrec[:-1])[0] + 1
        out[t] = np.sum((mrec[i] - mrec[i - 1]) * mprec[i])
    return out


# --------------------------------------------------------------------------- main


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_cli(gt: Path, pred: Path) -> tuple[float, float, dict]:
    """Wall and CPU seconds of one ``wtalkit score --json`` process, and its output."""
    cmd = [
        sys.executable,
        "-m",
        "wtalkit",
        "score",
        str(gt),
        str(pred),
        "--json",
        "--tiou",
        ",".join(str(t) for t in TIOUS),
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    c0, t0 = _children_cpu(), time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - c0
    if p.returncode != 0:
        raise SystemExit(f"wtalkit score failed:\n{p.stderr}")
    return wall, cpu, json.loads(p.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="~5k predictions (finishes in < 1 min)")
    ap.add_argument("--predictions", type=int, default=None, help="number of predictions (default 50000)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of wtalkit score (median reported)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n_pred = args.predictions or (5000 if args.quick else 50000)
    rng = np.random.default_rng(args.seed)

    data, source = build_annotations(rng)
    results = build_results(data, n_pred, rng)
    n_total = sum(len(v) for v in results["results"].values())
    n_videos = sum(v["subset"] == "test" for v in data["database"].values())
    with tempfile.TemporaryDirectory() as tmp:
        gt, pred = Path(tmp) / "annotations.json", Path(tmp) / "results.json"
        gt.write_text(json.dumps(data))
        pred.write_text(json.dumps(results))
        print(f"annotations: {source}; {n_videos} test videos, {len(data['classes'])} classes")
        print(f"results: {n_total} predictions ({pred.stat().st_size / 1e6:.1f} MB), tIoU {TIOUS}")

        run_cli(gt, pred)  # warm the file cache and .pyc files
        walls, cpus, ours = [], [], None
        for _ in range(args.repeats):
            wall, cpu, ours = run_cli(gt, pred)
            walls.append(wall)
            cpus.append(cpu)
        t_ours, c_ours = statistics.median(walls), statistics.median(cpus)

        rows = []
        try:
            import pandas  # noqa: F401

            have_pandas = True
        except ImportError:
            have_pandas = False
        if have_pandas:
            c0, t0 = time.process_time(), time.perf_counter()
            ref = reference_map(gt, pred, "test", TIOUS)
            t_ref, c_ref = time.perf_counter() - t0, time.process_time() - c0
            diff = float(np.max(np.abs(ref - np.asarray(ours["mAP"]))))
            rows.append(("reference (pandas, official style)", t_ref, c_ref, float(ref.mean()), "1x", "1x"))
        rows.append(
            (
                "wtalkit score --json (whole process)",
                t_ours,
                c_ours,
                ours["average"],
                f"{t_ref / t_ours:.0f}x" if have_pandas else "-",
                f"{c_ref / c_ours:.0f}x" if have_pandas else "-",
            )
        )

    print()
    print(f"{'implementation':38s} {'wall (s)':>9s} {'CPU (s)':>9s} {'avg mAP':>10s} {'wall x':>7s} {'CPU x':>7s}")
    print("-" * 85)
    for name, t, c, m, r, rc in rows:
        print(f"{name:38s} {t:9.3f} {c:9.3f} {100 * m:9.4f}% {r:>7s} {rc:>7s}")
    print(
        f"(wtalkit: median of {args.repeats} runs; load average now {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs -- wall times are inflated on a busy machine, CPU times less so)"
    )
    if not have_pandas:
        print("reference row skipped: pandas is not installed (pip install pandas)")
        return
    print(f"\nmax |mAP difference| over tIoUs: {diff:.2e}  ->  {'OK' if diff <= 1e-9 else 'MISMATCH'}")
    if diff > 1e-9:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
