"""Detection mAP: hand-computed cases, the official algorithm as a slow reference, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from wtalkit.cli import cli
from wtalkit.data.annotations import parse_annotations
from wtalkit.errors import WtalError
from wtalkit.eval import detection
from wtalkit.eval.detection import evaluate_detection, load_results

# --------------------------------------------------------------------------- helpers


def make_ann(videos: dict, classes=None):
    """``videos``: name -> (subset, [(start, end, label), ...])."""
    db = {
        name: {
            "subset": sub,
            "duration": 100.0,
            "annotations": [{"segment": [s, e], "label": lab} for s, e, lab in segs],
        }
        for name, (sub, segs) in videos.items()
    }
    data = {"database": db}
    if classes is not None:
        data["classes"] = classes
    return data


def pred(label, score, s, e):
    return {"label": label, "score": score, "segment": [s, e]}


def run_eval(videos, results, classes=None, subset="test", tious=(0.5,)):
    ann = parse_annotations(make_ann(videos, classes))
    return evaluate_detection(ann, results, subset, list(tious))


# --------------------------------------------------------------------------- reference


def reference_detection(data: dict, results: dict, subset, tious):
    """The official ActivityNet algorithm, step by step, with plain loops (no pandas).

    Mirrors ``ANETdetection._import_ground_truth`` / ``_import_prediction`` /
    ``compute_average_precision_detection`` / ``interpolated_prec_rec``.
    Returns ``{class: ap[n_tiou]}`` over the classes with ground truth.
    """
    activity_index, gt = {}, []
    for vid, v in data["database"].items():
        if subset is not None and v["subset"] != subset:
            continue
        for ann in v["annotations"]:
            if ann["label"] not in activity_index:
                activity_index[ann["label"]] = len(activity_index)
            gt.append((vid, float(ann["segment"][0]), float(ann["segment"][1]), activity_index[ann["label"]]))
    preds = []
    for vid, lst in results.items():
        for r in lst:
            if r["label"] in activity_index:  # labels without ground truth are ignored
                preds.append(
                    (vid, float(r["segment"][0]), float(r["segment"][1]), activity_index[r["label"]], float(r["score"]))
                )
    out = {}
    for label, cidx in activity_index.items():
        g = [x for x in gt if x[3] == cidx]
        p = [x for x in preds if x[3] == cidx]
        ap = np.zeros(len(tious))
        if not p:
            out[label] = ap
            continue
        npos = float(len(g))
        lock_gt = np.ones((len(tious), len(g))) * -1
        sort_idx = np.array([x[4] for x in p]).argsort()[::-1]
        p = [p[i] for i in sort_idx]
        tp = np.zeros((len(tious), len(p)))
        fp = np.zeros((len(tious), len(p)))
        for idx, this in enumerate(p):
            gidx = [j for j, x in enumerate(g) if x[0] == this[0]]
            if not gidx:
                fp[:, idx] = 1
                continue
            cand = np.array([[g[j][1], g[j][2]] for j in gidx])
            target = np.array([this[1], this[2]])
            tt1 = np.maximum(target[0], cand[:, 0])
            tt2 = np.minimum(target[1], cand[:, 1])
            inter = (tt2 - tt1).clip(0)
            union = (cand[:, 1] - cand[:, 0]) + (target[1] - target[0]) - inter
            with np.errstate(divide="ignore", invalid="ignore"):
                tiou_arr = inter.astype(float) / union
            tiou_sorted_idx = tiou_arr.argsort()[::-1]
            for tidx, thr in enumerate(tious):
                for jdx in tiou_sorted_idx:
                    if tiou_arr[jdx] < thr:
                        fp[tidx, idx] = 1
                        break
                    if lock_gt[tidx, gidx[jdx]] >= 0:
                        continue
                    tp[tidx, idx] = 1
                    lock_gt[tidx, gidx[jdx]] = idx
                    break
                if fp[tidx, idx] == 0 and tp[tidx, idx] == 0:
                    fp[tidx, idx] = 1
        tp_cumsum = np.cumsum(tp, axis=1)
        fp_cumsum = np.cumsum(fp, axis=1)
        rec = tp_cumsum / npos
        prec = tp_cumsum / (tp_cumsum + fp_cumsum)
        for tidx in range(len(tious)):
            mprec = np.hstack([[0], prec[tidx], [0]])
            mrec = np.hstack([[0], rec[tidx], [1]])
            for i in range(len(mprec) - 1)[::-1]:
                mprec[i] = max(mprec[i], mprec[i + 1])
            i = np.where(mrec[1::] != mrec[0:-1])[0] + 1
            ap[tidx] = np.sum((mrec[i] - mrec[i - 1]) * mprec[i])
        out[label] = ap
    return out


def random_case(rng):
    """Random annotations + results with many ties (scores, endpoints, tIoUs) and dense groups."""
    n_cls = int(rng.integers(1, 5))
    classes = [f"c{i}" for i in range(n_cls + 1)]  # the last class never has ground truth
    grid = float(rng.choice([0.5, 1.0, 2.0]))
    dense = rng.random() < 0.3
    videos = {}
    for v in range(int(rng.integers(1, 6))):
        segs = []
        for c in range(n_cls):
            if rng.random() < 0.3:
                continue
            for _ in range(int(rng.integers(1, 25 if dense else 6))):
                s = float(rng.integers(0, 40)) * grid
                e = s + float(rng.integers(0 if rng.random() < 0.05 else 1, 8)) * grid
                segs.append((s, e, classes[c]))
        videos[f"v{v}"] = ("test" if rng.random() < 0.8 else "train", segs)
    if not any(segs for sub, segs in videos.values() if sub == "test"):
        videos["v_extra"] = ("test", [(0.0, 4.0, classes[0])])
    results = {}
    names = list(videos) + ["unknown_video"]
    for name in names:
        if rng.random() < 0.2:
            continue
        lst = []
        for _ in range(int(rng.integers(0, 60 if dense else 25))):
            s = float(rng.integers(0, 40)) * grid
            e = s + float(rng.integers(0 if rng.random() < 0.05 else 1, 8)) * grid
            score = float(rng.integers(0, 6)) / 5 if rng.random() < 0.7 else float(rng.random())
            lst.append(pred(classes[int(rng.integers(0, n_cls + 1))], score, s, e))
        results[name] = lst
    tious = sorted(
        {
            float(x)
            for x in rng.choice(
                [0.1, 0.2, 0.25, 0.3, 1 / 3, 0.5, 0.6, 2 / 3, 0.7, 0.75, 0.9, 1.0], size=int(rng.integers(1, 6))
            )
        }
    )
    return make_ann(videos, classes), results, tious


# --------------------------------------------------------------------------- hand-computed


def test_duplicates_and_interpolation():
    videos = {"v": ("test", [(0, 10, "A"), (20, 30, "A")])}
    results = {"v": [pred("A", 0.9, 0, 10), pred("A", 0.8, 0, 10), pred("A", 0.7, 20, 30)]}
    r = run_eval(videos, results)
    # prec 1, 1/2, 2/3 ; rec 1/2, 1/2, 1 -> interpolated AP = 0.5 * 1 + 0.5 * 2/3
    assert r.ap[0, 0] == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-12)
    assert r.classes == ["A"] and r.n_predictions == 3


def test_score_ties_follow_official_argsort():
    videos = {"v": ("test", [(0, 10, "A")])}
    # Equal scores: the official ranking is scores.argsort()[::-1] on file order.
    first = int(np.array([0.5, 0.5]).argsort()[::-1][0])
    for tp_at in (0, 1):
        lst = [pred("A", 0.5, 50, 60), pred("A", 0.5, 50, 60)]
        lst[tp_at] = pred("A", 0.5, 0, 10)
        r = run_eval(videos, {"v": lst})
        expected = 1.0 if first == tp_at else 0.5
        assert r.ap[0, 0] == pytest.approx(expected, abs=1e-12)


def test_highest_tiou_gt_taken_first_and_thresholds():
    videos = {"v": ("test", [(0, 10, "A"), (8, 20, "A")])}
    # p1 overlaps g1 (10/12) and g2 (4/20); p2 equals g1 (locked) and has tIoU 2/20 = 0.1 with g2.
    results = {"v": [pred("A", 0.9, 0, 12), pred("A", 0.8, 0, 10)]}
    r = run_eval(videos, results, tious=(0.1, 0.5))
    assert r.ap[0, 0] == pytest.approx(1.0)  # at 0.1 both are true positives
    assert r.ap[1, 0] == pytest.approx(0.5)  # at 0.5 only p1: prec 1, rec 1/2


def test_unknown_videos_are_false_positives():
    videos = {"v": ("test", [(0, 10, "A")])}
    results = {"nope": [pred("A", 0.9, 0, 10)], "v": [pred("A", 0.8, 0, 10)]}
    r = run_eval(videos, results)
    assert r.ap[0, 0] == pytest.approx(0.5)
    assert r.n_outside == 1


def test_class_without_predictions_is_zero_and_empty_classes_ignored():
    videos = {"v": ("test", [(0, 10, "A"), (20, 30, "B")]), "w": ("train", [(0, 5, "C")])}
    results = {"v": [pred("A", 0.9, 0, 10), pred("C", 0.9, 20, 30), pred("D", 0.3, 0, 1)]}
    r = run_eval(videos, results, classes=["A", "B", "C", "D"])
    assert r.classes == ["A", "B"]  # C and D have no ground truth in 'test'
    assert r.ap[0].tolist() == pytest.approx([1.0, 0.0])
    assert r.mAP[0] == pytest.approx(0.5)
    assert r.n_ignored == 2


def test_prediction_outside_subset_counts_against_class():
    # The official code keeps predictions on videos outside the subset: they are false positives.
    videos = {"v": ("test", [(0, 10, "A")]), "w": ("train", [(0, 10, "A")])}
    results = {"w": [pred("A", 0.9, 0, 10)], "v": [pred("A", 0.1, 0, 10)]}
    assert run_eval(videos, results).ap[0, 0] == pytest.approx(0.5)
    assert run_eval(videos, results, subset=None).ap[0, 0] == pytest.approx(1.0)


def test_bad_inputs(tmp_path):
    videos = {"v": ("test", [(0, 10, "A")])}
    with pytest.raises(WtalError, match="not a class"):
        run_eval(videos, {"v": [pred("Z", 0.9, 0, 10)]})
    with pytest.raises(WtalError, match="no videos in subset"):
        run_eval(videos, {}, subset="validation")
    with pytest.raises(WtalError, match=r"tIoU"):
        run_eval(videos, {}, tious=(0.0,))
    bad = {
        "notjson": "{",
        "noresults": json.dumps({"res": {}}),
        "missing": json.dumps({"results": {"v": [{"label": "A", "score": 1}]}}),
        "nan": '{"results": {"v": [{"label": "A", "score": NaN, "segment": [0, 1]}]}}',
        "reversed": json.dumps({"results": {"v": [pred("A", 0.5, 5, 1)]}}),
        "seg3": json.dumps({"results": {"v": [{"label": "A", "score": 0.5, "segment": [0, 1, 2]}]}}),
        "strscore": json.dumps({"results": {"v": [{"label": "A", "score": "0.5", "segment": [0, 1]}]}}),
        "notlist": json.dumps({"results": {"v": {"label": "A"}}}),
    }
    for name, text in bad.items():
        p = tmp_path / f"{name}.json"
        p.write_text(text)
        with pytest.raises(WtalError) as e:
            load_results(p)
        assert "\n" not in str(e.value), name
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps({"results": {"v": [pred("A", 1, 0, 10)]}}))
    assert load_results(ok)["v"][0]["label"] == "A"


# --------------------------------------------------------------------------- randomized vs reference


@pytest.mark.parametrize("rounds", [1, 12])
def test_matches_official_algorithm_on_random_inputs(rounds, monkeypatch):
    # rounds=1 sends most of the matching through the serial finish, 12 through the vectorized rounds.
    monkeypatch.setattr(detection, "MAX_VECTOR_ROUNDS", rounds)
    rng = np.random.default_rng(1234 + rounds)
    n_checked = 0
    for _ in range(150):
        data, results, tious = random_case(rng)
        ann = parse_annotations(data)
        for subset in ("test", None):
            ref = reference_detection(data, results, subset, tious)
            got = evaluate_detection(ann, results, subset, tious)
            assert sorted(got.classes) == sorted(ref)
            for k, c in enumerate(got.classes):
                np.testing.assert_allclose(got.ap[:, k], ref[c], rtol=0, atol=1e-9)
            ref_map = np.mean([ref[c] for c in ref], axis=0)
            np.testing.assert_allclose(got.mAP, ref_map, rtol=0, atol=1e-9)
            n_checked += 1
    assert n_checked == 300


def test_long_chain_of_predictions():
    # GT k = [2k, 2k+2]; prediction k = [2k-1.1, 2k+0.9] prefers GT k-1 (tIoU 1.1/2.9) over GT k
    # (0.9/3.1). In score order each prediction finds its first choice taken by the one before,
    # so every match depends on the previous one: a chain as long as the video.
    n = 40
    videos = {"v": ("test", [(2.0 * k, 2.0 * k + 2, "A") for k in range(n)])}
    results = {"v": [pred("A", 1.0 - k / 100, 2.0 * k - 1.1, 2.0 * k + 0.9) for k in range(n)]}
    data = make_ann(videos)
    ref = reference_detection(data, results, "test", [0.25, 0.35])
    got = evaluate_detection(parse_annotations(data), results, "test", [0.25, 0.35])
    np.testing.assert_allclose(got.ap[:, 0], ref["A"], atol=1e-12)
    # at 0.25 the chain matches all n predictions; at 0.35 prediction 0 has no candidate
    assert got.ap[0, 0] == pytest.approx(1.0) and got.ap[1, 0] == pytest.approx((n - 1) / n * (n - 1) / n)


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def files(tmp_path):
    data = make_ann({"v": ("test", [(0, 10, "A"), (20, 30, "A")]), "w": ("test", [(5, 9, "B")])})
    res = {
        "results": {
            "v": [pred("A", 0.9, 0, 10), pred("A", 0.8, 0, 10), pred("A", 0.7, 20, 30)],
            "w": [pred("B", 0.6, 5, 8)],
        }
    }
    a, r = tmp_path / "annotations.json", tmp_path / "results.json"
    a.write_text(json.dumps(data))
    r.write_text(json.dumps(res))
    return a, r


def test_cli_json(files):
    a, r = files
    out = CliRunner().invoke(cli, ["score", str(a), str(r), "--json", "--tiou", "0.5,0.8"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert set(doc) == {"tiou", "mAP", "average"}
    assert doc["tiou"] == [0.5, 0.8]
    # A: 0.5 + 0.5 * 2/3 at both thresholds; B: tIoU 3/4 -> 1 at 0.5, 0 at 0.8
    a_ap = 0.5 + 0.5 * 2 / 3
    assert doc["mAP"] == pytest.approx([(a_ap + 1) / 2, a_ap / 2])
    assert doc["average"] == pytest.approx(np.mean(doc["mAP"]))


def test_cli_table_and_errors(files, tmp_path):
    a, r = files
    out = CliRunner().invoke(cli, ["score", str(a), str(r)])
    assert out.exit_code == 0, out.output
    assert "0.1-0.5" in out.output or "0.1–0.5" in out.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"results": {"v": [pred("Nope", 0.5, 0, 1)]}}))
    out = CliRunner().invoke(cli, ["score", str(a), str(bad)])
    assert out.exit_code == 1 and "not a class" in out.output and "Traceback" not in out.output
    out = CliRunner().invoke(cli, ["score", str(a), str(r), "--tiou", "0.5,x"])
    assert out.exit_code != 0 and "--tiou" in out.output


def test_cli_never_imports_torch(files):
    a, r = files
    p = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "wtalkit", "score", str(a), str(r), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    modules = {line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" not in modules and "pandas" not in modules and "sklearn" not in modules
    assert json.loads(p.stdout)["tiou"] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]


def test_cli_defaults_for_activitynet_style_annotations(tmp_path):
    data = make_ann({"a": ("training", [(0, 10, "A")]), "b": ("validation", [(0, 10, "A")])})
    a, r = tmp_path / "anet.json", tmp_path / "res.json"
    a.write_text(json.dumps(data))
    r.write_text(json.dumps({"results": {"b": [pred("A", 0.9, 0, 10)]}}))
    doc = json.loads(CliRunner().invoke(cli, ["score", str(a), str(r), "--json"]).stdout)
    assert doc["tiou"] == pytest.approx([0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95])
    assert doc["average"] == pytest.approx(0.5)  # no test subset: all videos, 'a' is missed
    doc = json.loads(CliRunner().invoke(cli, ["score", str(a), str(r), "--json", "--subset", "validation"]).stdout)
    assert doc["average"] == pytest.approx(1.0)
    doc = json.loads(CliRunner().invoke(cli, ["score", str(a), str(r), "--json", "--preset", "anet12"]).stdout)
    assert doc["average"] == pytest.approx(1.0) and len(doc["tiou"]) == 10  # preset: validation subset
    doc = json.loads(
        CliRunner()
        .invoke(
            cli, ["score", str(tmp_path / "anet.json"), str(r), "--json", "--preset", "thumos14", "--subset", "all"]
        )
        .stdout
    )
    assert doc["tiou"] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]) and doc["average"] == pytest.approx(0.5)
