"""Run folders and checkpoints.

A run folder holds ``config.yaml`` (the resolved config), ``log.jsonl`` (one
record per epoch / round), ``warmup.pt`` (the finished warm-up),
``round_K.pt`` and ``alternate.pt`` (alternate training), and
``checkpoints/*_last.pt`` (what an interrupted command resumes from).

A checkpoint is a dict with ``kind``, ``config`` (resolved, as a dict),
``classes``, ``streams`` (stream name -> ``meta.json`` content), ``models``
(name -> state dict of the trainable parts), ``dataset`` (the folder it was
trained on) and, for resumable ones, ``optim`` and ``rng`` states.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from wtalkit import io as wio
from wtalkit.config import Config, config_from_dict
from wtalkit.data.features import StreamMeta
from wtalkit.errors import WtalError


class Run:
    def __init__(self, path):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def last(self, stage: str) -> Path:
        return self.path / "checkpoints" / f"{stage}_last.pt"

    def save_config(self, cfg: Config) -> None:
        wio.write_text(self.file("config.yaml"), cfg.to_yaml())

    def log(self, record: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.file("log.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")

    def resolve(self) -> Path:
        """The checkpoint inference uses: alternate.pt, else the last round, else warmup.pt."""
        for name in ("alternate.pt",):
            if self.file(name).exists():
                return self.file(name)
        rounds = sorted(self.path.glob("round_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
        if rounds:
            return rounds[-1]
        if self.file("warmup.pt").exists():
            return self.file("warmup.pt")
        raise WtalError(f"run folder {self.path} holds no trained checkpoint (run 'wtalkit warmup' first)")


def resolve_checkpoint(run_or_file) -> Path:
    p = Path(run_or_file)
    if p.is_file():
        return p
    if p.is_dir():
        return Run(p).resolve()
    raise WtalError(f"no run folder or checkpoint at {p}")


def load_checkpoint(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise WtalError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # corrupt / not a torch file
        raise WtalError(f"{path}: not a readable wtalkit checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or "models" not in ckpt or "config" not in ckpt:
        raise WtalError(f"{path}: not a wtalkit checkpoint")
    return ckpt


def checkpoint_config(ckpt: dict) -> Config:
    return config_from_dict(ckpt["config"])


def check_compatible(ckpt: dict, classes: list, metas: dict, where: str) -> None:
    """Clear errors when features or classes differ from those a checkpoint was trained on."""
    if list(ckpt["classes"]) != list(classes):
        diff = sorted(set(ckpt["classes"]) ^ set(classes))
        detail = f" (e.g. '{diff[0]}')" if diff else " (same names, other order)"
        raise WtalError(f"{where}: class list differs from the checkpoint's {len(ckpt['classes'])} classes{detail}")
    for name, meta in metas.items():
        if name not in ckpt["streams"]:
            continue
        want = StreamMeta.from_dict(ckpt["streams"][name])
        if meta.dim != want.dim:
            raise WtalError(f"{where}: '{name}' features have dimension {meta.dim}, the checkpoint expects {want.dim} ({want.backbone})")


def rng_state(np_rng: np.random.Generator) -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np_rng.bit_generator.state}


def restore_rng(state: dict, np_rng: np.random.Generator) -> None:
    torch.set_rng_state(state["torch"])
    np_rng.bit_generator.state = state["numpy"]


def seed_everything(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)
