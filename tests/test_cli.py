"""The command line as a user meets it: help pages, an end-to-end run, and one-line errors."""

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import TINY_SETS
from wtalkit.cli import cli

COMMANDS = [
    "warmup",
    "alternate",
    "pseudolabel",
    "localize",
    "score",
    "import-thumos",
    "extract",
    "online",
    "train-online",
    "demo",
]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def sets(*extra):
    out = []
    for s in TINY_SETS + list(extra):
        out += ["--set", s]
    return out


def assert_one_line_error(res, pattern):
    assert res.exit_code != 0, res.output
    assert "Traceback" not in res.output
    lines = [l for l in res.output.strip().splitlines() if l.strip()]
    assert lines and lines[-1].startswith("Error:"), res.output
    assert pattern in lines[-1], lines[-1]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help(cmd):
    res = run(cmd, "--help")
    assert res.exit_code == 0 and "Usage:" in res.output


def test_every_command_is_registered():
    assert set(COMMANDS) <= set(cli.commands)


@pytest.fixture(scope="module")
def trained(tiny_dataset, tiny_clip_path, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    res = run(
        "warmup",
        tiny_dataset,
        "-o",
        runs / "r",
        "--config",
        "demo",
        *sets(f"vlp.clip_model={tiny_clip_path}"),
        "--quiet",
    )
    assert res.exit_code == 0, res.output
    res = run("alternate", runs / "r", "--rounds", "1", "--quiet")
    assert res.exit_code == 0, res.output
    return runs / "r"


def test_end_to_end_localize_and_score(trained, tiny_dataset, tmp_path):
    res = CliRunner().invoke(cli, ["localize", str(trained), "--json"])  # click >= 8.2 keeps stderr apart
    assert res.exit_code == 0
    doc = json.loads(res.stdout)  # stdout holds only the JSON
    assert set(doc["results"]) == {v.stem for v in (tiny_dataset / "features" / "cbp").glob("video_test_*.npy")}
    out = tmp_path / "results.json"
    assert run("localize", trained, "-o", out).exit_code == 0
    res = CliRunner().invoke(cli, ["score", str(tiny_dataset / "annotations.json"), str(out), "--json"])
    assert res.exit_code == 0, res.output
    score = json.loads(res.stdout)
    assert score["tiou"] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    assert all(0.0 <= m <= 1.0 for m in score["mAP"])
    # pseudo-labels of both branches, with the Table-3 metrics on the test split
    res = CliRunner().invoke(
        cli, ["pseudolabel", str(trained), "--branch", "vlp", "--split", "test", "--json", "-o", str(tmp_path / "pl")]
    )
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)["metrics"]
    assert 0 <= m["fg_iou"] <= 1 and 0 <= m["bg_iou"] <= 1
    assert len(list((tmp_path / "pl").glob("*.npy"))) == 4
    # stricter thresholds leave more frames uncertain
    res = CliRunner().invoke(
        cli,
        [
            "pseudolabel",
            str(trained),
            "--branch",
            "vlp",
            "--split",
            "test",
            "--json",
            "--set",
            "pseudo.delta_h=0.9",
            "--set",
            "pseudo.delta_l=0.01",
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["metrics"]["uncertain"] >= m["uncertain"]
    # one video's feature file
    one = next((tiny_dataset / "features" / "cbp").glob("video_test_*.npy"))
    res = CliRunner().invoke(cli, ["localize", str(one), str(trained), "--json"])
    assert res.exit_code == 0 and list(json.loads(res.stdout)["results"]) == [one.stem]


def test_bad_inputs(trained, tiny_dataset, tmp_path):
    # missing dataset / checkpoint / results
    assert_one_line_error(run("warmup", tmp_path / "nope", "-o", tmp_path / "r"), "dataset folder not found")
    assert_one_line_error(run("localize", tmp_path / "nope"), "no run folder or checkpoint")
    assert_one_line_error(run("score", tiny_dataset / "annotations.json", tmp_path / "none.json"), "not found")
    # malformed JSON
    bad = tmp_path / "bad.json"
    bad.write_text('{"results": {')
    assert_one_line_error(run("score", tiny_dataset / "annotations.json", bad), "malformed JSON")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dataset, broken)
    (broken / "annotations.json").write_text("{nope")
    assert_one_line_error(run("warmup", broken, "-o", tmp_path / "r2", "--config", "demo"), "malformed JSON")
    assert not (tmp_path / "r2").exists()
    # unknown config key
    assert_one_line_error(
        run("warmup", tiny_dataset, "-o", tmp_path / "r3", "--set", "train.epochz=1"), "unknown config key"
    )
    feats = tiny_dataset / "features" / "cbp"
    # wrong feature dimension, NaN features, empty video: given as loose feature files
    for name, arr, msg in [
        ("wrongdim", np.zeros((20, 7), np.float32), "does not match"),
        ("nan", np.full((20, 32), np.nan, np.float32), "NaN"),
        ("empty", np.zeros((0, 32), np.float32), "empty video"),
    ]:
        d = tmp_path / name / "cbp"
        d.mkdir(parents=True)
        shutil.copy(feats / "meta.json", d / "meta.json")
        np.save(d / f"{name}.npy", arr)
        out = tmp_path / f"{name}.json"
        assert_one_line_error(run("localize", d / f"{name}.npy", trained, "-o", out), msg)
        assert not out.exists()
    # the same problems inside a dataset stop warm-up before anything is written
    nan_ds = tmp_path / "nan_ds"
    shutil.copytree(tiny_dataset, nan_ds)
    victim = next((nan_ds / "features" / "cbp").glob("video_validation_*.npy"))
    np.save(victim, np.full((30, 32), np.nan, np.float32))
    assert_one_line_error(run("warmup", nan_ds, "-o", tmp_path / "r4", "--config", "demo"), "NaN")
    assert not (tmp_path / "r4" / "warmup.pt").exists()
    # a finished run is never overwritten silently
    assert_one_line_error(run("warmup", tiny_dataset, "-o", trained, "--config", "demo"), "already exists")
