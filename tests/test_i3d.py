"""Two-stream I3D (``--cbp-backbone i3d``): the port's state dicts, strict loading, preprocessing, extraction.

Weight files are built here with the PyTorch port's real parameter names and shapes
(random values) and loaded through the real path. The networks run on 32x32 crops
(frames resized to a shorter side of 40) instead of 256/224, so that they stay
cheap on a CPU; the architecture and the pipeline are the same.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from videos import write_video

from tests.cli_helpers import assert_one_line_error, run_cli
from wtalkit.errors import WtalError

torch = pytest.importorskip("torch")
pytest.importorskip("av")
pytest.importorskip("decord")

# A few tensors of the port's rgb_imagenet.pt / flow_imagenet.pt, by name and shape (written out, not derived).
PORT_SHAPES = {
    "Conv3d_1a_7x7.conv3d.weight": (64, 3, 7, 7, 7),
    "Conv3d_1a_7x7.bn.weight": (64,),
    "Conv3d_1a_7x7.bn.bias": (64,),
    "Conv3d_1a_7x7.bn.running_mean": (64,),
    "Conv3d_1a_7x7.bn.running_var": (64,),
    "Conv3d_2b_1x1.conv3d.weight": (64, 64, 1, 1, 1),
    "Conv3d_2c_3x3.conv3d.weight": (192, 64, 3, 3, 3),
    "Mixed_3b.b0.conv3d.weight": (64, 192, 1, 1, 1),
    "Mixed_3b.b1a.conv3d.weight": (96, 192, 1, 1, 1),
    "Mixed_3b.b1b.conv3d.weight": (128, 96, 3, 3, 3),
    "Mixed_3b.b2a.conv3d.weight": (16, 192, 1, 1, 1),
    "Mixed_3b.b2b.conv3d.weight": (32, 16, 3, 3, 3),
    "Mixed_3b.b3b.conv3d.weight": (32, 192, 1, 1, 1),
    "Mixed_3c.b2b.bn.running_var": (96,),
    "Mixed_4b.b0.conv3d.weight": (192, 480, 1, 1, 1),
    "Mixed_4e.b1b.conv3d.weight": (288, 144, 3, 3, 3),
    "Mixed_4f.b3b.bn.bias": (128,),
    "Mixed_5b.b0.conv3d.weight": (256, 832, 1, 1, 1),
    "Mixed_5c.b0.conv3d.weight": (384, 832, 1, 1, 1),
    "Mixed_5c.b2b.conv3d.weight": (128, 48, 3, 3, 3),
    "Mixed_5c.b3b.bn.running_mean": (128,),
    "logits.conv3d.weight": (400, 1024, 1, 1, 1),
    "logits.conv3d.bias": (400,),
}
MODULES = ["Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3"] + [
    f"Mixed_{b}" for b in ("3b", "3c", "4b", "4c", "4d", "4e", "4f", "5b", "5c")
]


def moving_texture(n: int, h: int = 48, w: int = 64, step: int = 1, seed: int = 0) -> np.ndarray:
    """A smooth random texture sliding ``step`` px to the right per frame."""
    rng = np.random.RandomState(seed)
    big = rng.randint(0, 256, size=(h // 4 + 2, (w + n * step) // 4 + 2, 3)).astype(np.float32)
    big = np.repeat(np.repeat(big, 4, 0), 4, 1)
    big = torch.nn.functional.avg_pool2d(torch.from_numpy(big).permute(2, 0, 1)[None], 5, 1, 2)[0]
    big = big.permute(1, 2, 0).numpy()
    return np.stack([big[:h, (n - i) * step : (n - i) * step + w] for i in range(n)]).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def small_i3d():
    """Small inputs for the whole module: frames resized to 40 px, 32x32 crops; RAFT with 2 refinements."""
    from wtalkit.extract import flow, i3d

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(i3d, "RESIZE", 40)
        mp.setattr(i3d, "CROP", 32)
        mp.setattr(flow, "RAFT_UPDATES", 2)
        yield


@pytest.fixture(scope="module")
def assets(tmp_path_factory, small_i3d):
    from torchvision.models.optical_flow import raft_small

    from wtalkit.extract.i3d import random_i3d_state_dict

    root = tmp_path_factory.mktemp("i3d")
    a = {"root": root, "rgb": root / "w" / "rgb_imagenet.pt", "flow": root / "w" / "flow_imagenet.pt"}
    a["rgb"].parent.mkdir()
    torch.save(random_i3d_state_dict(3, seed=0), a["rgb"])
    torch.save(random_i3d_state_dict(2, seed=1), a["flow"])
    torch.manual_seed(0)
    a["raft"] = root / "w" / "raft_small.pth"
    torch.save(raft_small(weights=None).state_dict(), a["raft"])
    a["weights"] = f"rgb={a['rgb']},flow={a['flow']}"
    # 20 frames at 25 fps: one whole 16-frame snippet and the trailing partial one (frames 16..19)
    a["frames"] = moving_texture(20)
    a["video"] = write_video(root / "videos" / "slide.mp4", a["frames"], fps=25)
    return a


@pytest.fixture(scope="module")
def raft_encoder(assets):
    from wtalkit.extract.i3d import I3DEncoder

    return I3DEncoder(f"{assets['weights']},raft={assets['raft']}", flow="raft_small", precision="fp32")


# --------------------------------------------------------------------------- weights


def test_state_dict_has_the_ports_names_and_shapes():
    from wtalkit.data.thumos import CBP_META
    from wtalkit.extract.i3d import I3D_BACKBONE, random_i3d_state_dict

    sd = random_i3d_state_dict(3)
    for name, shape in PORT_SHAPES.items():
        assert tuple(sd[name].shape) == shape, name
    # 3 stem units + 9 Inception blocks x 6 units, each conv + 4 BatchNorm tensors, + the logits' weight and bias
    assert len(sd) == (3 + 9 * 6) * 5 + 2
    prefixes = {k.split(".")[0] for k in sd}
    assert prefixes == set(MODULES) | {"logits"}
    branches = {k.split(".")[1] for k in sd if k.startswith("Mixed_")}
    assert branches == {"b0", "b1a", "b1b", "b2a", "b2b", "b3b"}
    assert tuple(random_i3d_state_dict(2)["Conv3d_1a_7x7.conv3d.weight"].shape) == (64, 2, 7, 7, 7)
    assert CBP_META.backbone == I3D_BACKBONE and CBP_META.dim == 2048  # import-thumos features are the same kind


def test_loading_is_strict_with_one_line_errors(tmp_path):
    from wtalkit.extract.i3d import load_i3d, random_i3d_state_dict

    good = random_i3d_state_dict(2, seed=3)
    # the port's files as saved by DataParallel / a newer torch (num_batches_tracked) load too
    variant = {f"module.{k}": v for k, v in good.items()}
    variant["module.Mixed_3b.b0.bn.num_batches_tracked"] = torch.tensor(7)
    torch.save(variant, tmp_path / "ok.pt")
    net = load_i3d(tmp_path / "ok.pt", 2)
    assert not net.training and torch.equal(net.Mixed_5c.b1b.conv3d.weight, good["Mixed_5c.b1b.conv3d.weight"])

    def broken(name, sd, in_channels=2):
        p = tmp_path / f"{name}.pt"
        torch.save(sd, p)
        with pytest.raises(WtalError) as e:
            load_i3d(p, in_channels)
        assert "\n" not in str(e.value)
        return str(e.value)

    assert "missing 'Mixed_4c.b2b.bn.running_var'" in broken(
        "missing", {k: v for k, v in good.items() if k != "Mixed_4c.b2b.bn.running_var"}
    )
    assert "unexpected 'Mixed_6a.b0.conv3d.weight'" in broken(
        "extra", {**good, "Mixed_6a.b0.conv3d.weight": torch.zeros(1)}
    )
    shape = broken("shape", {**good, "Mixed_4d.b1b.conv3d.weight": torch.zeros(256, 128, 3, 3, 1)})
    assert "'Mixed_4d.b1b.conv3d.weight' has shape [256, 128, 3, 3, 1], expected [256, 128, 3, 3, 3]" in shape
    assert "expected the RGB one" in broken("swapped", good, in_channels=3)
    p = tmp_path / "text.pt"
    p.write_text("not weights")
    with pytest.raises(WtalError, match="not a loadable state dict"):
        load_i3d(p, 3)


# --------------------------------------------------------------------------- preprocessing


class ConstantFlow:
    """A flow estimator double: (dx, dy) = (30, -5) px everywhere, so scaling and clipping are visible."""

    device = torch.device("cpu")

    def __call__(self, a, b):
        out = torch.zeros((a.shape[0], 2, *a.shape[-2:]))
        out[:, 0], out[:, 1] = 30.0, -5.0
        return out


def test_preprocessing_scales_as_documented(small_i3d):
    from torchvision.transforms import functional as TF

    from wtalkit.extract.i3d import I3DFrames, resized_size, scale_flow, scale_rgb

    np.testing.assert_allclose(scale_rgb(torch.tensor([0, 51, 255], dtype=torch.uint8)), [-1.0, -0.6, 1.0], atol=1e-6)
    np.testing.assert_allclose(
        scale_flow(torch.tensor([-40.0, -20.0, -5.0, 0.0, 10.0, 25.0])), [-1, -1, -0.25, 0, 0.5, 1]
    )
    assert resized_size(720, 1280, 256) == (256, 455) and resized_size(640, 480, 256) == (341, 256)

    frames = moving_texture(7, h=48, w=64)
    pre = I3DFrames(ConstantFlow())  # module defaults, patched: shorter side 40, 32x32 crop
    out = pre.video(frames)
    assert out.shape == (7, 5, 32, 32) and out.dtype == torch.float32
    resized = TF.resize(torch.from_numpy(frames).permute(0, 3, 1, 2).float(), [40, 53], antialias=True)
    rgb = TF.center_crop(resized.round().clamp(0, 255), [32, 32]) / 255 * 2 - 1
    np.testing.assert_allclose(out[:, :3], rgb, atol=1e-6)  # RGB: x / 255 * 2 - 1 of the centre crop
    np.testing.assert_allclose(out[:6, 3], 1.0)  # 30 px clipped to 20, / 20
    np.testing.assert_allclose(out[:6, 4], -0.25)  # -5 px / 20
    np.testing.assert_allclose(out[6, 3:], 0.0)  # the last frame: flow towards a repeated last frame
    # fed in batches (as the pipeline does), the frames and their flow pairs are the same
    batches = [(np.arange(0, 3), frames[:3]), (np.arange(3, 4), frames[3:4]), (np.arange(4, 7), frames[4:])]
    streamed = list(pre.stream(batches))
    np.testing.assert_array_equal(np.concatenate([g for g, _ in streamed]), np.arange(7))
    np.testing.assert_array_equal(torch.cat([x for _, x in streamed]), out)
    # a frame whose successor is not decoded (a gap in the grid indices) gets zero flow
    gap = torch.cat([x for _, x in pre.stream([(np.array([0, 1, 5, 6]), frames[:4])])])
    np.testing.assert_allclose(gap[[1, 3], 3:], 0.0)
    np.testing.assert_allclose(gap[[0, 2], 3], 1.0)


def test_tvl1_flow_and_its_missing_dependency(monkeypatch):
    from wtalkit.extract import flow

    if not flow.tvl1_available():
        with pytest.raises(WtalError, match=r"pip install 'wtalkit\[flow\]'"):
            flow.build_flow("tvl1")
        pytest.skip("OpenCV contrib (cv2.optflow) is not installed")
    frames = torch.from_numpy(moving_texture(2, h=48, w=64, step=2)).permute(0, 3, 1, 2)
    f = flow.build_flow("tv-l1")(frames[:1], frames[1:])
    assert f.shape == (1, 2, 48, 64) and f.dtype == torch.float32
    inner = f[0, :, 12:-12, 12:-12]
    assert abs(float(inner[0].median()) - 2.0) < 0.3 and abs(float(inner[1].median())) < 0.3  # 2 px to the right
    monkeypatch.setattr(flow, "tvl1_available", lambda: False)
    with pytest.raises(WtalError, match=r"pip install 'wtalkit\[flow\]'.*--flow raft"):
        flow.build_flow("tvl1")


# --------------------------------------------------------------------------- extraction


def reference_features(enc, frames, L=16):
    """Snippet by snippet, by hand: flow of frame i -> i+1 over the whole video; the partial snippet padded."""
    pre = enc.frames.video(frames)  # [n, 5, c, c]
    n = len(frames)
    starts = np.arange(0, n, L)
    idx = np.minimum(starts[:, None] + np.arange(L), n - 1)
    return enc.encode_preprocessed(pre[torch.from_numpy(idx.ravel())].reshape(len(starts), L, *pre.shape[1:]))


@pytest.fixture(scope="module")
def raft_features(assets, raft_encoder):
    from wtalkit.extract.pipeline import cbp_spec, extract_video

    spec = cbp_spec("i3d", assets["weights"], flow="raft", flow_weights=assets["raft"])
    return extract_video(assets["video"], {"cbp": spec}, encoders={"cbp": raft_encoder}, batch=7)["cbp"]


def test_extract_video_i3d_shape_and_partial_snippet(assets, raft_encoder, raft_features):
    from wtalkit.extract.video import iter_frames

    assert raft_features.shape == (2, 2048) and raft_features.dtype == np.float32  # ceil(20 / 16) = 2 snippets
    assert np.isfinite(raft_features).all()
    frames = np.concatenate([f for _, f in iter_frames(assets["video"], 25)])
    assert len(frames) == 20
    ref = reference_features(raft_encoder, frames)
    np.testing.assert_allclose(raft_features, ref, rtol=1e-4, atol=1e-4)
    # RGB half and flow half are the two networks' own features
    x = raft_encoder.frames.video(frames)[:16].permute(1, 0, 2, 3)[None]
    with torch.inference_mode():
        rgb = raft_encoder.rgb_net.features(x[:, :3])
    np.testing.assert_allclose(raft_features[0, :1024], rgb[0], rtol=1e-4, atol=1e-4)


def test_cli_extract_i3d_end_to_end(assets, raft_features, tmp_path):
    ds = tmp_path / "ds"
    args = ["extract", assets["video"], "-o", ds, "--streams", "cbp", "--cbp-backbone", "i3d"]
    args += ["--cbp-weights", assets["weights"], "--flow", "raft_small", "--flow-weights", assets["raft"]]
    res = run_cli([*args, "--device", "cpu", "--precision", "fp32", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["done"] == 1 and summary["streams"]["cbp"] == "i3d-kinetics-rgb+flow@raft_small"
    meta = json.loads((ds / "features" / "cbp" / "meta.json").read_text())
    assert meta == {
        "backbone": "i3d-kinetics-rgb+flow@raft_small",
        "dim": 2048,
        "fps": 25.0,
        "snippet_length": 16,
        "snippet_stride": 16,
    }
    feats = np.load(ds / "features" / "cbp" / "slide.npy")
    np.testing.assert_allclose(feats, raft_features, rtol=1e-4, atol=1e-4)


def test_tvl1_extraction(assets):
    from wtalkit.extract import flow
    from wtalkit.extract.i3d import I3DEncoder
    from wtalkit.extract.pipeline import cbp_spec, extract_video

    if not flow.tvl1_available():
        pytest.skip("OpenCV contrib (cv2.optflow) is not installed")
    spec = cbp_spec("i3d", assets["weights"])
    assert spec.backbone == "i3d-kinetics-rgb+flow" and spec.kind == "i3d"
    enc = I3DEncoder(assets["weights"], precision="fp32")
    out = extract_video(assets["video"], {"cbp": spec}, encoders={"cbp": enc})["cbp"]
    assert out.shape == (2, 2048) and np.isfinite(out).all()


@pytest.mark.parametrize(
    "extra,expected",
    [
        (["--cbp-weights", "{rgb}"], "rgb=RGB.pt,flow=FLOW.pt"),
        (
            ["--cbp-weights", "rgb={flow},flow={flow}", "--flow", "raft_small", "--flow-weights", "{raft}"],
            "the RGB one",
        ),
        (["--cbp-weights", "rgb={rgb},flow={rgb}", "--flow", "raft_small", "--flow-weights", "{raft}"], "the flow one"),
        (["--cbp-weights", "rgb={rgb},flow=/no/such.pt"], "flow weights file not found"),
        (["--cbp-weights", "rgb={rgb}"], "no I3D flow weights: pass --cbp-weights"),
        (["--cbp-weights", "{weights}", "--flow", "farneback"], "unknown optical flow method"),
        (["--cbp-weights", "{weights}", "--flow", "raft"], "put raft_large"),
        (["--cbp-weights", "{weights}", "--flow-weights", "{raft}"], "TV-L1 has no weights"),
        (["--cbp-weights", "{weights}", "--flow", "raft", "--flow-weights", "{raft}"], "not a torchvision raft_large"),
    ],
)
def test_cli_i3d_errors(assets, tmp_path, monkeypatch, extra, expected):
    monkeypatch.setenv("WTALKIT_WEIGHTS", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    extra = [
        e.format(rgb=assets["rgb"], flow=assets["flow"], raft=assets["raft"], weights=assets["weights"]) for e in extra
    ]
    res = run_cli(
        ["extract", assets["video"], "-o", tmp_path / "ds", "--streams", "cbp", "--cbp-backbone", "i3d", *extra]
    )
    assert expected in assert_one_line_error(res)
    assert not list((tmp_path / "ds").rglob("*.npy"))


def test_flow_options_need_i3d(assets, tmp_path):
    res = run_cli(["extract", assets["video"], "-o", tmp_path / "ds", "--streams", "cbp", "--flow", "raft"])
    assert "only apply to --cbp-backbone i3d" in assert_one_line_error(res)
    res = run_cli(["extract", assets["video"], "-o", tmp_path / "ds", "--streams", "vlp", "--flow", "raft"])
    assert "only apply to the cbp stream" in assert_one_line_error(res)


def test_weights_found_in_the_cache(assets, tmp_path, monkeypatch):
    from wtalkit.extract.i3d import find_i3d_weights

    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("WTALKIT_WEIGHTS", str(cache))
    with pytest.raises(WtalError, match="put rgb_imagenet.pt in"):
        find_i3d_weights("rgb")
    (cache / "rgb_imagenet.pt").write_bytes(assets["rgb"].read_bytes())
    assert find_i3d_weights("rgb") == cache / "rgb_imagenet.pt"


# --------------------------------------------------------------------------- localize on raw videos


def test_localize_rebuilds_i3d_streams(assets):
    from wtalkit.data.features import StreamMeta
    from wtalkit.data.thumos import CBP_META
    from wtalkit.extract.pipeline import cbp_spec
    from wtalkit.localize.video import is_extractable, stream_specs, weights_for

    # a run trained on the public (imported) I3D features: its videos are encoded by wtalkit's I3D
    metas = {"cbp": CBP_META, "vlp": StreamMeta("clip:ViT-B/16", 512)}
    assert is_extractable(CBP_META)
    weights = weights_for(metas, ["cbp"], cbp_weights=assets["weights"])
    spec = stream_specs(metas, ["cbp"], weights)["cbp"]
    assert spec == cbp_spec("i3d", assets["weights"])  # what `wtalkit extract --cbp-backbone i3d` uses
    assert spec.kind == "i3d" and spec.weights == f"rgb={assets['rgb']},flow={assets['flow']}"
    assert stream_specs(metas, ["cbp"])["cbp"].weights is None  # then found in the weights cache
    raft = {"cbp": StreamMeta("i3d-kinetics-rgb+flow@raft_small", 2048)}
    w = weights_for(raft, ["cbp"], cbp_weights=assets["weights"], flow_weights=assets["raft"])
    assert stream_specs(raft, ["cbp"], w)["cbp"] == cbp_spec(
        "i3d", assets["weights"], flow="raft_small", flow_weights=assets["raft"]
    )
    with pytest.raises(WtalError, match="rgb=RGB.pt,flow=FLOW.pt"):
        weights_for(metas, ["cbp"], cbp_weights=str(assets["rgb"]))
    with pytest.raises(WtalError, match="no stream of the checkpoint uses I3D with RAFT"):
        weights_for(metas, ["cbp"], flow_weights=str(assets["raft"]))
    tv = {"cbp": StreamMeta("torchvision:r2plus1d_18", 512)}
    with pytest.raises(WtalError, match="are for I3D"):
        weights_for(tv, ["cbp"], cbp_weights=assets["weights"])
