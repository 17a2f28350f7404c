"""Regenerate wtalkit/data/thumos14_layout.json from the THUMOS14 "reduced" annotation files.

The layout (per video: subset, duration, segments with class indices) is the
real temporal structure of THUMOS14 that the demo's synthetic features are
drawn on. It contains annotations only, no features.

    python examples/make_thumos_layout.py ../shared/thumos14-reduced-annotations
"""

import json
import sys
from pathlib import Path

import numpy as np


def main(src: str) -> None:
    src = Path(src)
    load = lambda n: np.load(src / f"{n}.npy", allow_pickle=True)
    dec = lambda x: x.decode() if isinstance(x, bytes) else str(x)
    classes = [dec(c) for c in load("classlist")]
    cidx = {c: i for i, c in enumerate(classes)}
    videos = []
    for name, sub, dur, labs, segs in zip(
        load("videoname"), load("subset"), load("duration"), load("labels"), load("segments")
    ):
        videos.append(
            {
                "name": dec(name),
                "subset": dec(sub),
                "duration": round(float(np.ravel(dur)[0]), 3),
                "segments": [[round(float(s), 2), round(float(e), 2), cidx[dec(l)]] for (s, e), l in zip(segs, labs)],
            }
        )
    out = Path(__file__).resolve().parents[1] / "wtalkit" / "data" / "thumos14_layout.json"
    out.write_text(
        json.dumps(
            {"source": "THUMOS14 reduced annotations", "classes": classes, "videos": videos}, separators=(",", ":")
        )
    )
    print(f"wrote {out} ({len(videos)} videos)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/thumos14-reduced-annotations")
