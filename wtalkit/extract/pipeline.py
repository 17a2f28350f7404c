"""Video -> feature streams: the snippet grid, the decode/encode pipeline, whole datasets.

One stream = one encoder on one snippet grid (:class:`StreamSpec`). For each
stream a video is decoded once, on the stream's time grid, keeping only the
grid frames the stream needs (the centre frame of each snippet for ``vlp``,
every frame for ``cbp``). Decoding and preprocessing run in a background
thread feeding a bounded queue, so they overlap with the network (which
releases the GIL); the encoder works on batches under ``inference_mode``.

Everything needed to rebuild a stream's encoder is in its backbone name, which
is what ``meta.json`` (and so a checkpoint's stream metas) records::

    clip:ViT-B/16           CLIP image embedding of each snippet's centre frame
    clip:ViT-B/16@mean4     ... mean of 4 evenly spaced frames of each snippet
    torchvision:r2plus1d_18 Kinetics-400 R(2+1)D-18 on the snippet's frames, pooled
    i3d-kinetics-rgb+flow   two-stream I3D, RGB || TV-L1 flow (the public WTAL features)
    i3d-kinetics-rgb+flow@raft_large   ... with RAFT flow instead of TV-L1

The trailing partial snippet: a video of ``n`` grid frames has
``T = ceil(n / stride)`` snippets, every snippet that starts inside the video
(so a detection can reach the video's end). Frames a snippet needs beyond the
last grid frame are the last frame repeated (for I3D flow this means zero
motion there), for every stream: a video classifier sees the padded clip, a
CLIP stream's centre (or k) frames past the end are the last frame. The last
snippet still owns ``[k*stride/fps, (k+1)*stride/fps)``, which may end up to one
stride after the video does. (Public feature extractors mostly drop that
snippet; scoring it changes nothing for the snippets before it.)

:func:`spec_from_meta` turns a :class:`~wtalkit.data.features.StreamMeta` back
into a :class:`StreamSpec` (``weights`` maps a backbone to a local file).
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wtalkit.data.features import StreamMeta
from wtalkit.errors import WtalError
from wtalkit.extract.video import VideoInfo, grid_length, iter_grid_frames, probe
from wtalkit.extract.weights import file_digest
from wtalkit.timeaxis import SnippetGrid

DEFAULT_CLIP = "ViT-B/16"
DEFAULT_CBP = "r2plus1d_18"

_MEAN_SUFFIX = re.compile(r"^(?P<enc>.+)@mean(?P<k>\d+)$")


# --------------------------------------------------------------------------- stream specs


@dataclass(frozen=True)
class StreamSpec:
    """What one feature stream is: an encoder and the snippet grid it runs on.

    ``encoder``: ``clip:NAME_OR_PATH``, ``torchvision:ARCH`` or an I3D name
    (``i3d-kinetics-rgb+flow[@FLOW]``, see :mod:`wtalkit.extract.i3d`).
    ``frames_per_snippet`` (CLIP only): 1 = the snippet's centre frame, k > 1 =
    the mean of the embeddings of k evenly spaced frames of the snippet.
    ``weights``: a local file to load instead of the backbone's standard weights
    (for I3D ``rgb=RGB.pt,flow=FLOW.pt[,raft=RAFT.pth]``).
    """

    encoder: str
    fps: float = 25.0
    snippet_length: int = 16
    snippet_stride: int = 16
    frames_per_snippet: int = 1
    weights: str | None = None

    def __post_init__(self):
        if not (self.encoder.startswith(("clip:", "torchvision:")) or _is_i3d(self.encoder)):
            raise WtalError(
                f"unknown feature encoder '{self.encoder}' (expected clip:MODEL, torchvision:ARCH or {_i3d_name()})"
            )
        if not (self.fps > 0) or self.snippet_length < 1 or self.snippet_stride < 1:
            raise WtalError("fps, snippet length and snippet stride must be positive")
        if self.frames_per_snippet < 1 or self.frames_per_snippet > self.snippet_length:
            raise WtalError(
                f"frames per snippet must be between 1 and the snippet length ({self.snippet_length}), "
                f"got {self.frames_per_snippet}"
            )
        if self.kind != "clip" and self.frames_per_snippet != 1:
            raise WtalError("frames per snippet only applies to CLIP streams (video models see the whole snippet)")

    @property
    def kind(self) -> str:
        """``clip``, ``torchvision`` or ``i3d``."""
        return "i3d" if _is_i3d(self.encoder) else self.encoder.split(":", 1)[0]

    @property
    def backbone(self) -> str:
        """The name recorded in ``meta.json``: encoder plus ``@meanK`` when k > 1."""
        return self.encoder + (f"@mean{self.frames_per_snippet}" if self.frames_per_snippet > 1 else "")

    @property
    def grid(self) -> SnippetGrid:
        return SnippetGrid(self.fps, self.snippet_length, self.snippet_stride)

    def meta(self, dim: int) -> StreamMeta:
        return StreamMeta(self.backbone, int(dim), float(self.fps), self.snippet_length, self.snippet_stride)


def _is_i3d(encoder: str) -> bool:
    from wtalkit.extract.i3d import is_i3d_backbone

    return is_i3d_backbone(encoder)


def _i3d_name() -> str:
    from wtalkit.extract.i3d import I3D_BACKBONE

    return I3D_BACKBONE


def vlp_spec(
    clip: str = DEFAULT_CLIP,
    frames_per_snippet: int = 1,
    fps: float = 25.0,
    snippet_length: int = 16,
    snippet_stride: int = 16,
    weights=None,
) -> StreamSpec:
    """The ``vlp`` stream: CLIP image embeddings (``clip`` is a clip-anytorch name or a checkpoint path)."""
    from wtalkit.extract.encoders import clip_backbone_name

    if weights is None and Path(str(clip)).expanduser().is_file():
        weights = Path(str(clip)).expanduser()  # the file itself; the recorded name is its content hash
    return StreamSpec(
        clip_backbone_name(clip),
        fps,
        snippet_length,
        snippet_stride,
        frames_per_snippet,
        str(weights) if weights else None,
    )


def cbp_spec(
    backbone: str = DEFAULT_CBP,
    weights=None,
    fps: float = 25.0,
    snippet_length: int = 16,
    snippet_stride: int = 16,
    flow: str | None = None,
    flow_weights=None,
) -> StreamSpec:
    """The ``cbp`` stream: a Kinetics-400 torchvision video classifier pooled per snippet, or two-stream I3D.

    ``backbone``: ``r2plus1d_18`` (``torchvision:`` prefix optional), ..., or ``i3d``
    (also the full I3D backbone name). For I3D, ``weights`` is
    ``rgb=RGB.pt,flow=FLOW.pt`` (parts left out come from the weights cache),
    ``flow`` the optical flow method (``tvl1`` default, ``raft``, ``raft_small``)
    and ``flow_weights`` a local RAFT state dict.
    """
    from wtalkit.extract.encoders import VIDEO_ARCHS
    from wtalkit.extract.i3d import format_i3d_weights, i3d_backbone_name, parse_i3d_backbone, parse_i3d_weights

    i3d_flow = "tvl1" if backbone == "i3d" else parse_i3d_backbone(backbone)
    if i3d_flow is not None:
        if flow is not None:
            i3d_flow = flow
        parts = parse_i3d_weights(weights)
        if flow_weights:
            parts["raft"] = str(flow_weights)
        parts = {k: str(Path(v).expanduser().resolve()) for k, v in parts.items()}
        encoder = i3d_backbone_name(i3d_flow)
        if parts.get("raft") and encoder == _i3d_name():
            raise WtalError("--flow-weights is for RAFT flow (--flow raft or raft_small); TV-L1 has no weights")
        return StreamSpec(encoder, fps, snippet_length, snippet_stride, 1, format_i3d_weights(parts))
    if flow is not None or flow_weights:
        raise WtalError(f"--flow and --flow-weights only apply to --cbp-backbone i3d (got '{backbone}')")
    arch = backbone[len("torchvision:") :] if backbone.startswith("torchvision:") else backbone
    if arch not in VIDEO_ARCHS:
        raise WtalError(f"unknown CBP backbone '{backbone}' (choose from {', '.join(VIDEO_ARCHS)}, i3d)")
    encoder = f"torchvision:{arch}"
    if weights:  # local weights: recorded by content (wtalkit.extract.weights), so they are found again
        if not Path(weights).expanduser().is_file():
            raise WtalError(f"--cbp-weights: weights file not found: {weights}")
        encoder = f"torchvision:{arch}#sha256={file_digest(Path(weights).expanduser())}"
    return StreamSpec(encoder, fps, snippet_length, snippet_stride, 1, str(weights) if weights else None)


def parse_backbone(backbone: str) -> tuple[str, int]:
    """``"clip:ViT-B/16@mean4"`` -> ``("clip:ViT-B/16", 4)``; no suffix -> k = 1."""
    m = _MEAN_SUFFIX.match(backbone)
    if m:
        return m.group("enc"), int(m.group("k"))
    return backbone, 1


def spec_from_meta(meta: StreamMeta, weights: dict | None = None) -> StreamSpec:
    """Rebuild the :class:`StreamSpec` that produced a stream, from its ``meta.json`` / checkpoint meta.

    ``weights`` maps a backbone (``"clip:ViT-B/16"``, ``"torchvision:r2plus1d_18"``,
    ``"i3d-kinetics-rgb+flow"``; the full name with ``@meanK`` works too) to a local
    weights file to use instead of the standard one (for I3D the
    ``rgb=...,flow=...`` string). I3D features imported from the public releases
    (``i3d-kinetics-rgb+flow``) are rebuilt by wtalkit's I3D. Raises WtalError for
    backbones no wtalkit encoder makes.
    """
    encoder, k = parse_backbone(meta.backbone)
    if not (encoder.startswith("clip:") or encoder.startswith("torchvision:") or _is_i3d(encoder)):
        raise WtalError(
            f"stream backbone '{meta.backbone}' was not made by wtalkit extract "
            f"(expected clip:MODEL, torchvision:ARCH or {_i3d_name()}); extract features for this video "
            f"with the same tool"
        )
    w = None
    if weights:
        w = weights.get(meta.backbone) or weights.get(encoder)
    return StreamSpec(
        encoder, float(meta.fps), int(meta.snippet_length), int(meta.snippet_stride), k, str(w) if w else None
    )


def build_encoder(spec: StreamSpec, device="cpu", precision: str = "auto"):
    """The encoder object for a stream (loads the weights)."""
    from wtalkit.extract.encoders import ClipImageEncoder, VideoClassifierEncoder

    if spec.kind == "clip":
        return ClipImageEncoder(spec.encoder, device=device, precision=precision, weights=spec.weights)
    if spec.kind == "i3d":
        from wtalkit.extract.i3d import I3DEncoder, parse_i3d_backbone

        flow = parse_i3d_backbone(spec.encoder)
        return I3DEncoder(spec.weights, flow=flow, device=device, precision=precision)
    return VideoClassifierEncoder(spec.encoder, device=device, precision=precision, weights=spec.weights)


# --------------------------------------------------------------------------- background decoding


class _Stop(Exception):
    pass


def prefetch(iterable: Iterable, depth: int = 2, threads: int = 1) -> Iterator:
    """Iterate ``iterable`` in a background thread through a queue of ``depth`` items.

    Decoding (decord) and torch preprocessing release the GIL, so the producer
    really runs beside the encoder. Exceptions are re-raised in the consumer;
    if the consumer stops early the producer is told to stop and joined.
    ``threads``: torch intra-op threads for the producer's own torch work.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    done = object()

    def put(item) -> None:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stop

    def producer():
        import torch

        # One intra-op thread here: the encoder's kernels own the cores, and two
        # OpenMP teams spinning on the same cores slow both down. (The setting
        # is per thread; restoring it leaves the default for new threads as it was.)
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            for item in iterable:
                put((None, item))
            put((None, done))
        except _Stop:
            pass
        except BaseException as e:
            try:
                put((e, None))
            except _Stop:
                pass
        finally:
            torch.set_num_threads(previous)

    t = threading.Thread(target=producer, name="wtalkit-decode", daemon=True)
    t.start()
    try:
        while True:
            err, item = q.get()
            if err is not None:
                raise err
            if item is done:
                return
            yield item
    finally:
        stop.set()
        t.join()


# --------------------------------------------------------------------------- one video


def num_snippets(info: VideoInfo, spec: StreamSpec) -> int:
    """T: snippets of the stream's grid in the video, the trailing partial one included."""
    return spec.grid.num_snippets(grid_length(info, spec.fps))


def _check_length(path, info: VideoInfo, spec: StreamSpec) -> int:
    t = num_snippets(info, spec)
    if t == 0:
        raise WtalError(f"{path}: no frame on the {spec.fps:g} fps grid ({info.duration:.3f} s)")
    return t


def _snippet_frames(starts, length: int, n_frames: int):
    """Grid frames ``[len(starts), length]`` of snippets; frames past the video's end are its last frame."""
    return np.minimum(np.asarray(starts)[:, None] + np.arange(length)[None], n_frames - 1)


def _extract_clip(path, info, spec, enc, T, batch, advance):
    grid = spec.grid
    n = grid_length(info, spec.fps)
    idx = np.minimum(grid.frame_indices(np.arange(T), spec.frames_per_snippet), n - 1)  # [T, k] grid frames
    uniq = np.unique(idx)
    emb = np.zeros((len(uniq), enc.dim), np.float32)
    frames_iter = iter_grid_frames(path, spec.fps, batch=batch, indices=uniq, size=enc.decode_size, info=info)
    pos, covered = 0, 0
    with contextlib.closing(prefetch((g, enc.preprocess(f)) for g, f in frames_iter)) as batches:
        for g, x in batches:
            emb[pos : pos + len(g)] = enc.encode_preprocessed(x)
            pos += len(g)
            new = int(min(grid_length(info, spec.fps), g[-1] + 1))  # grid frames covered so far
            advance(new - covered)
            covered = new
    if pos != len(uniq):
        raise WtalError(f"{path}: decoded {pos} of {len(uniq)} frames")
    advance(grid_length(info, spec.fps) - covered)  # the tail after the last centre frame
    feats = emb[np.searchsorted(uniq, idx)]  # [T, k, D]
    return feats.mean(1) if feats.shape[1] > 1 else feats[:, 0]


def _extract_clips(path, info, spec, enc, T, batch, advance):
    """Video classifier / I3D: each snippet's ``length`` grid frames are one clip (padded at the end).

    An encoder with ``preprocess_stream`` (I3D) gets the decoded batches in grid
    order instead of one batch at a time (its flow pairs each frame with the next),
    and ``extra_frames`` more frames after each snippet are decoded for it.
    """
    import torch

    L, stride = spec.snippet_length, spec.snippet_stride
    n = grid_length(info, spec.fps)
    starts = np.arange(T) * stride
    extra = int(getattr(enc, "extra_frames", 0))
    needed = np.unique(_snippet_frames(starts, L + extra, n).ravel())
    last_of = np.minimum(starts + L - 1, n - 1)  # the last real frame each snippet needs
    per_batch = max(1, batch // L)  # snippets per forward pass
    out = np.zeros((T, enc.dim), np.float32)
    buf_idx = np.zeros(0, np.int64)
    buf = None
    k = 0  # next snippet to encode
    covered = 0
    frames_iter = iter_grid_frames(path, spec.fps, batch=max(batch, L), indices=needed, size=enc.decode_size, info=info)
    if hasattr(enc, "preprocess_stream"):
        produced = enc.preprocess_stream(frames_iter)
    else:
        produced = ((g, enc.preprocess(f)) for g, f in frames_iter)
    with contextlib.closing(prefetch(produced)) as batches:
        for g, x in batches:
            buf_idx = np.concatenate([buf_idx, g])
            buf = x if buf is None else torch.cat([buf, x])
            last = int(buf_idx[-1])
            ready = 0  # snippets whose last frame has been decoded
            while k + ready < T and last_of[k + ready] <= last:
                ready += 1
            while ready >= per_batch or (ready > 0 and k + ready == T):
                m = min(ready, per_batch)
                sel = np.searchsorted(buf_idx, _snippet_frames(starts[k : k + m], L, n))  # [m, L]
                clips = buf[torch.from_numpy(sel.ravel())].reshape(m, L, *buf.shape[1:])
                out[k : k + m] = enc.encode_preprocessed(clips)
                k += m
                ready -= m
                new = int(starts[k - 1] + stride) if k < T else n
                advance(new - covered)
                covered = new
            if k < T:  # drop frames no later snippet uses
                keep = buf_idx >= starts[k]
                buf_idx, buf = buf_idx[keep], buf[torch.from_numpy(keep)]
    if k != T:
        raise WtalError(f"{path}: decoded frames for {k} of {T} snippets")
    advance(n - covered)
    return out


def extract_video(
    path,
    streams: dict,
    device="cpu",
    precision: str = "auto",
    encoders: dict | None = None,
    batch: int = 32,
    progress: Callable[[float], None] | None = None,
    info: VideoInfo | None = None,
) -> dict:
    """Features ``{stream name: float32 [T, D]}`` of one video.

    ``streams``: ``{name: StreamSpec}``. ``encoders``: already built encoders by
    stream name (built here when missing, e.g. for a single video in
    ``wtalkit localize``). ``batch``: frames per forward pass. ``progress`` is
    called with increments of video (grid) frames processed, divided evenly
    between the streams. Raises WtalError (one line) if the video cannot be
    decoded or has no frame on a stream's grid. Snippets: ``ceil(grid frames / stride)``,
    the trailing partial one padded with the last frame (module docstring).
    """
    import torch

    path = Path(path)
    info = probe(path) if info is None else info
    sizes = {name: _check_length(path, info, spec) for name, spec in streams.items()}
    encoders = dict(encoders or {})
    share = 1.0 / max(1, len(streams))

    def advance(n):
        if progress is not None and n > 0:
            progress(n * share)

    out = {}
    with torch.inference_mode():
        for name, spec in streams.items():
            enc = encoders.get(name) or build_encoder(spec, device, precision)
            encoders[name] = enc
            fn = _extract_clip if spec.kind == "clip" else _extract_clips
            feats = fn(path, info, spec, enc, sizes[name], batch, advance)
            if not np.isfinite(feats).all():
                raise WtalError(f"{path}: the '{name}' encoder produced NaN or infinite features")
            out[name] = feats.astype(np.float32, copy=False)
    return out


# --------------------------------------------------------------------------- one video, as a dataset step


@dataclass
class VideoResult:
    """One video's outcome in a dataset run (a row of the end-of-run summary)."""

    name: str
    path: str
    status: str  # "done" | "skipped" (already extracted) | "failed"
    snippets: int = 0
    seconds: float = 0.0  # wall-clock time spent on it
    frames: float = 0.0  # grid frames processed (summed over streams, divided by their number)
    error: str | None = None
    precision: dict = field(default_factory=dict)  # stream -> precision used


def error_line(e: BaseException) -> str:
    """A failure as one line: a WtalError's own message, else the exception's type and message."""
    if isinstance(e, WtalError):
        return str(e)
    msg = " ".join(str(e).split())[:200]
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def video_frames(info, streams: dict) -> float:
    """A video's length in the units of the progress callbacks: grid frames, averaged over the streams."""
    return sum(grid_length(info, spec.fps) for spec in streams.values()) / max(1, len(streams))


def process_video(path, name, streams, encoders, advance=None, on_length=None):
    """Extract one video's features, writing nothing: the one per-video step of every backend.

    Local extraction (one video at a time or in threads) and Ray tasks both call
    this; the caller commits the features with :func:`write_video_features`
    (on Ray, the driver does, so a killed worker never leaves a file behind).
    ``advance(frames)`` is called as grid frames are processed (a video's
    total is :func:`video_frames`, passed to ``on_length`` once the video is
    probed). Returns ``(VideoResult, VideoInfo | None, {stream: float32 [T, D]} | None,
    {stream: check cosine})``; never raises for a bad video (status ``failed``).
    """
    t0 = time.perf_counter()
    frames = [0.0]

    def counted(n):
        frames[0] += n
        if advance is not None:
            advance(n)

    def cosines():
        return {s: getattr(e, "check_cosine", None) for s, e in encoders.items()}

    try:
        info = probe(path)
        if on_length is not None:
            on_length(video_frames(info, streams))
        feats = extract_video(path, streams, encoders=encoders, progress=counted, info=info)
        snippets = min(len(x) for x in feats.values())
        result = VideoResult(
            name,
            str(path),
            "done",
            snippets,
            time.perf_counter() - t0,
            frames[0],
            precision={s: e.precision for s, e in encoders.items()},
        )
        return result, info, feats, cosines()
    except (KeyboardInterrupt, SystemExit):
        raise
    except MemoryError:
        raise
    except Exception as e:  # any per-video failure is reported and the batch goes on
        if not isinstance(e, WtalError) and os.environ.get("WTALKIT_DEBUG"):
            traceback.print_exc()
        failed = VideoResult(name, str(path), "failed", 0, time.perf_counter() - t0, frames[0], error_line(e))
        return failed, None, None, cosines()


def write_video_features(out_dir, name, feats: dict) -> None:
    """Commit one video's stream files (each written atomically; the video is done when all exist)."""
    from wtalkit.data.features import FeatureStream

    for sname, x in feats.items():
        FeatureStream(Path(out_dir) / "features" / sname).write(name, x)
