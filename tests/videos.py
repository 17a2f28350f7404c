"""Synthetic test videos (H.264 mp4 through PyAV) and broken files."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_video(path, frames: np.ndarray, fps: float = 25, crf: int = 0, faststart: bool = False) -> Path:
    """Write uint8 ``[N, H, W, 3]`` RGB frames as an H.264 mp4 (crf 0 = near-lossless)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height = int(frames.shape[2]), int(frames.shape[1])
        s.pix_fmt = "yuv444p" if crf == 0 else "yuv420p"
        s.options = {"preset": "ultrafast", "crf": str(crf), "g": "8"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def colour_frames(colours, n_each, h: int = 48, w: int = 64) -> np.ndarray:
    """Flat-colour frames: ``colours[i]`` (RGB) repeated ``n_each[i]`` times."""
    out = [np.broadcast_to(np.asarray(c, np.uint8), (n, h, w, 3)) for c, n in zip(colours, n_each)]
    return np.ascontiguousarray(np.concatenate(out))


def ramp_frames(n: int, h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """Frame ``i`` encodes its index: a random texture plus a brightness ramp, distinct per frame."""
    rng = np.random.RandomState(seed)
    tex = rng.randint(0, 64, size=(h, w, 3))
    level = (np.arange(n) * 191 // max(1, n - 1))[:, None, None, None]
    return (tex[None] + level).clip(0, 255).astype(np.uint8)


def corrupt_copy(src, dst) -> Path:
    """A copy of an mp4 whose middle is overwritten with junk (opens, fails to decode)."""
    data = bytearray(Path(src).read_bytes())
    a = len(data) // 3
    data[a : a + max(64, len(data) // 3)] = b"\xff" * max(64, len(data) // 3)
    Path(dst).write_bytes(bytes(data))
    return Path(dst)


def truncated_copy(src, dst) -> Path:
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: len(data) // 2])
    return Path(dst)


def coded_frames(n: int, h: int = 48, w: int = 64) -> np.ndarray:
    """Frame ``i`` shows ``i`` in binary: 8 black/white blocks (2 rows x 4), robust to compression."""
    if n > 256:
        raise ValueError("at most 256 coded frames")
    bits = (np.arange(n)[:, None] >> np.arange(8)[None]) & 1  # [n, 8]
    blocks = bits.reshape(n, 2, 4).astype(np.uint8) * 255
    img = np.repeat(np.repeat(blocks, h // 2, axis=1), w // 4, axis=2)  # [n, h, w]
    return np.ascontiguousarray(np.repeat(img[..., None], 3, axis=3))


def read_codes(frames: np.ndarray) -> np.ndarray:
    """Inverse of :func:`coded_frames` on decoded frames ``[n, h, w, 3]``."""
    n, h, w = frames.shape[:3]
    g = frames.astype(np.float32).mean(-1)
    # sample the centre of each block
    ys = np.arange(2) * (h // 2) + h // 4
    xs = np.arange(4) * (w // 4) + w // 8
    bits = (g[:, ys][:, :, xs] > 127).reshape(n, 8).astype(np.int64)
    return (bits << np.arange(8)[None]).sum(1)
