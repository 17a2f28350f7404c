"""The checkpoint format of a CBP/VLP run, read safely.

A checkpoint is a dict with ``kind``, ``config`` (resolved, as a dict),
``classes``, ``streams`` (stream name -> ``meta.json`` content), ``models``
(name -> state dict of the trainable parts), ``dataset`` (the folder it was
trained on) and, for resumable ones, ``optim`` and ``rng`` states. Every value
is a tensor or a plain container of numbers and strings, so a checkpoint is
read with ``weights_only=True``: a file from elsewhere cannot run code here.
"""

from __future__ import annotations

from pathlib import Path

from wtalkit import io as wio
from wtalkit.config import Config, config_from_dict
from wtalkit.data.features import StreamMeta
from wtalkit.errors import WtalError


def run_checkpoint(folder) -> Path:
    """The checkpoint inference uses in a run folder: alternate.pt, else the last round, else warmup.pt."""
    folder = Path(folder)
    if (folder / "alternate.pt").exists():
        return folder / "alternate.pt"
    rounds = sorted(folder.glob("round_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
    if rounds:
        return rounds[-1]
    if (folder / "warmup.pt").exists():
        return folder / "warmup.pt"
    raise WtalError(f"run folder {folder} holds no trained checkpoint (run 'wtalkit warmup' first)")


def resolve_checkpoint(run_or_file) -> Path:
    p = Path(run_or_file)
    if p.is_file():
        return p
    if p.is_dir():
        return run_checkpoint(p)
    raise WtalError(f"no run folder or checkpoint at {p}")


def load_checkpoint(path) -> dict:
    """A wtalkit checkpoint as a dict (tensors and plain values only; nothing in it is executed)."""
    ckpt = wio.load_torch(path, "wtalkit checkpoint")
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
            raise WtalError(
                f"{where}: '{name}' features have dimension {meta.dim}, the checkpoint expects {want.dim} ({want.backbone})"
            )
