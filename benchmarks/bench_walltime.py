"""Wall time of the paper's protocol at THUMOS14 and ActivityNet1.2 sizes, through wtalkit's own functions.

For each size a dataset of synthetic random float32 features of the real shapes (CBP 2,048-d, VLP
512-d, on the 16-frame / 25 fps grid) is written on disk in wtalkit's dataset format, then

* ``train_warmup`` runs one warm-up epoch (the size's preset, ``train.warmup_epochs=1``);
* ``train_alternate`` runs one round of ``train.schedule=alternate`` with ``b_epochs=f_epochs=1``,
  so one B-step epoch and one F-step epoch, with the ViT-B/16 CLIP *architecture* at random weights
  (no network); the round ends with the label-free agreement pass over the training split, timed
  apart ("round end");
* ``localize_dataset`` localizes the test split with the resulting ``alternate.pt`` (CBP branch).

Full cells are the ``seconds`` of the epoch's ``log.jsonl`` record (warm-up, B, F) or the wall time
of the call (round end, localize). ``--max-steps N`` (and ``--max-videos M``) make the ActivityNet
size affordable on a CPU: ``FeatureBank.batches`` is wrapped in this process (library code is not
changed) so that each epoch stops after N + 1 batches; the first batch is an untimed warm-up step
(allocator, kernel selection), the N after it are timed from the start of building the batch to the
end of its optimizer step (on CUDA with a synchronize at both ends, nothing per step), and the epoch
is extrapolated linearly: mean step × batches per epoch (ceil(videos / batch)). ``--max-videos M``
does the same for localize (M test videos timed after an untimed first one, scaled by the number
of test videos) and for the round end (the agreement pass is run over video 0 untimed, then timed
over videos 0..M-1, scaled by the number of training videos; ``Trainer.agreement`` is wrapped and
reads a shortened ``bank.lengths()`` for that). Each cell says ``full`` or ``N steps × scale``
(``N videos × scale``). An epoch cut short also trains less, so later steps run on a less trained
model; a step's cost does not depend on that beyond the pseudo-label counts. On random features the
teachers give few confident labels, so ``L_fb`` may not run at all (its value is 0 in the log; the
script says so under the table): its cost (≤ 64 anchors × 512 negatives per class) is then missing.

The protocol total is warm-up epochs × W + rounds × (b_epochs × B + f_epochs × F + round end) + L
with the preset's numbers. ``wtalkit alternate`` also scores the test split after every round when it
has ground truth, which adds (rounds - 1) × L; the total does not include it.

Disk: ``--unique-files K`` (default 512) distinct feature files are written per stream; further
videos are hard links to one of them (their length is that file's), so ActivityNet1.2's ~19 GB of
feature bytes take ~1 GB. Either way the files are read from the page cache once written, so the
figures are compute plus memory-mapped reads, not cold-disk I/O. Localize runs in fp32 (it has no
precision option); ``--precision`` is ``train.precision``.

    python benchmarks/bench_walltime.py --quick                       # tiny shapes, < 1 minute
    python benchmarks/bench_walltime.py --max-steps anet12=5 --max-videos anet12=200  # THUMOS14 whole
    python benchmarks/bench_walltime.py --device cuda --json walltime.json   # everything full
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from bench_alternate_steps import THUMOS_CLASSES, random_clip_file  # noqa: E402

TINY_SETS = [  # the quick size's model (as the tests' TINY_SETS)
    "data.num_segments=64",
    "data.batch_size=4",
    "cbp.hidden_dim=32",
    "cbp.num_heads=2",
    "cbp.num_layers=1",
    "vlp.temporal_heads=2",
]
SIZES = {
    "thumos14": dict(preset="thumos14", train=200, test=212, classes=20, cbp=2048, vlp=512, clip="ViT-B/16"),
    "anet12": dict(preset="anet12", train=4619, test=4796, classes=100, cbp=2048, vlp=512, clip="ViT-B/16"),
    "quick": dict(preset="thumos14", train=12, test=6, classes=3, cbp=64, vlp=32, clip="tiny", sets=TINY_SETS),
}
CELLS = ("warmup", "b_step", "f_step", "round_end", "localize")


def snippet_counts(size: str, rng: np.random.Generator, n: int) -> np.ndarray:
    if size == "thumos14":  # THUMOS14-like durations: long-tailed, mean ~230 s, 0.64 s per snippet
        seconds = rng.lognormal(math.log(230) - 0.32, 0.8, n)
        return np.clip(np.round(seconds / 0.64), 20, 1500).astype(int)
    if size == "anet12":
        return rng.integers(60, 340, n)  # ~200 snippets on average (as bench_memory.py)
    return rng.integers(40, 120, n)


def make_dataset(root: Path, size: str, spec: dict, subsets: tuple, unique: int, seed: int = 0) -> dict:
    """Write (or reuse, when ``root/spec.json`` matches) the size's dataset; returns its description."""
    from wtalkit.data.annotations import Annotations, Video
    from wtalkit.data.features import FeatureStream, StreamMeta

    desc = {"size": size, **{k: spec[k] for k in ("train", "test", "classes", "cbp", "vlp")}}
    desc.update(subsets=list(subsets), unique=unique, seed=seed)
    done = root / "spec.json"
    if done.exists() and json.loads(done.read_text()).get("spec") == desc:
        return json.loads(done.read_text())
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(seed)
    n = spec["train"] + spec["test"]
    k = min(unique, n) if unique > 0 else n
    pool = snippet_counts(size, rng, k)
    source = np.concatenate([np.arange(k), rng.integers(0, k, n - k)])  # video i's file: pool entry source[i]
    classes = (THUMOS_CLASSES if spec["classes"] <= 20 else [f"activity {i:03d}" for i in range(100)])[
        : spec["classes"]
    ]
    streams = {
        s: FeatureStream.create(root / "features" / s, StreamMeta(backbone, spec[s], 25.0, 16, 16))
        for s, backbone in (("cbp", "i3d-kinetics-rgb+flow"), ("vlp", f"clip-{spec['clip']}"))
    }
    videos, nbytes = {}, 0
    for i in range(n):
        name = f"video_{i:05d}"
        for s, stream in streams.items():
            j = int(source[i])
            if j == i:
                stream.write(name, rng.standard_normal((int(pool[j]), spec[s]), dtype=np.float32))
            else:
                os.link(stream.path(f"video_{j:05d}"), stream.path(name))
            nbytes += stream.path(name).stat().st_size
        labels = sorted({classes[c] for c in rng.integers(0, len(classes), 1 + int(rng.random() < 0.2))})
        subset = subsets[0] if i < spec["train"] else subsets[1]
        videos[name] = Video(name, subset, float(pool[source[i]]) * 16 / 25, [], labels)
    Annotations(classes, videos).save(root / "annotations.json")
    lengths = pool[source]
    out = {"spec": desc, "bytes": nbytes, "snippets_mean": float(lengths.mean()), "snippets_max": int(lengths.max())}
    done.write_text(json.dumps(out))
    return out


class Limits:
    """Wraps ``FeatureBank.batches`` and ``Trainer.agreement`` in this process: epochs stop after
    ``max_steps + 1`` batches (0: whole epochs), ``records`` gets one entry per epoch; the agreement
    pass is timed (over ``max_videos`` videos, 0: all) into ``round_end``."""

    def __init__(self, max_steps: int, max_videos: int, device):
        self.max_steps, self.max_videos, self.device = max_steps, max_videos, device
        self.records, self.round_end = [], []

    def sync(self) -> float:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    @contextlib.contextmanager
    def installed(self):
        from wtalkit.data.loader import FeatureBank
        from wtalkit.train.alternate import Trainer

        batches, agreement, limits = FeatureBank.batches, Trainer.agreement, self

        def limited(bank, rng, T, batch_size, *args, **kwargs):
            total = -(-len(bank) // batch_size)
            run = min(total, limits.max_steps + 1) if limits.max_steps else total
            rec = {"batches": total, "run": run, "marks": []}
            limits.records.append(rec)
            it = itertools.islice(batches(bank, rng, T, batch_size, *args, **kwargs), run)
            for k in range(run):  # mark k: before batch k is built; the last one: after the last step
                rec["marks"].append(limits.sync() if k == 1 else time.perf_counter())
                yield next(it)
            rec["marks"].append(limits.sync())

        def timed_agreement(trainer):
            bank, n = trainer.bank, len(trainer.bank)
            m = min(n - 1, limits.max_videos) if limits.max_videos else n
            if m < n:  # videos 0..m-1 after an untimed pass over video 0 (agreement indexes from 0)
                full = bank.lengths
                bank.lengths = lambda: full()[:1]
                agreement(trainer)
                bank.lengths = lambda: full()[:m]
            try:
                t0 = limits.sync()
                out = agreement(trainer)
                seconds = limits.sync() - t0
            finally:
                vars(bank).pop("lengths", None)
            cell = {"seconds": seconds * n / m, "how": "full" if m == n else "extrapolated", "steps": m}
            limits.round_end.append(cell if m == n else {**cell, "scale": n / m})
            return out

        FeatureBank.batches, Trainer.agreement = limited, timed_agreement
        try:
            yield self
        finally:
            FeatureBank.batches, Trainer.agreement = batches, agreement

    @staticmethod
    def cell(rec: dict, logged: float) -> dict:
        """The epoch's figure: the log's ``seconds`` when it ran whole, else steps 1..run-1 extrapolated."""
        if rec["run"] == rec["batches"]:
            return {"seconds": logged, "how": "full", "steps": rec["run"]}
        steps = rec["run"] - 1
        scale = rec["batches"] / steps
        return {"seconds": (rec["marks"][-1] - rec["marks"][1]) * scale, "how": "extrapolated", "steps": steps,
                "scale": scale}  # fmt: skip


class _Enough(Exception):
    pass


def time_localize(ckpt: Path, data: Path, subset: str, device: str, max_videos: int) -> dict:
    from wtalkit.data.features import Dataset
    from wtalkit.localize.predict import Predictor, localize_dataset

    predictor = Predictor(ckpt, device=device)
    ds = Dataset(data)
    total = len(ds.videos(subset, stream=predictor.streams[0]))
    run = min(total, max_videos + 1) if max_videos else total
    marks = []

    def on_video(_name):
        marks.append(time.perf_counter())
        if len(marks) == run < total:
            raise _Enough

    t0 = time.perf_counter()
    with contextlib.suppress(_Enough):
        localize_dataset(predictor, ds, subset, on_video=on_video)
    if run == total:
        return {"seconds": time.perf_counter() - t0, "how": "full", "steps": total}
    scale = total / (run - 1)
    return {"seconds": (marks[-1] - marks[0]) * scale, "how": "extrapolated", "steps": run - 1, "scale": scale}


def measure(size: str, out: Path, args, device) -> dict:
    import torch

    from wtalkit.config import load_config
    from wtalkit.train.alternate import train_alternate
    from wtalkit.train.run import Run
    from wtalkit.train.warmup import train_warmup

    spec = SIZES[size]
    preset = load_config(spec["preset"], spec.get("sets", []))
    subsets = (preset.data.train_subset, preset.data.test_subset)
    t0 = time.perf_counter()
    data = make_dataset(out / size / "data", size, spec, subsets, args.unique_files)
    note(f"{size}: dataset {data['bytes'] / 1e9:.2f} GB of features ({time.perf_counter() - t0:.0f} s)")
    clip = random_clip_file(spec["clip"])
    sets = [*spec.get("sets", []), f"vlp.clip_model={clip}", f"train.device={device}"]
    sets += [f"train.precision={args.precision}", "train.warmup_epochs=1", "train.rounds=1"]
    sets += ["train.b_epochs=1", "train.f_epochs=1", "train.schedule=alternate"]
    cfg = load_config(spec["preset"], sets)
    run_dir = out / size / "run"
    max_steps, max_videos = args.max_steps.get(size, 0), args.max_videos.get(size, 0)
    limits = Limits(max_steps, max_videos, torch.device(device))
    with limits.installed():
        note(f"{size}: warm-up epoch")
        train_warmup(out / size / "data", run_dir, cfg, overwrite=True, progress=False)
        note(f"{size}: one alternate round (B epoch, F epoch, round end)")
        ckpt = train_alternate(out / size / "data", run_dir, cfg, overwrite=True, progress=False)
    assert len(limits.records) == 3 and len(limits.round_end) == 1, "expected warm-up, B, F epochs and one round"
    logged = {(r["stage"], r.get("step")): r for r in Run(run_dir).records() if r.get("stage") in ("warmup", "alternate")}  # fmt: skip
    cells = {
        "warmup": Limits.cell(limits.records[0], logged[("warmup", None)]["seconds"]),
        "b_step": Limits.cell(limits.records[1], logged[("alternate", "B")]["seconds"]),
        "f_step": Limits.cell(limits.records[2], logged[("alternate", "F")]["seconds"]),
        "round_end": limits.round_end[0],
    }
    note(f"{size}: localize the test split")
    cells["localize"] = time_localize(ckpt, out / size / "data", subsets[1], device, max_videos)
    p = preset.train
    c = {k: v["seconds"] for k, v in cells.items()}
    total = (
        p.warmup_epochs * c["warmup"]
        + p.rounds * (p.b_epochs * c["b_step"] + p.f_epochs * c["f_step"] + c["round_end"])
        + c["localize"]
    )
    protocol = {"warmup_epochs": p.warmup_epochs, "rounds": p.rounds, "b_epochs": p.b_epochs, "f_epochs": p.f_epochs}
    losses = {f"{k} {s}": logged[("alternate", s)].get(k) for s in ("B", "F") for k in ("kd", "fb")}
    return {"cells": cells, "protocol": protocol, "max_steps": max_steps, "max_videos": max_videos, "total_seconds": total, "dataset": data,
            "T": cfg.data.num_segments, "batch_size": cfg.data.batch_size, "last_losses": losses}  # fmt: skip


def note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fmt_cell(cell: dict) -> str:
    s = cell["seconds"]
    text = f"{s:.2f}" if s < 10 else (f"{s:.1f}" if s < 100 else f"{s:,.0f}")
    if cell["how"] == "full":
        return f"{text} (full)"
    unit = ("video" if cell.get("videos") else "step") + ("s" if cell["steps"] > 1 else "")
    return f"{text} ({cell['steps']} {unit} × {cell['scale']:.1f})"


def fmt_duration(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min"


def table(results: dict, device_name: str) -> str:
    head = ("size", "videos train / test", "warm-up epoch (s)", "B-step epoch (s)", "F-step epoch (s)",
            "round end (s)", "localize test split (s)", "paper protocol")  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for size, r in results.items():
        p, spec = r["protocol"], SIZES[size]
        formula = f"{p['warmup_epochs']}W + {p['rounds']}×({p['b_epochs']}B + {p['f_epochs']}F + R) + L"
        loc = dict(r["cells"]["localize"], videos=True)
        end = dict(r["cells"]["round_end"], videos=True)
        cells = [fmt_cell(r["cells"][k]) for k in CELLS[:3]] + [fmt_cell(end), fmt_cell(loc)]
        row = [f"{size} (T={r['T']}, batch {r['batch_size']})", f"{spec['train']:,} / {spec['test']:,}", *cells]
        lines.append("| " + " | ".join([*row, f"{fmt_duration(r['total_seconds'])} = {formula}"]) + " |")
    return "\n".join(lines) + f"\n\nDevice: {device_name}."


def per_size(text: str, sizes: list, ap, opt: str) -> dict:
    """``N`` (every size) or ``SIZE=N,SIZE=N`` (the sizes not named: 0, whole) -> ``{size: N}``."""
    try:
        if "=" not in text:
            return dict.fromkeys(sizes, max(0, int(text)))
        pairs = dict(item.split("=", 1) for item in text.split(","))
        return {s: max(0, int(pairs.get(s, 0))) for s in sizes}
    except ValueError:
        ap.error(f"{opt}: expected N or SIZE=N[,SIZE=N], got '{text}'")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="thumos14,anet12", help="comma-separated: thumos14, anet12")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    ap.add_argument(
        "--max-steps", default="0", help="timed batches per epoch after one untimed: N or SIZE=N,... (0: all)"
    )
    ap.add_argument("--max-videos", default="0", help="timed videos (localize, round end): M or SIZE=M,... (0: all)")
    ap.add_argument("--unique-files", type=int, default=512, help="distinct feature files per stream (0: all)")
    ap.add_argument("--out", type=Path, help="keep datasets and runs here (reused); default: a temp dir, removed")
    ap.add_argument("--json", type=Path, help="write the figures to this file")
    ap.add_argument("--quick", action="store_true", help="one tiny size (12 / 6 videos, tiny CLIP): a smoke run")
    args = ap.parse_args(argv)
    sizes = ["quick"] if args.quick else [s.strip() for s in args.sizes.split(",") if s.strip()]
    for s in sizes:
        if s not in SIZES:
            ap.error(f"unknown size '{s}' (choose from thumos14, anet12)")
    for opt in ("max_steps", "max_videos"):
        setattr(args, opt, per_size(getattr(args, opt), sizes, ap, "--" + opt.replace("_", "-")))

    import torch

    from wtalkit.device import resolve_device

    device = str(resolve_device(args.device))
    if device.startswith("cuda"):
        device_name = torch.cuda.get_device_name(torch.device(device))
    else:
        info = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
        cpu = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), "CPU")
        device_name = f"{cpu}, {torch.get_num_threads()} torch threads"
    out = args.out or Path(tempfile.mkdtemp(prefix="wtalkit-bench-walltime-"))
    try:
        results = {s: measure(s, out, args, device) for s in sizes}
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    print(table(results, f"{device} ({device_name}), precision {args.precision}"))
    print(
        "\nW, B, F: one warm-up / B-step / F-step epoch; R: the round's end (agreement of the branches over the "
        "training split); L: localize the test split. 'full': measured whole; 'N steps × s': N timed steps "
        "(after an untimed one) scaled by s to the whole epoch / split. Protocol numbers from the preset."
    )
    for size, r in results.items():
        if not all(r["last_losses"].get(f"fb {s}") for s in "BF"):
            zero = " and ".join(s for s in "BF" if not r["last_losses"].get(f"fb {s}"))
            print(
                f"\n{size}: L_fb was 0 in the {zero} step{'s' if ' and ' in zero else ''} (no confident pairs on random features): its cost is not in the figures."
            )
    if args.json:
        payload = {"device": device, "device_name": device_name, "precision": args.precision,
                   "sizes": results}  # fmt: skip
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
