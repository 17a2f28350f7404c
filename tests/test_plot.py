"""Per-video figures (the paper's Figure 3): ``wtalkit.localize.plot`` and ``wtalkit localize --plot/--plot-dir``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.cli_helpers import assert_one_line_error, run_cli
from tests.conftest import TINY_SETS
from wtalkit.errors import WtalError
from wtalkit.timeaxis import SnippetGrid

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 10_000  # a drawn figure, not an empty canvas
    return data


@pytest.fixture(scope="module")
def runs(tiny_dataset, tiny_clip_path, tmp_path_factory):
    """A CBP warm-up and one alternate round (so the checkpoint has a VLP branch) on the tiny dataset."""
    from wtalkit.config import load_config
    from wtalkit.train.alternate import train_alternate
    from wtalkit.train.warmup import train_warmup

    root = tmp_path_factory.mktemp("plotruns")
    cfg = load_config(
        "demo", TINY_SETS + ["train.warmup_epochs=2", f"vlp.clip_model={tiny_clip_path}", "train.rounds=1"]
    )
    train_warmup(tiny_dataset, root / "warm", cfg, progress=False)
    train_alternate(tiny_dataset, root / "alt", cfg, warmup_ckpt=root / "warm" / "warmup.pt", progress=False)
    return {"warm": root / "warm", "alt": root / "alt"}


def scores(T, C, seed):
    return np.random.default_rng(seed).random((T, C))


GRID = SnippetGrid(25.0, 16, 16)
CLASSES = ["Jump", "Run", "Swim"]


def figure(**kw):
    from wtalkit.localize.plot import figure_video

    args = dict(
        duration=20.0,
        grid=GRID,
        classes=CLASSES,
        gt_segments=[(2.0, 5.0, "Run"), (9.0, 12.0, "Jump")],
        cbp_scores=scores(30, 3, 0),
        vlp_scores=scores(30, 3, 1),
        final_scores=scores(30, 3, 2),
        detections=[
            {"label": "Run", "score": 0.9, "segment": [2.56, 5.12]},
            {"label": "Jump", "score": 0.4, "segment": [9.0, 11.0]},
        ],
        theta_loc=[0.3, 0.5],
    )
    args.update(kw)
    return figure_video(**args)


def test_figure_panels_and_class():
    fig = figure()
    assert len(fig.axes) == 4  # GT, CBP, VLP, final
    assert fig._suptitle.get_text() == "Run"  # the top detection's class
    gt = fig.axes[0]
    mine, others = gt.collections  # the Run segment (green), the other classes' (grey)
    assert len(mine.get_paths()) == 1 and len(others.get_paths()) == 1
    assert mine.get_paths()[0].get_extents().x0 == pytest.approx(2.0)
    assert others.get_paths()[0].get_extents().x0 == pytest.approx(9.0)
    final = fig.axes[-1]
    assert sorted(line.get_ydata()[0] for line in final.get_lines()) == [0.3, 0.5]
    assert final.get_xlim() == (0.0, 20.0)
    # time axis: snippet k owns [k*16/25, (k+1)*16/25) s
    cbp = fig.axes[1].patches[0]
    assert cbp.get_path().vertices[:, 0].max() == pytest.approx(30 * 16 / 25)

    fig = figure(vlp_scores=None, label="Jump", gt_segments=None)
    assert len(fig.axes) == 3 and fig._suptitle.get_text() == "Jump"
    assert not fig.axes[0].collections  # no ground truth drawn
    with pytest.raises(WtalError, match="unknown class 'Dance'"):
        figure(label="Dance")
    with pytest.raises(ValueError, match=r"final scores must be \[T, 3\]"):
        figure(final_scores=scores(30, 2, 0))


def test_plot_video_writes_png_atomically(tmp_path):
    from wtalkit.localize.plot import plot_video

    out = tmp_path / "a" / "b" / "fig.png"
    fig_args = dict(
        duration=20.0,
        grid=GRID,
        classes=CLASSES,
        gt_segments=[(2.0, 5.0, "Run")],
        cbp_scores=scores(30, 3, 0),
        vlp_scores=None,
        final_scores=scores(30, 3, 2),
        detections=[],
        label=None,
        theta_loc=0.5,
    )
    assert plot_video(out, **fig_args) == out
    assert_png(out)
    assert [p.name for p in out.parent.iterdir()] == ["fig.png"]
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(WtalError, match="file.txt is a file"):
        plot_video(blocker / "sub" / "fig.png", **fig_args)
    with pytest.raises(WtalError, match="must end in"):
        plot_video(tmp_path / "fig.jpg", **fig_args)


def test_curves_match_inference(runs, tiny_dataset):
    """The figure's final curve is exactly what inference thresholds; VLP comes from the run's VLP branch."""
    from wtalkit.data.features import Dataset
    from wtalkit.localize.plot import ScoreCurves
    from wtalkit.localize.predict import Predictor

    pred = Predictor(runs["alt"])
    curves = ScoreCurves(pred)
    assert curves.streams == ("cbp", "vlp")
    ds = Dataset(tiny_dataset)
    name = ds.videos("test")[0].name
    feats = {s: ds.stream(s).load(name) for s in ("cbp", "vlp")}
    metas = {s: ds.stream(s).meta for s in ("cbp", "vlp")}
    out = curves(feats, metas)
    dets, probs, _ = pred.localize({"cbp": feats["cbp"]}, metas)
    np.testing.assert_array_equal(out["final"], probs)
    np.testing.assert_array_equal(out["cbp"], probs)
    assert out["detections"] == dets
    vlp = Predictor(runs["alt"], branch="vlp").branch_scores("vlp", feats["vlp"])[0]
    np.testing.assert_array_equal(out["vlp"], vlp)
    assert not np.allclose(out["vlp"], out["cbp"])
    # a warm-up run has no VLP branch
    assert ScoreCurves(Predictor(runs["warm"])).streams == ("cbp",)


def test_cli_plot_dataset_mode(runs, tiny_dataset, tmp_path):
    png = tmp_path / "fig3.png"
    res = run_cli(["localize", runs["alt"], "--json", "--plot", png, "--plot-dir", tmp_path / "all"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)  # the JSON and nothing else on stdout
    assert len(out["results"]) == 4
    assert_png(png)
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == sorted(f"{v}.png" for v in out["results"])
    first = next(iter(out["results"]))
    assert (tmp_path / "all" / f"{first}.png").read_bytes() == png.read_bytes()


def test_cli_plot_feature_file(runs, tiny_dataset, tmp_path):
    npy = sorted((tiny_dataset / "features" / "cbp").glob("*.npy"))[0]
    png = tmp_path / "f.png"
    res = run_cli(["localize", npy, runs["warm"], "--plot", png, "--plot-label", "HighJump"])
    assert res.exit_code == 0, res.output
    assert_png(png)


def test_cli_plot_bad_paths(runs, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    for args in (
        ["--plot", blocker / "sub" / "x.png"],
        ["--plot-dir", blocker],
        ["--plot", tmp_path / "x.gif"],
        ["--plot", tmp_path / "x.png", "--plot-label", "NoSuchClass"],
    ):
        err = assert_one_line_error(run_cli(["localize", runs["warm"], "--json", *args]))
        assert args[0] in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]  # nothing written
