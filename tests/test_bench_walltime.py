"""benchmarks/bench_walltime.py --quick: every cell measured, positive, and the markdown table printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CELLS = ("warmup", "b_step", "f_step", "round_end", "localize")


def test_bench_walltime_quick(tmp_path):
    out = tmp_path / "walltime.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_walltime.py"), "--quick", "--max-steps", "1"]
    cmd += ["--max-videos", "2", "--out", str(tmp_path / "work"), "--json", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}  # the random CLIP file goes to TMPDIR
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]

    figures = json.loads(out.read_text())
    row = figures["sizes"]["quick"]
    assert set(row["cells"]) == set(CELLS)
    for name, cell in row["cells"].items():
        assert cell["seconds"] > 0, name
        assert cell["how"] in ("full", "extrapolated"), name
    # 12 training videos in batches of 4 = 3 batches: 1 untimed + 1 timed step, scaled by 3
    for name in ("warmup", "b_step", "f_step"):
        assert row["cells"][name]["how"] == "extrapolated" and row["cells"][name]["scale"] == 3.0
    assert row["cells"]["localize"]["scale"] == 3.0  # 2 of 6 test videos timed
    assert row["cells"]["round_end"]["scale"] == 6.0  # the agreement pass over 2 of 12 training videos
    p = row["protocol"]
    c = {k: v["seconds"] for k, v in row["cells"].items()}
    expected = (
        p["warmup_epochs"] * c["warmup"]
        + p["rounds"] * (p["b_epochs"] * c["b_step"] + p["f_epochs"] * c["f_step"] + c["round_end"])
        + c["localize"]
    )
    assert abs(row["total_seconds"] - expected) < 1e-6 * expected

    lines = res.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| size |"))
    assert lines[header + 1].startswith("|---|")
    assert lines[header + 2].startswith("| quick") and "1 step × 3.0" in lines[header + 2]
    assert lines[header + 2].count("|") == lines[header].count("|")
