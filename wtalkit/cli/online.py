"""``wtalkit online``: open-vocabulary online action detection on a video or CLIP feature file."""

from __future__ import annotations

import os
import sys

import click

from wtalkit.cli.common import device_option


@click.command("online")
@click.argument("source", type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--classes",
    default=None,
    metavar="'A, B, ...'",
    help="Comma-separated class names in natural words, e.g. 'high jump, pole vault'.",
)
@click.option("--classes-file", default=None, type=click.Path(dir_okay=False), help="Class names, one per line.")
@click.option(
    "--model",
    default="clip-frame",
    show_default=True,
    type=click.Choice(["clip-frame", "clip-window", "clip-ema", "ovoad"]),
    help="clip-frame: current frame (CLIP-I); clip-window: mean of the last --window frames (CLIP-II); "
    "clip-ema: moving average; ovoad: a trained OV-OAD checkpoint.",
)
@click.option("--window", default=8, show_default=True, type=int, help="Frames averaged by clip-window.")
@click.option("--ema-alpha", default=0.3, show_default=True, type=float, help="Weight of the new frame in clip-ema.")
@click.option("--checkpoint", default=None, type=click.Path(dir_okay=False), help="OV-OAD checkpoint (--model ovoad).")
@click.option(
    "--clip",
    "clip_spec",
    default="ViT-B/16",
    show_default=True,
    metavar="NAME_OR_PATH",
    help="CLIP model: a clip-anytorch name or a checkpoint file.",
)
@click.option(
    "--template",
    "templates",
    multiple=True,
    metavar="TEXT",
    help="Prompt template with '{}' for the class (repeatable; templates are averaged). "
    "Default: 'A photo of action {}.'",
)
@click.option(
    "--background",
    default="background",
    show_default=True,
    help="Background prompt: competes in the softmax, never reported.",
)
@click.option(
    "--fps",
    default=None,
    type=float,
    help="Frames sampled per second of video [default: 4; --model ovoad: the rate it was trained at].",
)
@click.option(
    "--feature-fps",
    default=None,
    type=float,
    help="Feature rows per second, for a .npy file without a meta.json beside it.",
)
@click.option("--video-name", default=None, help="Name written in the output (default: the file stem).")
@click.option(
    "--output",
    "-o",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write the JSON lines to this file (atomically) instead of stdout.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing --output file.")
@click.option("--segments", is_flag=True, help="Emit action segments (closed online) instead of per-frame scores.")
@click.option("--start-threshold", default=0.5, show_default=True, type=float, help="Probability that opens a segment.")
@click.option("--stop-threshold", default=0.3, show_default=True, type=float, help="Probability below which it closes.")
@click.option("--min-length", default=0.0, show_default=True, type=float, help="Drop segments shorter than this (s).")
@click.option(
    "--realtime", is_flag=True, help="Pace the input at the stream's own rate and report per-frame latency on stderr."
)
@click.option(
    "--batch", default=None, type=int, help="Frames encoded together when not --realtime (default 8; 256 for features)."
)
@device_option
@click.option(
    "--precision",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
    help="Image-encoder precision (auto: bf16 where it is native and checked against fp32).",
)
@click.option(
    "--live/--no-live",
    default=None,
    help="Rich live view instead of JSON lines (default: on when stdout is a terminal and no --output).",
)
def online(
    source,
    classes,
    classes_file,
    model,
    window,
    ema_alpha,
    checkpoint,
    clip_spec,
    templates,
    background,
    fps,
    feature_fps,
    video_name,
    output,
    overwrite,
    segments,
    start_threshold,
    stop_threshold,
    min_length,
    realtime,
    batch,
    device,
    precision,
    live,
):
    """Score SOURCE (a video, or a .npy file of CLIP frame embeddings) frame by frame, causally.

    Prints one JSON line per frame as soon as it is computed:
    {"video", "frame", "t", "top", "scores": {CLASS: PROB}} -- or, with
    --segments, one line per action segment when it closes.
    """
    from wtalkit.cli.common import err_console
    from wtalkit.online.runner import parse_classes, run_online

    names = parse_classes(classes, classes_file)
    if live is None:
        live = output is None and sys.stdout.isatty()
    try:
        summary = run_online(
            source,
            names,
            clip=clip_spec,
            model=model,
            templates=list(templates) or None,
            background=background,
            fps=fps,
            feature_fps=feature_fps,
            window=window,
            ema_alpha=ema_alpha,
            checkpoint=checkpoint,
            video_name=video_name,
            segments=segments,
            start_threshold=start_threshold,
            stop_threshold=stop_threshold,
            min_length=min_length,
            realtime=realtime,
            batch=batch,
            device=device or "auto",
            precision=precision,
            output=output,
            overwrite=overwrite,
            live=live,
        )
    except BrokenPipeError:
        # The reader went away (``wtalkit online ... | head``): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(141)
    if realtime:
        s = summary
        verdict = "[green]keeps up[/]" if s.keeps_up else "[red]falls behind[/]"
        err_console.print(
            f"{s.video}: {s.frames} frames in {s.wall_s:.1f} s ({s.frames_per_s:.2f} frames/s, "
            f"stream {s.stream_fps:g} fps); latency p50 {s.latency_p50_s * 1e3:.1f} ms, "
            f"p95 {s.latency_p95_s * 1e3:.1f} ms, max {s.latency_max_s * 1e3:.1f} ms; {verdict}"
        )
