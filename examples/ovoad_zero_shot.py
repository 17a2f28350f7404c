"""OV-OAD zero-shot: train from one vocabulary's captions, detect another vocabulary online.

The whole experiment, on synthetic data and a tiny random CLIP (no downloads):

1. build two datasets with disjoint vocabularies that share one "world"
   (``wtalkit.data.synthetic_oad``: frames = class text direction through a
   fixed modality-gap map + scene context + temporally correlated noise);
2. train OV-OAD on the first dataset's captions (``wtalkit.train.ovoad``);
3. stream the second dataset's frames through the online scorers
   (``clip-frame``, ``clip-window``, ``ovoad`` via
   ``wtalkit.online.scorers.build_scorer``) with the *unseen* class names and
   score them with the OAD per-frame mAP (``wtalkit.eval.oad``).

Prints the table (per-frame mAP / calibrated mAP on the unseen vocabulary);
``ovoad (untrained)`` is the same architecture at initialisation, a control
showing what training from text adds. Runs in about 2-3 minutes on 2 CPU
cores::

    python examples/ovoad_zero_shot.py [--workdir DIR] [--seed 0] [--set train.epochs=4 ...] [--ablation]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# The tiny world's settings: a small model for 32-d embeddings, trained briefly.
TINY_OVERRIDES = [
    "model.width=64",
    "model.heads=4",
    "model.dropout=0.0",
    "train.epochs=3",
    "train.batch_size=128",
    "train.lr=0.001",
    "train.warmup_steps=30",
]
TEMPLATES = ["a video of a person doing {}."]


TEMPLATE = "a video of a person doing {}."  # the prompt that places each class's synthetic frames


def score_dataset(scorer_of, dataset) -> dict:
    """``video -> (times, probs[:, :K], classes)`` for every video of the dataset, streamed causally."""
    import numpy as np

    stream = dataset.stream("vlp")
    frames = {}
    for v in dataset.videos(None, "vlp"):
        feats = stream.load(v.name)
        scorer = scorer_of()
        probs = np.concatenate([scorer.step_many(feats[i : i + 256]) for i in range(0, len(feats), 256)])
        times = stream.meta.grid.to_seconds(np.arange(len(feats)))
        frames[v.name] = (times, probs[:, : len(dataset.classes)], list(dataset.classes))
    return frames


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=None, help="Keep data, CLIP and run here (default: a temp folder).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=60, help="Training videos (seen vocabulary).")
    ap.add_argument("--n-test", type=int, default=24, help="Test videos (unseen vocabulary).")
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Extra train-online config overrides, e.g. --set train.epochs=5.",
    )
    ap.add_argument(
        "--threads", type=int, default=1, help="Torch threads (the tensors are tiny: more threads rarely help)."
    )
    ap.add_argument(
        "--ablation",
        action="store_true",
        help="Also train the 'residual' and 'projection' heads (see wtalkit.models.ovoad).",
    )
    args = ap.parse_args(argv)

    import torch
    from rich.console import Console
    from rich.table import Table

    from wtalkit import io as wio
    from wtalkit.data.features import Dataset
    from wtalkit.data.synthetic_oad import build_zero_shot_pair
    from wtalkit.eval.oad import evaluate_oad
    from wtalkit.models.clip import clip_embed_dim, encode_class_prompts, load_clip, save_random_clip
    from wtalkit.models.ovoad import OVOAD, checkpoint_dict, clip_probe
    from wtalkit.online.scorers import build_scorer
    from wtalkit.train.ovoad import load_run_config, train_ovoad

    torch.set_num_threads(args.threads)
    console = Console(stderr=True)
    t_start = time.time()
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="ovoad_zero_shot_")
        work = Path(tmp.name)
    else:
        work = Path(args.workdir)
        work.mkdir(parents=True, exist_ok=True)
    try:
        clip_path = work / "clip_tiny.pt"
        if not clip_path.exists():
            save_random_clip(clip_path, "tiny", seed=args.seed)
        clip = load_clip(str(clip_path))
        data = work / f"data_seed{args.seed}"
        if not (data / "test" / "annotations.json").exists():
            build_zero_shot_pair(
                data,
                lambda names: encode_class_prompts(clip, names, [TEMPLATE]).numpy(),
                clip_embed_dim(clip),
                seed=args.seed,
                n_train=args.n_train,
                n_test=args.n_test,
            )
        train_ds, test_ds = Dataset(data / "train"), Dataset(data / "test")
        assert not set(train_ds.classes) & set(test_ds.classes)
        console.print(f"seen vocabulary ({len(train_ds.classes)}): {', '.join(train_ds.classes)}")
        console.print(f"unseen vocabulary ({len(test_ds.classes)}): {', '.join(test_ds.classes)}")

        common = TINY_OVERRIDES + [f"train.seed={args.seed}", f"train.templates={TEMPLATES!r}"]
        cfg = load_run_config(None, common + args.overrides)
        run = work / "run"
        t0 = time.time()
        summary = train_ovoad(
            data / "train", run, str(clip_path), cfg, overwrite=True, console=console, clip_model=clip
        )
        t_train = time.time() - t0
        extra = []
        for head in ("residual", "projection") if args.ablation else ():
            console.rule(f"ablation: head={head}")
            cfg_h = load_run_config(None, common + args.overrides + [f"model.head={head}"])
            s = train_ovoad(
                data / "train",
                work / f"run_{head}",
                str(clip_path),
                cfg_h,
                overwrite=True,
                console=console,
                clip_model=clip,
            )
            extra.append((f"ovoad (head={head})", {"checkpoint": s["checkpoint"]}))

        # The same architecture, untrained: the control for "what did the captions teach".
        torch.manual_seed(args.seed)
        init_cfg = load_run_config(run / "config.yaml").model
        wio.save_torch(
            run / "untrained.pt",
            checkpoint_dict(OVOAD(init_cfg).eval(), str(clip_path), clip_probe(clip), {"templates": TEMPLATES}),
        )

        models = [
            ("clip-frame", {}),
            ("clip-window", {"window": 8}),
            ("ovoad (untrained)", {"checkpoint": str(run / "untrained.pt")}),
            *extra,
            ("ovoad", {"checkpoint": summary["checkpoint"]}),
        ]
        rows = []
        t0 = time.time()
        for label, opts in models:
            name = label.split(" ")[0]
            frames = score_dataset(
                lambda name=name, opts=opts: build_scorer(name, clip, test_ds.classes, TEMPLATES, "background", **opts),
                test_ds,
            )
            res = evaluate_oad(test_ds.annotations, frames)
            rows.append((label, res.mAP, res.mcAP, res.n_frames))
        t_score = time.time() - t0

        table = Table(title=f"Zero-shot online action detection, unseen vocabulary (seed {args.seed})")
        for col in ("model", "per-frame mAP", "mcAP", "frames"):
            table.add_column(col, justify="left" if col == "model" else "right")
        for label, m, c, n in rows:
            table.add_row(label, f"{100 * m:.2f}", f"{100 * c:.2f}", str(n))
        Console().print(table)
        console.print(
            f"training {t_train:.1f}s ({summary['steps']} steps on {summary['frames']} frames), "
            f"scoring {t_score:.1f}s, total {time.time() - t_start:.1f}s"
        )
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
