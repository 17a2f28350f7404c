"""THUMOS14 "reduced" importer: round trip on a small release in the real format, and bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from wtalkit.cli import cli
from wtalkit.data.annotations import load_annotations
from wtalkit.data.features import Dataset
from wtalkit.data.thumos import import_thumos
from wtalkit.errors import WtalError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "thumos14-reduced-annotations"


def obj_array(items) -> np.ndarray:
    """A 1-D object array of Python lists (as the release stores them), never 2-D."""
    out = np.empty(len(items), dtype=object)
    for i, x in enumerate(items):
        out[i] = x
    return out


def source_videos():
    """(name, subset, duration, labels, segments, labels_all) x 5 and the class list.

    Drawn from the real annotation files when ../shared is there (3 validation
    and 2 test videos), synthetic otherwise.
    """
    if SHARED.is_dir():
        ld = {
            k: np.load(SHARED / f"{k}.npy", allow_pickle=True)
            for k in ("videoname", "subset", "duration", "labels", "segments", "labels_all", "classlist")
        }
        subsets = [s.decode() for s in ld["subset"]]
        pick = [i for i, s in enumerate(subsets) if s == "validation"][:3] + [
            i for i, s in enumerate(subsets) if s == "test"
        ][:2]
        videos = [
            (
                ld["videoname"][i].decode(),
                subsets[i],
                float(ld["duration"][i][0]),
                list(ld["labels"][i]),
                [list(map(float, s)) for s in ld["segments"][i]],
                list(ld["labels_all"][i]),
            )
            for i in pick
        ]
        return videos, [c.decode() for c in ld["classlist"]]
    classes = ["BaseballPitch", "Billiards", "Diving", "HighJump"]
    videos = []
    for i in range(5):
        sub = "validation" if i < 3 else "test"
        labs = [classes[i % 4]] * (i + 1)
        segs = [[2.0 * k, 2.0 * k + 1.5] for k in range(i + 1)]
        videos.append((f"video_{sub}_{i:07d}", sub, 30.0 + i, labs, segs, sorted(set(labs))))
    return videos, classes


def write_release(folder: Path, videos, classes, dim=2048, seed=0, **override):
    """Write the release files; ``override`` replaces any array before saving."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ann = folder / "annotations"
    ann.mkdir(exist_ok=True)
    feats = obj_array([rng.standard_normal((int(rng.integers(3, 12)), dim)).astype(np.float32) for _ in videos])
    arrays = {
        "videoname": np.array([v[0].encode() for v in videos]),
        "subset": np.array([v[1].encode() for v in videos]),
        "duration": np.array([[v[2]] for v in videos]),
        "labels": obj_array([v[3] for v in videos]),
        "segments": obj_array([v[4] for v in videos]),
        "labels_all": obj_array([v[5] for v in videos]),
        "classlist": np.array([c.encode() for c in classes]),
        "features": feats,
    }
    arrays.update(override)
    for key, a in arrays.items():
        if key == "features":
            np.save(folder / "features.npy", a, allow_pickle=True)
        elif a is not None:
            np.save(ann / f"{key}.npy", a, allow_pickle=True)
    return folder / "features.npy", ann, arrays


@pytest.fixture
def release(tmp_path):
    videos, classes = source_videos()
    feats, ann, arrays = write_release(tmp_path / "release", videos, classes)
    return feats, ann, arrays, videos, classes


def test_import_round_trip(release, tmp_path):
    feats, ann_dir, arrays, videos, classes = release
    out = tmp_path / "ds"
    seen = []
    s = import_thumos(feats, ann_dir, out, on_video=lambda i, n, name: seen.append((i, n, name)))
    assert s.n_videos == 5 and s.n_train == 3 and s.n_test == 2 and s.n_classes == len(classes)
    assert [x[2] for x in seen] == [v[0] for v in videos] and seen[-1][:2] == (4, 5)

    ann = load_annotations(out / "annotations.json")
    assert ann.classes == classes  # classlist order
    for (name, sub, dur, labels, segs, labels_all), x in zip(videos, arrays["features"]):
        v = ann.videos[name]
        assert v.subset == {"validation": "train", "test": "test"}[sub]
        assert v.duration == pytest.approx(dur)
        assert [(a, b) for a, b, _ in v.segments] == [tuple(sg) for sg in segs]
        assert [lab for _, _, lab in v.segments] == labels
        assert set(labels_all) <= set(v.labels)
        stored = np.load(out / "features" / "cbp" / f"{name}.npy")
        assert stored.dtype == np.float32 and np.array_equal(stored, x)
    meta = json.loads((out / "features" / "cbp" / "meta.json").read_text())
    assert meta == {
        "backbone": "i3d-kinetics-rgb+flow",
        "dim": 2048,
        "fps": 25.0,
        "snippet_length": 16,
        "snippet_stride": 16,
    }
    ds = Dataset(out)
    assert len(ds.videos("train", "cbp")) == 3 and len(ds.videos("test", "cbp")) == 2
    assert ds.stream("cbp").meta.grid.seconds_per_snippet == pytest.approx(0.64)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _assert_nothing_written(tmp_path, out):
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_bad_releases_leave_nothing(tmp_path):
    videos, classes = source_videos()
    rng = np.random.default_rng(1)
    good = [rng.standard_normal((5, 2048)).astype(np.float32) for _ in videos]
    nan = [x.copy() for x in good]
    nan[2][1, 7] = np.nan
    wrong_label = [list(v) for v in videos]
    wrong_label[1][3] = ["NotAClass"] * len(wrong_label[1][3])
    cases = {
        "has 4 videos but the annotations have 5": {"features": obj_array(good[:4])},
        "feature dimension 1024, expected 2048": {
            "features": obj_array(good[:3] + [np.zeros((4, 1024), np.float32)] + good[4:])
        },
        "NaN": {"features": obj_array(nan)},
        "non-empty \\[T, D\\]": {"features": obj_array(good[:1] + [np.zeros(2048, np.float32)] + good[2:])},
        "subset.npy has 4 entries but videoname.npy has 5": {"subset": np.array([v[1].encode() for v in videos[:4]])},
        "labels but": {"labels": obj_array([v[3] + ["Extra"] if i == 0 else v[3] for i, v in enumerate(videos)])},
        "not in classlist": {"labels": obj_array([v[3] for v in wrong_label])},
        "missing file": {"classlist": None},
    }
    for k, (match, override) in enumerate(cases.items()):
        feats, ann_dir, _ = write_release(tmp_path / f"rel{k}", videos, classes, **override)
        out = tmp_path / f"ds{k}"
        with pytest.raises(WtalError, match=match) as e:
            import_thumos(feats, ann_dir, out)
        assert "\n" not in str(e.value)
        _assert_nothing_written(tmp_path, out)


def test_interrupted_write_leaves_nothing(release, tmp_path):
    feats, ann_dir, *_ = release
    out = tmp_path / "ds"

    def boom(i, n, name):
        if i == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_thumos(feats, ann_dir, out, on_video=boom)
    _assert_nothing_written(tmp_path, out)


def test_cli(release, tmp_path):
    feats, ann_dir, *_ = release
    out = tmp_path / "ds"
    res = CliRunner().invoke(cli, ["import-thumos", str(feats), str(ann_dir), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "imported 5 videos (3 train, 2 test)" in res.output
    assert (out / "annotations.json").exists()
    # The imported dataset scores directly: predicting every test segment exactly gives mAP 1.
    ann = load_annotations(out / "annotations.json")
    results = {
        v.name: [{"label": lab, "score": 1.0, "segment": [s, e]} for s, e, lab in v.segments]
        for v in ann.subset("test")
    }
    (tmp_path / "res.json").write_text(json.dumps({"results": results}))
    res = CliRunner().invoke(cli, ["score", str(out), str(tmp_path / "res.json"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["mAP"] == pytest.approx([1.0] * 7)
    res = CliRunner().invoke(cli, ["import-thumos", str(feats), str(ann_dir), "-o", str(out)])
    assert res.exit_code == 1 and "already exists" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(
        cli, ["import-thumos", str(tmp_path / "nope.npy"), str(ann_dir), "-o", str(tmp_path / "x")]
    )
    assert res.exit_code == 1 and "nope.npy" in res.output
    assert not (tmp_path / "x").exists()
