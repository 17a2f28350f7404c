"""Run folders: config, training log, checkpoints, and the RNG state a resume restores.

A run folder holds ``config.yaml`` (the resolved config), ``log.jsonl`` (one
record per epoch / round), ``warmup.pt`` (the finished warm-up),
``round_K.pt`` and ``alternate.pt`` (alternate training), and
``checkpoints/*_last.pt`` (what an interrupted command resumes from).

The checkpoint format itself is :mod:`wtalkit.models.checkpoint`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from wtalkit import io as wio
from wtalkit.config import Config
from wtalkit.models.checkpoint import run_checkpoint


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


def seed_everything(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)
