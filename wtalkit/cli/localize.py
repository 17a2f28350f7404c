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
@click.option("--dataset", type=click.Path(file_okay=False), help="Dataset folder (default: the one the run was trained on).")
@click.option("--subset", default=None, help="Split to localize (default: the config's test subset).")
@click.option("--branch", type=click.Choice(["cbp", "vlp", "fused"]), default="cbp", show_default=True,
              help="Branch to read scores from; the paper infers with CBP.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override inference settings, e.g. --set infer.theta_loc=[0.3,0.45].")
@click.option("--json", "as_json", is_flag=True, help="Print ActivityNet results JSON on stdout (nothing else).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the results JSON to this file.")
@click.option("--device", default="cpu", show_default=True)
def localize(inputs, run, dataset, subset, branch, overrides, as_json, output, device):
    """Localize actions with the model in RUN (a run folder or checkpoint).

    INPUTS are feature files (.npy of the run's first stream; other streams are
    read from ../STREAM/ beside them) or video files; without INPUTS the whole
    SUBSET of the dataset is localized.
    """
    from pathlib import Path

    from wtalkit import io as wio
    from wtalkit.config import load_config
    from wtalkit.errors import WtalError
    from wtalkit.infer import Predictor, localize_dataset, localize_feature_files
    from wtalkit.train.run import checkpoint_config, load_checkpoint, resolve_checkpoint

    ckpt_path = resolve_checkpoint(run)
    cfg = load_config(None, overrides, base=checkpoint_config(load_checkpoint(ckpt_path)).to_dict())
    predictor = Predictor(ckpt_path, branch=branch, device=device, cfg=cfg)
    videos = [p for p in inputs if Path(p).suffix.lower() in VIDEO_SUFFIXES]
    feats = [p for p in inputs if p not in videos]
    for p in inputs:
        if not Path(p).is_file():
            raise WtalError(f"input not found: {p}")
    if inputs:
        results = {"results": {}}
        if feats:
            results["results"].update(localize_feature_files(predictor, feats)["results"])
        if videos:
            raise WtalError("video inputs need 'wtalkit extract' first (features: pass the .npy files)")
    else:
        ds = dataset or predictor.ckpt.get("dataset")
        if not ds:
            raise WtalError("no --dataset given and the run does not record one")
        results = localize_dataset(predictor, ds, subset or cfg.data.test_subset)
    if output:
        wio.write_json(output, results)
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


def register(cli):
    cli.add_command(localize)
