import os
import stat

import numpy as np
import pytest

from wtalkit import io as wio


def test_atomic_write_permissions_and_no_leftovers(tmp_path):
    target = tmp_path / "sub" / "a.json"
    wio.write_json(target, {"x": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    wio.save_npy(tmp_path / "f.npy", np.arange(3))
    assert np.load(tmp_path / "f.npy").tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.json", "f.npy", "sub"]


def test_interrupted_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.txt"
    wio.write_text(target, "old")
    with pytest.raises(RuntimeError), wio.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_read_list_file(tmp_path):
    from wtalkit.errors import WtalError

    f = tmp_path / "names.txt"
    f.write_text("# classes\nhigh jump\n\n  pole vault  \n")
    assert wio.read_list_file(f, "classes file") == ["high jump", "pole vault"]
    f.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(WtalError, match="classes file is not a UTF-8 text file"):
        wio.read_list_file(f, "classes file")
