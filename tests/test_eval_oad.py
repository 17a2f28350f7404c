"""Online action detection metrics: per-frame AP, calibrated AP, ambiguous frames, JSON-lines input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import average_precision_score

from wtalkit.cli import cli
from wtalkit.data.annotations import parse_annotations
from wtalkit.errors import WtalError
from wtalkit.eval.oad import evaluate_oad, load_ambiguous, load_frames, ranked_precision_ap


def annotations(segments, extra_videos=None, classes=("A", "B")):
    db = {
        "v": {
            "subset": "test",
            "duration": 10.0,
            "annotations": [{"segment": [s, e], "label": lab} for s, e, lab in segments],
        }
    }
    db.update(extra_videos or {})
    return parse_annotations({"classes": list(classes), "database": db})


TIMES = np.arange(6.0)  # frames at t = 0..5 s
# A positive at t = 0 and t = 2; everything else is background.
SEGMENTS = [(0.0, 0.5, "A"), (1.5, 2.5, "A")]
SCORES_A = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])


def frames_for(scores_a, scores_b=None):
    scores_b = np.full(len(TIMES), 0.1) if scores_b is None else scores_b
    return {"v": (TIMES, np.stack([scores_a, scores_b], axis=1), ["A", "B"])}


def test_hand_computed_ap_and_cap():
    r = evaluate_oad(annotations(SEGMENTS), frames_for(SCORES_A))
    assert r.classes == ["A"]  # B is scored but has no positive frame
    assert r.no_positives == ["B"]
    # ranks: +, -, +, -, -, -   AP = (1 + 2/3) / 2
    assert r.ap[0] == pytest.approx((1 + 2 / 3) / 2)
    # w = 4 negatives / 2 positives = 2; cPrec at the 2nd positive = 2 / (2 + 1/2) = 0.8
    assert r.cap[0] == pytest.approx((1 + 0.8) / 2)
    assert r.mAP == pytest.approx(r.ap[0]) and r.mcAP == pytest.approx(r.cap[0])
    assert r.n_frames == 6 and r.n_positive.tolist() == [2]


def test_background_frames_are_negatives():
    # Ranking every background frame above the positives gives the worst AP.
    scores = np.array([0.1, 0.9, 0.2, 0.8, 0.7, 0.6])
    r = evaluate_oad(annotations(SEGMENTS), frames_for(scores))
    # ranks: -, -, -, -, +(0.2), +(0.1): precision 1/5 then 2/6
    assert r.ap[0] == pytest.approx((1 / 5 + 2 / 6) / 2)
    # w = 2: cPrec = 1 / (1 + 4/2) = 1/3, then 2 / (2 + 4/2) = 1/2
    assert r.cap[0] == pytest.approx((1 / 3 + 1 / 2) / 2)


def test_ties_count_as_one_threshold():
    y = np.array([True, False])
    s = np.array([0.5, 0.5])
    assert ranked_precision_ap(y, s) == pytest.approx(0.5)
    assert ranked_precision_ap(y, s, calibrated=True) == pytest.approx(0.5)  # w = 1
    assert np.isnan(ranked_precision_ap(np.zeros(3, bool), np.ones(3)))


def test_ambiguous_frames_are_dropped(tmp_path):
    amb = tmp_path / "Ambiguous_test.txt"
    amb.write_text("v  0.8 1.2\nother 0 100\n")
    spans = load_ambiguous(amb)
    assert spans == {"v": [(0.8, 1.2)], "other": [(0.0, 100.0)]}
    r = evaluate_oad(annotations(SEGMENTS), frames_for(SCORES_A), spans)
    # the 0.8 background frame (t = 1) is gone: ranks +, +, -, -, -
    assert r.n_frames == 5 and r.n_dropped == 1
    assert r.ap[0] == pytest.approx(1.0) and r.cap[0] == pytest.approx(1.0)
    # Same through a segment labelled "Ambiguous" in the annotations.
    ann = annotations(SEGMENTS + [(0.8, 1.2, "Ambiguous")], classes=("A", "B", "Ambiguous"))
    r2 = evaluate_oad(ann, frames_for(SCORES_A))
    assert r2.n_dropped == 1 and r2.ap[0] == pytest.approx(1.0)
    bad = tmp_path / "bad.txt"
    bad.write_text("v 3 1\n")
    with pytest.raises(WtalError, match="bad.txt:1"):
        load_ambiguous(bad)


def test_matches_sklearn_and_loop_reference_on_random_data():
    rng = np.random.default_rng(7)
    for trial in range(40):
        n = int(rng.integers(5, 300))
        y = rng.random(n) < rng.uniform(0.05, 0.6)
        if not y.any():
            y[0] = True
        tied = trial % 2 == 0
        s = np.round(rng.random(n), 1) if tied else rng.random(n)
        assert ranked_precision_ap(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
        if not tied:  # plain definition, one frame at a time
            order = np.argsort(-s)
            tp = fp = 0
            w = (~y).sum() / y.sum()
            total = 0.0
            for k in order:
                tp += int(y[k])
                fp += int(not y[k])
                if y[k]:
                    total += tp / (tp + fp / w)
            assert ranked_precision_ap(y, s, calibrated=True) == pytest.approx(total / y.sum(), abs=1e-12)


def test_pooled_over_videos_against_sklearn():
    rng = np.random.default_rng(3)
    extra = {
        "w": {
            "subset": "test",
            "duration": 20.0,
            "annotations": [{"segment": [3.0, 9.0], "label": "B"}, {"segment": [5.0, 6.0], "label": "A"}],
        }
    }
    ann = annotations(SEGMENTS + [(4.0, 5.0, "B")], extra)
    tw = np.arange(0, 20, 0.5)
    frames = {"v": (TIMES, rng.random((6, 2)), ["A", "B"]), "w": (tw, rng.random((tw.size, 2)), ["A", "B"])}
    r = evaluate_oad(ann, frames)
    ya = np.r_[[1, 0, 1, 0, 0, 0], (tw >= 5) & (tw <= 6)].astype(bool)  # closed intervals
    yb = np.r_[[0, 0, 0, 0, 1, 1], (tw >= 3) & (tw <= 9)].astype(bool)
    sa = np.r_[frames["v"][1][:, 0], frames["w"][1][:, 0]]
    sb = np.r_[frames["v"][1][:, 1], frames["w"][1][:, 1]]
    assert r.classes == ["A", "B"]
    assert r.ap.tolist() == pytest.approx([average_precision_score(ya, sa), average_precision_score(yb, sb)])


def write_jsonl(path, video, times, scores: dict):
    with open(path, "w") as f:
        for i, t in enumerate(times):
            sc = {c: float(v[i]) for c, v in scores.items()}
            f.write(
                json.dumps({"video": video, "frame": i, "t": float(t), "scores": sc, "top": max(sc, key=sc.get)}) + "\n"
            )


def test_load_frames_and_errors(tmp_path):
    d = tmp_path / "online"
    d.mkdir()
    write_jsonl(d / "v.jsonl", "v", TIMES[::-1], {"B": np.full(6, 0.1), "A": SCORES_A[::-1]})
    frames = load_frames(d)
    times, scores, classes = frames["v"]
    assert classes == ["B", "A"] and times.tolist() == TIMES.tolist()  # sorted by time
    assert scores[:, 1].tolist() == SCORES_A.tolist()

    def bad(text, match):
        p = tmp_path / "bad.jsonl"
        p.write_text(text)
        with pytest.raises(WtalError, match=match) as e:
            load_frames(p)
        assert "\n" not in str(e.value)

    bad('{"video": "v", "t": 0, "scores": {"A": 0.5}}\n{oops\n', "bad.jsonl:2: malformed JSON")
    bad('{"video": "v", "label": "A", "start": 0, "end": 1, "score": 0.5}\n', "segment line")
    bad('{"video": "v", "t": 0, "scores": {"A": 0.5}}\n{"video": "v", "t": 0, "scores": {"A": 0.4}}\n', "twice")
    bad(
        '{"video": "v", "t": 0, "scores": {"A": 0.5}}\n{"video": "v", "t": 1, "scores": {"B": 0.4}}\n',
        "different set of classes",
    )
    bad('{"video": "v", "t": "x", "scores": {"A": 0.5}}\n', "'t'")
    bad('{"video": "v", "t": 1, "scores": {"A": null}}\n', "finite")
    with pytest.raises(WtalError, match="not a class"):
        evaluate_oad(annotations(SEGMENTS), {"v": (TIMES, np.ones((6, 1)), ["Zzz"])})
    with pytest.raises(WtalError, match="not in the annotations"):
        evaluate_oad(annotations(SEGMENTS), {"nope": (TIMES, np.ones((6, 1)), ["A"])})


def test_cli_oad(tmp_path):
    ann_path = tmp_path / "annotations.json"
    annotations(SEGMENTS).save(ann_path)
    d = tmp_path / "online"
    d.mkdir()
    write_jsonl(d / "v.jsonl", "v", TIMES, {"A": SCORES_A, "B": np.full(6, 0.1)})
    res = CliRunner().invoke(cli, ["score", str(ann_path), str(d), "--protocol", "oad", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["classes"] == ["A"] and doc["mAP"] == pytest.approx((1 + 2 / 3) / 2)
    assert doc["mcAP"] == pytest.approx(0.9)
    amb = tmp_path / "amb.txt"
    amb.write_text("v 0.8 1.2\n")
    res = CliRunner().invoke(
        cli, ["score", str(ann_path), str(d / "v.jsonl"), "--protocol", "oad", "--ambiguous", str(amb)]
    )
    assert res.exit_code == 0, res.output
    assert "100.00" in res.output and "1 ambiguous frames dropped" in res.output
    assert "scored without positive frames" in res.output and "B" in res.output
    res = CliRunner().invoke(cli, ["score", str(ann_path), str(tmp_path / "missing"), "--protocol", "oad"])
    assert res.exit_code == 1 and "not found" in res.output
