"""``wtalkit online``: score a stream frame by frame and emit results as they are computed.

The pipeline is: source (video -> sampled frames -> CLIP image embeddings, or
a CLIP feature file) -> a causal :class:`~wtalkit.online.scorers.Scorer` ->
either one JSON line per frame or, with ``segments=True``, action segments
closed online by hysteresis. Each line is written (and flushed) as soon as it
exists, so a consumer can follow the stream live.

Output formats (the contract read by ``wtalkit score --protocol oad``)::

    {"video": NAME, "frame": INDEX, "t": SECONDS, "top": CLASS | "background",
     "scores": {CLASS: PROB, ...}}              # one per frame; no background key
    {"video": NAME, "label": CLASS, "start": S, "end": E, "score": P}   # --segments

With ``realtime=True`` frame ``i`` is not processed before wall time
``t_i - t_0`` after the start (the stream's own rate), and the latency of a
frame is measured from that moment to the moment its line is written.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from wtalkit.errors import WtalError
from wtalkit.io import check_output_file, read_list_file
from wtalkit.online.scorers import DEFAULT_BACKGROUND, MODELS, _check_classes
from wtalkit.online.segments import HysteresisSegmenter
from wtalkit.online.stream import EmbeddingSource, feature_source, is_feature_file, video_source
from wtalkit.timeaxis import SnippetGrid

DEFAULT_FPS = 4.0  # frames sampled per second of video for the CLIP baselines


def parse_classes(classes: str | None = None, classes_file=None) -> list:
    """Class names from ``--classes "a, b, c"`` or ``--classes-file`` (one per line, ``#`` comments)."""
    if classes is not None and classes_file is not None:
        raise WtalError("give either --classes or --classes-file, not both")
    if classes_file is not None:
        path = Path(classes_file)
        if not path.is_file():
            raise WtalError(f"classes file not found: {path}")
        names = read_list_file(path, "classes file")
        if not names:
            raise WtalError(f"{path}: no class names in the file")
        return names
    if classes is None:
        raise WtalError("no classes given (use --classes 'a, b, ...' or --classes-file FILE)")
    names = [c.strip() for c in classes.split(",")]
    if not any(names):
        raise WtalError("--classes is empty; give comma-separated class names, e.g. --classes 'high jump, pole vault'")
    if not all(names):
        raise WtalError(f"--classes '{classes}' has an empty name between commas")
    return names


def _num(p: float) -> float:
    """7 significant digits: short lines, yet tiny probabilities keep their ranking."""
    return float(f"{p:.7g}")


def frame_record(video: str, index: int, t: float, probs: np.ndarray, classes: list, background: str) -> dict:
    k = int(np.argmax(probs))
    return {
        "video": video,
        "frame": int(index),
        "t": round(float(t), 6),
        "top": classes[k] if k < len(classes) else "background",
        "scores": {c: _num(p) for c, p in zip(classes, probs[: len(classes)].tolist())},
    }


@dataclass
class OnlineSummary:
    video: str
    frames: int
    segments: int
    wall_s: float  # from the first frame read to the last line written
    frames_per_s: float  # processing throughput (in realtime mode bounded by the stream rate)
    latency_p50_s: float
    latency_p95_s: float
    latency_max_s: float
    stream_fps: float  # the rate of the stream itself (frames per second of stream time)
    realtime: bool

    @property
    def keeps_up(self) -> bool:
        """Whether processing is at least as fast as the stream."""
        return (
            self.frames_per_s >= self.stream_fps * 0.999
            if not self.realtime
            else self.latency_p95_s <= 1.0 / self.stream_fps
        )

    def to_dict(self) -> dict:
        return asdict(self) | {"keeps_up": self.keeps_up}


# ----------------------------------------------------------------------------- sinks


class JsonLinesSink:
    """Writes each record as one JSON line and flushes it at once."""

    def __init__(self, stream):
        self.stream = stream

    def frame(self, rec: dict, probs=None) -> None:
        self.emit(rec)

    def segment(self, rec: dict) -> None:
        self.emit(rec)

    def emit(self, rec: dict) -> None:
        self.stream.write(json.dumps(rec) + "\n")
        self.stream.flush()


class LiveSink:
    """A Rich live view on a terminal: current time, top-5 classes with bars, open segments."""

    def __init__(self, console, classes: list, background: str, segments: bool, top: int = 5):
        from rich.live import Live

        self.console, self.classes, self.background = console, classes, background
        self.segments_mode, self.top = segments, top
        self.live = Live(console=console, auto_refresh=True, refresh_per_second=8, transient=False)
        self.open_labels: list = []
        self.started = time.perf_counter()

    def __enter__(self):
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        return self.live.__exit__(*exc)

    def frame(self, rec: dict, probs) -> None:
        from rich.table import Table
        from rich.text import Text

        k = len(self.classes)
        order = np.argsort(-probs[:k])[: self.top]
        table = Table.grid(padding=(0, 1))
        table.add_column(justify="right", no_wrap=True)
        table.add_column(no_wrap=True)
        table.add_column(justify="right")
        width = 30
        for i in order:
            p = float(probs[i])
            table.add_row(
                self.classes[i],
                Text(
                    "█" * int(round(p * width)) + "·" * (width - int(round(p * width))),
                    style="green" if i == order[0] else "cyan",
                ),
                f"{p:.3f}",
            )
        head = Text.assemble(
            (f"{rec['video']}", "bold"),
            f"  t = {rec['t']:8.2f} s  frame {rec['frame']}  ",
            (f"{self.background} {float(probs[k]):.3f}", "dim"),
            f"  top: {rec['top']}",
        )
        parts = [head, table]
        if self.segments_mode:
            parts.append(Text("open: " + (", ".join(self.open_labels) or "-"), style="yellow"))
        from rich.console import Group

        self.live.update(Group(*parts))

    def segment(self, rec: dict) -> None:
        self.live.console.print(
            f"[bold]{rec['label']}[/]  {rec['start']:.2f}-{rec['end']:.2f} s  score {rec['score']:.3f}"
        )


# ----------------------------------------------------------------------------- setup


def _validate_options(model, fps, window, ema_alpha, checkpoint, start_threshold, stop_threshold, min_length):
    if model not in MODELS:
        raise WtalError(f"unknown online model '{model}' (choose from {', '.join(MODELS)})")
    if fps is not None and not (fps > 0):
        raise WtalError(f"--fps must be positive, got {fps}")
    if model == "clip-window" and int(window) < 1:
        raise WtalError(f"--window must be >= 1, got {window}")
    if model == "clip-ema" and not (0.0 < ema_alpha <= 1.0):
        raise WtalError(f"--ema-alpha must be in (0, 1], got {ema_alpha}")
    if model == "ovoad" and not checkpoint:
        raise WtalError("--model ovoad needs --checkpoint PATH")
    if checkpoint and not Path(checkpoint).exists():
        raise WtalError(f"checkpoint not found: {checkpoint}")
    if not (0.0 <= stop_threshold <= start_threshold <= 1.0):
        raise WtalError(
            f"need 0 <= --stop-threshold <= --start-threshold <= 1, got {stop_threshold} and {start_threshold}"
        )
    if min_length < 0:
        raise WtalError(f"--min-length must be >= 0, got {min_length}")


def _clip_of_encoder(encoder):
    """The CLIP model inside an image encoder, so the text side need not be loaded twice."""
    for attr in ("model", "clip_model", "clip"):
        m = getattr(encoder, attr, None)
        if m is not None and hasattr(m, "encode_text"):
            return m
    return None


def open_stream(
    source,
    clip="ViT-B/16",
    fps: float | None = None,
    feature_fps: float | None = None,
    video_name: str | None = None,
    device: str = "auto",
    precision: str = "auto",
):
    """``(EmbeddingSource, clip_model)`` for a video or feature file; the dimensions are checked.

    ``clip`` is a CLIP name or checkpoint path, or an already loaded
    ``ClipImageEncoder`` (reused as is: one model for many streams, e.g. in
    benchmarks or a service).
    """
    from wtalkit.device import resolve_device
    from wtalkit.models.clip import clip_embed_dim, load_clip

    device = str(resolve_device(device))
    loaded = clip if hasattr(clip, "encode") and hasattr(clip, "dim") else None
    path = Path(source)
    if is_feature_file(path):
        if not path.is_file():
            raise WtalError(f"feature file not found: {path}")
        model = (_clip_of_encoder(loaded) if loaded is not None else None) or load_clip(str(clip), device=device)
        return feature_source(path, feature_fps, video_name, expected_dim=clip_embed_dim(model)), model
    if not path.is_file():
        raise WtalError(f"video not found: {path}")
    if feature_fps is not None:
        raise WtalError("--feature-fps applies to feature files (.npy) only")
    if loaded is not None:
        encoder = loaded
    else:
        from wtalkit.extract.encoders import ClipImageEncoder

        encoder = ClipImageEncoder(str(clip), device=device, precision=precision)
    model = _clip_of_encoder(encoder)
    if model is None:
        model = load_clip(str(clip), device=device) if loaded is None else None
    if model is None:
        raise WtalError("the given image encoder carries no CLIP model for the class prompts")
    if int(encoder.dim) != clip_embed_dim(model):
        raise WtalError(
            f"image embeddings ({encoder.dim}) and text embeddings ({clip_embed_dim(model)}) differ in size"
        )
    return video_source(path, encoder, DEFAULT_FPS if fps is None else fps, video_name), model


def on_model_grid(src, scorer, fps: float | None):
    """The stream on the grid of a scorer trained at one frame rate (OV-OAD: its checkpoint's ``feature_fps``).

    Feature files are resampled by time; a video is sampled at that rate. An explicit ``--fps`` that
    differs is refused: the model's windows span a fixed number of frames, so another rate changes
    how many seconds they cover.
    """
    rate = getattr(scorer, "fps", None)
    if rate is None:
        return src
    if src.kind == "video" and fps is not None and abs(fps - rate) > 1e-9 * rate:
        raise WtalError(
            f"--fps {fps:g}: this model scores frames at {rate:g} fps, the rate it was trained at (leave --fps out)"
        )
    return src.on_grid(SnippetGrid(rate, 1, 1))


# ----------------------------------------------------------------------------- the loop


def score_chunk(scorer, embs: np.ndarray) -> np.ndarray:
    """``[n, K+1]`` probabilities of ``n`` consecutive frames; any object with ``step`` will do."""
    if len(embs) > 1 and hasattr(scorer, "step_many"):
        return np.asarray(scorer.step_many(embs))
    return np.stack([np.asarray(scorer.step(e)) for e in embs])


def stream_scores(
    src: EmbeddingSource,
    scorer,
    batch: int,
    realtime: bool = False,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
):
    """Yield ``(index, t, probs [K+1], due)`` per frame, strictly in order and causally.

    ``due`` is the wall-clock moment the frame was available: its due time in
    realtime mode (frame ``i`` is held back until ``t_i - t_0`` after the
    start), otherwise the moment its chunk was read.
    """
    t0_wall, t0_stream, index = None, None, 0
    if realtime:
        batch = 1  # one frame at a time: a frame cannot wait for later ones
    for times, payload in src.read(batch):
        read_at = clock()
        if t0_wall is None:
            t0_wall, t0_stream = read_at, float(times[0])
        if realtime:
            due = t0_wall + (float(times[0]) - t0_stream)
            wait = due - clock()
            if wait > 0:
                sleep(wait)
        else:
            due = read_at
        embs = src.embed(payload)
        probs = score_chunk(scorer, embs)
        for t, p in zip(times, probs):
            yield index, float(t), p, due
            index += 1


def run_online(
    source,
    classes: list,
    *,
    clip="ViT-B/16",
    model: str = "clip-frame",
    templates: list | None = None,
    background: str = DEFAULT_BACKGROUND,
    fps: float | None = None,
    feature_fps: float | None = None,
    window: int = 8,
    ema_alpha: float = 0.3,
    checkpoint: str | None = None,
    video_name: str | None = None,
    segments: bool = False,
    start_threshold: float = 0.5,
    stop_threshold: float = 0.3,
    min_length: float = 0.0,
    realtime: bool = False,
    batch: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    output=None,
    overwrite: bool = False,
    live: bool = False,
    stdout=None,
    console=None,
    scorer=None,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> OnlineSummary:
    """Run the online detector over one video or feature file and emit its lines.

    Lines go to ``output`` (written atomically: the file appears complete at
    the end, or not at all), else to a Rich live view on ``console`` when
    ``live``, else to ``stdout`` (default ``sys.stdout``), one flushed JSON
    line each. ``clip``: a CLIP name or checkpoint path, or a loaded
    ``ClipImageEncoder`` to reuse. ``scorer``: a ready :class:`Scorer` for
    these classes (reset here) instead of building ``model``'s -- the class
    prompts are then not encoded again. Returns throughput and latency figures.
    """
    from wtalkit.models.clip import check_template
    from wtalkit.online.scorers import build_scorer

    templates = list(templates or [])  # empty: the scorer's default (DEFAULT_TEMPLATES, or an ovoad checkpoint's own)
    for t in templates:
        check_template(t)
    classes = list(classes)
    _check_classes(classes, background)
    _validate_options(model, fps, window, ema_alpha, checkpoint, start_threshold, stop_threshold, min_length)
    if output is not None:
        check_output_file(output, overwrite)
    if batch is not None and int(batch) < 1:
        raise WtalError(f"--batch must be >= 1, got {batch}")
    src, clip_model = open_stream(source, clip, fps, feature_fps, video_name, device, precision)
    if scorer is None:
        opts = {
            "clip-window": {"window": window},
            "clip-ema": {"ema_alpha": ema_alpha},
            "ovoad": {"checkpoint": checkpoint},
        }.get(model, {})
        scorer = build_scorer(model, clip_model, classes, templates, background, **opts)
    else:
        scorer.reset()
    src = on_model_grid(src, scorer, fps)
    if batch is None:
        batch = 256 if src.kind == "features" else 8
    segmenter = (
        HysteresisSegmenter(classes, src.frame_duration, start_threshold, stop_threshold, min_length)
        if segments
        else None
    )

    with contextlib.ExitStack() as stack:
        if output is not None:
            tmp = stack.enter_context(_atomic_text(output))
            sink = JsonLinesSink(tmp)
        elif live:
            from rich.console import Console

            sink = stack.enter_context(LiveSink(console or Console(), classes, background, segments))
        else:
            sink = JsonLinesSink(stdout or sys.stdout)
        latencies, n, nseg, start = [], 0, 0, None
        for index, t, probs, due in stream_scores(src, scorer, batch, realtime, clock, sleep):
            if start is None:
                start = due
            probs = np.asarray(probs)
            if segmenter is not None:
                for seg in segmenter.push(t, probs[: len(classes)]):
                    sink.segment(seg.to_record(src.name))
                    nseg += 1
                if isinstance(sink, LiveSink):
                    sink.open_labels = segmenter.open_labels
                    sink.frame(frame_record(src.name, index, t, probs, classes, background), probs)
            else:
                sink.frame(frame_record(src.name, index, t, probs, classes, background), probs)
            latencies.append(clock() - due)
            n += 1
        if n == 0:
            raise WtalError(f"{source}: no frames could be read")
        if segmenter is not None:
            for seg in segmenter.flush():
                sink.segment(seg.to_record(src.name))
                nseg += 1
        end = clock()

    lat = np.asarray(latencies)
    wall = max(end - start, 1e-9)
    return OnlineSummary(
        video=src.name,
        frames=n,
        segments=nseg,
        wall_s=wall,
        frames_per_s=n / wall,
        latency_p50_s=float(np.percentile(lat, 50)),
        latency_p95_s=float(np.percentile(lat, 95)),
        latency_max_s=float(lat.max()),
        stream_fps=1.0 / src.frame_duration,
        realtime=realtime,
    )


@contextlib.contextmanager
def _atomic_text(path):
    """A text file handle whose content replaces ``path`` only when the block succeeds."""
    from wtalkit.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        yield f
