"""``wtalkit alternate``: B and F steps from a warmed-up run."""

from __future__ import annotations

import click

from wtalkit.cli.common import config_options, device_option, err_console, precision_option, print_config


@click.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False))
@click.option("--dataset", type=click.Path(file_okay=False), help="Dataset folder (default: the one the warm-up used).")
@click.option("--from", "warm", type=click.Path(dir_okay=False), help="Warm-up checkpoint (default RUN/warmup.pt).")
@click.option("--rounds", type=int, help="Rounds of B step + F step (default: the config's train.rounds).")
@click.option(
    "--schedule", type=click.Choice(["alternate", "only-b", "only-f"]), help="Ablation schedule (paper Table 4)."
)
@click.option("--fuse", type=click.Choice(["avg", "weighted"]), help="only-b: how CBP and VLP scores are fused.")
@click.option("--no-kd", is_flag=True, help="Ablation: drop the KL distillation term.")
@click.option("--no-fb", is_flag=True, help="Ablation: drop the foreground-background contrastive term.")
@config_options
@click.option("--overwrite", is_flag=True, help="Train again even if RUN already holds alternate.pt.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@device_option
@precision_option
def alternate(
    run_dir,
    dataset,
    warm,
    rounds,
    schedule,
    fuse,
    no_kd,
    no_fb,
    config_source,
    overwrite,
    quiet,
    overrides,
    device,
    precision,
):
    """Alternate B/F training of RUN, starting from its warm-up.

    Without --config the warm-up's config is used. After each round, when the
    test split has ground truth, its mAP is printed. Resumable: re-running the
    same command continues an interrupted run.
    """
    from wtalkit.train.alternate import alternate_run

    path = alternate_run(
        run_dir,
        dataset=dataset,
        warm=warm,
        config_source=config_source,
        overrides=[*overrides, *([f"train.precision={precision}"] if precision else [])],
        rounds=rounds,
        schedule=schedule,
        fuse=fuse,
        use_kd=not no_kd,
        use_fb=not no_fb,
        device=device,
        overwrite=overwrite,
        console=err_console,
        progress=not quiet,
        on_config=print_config,
        evaluate=print_round_map,
    )
    err_console.print(f"[green]alternate checkpoint:[/] {path}")


def print_round_map(ckpt_path, dataset):
    """After each round: the test split's mAP, printed and logged (None when it has no ground truth)."""
    from pathlib import Path

    from wtalkit.errors import WtalError
    from wtalkit.eval.report import average_columns
    from wtalkit.localize.evaluate import evaluate_run

    try:
        res = evaluate_run(ckpt_path, Path(dataset))
    except WtalError:
        return None
    avgs = average_columns(res.tiou, res.mAP)
    cells = " ".join(f"@{t:g} {100 * m:.1f}" for t, m in zip(res.tiou, res.mAP))
    err_console.print(
        f"  mAP (%) after {Path(ckpt_path).stem}: {cells} | " + " ".join(f"avg {k} {100 * v:.1f}" for k, v in avgs)
    )
    return {"mAP": [float(m) for m in res.mAP], "tiou": [float(t) for t in res.tiou]}
