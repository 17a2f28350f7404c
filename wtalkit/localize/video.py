"""Localize actions in raw videos: rebuild the checkpoint's feature streams, then infer.

A checkpoint records, for each stream it was trained on, the ``meta.json`` of
its features: backbone, dimension and snippet grid. When the backbone is one
``wtalkit extract`` makes (``clip:...``, ``torchvision:...``, two-stream I3D
``i3d-kinetics-rgb+flow``) the same encoder on the same grid turns a video into
the features the model expects, so ``wtalkit localize video.mp4 RUN`` needs no
separate extraction step. That includes runs trained on the public THUMOS14 /
ActivityNet I3D features (``wtalkit import-thumos`` records the same backbone
name): their videos are encoded by wtalkit's I3D with TV-L1 flow (close to, not
bit-identical with, the releases; see :mod:`wtalkit.extract.i3d`). Other
backbones (synthetic data, unknown extractors) cannot be rebuilt: those
checkpoints take ``.npy`` feature files instead.

The library function is :func:`localize_videos`; :class:`VideoFeatures` is
the reusable part (encoders built once, checked against the checkpoint).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wtalkit.data.features import StreamMeta
from wtalkit.errors import WtalError


@dataclass
class LocalizedVideo:
    """One video's outcome, handed to ``on_video`` (for figures): its features are on the checkpoint's grids."""

    name: str
    path: Path
    duration: float  # seconds
    feats: dict  # stream -> float32 [T, D]
    metas: dict  # stream -> StreamMeta
    detections: list
    probs: np.ndarray  # [T, C] frame scores of the predictor's branch, on its first stream's grid
    video_scores: np.ndarray  # [C]


def clip_to_duration(dets: list, duration: float | None) -> list:
    """Detections with their segments cut at the video's end (``duration`` seconds, floored to the ms).

    The trailing partial snippet owns a full stride of time, so a segment reaching
    it can end up to one stride after the video does; a segment starting after the
    end is dropped. ``duration`` None or not positive: unchanged.
    """
    if not duration or not duration > 0:
        return dets
    end = math.floor(float(duration) * 1000.0) / 1000.0
    out = []
    for d in dets:
        s, e = d["segment"]
        if s >= end:
            continue
        out.append({**d, "segment": [s, min(e, end)]})
    return out


def _encoder_of(meta: StreamMeta) -> str:
    from wtalkit.extract.pipeline import parse_backbone

    return parse_backbone(meta.backbone)[0]


def _is_i3d(encoder: str) -> bool:
    from wtalkit.extract.i3d import is_i3d_backbone

    return is_i3d_backbone(encoder)


def is_extractable(meta: StreamMeta) -> bool:
    """True when ``wtalkit extract`` can rebuild this stream (a CLIP, torchvision or I3D backbone)."""
    enc = _encoder_of(meta)
    return enc.startswith(("clip:", "torchvision:")) or _is_i3d(enc)


def _i3d_weights(opt: str, cbp_weights, flow_weights) -> str | None:
    """``--cbp-weights rgb=..,flow=..`` (+ ``--flow-weights``) -> the I3D weights string, files checked."""
    from wtalkit.extract.i3d import format_i3d_weights, parse_i3d_weights

    try:
        parts = parse_i3d_weights(cbp_weights)
    except WtalError as e:
        raise WtalError(f"{opt}: {e}") from None
    if flow_weights:
        parts["raft"] = str(flow_weights)
    for key, path in parts.items():
        if not Path(path).expanduser().is_file():
            raise WtalError(f"{opt}: {key} weights file not found: {path}")
    return format_i3d_weights({k: str(Path(v).expanduser()) for k, v in parts.items()})


def weights_for(metas: dict, streams, clip_weights=None, cbp_weights=None, flow_weights=None) -> dict:
    """The ``weights`` mapping :func:`~wtalkit.extract.pipeline.spec_from_meta` reads, from the CLI's options.

    ``clip_weights`` replaces the weights of every CLIP stream, ``cbp_weights``
    those of every torchvision video stream (keyed by backbone, without any
    ``@meanK``) or, written ``rgb=RGB.pt,flow=FLOW.pt``, of every I3D stream;
    ``flow_weights`` is a RAFT state dict for I3D streams extracted with RAFT
    flow. A file that no stream of the checkpoint uses is an error: it would
    otherwise be silently ignored.
    """
    from wtalkit.extract.i3d import parse_i3d_backbone

    out: dict = {}
    encoders = [_encoder_of(metas[s]) for s in streams]
    i3d = [e for e in encoders if _is_i3d(e)]
    backbones = ", ".join(f"{s}: {metas[s].backbone}" for s in streams)
    if flow_weights and not [e for e in i3d if parse_i3d_backbone(e) != "tvl1"]:
        raise WtalError(
            f"--flow-weights was given but no stream of the checkpoint uses I3D with RAFT flow ({backbones})"
        )
    if cbp_weights and i3d:
        # I3D takes two files (rgb=,flow=); a torchvision stream beside it would need a third option
        weights = _i3d_weights("--cbp-weights", cbp_weights, flow_weights)
        for enc in i3d:
            out[enc] = weights
        cbp_weights = None if not [e for e in encoders if e.startswith("torchvision:")] else cbp_weights
        if cbp_weights:
            raise WtalError("--cbp-weights cannot name both the I3D and the torchvision weights of one checkpoint")
    elif flow_weights:
        for enc in i3d:
            out[enc] = _i3d_weights("--flow-weights", None, flow_weights)
    for opt, path, prefix, what in (
        ("--clip-weights", clip_weights, "clip:", "CLIP"),
        ("--cbp-weights", cbp_weights, "torchvision:", "torchvision video"),
    ):
        if not path:
            continue
        if "=" in str(path) and not Path(path).is_file() and prefix == "torchvision:":
            raise WtalError(
                f"{opt}: rgb=...,flow=... weights are for I3D, but no stream of the checkpoint uses I3D ({backbones})"
            )
        if not Path(path).is_file():
            raise WtalError(f"{opt}: weights file not found: {path}")
        used = [e for e in encoders if e.startswith(prefix)]
        if not used:
            raise WtalError(f"{opt} was given but no stream of the checkpoint uses a {what} backbone ({backbones})")
        for enc in used:
            out[enc] = str(path)
    return out


def stream_specs(metas: dict, streams, weights: dict | None = None) -> dict:
    """``{stream: StreamSpec}`` rebuilding each stream as the checkpoint's features were made.

    One-line WtalError for a backbone wtalkit cannot extract.
    """
    from wtalkit.extract.pipeline import spec_from_meta

    specs = {}
    for s in streams:
        if s not in metas:
            raise WtalError(f"the checkpoint records no '{s}' feature stream")
        meta = metas[s]
        if not is_extractable(meta):
            raise WtalError(
                f"the checkpoint's '{s}' stream was trained on '{meta.backbone}' features, which wtalkit "
                f"cannot extract from videos; extract them externally and pass the .npy files instead"
            )
        specs[s] = spec_from_meta(meta, weights)
    return specs


class VideoFeatures:
    """Turns videos into the feature streams a checkpoint was trained on.

    The encoders are built once (the expensive part: loading weights) and each
    one's output dimension is checked against the checkpoint before any video
    is decoded, so a wrong ``--clip-weights`` fails at once and clearly.
    """

    def __init__(self, metas: dict, streams, weights: dict | None = None, device="cpu", precision: str = "auto"):
        from wtalkit.extract.pipeline import build_encoder

        self.streams = tuple(streams)
        self.specs = stream_specs(metas, self.streams, weights)
        self.metas = {s: metas[s] for s in self.streams}
        self.device = device
        self.encoders = {}
        for s, spec in self.specs.items():
            src = f" (weights {spec.weights})" if spec.weights else ""
            try:
                enc = build_encoder(spec, device, precision)
            except RuntimeError as e:  # e.g. a state dict of another architecture (tensor size mismatch)
                first = " ".join(str(e).split())[:200] or type(e).__name__
                raise WtalError(f"cannot load the '{s}' backbone {spec.backbone}{src}: {first}") from None
            want = metas[s]
            if enc.dim != want.dim:
                raise WtalError(
                    f"'{s}' features do not match the checkpoint: {spec.backbone}{src} gives dimension "
                    f"{enc.dim}, the checkpoint expects {want.dim} ({want.backbone})"
                )
            self.encoders[s] = enc

    def grid_frames(self, info) -> float:
        """Work for one video in the units :func:`extract_video` reports progress in (grid frames, averaged over streams)."""
        from wtalkit.extract.video import grid_length

        return float(np.mean([grid_length(info, spec.fps) for spec in self.specs.values()]))

    def __call__(self, path, info=None, progress: Callable[[float], None] | None = None) -> dict:
        """``{stream: float32 [T, D]}`` of one video (one-line WtalError if it cannot be decoded or is too short)."""
        from wtalkit.extract.pipeline import extract_video

        return extract_video(path, self.specs, device=self.device, encoders=self.encoders, progress=progress, info=info)


class _Progress:
    """Rich progress on a console (stderr in the CLI): videos done and frames per second; silent without one."""

    def __init__(self, console, total_frames: float, n_videos: int):
        self.bar = None
        if console is None:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("[bold]localize"),
            BarColumn(),
            TextColumn("{task.fields[done]}/{task.fields[n]} videos"),
            TextColumn("{task.fields[current]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.task = self.bar.add_task("localize", total=max(total_frames, 1e-9), done=0, n=n_videos, current="")

    def __enter__(self):
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.update(self.task, current="")
            self.bar.stop()

    def video(self, name: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, current=name)

    def advance(self, frames: float) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, frames)

    def video_done(self) -> None:
        if self.bar is not None:
            self.bar.update(self.task, done=self.bar.tasks[0].fields["done"] + 1)


def with_run_clip(metas: dict, streams, weights: dict, clip_model: str) -> dict:
    """``weights`` plus the run's own CLIP file (``vlp.clip_model``) for the CLIP streams recorded by content
    that no explicit file covers, when it is that very file (same SHA-256)."""
    from wtalkit.extract.weights import file_digest, split_hashed

    path = Path(str(clip_model)).expanduser()
    for s in streams:
        enc = _encoder_of(metas[s])
        digest = split_hashed(enc)[1]
        wanted = enc.startswith("clip:") and digest and enc not in weights and metas[s].backbone not in weights
        if wanted and path.is_file() and file_digest(path) == digest:
            weights[enc] = str(path)
    return weights


def localize_videos(
    predictor,
    videos: list,
    device="cpu",
    weights: dict | None = None,
    console=None,
    *,
    streams=None,
    precision: str = "auto",
    on_video: Callable[[LocalizedVideo], None] | None = None,
) -> dict:
    """Results JSON ``{"results": {VIDEO_STEM: [...]}}`` for raw video files.

    ``predictor``: a :class:`wtalkit.localize.predict.Predictor`. Its streams are
    extracted with the backbones and grids recorded in the checkpoint
    (``weights`` maps a backbone to a local weights file, see
    :func:`weights_for`), then localized; segments are in seconds of each
    video. ``streams``: extra streams to extract as well (e.g. ``vlp`` for a
    figure of a CBP run); ``on_video`` is called with a :class:`LocalizedVideo`
    after each video. ``console``: a Rich console for progress (stderr in the
    CLI). Every video is probed before any is encoded, so a missing or
    unreadable file fails at once. Segments are cut at each video's end
    (:func:`clip_to_duration`; the trailing partial snippet is scored).
    """
    from wtalkit.extract.video import probe

    paths = [Path(v) for v in videos]
    if not paths:
        raise WtalError("no videos given")
    seen: dict = {}
    for p in paths:
        if not p.is_file():
            raise WtalError(f"video not found: {p}")
        if p.stem in seen and seen[p.stem] != p.resolve():
            raise WtalError(f"two videos are both named '{p.stem}' ({seen[p.stem]} and {p}); results are keyed by name")
        seen[p.stem] = p.resolve()
    needed = tuple(dict.fromkeys(tuple(predictor.streams) + tuple(streams or ())))
    weights = with_run_clip(predictor.metas, needed, dict(weights or {}), predictor.cfg.vlp.clip_model)
    features = VideoFeatures(predictor.metas, needed, weights, device=device, precision=precision)
    infos = {p: probe(p) for p in paths}
    results: dict = {}
    total = sum(features.grid_frames(i) for i in infos.values())
    with _Progress(console, total, len(paths)) as bar:
        for p in paths:
            if p.stem in results:  # the same file twice
                continue
            bar.video(p.stem)
            feats = features(p, info=infos[p], progress=bar.advance)
            main = {s: feats[s] for s in predictor.streams}
            dets, probs, video = predictor.localize(main, features.metas)
            dets = clip_to_duration(dets, infos[p].duration)
            results[p.stem] = dets
            bar.video_done()
            if on_video is not None:
                on_video(
                    LocalizedVideo(p.stem, p, float(infos[p].duration), feats, dict(features.metas), dets, probs, video)
                )
    return {"results": results}
