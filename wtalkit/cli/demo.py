"""``wtalkit demo``: the whole pipeline on built-in synthetic data."""

from __future__ import annotations

import click

from wtalkit.cli.common import device_option, err_console, out_console


@click.command()
@click.option(
    "-o",
    "--output",
    default="wtalkit-demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the demo's data and runs (only a previous demo folder is reused).",
)
@click.option("--quick", is_flag=True, help="Fewer videos and epochs (a smoke test, about a minute).")
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--seeds",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Run seeds SEED .. SEED+N-1 (data and training) and print mean ± std over them (in OUTPUT/seed_K).",
)
@click.option(
    "--table6",
    is_flag=True,
    help="Also CO2-Net and UM as the CBP branch, each warmed up and then alternate-trained (the paper's "
    "Table 6; presets demo-co2net, demo-um). Adds about 10 minutes on a 2-core CPU.",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@device_option
def demo(output, quick, seed, seeds, table6, quiet, device):
    """Generate a synthetic THUMOS14-structured dataset and run the whole pipeline.

    The data are synthetic (see README): real THUMOS14 video lengths and action
    layouts, with an incomplete CBP stream and an over-complete VLP stream.
    Ends by printing the mAP table.
    """
    from wtalkit.demo import demo_table, miou_table, rounds_table, run_demo_seeds, selection_line

    reports = run_demo_seeds(
        output,
        seeds=seeds,
        seed=seed,
        quick=quick,
        table6=table6,
        device=device,
        console=err_console,
        progress=not quiet,
    )
    console = out_console()
    console.print(demo_table(reports))
    if reports[0].rounds:
        console.print(rounds_table(reports))
    if reports[0].miou_rows:
        console.print(miou_table(reports))
    line = selection_line(reports)
    if line:
        console.print(line)
    minutes = sum(r.seconds for r in reports) / 60
    console.print(f"demo finished in {minutes:.1f} min; outputs in {output}/")
