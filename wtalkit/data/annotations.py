"""``annotations.json``: the dataset's ActivityNet-style annotation file.

Format (the public contract, see README)::

    {"classes": [NAME, ...],
     "database": {VIDEO: {"subset": "train" | "validation" | "test",
                          "duration": SECONDS,
                          "annotations": [{"segment": [START, END], "label": NAME}, ...],
                          "labels": [NAME, ...]}}}

``labels`` (video-level, weak supervision) may be given alone; where
``annotations`` exist the labels are derived from them. Plain ActivityNet /
THUMOS files as distributed (no ``classes`` key) are accepted: the classes are
then the sorted set of labels found.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath

from wtalkit import io as wio
from wtalkit.errors import WtalError


@dataclass
class Video:
    name: str
    subset: str
    duration: float
    segments: list = field(default_factory=list)  # [(start, end, label), ...]
    labels: list = field(default_factory=list)  # sorted video-level class names
    fps: float | None = None
    extra: dict = field(default_factory=dict)  # other keys, kept on save

    @property
    def has_ground_truth(self) -> bool:
        return bool(self.segments)


@dataclass
class Annotations:
    classes: list
    videos: dict  # name -> Video

    def subset(self, subset: str | None) -> list:
        """Videos of a subset (all when ``subset`` is None), in file order."""
        return [v for v in self.videos.values() if subset is None or v.subset == subset]

    def class_index(self) -> dict:
        return {c: i for i, c in enumerate(self.classes)}

    def to_json(self) -> dict:
        db = {}
        for v in self.videos.values():
            entry = dict(v.extra)
            entry.update({"subset": v.subset, "duration": v.duration})
            if v.fps is not None:
                entry["fps"] = v.fps
            entry["annotations"] = [{"segment": [s, e], "label": l} for s, e, l in v.segments]
            entry["labels"] = list(v.labels)
            db[v.name] = entry
        return {"classes": list(self.classes), "database": db}

    def save(self, path) -> None:
        wio.write_json(path, self.to_json())


def _fail(path, msg):
    raise WtalError(f"{path}: {msg}")


def check_video_name(name, where: str = "video") -> str:
    """Return ``name`` if it is usable as a plain file name, else raise a one-line :class:`WtalError`.

    Video ids name files (``features/STREAM/VIDEO.npy``, plots, pseudo-labels),
    so they must not reach outside their folder: no ``/`` or ``\\``, not ``.``
    or ``..`` or any name starting with ``.``, no drive (``C:``), no control
    character (NUL, newline, ...). ``where`` says where the name came from.
    """
    if not isinstance(name, str):
        raise WtalError(f"{where}: video id must be a string, got {type(name).__name__}")
    bad = (
        not name
        or name.startswith(".")
        or "/" in name
        or "\\" in name
        or any(ord(ch) < 32 or ord(ch) == 127 for ch in name)
        or bool(PureWindowsPath(name).drive)
    )
    if bad:
        raise WtalError(
            f"{where}: video id {name!r} is not a plain file name "
            "(no '/', '\\', leading '.', drive or control character)"
        )
    return name


#: A ground-truth segment must start in ``[0, duration]`` up to this many seconds (rounding in published
#: files). Its end may overhang the duration: published ActivityNet-style files have such segments and the
#: official evaluation scores them as given, so they are kept as they are.
SEGMENT_TOLERANCE = 1e-3


def _unique_keys(pairs):
    """``object_pairs_hook`` for :func:`json.load`: a key given twice in one object is an error."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


class _DuplicateKey(ValueError):
    def __init__(self, key):
        super().__init__(key)
        self.key = key


def read_json(path) -> dict:
    """Read a UTF-8 JSON file; any problem is a one-line :class:`WtalError`.

    A key repeated inside one object (a video id given twice, which the JSON
    parser would silently resolve to its last value) is an error too.
    """
    path = Path(path)
    if not path.exists():
        raise WtalError(f"file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f, object_pairs_hook=_unique_keys)
    except _DuplicateKey as e:
        raise WtalError(f"{path}: key {e.key!r} appears twice in one object (e.g. a video id given twice)") from None
    except json.JSONDecodeError as e:
        raise WtalError(f"{path}: malformed JSON (line {e.lineno}: {e.msg})") from None
    except UnicodeDecodeError:
        raise WtalError(f"{path}: not a UTF-8 JSON file") from None
    except OSError as e:
        raise WtalError(f"{path}: cannot read ({e.strerror})") from None


def parse_annotations(data, path="annotations") -> Annotations:
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        _fail(path, "expected an object with a 'database' mapping (ActivityNet style)")
    videos = {}
    found = set()
    for name, entry in data["database"].items():
        check_video_name(name, f"{path}")
        if not isinstance(entry, dict):
            _fail(path, f"video '{name}': entry must be an object")
        subset = entry.get("subset", "train")
        if not isinstance(subset, str):
            _fail(path, f"video '{name}': 'subset' must be a string")
        duration = entry.get("duration")
        if (
            not isinstance(duration, (int, float))
            or isinstance(duration, bool)
            or not math.isfinite(duration)
            or duration <= 0
        ):
            _fail(path, f"video '{name}': 'duration' must be a positive number of seconds")
        segs = []
        for a in entry.get("annotations", []) or []:
            seg = a.get("segment") if isinstance(a, dict) else None
            label = a.get("label") if isinstance(a, dict) else None
            if (
                not isinstance(seg, (list, tuple))
                or len(seg) != 2
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in seg)
            ):
                _fail(path, f"video '{name}': each annotation needs 'segment': [start, end]")
            if not isinstance(label, str):
                _fail(path, f"video '{name}': each annotation needs a string 'label'")
            s, e = float(seg[0]), float(seg[1])
            if not (math.isfinite(s) and math.isfinite(e)) or e < s:
                _fail(path, f"video '{name}': segment [{s}, {e}] must have start <= end")
            if s < -SEGMENT_TOLERANCE or s > float(duration) + SEGMENT_TOLERANCE:
                _fail(
                    path,
                    f"video '{name}': segment [{s}, {e}] starts outside the video (duration {float(duration)} s)",
                )
            segs.append((s, e, label))
        labels = entry.get("labels")
        if labels is None:
            labels = []
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            _fail(path, f"video '{name}': 'labels' must be a list of class names")
        labels = sorted(set(labels) | {l for _, _, l in segs})
        found.update(labels)
        fps = entry.get("fps")
        if fps is not None and not (
            isinstance(fps, (int, float)) and not isinstance(fps, bool) and math.isfinite(fps) and fps > 0
        ):
            _fail(path, f"video '{name}': 'fps' must be a positive number of frames per second")
        extra = {k: v for k, v in entry.items() if k not in ("subset", "duration", "annotations", "labels", "fps")}
        videos[str(name)] = Video(
            str(name),
            subset,
            float(duration),
            segs,
            labels,
            float(fps) if fps is not None else None,
            extra,
        )
    classes = data.get("classes")
    if classes is None:
        classes = sorted(found)
    elif not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        _fail(path, "'classes' must be a list of class names")
    elif len(set(classes)) != len(classes):
        _fail(path, "'classes' has duplicate names")
    unknown = sorted(found - set(classes))
    if unknown:
        _fail(path, f"label '{unknown[0]}' is not in 'classes'")
    return Annotations(list(classes), videos)


def load_annotations(path) -> Annotations:
    return parse_annotations(read_json(path), path)
