"""Run folders: config, training log, checkpoints, and the RNG state a resume restores.

A run folder holds ``config.yaml`` (the resolved config), ``log.jsonl`` (one
record per epoch / round), ``warmup.pt`` (the finished warm-up),
``round_K.pt`` and ``alternate.pt`` (alternate training), and
``checkpoints/*_last.pt`` (what an interrupted command resumes from).

A resume is bit-identical to an uninterrupted run (on CPU) because the
resumable checkpoint holds every state the rest of the run depends on (weights,
optimizer, RNG streams, position) and is written only once everything the
position covers is done (log records, round checkpoints, per-round
evaluation); log records carry their position, and those beyond the resumed
position (written by the interrupted run after its last resumable checkpoint)
are dropped on resume (:meth:`Run.trim_log`). The checkpoint also holds a
fingerprint of the dataset (:func:`dataset_fingerprint`): resuming on another
one is an error.

The checkpoint format itself is :mod:`wtalkit.models.checkpoint`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch

from wtalkit import io as wio
from wtalkit.config import Config
from wtalkit.errors import WtalError
from wtalkit.models.checkpoint import run_checkpoint


class Run:
    def __init__(self, path):
        self.path = Path(path)
        self._tb = None  # a TensorBoard writer, opened on the first record when tensorboard is installed

    def file(self, name: str) -> Path:
        return self.path / name

    def last(self, stage: str) -> Path:
        return self.path / "checkpoints" / f"{stage}_last.pt"

    def save_config(self, cfg: Config) -> None:
        wio.write_text(self.file("config.yaml"), cfg.to_yaml())

    def log(self, record: dict) -> None:
        """Append a record to ``log.jsonl`` and, when TensorBoard is installed, its numbers to ``tensorboard/``."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.file("log.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")
        self._tensorboard(record)

    def _tensorboard(self, record: dict) -> None:
        """Scalars ``STAGE/KEY`` at the record's epoch (warm-up) or plan position (alternate); mAP lists per tIoU."""
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # the optional extra wtalkit[tensorboard] is not installed
                self._tb = False
                return
            self._tb = SummaryWriter(str(self.path / "tensorboard"))
        if self._tb is False:
            return
        stage = str(record.get("stage", "train"))
        step = int(record.get("epoch", 0) if stage == "warmup" else record.get("position", record.get("round", 0)))
        for key, value in record.items():
            if key in ("stage", "epoch", "position", "round", "step", "seconds"):
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._tb.add_scalar(f"{stage}/{key}", value, step)
        if isinstance(record.get("mAP"), list) and isinstance(record.get("tiou"), list):
            for t, m in zip(record["tiou"], record["mAP"]):
                self._tb.add_scalar(f"{stage}/mAP@{t:g}", m, step)
        self._tb.flush()

    def records(self) -> list:
        """The readable records of ``log.jsonl`` (a line cut short by a kill is skipped)."""
        path = self.file("log.jsonl")
        if not path.is_file():
            return []
        out = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def trim_log(self, keep) -> None:
        """Rewrite ``log.jsonl`` with only the records for which ``keep(record)`` is true.

        A resume calls it to drop what the interrupted run logged after its last
        resumable checkpoint (the resumed run logs those epochs again), so the log
        of a resumed run equals that of an uninterrupted one.
        """
        path = self.file("log.jsonl")
        if not path.is_file():
            return
        text = path.read_text(encoding="utf-8", errors="replace")
        kept = "".join(json.dumps(r) + "\n" for r in self.records() if keep(r))
        if kept != text:
            wio.write_text(path, kept)

    def resolve(self) -> Path:
        """The checkpoint inference uses (see :func:`wtalkit.models.checkpoint.run_checkpoint`)."""
        return run_checkpoint(self.path)


def rng_state(np_rng: np.random.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np_rng.bit_generator.state}
    if torch.cuda.is_available():  # dropout on a GPU draws from the CUDA generators
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict, np_rng: np.random.Generator) -> None:
    torch.set_rng_state(state["torch"])
    np_rng.bit_generator.state = state["numpy"]
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


@contextlib.contextmanager
def isolated_rng():
    """Run a block (a per-round evaluation, say) without it drawing from the training's torch RNG streams.

    Whatever the block draws (building a model initialises its parameters) comes from a copy of the
    CPU and CUDA generators, restored afterwards: the training after it is the same whether the block
    ran or not, and hence whether a run was resumed before or after it.
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        yield


def dataset_fingerprint(classes, videos, metas: dict) -> dict:
    """What a resume checks it is continuing on: the class list, the training video ids and the
    feature metadata (dimension, grid, backbone) of each stream."""
    return {
        "classes": [str(c) for c in classes],
        "videos": [str(v) for v in videos],
        "streams": {s: (m.to_dict() if hasattr(m, "to_dict") else dict(m)) for s, m in sorted(metas.items())},
    }


def check_fingerprint(state: dict, current: dict, last) -> None:
    """A one-line error when the resumable checkpoint ``last`` (loaded as ``state``) was started on
    another dataset. Checkpoints written before fingerprints existed are checked on their class list and
    feature metadata."""
    saved = state.get("fingerprint")
    if not isinstance(saved, dict):
        saved = {k: state[k] for k in ("classes", "streams") if isinstance(state.get(k), (list, dict))}
    problem = None
    if "classes" in saved and list(saved["classes"]) != current["classes"]:
        old, new = list(saved["classes"]), current["classes"]
        diff = sorted(set(old) ^ set(new))
        problem = f"class list differs: {len(old)} classes, now {len(new)}" + (
            f", e.g. '{diff[0]}'" if diff else ", same names in another order"
        )
    elif "videos" in saved and list(saved["videos"]) != current["videos"]:
        old, new = list(saved["videos"]), current["videos"]
        diff = sorted(set(old) ^ set(new))
        problem = f"training videos differ: {len(old)} videos, now {len(new)}" + (
            f", e.g. '{diff[0]}'" if diff else ", same ids in another order"
        )
    elif "streams" in saved:
        for name, was in saved["streams"].items():
            now = current["streams"].get(name)
            if now != was:
                keys = [k for k in sorted(set(was) | set(now or {})) if (now or {}).get(k) != was.get(k)]
                detail = ", ".join(f"{k} {(now or {}).get(k)} (was {was.get(k)})" for k in keys[:2])
                problem = f"'{name}' feature metadata differs: {detail}"
                break
    if problem:
        raise WtalError(
            f"{last} was started on another dataset ({problem}); resume on the same dataset or pass --overwrite"
        )


def tensors_digest(state: dict) -> str:
    """A short hash of a state dict's names and tensor bytes (what a resume checks its starting point by)."""
    h = hashlib.sha256()
    for k in sorted(state):
        v = state[k]
        h.update(k.encode())
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous().reshape(-1)
            h.update(str(t.dtype).encode())
            h.update(t.view(torch.uint8).numpy().tobytes())
        else:
            h.update(repr(v).encode())
    return h.hexdigest()[:16]


def seed_everything(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def check_finite(values: dict, where: str, kept=None) -> None:
    """Stop a diverged training with a one-line error: a NaN or infinite epoch loss (read once per epoch,
    so no step waits for it). The epoch's checkpoint is not written; ``kept`` names the last one."""
    bad = sorted(k for k, v in values.items() if not math.isfinite(float(v)))
    if bad:
        keep = f"; the last finished epoch is kept in {kept}" if kept else ""
        raise WtalError(
            f"training diverged: the {', '.join(bad)} of {where} is not finite (lower optim.lr, or set "
            f"optim.grad_clip){keep}"
        )
