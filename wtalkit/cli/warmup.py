"""``wtalkit warmup``: train the CBP branch with video-level labels (MIL)."""

from __future__ import annotations

import click

from wtalkit.cli.common import config_options, device_option, err_console, precision_option, print_config


@click.command()
@click.argument("dataset", type=click.Path(file_okay=False))
@click.option("-o", "--run", "run_dir", required=True, type=click.Path(file_okay=False), help="Run folder to write.")
@config_options
@click.option("--overwrite", is_flag=True, help="Train again even if RUN already holds a finished warm-up.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@device_option
@precision_option
def warmup(dataset, run_dir, config_source, overwrite, quiet, overrides, device, precision):
    """Warm up the CBP branch on DATASET with video-level labels only (MIL).

    Resumable: re-running the same command after an interruption continues
    from the last finished epoch.
    """
    from wtalkit.config import load_config
    from wtalkit.train.warmup import train_warmup

    cfg = load_config(
        config_source or "thumos14",
        [
            *overrides,
            *([f"train.device={device}"] if device else []),
            *([f"train.precision={precision}"] if precision else []),
        ],
    )
    print_config(cfg)
    path = train_warmup(dataset, run_dir, cfg, overwrite=overwrite, console=err_console, progress=not quiet)
    err_console.print(f"[green]warm-up checkpoint:[/] {path}")
