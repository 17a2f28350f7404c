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
from pathlib import Path

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


def read_json(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise WtalError(f"file not found: {path}")
    try:
        with open(path) as f:
            return json.load(f)
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
            segs.append((s, e, label))
        labels = entry.get("labels")
        if labels is None:
            labels = []
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            _fail(path, f"video '{name}': 'labels' must be a list of class names")
        labels = sorted(set(labels) | {l for _, _, l in segs})
        found.update(labels)
        fps = entry.get("fps")
        extra = {k: v for k, v in entry.items() if k not in ("subset", "duration", "annotations", "labels", "fps")}
        videos[str(name)] = Video(
            str(name),
            subset,
            float(duration),
            segs,
            labels,
            float(fps) if isinstance(fps, (int, float)) else None,
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
