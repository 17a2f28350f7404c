"""Throughput and latency of ``wtalkit online`` on CPU with a ViT-B/16 CLIP (random weights).

Measures, on a synthetic 320x240 video sampled at 4 fps:

* throughput: frames/s of the whole pipeline (decode + CLIP image encoder +
  scoring + JSON output) in batch mode, and the number of 4 fps streams one
  machine keeps in real time at that rate (= frames/s / 4);
* per-frame latency when frames are processed one at a time as they arrive
  (the ``--realtime`` path: encode + score + write one line);
* scoring alone on a CLIP feature file (no image encoder), per baseline;
* optionally (``--streams N ...``, default in full mode) N concurrent
  ``wtalkit online --realtime`` processes on the same machine: their p95
  latency and whether each keeps up with its stream.

Usage: ``python benchmarks/bench_online.py [--quick] [--threads N] [--streams 1 2]``
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLASSES = [
    "high jump",
    "pole vault",
    "long jump",
    "shot put",
    "discus throw",
    "hammer throw",
    "javelin throw",
    "cliff diving",
    "diving",
    "billiards",
    "basketball dunk",
    "golf swing",
    "tennis swing",
    "cricket bowling",
    "cricket shot",
    "volleyball spiking",
    "soccer penalty",
    "throw discus",
    "clean and jerk",
    "frisbee catch",
]  # 20 classes, as THUMOS14


def write_video(path: Path, seconds: float, fps: int = 25, size=(320, 240)) -> Path:
    import av

    w, h = size
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(int(seconds * fps)):
            img = np.roll(base, 4 * i, axis=1)
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    return path


def run(source, encoder, classes, scorer, **kw):
    """One ``run_online`` with a preloaded encoder and scorer (lines go to memory); its summary."""
    from wtalkit.online.runner import run_online

    return run_online(source, classes, clip=encoder, scorer=scorer, stdout=io.StringIO(), **kw)


def concurrent_realtime(video: Path, clip: Path, classes: list, n: int, threads: int) -> list[dict]:
    """``n`` ``wtalkit online --realtime`` processes at once; their summaries (parsed from stderr)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), COLUMNS="400")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wtalkit",
                "online",
                str(video),
                "--clip",
                str(clip),
                "--classes",
                ", ".join(classes),
                "--realtime",
                "--no-live",
                "--output",
                str(video.parent / f"rt{i}.jsonl"),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    out = []
    for p in procs:
        err = p.communicate()[1]
        m = re.search(
            r"\(([\d.]+) frames/s.*p50 ([\d.]+) ms, p95 ([\d.]+) ms, max ([\d.]+) ms; (keeps up|falls behind)",
            " ".join(err.split()),
        )
        if p.returncode != 0 or not m:
            raise SystemExit(f"concurrent run failed: {err.strip()[-300:]}")
        out.append(dict(fps=float(m[1]), p50=float(m[2]), p95=float(m[3]), max=float(m[4]), ok=m[5] == "keeps up"))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short video, fewer repeats (< 1 min)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    ap.add_argument(
        "--streams",
        type=int,
        nargs="*",
        default=None,
        help="concurrent --realtime processes to run (full mode default: the estimate and one more)",
    )
    ap.add_argument("--seconds", type=float, default=None, help="video length (default 1 quick / 30 full)")
    args = ap.parse_args()

    import torch

    from wtalkit.models.clip import random_clip_state_dict

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    seconds = args.seconds or (1.0 if args.quick else 30.0)
    classes = CLASSES[:5] if args.quick else CLASSES
    fps = 4.0
    tmp = Path(tempfile.mkdtemp(prefix="bench_online_"))
    rows = []
    try:
        t0 = time.perf_counter()
        ckpt = tmp / "vitb16.pt"
        torch.save(random_clip_state_dict("ViT-B/16"), ckpt)
        video = write_video(tmp / "stream.mp4", seconds)
        short = write_video(tmp / "short.mp4", 0.5 if args.quick else 5.0)
        setup = time.perf_counter() - t0

        # One encoder for every run (loaded from the checkpoint file, as `--clip PATH` does), warmed up.
        from wtalkit.extract.encoders import ClipImageEncoder
        from wtalkit.online.scorers import ClipEMAScorer, ClipFrameScorer, ClipWindowScorer, text_classifier

        t0 = time.perf_counter()
        enc = ClipImageEncoder(str(ckpt), device="cpu", precision="auto")
        load = time.perf_counter() - t0
        enc.encode(np.zeros((1, 240, 320, 3), np.uint8))

        # 0. The class prompts, encoded once per stream (at start-up, before the first frame).
        t0 = time.perf_counter()
        text = text_classifier(enc.model, classes, ["A photo of action {}."], "background")
        dt = time.perf_counter() - t0  # shown as the start-up latency of a stream
        rows.append(
            (
                f"class prompts: {len(classes)} + background (once)",
                len(classes) + 1,
                (len(classes) + 1) / dt,
                dt,
                float("nan"),
                None,
            )
        )
        scorers = {
            "clip-frame": ClipFrameScorer(text),
            "clip-window": ClipWindowScorer(text, 8),
            "clip-ema": ClipEMAScorer(text, 0.3),
        }

        # 1. Throughput, batch mode: decode + encode + score + write (model load excluded).
        s = run(video, enc, classes, scorers["clip-window"], batch=8)
        rows.append(
            (
                "video, batch 8 (throughput)",
                s.frames,
                s.frames_per_s,
                s.latency_p50_s,
                s.latency_p95_s,
                s.frames_per_s / fps,
            )
        )
        capacity = s.frames_per_s / fps

        # 2. One frame at a time, as frames arrive: per-frame latency of encode + score + write.
        s1 = run(short, enc, classes, scorers["clip-window"], batch=1)
        rows.append(
            (
                "video, 1 frame at a time",
                s1.frames,
                s1.frames_per_s,
                s1.latency_p50_s,
                s1.latency_p95_s,
                s1.frames_per_s / fps,
            )
        )

        # 3. Scoring alone on CLIP features (no image encoder), per baseline.
        from wtalkit.data.features import FeatureStream, StreamMeta

        nfeat = 1000 if args.quick else 20000
        feats = np.random.default_rng(0).normal(size=(nfeat, 512)).astype(np.float32)
        FeatureStream.create(tmp / "vlp", StreamMeta("clip:ViT-B/16", 512, fps, 1, 1)).write("feats", feats)
        for model, scorer in scorers.items():
            for batch in (1, 256):
                sf = run(tmp / "vlp" / "feats.npy", enc, classes, scorer, batch=batch)
                rows.append(
                    (
                        f"features, {model}, batch {batch}",
                        sf.frames,
                        sf.frames_per_s,
                        sf.latency_p50_s,
                        sf.latency_p95_s,
                        sf.frames_per_s / fps,
                    )
                )

        from rich.console import Console
        from rich.table import Table

        con = Console(width=150)
        tab = Table(
            title=f"wtalkit online, CPU, ViT-B/16 (random weights), {len(classes)} classes, "
            f"{fps:g} fps input, {seconds:g} s 320x240 video, torch threads {threads}"
        )
        for col in ("run", "frames", "frames/s", "latency p50 (ms)", "latency p95 (ms)", "4-fps streams"):
            tab.add_column(col, justify="right" if col != "run" else "left")
        for name, n, fs, p50, p95, streams in rows:
            tab.add_row(
                name,
                str(n),
                f"{fs:,.2f}",
                f"{p50 * 1e3:.2f}",
                "-" if p95 != p95 else f"{p95 * 1e3:.2f}",
                "-" if streams is None else f"{streams:,.2f}",
            )
        con.print(tab)
        con.print(
            f"setup (random ViT-B/16 checkpoint + videos): {setup:.1f} s; model load: {load:.1f} s; "
            f"encoder precision: {enc.precision}"
        )
        con.print(
            f"estimated real-time capacity: {capacity:.2f} streams of {fps:g} fps "
            f"(= {s.frames_per_s:.2f} frames/s / {fps:g}) on {os.cpu_count()} CPU cores"
        )

        streams = args.streams
        if streams is None:
            streams = [] if args.quick else sorted({max(1, int(capacity)), max(1, int(capacity)) + 1})
        if streams:
            per = max(1, threads // max(streams))
            ct = Table(title=f"concurrent `wtalkit online --realtime` processes ({per} torch thread(s) each)")
            for col in ("processes", "keeping up", "frames/s each", "p50 (ms)", "p95 (ms)", "max (ms)"):
                ct.add_column(col, justify="right")
            for n in streams:
                res = concurrent_realtime(video, ckpt, classes, n, per)
                ct.add_row(
                    str(n),
                    f"{sum(r['ok'] for r in res)}/{n}",
                    f"{np.mean([r['fps'] for r in res]):.2f}",
                    f"{np.median([r['p50'] for r in res]):.0f}",
                    f"{max(r['p95'] for r in res):.0f}",
                    f"{max(r['max'] for r in res):.0f}",
                )
            con.print(ct)
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
