"""``wtalkit extract --ray``: distributed extraction on a local Ray cluster, and per-frame progress.

The cluster is started here (2 CPUs, no dashboard) and reused by every Ray
test; ``extract_dataset``/the CLI find it connected and leave it running.
Videos are tiny synthetic H.264 files, the encoder a tiny random CLIP, so the
module runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from videos import coded_frames, colour_frames, corrupt_copy, ramp_frames, write_video

from tests.cli_helpers import assert_one_line_error, run_cli

pytest.importorskip("torch")
pytest.importorskip("av")
pytest.importorskip("decord")

ROOT = Path(__file__).resolve().parents[1]
RED, BLUE = (255, 0, 0), (0, 0, 255)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from wtalkit.models.clip import save_random_clip

    root = tmp_path_factory.mktemp("extract_ray")
    v = root / "videos"
    a = {"root": root, "clip": save_random_clip(root / "models" / "clip_tiny.pt", "tiny")}
    a["good"] = [
        write_video(v / "c25.mp4", colour_frames([RED, BLUE], [48, 52]), fps=25),
        write_video(v / "c30.mp4", colour_frames([RED, BLUE], [58, 62]), fps=30),
        write_video(v / "code25.mp4", coded_frames(100), fps=25),
        write_video(v / "ramp.mp4", ramp_frames(70), fps=25),
    ]
    (root / "bad").mkdir()
    a["corrupt"] = corrupt_copy(a["good"][2], root / "bad" / "corrupt.mp4")
    # 80 s at 5 fps: 2000 frames on the 25 fps grid, 125 snippets, 4 batches of 32 centre frames
    a["long"] = write_video(root / "long" / "long.mp4", ramp_frames(400, seed=3), fps=5)
    return a


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster for this module (the workers import wtalkit from this checkout)."""
    ray = pytest.importorskip("ray")
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    ray.init(
        address="local",  # a new cluster, whatever `ray start` left on this machine
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    yield ray
    ray.shutdown()


def vlp(assets):
    from wtalkit.extract.pipeline import vlp_spec

    return {"vlp": vlp_spec(str(assets["clip"]))}


def files(ds: Path) -> dict:
    """Every file of a dataset folder by relative path, with its bytes."""
    return {str(p.relative_to(ds)): p.read_bytes() for p in sorted(ds.rglob("*")) if p.is_file()}


def cli_args(assets, videos, ds, *extra):
    return ["extract", *videos, "-o", ds, "--streams", "vlp", "--clip", assets["clip"], "--device", "cpu", *extra]


# --------------------------------------------------------------------------- Ray


def test_ray_output_is_bit_identical_to_local(assets, cluster, tmp_path, monkeypatch):
    """Same files, same bytes (features, meta.json, annotations.json), same summary rows, the failure included.

    Videos and weights are given by relative paths: the workers do not share the driver's folder.
    """
    from wtalkit.extract.dataset import extract_dataset
    from wtalkit.extract.pipeline import vlp_spec

    monkeypatch.chdir(assets["root"])
    videos = [os.path.relpath(v, assets["root"]) for v in [*assets["good"], assets["corrupt"]]]
    clip = os.path.relpath(assets["clip"], assets["root"])
    local = extract_dataset(videos, tmp_path / "local", {"vlp": vlp_spec(clip)})
    args = ["extract", *videos, "-o", tmp_path / "ray", "--streams", "vlp", "--clip", clip, "--device", "cpu"]
    res = run_cli([*args, "--ray", "auto", "--ray-cpus", "1", "--json"])
    line = assert_one_line_error(res)  # the corrupt video: exit 1, one line, the table on stderr
    assert "1 of 5 videos failed" in line and "corrupt" in res.stderr
    rows = json.loads(res.stdout)["results"]
    assert [(r["name"], r["status"], r["snippets"]) for r in rows] == [
        (r.name, r.status, r.snippets) for r in local.results
    ], res.stderr
    assert [r["status"] for r in rows] == ["done"] * 4 + ["failed"]
    # the same message as a local failure (where decord gives up inside the corrupt file varies from run to run)
    assert rows[-1]["error"].startswith(f"{videos[-1]}: cannot decode") and rows[-1]["path"] == videos[-1]
    assert local.results[-1].error.startswith(f"{videos[-1]}: cannot decode")
    got, want = files(tmp_path / "ray"), files(tmp_path / "local")
    assert (
        sorted(got)
        == sorted(want)
        == [
            "annotations.json",
            "features/vlp/c25.npy",
            "features/vlp/c30.npy",
            "features/vlp/code25.npy",
            "features/vlp/meta.json",
            "features/vlp/ramp.npy",
        ]
    )
    for name in want:
        assert got[name] == want[name], name
    assert cluster.is_initialized()  # a caller's connection is left open


def test_ray_resumes_after_interruption(assets, cluster, tmp_path):
    """Interrupted after the first committed video, with tasks in flight: re-running finishes it, identically."""
    from wtalkit.extract.dataset import extract_dataset
    from wtalkit.extract.progress import ExtractProgress

    videos = assets["good"]
    clean = tmp_path / "clean"
    extract_dataset(videos, clean, vlp(assets))

    class StopAfterFirst(ExtractProgress):
        def video_end(self, result):
            raise KeyboardInterrupt

    ds = tmp_path / "ds"
    with pytest.raises(KeyboardInterrupt):
        extract_dataset(videos, ds, vlp(assets), progress=StopAfterFirst(), ray="auto", ray_cpus=1)
    done = sorted(p.name for p in (ds / "features" / "vlp").glob("*.npy"))
    assert len(done) == 1  # the driver commits; the cancelled tasks wrote nothing
    (ds / "features" / "vlp" / ".ramp.npy.abc123.tmp").write_bytes(b"\x93NUMPY partial")  # a killed write
    s = extract_dataset(videos, ds, vlp(assets), ray="auto", ray_cpus=1)
    assert sorted(r.status for r in s.results) == ["done", "done", "done", "skipped"]
    assert [r.name for r in s.skipped] == [done[0][: -len(".npy")]]
    got, want = files(ds), files(clean)
    assert sorted(got) == sorted(want)
    for name in want:
        if name != "annotations.json":  # its order of videos follows the runs that added them
            assert got[name] == want[name], name
    assert json.loads(got["annotations.json"]) == json.loads(want["annotations.json"])
    # a third run has nothing to do
    s = extract_dataset(videos, ds, vlp(assets), ray="auto", ray_cpus=1)
    assert [r.status for r in s.results] == ["skipped"] * 4


def test_ray_reports_progress_and_checks_resources(assets, cluster, tmp_path):
    from wtalkit.errors import WtalError
    from wtalkit.extract.dataset import extract_dataset
    from wtalkit.extract.progress import ExtractProgress

    class Recorder(ExtractProgress):
        def __init__(self):
            self.ended, self.frames = [], 0.0

        def advance(self, frames):
            self.frames += frames

        def video_end(self, result):
            self.ended.append((result.name, result.status))

    rec = Recorder()
    s = extract_dataset([assets["long"]], tmp_path / "ds", vlp(assets), progress=rec, ray="auto")
    assert rec.ended == [("long", "done")] and s.results[0].snippets == 125
    assert rec.frames == pytest.approx(2000)  # reported by the worker, or counted when its result came
    # a task no node can run, a GPU the cluster does not have: errors before anything is written
    for kw, msg in (
        ({"ray_cpus": 64}, "no node of the Ray cluster has 64 CPUs"),
        ({"device": "cuda"}, "the Ray cluster has no GPU"),
        ({"device": "cuda:1"}, "use --device cuda"),
        ({"ray_gpus": 1}, "--ray-gpus needs --device cuda"),
    ):
        with pytest.raises(WtalError, match=msg):
            extract_dataset([assets["long"]], tmp_path / "no", vlp(assets), ray="auto", **kw)
        assert not (tmp_path / "no").exists()


# --------------------------------------------------------------------------- errors without a cluster


@pytest.mark.parametrize(
    "extra,expected",
    [
        (["--ray", "auto", "--workers", "2"], "--workers is for local extraction"),
        (["--ray-cpus", "2"], "only apply with --ray"),
        (["--ray", "not an address"], "expected auto, HOST:PORT"),
        (["--ray", "ftp://host:21"], "expected auto, HOST:PORT"),
        (["--ray", "127.0.0.1:9"], "no Ray cluster answers there"),
        (["--ray", "auto", "--ray-cpus", "0"], "--ray-cpus must be > 0"),
    ],
)
def test_ray_bad_options(assets, tmp_path, monkeypatch, extra, expected):
    ray = pytest.importorskip("ray")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as if no connection were open
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("ray.init called"))
    res = run_cli(cli_args(assets, assets["good"][:1], tmp_path / "ds", *extra))
    assert expected in assert_one_line_error(res)
    assert not (tmp_path / "ds").exists()


def test_ray_not_installed(assets, tmp_path, monkeypatch):
    """Without the extra: one line saying what to install, exit 1, no traceback, nothing written."""
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    res = run_cli(cli_args(assets, assets["good"][:1], tmp_path / "ds", "--ray"))
    line = assert_one_line_error(res)
    assert res.exit_code == 1 and "pip install 'wtalkit[ray]'" in line
    assert not (tmp_path / "ds").exists()
    # importing wtalkit (and running extract locally) never needs Ray
    res = run_cli(cli_args(assets, assets["good"][:1], tmp_path / "ds"))
    assert res.exit_code == 0, res.output


# --------------------------------------------------------------------------- per-frame progress (local)


def test_progress_counts_frames_inside_a_long_video(assets, tmp_path):
    """One long video: its length, then increasing frame counts up to it, before it ends."""
    from wtalkit.extract.dataset import extract_dataset
    from wtalkit.extract.progress import ExtractProgress

    class Recorder(ExtractProgress):
        def __init__(self):
            self.events = []

        def video_start(self, name):
            self.events.append(("start", name, 0))

        def video_length(self, name, frames):
            self.events.append(("length", name, frames))

        def video_advance(self, name, frames):
            self.events.append(("advance", name, frames))

        def video_end(self, result):
            self.events.append(("end", result.name, result.frames))

    for workers in (1, 2):
        rec = Recorder()
        extract_dataset(
            [assets["long"], assets["good"][0]], tmp_path / f"w{workers}", vlp(assets), workers=workers, progress=rec
        )
        long = [e for e in rec.events if e[1] == "long"]
        assert long[0] == ("start", "long", 0) and long[1] == ("length", "long", 2000)
        steps = [f for kind, _, f in long if kind == "advance"]
        assert len(steps) >= 3 and all(f > 0 for f in steps)  # several updates inside the one video
        done = np.cumsum(steps)
        assert np.all(np.diff(done) > 0) and done[-1] == pytest.approx(2000)
        assert long[-1] == ("end", "long", pytest.approx(2000))


def test_rich_progress_moves_inside_a_video():
    """The videos line counts a video in flight by its frames (so its ETA moves); a line per video shows frames."""
    from io import StringIO

    from rich.console import Console

    from wtalkit.extract.pipeline import VideoResult
    from wtalkit.extract.progress import RichExtractProgress

    p = RichExtractProgress(Console(file=StringIO(), width=120))
    p.start(2, 2)
    main = p._progress.tasks[0]
    p.video_start("a")
    p.video_length("a", 400)
    p.video_advance("a", 100)
    p.video_advance("a", 100)
    assert main.completed == pytest.approx(0.5) and main.fields["unit"] == "videos"
    row = p._progress.tasks[1]
    assert (row.completed, row.total, row.fields["unit"]) == (200, 400, "frames")
    p.video_advance("a", 400)  # more than announced: never a whole video before it ends
    assert main.completed == pytest.approx(0.99)
    p.video_end(VideoResult("a", "a.mp4", "done"))
    assert main.completed == 1 and len(p._progress.tasks) == 1  # whole: the bar reads 1/2, not 0/2
    p.video_end(VideoResult("b", "b.mp4", "failed"))  # ended without reports (e.g. from Ray)
    assert main.completed == 2
    p.close()


def test_auto_finds_no_live_cluster_and_starts_one(monkeypatch):
    """``--ray auto`` with a cluster recorded on this machine that is gone (head killed): start one, don't hang."""
    ray = pytest.importorskip("ray")
    services = pytest.importorskip("ray._private.services")
    from wtalkit.errors import WtalError
    from wtalkit.extract.distributed import _auto_address

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(services, "get_ray_address_from_environment", lambda *a: "127.0.0.1:9")
    assert _auto_address(ray) == "local"
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")
    with pytest.raises(WtalError, match="RAY_ADDRESS=127.0.0.1:9, where no Ray cluster answers"):
        _auto_address(ray)

    def none(*a):
        raise ConnectionError("Could not find any running Ray instance.")

    monkeypatch.setattr(services, "get_ray_address_from_environment", none)
    assert _auto_address(ray) == "local"
