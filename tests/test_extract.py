"""``wtalkit extract``: decoding on the time grid, encoders, datasets, resume, CLI errors.

Models are built here: a tiny random CLIP loaded through clip.load, and a
random-weight R(2+1)D-18 state dict (the real architecture, so cbp tests keep
to one or two snippets). Videos are tiny synthetic H.264 files.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from videos import coded_frames, colour_frames, corrupt_copy, read_codes, truncated_copy, write_video

from tests.cli_helpers import assert_one_line_error, run_cli
from wtalkit.errors import WtalError

torch = pytest.importorskip("torch")
pytest.importorskip("av")
pytest.importorskip("decord")

RED, BLUE = (255, 0, 0), (0, 0, 255)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """Tiny CLIP + R(2+1)D-18 checkpoints and a set of videos (good and bad)."""
    import torchvision

    from wtalkit.models.clip import save_random_clip

    root = tmp_path_factory.mktemp("extract")
    a = {"root": root, "clip": save_random_clip(root / "models" / "clip_tiny.pt", "tiny")}
    torch.manual_seed(0)
    torch.save(torchvision.models.video.r2plus1d_18(weights=None).state_dict(), root / "models" / "r21d.pt")
    a["r21d"] = root / "models" / "r21d.pt"
    v = root / "videos"
    # colour changes at 1.92 s = start of snippet 3 (48 frames at 25 fps), 4 s long -> 7 snippets
    # (6 whole ones and the trailing partial one of frames 96..99, padded with frame 99)
    a["c25"] = write_video(v / "c25.mp4", colour_frames([RED, BLUE], [48, 52]), fps=25)
    # the same timing at 30 fps: red for 58 frames (1.93 s), 120 frames (4 s)
    a["c30"] = write_video(v / "c30.mp4", colour_frames([RED, BLUE], [58, 62]), fps=30)
    # colour change at 2.0 s, inside snippet 3 (frames 48..63)
    a["c2s"] = write_video(root / "other" / "c2s.mp4", colour_frames([RED, BLUE], [50, 50]), fps=25)
    a["code25"] = write_video(root / "other" / "code25.mp4", coded_frames(100), fps=25)
    a["code30"] = write_video(root / "other" / "code30.mp4", coded_frames(120), fps=30)
    a["code20"] = write_video(root / "other" / "code20.mp4", coded_frames(40), fps=20)
    a["short"] = write_video(root / "bad" / "short.mp4", colour_frames([RED], [10]), fps=25)
    a["one"] = write_video(root / "other" / "one.mp4", colour_frames([RED, BLUE], [10, 12]), fps=25)
    a["corrupt"] = corrupt_copy(a["code25"], root / "bad" / "corrupt.mp4")
    a["truncated"] = truncated_copy(a["c25"], root / "bad" / "truncated.mp4")
    a["text"] = root / "bad" / "text.mp4"
    a["text"].write_text("this is not a video\n")
    a["empty"] = root / "bad" / "empty.mp4"
    a["empty"].write_bytes(b"")
    return a


def vlp(assets, **kw):
    from wtalkit.extract.pipeline import vlp_spec

    return vlp_spec(str(assets["clip"]), **kw)


def cosine(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


# --------------------------------------------------------------------------- decoding


def test_iter_frames_native_rate(assets):
    from wtalkit.extract.video import iter_frames, probe

    info = probe(assets["code25"])
    assert (info.fps, info.num_frames, info.width, info.height) == (25.0, 100, 64, 48)
    assert info.duration == pytest.approx(4.0)
    batches = list(iter_frames(assets["code25"], 25, batch=32))
    assert [len(t) for t, _ in batches] == [32, 32, 32, 4]
    times = np.concatenate([t for t, _ in batches])
    frames = np.concatenate([f for _, f in batches])
    assert frames.dtype == np.uint8 and frames.shape == (100, 48, 64, 3)
    np.testing.assert_allclose(times, np.arange(100) / 25)
    np.testing.assert_array_equal(read_codes(frames), np.arange(100))
    # start skips earlier grid frames
    t, f = next(iter_frames(assets["code25"], 25, batch=8, start=2.0))
    np.testing.assert_allclose(t, (50 + np.arange(8)) / 25)
    np.testing.assert_array_equal(read_codes(f), 50 + np.arange(8))


def test_iter_frames_resamples_by_time(assets):
    from wtalkit.extract.video import iter_frames

    # 30 fps -> 25 fps grid: grid frame i (at i/25 s) is native frame round(i * 30/25)
    frames = np.concatenate([f for _, f in iter_frames(assets["code30"], 25, batch=64)])
    assert len(frames) == 100  # 4 s at 25 fps
    np.testing.assert_array_equal(read_codes(frames), np.floor(np.arange(100) * 1.2 + 0.5).astype(int))
    # 20 fps -> 25 fps: upsampled by repeating the nearest frame, still 2 s
    frames = np.concatenate([f for _, f in iter_frames(assets["code20"], 25, batch=7)])
    assert len(frames) == 50
    np.testing.assert_array_equal(read_codes(frames), np.floor(np.arange(50) * 0.8 + 0.5).astype(int))


@pytest.mark.parametrize("which", ["text", "empty", "truncated", "corrupt"])
def test_bad_videos_raise_one_line(assets, which):
    from wtalkit.extract.video import iter_frames

    with pytest.raises(WtalError) as e:
        for _ in iter_frames(assets[which], 25, batch=16):
            pass
    msg = str(e.value)
    assert "\n" not in msg and str(assets[which]) in msg


# --------------------------------------------------------------------------- encoders


def test_clip_encoder_matches_clip_preprocessing(assets):
    """Batched torch preprocessing ~= CLIP's own PIL pipeline, then encode_image."""
    from PIL import Image

    from wtalkit.extract.encoders import ClipImageEncoder
    from wtalkit.models.clip import _import_clip

    enc = ClipImageEncoder(str(assets["clip"]), precision="fp32")
    from wtalkit.extract.weights import file_digest

    recorded = f"clip:{assets['clip'].name}#sha256={file_digest(assets['clip'])}"  # by content, not by path
    assert enc.dim == 32 and enc.backbone == recorded and enc.precision == "fp32"
    rng = np.random.RandomState(0)
    # smooth random images (PIL's and torch's bicubic agree well away from pixel-level noise)
    small = rng.randint(0, 256, size=(3, 6, 8, 3)).astype(np.uint8)
    frames = np.stack([np.asarray(Image.fromarray(s).resize((80, 60), Image.BILINEAR)) for s in small])
    ours = enc.encode(frames)
    tf = _import_clip().clip._transform(enc.input_resolution)
    with torch.inference_mode():
        ref = enc.model.encode_image(torch.stack([tf(Image.fromarray(f)) for f in frames])).float().numpy()
    assert ours.shape == (3, 32) and ours.dtype == np.float32
    assert cosine(ours, ref).min() > 0.99


def test_video_classifier_matches_torchvision_preset(assets):
    import torchvision

    from wtalkit.extract.encoders import VideoClassifierEncoder

    enc = VideoClassifierEncoder("r2plus1d_18", weights=assets["r21d"], precision="fp32")
    assert (enc.dim, enc.backbone, enc.resize_size, enc.crop_size) == (
        512,
        "torchvision:r2plus1d_18",
        (128, 171),
        (112, 112),
    )
    clips = np.random.RandomState(1).randint(0, 256, size=(1, 16, 48, 64, 3)).astype(np.uint8)
    ours = enc.encode(clips)
    weights = torchvision.models.video.R2Plus1D_18_Weights.KINETICS400_V1
    model = torchvision.models.video.r2plus1d_18(weights=None)
    model.load_state_dict(torch.load(assets["r21d"], weights_only=True))
    model.fc = torch.nn.Identity()
    with torch.inference_mode():
        ref = model.eval()(weights.transforms()(torch.from_numpy(clips).permute(0, 1, 4, 2, 3))).numpy()
    assert ours.shape == (1, 512)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


def test_video_classifier_weight_errors(assets, tmp_path, monkeypatch):
    from wtalkit.extract.encoders import VideoClassifierEncoder

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(
        WtalError, match=r"not in torchvision's cache: put r2plus1d_18-.*\.pth at .*torch/hub/checkpoints"
    ):
        VideoClassifierEncoder("r2plus1d_18")
    with pytest.raises(WtalError, match="not a r3d_18 state dict"):
        VideoClassifierEncoder("r3d_18", weights=assets["clip"])
    with pytest.raises(WtalError, match="unknown CBP backbone 'resnet50'"):
        VideoClassifierEncoder("resnet50", weights=assets["r21d"])
    with pytest.raises(WtalError, match="weights file not found"):
        VideoClassifierEncoder("r2plus1d_18", weights=tmp_path / "nope.pt")


def test_reduced_precision_is_checked_against_fp32(assets, monkeypatch):
    """auto precision on a bf16 CPU: the first batch is compared with fp32; failing the check falls back."""
    from wtalkit.extract import encoders as E

    frames = np.random.RandomState(2).randint(0, 256, size=(4, 48, 64, 3)).astype(np.uint8)
    ref = E.ClipImageEncoder(str(assets["clip"]), precision="fp32").encode(frames)
    from wtalkit import device as D

    monkeypatch.setattr(D, "cpu_has_bf16", lambda: True)
    enc = E.ClipImageEncoder(str(assets["clip"]), precision="auto")
    assert enc.precision == "bf16"
    out = enc.encode(frames)
    assert enc.check_cosine is not None and -1.0 <= enc.check_cosine <= 1.0 + 1e-6
    assert enc.precision == ("bf16" if enc.check_cosine >= E.MIN_COSINE else "fp32")
    assert cosine(out, ref).min() >= min(enc.check_cosine, E.MIN_COSINE) - 1e-6
    # an impossible threshold forces the fallback: exact fp32 results from then on
    monkeypatch.setattr(E, "MIN_COSINE", 1.5)
    enc = E.ClipImageEncoder(str(assets["clip"]), precision="auto")
    np.testing.assert_array_equal(enc.encode(frames), ref)
    assert enc.precision == "fp32"
    np.testing.assert_array_equal(enc.encode(frames), ref)


# --------------------------------------------------------------------------- one video


def test_extract_video_time_axis(assets):
    """Snippet k covers [k*16/25, (k+1)*16/25) s: a colour change at 1.92 s shows from snippet 3, at 25 and 30 fps.

    100 grid frames give ceil(100 / 16) = 7 snippets: the trailing partial one (frames 96..99) is scored.
    """
    from wtalkit.extract.pipeline import extract_video

    out25 = extract_video(assets["c25"], {"vlp": vlp(assets)})["vlp"]
    out30 = extract_video(assets["c30"], {"vlp": vlp(assets)})["vlp"]
    assert out25.shape == (7, 32) and out25.dtype == np.float32
    for out in (out25, out30):
        red, blue = out[0], out[5]
        assert cosine(red, blue) < 0.999  # the two colours are told apart
        for k in range(7):
            np.testing.assert_allclose(out[k], red if k < 3 else blue, rtol=1e-3, atol=1e-3)
    # by time, not by frame index: at 30 fps, native frame 55 (1.83 s) is still red but snippet 3 is blue
    np.testing.assert_allclose(out30, out25, rtol=1e-3, atol=1e-3)


def test_mean_of_k_frames(assets):
    """@mean4: frames 48, 53, 58, 63 of snippet 3; the colour changes at frame 50 -> 1 red + 3 blue."""
    from wtalkit.extract.pipeline import extract_video

    spec = vlp(assets, frames_per_snippet=4)
    assert spec.backbone.endswith("@mean4")
    out = extract_video(assets["c2s"], {"vlp": spec})["vlp"]
    red, blue = out[0], out[5]
    np.testing.assert_allclose(out[3], (red + 3 * blue) / 4, rtol=1e-3, atol=1e-3)
    centre = extract_video(assets["c2s"], {"vlp": vlp(assets)})["vlp"]
    np.testing.assert_allclose(centre[3], blue, rtol=1e-3, atol=1e-3)  # centre frame 55 is blue


class CodeEncoder:
    """A test double with the encoder interface whose "feature" is the frame number drawn in the frame.

    It makes the pipeline's frame selection visible: which grid frames each
    snippet was computed from, in order.
    """

    decode_size = None
    precision = "fp32"
    check_cosine = None

    def __init__(self, dim):
        self.dim = dim

    def preprocess(self, frames):
        return torch.from_numpy(read_codes(frames)).float()[:, None]  # [n, 1]

    def encode_preprocessed(self, x):
        return x.reshape(x.shape[0], -1).numpy()  # clip: [N, 1]; video: [N, L]


@pytest.mark.parametrize("video,rate", [("code25", 1.0), ("code30", 1.2)])
def test_snippet_frames_on_the_time_grid(assets, video, rate):
    """Overlapping video snippets (length 8, stride 4) and mean-of-k CLIP frames pick the right frames."""
    from wtalkit.extract.pipeline import StreamSpec, extract_video

    native = lambda g: np.floor(np.asarray(g) * rate + 0.5)
    cbp = StreamSpec("torchvision:r2plus1d_18", snippet_length=8, snippet_stride=4)
    vlp3 = StreamSpec("clip:tiny", frames_per_snippet=3)
    out = extract_video(
        assets[video], {"cbp": cbp, "vlp": vlp3}, encoders={"cbp": CodeEncoder(8), "vlp": CodeEncoder(1)}, batch=7
    )
    # 4 s = 100 grid frames: ceil(100 / 4) = 25 snippets of frames [4k, 4k + 8), the last ones
    # partial (snippet 24 = frames 96..99), padded with the last grid frame, 99
    assert out["cbp"].shape == (25, 8)
    np.testing.assert_array_equal(out["cbp"], native(np.minimum(np.arange(25)[:, None] * 4 + np.arange(8), 99)))
    # 16-frame snippets, mean of frames 0, 8, 15 (evenly spaced, rounded) of each; snippet 6 = 96, 99, 99
    assert out["vlp"].shape == (7, 1)
    expected = native(np.minimum(np.arange(7)[:, None] * 16 + [0, 8, 15], 99)).mean(1)
    np.testing.assert_allclose(out["vlp"][:, 0], expected)


def test_short_and_bad_videos(assets):
    from wtalkit.extract.pipeline import extract_video

    # a video shorter than one snippet (10 frames) is one partial snippet, no longer an error
    short = extract_video(assets["short"], {"vlp": vlp(assets)})["vlp"]
    assert short.shape == (1, 32) and np.isfinite(short).all()
    with pytest.raises(WtalError, match="cannot"):
        extract_video(assets["corrupt"], {"vlp": vlp(assets)})


def test_spec_from_meta_roundtrip(assets):
    from wtalkit.data.features import StreamMeta
    from wtalkit.extract.pipeline import cbp_spec, spec_from_meta

    spec = vlp(assets, frames_per_snippet=4, fps=30.0, snippet_length=8, snippet_stride=4)
    meta = spec.meta(32)
    from wtalkit.extract.weights import file_digest

    recorded = f"clip:{assets['clip'].name}#sha256={file_digest(assets['clip'])}"
    assert meta == StreamMeta(f"{recorded}@mean4", 32, 30.0, 8, 4)  # by content: no absolute path in meta.json
    assert spec_from_meta(meta, {recorded: str(spec.weights)}) == spec
    cbp = cbp_spec("r2plus1d_18")
    meta = cbp.meta(512)
    assert meta.backbone == "torchvision:r2plus1d_18"
    back = spec_from_meta(meta, weights={"torchvision:r2plus1d_18": str(assets["r21d"])})
    assert back.weights == str(assets["r21d"]) and back.encoder == "torchvision:r2plus1d_18"
    assert spec_from_meta(StreamMeta("clip:ViT-B/16@mean2", 512), {"clip:ViT-B/16": "/x.pt"}).weights == "/x.pt"
    with pytest.raises(WtalError, match="not made by wtalkit extract"):
        spec_from_meta(StreamMeta("i3d-kinetics", 2048))


# --------------------------------------------------------------------------- datasets and CLI


def test_cli_dataset_with_failures(assets, tmp_path):
    """Good and bad videos: features for the good, a summary row for each bad one, exit 1, one-line error."""
    ds = tmp_path / "ds"
    # an existing annotation file: its entries and classes are kept
    ds.mkdir()
    (ds / "annotations.json").write_text(
        json.dumps(
            {
                "classes": ["Jump"],
                "database": {
                    "old": {
                        "subset": "train",
                        "duration": 3.0,
                        "annotations": [{"segment": [0.5, 1.0], "label": "Jump"}],
                    }
                },
            }
        )
    )
    listing = tmp_path / "list.txt"
    listing.write_text(f"# videos\n{assets['c25']}\n\n{os.path.relpath(assets['c30'], tmp_path)}\n")
    res = run_cli(
        [
            "extract",
            str(listing),
            str(assets["root"] / "bad"),
            "-o",
            str(ds),
            "--streams",
            "vlp",
            "--clip",
            str(assets["clip"]),
            "--subset",
            "validation",
            "--json",
        ]
    )
    line = assert_one_line_error(res)
    assert "4 of 7 videos failed" in line
    for name in ("short", "corrupt", "truncated", "text", "empty"):
        assert name in res.stderr  # the summary table
    rows = {r["name"]: r for r in json.loads(res.stdout)["results"]}
    assert {n for n, r in rows.items() if r["status"] == "failed"} == {"corrupt", "truncated", "text", "empty"}
    # shorter than one snippet: one partial snippet (padded with its last frame), not a failure
    assert rows["short"]["status"] == "done" and rows["short"]["snippets"] == 1
    assert all("\n" not in r["error"] for r in rows.values() if r["error"])
    vlp_dir = ds / "features" / "vlp"
    assert sorted(p.name for p in vlp_dir.iterdir()) == ["c25.npy", "c30.npy", "meta.json", "short.npy"]
    assert np.load(vlp_dir / "c25.npy").shape == (7, 32)
    meta = json.loads((vlp_dir / "meta.json").read_text())
    from wtalkit.extract.weights import file_digest

    assert meta == {
        "backbone": f"clip:{assets['clip'].name}#sha256={file_digest(assets['clip'])}",
        "dim": 32,
        "fps": 25.0,
        "snippet_length": 16,
        "snippet_stride": 16,
    }
    from wtalkit.data.annotations import load_annotations

    ann = load_annotations(ds / "annotations.json")
    assert ann.classes == ["Jump"]
    assert ann.videos["old"].subset == "train" and ann.videos["old"].segments == [(0.5, 1.0, "Jump")]
    assert ann.videos["c25"].subset == "validation" and ann.videos["c25"].duration == pytest.approx(4.0)
    assert ann.videos["c30"].fps == pytest.approx(30.0) and ann.videos["c30"].duration == pytest.approx(4.0)
    assert ann.videos["short"].duration == pytest.approx(0.4)
    assert not [p for p in ds.rglob("*") if p.name.endswith(".tmp")]
    # the features load through the dataset reader of the rest of wtalkit
    from wtalkit.data.features import Dataset

    d = Dataset(ds)
    assert sorted(v.name for v in d.videos("validation", "vlp")) == ["c25", "c30", "short"]
    assert d.stream("vlp").load("c30").shape == (7, 32)


def test_cli_both_streams_and_json(assets, tmp_path):
    ds = tmp_path / "ds"
    res = run_cli(
        [
            "extract",
            str(assets["one"]),
            "-o",
            str(ds),
            "--clip",
            str(assets["clip"]),
            "--cbp-weights",
            str(assets["r21d"]),
            "--device",
            "cpu",
            "--json",
        ]
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["done"] == 1 and summary["failed"] == 0 and summary["precision"]["cbp"] in ("fp32", "bf16")
    # 22 frames: one whole snippet and the trailing partial one (frames 16..21)
    cbp = np.load(ds / "features" / "cbp" / "one.npy")
    assert cbp.shape == (2, 512) and cbp.dtype == np.float32 and np.isfinite(cbp).all()
    assert np.load(ds / "features" / "vlp" / "one.npy").shape == (2, 32)
    from wtalkit.extract.weights import file_digest

    cbp_backbone = json.loads((ds / "features" / "cbp" / "meta.json").read_text())["backbone"]
    assert cbp_backbone == f"torchvision:r2plus1d_18#sha256={file_digest(assets['r21d'])}"  # local weights: by content
    # the cbp feature is the pooled classifier feature of the snippet's 16 frames
    from wtalkit.extract.encoders import VideoClassifierEncoder
    from wtalkit.extract.video import iter_frames

    frames = np.concatenate([f for _, f in iter_frames(assets["one"], 25)])
    assert len(frames) == 22
    # the partial snippet is padded by repeating the last frame: frames 16..21, then 21 ten times
    clips = np.stack([frames[:16], frames[np.minimum(np.arange(16, 32), 21)]])
    ref = VideoClassifierEncoder("r2plus1d_18", weights=assets["r21d"], precision="fp32").encode(clips)
    assert (cosine(cbp, ref) > 0.999).all()  # the decoder resized to 128x171 in the pipeline


def test_resume_after_interruption_gives_identical_files(assets, tmp_path):
    from wtalkit.extract.dataset import extract_dataset
    from wtalkit.extract.progress import ExtractProgress

    videos = [assets["c25"], assets["c30"], assets["c2s"]]
    streams = {"vlp": vlp(assets)}
    clean = tmp_path / "clean"
    s = extract_dataset(videos, clean, streams)
    assert [r.status for r in s.results] == ["done"] * 3

    class Killer(ExtractProgress):
        """Dies in the middle of the second video, like a Ctrl-C."""

        def __init__(self):
            self.started = 0

        def video_start(self, name):
            self.started += 1

        def advance(self, frames):
            if self.started == 2:
                raise KeyboardInterrupt

    ds = tmp_path / "ds"
    with pytest.raises(KeyboardInterrupt):
        extract_dataset(videos, ds, streams, progress=Killer())
    assert sorted(p.name for p in (ds / "features" / "vlp").glob("*.npy")) == ["c25.npy"]
    # a temp file left by a process killed while writing
    (ds / "features" / "vlp" / ".c30.npy.abc123.tmp").write_bytes(b"\x93NUMPY partial")
    (ds / "annotations.json").unlink()  # killed before annotations.json was written
    s = extract_dataset(videos, ds, streams)
    assert [r.status for r in s.results] == ["skipped", "done", "done"]
    for f in ("c25.npy", "c30.npy", "c2s.npy", "meta.json"):
        assert (ds / "features" / "vlp" / f).read_bytes() == (clean / "features" / "vlp" / f).read_bytes()
    assert json.loads((ds / "annotations.json").read_text()) == json.loads((clean / "annotations.json").read_text())
    assert not list((ds / "features" / "vlp").glob(".*.tmp"))


def test_rerun_skips_and_overwrite_redoes(assets, tmp_path, monkeypatch):
    ds = tmp_path / "ds"
    args = ["extract", str(assets["c25"]), "-o", str(ds), "--streams", "vlp", "--clip", str(assets["clip"]), "--json"]
    assert run_cli(args).exit_code == 0
    f = ds / "features" / "vlp" / "c25.npy"
    os.utime(f, (1, 1))
    # no --clip: the backbone comes from meta.json, which names the CLIP file by content; it is found in
    # the weights cache (here: a renamed copy) and nowhere else
    line = assert_one_line_error(run_cli(args[:-3] + ["--json"]))
    assert "clip_tiny.pt" in line and "WTALKIT_WEIGHTS" in line
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "renamed.pt").write_bytes(assets["clip"].read_bytes())
    monkeypatch.setenv("WTALKIT_WEIGHTS", str(cache))
    res = run_cli(args[:-3] + ["--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["skipped"] == 1 and f.stat().st_mtime == 1
    res = run_cli(args + ["--overwrite"])
    assert res.exit_code == 0 and json.loads(res.stdout)["done"] == 1
    assert f.stat().st_mtime > 1
    # a different grid for the same stream folder is refused, nothing written
    res = run_cli(args + ["--overwrite", "--fps", "30"])
    assert "differs" in assert_one_line_error(res)


def test_workers_give_the_same_features(assets, tmp_path):
    from wtalkit.extract.dataset import extract_dataset
    from wtalkit.extract.progress import ExtractProgress

    class Killer(ExtractProgress):
        def advance(self, frames):
            raise KeyboardInterrupt

    videos = [assets["c25"], assets["c30"], assets["code25"]]
    one = extract_dataset(videos, tmp_path / "one", {"vlp": vlp(assets)})
    with pytest.raises(KeyboardInterrupt):  # interrupted with two videos in flight
        extract_dataset(videos, tmp_path / "two", {"vlp": vlp(assets)}, workers=2, progress=Killer())
    assert not list((tmp_path / "two" / "features" / "vlp").glob("*.npy"))
    two = extract_dataset(videos, tmp_path / "two", {"vlp": vlp(assets)}, workers=2)
    assert [r.status for r in two.results] == ["done"] * 3 and not one.failed
    for v in ("c25", "c30", "code25"):
        np.testing.assert_allclose(
            np.load(tmp_path / "two" / "features" / "vlp" / f"{v}.npy"),
            np.load(tmp_path / "one" / "features" / "vlp" / f"{v}.npy"),
            rtol=1e-5,
            atol=1e-6,
        )


@pytest.mark.parametrize(
    "args,expected",
    [
        (["missing.mp4"], "video not found"),
        (["{c25}", "--streams", "flow"], "unknown feature stream 'flow'"),
        (["{c25}", "--streams", "vlp", "--clip", "no-such-model"], "neither a known name"),
        (["{c25}", "--streams", "cbp", "--cbp-backbone", "vgg"], "unknown CBP backbone"),
        (["{c25}", "--streams", "cbp"], "put r2plus1d_18-91a641e6.pth at"),
        (["{c25}", "{c25dup}", "--streams", "vlp", "--clip", "{clip}"], "both named 'c25'"),
        (["{c25}", "--streams", "vlp", "--clip", "{clip}", "--vlp-frames", "17"], "frames per snippet"),
    ],
)
def test_cli_input_errors(assets, tmp_path, monkeypatch, args, expected):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    dup = tmp_path / "dup" / "c25.mp4"
    dup.parent.mkdir()
    dup.write_bytes(Path(assets["c25"]).read_bytes())
    args = [a.format(c25=assets["c25"], c25dup=dup, clip=assets["clip"]) for a in args]
    res = run_cli(["extract", *args, "-o", str(tmp_path / "ds")])
    assert expected in assert_one_line_error(res)
    assert not list((tmp_path / "ds").rglob("*.npy"))
