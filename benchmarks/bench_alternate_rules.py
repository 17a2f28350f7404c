"""The method's own evidence (issue 13): schedules and alternate rules over data regimes x seeds.

    python benchmarks/bench_alternate_rules.py [--regimes demo,long-leak,anet-like] [--seeds 0,1,2]
                                               [--variants alternate,uncertain] [--ablations] [--small]

For each regime (a set of data-generator parameters of :func:`wtalkit.data.synthetic.make_synthetic_dataset`)
and seed (data seed = training seed), it warms the CBP branch up once (demo preset), then trains each
variant from that warm-up and scores, on the test split (evaluation only: nothing is chosen with it):
avg mAP 0.1-0.5 of the final model (for alternate also read fused and VLP), of the CBP branch after
every round, the round the label-free agreement rule would keep, and the paper's Table-3 FG/BG mIoU
of both branches' pseudo-labels. ``--ablations`` adds only-F and only-B (fused).
Variants: ``alternate`` (the defaults), ``uncertain`` (conflicting frames uncertain), ``nocls``
(no MIL term in F), ``select`` (the label-free round choice), and ``+``-joined combinations.
One JSON line per (regime, seed, row); then mean ± std over seeds per row.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

REGIMES = {
    # the demo's data: 35 % cores, VLP leaks 4 s at 0.8 and mixes a look-alike class (0.6)
    "demo": dict(cbp=dict(), data=dict()),
    # more incomplete CBP (20 % cores, weaker rest) and a more over-complete VLP (leaks 8 s)
    "long-leak": dict(cbp=dict(core_fraction=0.2, weak=0.2), data=dict(vlp_leak_seconds=8.0)),
    # look-alike classes in both streams: CBP mixes a partner class (0.5), VLP mixes it at 0.9
    "look-alike": dict(cbp=dict(confusion=0.5), data=dict(confusion=0.9)),
    # ActivityNet-like: one long action per video (60 % of it), long VLP leaks
    "anet-like": dict(cbp=dict(), data=dict(long_actions=0.6, vlp_leak_seconds=8.0)),
}

RULES = {"uncertain": {"conflict": "uncertain"}, "nocls": {"f_cls_weight": 0.0}, "select": {"select": "agreement"}}


def make_data(root: Path, regime: str, seed: int, small: bool) -> tuple[Path, Path]:
    from wtalkit.data.synthetic import I3DStyle
    from wtalkit.demo import write_synthetic_data
    from wtalkit.models.clip import save_random_clip

    clip = root / f"clip-s{seed}.pt"
    save_random_clip(clip, "demo", seed=seed)  # as the demo: the CLIP's seed is the data seed
    data = root / f"{regime}-s{seed}"
    n_train, n_test = (100, 50) if small else (200, 100)
    cbp = I3DStyle(**REGIMES[regime]["cbp"])
    write_synthetic_data(data, clip, seed=seed, n_train=n_train, n_test=n_test, cbp=cbp, **REGIMES[regime]["data"])
    return clip, data


def avg(res) -> float:
    from wtalkit.eval.report import average_columns

    return 100 * dict(average_columns(res.tiou, res.mAP))["0.1–0.5"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--regimes", default="demo,long-leak,anet-like")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--variants", default="alternate")
    ap.add_argument("--ablations", action="store_true")
    ap.add_argument("--small", action="store_true", help="100 train / 50 test videos instead of 200 / 100")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from wtalkit.config import load_config
    from wtalkit.localize.evaluate import evaluate_run
    from wtalkit.train.alternate import Rules, train_alternate
    from wtalkit.train.pseudo import select_round
    from wtalkit.train.pseudolabel import branch_scores, pseudo_labels
    from wtalkit.train.warmup import train_warmup

    out = args.out or Path(tempfile.mkdtemp(prefix="wtalkit-rules-"))
    rows: dict = {}

    def emit(regime, seed, name, **vals):
        rows.setdefault((regime, name), []).append(vals)
        print(json.dumps({"regime": regime, "seed": seed, "row": name, **vals}), flush=True)

    def miou(m):
        return {"fg": 100 * m["fg_iou"], "bg": 100 * m["bg_iou"]}

    for regime in args.regimes.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            t0 = time.perf_counter()
            clip, data = make_data(out, regime, seed, args.small)
            sets = [f"vlp.clip_model={clip}", f"train.seed={seed}"]
            cfg = load_config("demo", sets)
            test = cfg.data.test_subset
            warm = train_warmup(data, out / "runs" / f"{regime}-s{seed}", cfg, overwrite=True)
            from wtalkit.demo import evaluate_scores

            raw = evaluate_scores(branch_scores(warm, data, "raw-vlp", test, cfg=cfg), data, cfg)
            emit(
                regime,
                seed,
                "warm-up",
                map=avg(evaluate_run(warm, data, "cbp")),
                cbp=miou(pseudo_labels(warm, data, "cbp", test)[1]),
            )
            emit(regime, seed, "raw VLP", map=avg(raw), vlp=miou(pseudo_labels(warm, data, "raw-vlp", test)[1]))
            jobs = [(v, "alternate") for v in args.variants.split(",")]
            if args.ablations:
                jobs += [("only-f", "only-f"), ("only-b", "only-b")]
            for name, schedule in jobs:
                rules = {}
                for part in name.split("+"):
                    rules.update(RULES.get(part, {}))
                c = load_config("demo", sets + [f"train.schedule={schedule}"])
                per_round = []
                ck = train_alternate(
                    data,
                    out / "runs" / f"{regime}-s{seed}-{name}",
                    c,
                    warmup_ckpt=warm,
                    overwrite=True,
                    rules=Rules(**rules),
                    evaluate=(lambda p, acc=per_round, d=data: acc.append(avg(evaluate_run(p, d, "cbp"))))
                    if schedule == "alternate"
                    else None,
                )
                from wtalkit.models.checkpoint import load_checkpoint

                sel = load_checkpoint(ck).get("selection", {})
                vals = {"map": avg(evaluate_run(ck, data))}
                if schedule == "alternate":
                    vals["rounds"] = per_round
                    vals["chosen"] = sel.get("round")
                    vals["agreement"] = [round(a["score"], 4) for a in sel.get("agreement", {}).values()]
                    # the round select=agreement keeps (label-free), whatever rule this run used
                    vals["agreement_round"] = select_round(dict(enumerate(vals["agreement"], start=1)))
                    # the same model read through the other branches (localize --branch)
                    vals["map_fused"] = avg(evaluate_run(ck, data, "fused"))
                    vals["map_vlp"] = avg(evaluate_run(ck, data, "vlp"))
                    vals["cbp"] = miou(pseudo_labels(ck, data, "cbp", test)[1])
                if schedule != "only-f":
                    vals["vlp"] = miou(pseudo_labels(ck, data, "vlp", test)[1])
                emit(regime, seed, name, **vals)
            print(json.dumps({"regime": regime, "seed": seed, "seconds": round(time.perf_counter() - t0)}), flush=True)

    print(f"\nmean ± std over seeds {args.seeds} (avg mAP 0.1-0.5 %, Table-3 FG/BG mIoU %)")
    for (regime, name), vals in rows.items():
        cells = {}
        keys = [("map", None), ("map_fused", None), ("map_vlp", None)]
        keys += [("cbp", "fg"), ("cbp", "bg"), ("vlp", "fg"), ("vlp", "bg")]
        for k, sub in keys:
            xs = [v[k][sub] if sub else v[k] for v in vals if k in v]
            if xs:
                text = f"{np.mean(xs):.1f} ± {np.std(xs, ddof=1):.1f}" if len(xs) > 1 else f"{xs[0]:.1f}"
                cells[f"{k}{'.' + sub if sub else ''}"] = text
        if "rounds" in vals[0]:
            r = np.array([v["rounds"] for v in vals])
            cells["rounds"] = " → ".join(f"{m:.1f}" for m in r.mean(0))
            cells["chosen"] = [v.get("chosen") for v in vals]
            cells["agreement picks"] = [v.get("agreement_round") for v in vals]
        print(f"{regime:<11} {name:<20} " + "  ".join(f"{k} {c}" for k, c in cells.items()), flush=True)


if __name__ == "__main__":
    main()
