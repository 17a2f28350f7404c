"""Resume is bit-identical: warm-up, alternate (every schedule) and train-online, interrupted at several points.

An interruption is simulated in-process by making one call raise at a chosen point (inside an epoch,
between a step and its evaluation, between the log line and the resumable checkpoint, between
rounds, before the final file) or by ``stop_after_epochs``; one test kills a real
``python3 -m wtalkit alternate`` with SIGKILL. After the re-run, every tensor of every checkpoint
(weights, optimizer states, RNG states) and every logged record (losses, evaluation rows; wall-clock
``seconds`` aside) is compared with an uninterrupted run with ``torch.equal`` / ``==``.

Also: a resume on another dataset (classes, training videos, feature metadata) or from another
warm-up is a one-line error, and ``warmup --overwrite`` removes what alternate training derived
from the old warm-up.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import wtalkit.io
import wtalkit.models.cbp
import wtalkit.train.alternate
import wtalkit.train.ovoad
import wtalkit.train.warmup
from tests.cli_helpers import assert_one_line_error, run_cli
from tests.conftest import TINY_SETS
from wtalkit.config import load_config
from wtalkit.errors import WtalError
from wtalkit.train.alternate import train_alternate
from wtalkit.train.ovoad import load_run_config, train_ovoad
from wtalkit.train.warmup import train_warmup

COMPARED = {"tensors": 0, "records": 0}


class Crash(Exception):
    """Stands for the process being killed at that point."""


# ----------------------------------------------------------------------------- comparison


def same(a, b, where="", ignore=("seconds",)) -> int:
    """Assert ``a`` and ``b`` are exactly equal (tensors bit for bit); return the number of tensors compared."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
        return 1
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) - set(ignore) == set(b) - set(ignore), where
        return sum(same(a[k], b[k], f"{where}/{k}", ignore) for k in a if k not in ignore)
    if isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        return sum(same(x, y, f"{where}[{i}]", ignore) for i, (x, y) in enumerate(zip(a, b)))
    assert a == b, (where, a, b)
    return 0


def records(run: Path, name="log.jsonl") -> list:
    path = run / name
    if name.endswith(".json"):
        return json.loads(path.read_text())
    return [json.loads(line) for line in path.read_text().splitlines()]


def same_runs(ref: Path, run: Path, files, logs=("log.jsonl",)) -> int:
    """Every tensor of ``files`` and every record of ``logs`` equal in both run folders."""
    n = 0
    for f in files:
        a = torch.load(ref / f, map_location="cpu", weights_only=True)
        b = torch.load(run / f, map_location="cpu", weights_only=True)
        n += same(a, b, f)
    for log in logs:
        a, b = records(ref, log), records(run, log)
        assert len(a) == len(b) and len(a) > 0, (log, a, b)
        same(a, b, log)
        COMPARED["records"] += len(a)
    assert n > 0
    COMPARED["tensors"] += n
    return n


# ----------------------------------------------------------------------------- interruptions


def interrupted(monkeypatch, spec, train):
    """Call ``train(**kw)`` with the interruption ``spec``; the call must end early.

    ``("stop", k)``: ``stop_after_epochs=k``. ``("call", module, name, n)``: ``module.name`` raises on
    its n-th call. ``("save", filename, n)``: the n-th save of ``filename`` raises before writing.
    ``("eval", n)``: the n-th per-round evaluation raises after building its model.
    """
    kind = spec[0]
    with monkeypatch.context() as m:
        if kind == "stop":
            train(stop_after_epochs=spec[1])
            return
        if kind == "eval":
            with pytest.raises(Crash):
                train(evaluate=fake_evaluate(crash_on=spec[1]))
            return
        if kind == "call":
            module, name, n = spec[1:]
            target, where = getattr(module, name), module
        else:
            name, (filename, n) = "save_torch", spec[1:]
            target, where = wtalkit.io.save_torch, wtalkit.io
        count = [0]

        def wrapper(*args, **kw):
            if kind == "call" or Path(args[0]).name == filename:
                count[0] += 1
                if count[0] == n:
                    raise Crash(spec)
            return target(*args, **kw)

        m.setattr(where, name, wrapper)
        with pytest.raises(Crash):
            train()


def fake_evaluate(crash_on=None):
    """Stands for the CLI's per-round evaluation: it builds a model (drawing parameter inits from the global
    RNG) and logs a value drawn from it; ``crash_on``: the call that dies after building its model."""
    calls = [0]

    def evaluate(path):
        calls[0] += 1
        layer = torch.nn.Linear(64, 64)
        if calls[0] == crash_on:
            raise Crash("evaluation")
        return {"draw": float(layer.weight[0, 0].detach()), "file": Path(path).name}

    return evaluate


# ----------------------------------------------------------------------------- warm-up


def wcfg(*extra):
    return load_config("demo", TINY_SETS + list(extra))


@pytest.fixture(scope="module")
def warm_ref(tiny_dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("warm_ref")
    train_warmup(tiny_dataset, run, wcfg())
    return run


WARMUP_CASES = {  # 3 epochs of 2 batches
    "inside-epoch-2": [("call", wtalkit.models.cbp, "mil_loss", 4)],
    "after-1-then-1-epoch": [("stop", 1), ("stop", 1)],
    "log-line-written-checkpoint-not": [("save", "warmup_last.pt", 2)],
    "before-the-final-file": [("save", "warmup.pt", 1)],
}


@pytest.mark.parametrize("case", list(WARMUP_CASES))
def test_warmup_resume_is_bit_identical(case, tiny_dataset, warm_ref, tmp_path, monkeypatch):
    run = tmp_path / "run"
    for spec in WARMUP_CASES[case]:
        interrupted(monkeypatch, spec, lambda **kw: train_warmup(tiny_dataset, run, wcfg(), **kw))
        assert not (run / "warmup.pt").exists()
    train_warmup(tiny_dataset, run, wcfg())
    n = same_runs(warm_ref, run, ["warmup.pt", "checkpoints/warmup_last.pt"])
    assert n > 20  # weights twice, Adam's two moments per weight and the RNG state
    assert [r["epoch"] for r in records(run)] == [1, 2, 3]


# ----------------------------------------------------------------------------- alternate


def acfg(clip, *extra):
    return load_config("demo", TINY_SETS + [f"vlp.clip_model={clip}", "train.rounds=2"] + list(extra))


@pytest.fixture(scope="module")
def warm(tiny_dataset, tiny_clip_path, tmp_path_factory):
    run = tmp_path_factory.mktemp("warm")
    train_warmup(tiny_dataset, run, acfg(tiny_clip_path))
    return run / "warmup.pt"


SCHEDULES = {"alternate": 4, "only-b": 2, "only-f": 2}  # epochs in the plan (2 rounds, 1 epoch per step)


@pytest.fixture(scope="module")
def alt_refs(tiny_dataset, tiny_clip_path, warm, tmp_path_factory):
    out = {}
    for schedule in SCHEDULES:
        run = tmp_path_factory.mktemp(f"alt_ref_{schedule}")
        c = acfg(tiny_clip_path, f"train.schedule={schedule}")
        train_alternate(tiny_dataset, run, c, warmup_ckpt=warm, evaluate=fake_evaluate())
        out[schedule] = run
    return out


ALT = wtalkit.train.alternate
ALTERNATE_CASES = [  # positions: 1 = round 1 B, 2 = round 1 F (+ evaluation), 3 = round 2 B, 4 = round 2 F (+ eval)
    ("alternate", "inside-epoch-2", [("call", ALT, "distill_loss", 3)]),
    ("alternate", "after-1-then-2-epochs", [("stop", 1), ("stop", 2)]),
    ("alternate", "between-rounds", [("stop", 2)]),
    ("alternate", "between-step-and-its-evaluation", [("eval", 1)]),
    ("alternate", "evaluation-logged-checkpoint-not", [("save", "alternate_last.pt", 2)]),
    ("alternate", "last-evaluation-then-final-file", [("eval", 2), ("save", "alternate.pt", 1)]),
    ("only-b", "inside-epoch-then-evaluation", [("call", ALT, "distill_loss", 2), ("eval", 1)]),
    ("only-b", "between-rounds", [("stop", 1)]),
    ("only-f", "inside-epoch-then-evaluation", [("call", ALT, "distill_loss", 2), ("eval", 1)]),
    ("only-f", "evaluation-logged-checkpoint-not", [("save", "alternate_last.pt", 1)]),
]


@pytest.mark.parametrize("schedule,case,specs", ALTERNATE_CASES, ids=[f"{s}-{c}" for s, c, _ in ALTERNATE_CASES])
def test_alternate_resume_is_bit_identical(
    schedule, case, specs, tiny_dataset, tiny_clip_path, warm, alt_refs, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    c = acfg(tiny_clip_path, f"train.schedule={schedule}")

    def train(**kw):
        kw.setdefault("evaluate", fake_evaluate())
        return train_alternate(tiny_dataset, run, c, warmup_ckpt=warm, **kw)

    for spec in specs:
        interrupted(monkeypatch, spec, train)
        assert not (run / "alternate.pt").exists()
    train()
    files = ["alternate.pt", "round_1.pt", "round_2.pt", "checkpoints/alternate_last.pt"]
    n = same_runs(alt_refs[schedule], run, files)
    assert n > 100
    log = records(run)
    assert [r["position"] for r in log if r["stage"] == "alternate"] == list(range(1, SCHEDULES[schedule] + 1))
    assert [r["file"] for r in log if r["stage"] == "alternate-eval"] == ["round_1.pt", "round_2.pt"]


def test_evaluation_does_not_change_training(tiny_dataset, tiny_clip_path, warm, alt_refs, tmp_path):
    """An evaluation that draws from the RNG leaves the training as it is without one (the leak of issue 12)."""
    run = tmp_path / "noeval"
    train_alternate(tiny_dataset, run, acfg(tiny_clip_path), warmup_ckpt=warm)
    same(
        torch.load(alt_refs["alternate"] / "alternate.pt", weights_only=True),
        torch.load(run / "alternate.pt", weights_only=True),
    )


def test_kill_9_alternate_cli_resumes_bit_identically(tiny_dataset, tiny_clip_path, tmp_path):
    """A real ``kill -9`` of ``python3 -m wtalkit alternate`` while round 1 is being evaluated (the CLI localizes
    the test split after every round: it builds models); the re-run ends as the uninterrupted run."""
    sets = _sets([*TINY_SETS, f"vlp.clip_model={tiny_clip_path}", "train.rounds=2"])
    res = run_cli(["warmup", tiny_dataset, "-o", tmp_path / "ref", "--config", "demo", "--quiet", *sets])
    assert res.exit_code == 0, res.output
    killed = tmp_path / "killed"
    shutil.copytree(tmp_path / "ref", killed)
    res = run_cli(["alternate", tmp_path / "ref", "--quiet"])  # uninterrupted (in this process)
    assert res.exit_code == 0, res.output

    # the same number of threads as this process: float reductions differ between thread counts
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    cmd = [sys.executable, "-m", "wtalkit", "alternate", str(killed), "--quiet"]
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed / "round_1.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)  # the evaluation of round 1 is running now
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "alternate.pt").exists()
    at = torch.load(killed / "checkpoints" / "alternate_last.pt", weights_only=True)["position"]
    print(f"\nkilled with the resume state at position {at} of 4")  # 1: round 1's evaluation was running
    again = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "resuming alternate training" in again.stderr
    files = ["alternate.pt", "round_1.pt", "round_2.pt", "checkpoints/alternate_last.pt"]
    assert same_runs(tmp_path / "ref", killed, files) > 100
    stages = [r["stage"] for r in records(killed)]
    assert stages.count("alternate-eval") == 2 and stages.count("alternate") == 4


def _sets(sets):
    return [x for s in sets for x in ("--set", s)]


# ----------------------------------------------------------------------------- train-online

ONLINE_SETS = [
    "model.width=32",
    "model.heads=2",
    "model.decoder_layers=1",
    "model.num_groups=4",
    "model.cluster_layers=1",
    "model.dropout=0.1",  # dropout draws from the torch RNG: its state must be resumed too
    "train.epochs=3",
    "train.batch_size=128",
    "train.lr=0.002",
    "train.warmup_steps=5",
    "train.subset=test",  # the tiny dataset's test videos carry segments
]


def ocfg(*extra):
    return load_run_config(None, ONLINE_SETS + list(extra))


@pytest.fixture(scope="module")
def clip_model(tiny_clip_path):
    from wtalkit.models.clip import load_clip

    return load_clip(str(tiny_clip_path))


@pytest.fixture(scope="module")
def online_ref(tiny_dataset, tiny_clip_path, clip_model, tmp_path_factory):
    run = tmp_path_factory.mktemp("online_ref")
    train_ovoad(tiny_dataset, run, str(tiny_clip_path), ocfg(), progress=False, clip_model=clip_model)
    return run


ONLINE_CASES = {  # 3 epochs of 11 steps
    "inside-epoch-1": [("call", wtalkit.train.ovoad, "ovoad_losses", 5)],
    # after epoch 1; then, resumed, killed after epoch 2's checkpoint.pt and history.json but before its state
    "after-1-epoch-then-state-not-saved": [("stop", 1), ("save", "online_last.pt", 1)],
}


@pytest.mark.parametrize("case", list(ONLINE_CASES))
def test_train_online_resume_is_bit_identical(
    case, tiny_dataset, tiny_clip_path, clip_model, online_ref, tmp_path, monkeypatch
):
    run = tmp_path / "run"

    def train(**kw):
        return train_ovoad(tiny_dataset, run, str(tiny_clip_path), ocfg(), progress=False, clip_model=clip_model, **kw)

    for spec in ONLINE_CASES[case]:
        interrupted(monkeypatch, spec, train)
    summary = train()
    assert summary["epochs_done"] == 3
    n = same_runs(online_ref, run, ["checkpoint.pt", "checkpoints/online_last.pt"], logs=["history.json"])
    assert n > 50
    assert [r["epoch"] for r in records(run, "history.json")] == [1, 2, 3]
    with pytest.raises(WtalError, match="exists; pass --overwrite"):  # a finished run is kept
        train()


def test_train_online_resume_refuses_other_config_clip_or_dataset(
    tiny_dataset, tiny_clip_path, clip_model, variants, tmp_path
):
    run = tmp_path / "run"
    kw = dict(progress=False, clip_model=clip_model)
    train_ovoad(tiny_dataset, run, str(tiny_clip_path), ocfg(), stop_after_epochs=1, **kw)
    with pytest.raises(WtalError, match="another config.*--overwrite"):
        train_ovoad(tiny_dataset, run, str(tiny_clip_path), ocfg("train.seed=4"), **kw)
    with pytest.raises(WtalError, match="another dataset \\(training videos differ.*--overwrite"):
        train_ovoad(variants["videos"], run, str(tiny_clip_path), ocfg(), **kw)
    with pytest.raises(WtalError, match="another dataset \\(class list differs.*--overwrite"):
        train_ovoad(variants["classes"], run, str(tiny_clip_path), ocfg(), **kw)
    # --overwrite starts over (and finishes)
    s = train_ovoad(tiny_dataset, run, str(tiny_clip_path), ocfg("train.epochs=1"), overwrite=True, **kw)
    assert s["epochs_done"] == 1 and len(records(run, "history.json")) == 1


# ----------------------------------------------------------------------------- dataset checks, --overwrite


@pytest.fixture(scope="module")
def variants(tiny_dataset, tmp_path_factory):
    """Copies of the tiny dataset with another class list, other training videos, other cbp features."""
    import numpy as np

    out = {}
    root = tmp_path_factory.mktemp("variants")
    for name in ("classes", "videos", "dim"):
        d = root / name
        shutil.copytree(tiny_dataset, d)
        ann_path = d / "annotations.json"
        ann = json.loads(ann_path.read_text())
        if name == "classes":
            ann["classes"] = ann["classes"] + ["Zumba"]
        elif name == "videos":
            train = [v for v, x in ann["database"].items() if x["subset"] == "train"]
            test = [v for v, x in ann["database"].items() if x["subset"] == "test"]
            del ann["database"][train[0]]
            del ann["database"][test[0]]  # train-online on the test split: another video there too
        else:
            meta = d / "features" / "cbp" / "meta.json"
            meta.write_text(meta.read_text().replace('"dim": 32', '"dim": 48'))
            for f in (d / "features" / "cbp").glob("*.npy"):
                np.save(f, np.zeros((10, 48), np.float32))
        ann_path.write_text(json.dumps(ann))
        out[name] = d
    return out


@pytest.mark.parametrize(
    "variant,message",
    [
        ("classes", "class list differs: 20 classes, now 21, e.g. 'Zumba'"),
        ("videos", "training videos differ: 8 videos, now 7"),
        ("dim", "'cbp' feature metadata differs: dim 48 \\(was 32\\)"),
    ],
)
def test_warmup_resume_on_another_dataset_is_a_one_line_error(variant, message, tiny_dataset, variants, tmp_path):
    run = tmp_path / "run"
    train_warmup(tiny_dataset, run, wcfg(), stop_after_epochs=1)
    before = (run / "checkpoints" / "warmup_last.pt").read_bytes()
    with pytest.raises(WtalError, match=f"was started on another dataset \\({message}.*--overwrite"):
        train_warmup(variants[variant], run, wcfg())
    res = run_cli(["warmup", variants[variant], "-o", run, "--config", "demo", "--quiet"] + _sets(TINY_SETS))
    assert "another dataset" in assert_one_line_error(res)
    assert (run / "checkpoints" / "warmup_last.pt").read_bytes() == before  # nothing mixed in
    assert len(records(run)) == 1


def test_alternate_resume_on_another_dataset_or_warmup_is_an_error(
    tiny_dataset, tiny_clip_path, warm, variants, tmp_path
):
    run = tmp_path / "run"
    c = acfg(tiny_clip_path)
    train_alternate(tiny_dataset, run, c, warmup_ckpt=warm, stop_after_epochs=1)
    with pytest.raises(WtalError, match="another dataset \\(training videos differ.*--overwrite"):
        train_alternate(variants["videos"], run, c, warmup_ckpt=warm)
    other = tmp_path / "other_warm"
    train_warmup(tiny_dataset, other, acfg(tiny_clip_path, "train.warmup_epochs=1"))
    with pytest.raises(WtalError, match="another warm-up checkpoint.*--overwrite"):
        train_alternate(tiny_dataset, run, c, warmup_ckpt=other / "warmup.pt")


def test_warmup_overwrite_removes_what_alternate_derived(tiny_dataset, tiny_clip_path, warm, tmp_path):
    from wtalkit.models.checkpoint import run_checkpoint

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(warm, run / "warmup.pt")
    c = acfg(tiny_clip_path)
    train_alternate(tiny_dataset, run, c, evaluate=fake_evaluate())
    assert run_checkpoint(run).name == "alternate.pt" and (run / "round_2.pt").exists()
    c1 = acfg(tiny_clip_path, "train.warmup_epochs=1")
    train_warmup(tiny_dataset, run, c1, overwrite=True)
    assert not (run / "alternate.pt").exists() and not list(run.glob("round_*.pt"))
    assert not (run / "checkpoints" / "alternate_last.pt").exists()
    assert run_checkpoint(run).name == "warmup.pt"
    assert [(r["stage"], r["epoch"]) for r in records(run)] == [("warmup", 1)]
    # an interrupted alternate (its resume state and first round) goes too
    train_alternate(tiny_dataset, run, c1, stop_after_epochs=2)
    assert (run / "round_1.pt").exists() and (run / "checkpoints" / "alternate_last.pt").exists()
    res = run_cli(["warmup", tiny_dataset, "-o", run, "--config", "demo", "--overwrite", "--quiet"] + _sets(TINY_SETS))
    assert res.exit_code == 0, res.output
    assert not list(run.glob("round_*.pt")) and not (run / "checkpoints" / "alternate_last.pt").exists()


def test_report_counts():
    """Not a check: prints how much the resume tests compared (run with -s)."""
    print(f"\nresume comparisons: {COMPARED['tensors']} tensors, {COMPARED['records']} log records, all equal")
