"""Cost of one iteration of the paper's alternate training, on a THUMOS-sized synthetic dataset.

* B step: the CBP branch (teacher, no grad) labels a batch; the VLP branch
  (student) runs its prompted CLIP text encoder and temporal transformer,
  takes ``L_kd + λ·L_fb`` and an AdamW step.
* F step: the VLP branch (teacher, no grad, cached text features) labels a
  batch; the CBP branch (student) takes ``L_mil + L_kd + λ·L_fb`` and a step.

Setting: 200 training videos of T = 1000 snippets, CBP features 2048-d, CLIP
features 512-d, 20 classes, batch 10, CLIP ViT-B/16 architecture with random
weights (saved once and loaded through ``load_clip``). Batches are generated
on the fly from a seeded generator (generation is not timed), with one or two
action segments per video whose CLIP features point at their class's text
embedding, so that both teachers give non-trivial confident labels.

Each phase runs in its own subprocess so that its peak memory
(``ru_maxrss``, or ``torch.cuda.max_memory_allocated`` on a GPU) is its own.
The first iteration is a warm-up and is not timed.

    python benchmarks/bench_alternate_steps.py --quick   # 20 videos: 1 warm-up + 1 timed iteration per phase
    python benchmarks/bench_alternate_steps.py --max-iters 6
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

THUMOS_CLASSES = [
    "baseball pitch",
    "basketball dunk",
    "billiards",
    "clean and jerk",
    "cliff diving",
    "cricket bowling",
    "cricket shot",
    "diving",
    "frisbee catch",
    "golf swing",
    "hammer throw",
    "high jump",
    "javelin throw",
    "long jump",
    "pole vault",
    "shotput",
    "soccer penalty",
    "tennis swing",
    "throw discus",
    "volleyball spiking",
]


def random_clip_file(arch: str) -> Path:
    """A random-weight CLIP checkpoint of ``arch``, cached in the temp folder across runs (written atomically)."""
    from wtalkit.io import atomic_path
    from wtalkit.models.clip import save_random_clip

    path = Path(tempfile.gettempdir()) / f"wtalkit-bench-random-clip-{arch.replace('/', '-')}.pt"
    if not path.exists():
        with atomic_path(path) as tmp:
            save_random_clip(tmp, arch)
    return path


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class SyntheticBatches:
    """Deterministic random batches: ``(cbp [B,T,Dc], vlp [B,T,Dv], labels [B,C])``."""

    def __init__(self, args, text, seed: int = 0):
        import torch

        self.a, self.seed = args, seed
        # Random-weight CLIP text features are all alike (cosine ~0.95); their residuals from the
        # mean separate the classes, so frames along them get confident zero-shot scores.
        self.text = torch.nn.functional.normalize(text - text.mean(0), dim=-1)
        self.cbp_dirs = torch.nn.functional.normalize(
            torch.randn(args.classes, args.cbp_dim, generator=torch.Generator().manual_seed(seed + 1)), dim=-1
        )

    def batch(self, i: int, device):
        import torch

        a = self.a
        g = torch.Generator().manual_seed(self.seed * 100003 + i)
        B, T = a.batch_size, a.T
        cbp = torch.randn(B, T, a.cbp_dim, generator=g)
        vlp = torch.nn.functional.normalize(torch.randn(B, T, a.vlp_dim, generator=g), dim=-1)
        labels = torch.zeros(B, a.classes)
        for b in range(B):
            for _ in range(int(torch.randint(1, 3, (1,), generator=g))):
                c = int(torch.randint(0, a.classes, (1,), generator=g))
                length = int(torch.randint(T // 10, T // 4, (1,), generator=g))
                start = int(torch.randint(0, T - length, (1,), generator=g))
                labels[b, c] = 1
                vlp[b, start : start + length] = vlp[b, start : start + length] * 0.3 + self.text[c]
                cbp[b, start : start + length] += 3 * self.cbp_dirs[c] * a.cbp_dim**0.5 / 8
        return cbp.to(device), vlp.to(device), labels.to(device)


def run_phase(args, phase: str, clip_model=None) -> dict:
    """One phase (``b`` or ``f``) in this process; returns the measurements as a dict."""
    import torch

    from wtalkit.config import CBPConfig, LossConfig, VLPConfig
    from wtalkit.models.cbp import CBPBranch, mil_loss
    from wtalkit.models.clip import load_clip
    from wtalkit.models.vlp import VLPBranch
    from wtalkit.train.losses import distill_loss
    from wtalkit.train.pseudo import ternary_labels

    torch.manual_seed(0)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    classes = (THUMOS_CLASSES * (args.classes // len(THUMOS_CLASSES) + 1))[: args.classes]
    classes = [c if i < len(THUMOS_CLASSES) else f"{c} {i}" for i, c in enumerate(classes)]
    if clip_model is None:
        clip_model = load_clip(str(args.clip_path), device=args.device)
    vlp = VLPBranch(clip_model, classes, VLPConfig(clip_model=args.clip), vis_dim=args.vlp_dim).to(device)
    cbp = CBPBranch(args.cbp_dim, args.classes, CBPConfig()).to(device)
    with torch.no_grad():
        text = vlp.eval().text_features().cpu()
    data = SyntheticBatches(args, text)
    student, teacher = (vlp, cbp) if phase == "b" else (cbp, vlp)
    student.train()
    teacher.eval()
    if phase == "b" and isinstance(getattr(cbp, "classifier", None), torch.nn.Linear):
        # An untrained CBP scores every frame ~0.5, so no frame would be confident background and
        # L_fb would never run; a negative bias mimics a trained CBP's mostly-background output.
        with torch.no_grad():
            cbp.classifier.bias.fill_(-2.0)
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-4)
    loss_cfg = LossConfig()
    gen = torch.Generator().manual_seed(0)
    iters = max(1, args.videos // args.batch_size)
    if args.max_iters:
        iters = min(iters, args.max_iters + 1)
    setup_rss = rss_mb()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    label_t, train_t, parts, counts = [], [], [], torch.zeros(3)
    for i in range(iters):
        xc, xv, labels = data.batch(i, device)
        mask = torch.ones(xc.shape[:2], dtype=torch.bool, device=device)
        t0 = time.perf_counter()
        with torch.no_grad():
            tout = teacher(xc if phase == "b" else xv, mask)
            pseudo = ternary_labels(tout["probs"], labels, 0.3, 0.1)
        if cuda:
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        sout = student(xv if phase == "b" else xc, mask)
        loss, p = distill_loss(sout["probs"], sout["features"], pseudo, mask, loss_cfg, generator=gen)
        if phase == "f":
            loss = loss + mil_loss(sout["logits"], mask, labels, cbp.topk_ratio)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        fg_frames = (pseudo == 1).any(-1)
        bg_frames = (pseudo == 0).all(-1)
        counts += torch.stack([fg_frames.sum(), bg_frames.sum(), (~fg_frames & ~bg_frames).sum()]).float().cpu()
        if i > 0 or iters == 1:
            label_t.append(t1 - t0)
            train_t.append(t2 - t1)
            parts.append(p)
    steps_per_epoch = -(-args.videos // args.batch_size)
    frac = (counts / counts.sum()).tolist()
    return {
        "phase": phase,
        "iters_timed": len(train_t),
        "label_s": statistics.mean(label_t),
        "train_s": statistics.mean(train_t),
        "epoch_s": steps_per_epoch * (statistics.mean(label_t) + statistics.mean(train_t)),
        "setup_rss_mb": setup_rss,
        "peak_rss_mb": peak_rss_mb(),
        "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "trainable_params": sum(p.numel() for p in student.parameters() if p.requires_grad),
        "label_frac": frac,
        "kd": statistics.mean(x["kd"] for x in parts),
        "fb": statistics.mean(x["fb"] for x in parts),
        "threads": torch.get_num_threads(),
        "device": str(device),
    }


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="20 videos of T=200 in one process (one warm-up and one timed iteration per phase)",
    )
    ap.add_argument("--videos", type=int, default=200)
    ap.add_argument("--T", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--cbp-dim", type=int, default=2048)
    ap.add_argument("--vlp-dim", type=int, default=512)
    ap.add_argument(
        "--clip",
        default="ViT-B/16",
        help="CLIP architecture of the random text encoder (wtalkit.models.clip.CLIP_ARCHS)",
    )
    ap.add_argument("--max-iters", type=int, default=0, help="timed iterations per phase (0: one epoch)")
    ap.add_argument("--device", default="cuda" if _cuda_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument(
        "--inprocess",
        action="store_true",
        help="run both phases in this process, loading CLIP once (the F step's peak RSS then includes the B step's)",
    )
    ap.add_argument("--phase", choices=["b", "f"], help=argparse.SUPPRESS)
    ap.add_argument("--clip-path", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:  # must finish in about a minute on two shared CPU cores
        args.videos, args.T, args.inprocess = 20, 200, True
    return args


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # pragma: no cover
        return False


def main(argv=None):
    args = parse_args(argv)
    if args.phase:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(run_phase(args, args.phase)))
        return
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    clip_path = random_clip_file(args.clip)
    print(
        f"random {args.clip} CLIP: {clip_path}; "
        f"{args.videos} videos x T={args.T}, batch {args.batch_size}, {args.classes} classes, device {args.device}",
        flush=True,
    )
    rows = []
    if args.inprocess:
        from wtalkit.models.clip import load_clip

        args.clip_path = clip_path
        clip_model = load_clip(str(clip_path), device=args.device)
        rows = [run_phase(args, phase, clip_model) for phase in ("b", "f")]
    else:
        passthrough = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--quick"]
        for phase in ("b", "f"):
            cmd = [
                sys.executable,
                __file__,
                *passthrough,
                "--videos",
                str(args.videos),
                "--T",
                str(args.T),
                "--phase",
                phase,
                "--clip-path",
                str(clip_path),
            ]
            res = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
            if res.returncode != 0:
                sys.exit(f"phase {phase} failed:\n{res.stderr[-3000:]}")
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    print()
    hdr = (
        f"{'step':<7}{'student':<9}{'teacher':<9}{'timed it':>9}{'label s/it':>11}{'train s/it':>11}"
        f"{'epoch s':>9}{'RSS setup MB':>13}{'peak MB':>9}{'trainable':>11}  frames fg/bg/unc"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        student, teacher = ("VLP", "CBP") if r["phase"] == "b" else ("CBP", "VLP")
        peak = r["cuda_peak_mb"] if r["cuda_peak_mb"] is not None else r["peak_rss_mb"]
        fg, bg, unc = r["label_frac"]
        print(
            f"{r['phase'].upper() + ' step':<7}{student:<9}{teacher:<9}{r['iters_timed']:>9}{r['label_s']:>11.3f}"
            f"{r['train_s']:>11.3f}{r['epoch_s']:>9.1f}{r['setup_rss_mb']:>13.0f}{peak:>9.0f}"
            f"{r['trainable_params']:>11,}  {fg:.2f}/{bg:.2f}/{unc:.2f}"
        )
    print(
        f"\nepoch = ceil(videos / batch) x (label + train) s/it; peak = "
        f"{'torch.cuda.max_memory_allocated' if rows[0]['cuda_peak_mb'] is not None else 'process ru_maxrss'}; "
        f"torch threads {rows[0]['threads']}; mean L_kd B/F = {rows[0]['kd']:.3g}/{rows[1]['kd']:.3g}, "
        f"L_fb B/F = {rows[0]['fb']:.3g}/{rows[1]['fb']:.3g}"
    )


if __name__ == "__main__":
    main()
