"""Benchmark of ``wtalkit extract``: decode, encode and end-to-end frames/s against the GEMM bound.

The bound: ViT-B/16 costs 35.1 GFLOP per 224x224 frame, almost all of it in
matrix multiplications, so a machine doing G GFLOP/s of ViT-shaped matmuls
cannot encode more than G / 35.1 frames/s. The end-to-end figure (decoding a
720p video, preprocessing, encoding one centre frame per 16-frame snippet) is
compared with it; the target is >= 70 %.

    python benchmarks/bench_extract.py            # 2-minute 720p video
    python benchmarks/bench_extract.py --quick    # 10 s video, < 1 min

Random weights everywhere (the speed does not depend on them): ViT-B/16 from
``wtalkit.models.clip.random_clip_state_dict`` and a random R(2+1)D-18.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VIT_B16_GFLOP = 35.1  # per 224x224 frame (2 x 17.5 GMAC)


def write_synthetic_video(path: Path, seconds: float, fps: int = 25, width: int = 1280, height: int = 720) -> Path:
    """A moving-texture 720p H.264 video (cheap to generate, realistic enough to decode)."""
    import av

    n = int(round(seconds * fps))
    rng = np.random.RandomState(0)
    # a smooth random texture twice as wide as the frame, panned 4 px per frame, plus a noise layer
    small = rng.randint(0, 256, size=(height // 16, 2 * width // 16, 3)).astype(np.uint8)
    base = np.repeat(np.repeat(small, 16, axis=0), 16, axis=1)
    noise = rng.randint(0, 24, size=(height, width, 3)).astype(np.uint8)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = {"preset": "ultrafast", "crf": "23"}
        for i in range(n):
            x0 = (4 * i) % width
            f = base[:, x0 : x0 + width] + noise
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


class Timer:
    """Wall-clock and process CPU time of a block.

    On a shared machine wall-clock rates move with other people's load; the
    CPU-normalised rate (work / (CPU seconds / torch threads)) estimates what
    this process would do with its cores to itself, so each figure is shown
    both ways and the bound and the end-to-end rate are compared on the same basis.
    """

    def __init__(self, threads: int):
        self.threads = max(1, threads)

    def __enter__(self):
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.w0
        self.cpu = max(1e-9, time.process_time() - self.c0) / self.threads


def gemm_gflops(dtype_name: str, threads: int, batch: int = 16, repeats: int = 3) -> tuple[float, float]:
    """GFLOP/s (wall, CPU-normalised) of the matmuls of a ViT-B/16 block (197 tokens x batch, width 768, MLP 3072)."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    m = 197 * batch
    shapes = [(m, 768, 2304), (m, 768, 768), (m, 768, 3072), (m, 3072, 768)]  # qkv, out-proj, mlp fc, mlp proj
    mats = [(torch.randn(a, k, dtype=dtype), torch.randn(k, b, dtype=dtype)) for a, k, b in shapes]
    flops = sum(2 * a * k * b for a, k, b in shapes)
    wall = cpu = float("inf")
    with torch.inference_mode():
        for x, w in mats:  # warm-up
            x @ w
        for _ in range(repeats):
            with Timer(threads) as t:
                for x, w in mats:
                    x @ w
            wall, cpu = min(wall, t.wall), min(cpu, t.cpu)
    return flops / wall / 1e9, flops / cpu / 1e9


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10 s video (default: 2 minutes)")
    ap.add_argument("--seconds", type=float, default=None, help="video length in seconds")
    ap.add_argument(
        "--cbp-seconds",
        type=float,
        default=None,
        help="seconds of video for the CBP end-to-end run (default: 1.28 with --quick, else 10.24)",
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=32, help="frames per forward pass")
    ap.add_argument(
        "--encode-frames",
        type=int,
        default=None,
        help="frames in the encode-alone measurement (default: 8 with --quick, else --batch)",
    )
    args = ap.parse_args(argv)

    import torch
    from rich.console import Console

    console = Console(stderr=True)
    threads = torch.get_num_threads()
    seconds = args.seconds or (10.0 if args.quick else 120.0)
    cbp_seconds = args.cbp_seconds or (1.28 if args.quick else 10.24)
    enc_n = args.encode_frames or (8 if args.quick else args.batch)
    tmp = Path(tempfile.mkdtemp(prefix="wtalkit-bench-"))
    try:
        return _run(args, tmp, console, threads, seconds, cbp_seconds, enc_n)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the videos and random checkpoints (~1 GB)


def _run(args, tmp, console, threads, seconds, cbp_seconds, enc_n):
    import torch
    import torchvision
    from rich.console import Console
    from rich.table import Table

    from wtalkit.device import cpu_has_bf16
    from wtalkit.extract.encoders import ClipImageEncoder, VideoClassifierEncoder
    from wtalkit.extract.pipeline import cbp_spec, extract_video, vlp_spec
    from wtalkit.extract.video import grid_length, iter_grid_frames, probe
    from wtalkit.models.clip import save_random_clip

    console.print(
        f"torch {torch.__version__}, {threads} threads, device {args.device}, "
        f"bf16 CPU: {cpu_has_bf16()}; writing a {seconds:g} s 720p video ..."
    )
    t0 = time.perf_counter()
    video = write_synthetic_video(tmp / "bench720p.mp4", seconds)
    short = write_synthetic_video(tmp / "bench720p_short.mp4", cbp_seconds)
    console.print(f"  written in {time.perf_counter() - t0:.1f} s")

    rows = []  # (measure, wall frames/s, cpu frames/s, notes)

    # --- the bound: ViT-B/16 frames/s if every FLOP ran at ViT-shaped GEMM speed
    precisions = ["fp32"] + (["bf16"] if cpu_has_bf16() else [])
    gemm = {p: gemm_gflops(p, threads) for p in precisions}
    best = max(gemm, key=lambda p: gemm[p][0])
    bound = (gemm[best][0] / VIT_B16_GFLOP, gemm[best][1] / VIT_B16_GFLOP)
    for p, (gw, gc) in gemm.items():
        rows.append(
            (
                f"GEMM {p}, ViT-B/16 shapes",
                gw / VIT_B16_GFLOP,
                gc / VIT_B16_GFLOP,
                f"{gw:.0f} GFLOP/s wall, {gc:.0f} CPU-normalised",
            )
        )

    # --- models (random weights)
    clip_path = save_random_clip(tmp / "vit_b16.pt", "ViT-B/16")
    vit = ClipImageEncoder(str(clip_path), device=args.device, precision="auto")
    torch.manual_seed(0)
    torch.save(torchvision.models.video.r2plus1d_18(weights=None).state_dict(), tmp / "r21d.pt")
    r21d = VideoClassifierEncoder("r2plus1d_18", device=args.device, precision="auto", weights=tmp / "r21d.pt")

    info = probe(video)
    vspec = vlp_spec(str(clip_path))
    T = vspec.grid.num_snippets(grid_length(info, vspec.fps))
    centres = vspec.grid.frame_indices(np.arange(T), 1)[:, 0]

    # --- decode alone
    with Timer(threads) as t:
        n = sum(len(g) for g, _ in iter_grid_frames(video, 25.0, batch=args.batch, indices=centres))
    rows.append(("decode 720p: vlp centre frames", n / t.wall, n / t.cpu, f"{T * 16 / t.wall:.0f} video frames/s"))
    with Timer(threads) as t:
        n = sum(len(g) for g, _ in iter_grid_frames(short, 25.0, batch=args.batch, size=r21d.decode_size))
    rows.append(("decode 720p: all frames at 128x171 (cbp)", n / t.wall, n / t.cpu, ""))

    # --- preprocessing and encoding alone
    frames = np.random.RandomState(0).randint(0, 256, size=(enc_n, 720, 1280, 3)).astype(np.uint8)
    with Timer(threads) as t:
        x = vit.preprocess(frames)
    rows.append(("CLIP preprocessing 720p -> 224 (bicubic)", enc_n / t.wall, enc_n / t.cpu, ""))
    vit.encode_preprocessed(x[:2])  # warm-up (and the precision check when reduced precision is on)
    with Timer(threads) as t:
        vit.encode_preprocessed(x)
    rows.append(
        (
            f"encode ViT-B/16 ({vit.precision}), batch {enc_n}",
            enc_n / t.wall,
            enc_n / t.cpu,
            f"{enc_n / t.wall / bound[0]:.0%} / {enc_n / t.cpu / bound[1]:.0%} of bound",
        )
    )
    n_clips = 1 if args.quick else 4
    clips = np.random.RandomState(0).randint(0, 256, size=(n_clips, 16, 128, 171, 3)).astype(np.uint8)
    r21d.encode(clips[:1, :8])  # warm-up
    with Timer(threads) as t:
        r21d.encode(clips)
    rows.append(
        (
            f"encode R(2+1)D-18 ({r21d.precision}), {n_clips} snippets",
            16 * n_clips / t.wall,
            16 * n_clips / t.cpu,
            f"{n_clips / t.wall:.2f} snippets/s",
        )
    )

    # --- end to end (decode thread + preprocessing + encoder)
    with Timer(threads) as t:
        out = extract_video(video, {"vlp": vspec}, encoders={"vlp": vit}, batch=args.batch, info=info)
    e2e = (out["vlp"].shape[0] / t.wall, out["vlp"].shape[0] / t.cpu)
    rows.append(
        (
            "end-to-end vlp ViT-B/16 (centre frame)",
            *e2e,
            f"{grid_length(info, 25.0) / t.wall:.1f} video frames/s, {T} snippets in {t.wall:.1f} s",
        )
    )
    cspec = cbp_spec("r2plus1d_18", weights=tmp / "r21d.pt")
    with Timer(threads) as t:
        out = extract_video(short, {"cbp": cspec}, encoders={"cbp": r21d}, batch=args.batch)
    k = out["cbp"].shape[0]
    rows.append(("end-to-end cbp R(2+1)D-18", 16 * k / t.wall, 16 * k / t.cpu, f"{k} snippets in {t.wall:.1f} s"))

    table = Table(title=f"wtalkit extract benchmark: {seconds:g} s 720p 25 fps video, {threads} threads, {args.device}")
    table.add_column("measure")
    table.add_column("frames/s (wall)", justify="right")
    table.add_column("frames/s (CPU-normalised)", justify="right")
    table.add_column("notes")
    for name, w, c, note in rows[: len(gemm)]:
        table.add_row(name, f"{w:.2f}", f"{c:.2f}", note)
    table.add_row(
        f"[bold]bound[/] = {best} GEMM FLOP/s / {VIT_B16_GFLOP} GFLOP",
        f"{bound[0]:.2f}",
        f"{bound[1]:.2f}",
        "ViT-B/16 frames/s",
    )
    for name, w, c, note in rows[len(gemm) :]:
        table.add_row(name, f"{w:.2f}", f"{c:.2f}", note)
    ratio = (e2e[0] / bound[0], e2e[1] / bound[1])
    table.add_row(
        "[bold]end-to-end ViT-B/16 / bound[/]", f"[bold]{ratio[0]:.0%}[/]", f"[bold]{ratio[1]:.0%}[/]", "target >= 70%"
    )
    Console(width=max(120, Console().width)).print(table)
    if os.getloadavg()[0] > os.cpu_count():
        console.print(
            f"[yellow]note: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs: "
            f"wall-clock figures are shared with other processes[/]"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
