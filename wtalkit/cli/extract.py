"""``wtalkit extract``: raw videos -> ``vlp`` (CLIP) and ``cbp`` (Kinetics video model or I3D) feature streams."""

from __future__ import annotations

from pathlib import Path

import click

from wtalkit.cli.common import device_option, err_console
from wtalkit.errors import WtalError


def _print_summary(summary) -> None:
    from rich.table import Table

    rows = summary.results if len(summary.results) <= 50 else summary.failed
    if rows:
        table = Table(title="extraction summary" if rows is summary.results else "failed videos", title_justify="left")
        for col, kw in (
            ("video", {}),
            ("status", {}),
            ("snippets", {"justify": "right"}),
            ("seconds", {"justify": "right"}),
            ("problem", {"overflow": "fold"}),
        ):
            table.add_column(col, **kw)
        style = {"done": "green", "skipped": "dim", "failed": "red"}
        for r in rows:
            table.add_row(
                r.name,
                f"[{style[r.status]}]{r.status}[/]",
                str(r.snippets) if r.status == "done" else "",
                f"{r.seconds:.1f}" if r.status != "skipped" else "",
                r.error or "",
            )
        err_console.print(table)
    prec = ", ".join(f"{s}: {summary.streams[s]} ({p})" for s, p in summary.precision.items())
    err_console.print(
        f"{len(summary.done)} extracted, {len(summary.skipped)} already done, "
        f"{len(summary.failed)} failed in {summary.elapsed:.1f} s "
        f"({summary.frames_per_second:.1f} video frames/s); {prec}"
    )


@click.command("extract")
@click.argument("videos", nargs=-1, required=True, metavar="VIDEOS...")
@click.option(
    "-o",
    "--output",
    "out_dir",
    required=True,
    metavar="DATASET",
    help="Dataset folder: features/STREAM/*.npy and annotations.json are written there.",
)
@click.option(
    "--streams",
    default="vlp,cbp",
    show_default=True,
    metavar="NAMES",
    help="Comma-separated streams to extract: vlp (CLIP frames), cbp (video classifier).",
)
@click.option(
    "--clip",
    "clip_model",
    default=None,
    metavar="MODEL_OR_PATH",
    help="CLIP model name (clip-anytorch cache) or checkpoint file [default: ViT-B/16, or the dataset's meta.json].",
)
@click.option(
    "--vlp-frames",
    type=int,
    default=None,
    metavar="K",
    help="vlp: mean of K evenly spaced frames per snippet instead of the centre frame.",
)
@click.option(
    "--cbp-backbone",
    default=None,
    metavar="NAME",
    help="Kinetics-400 model: r2plus1d_18 (default), r3d_18, mc3_18, s3d (torchvision), "
    "or i3d (two-stream I3D, RGB + optical flow: the public WTAL features).",
)
@click.option(
    "--cbp-weights",
    default=None,
    metavar="PATH",
    help="Local state-dict file for the cbp backbone (default: torchvision's cache); "
    "for i3d: rgb=rgb_imagenet.pt,flow=flow_imagenet.pt (default: found by name in ~/.cache/wtalkit/weights).",
)
@click.option(
    "--flow",
    "flow",
    default=None,
    metavar="METHOD",
    help="i3d optical flow: tvl1 (default; OpenCV contrib, CPU, as the public features), "
    "raft (= raft_large) or raft_small (torchvision; fast on a GPU).",
)
@click.option(
    "--flow-weights",
    default=None,
    metavar="PATH",
    help="Local RAFT state dict for --flow raft/raft_small (default: torchvision's cache).",
)
@click.option("--fps", type=float, default=None, help="Snippet grid frame rate [default: 25 or meta.json].")
@click.option("--snippet-length", type=int, default=None, help="Frames per snippet [default: 16 or meta.json].")
@click.option("--snippet-stride", type=int, default=None, help="Frames between snippets [default: 16 or meta.json].")
@click.option("--subset", default="test", show_default=True, help="Subset of the videos added to annotations.json.")
@click.option("--overwrite", is_flag=True, help="Re-extract videos that already have all their features.")
@click.option(
    "--workers", type=int, default=1, show_default=True, help="Videos processed at once (threads sharing the models)."
)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="auto",
    default=None,
    metavar="auto|ADDRESS",
    help="Extract on a Ray cluster, one task per video (pip install 'wtalkit[ray]'): auto = the cluster started "
    "on this machine with `ray start`, else a one-machine Ray for this run; or the head node's HOST:PORT.",
)
@click.option(
    "--ray-cpus",
    type=float,
    default=None,
    metavar="N",
    help="With --ray: CPUs each video task reserves (its torch threads) [default: 2].",
)
@click.option(
    "--ray-gpus",
    type=float,
    default=None,
    metavar="F",
    help="With --ray and a GPU device: the share of a GPU each video task reserves [default: 1].",
)
@device_option
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
    default="auto",
    show_default=True,
    help="auto: bf16 where supported, checked against fp32 on the first batch.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
def extract(
    videos,
    out_dir,
    streams,
    clip_model,
    vlp_frames,
    cbp_backbone,
    cbp_weights,
    flow,
    flow_weights,
    fps,
    snippet_length,
    snippet_stride,
    subset,
    overwrite,
    workers,
    ray_address,
    ray_cpus,
    ray_gpus,
    device,
    precision,
    as_json,
):
    """Extract feature streams from raw VIDEOS (files, folders or .txt lists) into DATASET.

    Videos are decoded on the snippet grid (25 fps, 16-frame snippets by
    default; other frame rates are resampled by time); the trailing partial
    snippet is kept, padded with the last frame. Re-running skips videos
    already done; undecodable videos are listed and skipped (exit 1).
    With --ray, each video is a Ray task on the cluster and this process
    writes every file (--workers does not apply).
    """
    import json

    from wtalkit.extract.dataset import extract_dataset, resolve_streams
    from wtalkit.extract.progress import RichExtractProgress

    specs = resolve_streams(
        out_dir,
        streams.split(","),
        clip=clip_model,
        clip_frames=vlp_frames,
        cbp_backbone=cbp_backbone,
        cbp_weights=cbp_weights,
        fps=fps,
        snippet_length=snippet_length,
        snippet_stride=snippet_stride,
        flow=flow,
        flow_weights=flow_weights,
    )
    summary = extract_dataset(
        list(videos),
        out_dir,
        specs,
        overwrite=overwrite,
        workers=workers,
        device=device or "auto",
        precision=precision,
        subset=subset,
        progress=RichExtractProgress(err_console),
        ray=ray_address,
        ray_cpus=ray_cpus,
        ray_gpus=ray_gpus,
    )
    _print_summary(summary)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=1))
    if summary.failed:
        others = len(summary.results) - len(summary.failed)
        rest = (
            f"the other {others} are in {out_dir}"
            if others
            else "nothing was extracted" + ("" if Path(out_dir).exists() else f" and {out_dir} was not created")
        )
        raise WtalError(f"{len(summary.failed)} of {len(summary.results)} videos failed (see the table above); {rest}")
