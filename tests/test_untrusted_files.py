"""Files from elsewhere never run code: crafted checkpoints and CLIP files are refused with one line.

Each crafted file holds a pickle whose unpickling would create a marker file. Every command that
reads a checkpoint or a CLIP file is run on it through the real CLI; the marker must never appear.
(The THUMOS importer's object arrays are covered in tests/test_hardening_data.py.)
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from tests.cli_helpers import assert_one_line_error, run_cli


class _Payload:
    """Unpickling this calls open(marker, "w"): the file appears if any code from the pickle runs."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture()
def marker(tmp_path):
    return tmp_path / "CODE_RAN"


@pytest.fixture()
def evil_checkpoint(tmp_path, marker):
    """Looks like a wtalkit checkpoint from the outside (a torch zip file with the usual keys)."""
    path = tmp_path / "evil.pt"
    torch.save({"kind": "cbp", "config": {}, "classes": ["a"], "models": _Payload(marker), "streams": {}}, path)
    return path


@pytest.fixture()
def evil_run(tmp_path, evil_checkpoint):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(evil_checkpoint, run / "warmup.pt")
    return run


def _vlp_feature_file(tmp_path):
    folder = tmp_path / "feats"
    folder.mkdir()
    np.save(folder / "v.npy", np.random.default_rng(0).normal(size=(20, 32)).astype(np.float32))
    return folder / "v.npy"


def _commands(tmp_path, evil_checkpoint, evil_run, tiny_dataset, tiny_clip_path):
    feats = _vlp_feature_file(tmp_path)
    resume_run = tmp_path / "resume"
    (resume_run / "checkpoints").mkdir(parents=True)
    shutil.copy(evil_checkpoint, resume_run / "checkpoints" / "warmup_last.pt")
    return {
        "localize a run folder": ["localize", evil_run, "--dataset", tiny_dataset],
        "localize a checkpoint": ["localize", evil_checkpoint, "--dataset", tiny_dataset],
        "pseudolabel": ["pseudolabel", evil_checkpoint, "--dataset", tiny_dataset],
        "alternate --from": ["alternate", tmp_path / "alt", "--from", evil_checkpoint, "--dataset", tiny_dataset],
        "alternate RUN": ["alternate", evil_run, "--dataset", tiny_dataset],
        "warmup resume": ["warmup", tiny_dataset, "-o", resume_run, "--config", "demo", "--device", "cpu"],
        "online --checkpoint": [
            "online",
            feats,
            "--model",
            "ovoad",
            "--checkpoint",
            evil_checkpoint,
            "--clip",
            tiny_clip_path,
            "--classes",
            "a,b",
            "--feature-fps",
            "4",
        ],  # fmt: skip
        "online --clip": ["online", feats, "--clip", evil_checkpoint, "--classes", "a,b", "--feature-fps", "4"],
        "train-online --clip": ["train-online", tiny_dataset, "-o", tmp_path / "oad", "--clip", evil_checkpoint],
        "pseudolabel raw-vlp with a crafted CLIP": [
            "pseudolabel",
            "WARM",
            "--dataset",
            tiny_dataset,
            "--branch",
            "raw-vlp",
            "--set",
            f"vlp.clip_model={evil_checkpoint}",
        ],  # fmt: skip
    }


@pytest.mark.parametrize(
    "name",
    [
        "localize a run folder",
        "localize a checkpoint",
        "pseudolabel",
        "alternate --from",
        "alternate RUN",
        "warmup resume",
        "online --checkpoint",
        "online --clip",
        "train-online --clip",
        "pseudolabel raw-vlp with a crafted CLIP",
    ],
)
def test_a_crafted_file_never_runs_code(
    name, tmp_path, marker, evil_checkpoint, evil_run, tiny_dataset, tiny_clip_path
):
    args = _commands(tmp_path, evil_checkpoint, evil_run, tiny_dataset, tiny_clip_path)[name]
    if "WARM" in args:  # a real warm-up, so that the command gets as far as loading CLIP
        from tests.conftest import TINY_SETS
        from wtalkit.config import load_config
        from wtalkit.train.warmup import train_warmup

        warm = train_warmup(tiny_dataset, tmp_path / "warm", load_config("demo", [*TINY_SETS, "train.device=cpu"]))
        args = [warm if a == "WARM" else a for a in args]
    res = run_cli(args)
    line = assert_one_line_error(res)
    assert not marker.exists(), f"{name}: code from the file ran"
    assert "evil.pt" in line or "warmup" in line, line


def test_the_loader_names_what_it_refused(evil_checkpoint, marker):
    from wtalkit.errors import WtalError
    from wtalkit.models.checkpoint import load_checkpoint
    from wtalkit.models.clip import load_clip

    with pytest.raises(WtalError, match=r"it would run code \((io|builtins)\.open\)"):
        load_checkpoint(evil_checkpoint)
    with pytest.raises(WtalError, match="not a loadable CLIP checkpoint"):
        load_clip(str(evil_checkpoint))
    assert not marker.exists()


def test_the_payload_would_run_if_unpickled(evil_checkpoint, marker):
    """The test's own control: without weights_only the marker does appear (so the tests above can fail)."""
    torch.load(evil_checkpoint, weights_only=False)
    assert marker.exists()
