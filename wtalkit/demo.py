"""The built-in demo: synthetic THUMOS14-structured data through the whole pipeline.

``run_demo`` builds a small random CLIP (the demo cannot ship pretrained
weights; every CLIP code path is the real one), draws the synthetic dataset of
:mod:`wtalkit.data.synthetic` on the real THUMOS14 layout, then runs
warm-up -> localize -> score for each row of the comparison table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from wtalkit.errors import WtalError

MARKER = ".wtalkit-demo"
TEMPLATE = "a video of a person doing {}."


@dataclass
class DemoRow:
    name: str
    tiou: list
    mAP: list  # fractions


@dataclass
class DemoReport:
    rows: list = field(default_factory=list)
    miou_rows: list = field(default_factory=list)  # (name, dict)
    rounds: list = field(default_factory=list)  # (checkpoint name, DetectionResult) after each round
    seconds: float = 0.0
    seed: int = 0
    selection: dict | None = None  # alternate.pt's round choice (rule, round, label-free criteria)


def run_demo_seeds(out_dir, *, seeds: int = 1, seed: int = 0, **kwargs) -> list:
    """:func:`run_demo` for data/training seeds ``seed .. seed + seeds - 1``; one report per seed.

    One seed writes to ``out_dir`` as before; several write to ``out_dir/seed_K`` each.
    """
    if seeds < 1:
        raise WtalError(f"--seeds must be >= 1, got {seeds}")
    if seed < 0:
        raise WtalError(f"--seed must be >= 0, got {seed}")
    if seeds == 1:
        return [run_demo(out_dir, seed=seed, **kwargs)]
    out = prepare_demo_folder(out_dir)
    return [run_demo(out / f"seed_{s}", seed=s, **kwargs) for s in range(seed, seed + seeds)]


def prepare_demo_folder(out_dir) -> Path:
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise WtalError(f"{out} exists and is not a wtalkit demo folder; choose another --output")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("created by 'wtalkit demo'; safe to delete\n")
    return out


def write_synthetic_data(
    data: Path, clip_path, *, seed: int, n_train: int, n_test: int, cbp=None, grid=None, **generator
) -> Path:
    """A synthetic THUMOS14-structured dataset whose VLP stream is built around ``clip_path``'s embeddings of
    the plain class prompts (:data:`TEMPLATE`): the demo's data, and the benchmarks' regimes.

    ``cbp``: the :class:`~wtalkit.data.synthetic.I3DStyle` of the CBP stream (default ``I3DStyle()``);
    ``grid``: the snippet grid (default 32-frame snippets at 25 fps); ``generator``: further parameters
    of :func:`~wtalkit.data.synthetic.make_synthetic_dataset`.
    """
    from wtalkit.data.synthetic import I3DStyle, make_synthetic_dataset, thumos_layout
    from wtalkit.models.clip import class_words, encode_class_prompts, load_clip
    from wtalkit.timeaxis import SnippetGrid

    model = load_clip(str(clip_path))
    text = encode_class_prompts(model, [class_words(c) for c in thumos_layout()["classes"]], [TEMPLATE]).numpy()
    make_synthetic_dataset(
        data,
        text_embeddings=text,
        n_train=n_train,
        n_test=n_test,
        cbp=cbp or I3DStyle(),
        grid=grid or SnippetGrid(25.0, 32, 32),
        seed=seed,
        **generator,
    )
    return data


def build_demo_data(out: Path, quick: bool, seed: int, console=None) -> tuple[Path, Path]:
    """The demo CLIP checkpoint and dataset (rebuilt each run: deterministic for a seed)."""
    from wtalkit.models.clip import save_random_clip

    clip_path = save_random_clip(out / "clip_demo.pt", "demo", seed=seed)
    data = out / "data"
    if data.exists():
        import shutil

        shutil.rmtree(data)
    n_train, n_test = (100, 40) if quick else (200, 100)
    write_synthetic_data(data, clip_path, seed=seed, n_train=n_train, n_test=n_test)
    if console:
        console.print(f"[green]synthetic dataset:[/] {data} ({n_train} train / {n_test} test videos, THUMOS14 layout)")
    return clip_path, data


def evaluate_scores(scores: dict, data: Path, cfg):
    """mAP of the paper's post-processing applied to ``{video: (frame_probs, video_scores)}``."""
    from wtalkit.data.annotations import load_annotations
    from wtalkit.data.features import Dataset
    from wtalkit.eval.detection import evaluate_detection
    from wtalkit.localize.predict import detections

    ds = Dataset(data)
    grid = ds.stream("cbp").meta.grid
    results = {v: detections(p, s, grid, ds.classes, cfg.infer) for v, (p, s) in scores.items()}
    return evaluate_detection(load_annotations(data / "annotations.json"), results, cfg.data.test_subset, cfg.eval.tiou)


TABLE6 = (("co2net", "CO2-Net"), ("um", "UM"))  # cbp.arch and row name; presets demo-ARCH


def run_demo(
    out_dir,
    *,
    quick: bool = False,
    seed: int = 0,
    device=None,
    console=None,
    progress: bool = True,
    table6: bool = False,
) -> DemoReport:
    """Warm-up, raw VLP, only-F, only-B and alternate on the synthetic data; mAP and Table-3 rows.

    ``table6``: also the paper's Table 6, each architecture of :data:`TABLE6` as the CBP branch
    (preset ``demo-ARCH``) after its warm-up and after alternate training.
    """
    from wtalkit.config import load_config
    from wtalkit.localize.evaluate import evaluate_run
    from wtalkit.train.alternate import train_alternate
    from wtalkit.train.pseudolabel import branch_scores, pseudo_labels
    from wtalkit.train.warmup import train_warmup

    if seed < 0:
        raise WtalError(f"--seed must be >= 0, got {seed}")
    t0 = time.perf_counter()
    out = prepare_demo_folder(out_dir)
    clip_path, data = build_demo_data(out, quick, seed, console)
    sets = [f"vlp.clip_model={clip_path}", f"train.seed={seed}"] + ([f"train.device={device}"] if device else [])
    if quick:
        sets += ["train.warmup_epochs=15", "train.rounds=1", "train.b_epochs=2", "train.f_epochs=2"]
    cfg = load_config("demo", sets)
    report = DemoReport()
    test = cfg.data.test_subset

    def add(name, res):
        report.rows.append(DemoRow(name, [float(t) for t in res.tiou], [float(m) for m in res.mAP]))

    def say(text):
        if console:
            console.rule(text)

    steps = 5 + (len(TABLE6) if table6 else 0)
    say(f"1/{steps} warm-up: CBP branch, MIL on video labels")
    run = out / "run"
    warm = train_warmup(data, run, cfg, overwrite=True, console=console, progress=progress)
    add("CBP warm-up only", evaluate_run(warm, data, "cbp", device=cfg.train.device))
    say(f"2/{steps} raw VLP: zero-shot CLIP, plain prompt, no training")
    add(
        "raw VLP zero-shot",
        evaluate_scores(branch_scores(warm, data, "raw-vlp", test, device=cfg.train.device, cfg=cfg), data, cfg),
    )
    report.miou_rows.append(("CBP warm-up", pseudo_labels(warm, data, "cbp", test, device=cfg.train.device)[1]))
    report.miou_rows.append(
        ("raw VLP (zero-shot)", pseudo_labels(warm, data, "raw-vlp", test, device=cfg.train.device)[1])
    )
    for i, (schedule, name) in enumerate((("only-f", "only-F"), ("only-b", "only-B (fused avg)")), start=3):
        say(f"{i}/{steps} ablation {name}")
        c = load_config("demo", sets + [f"train.schedule={schedule}"])
        ck = train_alternate(
            data, out / f"run_{schedule}", c, warmup_ckpt=warm, overwrite=True, console=console, progress=progress
        )
        add(name, evaluate_run(ck, data, device=cfg.train.device))
    say(f"5/{steps} alternate B/F training, {cfg.train.rounds} round(s)")
    final = train_alternate(
        data,
        run,
        cfg,
        warmup_ckpt=warm,
        overwrite=True,
        console=console,
        progress=progress,
        evaluate=lambda ck: report.rounds.append((ck.stem, evaluate_run(ck, data, "cbp", device=cfg.train.device))),
    )
    add(f"alternate ({cfg.train.rounds} rounds)", evaluate_run(final, data, "cbp", device=cfg.train.device))
    from wtalkit.models.checkpoint import load_checkpoint

    report.seed = seed
    report.selection = load_checkpoint(final).get("selection")
    report.miou_rows.append(("alternate: CBP", pseudo_labels(final, data, "cbp", test, device=cfg.train.device)[1]))
    report.miou_rows.append(("alternate: VLP", pseudo_labels(final, data, "vlp", test, device=cfg.train.device)[1]))
    if table6:
        for name, res in table6_rows(data, out, sets, console=console, progress=progress, first_step=6, steps=steps):
            add(name, res)
    report.seconds = time.perf_counter() - t0
    return report


def table6_rows(data, out, sets=(), *, console=None, progress: bool = True, first_step: int = 1, steps=None) -> list:
    """The paper's Table 6 on ``data``: each architecture of :data:`TABLE6` as the CBP branch (preset
    ``demo-ARCH`` with ``sets`` on top), scored after its warm-up and after alternate training.

    Returns ``[(row name, DetectionResult)]``; runs go to ``out/run_ARCH``.
    """
    from wtalkit.config import load_config
    from wtalkit.localize.evaluate import evaluate_run
    from wtalkit.train.alternate import train_alternate
    from wtalkit.train.warmup import train_warmup

    rows = []
    for i, (arch, name) in enumerate(TABLE6, start=first_step):
        if console:
            console.rule(
                f"{i}/{steps or len(TABLE6)} Table 6: {name} as the CBP branch, warm-up then alternate training"
            )
        cfg = load_config(f"demo-{arch}", list(sets))
        run = Path(out) / f"run_{arch}"
        warm = train_warmup(data, run, cfg, overwrite=True, console=console, progress=progress)
        rows.append((f"{name} (warm-up)", evaluate_run(warm, data, "cbp", device=cfg.train.device)))
        final = train_alternate(data, run, cfg, warmup_ckpt=warm, overwrite=True, console=console, progress=progress)
        rows.append((f"{name} + alternate", evaluate_run(final, data, "cbp", device=cfg.train.device)))
    return rows


def _reports(report) -> list:
    return list(report) if isinstance(report, (list, tuple)) else [report]


def _cell(values) -> str:
    """``12.3`` for one value; ``12.3 ± 1.4`` (mean ± sample standard deviation) for several."""
    import numpy as np

    v = 100 * np.asarray(values, dtype=np.float64)
    if len(v) == 1:
        return f"{v[0]:.1f}"
    return f"{v.mean():.1f} ± {v.std(ddof=1):.1f}"


def _spread_title(title: str, reports: list) -> str:
    if len(reports) == 1:
        return title
    return f"{title}; mean ± std over seeds {', '.join(str(r.seed) for r in reports)}"


def rounds_table(report):
    """mAP of the CBP branch after warm-up and after each alternate round (one report or a list: mean ± std)."""
    from rich.table import Table

    from wtalkit.eval.report import average_columns

    reports = _reports(report)
    title = _spread_title("alternate training, CBP branch after each round: mAP (%)", reports)
    table = Table(title=title, title_justify="left")
    table.add_column("checkpoint", style="bold")
    first = reports[0].rows[0]
    labels = [label for label, _ in average_columns(first.tiou, first.mAP)]
    for label in labels:
        table.add_column(f"avg {label}", justify="right")

    def cells(results):
        return [_cell([average_columns(r.tiou, r.mAP)[j][1] for r in results]) for j in range(len(labels))]

    table.add_row("warm-up", *cells([r.rows[0] for r in reports]))
    for k, (name, _) in enumerate(reports[0].rounds):
        table.add_row(name, *cells([r.rounds[k][1] for r in reports]))
    return table


def demo_table(report):
    from rich.table import Table

    from wtalkit.eval.report import average_columns

    reports = _reports(report)
    tious = reports[0].rows[0].tiou
    title = _spread_title("wtalkit demo: mAP (%) on synthetic THUMOS14-structured data", reports)
    table = Table(title=title, title_justify="left")
    table.add_column("model", style="bold")
    for t in tious:
        table.add_column(f"@{t:g}", justify="right")
    for label, _ in average_columns(tious, [0.0] * len(tious)):
        table.add_column(f"avg {label}", justify="right", style="cyan")
    for i, row in enumerate(reports[0].rows):
        same = [r.rows[i] for r in reports]
        n_avg = len(average_columns(row.tiou, row.mAP))
        at = [_cell([x.mAP[j] for x in same]) for j in range(len(row.tiou))]
        avgs = [_cell([average_columns(x.tiou, x.mAP)[j][1] for x in same]) for j in range(n_avg)]
        table.add_row(row.name, *at, *avgs)
    return table


def miou_table(report):
    from rich.table import Table

    reports = _reports(report)
    title = _spread_title("pseudo-label quality (paper's Table 3), class-agnostic frame labelling", reports)
    table = Table(title=title, title_justify="left")
    for col in ("pseudo-labels from", "FG mIoU (%)", "BG mIoU (%)", "mean (%)"):
        table.add_column(col, justify="left" if col.startswith("pseudo") else "right")
    for i, (name, _) in enumerate(reports[0].miou_rows):
        same = [r.miou_rows[i][1] for r in reports]
        table.add_row(name, *[_cell([m[k] for m in same]) for k in ("fg_iou", "bg_iou", "mean")])
    return table


def selection_line(report) -> str | None:
    """How ``alternate.pt``'s round was chosen (only when a rule other than "last round" chose it)."""
    reports = [r for r in _reports(report) if r.selection and r.selection.get("rule") != "last"]
    if not reports:
        return None
    parts = []
    for r in reports:
        crit = ", ".join(f"{float(a['score']):.3f}" for a in r.selection["agreement"].values())
        parts.append(f"seed {r.seed}: round {r.selection['round']} (criterion per round {crit})")
    rule = reports[0].selection["rule"]
    return f"alternate row: round chosen by '{rule}' on the training split (no test labels): " + "; ".join(parts)
