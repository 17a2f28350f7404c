"""Training commands: ``warmup`` (and, with the method, ``alternate``)."""

from __future__ import annotations

import click

from wtalkit.cli.common import config_options, err_console, print_config


@click.command()
@click.argument("dataset", type=click.Path(file_okay=False))
@click.option("-o", "--run", "run_dir", required=True, type=click.Path(file_okay=False), help="Run folder to write.")
@config_options
@click.option("--overwrite", is_flag=True, help="Train again even if RUN already holds a finished warm-up.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def warmup(dataset, run_dir, config_source, overwrite, quiet, overrides):
    """Warm up the CBP branch on DATASET with video-level labels only (MIL).

    Resumable: re-running the same command after an interruption continues
    from the last finished epoch.
    """
    from wtalkit.config import load_config
    from wtalkit.train.warmup import train_warmup

    cfg = load_config(config_source or "thumos14", overrides)
    print_config(cfg)
    path = train_warmup(dataset, run_dir, cfg, overwrite=overwrite, console=err_console, progress=not quiet)
    err_console.print(f"[green]warm-up checkpoint:[/] {path}")


@click.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False))
@click.option("--dataset", type=click.Path(file_okay=False), help="Dataset folder (default: the one the warm-up used).")
@click.option("--from", "warm", type=click.Path(dir_okay=False), help="Warm-up checkpoint (default RUN/warmup.pt).")
@click.option("--rounds", type=int, help="Rounds of B step + F step (default: the config's train.rounds).")
@click.option("--schedule", type=click.Choice(["alternate", "only-b", "only-f"]), help="Ablation schedule (paper Table 4).")
@click.option("--fuse", type=click.Choice(["avg", "weighted"]), help="only-b: how CBP and VLP scores are fused.")
@click.option("--no-kd", is_flag=True, help="Ablation: drop the KL distillation term.")
@click.option("--no-fb", is_flag=True, help="Ablation: drop the foreground-background contrastive term.")
@config_options
@click.option("--overwrite", is_flag=True, help="Train again even if RUN already holds alternate.pt.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def alternate(run_dir, dataset, warm, rounds, schedule, fuse, no_kd, no_fb, config_source, overwrite, quiet, overrides):
    """Alternate B/F training of RUN, starting from its warm-up.

    Without --config the warm-up's config is used. After each round, when the
    test split has ground truth, its mAP is printed. Resumable: re-running the
    same command continues an interrupted run.
    """
    from pathlib import Path

    from wtalkit.config import load_config
    from wtalkit.errors import WtalError
    from wtalkit.train.alternate import train_alternate
    from wtalkit.train.run import checkpoint_config, load_checkpoint

    warm_path = Path(warm) if warm else Path(run_dir) / "warmup.pt"
    if not warm_path.exists():
        raise WtalError(f"no warm-up checkpoint at {warm_path}; run 'wtalkit warmup DATASET -o {run_dir}' first")
    warm_ckpt = load_checkpoint(warm_path)
    extra = list(overrides)
    if rounds is not None:
        extra.append(f"train.rounds={rounds}")
    if schedule:
        extra.append(f"train.schedule={schedule}")
    if fuse:
        extra.append(f"train.fuse={fuse}")
    if no_kd:
        extra.append("loss.use_kd=false")
    if no_fb:
        extra.append("loss.use_fb=false")
    base = None if config_source else checkpoint_config(warm_ckpt).to_dict()
    cfg = load_config(config_source, extra, base=base)
    dataset = dataset or warm_ckpt.get("dataset")
    print_config(cfg)
    path = train_alternate(dataset, run_dir, cfg, warmup_ckpt=warm_path, overwrite=overwrite, console=err_console,
                           progress=not quiet, evaluate=round_evaluator(dataset, cfg))
    err_console.print(f"[green]alternate checkpoint:[/] {path}")


def round_evaluator(dataset, cfg):
    """After each round: the test split's mAP as a table row (None when it has no ground truth)."""
    from pathlib import Path

    from wtalkit.errors import WtalError

    def evaluate(ckpt_path):
        from wtalkit.demo import evaluate_run
        from wtalkit.eval.report import average_columns

        try:
            res = evaluate_run(ckpt_path, Path(dataset))
        except WtalError:
            return None
        avgs = average_columns(res.tiou, res.mAP)
        cells = " ".join(f"@{t:g} {100 * m:.1f}" for t, m in zip(res.tiou, res.mAP))
        err_console.print(f"  mAP (%) after {Path(ckpt_path).stem}: {cells} | " +
                          " ".join(f"avg {k} {100 * v:.1f}" for k, v in avgs))
        return {"mAP": [float(m) for m in res.mAP], "tiou": [float(t) for t in res.tiou]}

    return evaluate


@click.command()
@click.argument("run", type=click.Path())
@click.option("--branch", type=click.Choice(["cbp", "vlp", "raw-vlp"]), default="cbp", show_default=True,
              help="raw-vlp: zero-shot CLIP with plain prompts, no training.")
@click.option("--split", "subset", default=None, help="Subset (default: the config's training subset).")
@click.option("--dataset", type=click.Path(file_okay=False), help="Dataset folder (default: the run's).")
@click.option("-o", "--output", type=click.Path(file_okay=False), help="Folder for VIDEO.npy int8 [T, C] + meta.json.")
@click.option("--template", "templates", multiple=True, help="raw-vlp prompt template(s) with {} for the class.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override the run's config, e.g. --set pseudo.delta_h=0.4 (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON on stdout.")
def pseudolabel(run, branch, subset, dataset, output, templates, overrides, as_json):
    """Confident ternary pseudo-labels (1 / 0 / -1 uncertain) of a branch, and their Table-3 mIoUs.

    Written as one int8 VIDEO.npy [T, C] per video plus meta.json. When the
    split has ground-truth segments, prints foreground, background and mean
    IoU of the class-agnostic frame labelling (uncertain frames count as
    neither).
    """
    import json as _json

    from wtalkit.config import load_config
    from wtalkit.pseudolabel import pseudo_labels
    from wtalkit.train.run import checkpoint_config, load_checkpoint, resolve_checkpoint

    ckpt = load_checkpoint(resolve_checkpoint(run))
    cfg = load_config(None, overrides, base=checkpoint_config(ckpt).to_dict())
    dataset = dataset or ckpt.get("dataset")
    subset = subset or cfg.data.train_subset
    labels, metrics = pseudo_labels(run, dataset, branch, subset, output, templates or None, cfg=cfg)
    if as_json:
        click.echo(_json.dumps({"videos": len(labels), "metrics": metrics}))
        return
    err_console.print(f"pseudo-labels for {len(labels)} videos of '{subset}'" + (f" written to {output}" if output else ""))
    if metrics is None:
        err_console.print("no ground-truth segments in this split: no mIoU")
        return
    from rich.table import Table

    table = Table(title=f"pseudo-label quality ({branch}, {subset})", title_justify="left")
    for col in ("FG mIoU (%)", "BG mIoU (%)", "mean (%)", "uncertain frames (%)"):
        table.add_column(col, justify="right")
    table.add_row(*(f"{100 * metrics[k]:.1f}" for k in ("fg_iou", "bg_iou", "mean", "uncertain")))
    from wtalkit.cli.common import out_console

    out_console().print(table)


def register(cli):
    cli.add_command(warmup)
    cli.add_command(alternate)
    cli.add_command(pseudolabel)
