"""Careless and hostile inputs to every command: one line on stderr, a non-zero exit, nothing damaged.

Each case names the command line; ``RUN``, ``DATA``, ``FEATS`` and ``FILE`` stand for a finished tiny
warm-up, the tiny dataset, a loose vlp feature file and an existing plain file.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from tests.cli_helpers import assert_one_line_error, run_cli
from tests.conftest import TINY_SETS


@pytest.fixture(scope="module")
def warm_run(tmp_path_factory, tiny_dataset):
    from wtalkit.config import load_config
    from wtalkit.train.warmup import train_warmup

    run = tmp_path_factory.mktemp("bad") / "run"
    train_warmup(tiny_dataset, run, load_config("demo", [*TINY_SETS, "train.device=cpu"]))
    return run


@pytest.fixture()
def places(tmp_path, warm_run, tiny_dataset, tiny_clip_path):
    feats = tmp_path / "feats"
    feats.mkdir()
    np.save(feats / "v.npy", np.random.default_rng(0).normal(size=(12, 32)).astype(np.float32))
    plain = tmp_path / "file.txt"
    plain.write_text("I am a file\n")
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    return {
        "RUN": warm_run,
        "DATA": tiny_dataset,
        "FEATS": feats / "v.npy",
        "FILE": plain,
        "LATIN": latin,
        "CLIP": tiny_clip_path,
        "TMP": tmp_path,
    }


SETS = [
    "data.batch_size=0",
    "cbp.topk_ratio=0",
    "infer.theta_loc=abc",
    "infer.theta_loc=[a]",
    "infer.theta_loc=[]",
    "cbp.dropout=2",
    "train.warmup_epochs=-1",
    "train.rounds=-2",
    "infer.nms_sigma=0",
    "train.schedule=banana",
    "optim.lr=nan",
    "eval.tiou=[0.5, 1.5]",
    "vlp.templates=['{} {}']",
    "cbp.max_len=4096",
    "no.such=1",
]


@pytest.mark.parametrize("setting", SETS)
def test_bad_config_values(setting, places):
    line = assert_one_line_error(run_cli(["warmup", places["DATA"], "-o", places["TMP"] / "r", "--set", setting]))
    assert "config" in line or "--set" in line
    assert not (places["TMP"] / "r").exists()


CASES = {
    "non-UTF-8 config": ["warmup", "DATA", "-o", "TMP/r", "--config", "LATIN"],
    "device banana": ["localize", "RUN", "--device", "banana"],
    "device cuda:9": ["localize", "RUN", "--device", "cuda:9"],
    "warmup device banana": ["warmup", "DATA", "-o", "TMP/r", "--device", "banana"],
    "alternate device banana": ["alternate", "RUN", "--device", "banana"],
    "pseudolabel template": ["pseudolabel", "RUN", "--branch", "raw-vlp", "--template", "{} {}"],
    "online template": ["online", "FEATS", "--clip", "CLIP", "--classes", "a,b", "--template", "{} {}",
                        "--feature-fps", "4"],
    "online empty class": ["online", "FEATS", "--clip", "CLIP", "--classes", "a,,b", "--feature-fps", "4"],
    "warmup -o under a file": ["warmup", "DATA", "-o", "FILE/sub", "--config", "demo"],
    "pseudolabel -o under a file": ["pseudolabel", "RUN", "-o", "FILE/sub"],
    "online -o under a file": ["online", "FEATS", "--clip", "CLIP", "--classes", "a", "--feature-fps", "4",
                               "-o", "FILE/sub.jsonl"],
    "demo -o under a file": ["demo", "-o", "FILE/sub", "--quick", "--quiet"],
    "localize -o under a file": ["localize", "RUN", "-o", "FILE/sub.json"],
    "localize -o existing": ["localize", "RUN", "-o", "FILE"],
    "online -o existing": ["online", "FEATS", "--clip", "CLIP", "--classes", "a", "--feature-fps", "4", "-o", "FILE"],
    "pseudolabel -o foreign folder": ["pseudolabel", "RUN", "-o", "TMP"],
    "demo seed -1": ["demo", "-o", "TMP/demo", "--seed", "-1", "--quick", "--quiet"],
    "localize arguments swapped": ["localize", "RUN", "FEATS"],
    "alternate rounds -2": ["alternate", "RUN", "--rounds", "-2"],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_command_lines(name, places):
    args = []
    for a in CASES[name]:
        for key, value in places.items():
            if a == key or a.startswith(key + "/"):
                a = str(value) + a[len(key) :]
        args.append(a)
    before = {p: p.stat().st_mtime_ns for p in places["TMP"].rglob("*") if p.is_file()}
    assert_one_line_error(run_cli(args))
    after = {p: p.stat().st_mtime_ns for p in places["TMP"].rglob("*") if p.is_file()}
    assert after == before, "an existing file was changed or a new one left behind"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu(places):
    line = assert_one_line_error(run_cli(["localize", places["RUN"], "--device", "cuda"]))
    assert "no CUDA GPU" in line


def test_pseudolabel_overwrite_replaces_only_its_own_folder(places):
    out = places["TMP"] / "pl"
    assert run_cli(["pseudolabel", places["RUN"], "-o", out]).exit_code == 0
    assert_one_line_error(run_cli(["pseudolabel", places["RUN"], "-o", out]))
    assert run_cli(["pseudolabel", places["RUN"], "-o", out, "--overwrite"]).exit_code == 0
    shutil.rmtree(out)


def test_extract_that_extracts_nothing_leaves_nothing(tmp_path, tiny_clip_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    out = tmp_path / "data"
    line = assert_one_line_error(run_cli(["extract", junk, "-o", out, "--streams", "vlp", "--clip", tiny_clip_path]))
    assert "nothing was extracted" in line and "the others" not in line
    assert not out.exists()


def test_sigterm_leaves_no_temporary_file(tmp_path, tiny_clip_path):
    """`online --realtime -o` killed with SIGTERM: exit non-zero, one line, no hidden temp file, no output."""
    import os
    import signal
    import subprocess
    import sys
    import time

    feats = tmp_path / "f"
    feats.mkdir()
    np.save(feats / "v.npy", np.random.default_rng(0).normal(size=(400, 32)).astype(np.float32))
    out = tmp_path / "out" / "scores.jsonl"
    args = [sys.executable, "-m", "wtalkit", "online", str(feats / "v.npy"), "--clip", str(tiny_clip_path)]
    args += ["--classes", "a,b", "--feature-fps", "4", "--realtime", "-o", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    deadline = time.time() + 60
    while time.time() < deadline and not (out.parent.exists() and any(out.parent.iterdir())):
        time.sleep(0.1)  # the temporary output exists: the stream is running
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("Error:")]) == 1, err
    assert not out.exists() and list(out.parent.iterdir()) == []
