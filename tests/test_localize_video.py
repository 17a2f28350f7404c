"""``wtalkit localize VIDEO RUN``: raw videos in, detections out, through the run's own backbones.

The dataset is made by ``wtalkit extract`` itself from tiny synthetic videos
(a tiny random CLIP for ``vlp``, a random-weight R(2+1)D-18 for ``cbp``, on a
short 8 fps / 4-frame grid so the real video network stays cheap on a CPU),
a CBP warm-up and one alternate round are trained on it, and localizing a
video directly must give what localizing its dataset features gives.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from videos import colour_frames, ramp_frames, write_video

from tests.cli_helpers import assert_one_line_error, run_cli
from tests.conftest import TINY_SETS
from wtalkit.errors import WtalError

torch = pytest.importorskip("torch")
pytest.importorskip("av")
pytest.importorskip("decord")

GRID = ["--fps", "8", "--snippet-length", "4", "--snippet-stride", "4"]  # 0.5 s snippets
RED, BLUE = (230, 20, 20), (20, 20, 230)
# a barely trained model scores low: threshold 0 keeps a whole-video proposal, so every video has detections
THETA = "infer.theta_loc=[0.0,0.3,0.5]"


def textured(colours, n_each, seed):
    """Flat colours plus a moving texture, so that every snippet differs."""
    base = colour_frames(colours, n_each).astype(np.int16)
    return np.clip(base + ramp_frames(len(base), seed=seed) // 3 - 20, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import torchvision

    from wtalkit.config import load_config
    from wtalkit.data.annotations import load_annotations
    from wtalkit.models.clip import save_random_clip
    from wtalkit.train.alternate import train_alternate
    from wtalkit.train.warmup import train_warmup

    root = tmp_path_factory.mktemp("locvid")
    w = {"clip": save_random_clip(root / "models" / "clip.pt", "tiny")}
    torch.manual_seed(0)
    w["r21d"] = root / "models" / "r21d.pt"
    torch.save(torchvision.models.video.r2plus1d_18(weights=None).state_dict(), w["r21d"])
    v = root / "videos"
    # 1.6 s at 25 fps -> 13 grid frames at 8 fps -> 3 snippets of 0.5 s
    vids = [
        write_video(v / "train_a.mp4", textured([RED], [40], 1)),
        write_video(v / "train_b.mp4", textured([BLUE], [40], 2)),
        write_video(v / "train_c.mp4", textured([RED, BLUE], [20, 20], 3)),
        write_video(v / "clip1.mp4", textured([RED, BLUE], [20, 20], 4)),
    ]
    w["video"] = vids[-1]
    # not in the dataset: 30 fps, 1.7 s (4 snippets after resampling onto the 8 fps grid)
    w["video30"] = write_video(root / "elsewhere" / "clip30.mp4", textured([BLUE, RED], [21, 30], 5), fps=30)
    ds = root / "ds"
    res = run_cli(
        [
            "extract",
            *vids,
            "-o",
            ds,
            "--streams",
            "vlp,cbp",
            "--clip",
            w["clip"],
            "--cbp-weights",
            w["r21d"],
            *GRID,
            "--device",
            "cpu",
        ]
    )
    assert res.exit_code == 0, res.output
    ann = load_annotations(ds / "annotations.json")
    ann.classes = ["Red", "Blue"]
    labels = {"train_a": ["Red"], "train_b": ["Blue"], "train_c": ["Blue", "Red"]}
    for name, video in ann.videos.items():
        if name in labels:
            video.subset, video.labels = "train", labels[name]
        else:
            video.subset, video.labels = "test", ["Blue", "Red"]
            video.segments = [(0.0, 0.8, "Red"), (0.8, 1.6, "Blue")]
    ann.save(ds / "annotations.json")
    w["dataset"] = ds
    sets = TINY_SETS + [
        "train.warmup_epochs=2",
        "data.num_segments=8",
        "data.batch_size=2",
        f"vlp.clip_model={w['clip']}",
        "train.rounds=1",
    ]
    cfg = load_config("demo", sets)
    w["warm"] = root / "warm"
    train_warmup(ds, w["warm"], cfg, progress=False)
    w["alt"] = root / "alt"
    train_alternate(ds, w["alt"], cfg, warmup_ckpt=w["warm"] / "warmup.pt")
    return w


def predictor(run):
    """The Predictor the CLI builds with ``--set THETA``."""
    from wtalkit.config import load_config
    from wtalkit.localize.predict import Predictor
    from wtalkit.models.checkpoint import checkpoint_config, load_checkpoint, resolve_checkpoint

    ckpt = resolve_checkpoint(run)
    return Predictor(ckpt, cfg=load_config(None, [THETA], base=checkpoint_config(load_checkpoint(ckpt)).to_dict()))


def assert_same_results(a: dict, b: dict):
    assert [d["label"] for d in a] == [d["label"] for d in b]
    np.testing.assert_allclose([d["segment"] for d in a], [d["segment"] for d in b], atol=1e-3)
    np.testing.assert_allclose([d["score"] for d in a], [d["score"] for d in b], atol=1e-4)


def test_videos_json_matches_dataset_features(world):
    from wtalkit.extract.video import probe
    from wtalkit.localize.predict import localize_dataset

    res = run_cli(
        [
            "localize",
            world["video"],
            world["video30"],
            world["warm"],
            "--json",
            "--cbp-weights",
            world["r21d"],
            "--set",
            THETA,
        ]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)  # stdout is the JSON and nothing else
    assert list(out) == ["results", "wtalkit"] and sorted(out["results"]) == ["clip1", "clip30"]
    assert out["wtalkit"]["branch"] == "cbp"
    for name, path in (("clip1", world["video"]), ("clip30", world["video30"])):
        dets = out["results"][name]
        duration = probe(path).duration
        assert dets, name
        for d in dets:
            assert d["label"] in ("Red", "Blue")
            assert 0.0 <= d["segment"][0] < d["segment"][1] <= duration + 1e-6, (name, d, duration)
    # the same video's features from 'wtalkit extract' give the same detections
    ref = localize_dataset(predictor(world["warm"]), world["dataset"], "test")["results"]["clip1"]
    assert_same_results(out["results"]["clip1"], ref)


def test_video_with_figure_on_alternate_run(world, tmp_path):
    """Both branches: the VLP stream is extracted too (for the figure), CBP infers."""
    from wtalkit.localize.predict import localize_dataset

    png = tmp_path / "figs" / "clip1.png"
    res = run_cli(
        [
            "localize",
            world["video"],
            world["alt"],
            "--json",
            "--cbp-weights",
            world["r21d"],
            "--plot",
            png,
            "--set",
            THETA,
        ]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    ref = localize_dataset(predictor(world["alt"]), world["dataset"], "test")["results"]["clip1"]
    assert_same_results(out["results"]["clip1"], ref)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert [p.name for p in png.parent.iterdir()] == ["clip1.png"]  # no temporary left


def test_library_features_and_callback(world):
    from wtalkit.data.features import FeatureStream
    from wtalkit.localize.video import localize_videos, weights_for

    pred = predictor(world["alt"])
    weights = weights_for(pred.metas, ("cbp", "vlp"), cbp_weights=world["r21d"])
    seen = []
    out = localize_videos(pred, [world["video"]], weights=weights, streams=("vlp",), on_video=seen.append)
    assert list(out["results"]) == ["clip1"]
    (item,) = seen
    assert set(item.feats) == {"cbp", "vlp"} and item.detections == out["results"]["clip1"]
    for s in ("cbp", "vlp"):
        ref = FeatureStream(world["dataset"] / "features" / s).load("clip1")
        np.testing.assert_allclose(item.feats[s], ref, rtol=1e-4, atol=1e-4)
    with pytest.raises(WtalError, match="--clip-weights.*no stream.*CLIP"):
        weights_for(pred.metas, ("cbp",), clip_weights=world["clip"])


def test_dimension_mismatch_is_clear(world):
    from wtalkit.data.features import StreamMeta
    from wtalkit.localize.video import VideoFeatures

    metas = {"cbp": StreamMeta("torchvision:r2plus1d_18", 256, 8.0, 4, 4)}
    with pytest.raises(WtalError, match=r"do not match the checkpoint.*dimension 512.*expects 256"):
        VideoFeatures(metas, ["cbp"], {"torchvision:r2plus1d_18": str(world["r21d"])})


def test_not_extractable_backbone(world, tiny_dataset, tmp_path):
    from wtalkit.config import load_config
    from wtalkit.train.warmup import train_warmup

    train_warmup(
        tiny_dataset, tmp_path / "run", load_config("demo", TINY_SETS + ["train.warmup_epochs=1"]), progress=False
    )
    res = run_cli(["localize", world["video"], tmp_path / "run", "--json"])
    err = assert_one_line_error(res)
    assert "synthetic-i3d" in err and ".npy" in err
    assert res.stdout == ""


def test_input_errors(world, tmp_path):
    err = assert_one_line_error(run_cli(["localize", tmp_path / "missing.mp4", world["warm"], "--json"]))
    assert "missing.mp4" in err
    err = assert_one_line_error(
        run_cli(["localize", world["video"], world["warm"], "--json", "--cbp-weights", tmp_path / "nope.pt"])
    )
    assert "nope.pt" in err
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    err = assert_one_line_error(run_cli(["localize", bad, world["warm"], "--json", "--cbp-weights", world["r21d"]]))
    assert "bad.mp4" in err
    # weights of another architecture: refused before any video is decoded
    import torchvision

    other = tmp_path / "r3d.pt"
    torch.save(torchvision.models.video.r3d_18(weights=None).state_dict(), other)
    err = assert_one_line_error(run_cli(["localize", world["video"], world["warm"], "--cbp-weights", other]))
    assert "r2plus1d_18" in err
