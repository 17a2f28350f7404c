"""Import the THUMOS14 "reduced" release (W-TALC, UM, CO2-Net, DELU) as a wtalkit dataset.

The release is one feature file plus a folder of annotation arrays, all
aligned by video index (NumPy object/bytes arrays; object arrays are pickles,
read by :func:`load_npy` with an unpickler that only rebuilds NumPy arrays and
plain values, never ``np.load(allow_pickle=True)``):

* ``Thumos14reduced-I3D-JOINTFeatures.npy``: one ``[T, 2048]`` float array per
  video (I3D RGB+flow, 16-frame snippets at 25 fps);
* ``videoname.npy`` (bytes), ``subset.npy`` (``validation`` | ``test``),
  ``duration.npy`` (seconds, ``[N, 1]``), ``labels.npy`` (per-instance class
  names), ``segments.npy`` (per-instance ``[start, end]`` seconds),
  ``classlist.npy`` (bytes) and optionally ``labels_all.npy`` (the video's
  class names) and ``original_fps.npy``.

A few videos of the release have actions past their ``duration.npy`` value;
their duration is extended to the last action's end and the release's value
kept as ``release_duration`` (the actions are the official ground truth).

THUMOS14 trains on its validation videos, so ``validation`` becomes ``train``
and ``test`` stays ``test``. Everything is validated before anything is
written, and the dataset is assembled in a temporary folder that is renamed
into place at the end: an error never leaves a partial dataset behind.
"""

from __future__ import annotations

import math
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.lib import format as npformat

from wtalkit import io as wio
from wtalkit.data.annotations import SEGMENT_TOLERANCE, Annotations, Video, check_video_name
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
    #: videos whose duration.npy ends before their annotated actions: duration extended to the last action's end
    extended: list = field(default_factory=list)


def _text(x, where: str = "") -> str:
    if isinstance(x, (bytes, np.bytes_)):
        try:
            return bytes(x).decode("utf-8")
        except UnicodeDecodeError:
            raise WtalError(f"{where or 'release'}: {bytes(x)[:60]!r} is not UTF-8 text") from None
    return str(x)


# --------------------------------------------------------------------------- safe .npy reading


def _allowed_globals() -> dict:
    """The only callables an object-array pickle may name: what NumPy needs to rebuild arrays.

    Both module spellings are listed (``numpy.core`` from NumPy 1 files, Python 2
    pickles included; ``numpy._core`` from NumPy 2); each maps to the object of
    the running NumPy, so nothing is imported by name from the file.
    """
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # NumPy < 2
        from numpy.core import multiarray, numeric

    table = {}
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        table[(f"{core}.multiarray", "scalar")] = multiarray.scalar
        table[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer
    table[("numpy", "ndarray")] = np.ndarray
    table[("numpy", "dtype")] = np.dtype
    # Plain containers and values written by protocols < 3 (Python 2 included) as calls.
    for mod in ("builtins", "__builtin__"):
        for name, obj in (
            ("set", set),
            ("frozenset", frozenset),
            ("complex", complex),
            ("bytes", bytes),
            ("bytearray", bytearray),
        ):
            table[(mod, name)] = obj
    table[("_codecs", "encode")] = _latin1_encode
    return table


def _latin1_encode(text, encoding="latin1", *errors):
    """``_codecs.encode`` as protocol-2 pickles use it to write ``bytes``: text codecs only."""
    if not isinstance(text, str) or encoding.lower().replace("-", "") not in ("latin1", "iso88591", "ascii", "utf8"):
        raise pickle.UnpicklingError("unsupported _codecs.encode call")
    return text.encode(encoding)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles the payload of an object-dtype ``.npy`` file, refusing anything but NumPy arrays."""

    def __init__(self, fh, where: str):
        # latin1: Python 2 pickles store array data as ``str`` (NumPy's own advice for such files).
        super().__init__(fh, encoding="latin1")
        self.where = where
        self.allowed = _allowed_globals()

    def find_class(self, module, name):
        obj = self.allowed.get((module, name))
        if obj is None:
            what = f"{module}.{name}"
            what = what if what.isprintable() and len(what) <= 80 else ascii(what[:80])
            raise WtalError(f"{self.where}: refuses to unpickle {what} (only NumPy arrays are read from the release)")
        return obj

    def persistent_load(self, pid):
        raise WtalError(f"{self.where}: refuses to unpickle a persistent reference")


def load_npy(path) -> np.ndarray:
    """Read a ``.npy`` file; object arrays through :class:`_ArrayUnpickler`, never plain ``pickle``.

    The header is parsed here (a file that is not ``.npy`` is refused before any
    byte of it is unpickled); non-object arrays are read with
    ``allow_pickle=False``. Every problem is a one-line :class:`WtalError`.
    """
    path = Path(path)
    if not path.exists():
        raise WtalError(f"missing file: {path}")
    try:
        with open(path, "rb") as fh:
            version = npformat.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = npformat.read_array_header_1_0(fh)
            else:
                shape, _, dtype = npformat.read_array_header_2_0(fh)
            if not dtype.hasobject:
                fh.seek(0)
                return np.load(fh, allow_pickle=False)
            if dtype != np.dtype(object):
                raise WtalError(f"{path}: structured arrays with Python objects ({dtype}) are not supported")
            array = _ArrayUnpickler(fh, str(path)).load()
    except WtalError:
        raise
    except (ValueError, OSError, EOFError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WtalError(f"{path}: not a readable .npy file ({msg})") from None
    except Exception as e:  # malformed pickle data fails in many ways
        raise WtalError(f"{path}: cannot unpickle its object array ({type(e).__name__})") from None
    if not isinstance(array, np.ndarray) or array.dtype != object or array.shape != tuple(shape):
        raise WtalError(f"{path}: the object array's data does not match its header")
    return array


def _load_array(path: Path) -> np.ndarray:
    return load_npy(path)


def read_annotation_dir(folder) -> Annotations:
    """Validate the annotation arrays of the release and turn them into :class:`Annotations`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise WtalError(f"annotation folder not found: {folder}")
    arr = {name: _load_array(folder / f"{name}.npy") for name in REQUIRED}
    for name in ("labels_all", "original_fps"):
        if (folder / f"{name}.npy").exists():
            arr[name] = _load_array(folder / f"{name}.npy")

    classes = [_text(c, f"{folder}/classlist.npy") for c in np.asarray(arr.pop("classlist")).reshape(-1)]
    if not classes or len(set(classes)) != len(classes):
        raise WtalError(f"{folder}/classlist.npy: expected distinct class names")
    names = [_text(v, f"{folder}/videoname.npy") for v in np.asarray(arr["videoname"]).reshape(-1)]
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
        check_video_name(name, f"{folder}/videoname.npy")
        where = f"{folder}: video '{name}'"
        subset = _first(arr["subset"][i])
        subset = _text(subset, f"{folder}/subset.npy") if subset is not None else None
        if not subset:
            raise WtalError(f"{where}: subset.npy has no subset name for this video")
        subset = SUBSET_MAP.get(subset, subset)
        try:
            duration = float(np.asarray(arr["duration"][i], dtype=np.float64).reshape(-1)[0])
        except (TypeError, ValueError, IndexError):
            duration = float("nan")
        if not (math.isfinite(duration) and duration > 0):
            raise WtalError(f"{where}: duration must be a positive number of seconds")
        labels = [_text(x, f"{where} (labels.npy)") for x in _as_list(arr["labels"][i])]
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
            extra = [_text(x, f"{where} (labels_all.npy)") for x in _as_list(arr["labels_all"][i])]
            bad = [x for x in extra if x not in cset]
            if bad:
                raise WtalError(f"{where}: label '{bad[0]}' (labels_all.npy) is not in classlist.npy")
            video_labels.update(extra)
        fps = None
        if "original_fps" in arr:
            try:
                f = float(np.asarray(arr["original_fps"][i], dtype=np.float64).reshape(-1)[0])
            except (TypeError, ValueError, IndexError):
                f = float("nan")
            fps = f if math.isfinite(f) and f > 0 else None
        extra = {}
        end = max((e for _, e, _ in segments), default=0.0)
        if end > duration + SEGMENT_TOLERANCE:
            # The release has videos whose duration.npy is shorter than their annotated actions
            # (video_test_0000270 ends at 176 s, its actions run to 714 s). The actions are the
            # official ground truth: the duration is extended to cover them, the release's value kept.
            extra["release_duration"] = duration
            duration = end
        videos[name] = Video(name, subset, duration, segments, sorted(video_labels), fps, extra)
    return Annotations(classes, videos)


def _first(x):
    """The first element of a (possibly nested, possibly 0-d) entry, or None when it is empty."""
    try:
        flat = np.asarray(x).reshape(-1)
    except (TypeError, ValueError):
        return None
    return flat[0] if flat.size else None


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
        extended=[v.name for v in ann.videos.values() if "release_duration" in v.extra],
    )
