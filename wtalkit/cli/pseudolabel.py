"""``wtalkit pseudolabel``: confident ternary pseudo-labels of a branch and their Table-3 mIoUs."""

from __future__ import annotations

import click

from wtalkit.cli.common import device_option, err_console


@click.command()
@click.argument("run", type=click.Path())
@click.option(
    "--branch",
    type=click.Choice(["cbp", "vlp", "raw-vlp"]),
    default="cbp",
    show_default=True,
    help="raw-vlp: zero-shot CLIP with plain prompts, no training.",
)
@click.option("--split", "subset", default=None, help="Subset (default: the config's training subset).")
@click.option("--dataset", type=click.Path(file_okay=False), help="Dataset folder (default: the run's).")
@click.option("-o", "--output", type=click.Path(file_okay=False), help="Folder for VIDEO.npy int8 [T, C] + meta.json.")
@click.option("--template", "templates", multiple=True, help="raw-vlp prompt template(s) with {} for the class.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override the run's config, e.g. --set pseudo.delta_h=0.4 (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON on stdout.")
@click.option("--overwrite", is_flag=True, help="Replace the pseudo-labels already in -o.")
@device_option
def pseudolabel(run, branch, subset, dataset, output, templates, overrides, as_json, overwrite, device):
    """Confident ternary pseudo-labels (1 / 0 / -1 uncertain) of a branch, and their Table-3 mIoUs.

    Written as one int8 VIDEO.npy [T, C] per video plus meta.json. When the
    split has ground-truth segments, prints foreground, background and mean
    IoU of the class-agnostic frame labelling (uncertain frames count as
    neither).
    """
    import json as _json

    from wtalkit.train.pseudolabel import pseudolabel_run

    labels, metrics, subset = pseudolabel_run(
        run,
        branch=branch,
        dataset=dataset,
        subset=subset,
        out_dir=output,
        templates=templates or None,
        overrides=overrides,
        device=device,
        overwrite=overwrite,
    )
    if as_json:
        click.echo(_json.dumps({"videos": len(labels), "metrics": metrics}))
        return
    err_console.print(
        f"pseudo-labels for {len(labels)} videos of '{subset}'" + (f" written to {output}" if output else "")
    )
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
