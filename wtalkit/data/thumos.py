"""Import the THUMOS14 "reduced" release (W-TALC, UM, CO2-Net, DELU) as a wtalkit dataset.

The release is one feature file plus a folder of annotation arrays, all
aligned by video index (NumPy object/bytes arrays, ``allow_pickle=True``):

* ``Thumos14reduced-I3D-JOINTFeatures.npy``: one ``[T, 2048]`` float array per
  video (I3D RGB+flow, 16-frame snippets at 25 fps);
* ``videoname.npy`` (bytes), ``subset.npy`` (``validation`` | ``test``),
  ``duration.npy`` (seconds, ``[N, 1]``), ``labels.npy`` (per-instance class
  names), ``segments.npy`` (per-instance ``[start, end]`` seconds),
  ``classlist.npy`` (bytes) and optionally ``labels_all.npy`` (the video's
  class names) and ``original_fps.npy``.

THUMOS14 trains on its validation videos, so ``validation`` becomes ``train``
and ``test`` stays ``test``. Everything is validated before anything is
written, and the dataset is assembled in a temporary folder that is renamed
into place at the end: an error never leaves a partial dataset behind.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wtalkit import io as wio
from wtalkit.data.annotations import Annotations, Video
from wtalkit.data.features import StreamMeta
from wtalkit.errors import WtalError

REQUIRED = ("videoname", "subset", "duration", "labels", "segments", "classlist")
SUBSET_MAP = {"validation": "train", "test": "test"}
#: The stream the release's features form: I3D (Kinetics) RGB+flow, 16/16 frames at 25 fps.
CBP_META = StreamMeta(backbone="i3d-kinetics-rgb+flow", dim=2048, fps=25.0, snippet_length=16, snippet_stride=16)


@dataclass
class ImportSummary:
    out: Path
    n_videos: int
    n_train: int
    n_test: int
    n_segments: int
    n_classes: int
    n_snippets: int


def _text(x) -> str:
    if isinstance(x, (bytes, np.bytes_)):
        return bytes(x).decode("utf-8")
    return str(x)


def _load_array(path: Path) -> np.ndarray:
    if not path.exists():
        raise WtalError(f"missing file: {path}")
    try:
        return np.load(path, allow_pickle=True)
    except (ValueError, OSError, EOFError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WtalError(f"{path}: not a readable .npy file ({msg})") from None
    except Exception as e:  # unpickling errors of object arrays come in many types
        raise WtalError(f"{path}: cannot unpickle ({type(e).__name__})") from None


def read_annotation_dir(folder) -> Annotations:
    """Validate the annotation arrays of the release and turn them into :class:`Annotations`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise WtalError(f"annotation folder not found: {folder}")
    arr = {name: _load_array(folder / f"{name}.npy") for name in REQUIRED}
    for name in ("labels_all", "original_fps"):
        if (folder / f"{name}.npy").exists():
            arr[name] = _load_array(folder / f"{name}.npy")

    classes = [_text(c) for c in np.asarray(arr.pop("classlist")).reshape(-1)]
    if not classes or len(set(classes)) != len(classes):
        raise WtalError(f"{folder}/classlist.npy: expected distinct class names")
    names = [_text(v) for v in np.asarray(arr["videoname"]).reshape(-1)]
    n = len(names)
    for key, a in arr.items():
        length = len(a) if np.ndim(a) else 0
        if length != n:
            raise WtalError(f"{folder}/{key}.npy has {length} entries but videoname.npy has {n}")
    if len(set(names)) != n:
        dup = next(x for x in names if names.count(x) > 1)
        raise WtalError(f"{folder}/videoname.npy: video '{dup}' appears twice")
    cset = set(classes)
    videos = {}
    for i, name in enumerate(names):
        where = f"{folder}: video '{name}'"
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise WtalError(f"{where}: not usable as a file name")
        subset = _text(np.asarray(arr["subset"][i]).reshape(-1)[0])
        subset = SUBSET_MAP.get(subset, subset)
        try:
            duration = float(np.asarray(arr["duration"][i], dtype=np.float64).reshape(-1)[0])
        except (TypeError, ValueError, IndexError):
            duration = float("nan")
        if not (math.isfinite(duration) and duration > 0):
            raise WtalError(f"{where}: duration must be a positive number of seconds")
        labels = [_text(x) for x in _as_list(arr["labels"][i])]
        segs = _as_list(arr["segments"][i])
        if len(labels) != len(segs):
            raise WtalError(f"{where}: {len(labels)} labels but {len(segs)} segments")
        segments = []
        for label, seg in zip(labels, segs):
            if label not in cset:
                raise WtalError(f"{where}: label '{label}' is not in classlist.npy")
            try:
                s, e = (float(x) for x in np.asarray(seg, dtype=np.float64).reshape(-1))
            except (TypeError, ValueError):
                raise WtalError(f"{where}: segment {seg!r} is not [start, end]") from None
            if not (math.isfinite(s) and math.isfinite(e)) or e < s:
                raise WtalError(f"{where}: segment [{s}, {e}] must be finite with start <= end")
            segments.append((s, e, label))
        video_labels = {lab for _, _, lab in segments}
        if "labels_all" in arr:
            extra = [_text(x) for x in _as_list(arr["labels_all"][i])]
            bad = [x for x in extra if x not in cset]
            if bad:
                raise WtalError(f"{where}: label '{bad[0]}' (labels_all.npy) is not in classlist.npy")
            video_labels.update(extra)
        fps = None
        if "original_fps" in arr:
            f = float(np.asarray(arr["original_fps"][i], dtype=np.float64).reshape(-1)[0])
            fps = f if math.isfinite(f) and f > 0 else None
        videos[name] = Video(name, subset, duration, segments, sorted(video_labels), fps)
    return Annotations(classes, videos)


def _as_list(x) -> list:
    if x is None:
        return []
    if isinstance(x, np.ndarray):
        return list(x) if x.ndim else [x.item()]
    return list(x)


def read_features(path, n_videos: int, names: list, dim: int | None = 2048) -> list:
    """Load the per-video feature arrays and validate each (2-D, width, finite)."""
    path = Path(path)
    feats = _load_array(path)
    if feats.dtype != object and feats.ndim == 3:
        feats = list(feats)  # all videos of equal length, saved as one block
    elif feats.dtype != object or feats.ndim != 1:
        raise WtalError(
            f"{path}: expected one [T, D] array per video (object array), got {feats.dtype} {list(feats.shape)}"
        )
    if len(feats) != n_videos:
        raise WtalError(f"{path} has {len(feats)} videos but the annotations have {n_videos}")
    out = []
    width = dim
    for name, x in zip(names, feats):
        x = np.asarray(x)
        where = f"{path}: video '{name}'"
        if x.ndim != 2 or x.shape[0] == 0:
            raise WtalError(f"{where}: features must be a non-empty [T, D] array, got shape {list(x.shape)}")
        if not np.issubdtype(x.dtype, np.floating):
            raise WtalError(f"{where}: features must be floating point, got {x.dtype}")
        if width is None:
            width = x.shape[1]
        if x.shape[1] != width:
            raise WtalError(f"{where}: feature dimension {x.shape[1]}, expected {width}")
        if not np.isfinite(x).all():
            raise WtalError(f"{where}: features contain NaN or infinite values")
        out.append(x)
    return out


def import_thumos(
    features_path,
    annotation_dir,
    out_dir,
    dim: int | None = 2048,
    on_video: Callable[[int, int, str], None] | None = None,
) -> ImportSummary:
    """Write ``out_dir/annotations.json`` and ``out_dir/features/cbp/`` from the release files.

    ``dim``: the expected feature width (2048 for I3D RGB+flow; None accepts
    any width shared by all videos). ``on_video(i, n, name)`` is called after
    each video's features are written (progress display).
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise WtalError(f"output already exists and is not an empty folder: {out}")
    ann = read_annotation_dir(annotation_dir)
    names = list(ann.videos)
    feats = read_features(features_path, len(names), names, dim)
    meta = StreamMeta(
        CBP_META.backbone, int(feats[0].shape[1]), CBP_META.fps, CBP_META.snippet_length, CBP_META.snippet_stride
    )

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        stream = tmp / "features" / "cbp"
        stream.mkdir(parents=True)
        wio.write_json(stream / "meta.json", meta.to_dict())
        for i, (name, x) in enumerate(zip(names, feats)):
            wio.save_npy(stream / f"{name}.npy", x.astype(np.float32, copy=False))
            if on_video is not None:
                on_video(i, len(names), name)
        ann.save(tmp / "annotations.json")
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    subsets = [v.subset for v in ann.videos.values()]
    return ImportSummary(
        out=out,
        n_videos=len(names),
        n_train=subsets.count("train"),
        n_test=subsets.count("test"),
        n_segments=sum(len(v.segments) for v in ann.videos.values()),
        n_classes=len(ann.classes),
        n_snippets=int(sum(x.shape[0] for x in feats)),
    )
