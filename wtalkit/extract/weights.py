"""Weight files by content: a run records *which* file made its features, never *where* it was.

A backbone that ran on a local weight file is recorded as ``NAME#sha256=HEX`` (the file's name and
the first 16 hex digits of its SHA-256), e.g. ``clip:my_clip.pt#sha256=1a2b...``. To extract the same
features again (``localize`` on a raw video, ``extract`` into the dataset), the file is looked up in
the weights cache, ``$WTALKIT_WEIGHTS`` or ``~/.cache/wtalkit/weights`` (and clip-anytorch's CLIP
cache): by its name first, then by content, so a renamed copy is found too. Datasets and runs can
then move between machines; ``meta.json`` holds no absolute path.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from wtalkit.errors import WtalError

_HASHED = re.compile(r"^(?P<name>.*)#sha256=(?P<digest>[0-9a-f]{16})$")
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def weights_cache_dir() -> Path:
    """``$WTALKIT_WEIGHTS`` or ``~/.cache/wtalkit/weights``: where weight files are found again."""
    env = os.environ.get("WTALKIT_WEIGHTS")
    return Path(env).expanduser() if env else Path("~/.cache/wtalkit/weights").expanduser()


def file_digest(path) -> str:
    """The first 16 hex digits of a file's SHA-256 (read in 1 MB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def hashed_name(prefix: str, path) -> str:
    """``PREFIX + FILE_NAME#sha256=HEX`` for a local weight file."""
    path = Path(path)
    return f"{prefix}{path.name}#sha256={file_digest(path)}"


def split_hashed(name: str) -> tuple[str, str | None]:
    """``"clip:x.pt#sha256=HEX"`` -> ``("clip:x.pt", "HEX")``; a name without a digest -> ``(name, None)``."""
    m = _HASHED.match(name)
    return (m.group("name"), m.group("digest")) if m else (name, None)


def find_weights(file_name: str | None, digest: str, what: str, extra_dirs=()) -> Path:
    """The cached file with this content: by ``file_name`` first (when known), then any weight file;
    a one-line error if there is none."""
    dirs = [weights_cache_dir(), *[Path(d) for d in extra_dirs]]
    for d in dirs if file_name else ():
        p = d / file_name
        if p.is_file() and file_digest(p) == digest:
            return p
    for d in dirs:
        if d.is_dir():
            for p in sorted(d.iterdir()):
                if p.is_file() and p.suffix.lower() in WEIGHT_SUFFIXES and file_digest(p) == digest:
                    return p
    raise WtalError(
        f"the {what} weights these features were made with ({file_name or 'a local file'}, sha256 {digest}...) are not in "
        f"{weights_cache_dir()}: put the file there (or set WTALKIT_WEIGHTS), or pass it explicitly"
    )
