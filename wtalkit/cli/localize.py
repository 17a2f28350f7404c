"""``wtalkit localize``: detections for a dataset split, feature files or videos."""

from __future__ import annotations

import json
import sys

import click

from wtalkit.cli.common import device_option, err_console, out_console


@click.command()
@click.argument("inputs", nargs=-1, type=click.Path())
@click.argument("run", type=click.Path())
@click.option(
    "--dataset", type=click.Path(file_okay=False), help="Dataset folder (default: the one the run was trained on)."
)
@click.option("--subset", default=None, help="Split to localize (default: the config's test subset).")
@click.option(
    "--branch",
    type=click.Choice(["cbp", "vlp", "fused"]),
    default=None,
    help="Branch to read scores from [default: the run's own: CBP (the paper's), fused for an only-B run].",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override inference settings, e.g. --set infer.theta_loc=[0.3,0.45].",
)
@click.option("--json", "as_json", is_flag=True, help="Print ActivityNet results JSON on stdout (nothing else).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the results JSON to this file.")
@click.option("--overwrite", is_flag=True, help="Replace an existing -o file.")
@device_option
@click.option(
    "--clip-weights",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="PATH",
    help="Videos: local CLIP checkpoint for the run's CLIP stream (instead of its recorded model).",
)
@click.option(
    "--cbp-weights",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="PATH",
    help="Videos: local state dict for the run's torchvision video backbone (instead of torchvision's cache).",
)
@click.option(
    "--plot",
    "plot",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE.png",
    help="Draw the first video's frame scores (GT, CBP, VLP, final; the paper's Figure 3).",
)
@click.option(
    "--plot-dir",
    type=click.Path(file_okay=False),
    default=None,
    metavar="DIR",
    help="Draw one figure per video, DIR/VIDEO.png.",
)
@click.option(
    "--plot-label",
    default=None,
    metavar="CLASS",
    help="Class shown in the figures (default: each video's top detection).",
)
def localize(
    inputs,
    run,
    dataset,
    subset,
    branch,
    overrides,
    as_json,
    output,
    overwrite,
    device,
    clip_weights,
    cbp_weights,
    plot,
    plot_dir,
    plot_label,
):
    """Localize actions with the model in RUN (a run folder or checkpoint).

    INPUTS are feature files (.npy of the run's first stream; other streams are
    read from ../STREAM/ beside them) or video files (features are extracted
    with the backbones the run was trained on); without INPUTS the whole
    SUBSET of the dataset is localized. Segments are in seconds.
    """
    from wtalkit.localize.inputs import localize_inputs

    results, figures = localize_inputs(
        run,
        inputs,
        dataset=dataset,
        subset=subset,
        branch=branch,
        overrides=overrides,
        device=device,
        clip_weights=clip_weights,
        cbp_weights=cbp_weights,
        plot=plot,
        plot_dir=plot_dir,
        plot_label=plot_label,
        output=output,
        overwrite=overwrite,
        console=err_console,
    )
    for p in figures:
        err_console.print(f"figure written: {p}")
    if as_json:
        sys.stdout.write(json.dumps(results) + "\n")
    else:
        out_console().print(results_table(results))


def results_table(results: dict, max_rows: int = 10):
    """A Rich table of the top detections per video."""
    from rich.table import Table

    table = Table(title="detections (top per video)")
    for col in ("video", "label", "start (s)", "end (s)", "score"):
        table.add_column(col, justify="right" if col in ("start (s)", "end (s)", "score") else "left")
    for video, dets in results["results"].items():
        for d in dets[:max_rows]:
            table.add_row(video, d["label"], f"{d['segment'][0]:.1f}", f"{d['segment'][1]:.1f}", f"{d['score']:.3f}")
        if len(dets) > max_rows:
            table.add_row(video, f"... {len(dets) - max_rows} more", "", "", "")
    return table
