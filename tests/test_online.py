"""``wtalkit online``: causal scorers, streaming output, hysteresis segments, errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest

from wtalkit.errors import WtalError
from wtalkit.models.clip import class_words
from wtalkit.online.scorers import ClipEMAScorer, ClipFrameScorer, ClipWindowScorer, build_scorer, text_classifier
from wtalkit.online.segments import HysteresisSegmenter, Segment, segments_from_scores

CLASSES = ["high jump", "pole vault", "CliffDiving"]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    from wtalkit.models.clip import save_random_clip

    return save_random_clip(tmp_path_factory.mktemp("clip") / "c.pt", "tiny")


@pytest.fixture(scope="module")
def clip_model(clip_path):
    from wtalkit.models.clip import load_clip

    return load_clip(str(clip_path))


@pytest.fixture(scope="module")
def cli():
    from wtalkit.cli import cli as group

    if "online" not in group.commands:  # until the lead wires the module into wtalkit/cli/__init__.py
        from wtalkit.cli.online import register

        register(group)
    return group


def invoke(cli, args):
    from click.testing import CliRunner

    return CliRunner().invoke(cli, args, catch_exceptions=True)


def write_video(path, seconds=3.0, fps=25, size=(64, 48), codec="libx264"):
    """A synthetic video whose content changes over time (a moving bright square on a colour ramp)."""
    import av

    w, h = size
    n = int(round(seconds * fps))
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=fps)
        s.width, s.height = w, h
        s.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for i in range(n):
            img = np.zeros((h, w, 3), np.uint8)
            img[..., 0] = (i * 7) % 256  # depends on the frame alone: a cut file shares its first frames
            img[..., 2] = np.linspace(0, 255, w, dtype=np.uint8)[None]
            x = (i * 3) % (w - 12)
            img[10:22, x : x + 12] = 255
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    return path


def write_features(folder, feats, fps=4.0, with_meta=True, name="vid"):
    from wtalkit.data.features import FeatureStream, StreamMeta

    folder.mkdir(parents=True, exist_ok=True)
    if with_meta:
        FeatureStream.create(folder, StreamMeta("clip-tiny", feats.shape[1], fps, 1, 1)).write(name, feats)
    else:
        np.save(folder / f"{name}.npy", feats.astype(np.float32))
    return folder / f"{name}.npy"


def read_lines(text):
    return [json.loads(ln) for ln in text.splitlines() if ln.strip()]


# ----------------------------------------------------------------------------- scorers


def _norm(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_template_averaging_and_background(clip_model):
    from wtalkit.models.clip import encode_texts

    templates = ["A photo of action {}.", "a video of someone doing {}"]
    text = text_classifier(clip_model, CLASSES, templates, "background")
    assert text.shape == (len(CLASSES) + 1, 32)
    # Each row is the normalised mean of its normalised template embeddings; background is last.
    for row, name in zip(text, [class_words(c) for c in CLASSES] + ["background"]):
        per_t = encode_texts(clip_model, [t.format(name) for t in templates]).numpy()
        np.testing.assert_allclose(row, _norm(per_t.mean(0)), atol=1e-5)
    one = text_classifier(clip_model, CLASSES, templates[:1], "background")
    assert not np.allclose(one, text, atol=1e-3)  # the second template changes the classifier

    scorer = build_scorer("clip-frame", clip_model, CLASSES, templates, "background")
    embs = np.random.default_rng(0).normal(size=(5, 32)).astype(np.float32)
    probs = scorer.step_many(embs)
    assert probs.shape == (5, len(CLASSES) + 1)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    logits = 100.0 * _norm(embs) @ text.T
    expect = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probs, expect / expect.sum(1, keepdims=True), atol=1e-5)


def test_prompt_names():
    assert class_words("CliffDiving") == "cliff diving"
    assert class_words("high_jump") == "high jump"
    assert class_words("pole vault") == "pole vault"
    assert class_words("TV") == "tv"  # one rule everywhere; CLIP's tokenizer lower-cases anyway


def _text(k=4, d=16, seed=1):
    return _norm(np.random.default_rng(seed).normal(size=(k + 1, d))).astype(np.float32)


@pytest.mark.parametrize(
    "make",
    [
        lambda t: ClipFrameScorer(t),
        lambda t: ClipWindowScorer(t, 5),
        lambda t: ClipWindowScorer(t, 1),
        lambda t: ClipEMAScorer(t, 0.4),
    ],
)
def test_batch_equals_step_by_step_and_reset(make):
    text = _text()
    embs = np.random.default_rng(2).normal(size=(23, 16)).astype(np.float32) * np.random.default_rng(3).uniform(
        0.1, 10, size=(23, 1)
    ).astype(np.float32)
    s = make(text)
    stepped = np.stack([s.step(e) for e in embs])
    s.reset()
    whole = s.step_many(embs)
    s.reset()
    chunked = np.concatenate([s.step_many(embs[a:b]) for a, b in [(0, 3), (3, 4), (4, 17), (17, 23)]])
    np.testing.assert_allclose(whole, stepped, atol=1e-6)
    np.testing.assert_allclose(chunked, stepped, atol=1e-6)
    # Causality: a stream cut after frame t scores frames 0..t exactly as the full stream did.
    s.reset()
    np.testing.assert_allclose(s.step_many(embs[:9]), stepped[:9], atol=1e-6)


def test_window_and_ema_definitions():
    text = _text()
    embs = np.random.default_rng(4).normal(size=(10, 16)).astype(np.float32)
    n = _norm(embs)

    def probs_of(q):
        z = 100.0 * _norm(q) @ text.T
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    win = ClipWindowScorer(text, 3).step_many(embs)
    for t in range(10):
        np.testing.assert_allclose(win[t], probs_of(n[max(0, t - 2) : t + 1].mean(0)), atol=1e-5)
    ema = ClipEMAScorer(text, 0.25).step_many(embs)
    m = n[0]
    for t in range(10):
        m = n[0] if t == 0 else 0.25 * n[t] + 0.75 * m
        np.testing.assert_allclose(ema[t], probs_of(m), atol=1e-5)


def test_build_scorer_options_and_ovoad(clip_model, monkeypatch, tmp_path):
    s = build_scorer("clip-window", clip_model, CLASSES, [], "background", window=4)
    assert isinstance(s, ClipWindowScorer) and s.window == 4 and s.num_classes == 3
    with pytest.raises(WtalError, match="unknown online model"):
        build_scorer("clip-nope", clip_model, CLASSES, [], "background")
    with pytest.raises(WtalError, match="does not apply"):
        build_scorer("clip-frame", clip_model, CLASSES, [], "background", window=3)
    with pytest.raises(WtalError, match="no classes"):
        build_scorer("clip-frame", clip_model, [], [], "background")
    with pytest.raises(WtalError, match="also a class"):
        build_scorer("clip-frame", clip_model, ["background"], [], "background")

    ckpt = tmp_path / "ovoad.pt"
    ckpt.write_bytes(b"x")
    with pytest.raises(WtalError, match="not a readable OV-OAD checkpoint"):
        build_scorer("ovoad", clip_model, CLASSES, [], "background", checkpoint=str(ckpt))


# ----------------------------------------------------------------------------- segments


def test_hysteresis_segments_on_hand_made_scores():
    #            t:   0    1    2    3    4    5    6    7    8    9
    a = np.array([0.1, 0.6, 0.4, 0.35, 0.2, 0.7, 0.9, 0.31, 0.29, 0.1])
    b = np.array([0.0, 0.0, 0.0, 0.55, 0.5, 0.1, 0.0, 0.0, 0.6, 0.8])
    times = np.arange(10) * 0.5
    seg = HysteresisSegmenter(["a", "b"], 0.5, start_threshold=0.5, stop_threshold=0.3)
    closed_at = {}
    for i, t in enumerate(times):
        for s in seg.push(t, np.array([a[i], b[i]])):
            closed_at[(s.label, s.start)] = i
    tail = seg.flush()
    # a: opens at frame 1 (0.6), 0.4/0.35 stay above stop, closes at frame 4 (0.2 < 0.3).
    #    reopens at 5, 0.31 holds, closes at frame 8 (0.29).
    # b: opens at 3, closes at 5; opens at 8, still open at the end -> closed at the last frame's end.
    assert closed_at == {("a", 0.5): 4, ("b", 1.5): 5, ("a", 2.5): 8}
    assert tail == [Segment("b", 4.0, 5.0, pytest.approx(0.7))]
    all_segs = segments_from_scores(times, np.stack([a, b], 1), ["a", "b"], 0.5)
    assert [(s.label, s.start, s.end) for s in all_segs] == [
        ("a", 0.5, 2.0),
        ("b", 1.5, 2.5),
        ("a", 2.5, 4.0),
        ("b", 4.0, 5.0),
    ]
    assert all_segs[0].score == pytest.approx(np.mean([0.6, 0.4, 0.35]))
    # min_length drops the short ones (b at 1.5-2.5 lasts 1.0 s).
    long_only = segments_from_scores(times, np.stack([a, b], 1), ["a", "b"], 0.5, min_length=1.5)
    assert [(s.label, s.start) for s in long_only] == [("a", 0.5), ("a", 2.5)]
    with pytest.raises(WtalError):
        HysteresisSegmenter(["a"], 0.5, start_threshold=0.3, stop_threshold=0.5)


# ----------------------------------------------------------------------------- CLI: feature files


def test_feature_file_causality_and_format(cli, clip_path, tmp_path):
    feats = np.random.default_rng(5).normal(size=(20, 32)).astype(np.float32)
    full = write_features(tmp_path / "full" / "vlp", feats, fps=4.0)
    cut = write_features(tmp_path / "cut" / "vlp", feats[:11], fps=4.0)
    for model in (["--model", "clip-window", "--window", "4"], ["--model", "clip-ema"]):
        args = ["--clip", str(clip_path), "--classes", ", ".join(CLASSES), *model, "--batch", "7"]
        r1 = invoke(cli, ["online", str(full), *args, "--output", str(tmp_path / "full.jsonl"), "--overwrite"])
        assert r1.exit_code == 0, r1.output
        r2 = invoke(cli, ["online", str(cut), *args, "--batch", "1"])
        assert r2.exit_code == 0, r2.output
        full_lines = read_lines((tmp_path / "full.jsonl").read_text())
        cut_lines = read_lines(r2.stdout)
        assert len(full_lines) == 20 and len(cut_lines) == 11
        for a, b in zip(full_lines, cut_lines):
            assert a["frame"] == b["frame"] and a["t"] == b["t"] and a["top"] == b["top"]
            np.testing.assert_allclose(
                [a["scores"][c] for c in CLASSES], [b["scores"][c] for c in CLASSES], rtol=1e-5, atol=1e-7
            )
        for i, rec in enumerate(full_lines):
            assert set(rec) == {"video", "frame", "t", "top", "scores"}
            assert rec["video"] == "vid" and rec["frame"] == i and rec["t"] == pytest.approx(i * 0.25)
            assert list(rec["scores"]) == CLASSES and "background" not in rec["scores"]
            assert rec["top"] in CLASSES + ["background"]
            assert 0 < sum(rec["scores"].values()) <= 1 + 1e-5


def test_feature_file_without_meta_needs_feature_fps(cli, clip_path, tmp_path):
    feats = np.random.default_rng(6).normal(size=(6, 32)).astype(np.float32)
    path = write_features(tmp_path / "loose", feats, with_meta=False)
    args = ["online", str(path), "--clip", str(clip_path), "--classes", "a, b"]
    r = invoke(cli, args)
    assert r.exit_code != 0 and "--feature-fps" in r.output and "Traceback" not in r.output
    r = invoke(
        cli,
        args
        + [
            "--feature-fps",
            "2",
            "--video-name",
            "cam1",
            "--segments",
            "--start-threshold",
            "0.0",
            "--stop-threshold",
            "0.0",
        ],
    )
    assert r.exit_code == 0, r.output
    segs = read_lines(r.stdout)
    # Thresholds 0 keep every class open for the whole stream: one segment each, closed at the end.
    assert sorted(s["label"] for s in segs) == ["a", "b"]
    for s in segs:
        assert s["video"] == "cam1" and s["start"] == 0.0 and s["end"] == pytest.approx(3.0) and 0 < s["score"] < 1


def test_one_line_errors(cli, clip_path, tmp_path):
    good = write_features(tmp_path / "vlp", np.zeros((4, 32), np.float32) + 1.0)
    wrong_dim = write_features(tmp_path / "vlp64", np.ones((4, 64), np.float32))
    cases = [
        (["online", str(tmp_path / "missing.mp4"), "--classes", "a"], "not found"),
        (["online", str(tmp_path / "missing.npy"), "--classes", "a"], "not found"),
        (["online", str(good), "--classes", " , ,", "--clip", str(clip_path)], "--classes is empty"),
        (["online", str(good), "--clip", str(clip_path)], "no classes given"),
        (["online", str(wrong_dim), "--classes", "a", "--clip", str(clip_path)], "dimension 64"),
        (["online", str(good), "--classes", "a, a", "--clip", str(clip_path)], "given twice"),
        (["online", str(good), "--classes", "a", "--clip", str(tmp_path / "nope.pt")], "CLIP model"),
        (["online", str(good), "--classes", "a", "--clip", str(clip_path), "--template", "no slot"], "placeholder"),
        (["online", str(good), "--classes", "a", "--model", "ovoad"], "--checkpoint"),
        (["online", str(good), "--classes", "a", "--start-threshold", "0.2"], "stop-threshold"),
    ]
    for args, msg in cases:
        out = tmp_path / "o.jsonl"
        r = invoke(cli, args + ["--output", str(out)])
        assert r.exit_code != 0, (args, r.output)
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error:") and msg in lines[0], (args, r.output)
        assert "Traceback" not in r.output
        assert not out.exists() and not list(tmp_path.glob(".o.jsonl*"))  # no partial output


# ----------------------------------------------------------------------------- CLI: video


def test_streaming_video_run(cli, clip_path, tmp_path):
    video = write_video(tmp_path / "clip.mp4", seconds=3.0)
    r = invoke(
        cli,
        [
            "online",
            str(video),
            "--clip",
            str(clip_path),
            "--classes",
            ", ".join(CLASSES),
            "--template",
            "A photo of action {}.",
            "--template",
            "a video of {}",
            "--model",
            "clip-window",
        ],
    )
    assert r.exit_code == 0, r.output
    lines = read_lines(r.stdout)
    assert len(lines) == 12  # 3 s at 4 fps
    ts = [rec["t"] for rec in lines]
    assert ts == pytest.approx([i / 4 for i in range(12)])
    assert all(b > a for a, b in zip(ts, ts[1:]))
    for i, rec in enumerate(lines):
        assert rec["video"] == "clip" and rec["frame"] == i
        assert list(rec["scores"]) == CLASSES and rec["top"] in CLASSES + ["background"]
    # Not every frame scores alike: the encoder sees the changing content.
    assert len({tuple(rec["scores"].values()) for rec in lines}) > 1


def test_video_causality(cli, clip_path, tmp_path):
    # Intra-only (MJPEG) files decode the shared first 2 s identically whatever follows.
    full = write_video(tmp_path / "full.avi", seconds=3.0, codec="mjpeg")
    cut = write_video(tmp_path / "cut.avi", seconds=2.0, codec="mjpeg")
    args = ["--clip", str(clip_path), "--classes", ", ".join(CLASSES), "--model", "clip-ema", "--fps", "5"]
    a = read_lines(invoke(cli, ["online", str(full), *args]).stdout)
    b = read_lines(invoke(cli, ["online", str(cut), *args, "--batch", "3"]).stdout)
    assert len(a) == 15 and len(b) == 10
    for x, y in zip(a, b):
        assert x["t"] == y["t"]
        np.testing.assert_allclose(list(x["scores"].values()), list(y["scores"].values()), rtol=1e-4, atol=1e-6)


def test_realtime_pacing_and_latency(cli, clip_path, tmp_path):
    feats = np.random.default_rng(7).normal(size=(8, 32)).astype(np.float32)
    path = write_features(tmp_path / "vlp", feats, fps=16.0)
    r = invoke(
        cli,
        [
            "online",
            str(path),
            "--clip",
            str(clip_path),
            "--classes",
            "a, b",
            "--realtime",
            "--output",
            str(tmp_path / "rt.jsonl"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "latency p50" in r.stderr and "p95" in r.stderr
    assert len(read_lines((tmp_path / "rt.jsonl").read_text())) == 8

    from wtalkit.online.runner import run_online

    buf = io.StringIO()
    s = run_online(path, ["a", "b"], clip=str(clip_path), realtime=True, stdout=buf)
    assert s.frames == 8 and s.wall_s >= 7 / 16 - 1e-3  # frame 7 not before 7/16 s
    assert 0 <= s.latency_p50_s <= s.latency_p95_s <= s.latency_max_s


def test_live_view_renders(clip_path, tmp_path):
    from rich.console import Console

    from wtalkit.online.runner import run_online

    path = write_features(tmp_path / "vlp", np.random.default_rng(8).normal(size=(5, 32)).astype(np.float32))
    buf = io.StringIO()
    con = Console(file=buf, force_terminal=True, width=100)
    s = run_online(
        path,
        CLASSES,
        clip=str(clip_path),
        live=True,
        console=con,
        segments=True,
        start_threshold=0.0,
        stop_threshold=0.0,
    )
    text = buf.getvalue()
    assert s.frames == 5 and s.segments == 3
    assert "high jump" in text and "t =" in text


def test_cli_module_does_not_import_torch():
    code = "import sys, wtalkit.cli.online; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_ovoad_model_through_the_online_pipeline(cli, clip_path, clip_model, tmp_path):
    """A (random) OV-OAD checkpoint plugs into the scorer factory; its stream is causal too."""
    import torch

    from wtalkit.models import ovoad

    cfg = ovoad.OVOADConfig(
        embed_dim=32,
        width=32,
        heads=2,
        window=8,
        neighbours=4,
        decoder_layers=1,
        num_groups=4,
        cluster_layers=1,
        group_layers=0,
    )
    torch.manual_seed(0)
    ckpt = tmp_path / "ovoad.pt"
    torch.save(ovoad.checkpoint_dict(ovoad.OVOAD(cfg), str(clip_path), ovoad.clip_probe(clip_model)), ckpt)
    feats = np.random.default_rng(9).normal(size=(14, 32)).astype(np.float32)
    full = write_features(tmp_path / "a" / "vlp", feats)
    cut = write_features(tmp_path / "b" / "vlp", feats[:6])
    args = ["--clip", str(clip_path), "--classes", "a, b", "--model", "ovoad", "--checkpoint", str(ckpt)]
    r1, r2 = invoke(cli, ["online", str(full), *args]), invoke(cli, ["online", str(cut), *args])
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    a, b = read_lines(r1.stdout), read_lines(r2.stdout)
    assert len(a) == 14 and len(b) == 6
    for x, y in zip(a, b):
        assert list(x["scores"]) == ["a", "b"] and x["top"] in ("a", "b", "background")
        np.testing.assert_allclose(list(x["scores"].values()), list(y["scores"].values()), rtol=1e-5, atol=1e-7)


def test_a_model_trained_at_one_rate_gets_its_rate():
    """OV-OAD's windows span a fixed number of frames: a video at another --fps is refused, features regridded."""
    from types import SimpleNamespace

    from wtalkit.online.runner import on_model_grid
    from wtalkit.online.stream import EmbeddingSource
    from wtalkit.timeaxis import SnippetGrid

    opened = []
    video = EmbeddingSource(
        "v", "video", SnippetGrid(8.0, 1, 1), 4, lambda b: iter(()), _regrid=lambda g: opened.append(g) or g
    )
    model = SimpleNamespace(fps=4.0)
    with pytest.raises(WtalError, match="--fps 8: this model scores frames at 4 fps"):
        on_model_grid(video, model, 8.0)
    assert on_model_grid(video, model, None) == SnippetGrid(4.0, 1, 1) and opened == [SnippetGrid(4.0, 1, 1)]
    assert on_model_grid(video, SimpleNamespace(), 8.0) is video  # CLIP baselines: any rate
