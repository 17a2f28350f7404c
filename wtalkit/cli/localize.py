"""``wtalkit localize``: detections for a dataset split, feature files or videos."""

from __future__ import annotations

import json
import sys

import click

from wtalkit.cli.common import err_console, out_console

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv"}


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
    default="cbp",
    show_default=True,
    help="Branch to read scores from; the paper infers with CBP.",
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
@click.option("--device", default="cpu", show_default=True)
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
    from pathlib import Path

    from wtalkit import io as wio
    from wtalkit.config import load_config
    from wtalkit.errors import WtalError
    from wtalkit.localize.plot import Plotter
    from wtalkit.localize.predict import Predictor, localize_dataset, localize_feature_files
    from wtalkit.models.checkpoint import checkpoint_config, load_checkpoint, resolve_checkpoint

    ckpt_path = resolve_checkpoint(run)
    cfg = load_config(None, overrides, base=checkpoint_config(load_checkpoint(ckpt_path)).to_dict())
    for p in inputs:
        if not Path(p).is_file():
            raise WtalError(f"input not found: {p}")
    if output:
        check_output(output)
    predictor = Predictor(ckpt_path, branch=branch, device=device, cfg=cfg)
    plotter = Plotter(predictor, plot, plot_dir, plot_label) if (plot or plot_dir) else None
    videos = [p for p in inputs if Path(p).suffix.lower() in VIDEO_SUFFIXES]
    feats = [p for p in inputs if p not in videos]
    if (clip_weights or cbp_weights) and not videos:
        raise WtalError("--clip-weights/--cbp-weights only apply to video inputs")
    if inputs:
        results = {"results": {}}
        if feats:
            results["results"].update(localize_feature_files(predictor, feats)["results"])
            if plotter:
                plotter.draw_feature_files(feats)
        if videos:
            from wtalkit.localize.video import is_extractable, localize_videos, weights_for

            # figures also want the other branch's stream, when wtalkit can extract it
            streams = tuple(predictor.streams) + tuple(
                s
                for s in (plotter.streams if plotter else ())
                if s not in predictor.streams and is_extractable(predictor.metas[s])
            )
            weights = weights_for(predictor.metas, streams, clip_weights, cbp_weights)
            res = localize_videos(
                predictor,
                videos,
                device=device,
                weights=weights,
                console=err_console,
                streams=streams,
                on_video=plotter.on_video if plotter else None,
            )
            clash = sorted(set(res["results"]) & set(results["results"]))
            if clash:
                raise WtalError(f"'{clash[0]}' is both a feature file and a video; results are keyed by name")
            results["results"].update(res["results"])
    else:
        ds = dataset or predictor.ckpt.get("dataset")
        if not ds:
            raise WtalError("no --dataset given and the run does not record one")
        results = localize_dataset(predictor, ds, subset or cfg.data.test_subset)
        if plotter:
            plotter.draw_dataset(ds, list(results["results"]))
    if plotter:
        for p in plotter.written:
            err_console.print(f"figure written: {p}")
    if output:
        wio.write_json(output, results)
    if as_json:
        sys.stdout.write(json.dumps(results) + "\n")
    else:
        out_console().print(results_table(results))


def check_output(path) -> None:
    """Fail before any work when ``-o`` cannot be written (a folder, or under a file)."""
    from pathlib import Path

    from wtalkit.errors import WtalError

    p = Path(path)
    if p.is_dir():
        raise WtalError(f"-o: {p} is a folder")
    anc = p.parent.absolute()
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise WtalError(f"-o: cannot create folder {p.parent} ({anc} is a file)")


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
