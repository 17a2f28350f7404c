"""OV-OAD: model shapes and causality, slot attention, losses, training, checkpoints, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from wtalkit.errors import WtalError
from wtalkit.models.ovoad import (
    OVOAD,
    OVOADConfig,
    SlotAttention,
    checkpoint_dict,
    load_ovoad,
    make_windows,
    score_frames,
)
from wtalkit.online.scorers import build_ovoad_scorer
from wtalkit.train.ovoad import (
    batch_windows,
    dice_loss,
    load_frame_table,
    load_run_config,
    multi_positive_infonce,
    ovoad_losses,
    resample_to_grid,
)

D = 32  # the tiny CLIP's embedding size

SMALL = dict(
    embed_dim=D, width=32, heads=2, decoder_layers=2, num_groups=4, cluster_layers=1, group_layers=1, dropout=0.0
)


def small_model(seed=0, **kw) -> OVOAD:
    torch.manual_seed(seed)
    model = OVOAD(OVOADConfig(**{**SMALL, **kw})).eval()
    # Start from a non-trivial point: the residual heads' last layers and the visual adapter
    # start at zero / identity, which would hide learned paths from the causality checks.
    with torch.no_grad():
        if model.cfg.head == "residual":
            for head in (model.frame_head, model.group_head):
                head.mlp[-1].weight.normal_(0, 0.5)
        if model.visual_adapter is not None:
            model.visual_adapter.weight.add_(torch.randn(D, D) * 0.3)
    return model


HEADS = ["pool", "residual", "projection"]


@pytest.fixture(scope="module")
def clip_model(tiny_clip_path):
    from wtalkit.models.clip import load_clip

    return load_clip(str(tiny_clip_path))


@pytest.fixture(scope="module")
def oad_data(tmp_path_factory, clip_model):
    """A small zero-shot pair (seen / unseen vocabularies) at 4 fps."""
    from wtalkit.data.synthetic_oad import WorldSpec, build_zero_shot_pair
    from wtalkit.models.clip import clip_embed_dim, encode_class_prompts

    root = tmp_path_factory.mktemp("oad")
    spec = WorldSpec(video_s=(40.0, 60.0))
    text = lambda names: encode_class_prompts(clip_model, names, ["a video of a person doing {}."]).numpy()
    return build_zero_shot_pair(
        root,
        text,
        clip_embed_dim(clip_model),
        seed=0,
        n_train=8,
        n_test=3,
        spec=spec,
        seen=["archery", "bowling", "boxing", "fencing"],
        unseen=["golf swing", "pole vault"],
    )


# ----------------------------------------------------------------------------- model


@pytest.mark.parametrize("head", HEADS)
def test_forward_shapes_and_assignment_over_groups(head):
    model = small_model(head=head)
    x = torch.randn(3, 32, D)
    out = model(x)
    G, N = model.cfg.num_groups, model.cfg.neighbours
    assert out["frame_emb"].shape == (3, N, D) and out["current_emb"].shape == (3, D)
    assert out["group_emb"].shape == (3, G, D) and out["current_group_emb"].shape == (3, D)
    assert out["assign"].shape == (3, G, 32) and out["bg_mask"].shape == (3, 32)
    torch.testing.assert_close(out["current_emb"].norm(dim=-1), torch.ones(3))
    # The softmax runs over groups: every frame's weights over the groups sum to 1 ...
    torch.testing.assert_close(out["assign"].sum(1), torch.ones(3, 32))
    # ... not over frames.
    assert not torch.allclose(out["assign"].sum(2), torch.ones(3, G))
    text = torch.nn.functional.normalize(torch.randn(5, D), dim=-1)
    p = model.class_probs(out, text)
    assert p.shape == (3, 6) and torch.all(p >= 0)
    torch.testing.assert_close(p.sum(1), torch.ones(3))
    with pytest.raises(WtalError, match="windows of"):
        model(torch.randn(2, 31, D))


def test_slot_attention_softmax_is_over_groups_and_padding_is_not_pooled():
    torch.manual_seed(0)
    slot = SlotAttention(16)
    groups, frames = torch.randn(2, 5, 16), torch.randn(2, 9, 16)
    valid = torch.ones(2, 9, dtype=torch.bool)
    valid[1, :4] = False
    update, assign = slot(groups, frames, valid)
    assert update.shape == (2, 5, 16) and assign.shape == (2, 5, 9)
    torch.testing.assert_close(assign.sum(1), torch.ones(2, 9))
    # Padded frames take no part in the update: changing them changes nothing.
    frames2 = frames.clone()
    frames2[1, :4] += 100.0
    update2, _ = slot(groups, frames2, valid)
    torch.testing.assert_close(update2, update)


@pytest.mark.parametrize("head", HEADS)
def test_neighbouring_tokens_are_causal_within_a_window(head):
    model = small_model(head=head)
    x = torch.randn(2, 32, D)
    base = model(x)["frame_emb"]
    Wd = model.distant
    for t in range(model.cfg.neighbours - 1):  # neighbour index t = window position Wd + t
        y = x.clone()
        y[:, Wd + t + 1 :] = torch.randn_like(y[:, Wd + t + 1 :])
        out = model(y)["frame_emb"]
        torch.testing.assert_close(out[:, : t + 1], base[:, : t + 1], rtol=0, atol=1e-6)
        assert not torch.allclose(out[:, t + 1 :], base[:, t + 1 :], atol=1e-4)  # later tokens do change
    # The distant past is seen: changing it changes the current token.
    y = x.clone()
    y[:, :Wd] = torch.randn_like(y[:, :Wd])
    assert not torch.allclose(model(y)["current_emb"], base[:, -1], atol=1e-4)


@pytest.mark.parametrize("head", ["pool", "residual"])
def test_streaming_scorer_is_causal_and_matches_batched_scoring(head):
    from wtalkit.online.scorers import OVOADScorer

    model = small_model(head=head)
    text = torch.nn.functional.normalize(torch.randn(3, D), dim=-1)
    feats = np.random.default_rng(0).normal(size=(45, D)).astype(np.float32)
    s = OVOADScorer(small_model(head=head), text, ["a", "b", "c"])
    stepped = np.stack([s.step(f) for f in feats])
    assert stepped.shape == (45, 4)
    np.testing.assert_allclose(stepped.sum(1), 1.0, atol=1e-5)
    s.reset()
    chunked = np.concatenate([s.step_many(feats[a:b]) for a, b in [(0, 5), (5, 6), (6, 40), (40, 45)]])
    np.testing.assert_allclose(chunked, stepped, rtol=1e-6, atol=1e-9)
    # Changing a future frame does not change the current frame's score.
    t = 20
    changed = feats.copy()
    changed[t + 1 :] = np.random.default_rng(1).normal(size=changed[t + 1 :].shape)
    s.reset()
    whole = s.step_many(feats)
    s.reset()
    other = s.step_many(changed)  # same chunking as ``whole``: identical arithmetic up to frame t
    np.testing.assert_array_equal(other[: t + 1], whole[: t + 1])
    assert not np.allclose(other[t + 1 :], whole[t + 1 :])
    # Batched whole-video scoring is the same computation.
    np.testing.assert_allclose(score_frames(model, feats, text), stepped, atol=1e-5)
    with pytest.raises(WtalError, match="embeddings must be"):
        s.step(np.zeros(D + 1))


def test_windows_are_left_padded_with_a_mask():
    feats = torch.arange(10, dtype=torch.float32)[:, None].repeat(1, 2) + 1
    x, v = make_windows(feats, [0, 3, 9], 4)
    assert x.shape == (3, 4, 2)
    assert v.tolist() == [[False, False, False, True], [True] * 4, [True] * 4]
    assert x[0, :, 0].tolist() == [0, 0, 0, 1] and x[1, :, 0].tolist() == [1, 2, 3, 4]
    # A window over padding only in the distant past / neighbours still gives finite scores.
    model = small_model()
    x, v = make_windows(torch.randn(1, D), [0], 32)
    out = model(x, v)
    assert all(torch.isfinite(t).all() for t in out.values() if t.dtype.is_floating_point)


# ----------------------------------------------------------------------------- losses


def test_dice_loss_known_values():
    pred = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    target = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    # 1 - (2 * 1 + 1) / (2 + 1 + 1) = 0.25
    assert dice_loss(pred, target).item() == pytest.approx(0.25)
    assert dice_loss(target, target).item() == pytest.approx(0.0)
    # Invalid (padded) frames are ignored: masking the false positive gives a perfect match.
    valid = torch.tensor([[True, False, True, True]])
    assert dice_loss(pred, target, valid).item() == pytest.approx(0.0)
    # Disjoint masks: 1 - 1 / (2 + 2 + 1).
    assert dice_loss(
        torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    ).item() == pytest.approx(0.8)


def test_multi_positive_infonce():
    v = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1)
    t = v.clone()
    pos = torch.eye(2, dtype=torch.bool)
    good = multi_positive_infonce(v, t, pos, 10.0)
    bad = multi_positive_infonce(v, t, ~pos, 10.0)
    assert good.item() < 0.01 < bad.item()
    # Two positives for one row: -log(sum of their probabilities) = 0 when they are all the captions.
    assert multi_positive_infonce(v[:1], t, torch.ones(1, 2, dtype=torch.bool), 10.0).item() == pytest.approx(0.0)


# ----------------------------------------------------------------------------- data


def test_resample_to_grid_takes_the_snippet_owning_each_centre():
    from wtalkit.timeaxis import SnippetGrid

    feats = np.arange(40, dtype=np.float32)[:, None]
    out = resample_to_grid(feats, SnippetGrid(8.0, 1, 1))  # 5 s at 8 fps -> 20 frames at 4 fps
    assert out[:, 0].tolist() == [2 * k + 1 for k in range(20)]
    # I3D-like 25 fps / 16-frame snippets: 0.64 s each; 10 snippets = 6.4 s -> 25 frames.
    out = resample_to_grid(np.arange(10, dtype=np.float32)[:, None], SnippetGrid(25.0, 16, 16))
    assert len(out) == 25 and out[0, 0] == 0 and out[-1, 0] == 9
    same = resample_to_grid(feats, SnippetGrid(4.0, 1, 1))
    np.testing.assert_array_equal(same, feats)


def test_training_batches_label_the_current_frame_and_background(oad_data):
    table = load_frame_table(oad_data[0], "train")
    rows = np.arange(0, table.num_frames, 37)
    x, valid, labels, bg = batch_windows(table, rows, 32)
    assert x.shape == (len(rows), 32, D) and labels.shape == (len(rows), 4)
    # The last frame of each window is the current frame; its background flag matches its labels.
    assert torch.equal(bg[:, -1], ~labels.any(1))
    assert not bg[~valid].any()
    for i, r in enumerate(rows[:5]):  # the same windows as the streaming scorer's
        v, e = table.index[r]
        xw, vw = make_windows(table.feats[v], [e], 32)
        assert torch.equal(x[i], xw[0]) and torch.equal(valid[i], vw[0])
        assert torch.equal(labels[i], table.labels[v][e])


# ----------------------------------------------------------------------------- training + CLI


def _invoke(args):
    from click.testing import CliRunner

    from wtalkit.cli import cli

    if "train-online" not in cli.commands:
        from wtalkit.cli.train_online import register

        register(cli)
    return CliRunner().invoke(cli, args, catch_exceptions=True)


TRAIN_SETS = [
    "model.width=32",
    "model.heads=2",
    "model.decoder_layers=2",
    "model.num_groups=4",
    "model.cluster_layers=1",
    "model.dropout=0.0",
    "train.epochs=4",
    "train.batch_size=64",
    "train.lr=0.002",
    "train.warmup_steps=5",
]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, oad_data, tiny_clip_path):
    run = tmp_path_factory.mktemp("run")
    args = ["train-online", str(oad_data[0]), "-o", str(run), "--clip", str(tiny_clip_path), "--seed", "3"]
    for s in TRAIN_SETS:
        args += ["--set", s]
    r = _invoke(args)
    assert r.exit_code == 0, r.output
    return run


def test_training_lowers_the_loss_and_writes_the_run(trained_run, oad_data, clip_model):
    from wtalkit.models.ovoad import clip_text_templates

    hist = json.loads((trained_run / "history.json").read_text())
    assert len(hist) == 4 and hist[-1]["loss"] < hist[0]["loss"]
    cfg = load_run_config(trained_run / "config.yaml")
    assert cfg.model.embed_dim == D and cfg.model.width == 32 and cfg.train.seed == 3
    assert not list(trained_run.glob("*.tmp")) and not list(trained_run.glob(".*"))
    # The same fixed batch, scored by the initial model (same seed) and by the trained one.
    torch.manual_seed(cfg.train.seed)
    initial = OVOAD(cfg.model).eval()
    trained, ck = load_ovoad(trained_run / "checkpoint.pt")
    table = load_frame_table(oad_data[0], "train")
    x, valid, labels, bg = batch_windows(table, np.arange(0, table.num_frames, 7), 32)
    captions = clip_text_templates(clip_model, table.classes, ck["templates"])
    with torch.no_grad():
        before, after = (ovoad_losses(m, m(x, valid), labels, bg, captions, 0.1, 1.0) for m in (initial, trained))
    assert after["loss"] < 0.8 * before["loss"]
    assert after["vtc"] < before["vtc"] and after["mask"] < 0.5 * before["mask"]


def test_checkpoint_round_trip_and_contents(trained_run, tmp_path):
    model, ck = load_ovoad(trained_run / "checkpoint.pt")
    assert ck["train_classes"] == ["archery", "bowling", "boxing", "fencing"]
    assert ck["templates"] == ["a video of a person doing {}."]
    # Only the trainable OV-OAD weights: no frozen CLIP tensors.
    assert not any(k.startswith(("visual.", "transformer.", "token_embedding")) for k in ck["state_dict"])
    x = torch.randn(4, 32, D)
    out = model(x)
    from wtalkit import io as wio

    wio.save_torch(tmp_path / "again.pt", checkpoint_dict(model, ck["clip"], ck["clip_probe"], {"templates": ["{}"]}))
    again, _ = load_ovoad(tmp_path / "again.pt")
    out2 = again(x)
    for k in out:
        torch.testing.assert_close(out2[k], out[k], rtol=0, atol=0)


def test_training_is_seedable(oad_data, tiny_clip_path, clip_model, tmp_path):
    from wtalkit.train.ovoad import train_ovoad

    cfg = load_run_config(None, TRAIN_SETS + ["train.epochs=1", "train.seed=5"])
    a = train_ovoad(oad_data[0], tmp_path / "a", str(tiny_clip_path), cfg, progress=False, clip_model=clip_model)
    b = train_ovoad(oad_data[0], tmp_path / "b", str(tiny_clip_path), cfg, progress=False, clip_model=clip_model)
    assert a["final"]["loss"] == b["final"]["loss"]


def test_scorer_from_checkpoint_through_build_scorer(trained_run, oad_data, clip_model, tiny_clip_path):
    from wtalkit.data.features import Dataset
    from wtalkit.online.scorers import build_scorer

    test = Dataset(oad_data[1])
    feats = test.stream("vlp").load(test.videos(None)[0].name)
    s = build_scorer("ovoad", clip_model, test.classes, [], "background", checkpoint=str(trained_run / "checkpoint.pt"))
    probs = s.step_many(feats)
    assert probs.shape == (len(feats), 3) and s.num_classes == 2
    # The same as the library's batched whole-video scoring with the checkpoint's templates.
    model, ck = load_ovoad(trained_run / "checkpoint.pt")
    from wtalkit.models.ovoad import clip_text_templates

    with torch.inference_mode():
        text = model.encode_text(clip_text_templates(clip_model, test.classes, ck["templates"]))
    np.testing.assert_allclose(score_frames(model, feats, text), probs, atol=1e-5)
    # Training reached the background mask: background frames get more background probability.
    from wtalkit.train.ovoad import frame_labels

    y = frame_labels(test.videos(None)[0], test.classes, len(feats)).any(1)
    assert probs[~y, -1].mean() > probs[y, -1].mean() + 0.2


def test_online_feeds_ovoad_at_its_trained_rate(trained_run, oad_data, clip_model, tiny_clip_path, tmp_path):
    """A 25 fps / 16-frame feature file is put on the model's 4 fps grid; an explicit other --fps is refused."""
    from wtalkit.data.features import Dataset
    from wtalkit.online.scorers import build_scorer
    from wtalkit.timeaxis import SnippetGrid, regrid_indices

    test = Dataset(oad_data[1])
    four = test.stream("vlp").load(test.videos(None)[0].name)  # 4 fps
    i3d_grid, model_grid = SnippetGrid(25.0, 16, 16), SnippetGrid(4.0, 1, 1)
    slow = four[regrid_indices(model_grid, i3d_grid, len(four))]  # the same video as 25/16 snippets
    folder = tmp_path / "i3d"
    folder.mkdir()
    np.save(folder / "v.npy", slow)
    meta = {"backbone": "clip", "dim": D, "fps": 25.0, "snippet_length": 16, "snippet_stride": 16}
    (folder / "meta.json").write_text(json.dumps(meta))
    ckpt = trained_run / "checkpoint.pt"
    args = ["online", folder / "v.npy", "--model", "ovoad", "--checkpoint", ckpt, "--clip", tiny_clip_path]
    r = _invoke([str(a) for a in args] + ["--classes", ",".join(test.classes)])
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in r.output.splitlines() if x.startswith("{")]
    times = np.array([x["t"] for x in lines])
    expect = regrid_indices(i3d_grid, model_grid, len(slow))
    assert len(times) == len(expect) > 2 * len(slow)  # 4 frames/s, not 1.5625
    np.testing.assert_allclose(np.diff(times), 0.25, atol=1e-6)
    scorer = build_scorer("ovoad", clip_model, test.classes, [], "background", checkpoint=str(ckpt))
    probs = scorer.step_many(slow[expect])
    got = np.array([[x["scores"][c] for c in test.classes] for x in lines])
    np.testing.assert_allclose(got, probs[:, : len(test.classes)], atol=1e-4)


def test_bad_checkpoints_and_mismatched_clip(tmp_path, trained_run, clip_model):
    with pytest.raises(WtalError, match="checkpoint not found"):
        load_ovoad(tmp_path / "missing.pt")
    with pytest.raises(WtalError, match="checkpoint not found"):
        build_ovoad_scorer(tmp_path / "missing.pt", clip_model, ["a"], ["{}"])
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WtalError, match="not a readable OV-OAD checkpoint"):
        load_ovoad(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(WtalError, match="not an OV-OAD checkpoint"):
        load_ovoad(other)
    from wtalkit.models.clip import load_clip, save_random_clip

    wrong = load_clip(str(save_random_clip(tmp_path / "wrong_clip.pt", "tiny", seed=7)))
    with pytest.raises(WtalError, match="different text encoder"):
        build_ovoad_scorer(trained_run / "checkpoint.pt", wrong, ["a"], ["{}"])


def test_config_is_strict():
    with pytest.raises(WtalError, match="unknown config key 'model.widht'"):
        load_run_config(None, ["model.widht=3"])
    with pytest.raises(WtalError, match="expects an integer"):
        load_run_config(None, ["model.num_groups=two"])
    with pytest.raises(WtalError, match="divisible"):
        load_run_config(None, ["model.width=30", "model.heads=4"])
    with pytest.raises(WtalError, match="placeholder"):
        load_run_config(None, ["train.templates=[no placeholder]"])


def test_cli_errors_are_one_line(tmp_path, oad_data, tiny_clip_path, trained_run):
    r = _invoke(["train-online", str(tmp_path / "nope"), "-o", str(tmp_path / "r"), "--clip", str(tiny_clip_path)])
    assert r.exit_code == 1 and "dataset folder not found" in r.output and "Traceback" not in r.output
    r = _invoke(
        [
            "train-online",
            str(oad_data[0]),
            "-o",
            str(tmp_path / "r"),
            "--clip",
            str(tiny_clip_path),
            "--set",
            "model.bogus=1",
        ]
    )
    assert r.exit_code == 1 and "unknown config key 'model.bogus'" in r.output
    r = _invoke(["train-online", str(oad_data[0]), "-o", str(trained_run), "--clip", str(tiny_clip_path)])
    assert r.exit_code == 1 and "--overwrite" in r.output
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_cli_module_does_not_import_torch():
    code = "import sys, wtalkit.cli.train_online; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_train_online_on_a_25fps_dataset(tiny_dataset, tiny_clip_path, tmp_path):
    """vlp features on another grid (25 fps, 32-frame snippets) are resampled to 4 fps by time."""
    from wtalkit.data.features import Dataset
    from wtalkit.train.ovoad import train_ovoad

    ds = Dataset(tiny_dataset)
    grid = ds.stream("vlp").meta.grid
    assert grid.seconds_per_snippet != 0.25
    # Its training videos carry video-level labels only (WTAL): no segments, no captions per frame.
    with pytest.raises(WtalError, match="no videos with temporal annotations"):
        load_frame_table(ds, "train")
    table = load_frame_table(ds, "test")
    vids = [v for v in ds.videos("test", "vlp") if v.has_ground_truth]
    n_src = len(ds.stream("vlp").load(vids[0].name))
    assert len(table.feats[0]) == int(np.floor(grid.to_seconds(n_src) * 4 + 1e-6))
    cfg = load_run_config(None, TRAIN_SETS + ["train.epochs=1", "train.batch_size=16", "train.subset=test"])
    s = train_ovoad(tiny_dataset, tmp_path / "run", str(tiny_clip_path), cfg, progress=False)
    assert s["frames"] == table.num_frames and (tmp_path / "run" / "checkpoint.pt").is_file()
