"""Hardening of the data and evaluation inputs (issue 12).

* ``import-thumos`` reads object-array ``.npy`` files with a restricted
  unpickler: a crafted file never runs code, legitimate ones (the real release
  included) still load;
* video ids are plain file names everywhere; duplicate JSON keys, segments
  outside the video, bad ``meta.json`` numbers and non-UTF-8 input are
  one-line errors;
* ``score`` keeps stdout machine-readable and shows its notes on stderr.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shlex
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npformat

from tests.cli_helpers import assert_one_line_error, run_cli
from tests.test_thumos_import import SHARED, obj_array, source_videos, write_release
from wtalkit.data.annotations import check_video_name, load_annotations, parse_annotations
from wtalkit.data.features import Dataset, FeatureStream, StreamMeta
from wtalkit.data.thumos import load_npy, read_annotation_dir
from wtalkit.errors import WtalError

# --------------------------------------------------------------------------- malicious .npy files


class _System:
    """Unpickling it runs a shell command (``os.system``)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


class _Open:
    """Unpickling it creates a file with the builtin ``open``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


class _Eval:
    """Unpickling it evaluates Python code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w')",))


PAYLOADS = {"os.system": _System, "open": _Open, "eval": _Eval}


def evil_array(payload, marker) -> np.ndarray:
    """An object array shaped like a release file, one of whose entries is the payload."""
    return obj_array([["BaseballPitch"], payload(marker), [b"x"]])


def save_raw_object_npy(path: Path, obj, shape=(3,), protocol=4) -> None:
    """An object-dtype ``.npy`` header followed by the pickle of ``obj`` (whatever it is)."""
    with open(path, "wb") as f:
        npformat.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": shape})
        pickle.dump(obj, f, protocol=protocol)


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_payload_is_real(tmp_path, payload):
    """The crafted files below do run their code under plain ``np.load(allow_pickle=True)``."""
    marker = tmp_path / "MARKER"
    np.save(tmp_path / "evil.npy", evil_array(PAYLOADS[payload], marker), allow_pickle=True)
    np.load(tmp_path / "evil.npy", allow_pickle=True)
    assert marker.exists()


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
@pytest.mark.parametrize("target", ["labels", "segments", "labels_all", "videoname", "classlist", "features"])
def test_import_thumos_never_unpickles_code(tmp_path, payload, target):
    videos, classes = source_videos()
    marker = tmp_path / "MARKER"
    feats, ann_dir, _ = write_release(
        tmp_path / "rel", videos, classes, dim=16, **{target: evil_array(PAYLOADS[payload], marker)}
    )
    out = tmp_path / "ds"
    res = run_cli(["import-thumos", feats, ann_dir, "-o", out])
    line = assert_one_line_error(res)
    assert "refuses to unpickle" in line, line
    assert not marker.exists()
    assert not out.exists() and [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_restricted_unpickler_refuses_every_other_shape_of_attack(tmp_path):
    marker = tmp_path / "MARKER"
    cases = {
        # the payload as the whole pickle, not inside an array
        "top-level": lambda p: save_raw_object_npy(p, _System(marker)),
        # protocol 2 (globals written with GLOBAL rather than STACK_GLOBAL)
        "protocol 2": lambda p: save_raw_object_npy(p, obj_array([1, _Open(marker), 2]), protocol=2),
        # a plain pickle file without any .npy header: np.load(allow_pickle=True) would unpickle it
        "no header": lambda p: p.write_bytes(pickle.dumps(_System(marker))),
    }
    for name, make in cases.items():
        path = tmp_path / f"{name}.npy"
        make(path)
        with pytest.raises(WtalError) as e:
            load_npy(path)
        assert "\n" not in str(e.value) and str(path) in str(e.value), name
        assert not marker.exists(), name


def test_restricted_unpickler_error_names_the_refused_callable(tmp_path):
    path = tmp_path / "evil.npy"
    np.save(path, evil_array(_System, tmp_path / "MARKER"), allow_pickle=True)
    with pytest.raises(WtalError, match=r"refuses to unpickle (posix|os|nt)\.system"):
        load_npy(path)


def test_garbage_and_mismatched_object_payloads(tmp_path):
    bad = tmp_path / "bad.npy"
    with open(bad, "wb") as f:
        npformat.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": (3,)})
        f.write(b"\x80\x04garbage")
    with pytest.raises(WtalError, match="cannot unpickle") as e:
        load_npy(bad)
    assert "\n" not in str(e.value)
    save_raw_object_npy(bad, [1, 2, 3])  # a list, not an array
    with pytest.raises(WtalError, match="does not match its header"):
        load_npy(bad)
    save_raw_object_npy(bad, obj_array([1, 2]), shape=(5,))
    with pytest.raises(WtalError, match="does not match its header"):
        load_npy(bad)
    (tmp_path / "short.npy").write_bytes(b"\x93NUMPY")
    with pytest.raises(WtalError, match="not a readable .npy file"):
        load_npy(tmp_path / "short.npy")


# --------------------------------------------------------------------------- legitimate object arrays


def _same(a, b) -> bool:
    """Deep equality of what np.load and load_npy return (arrays, lists, bytes, scalars)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.dtype == object:
            return all(_same(x, y) for x, y in zip(a.reshape(-1), b.reshape(-1)))
        return np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def legit_arrays() -> dict:
    rng = np.random.default_rng(0)
    return {
        "bytes": np.array([b"a", b"b"], dtype=object),
        "str": np.array(["BaseballPitch", "Diving"], dtype=object),
        "ragged float arrays": obj_array([rng.standard_normal((n, 4)).astype(np.float32) for n in (3, 7, 1)]),
        "float64 and int arrays": obj_array([np.arange(5), np.linspace(0, 1, 3), np.zeros((0, 2))]),
        "nested lists": obj_array([[[0.5, 1.25], [3.0, 4.0]], [], [["a", b"b"]]]),
        "numpy scalars": obj_array([np.float64(1.5), np.float32(2.5), np.int64(3), np.bool_(True)]),
        "containers": obj_array([{"a": 1}, (1, 2), {1, 2}, frozenset({3}), 1 + 2j, None, bytearray(b"xy")]),
        "2-D": np.array([[1, "x"], [None, 2.5]], dtype=object),
        "fortran": np.asfortranarray(np.array([[1, "x"], [None, 2.5]], dtype=object)),
    }


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_legitimate_object_arrays_still_load(tmp_path, protocol):
    for name, a in legit_arrays().items():
        path = tmp_path / f"{name}.npy"
        if protocol == 4:
            np.save(path, a, allow_pickle=True)  # what NumPy itself writes
        else:
            save_raw_object_npy(path, a, a.shape, protocol=protocol)
        got = load_npy(path)
        assert _same(got, np.load(path, allow_pickle=True)), (name, protocol)


def test_plain_arrays_are_read_without_pickle(tmp_path):
    for a in (np.arange(6.0).reshape(2, 3), np.array([b"ab", b"c"]), np.zeros((0, 4), np.float32)):
        np.save(tmp_path / "a.npy", a)
        got = load_npy(tmp_path / "a.npy")
        assert got.dtype == a.dtype and np.array_equal(got, a)
    # a structured dtype holding objects is never unpickled
    s = np.array([(1, "x")], dtype=[("a", "i4"), ("b", "O")])
    np.save(tmp_path / "s.npy", s, allow_pickle=True)
    with pytest.raises(WtalError, match="not supported"):
        load_npy(tmp_path / "s.npy")


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/thumos14-reduced-annotations")
def test_real_release_annotations_load_through_the_restricted_unpickler():
    files = sorted(SHARED.glob("*.npy"))
    assert {p.stem for p in files} >= {"videoname", "subset", "duration", "labels", "segments", "classlist"}
    for p in files:
        assert _same(load_npy(p), np.load(p, allow_pickle=True)), p.name
    ann = read_annotation_dir(SHARED)
    assert len(ann.videos) == 412 and len(ann.classes) == 20
    assert sum(len(v.segments) for v in ann.videos.values()) == 6365
    assert len(ann.subset("train")) == 200 and len(ann.subset("test")) == 212
    # Five videos of the release have actions past their duration.npy: the duration covers them,
    # the release's value is kept, and the result is a valid annotations.json.
    extended = {v.name: v for v in ann.videos.values() if "release_duration" in v.extra}
    assert sorted(extended) == [
        "video_test_0000270",
        "video_test_0000814",
        "video_test_0001081",
        "video_validation_0000364",
        "video_validation_0000856",
    ]
    v = extended["video_test_0000270"]
    assert v.extra["release_duration"] == pytest.approx(176.2453514) and v.duration == pytest.approx(713.7)
    again = parse_annotations(json.loads(json.dumps(ann.to_json())))
    assert again.videos["video_test_0000270"].extra["release_duration"] == pytest.approx(176.2453514)


def test_import_reports_extended_durations(tmp_path):
    videos, classes = source_videos()
    videos = [list(v) for v in videos]
    last_end = max(e for _, e in videos[0][4])
    videos[0][2] = last_end - 0.25  # duration.npy ends before the last action does
    feats, ann_dir, _ = write_release(tmp_path / "rel", videos, classes, dim=2048)
    res = run_cli(["import-thumos", feats, ann_dir, "-o", tmp_path / "ds"])
    assert res.exit_code == 0, res.output
    assert "1 videos have actions beyond their duration.npy" in " ".join(res.stderr.split())
    v = load_annotations(tmp_path / "ds" / "annotations.json").videos[videos[0][0]]
    assert v.duration == pytest.approx(last_end)
    assert v.extra["release_duration"] == pytest.approx(videos[0][2])


# --------------------------------------------------------------------------- video names


def test_non_utf8_and_unusable_video_names_in_import(tmp_path):
    videos, classes = source_videos()
    names = [v[0].encode() for v in videos]
    cases = {
        "not UTF-8": names[:1] + [b"video_\xff\xfe"] + names[2:],
        "not a plain file name": names[:1] + [b"../escape"] + names[2:],
        "not a plain file name ": names[:1] + [b"a\\b"] + names[2:],
    }
    for k, (match, vn) in enumerate(cases.items()):
        feats, ann_dir, _ = write_release(tmp_path / f"rel{k}", videos, classes, dim=8, videoname=np.array(vn))
        res = run_cli(["import-thumos", feats, ann_dir, "-o", tmp_path / f"ds{k}"])
        assert match.strip() in assert_one_line_error(res)
        assert not (tmp_path / f"ds{k}").exists()
    bad_label = obj_array([[b"\xff"]] + [v[3] for v in videos[1:]])
    feats, ann_dir, _ = write_release(tmp_path / "relx", videos, classes, dim=8, labels=bad_label)
    assert "not UTF-8" in assert_one_line_error(run_cli(["import-thumos", feats, ann_dir, "-o", tmp_path / "dsx"]))


BAD_NAMES = ["../../x", "/etc/passwd", "a/b", "a\\b", ".", "..", ".hidden", "", "a\x00b", "a\nb", "C:x", "\x7f"]
GOOD_NAMES = ["video_test_0000001", "v_-0edUL8zmA", "a b", "x..y", "name.with.dots", "日本語"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_check_video_name_refuses(name):
    with pytest.raises(WtalError, match="not a plain file name") as e:
        check_video_name(name, "here")
    assert "\n" not in str(e.value) and str(e.value).startswith("here: ")


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_check_video_name_accepts(name):
    assert check_video_name(name, "here") == name


def _db(videos: dict, classes=("A", "B")) -> dict:
    return {"classes": list(classes), "database": videos}


def _video(duration=10.0, segments=(), subset="test", **extra) -> dict:
    return {
        "subset": subset,
        "duration": duration,
        "annotations": [{"segment": list(s), "label": lab} for *s, lab in segments],
        **extra,
    }


def test_annotations_refuse_unusable_video_ids(tmp_path):
    for name in BAD_NAMES:
        with pytest.raises(WtalError, match="not a plain file name") as e:
            parse_annotations(_db({name: _video()}), "ann.json")
        assert "\n" not in str(e.value)
    ann = parse_annotations(_db({n: _video() for n in GOOD_NAMES}))
    assert list(ann.videos) == GOOD_NAMES


def test_feature_stream_paths_stay_in_their_folder(tmp_path):
    stream = FeatureStream.create(tmp_path / "cbp", StreamMeta("x", 4))
    assert stream.path("v1") == tmp_path / "cbp" / "v1.npy"
    for name in ("../v1", "/tmp/v1", "..", "a/b"):
        for call in (stream.path, stream.has, stream.load):
            with pytest.raises(WtalError, match="not a plain file name"):
                call(name)
        with pytest.raises(WtalError, match="not a plain file name"):
            stream.write(name, np.zeros((2, 4), np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cbp"]


def test_score_refuses_traversing_video_ids(tmp_path):
    ann = tmp_path / "annotations.json"
    ann.write_text(json.dumps(_db({"../../x": _video(segments=[(0, 1, "A")])})))
    res = tmp_path / "res.json"
    res.write_text(json.dumps({"results": {}}))
    assert "not a plain file name" in assert_one_line_error(run_cli(["score", ann, res]))


# --------------------------------------------------------------------------- annotations.json


def test_duplicate_video_ids_are_an_error(tmp_path):
    path = tmp_path / "annotations.json"
    one = json.dumps(_video(segments=[(0, 1, "A")]))
    two = json.dumps(_video(segments=[(2, 3, "B")]))
    path.write_text('{"classes": ["A", "B"], "database": {"v": ' + one + ', "v": ' + two + "}}")
    with pytest.raises(WtalError, match="'v' appears twice") as e:
        load_annotations(path)
    assert "\n" not in str(e.value)
    res = tmp_path / "res.json"
    res.write_text(json.dumps({"results": {}}))
    assert "appears twice" in assert_one_line_error(run_cli(["score", path, res]))
    # Duplicate keys anywhere (here: in a results file) are refused too: the last one would silently win.
    res.write_text('{"results": {"v": [], "v": []}}')
    path.write_text(json.dumps(_db({"v": _video(segments=[(0, 1, "A")])})))
    assert "appears twice" in assert_one_line_error(run_cli(["score", path, res]))


def test_segments_must_start_inside_the_video():
    ok = parse_annotations(_db({"v": _video(10.0, [(0.0, 10.0, "A"), (9.9995, 10.0004, "B"), (8.0, 12.5, "A")])}))
    assert len(ok.videos["v"].segments) == 3  # rounding tolerated; an end past the duration is kept as is
    for seg in [(-0.5, 2.0, "A"), (10.5, 12.0, "A"), (11.0, 11.0, "B")]:
        with pytest.raises(WtalError, match="video 'v': segment .* starts outside the video") as e:
            parse_annotations(_db({"v": _video(10.0, [seg])}), "ann.json")
        assert "\n" not in str(e.value)


def test_video_fps_must_be_a_positive_number():
    assert parse_annotations(_db({"v": _video(fps=30)})).videos["v"].fps == 30.0
    assert parse_annotations(_db({"v": _video()})).videos["v"].fps is None
    for fps in (0, -1, float("nan"), float("inf"), True, "30"):
        with pytest.raises(WtalError, match="'fps' must be a positive number"):
            parse_annotations(_db({"v": _video(fps=fps)}))


# --------------------------------------------------------------------------- meta.json


@pytest.mark.parametrize(
    "override, match",
    [
        ({"fps": float("nan")}, "'fps' must be a finite number > 0, got NaN"),
        ({"fps": float("inf")}, "'fps' must be a finite number > 0, got Infinity"),
        ({"fps": 0}, "'fps'"),
        ({"fps": "25"}, "'fps'"),
        ({"fps": True}, "'fps'"),
        ({"dim": True}, "'dim' must be a positive integer"),
        ({"dim": 0}, "'dim'"),
        ({"dim": 4.5}, "'dim'"),
        ({"dim": "4"}, "'dim'"),
        ({"dim": 10**400}, "'dim'"),
        ({"snippet_length": -1}, "'snippet_length'"),
        ({"snippet_stride": float("nan")}, "'snippet_stride'"),
        ({"snippet_stride": False}, "'snippet_stride'"),
        ({"backbone": 3}, "'backbone' must be a string"),
    ],
)
def test_bad_meta_json(tmp_path, override, match):
    folder = tmp_path / "cbp"
    folder.mkdir()
    meta = {"backbone": "x", "dim": 4, "fps": 25.0, "snippet_length": 16, "snippet_stride": 16, **override}
    (folder / "meta.json").write_text(json.dumps(meta))  # NaN / Infinity as Python's json writes them
    with pytest.raises(WtalError, match=match) as e:
        FeatureStream(folder)
    assert "\n" not in str(e.value) and "meta.json" in str(e.value)


def test_good_meta_json(tmp_path):
    m = StreamMeta.from_dict({"backbone": "x", "dim": 4.0, "fps": 30, "snippet_length": 8, "snippet_stride": 4})
    assert m == StreamMeta("x", 4, 30.0, 8, 4) and isinstance(m.dim, int) and isinstance(m.fps, float)
    assert StreamMeta.from_dict(m.to_dict()) == m


# --------------------------------------------------------------------------- missing feature files


def test_videos_without_features_are_recorded(tmp_path):
    root = tmp_path / "ds"
    stream = FeatureStream.create(root / "features" / "cbp", StreamMeta("x", 4))
    db = {f"v{i}": _video(segments=[(0, 1, "A")], subset="train" if i < 3 else "test") for i in range(5)}
    (root / "annotations.json").write_text(json.dumps(_db(db)))
    for name in ("v0", "v2", "v4"):
        stream.write(name, np.zeros((3, 4), np.float32))
    ds = Dataset(root)
    assert [v.name for v in ds.videos("train", "cbp")] == ["v0", "v2"]
    assert ds.skipped[("train", "cbp")] == ["v1"]
    assert [v.name for v in ds.videos(None, "cbp")] == ["v0", "v2", "v4"]
    assert ds.skipped[(None, "cbp")] == ["v1", "v3"]
    assert ds.missing("test", "cbp") == ["v3"]
    assert len(ds.videos("test")) == 2  # without a stream nothing is filtered


# --------------------------------------------------------------------------- score


def _oad_files(tmp_path):
    ann = tmp_path / "annotations.json"
    ann.write_text(json.dumps(_db({"v": _video(10.0, [(0.0, 2.0, "A")])})))
    lines = [
        json.dumps({"video": "v", "frame": i, "t": float(i), "scores": {"A": 1.0 - i / 10, "B": 0.1}}) for i in range(6)
    ]
    return ann, lines


def test_score_oad_non_utf8_line_is_one_line_error(tmp_path):
    ann, lines = _oad_files(tmp_path)
    frames = tmp_path / "frames.jsonl"
    frames.write_bytes(("\n".join(lines[:3]) + "\n").encode() + b'{"video": "\xff\xfe"}\n')
    line = assert_one_line_error(run_cli(["score", "--protocol", "oad", ann, frames]))
    assert "frames.jsonl:4: not UTF-8 text" in line
    frames.write_bytes(b"\xff\xfe\x00\x00garbage")
    assert "frames.jsonl:1: not UTF-8" in assert_one_line_error(run_cli(["score", "--protocol", "oad", ann, frames]))
    frames.write_text("\n".join(lines) + "\n")
    res = run_cli(["score", "--protocol", "oad", ann, frames, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["frames"] == 6
    assert "6 frames of 1 videos" in res.stderr


def test_score_json_keeps_stdout_clean_and_notes_on_stderr(tmp_path):
    ann = tmp_path / "annotations.json"
    ann.write_text(json.dumps(_db({"v": _video(10.0, [(0.0, 2.0, "A")])})))
    res_path = tmp_path / "res.json"
    preds = [{"label": "A", "score": 0.9, "segment": [0.0, 2.0]}]
    res_path.write_text(json.dumps({"results": {"v": preds, "nope": preds, "other": preds}}))
    res = run_cli(["score", ann, res_path, "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)  # nothing but the JSON on stdout
    assert set(doc) == {"tiou", "mAP", "average"}
    notes = " ".join(res.stderr.split())  # rich wraps long lines
    assert "2 result video ids are not in the annotations ('nope', 'other')" in notes
    res = run_cli(["score", ann, res_path])
    assert res.exit_code == 0 and "not in the annotations" in " ".join(res.stderr.split()) and "mAP" in res.stdout


def test_load_npy_reads_file_objects_only_through_the_header(tmp_path):
    """The .npy header is parsed before anything: a pickle disguised with a .npy name is refused."""
    buf = io.BytesIO()
    pickle.dump(np.array([1, 2]), buf)
    (tmp_path / "x.npy").write_bytes(buf.getvalue())
    with pytest.raises(WtalError, match="not a readable .npy file"):
        load_npy(tmp_path / "x.npy")
