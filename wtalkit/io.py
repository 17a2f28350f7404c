"""File I/O: atomic writes (a reader never sees a half-written file) and list files.

Everything wtalkit writes goes through these helpers: the content is written
to a temporary file in the destination folder, flushed, then renamed over the
target, so an interrupted process leaves either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which is not thread-safe
# (extract writes from worker threads).
_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_path(path, suffix: str = ""):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj, indent: int | None = 1) -> None:
    write_text(path, json.dumps(obj, indent=indent) + "\n")


def save_npy(path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    write_bytes(path, buf.getvalue())


def read_list_file(path, what: str) -> list:
    """Non-empty, non-comment (``#``) lines of a UTF-8 text file, stripped (video lists, class names)."""
    from wtalkit.errors import WtalError

    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise WtalError(f"{path}: {what} is not a UTF-8 text file") from None
    return [l.strip() for l in lines if l.strip() and not l.strip().startswith("#")]


def save_torch(path, obj) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path, what: str = "checkpoint"):
    """Read a torch file without running code from it: ``weights_only=True`` always (tensors and
    plain containers only); any failure is a one-line :class:`WtalError`."""
    import torch

    from wtalkit.errors import WtalError

    path = Path(path)
    if not path.is_file():
        raise WtalError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle / zip / truncated-file errors, refused globals: all "not a ..."
        raise WtalError(f"{path}: not a readable {what} ({_load_failure(e)})") from None


def load_state_dict(path, what: str = "state dict") -> dict:
    """A file of weights as ``{name: tensor}``, read with :func:`load_torch` (no code runs).

    A ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper is unwrapped. A missing file, an unreadable
    one or one that holds no mapping of tensors is a one-line ``... not a loadable WHAT (why)``.
    """
    import torch

    from wtalkit.errors import WtalError

    path = Path(path)
    if not path.is_file():
        raise WtalError(f"weights file not found: {path}")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WtalError(f"{path}: not a loadable {what} ({_load_failure(e)})") from None
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WtalError(f"{path}: not a loadable {what} (expected a state dict: parameter names to tensors)")
    return sd


def _load_failure(e: Exception) -> str:
    """The one line that says why ``torch.load(weights_only=True)`` refused a file."""
    import re

    text = str(e)
    refused = re.search(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL) ([\w.]+)", text)
    if refused:
        return f"it would run code ({refused.group(1)}); wtalkit reads only tensors and plain values"
    if "Weights only load failed" in text:
        return "not a torch file of tensors and plain values"
    return text.strip().splitlines()[0][:160] if text.strip() else type(e).__name__


def check_output_file(path, overwrite: bool = False) -> None:
    """Fail before any work when ``-o FILE`` cannot be written: a folder, under a file, or an existing
    file without ``overwrite``."""
    from wtalkit.errors import WtalError

    p = Path(path)
    if p.is_dir():
        raise WtalError(f"-o: {p} is a folder")
    if p.exists() and not overwrite:
        raise WtalError(f"-o: {p} already exists; pass --overwrite to replace it")
    anc = p.parent.absolute()
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise WtalError(f"-o: cannot create folder {p.parent} ({anc} is a file)")
