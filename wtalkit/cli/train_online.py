"""``wtalkit train-online``: train the OV-OAD online detector from a dataset's captions."""

from __future__ import annotations

import click

from wtalkit.cli.common import device_option


@click.command("train-online")
@click.argument("dataset", type=click.Path(file_okay=False, path_type=str))
@click.option(
    "--output",
    "-o",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Run folder: config.yaml, checkpoint.pt, history.json.",
)
@click.option(
    "--clip",
    "clip_spec",
    default="ViT-B/16",
    show_default=True,
    metavar="NAME_OR_PATH",
    help="CLIP model whose (frozen) text encoder embeds the captions: a clip-anytorch name or a file. "
    "It must be the model that produced the dataset's vlp features.",
)
@click.option(
    "--config",
    "config_source",
    default=None,
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="YAML config with 'model' and 'train' sections (defaults: the paper's settings).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value, e.g. --set train.epochs=20 (repeatable).",
)
@click.option("--seed", type=int, default=None, help="Random seed (same as --set train.seed=N).")
@click.option("--overwrite", is_flag=True, help="Replace an existing checkpoint in the run folder.")
@click.option("--quiet", is_flag=True, help="No progress bar or per-epoch lines.")
@device_option
def train_online(dataset, out_dir, clip_spec, config_source, overrides, seed, overwrite, quiet, device):
    """Train OV-OAD on DATASET (annotations.json + features/vlp) from text only.

    Captions are the class tags of the current frame's segment in prompt
    templates (train.templates); the model learns video-text alignment and a
    background mask, never a fixed classifier, so the checkpoint scores any
    vocabulary: ``wtalkit online --model ovoad --checkpoint RUN/checkpoint.pt``.
    Resumable: re-running the same command continues an interrupted run.
    Config: --config FILE (YAML with 'model' and 'train' sections) and
    --set key=value, e.g. --set train.epochs=20 --set model.width=512.
    """
    from rich.table import Table

    from wtalkit.cli.common import err_console
    from wtalkit.train.ovoad import load_run_config, train_ovoad

    extra = ([f"train.seed={seed}"] if seed is not None else []) + ([f"train.device={device}"] if device else [])
    cfg = load_run_config(config_source, list(overrides) + extra)
    summary = train_ovoad(
        dataset,
        out_dir,
        clip_spec,
        cfg,
        overwrite=overwrite,
        console=None if quiet else err_console,
        progress=not quiet,
    )
    if not quiet:
        t = Table(title="train-online", show_header=False)
        f = summary["final"]
        for k, v in [
            ("checkpoint", summary["checkpoint"]),
            ("classes (seen)", summary["classes"]),
            ("frames (4 fps)", summary["frames"]),
            ("steps", summary["steps"]),
            ("final loss", f"{f['loss']:.4f} (vtc {f['vtc']:.4f}, frame {f['frame']:.4f}, mask {f['mask']:.4f})"),
            ("time", f"{summary['seconds']:.1f}s"),
        ]:
            t.add_row(k, str(v))
        err_console.print(t)
