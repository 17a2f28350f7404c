"""Extracting feature streams for many videos into a dataset folder, resumably.

Layout written (see :mod:`wtalkit.data.features`)::

    DATASET/annotations.json           new videos added (duration, fps), existing entries kept
    DATASET/features/STREAM/meta.json  the stream's backbone and snippet grid
    DATASET/features/STREAM/VIDEO.npy  float32 [T, D]

Crash safety: every file is written atomically (:mod:`wtalkit.io`); a video is
*done* only when all requested streams have their file; ``annotations.json`` is
rewritten (atomically) after each video and re-derived on a re-run for done
videos it lacks. So killing the process at any moment and re-running finishes
the dataset, with no partial file anywhere. The same holds on Ray (``ray=``,
:mod:`wtalkit.extract.distributed`): the videos are Ray tasks, and this
process still writes every file.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from wtalkit.errors import WtalError
from wtalkit.extract.pipeline import VideoResult, error_line, process_video, write_video_features
from wtalkit.extract.progress import ExtractProgress
from wtalkit.extract.video import VIDEO_EXTENSIONS, probe
from wtalkit.io import read_list_file

# --------------------------------------------------------------------------- inputs


def collect_videos(inputs) -> list:
    """Video paths from files, folders (their video files, recursively, sorted) and ``.txt`` lists.

    A list file has one path per line (blank lines and ``#`` comments ignored);
    relative paths are taken relative to the list file's folder. Raises
    WtalError for a missing path, an empty folder, or two videos with the same
    name (the file stem names the features).
    """
    paths: list = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            found = sorted(
                q
                for q in p.rglob("*")
                if q.is_file() and q.suffix.lower() in VIDEO_EXTENSIONS and not q.name.startswith(".")
            )
            if not found:
                raise WtalError(f"no video files ({', '.join(VIDEO_EXTENSIONS[:5])}, ...) in folder {p}")
            paths.extend(found)
        elif p.suffix.lower() == ".txt" and p.is_file():
            listed = read_list_file(p, "video list")
            if not listed:
                raise WtalError(f"{p}: video list is empty")
            for line in listed:
                q = Path(line).expanduser()
                q = q if q.is_absolute() else p.parent / q
                if not q.is_file():
                    raise WtalError(f"video not found: {q} (listed in {p})")
                paths.append(q)
        elif p.is_file():
            paths.append(p)
        else:
            raise WtalError(f"video not found: {p}")
    if not paths:
        raise WtalError("no videos given")
    seen: dict = {}
    out = []
    for q in paths:
        name = q.stem
        if name in seen:
            if seen[name].resolve() == q.resolve():
                continue  # the same file given twice
            raise WtalError(
                f"two videos are both named '{name}': {seen[name]} and {q} (features are named by file stem)"
            )
        seen[name] = q
        out.append(q)
    return out


# --------------------------------------------------------------------------- results


@dataclass
class ExtractSummary:
    results: list
    streams: dict  # stream name -> backbone
    precision: dict  # stream name -> precision used ("fp32", "bf16", ...)
    check_cosine: dict  # stream name -> min cosine of reduced precision vs fp32 on the first batch (or None)
    elapsed: float
    out_dir: str

    @property
    def failed(self) -> list:
        return [r for r in self.results if r.status == "failed"]

    @property
    def done(self) -> list:
        return [r for r in self.results if r.status == "done"]

    @property
    def skipped(self) -> list:
        return [r for r in self.results if r.status == "skipped"]

    @property
    def frames_per_second(self) -> float:
        return sum(r.frames for r in self.done) / max(1e-9, self.elapsed)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(
            failed=len(self.failed),
            done=len(self.done),
            skipped=len(self.skipped),
            frames_per_second=self.frames_per_second,
        )
        return d


# --------------------------------------------------------------------------- dataset


def _clean_stale_temps(folders) -> None:
    """Remove temporary files left by a killed run (``.NAME.XXXX.tmp``, see wtalkit.io.atomic_path)."""
    for folder in folders:
        if folder.is_dir():
            for p in folder.glob(".*.tmp"):
                try:
                    p.unlink()
                except OSError:
                    pass


def extract_dataset(
    videos,
    out_dir,
    streams: dict,
    overwrite: bool = False,
    workers: int = 1,
    device="cpu",
    precision: str = "auto",
    subset: str = "test",
    progress: ExtractProgress | None = None,
    ray: str | None = None,
    ray_cpus: float | None = None,
    ray_gpus: float | None = None,
) -> ExtractSummary:
    """Extract ``streams`` (``{name: StreamSpec}``) for ``videos`` into the dataset folder ``out_dir``.

    ``videos``: paths of video files, folders or ``.txt`` lists (see
    :func:`collect_videos`). Videos whose stream files all exist are skipped
    unless ``overwrite``. New videos are added to ``annotations.json`` with
    ``subset``, in the order given, after the entries already there (which are
    kept as they are). ``workers`` > 1 extracts that many videos at once
    (threads sharing the encoders, each with a share of torch's CPU threads).
    ``ray`` (``"auto"`` or a cluster address) runs one Ray task per video
    instead, each reserving ``ray_cpus`` CPUs and ``ray_gpus`` GPUs (see
    :mod:`wtalkit.extract.distributed`); this process writes every file.
    Bad videos are reported in the summary (status ``failed``), never raised;
    WtalError is raised only for problems with the whole run (bad weights,
    mismatching ``meta.json``, malformed annotations, no Ray, ...).
    """
    from wtalkit.data.annotations import Annotations, Video, load_annotations
    from wtalkit.data.features import FeatureStream
    from wtalkit.device import resolve_device
    from wtalkit.extract.pipeline import build_encoder

    progress = progress or ExtractProgress()
    if not streams:
        raise WtalError("no feature streams requested")
    if workers < 1:
        raise WtalError(f"--workers must be >= 1, got {workers}")
    if ray is None and (ray_cpus is not None or ray_gpus is not None):
        raise WtalError("--ray-cpus and --ray-gpus only apply with --ray")
    if ray is not None and workers != 1:
        raise WtalError(
            "--workers is for local extraction; with --ray every video is its own Ray task and the cluster runs "
            "as many at once as it has room for (set the room one takes with --ray-cpus / --ray-gpus)"
        )
    if not subset or not isinstance(subset, str):
        raise WtalError("subset must be a non-empty name")
    paths = collect_videos(videos)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise WtalError(f"output dataset path is not a folder: {out_dir}")
    cluster = None
    if ray is not None:
        from wtalkit.extract.distributed import RayCluster

        # Connect first: no Ray, a bad address or a cluster without the resources asked for is an
        # error before anything is written.
        cluster = RayCluster.connect(ray, device, precision, ray_cpus, ray_gpus)
    try:
        # On Ray the encoders built here only check the weights and give meta.json its dims:
        # the workers build their own, on their own device.
        dev = resolve_device("cpu" if cluster else device)
        created = not out_dir.exists()  # a run that extracts nothing removes the skeleton it made
        ann_path = out_dir / "annotations.json"
        ann = load_annotations(ann_path) if ann_path.exists() else Annotations([], {})

        # Build the encoders first: bad weights fail before any work, and meta.json needs their dim.
        encoders = {name: build_encoder(spec, dev, "fp32" if cluster else precision) for name, spec in streams.items()}
        stream_dirs = {name: out_dir / "features" / name for name in streams}
        fs = {
            name: FeatureStream.create(stream_dirs[name], spec.meta(encoders[name].dim))
            for name, spec in streams.items()
        }
        _clean_stale_temps([out_dir, *stream_dirs.values()])
        if cluster:
            encoders = {}  # free the driver's copies

        t0 = time.perf_counter()
        results: dict = {}
        dirty = False
        before = list(ann.videos)  # entries already there keep their place
        order = {p.stem: i for i, p in enumerate(paths)}

        def add_annotation(name, info) -> None:
            nonlocal dirty
            if name not in ann.videos and info is not None:
                ann.videos[name] = Video(name, subset, float(info.duration), fps=float(info.fps))
                dirty = True

        def save_annotations() -> None:
            nonlocal dirty
            if dirty or not ann_path.exists():
                # New videos in the order given, whatever order they finished in (threads, Ray):
                # the same annotations.json for every backend.
                old = set(before)
                added = sorted((n for n in ann.videos if n not in old), key=lambda n: order.get(n, -1))
                ann.videos = {n: ann.videos[n] for n in [*before, *added]}
                ann.save(ann_path)
                dirty = False

        todo = []
        for p in paths:
            name = p.stem
            if not overwrite and all(s.has(name) for s in fs.values()):
                info = None
                if name not in ann.videos:  # killed between its features and annotations.json: re-derive
                    try:
                        info = probe(p)
                    except WtalError:
                        info = None
                add_annotation(name, info)
                results[name] = VideoResult(name, str(p), "skipped")
            else:
                todo.append(p)
        save_annotations()

        cosines: dict = dict.fromkeys(streams)
        precisions: dict = {name: enc.precision for name, enc in encoders.items()}

        def finish(result, info, feats=None, cos=None) -> None:
            """Commit a video's outcome: its files (this process writes them all), annotations, progress."""
            if result.status == "done":
                try:
                    write_video_features(out_dir, result.name, feats)
                except Exception as e:  # a file that cannot be written fails this video, as a bad one would
                    result.status, result.snippets, result.error = "failed", 0, error_line(e)
            results[result.name] = result
            if result.status == "done":
                add_annotation(result.name, info)
                save_annotations()
                for s, p in result.precision.items():
                    # Report the weakest outcome: a fallback to fp32 anywhere shows.
                    if p == "fp32" or precisions.get(s) is None:
                        precisions[s] = p
            for s, c in (cos or {}).items():
                if c is not None and (cosines[s] is None or c < cosines[s]):
                    cosines[s] = c
            progress.video_end(result)

        progress.start(len(paths), len(todo))
        try:
            for name in results:
                progress.video_end(results[name])
            if cluster is not None:
                if todo:
                    cluster.run(todo, streams, progress, finish)
            elif workers == 1 or len(todo) <= 1:
                for p in todo:
                    name = p.stem
                    progress.video_start(name)
                    finish(
                        *process_video(
                            p,
                            name,
                            streams,
                            encoders,
                            advance=lambda n, name=name: progress.video_advance(name, n),
                            on_length=lambda n, name=name: progress.video_length(name, n),
                        )
                    )
            else:
                _run_pool(todo, streams, encoders, dev, workers, progress, finish)
        finally:
            progress.close()
            if created and not any(r.status == "done" for r in results.values()):
                shutil.rmtree(out_dir, ignore_errors=True)
    finally:
        if cluster is not None:
            cluster.close()
    for s in streams:
        if precisions.get(s) is None:  # nothing extracted on Ray: what was asked
            precisions[s] = precision
    ordered = [results[p.stem] for p in paths]
    return ExtractSummary(
        ordered,
        {n: s.backbone for n, s in streams.items()},
        precisions,
        cosines,
        time.perf_counter() - t0,
        str(out_dir),
    )


class _Cancelled(BaseException):
    """Raised inside worker threads to stop them (not an Exception: never reported as a video failure)."""


def _run_pool(todo, streams, encoders, device, workers, progress, finish) -> None:
    """Several videos at once in worker threads sharing the encoders; this thread commits the results.

    The heavy parts (decord decoding, torch kernels) release the GIL, so
    threads run in parallel without a copy of the models per worker; on CPU
    torch's intra-op threads are split between the workers (each worker's
    kernels get ``threads // workers``) and restored afterwards.
    """
    import threading
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    import torch

    workers = min(workers, len(todo))
    lock = threading.Lock()
    stop = threading.Event()

    def callback(method, name):
        def call(n):
            if stop.is_set():
                raise _Cancelled
            with lock:
                method(name, n)

        return call

    share = max(1, torch.get_num_threads() // workers) if device.type == "cpu" else None

    def task(p):
        if stop.is_set():
            raise _Cancelled
        if share is not None:
            torch.set_num_threads(share)  # per thread: this worker's kernels
        with lock:
            progress.video_start(p.stem)
        return process_video(
            p,
            p.stem,
            streams,
            encoders,
            advance=callback(progress.video_advance, p.stem),
            on_length=callback(progress.video_length, p.stem),
        )

    old_threads = torch.get_num_threads()
    ex = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wtalkit-extract")
    try:
        pending = {ex.submit(task, p) for p in todo}
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for f in done:
                outcome = f.result()
                with lock:
                    finish(*outcome)
    except BaseException:
        stop.set()  # running videos stop at their next batch; nothing partial is written
        ex.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        ex.shutdown(wait=True)
        torch.set_num_threads(old_threads)


# --------------------------------------------------------------------------- stream options


def resolve_streams(
    out_dir,
    names,
    clip: str | None = None,
    clip_frames: int | None = None,
    cbp_backbone: str | None = None,
    cbp_weights=None,
    fps: float | None = None,
    snippet_length: int | None = None,
    snippet_stride: int | None = None,
    flow: str | None = None,
    flow_weights=None,
) -> dict:
    """``{name: StreamSpec}`` for the requested stream names (``vlp``, ``cbp``).

    Unset options come from the stream's ``meta.json`` when the dataset already
    has one (so adding videos to a dataset keeps its backbone and grid), else
    from the defaults (ViT-B/16 centre frame, R(2+1)D-18, 25 fps, 16/16).
    ``flow``/``flow_weights``: the optical flow of ``--cbp-backbone i3d``.
    """
    from wtalkit.data.annotations import read_json
    from wtalkit.data.features import StreamMeta
    from wtalkit.extract.pipeline import DEFAULT_CBP, DEFAULT_CLIP, StreamSpec, cbp_spec, spec_from_meta, vlp_spec

    names = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    if not names:
        raise WtalError("no feature streams requested (use --streams vlp,cbp)")
    for n in names:
        if n not in ("vlp", "cbp"):
            raise WtalError(f"unknown feature stream '{n}' (choose from vlp, cbp)")
    if (flow is not None or flow_weights) and "cbp" not in names:
        raise WtalError("--flow and --flow-weights only apply to the cbp stream with --cbp-backbone i3d")
    out = {}
    for n in names:
        meta_path = Path(out_dir) / "features" / n / "meta.json"
        old = StreamMeta.from_dict(read_json(meta_path), str(meta_path)) if meta_path.is_file() else None
        grid = dict(
            fps=fps if fps is not None else (old.fps if old else 25.0),
            snippet_length=snippet_length if snippet_length is not None else (old.snippet_length if old else 16),
            snippet_stride=snippet_stride if snippet_stride is not None else (old.snippet_stride if old else 16),
        )
        if n == "vlp":
            if clip is None and clip_frames is None and old is not None:
                base = spec_from_meta(old)
                if base.kind != "clip":
                    raise WtalError(
                        f"{meta_path}: backbone '{old.backbone}' is not a CLIP model; the vlp stream needs one"
                    )
                out[n] = StreamSpec(base.encoder, frames_per_snippet=base.frames_per_snippet, **grid)
            else:
                if clip is None and old is not None:
                    clip = spec_from_meta(old).encoder
                out[n] = vlp_spec(clip or DEFAULT_CLIP, clip_frames or 1, **grid)
        else:
            if cbp_backbone is None and old is not None:
                base = spec_from_meta(old)
                if base.kind not in ("torchvision", "i3d"):
                    raise WtalError(
                        f"{meta_path}: backbone '{old.backbone}' is not a torchvision video model or I3D; "
                        f"the cbp stream needs one"
                    )
                cbp_backbone = base.encoder
            out[n] = cbp_spec(cbp_backbone or DEFAULT_CBP, cbp_weights, **grid, flow=flow, flow_weights=flow_weights)
    return out
