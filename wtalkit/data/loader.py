"""Training batches: T consecutive snippets per video, padded and masked.

:class:`FeatureBank` holds the features of one subset in memory (aligned
across the requested streams on the first stream's grid) with the video-level
labels; :meth:`FeatureBank.batches` yields random crops of ``T`` consecutive
snippets (videos shorter than ``T`` are zero-padded and masked), driven by an
explicit ``numpy.random.Generator`` so that training is reproducible and
resumable.
"""

from __future__ import annotations

import numpy as np
import torch

from wtalkit.data.features import Dataset, StreamMeta
from wtalkit.errors import WtalError
from wtalkit.timeaxis import resample_indices


def multi_hot(labels, class_index: dict) -> np.ndarray:
    """Video-level class names -> float32 multi-hot ``[C]`` (``class_index``: name -> column)."""
    y = np.zeros(len(class_index), dtype=np.float32)
    for name in labels:
        if name not in class_index:
            raise WtalError(f"label '{name}' is not one of the {len(class_index)} classes")
        y[class_index[name]] = 1.0
    return y


class FeatureBank:
    def __init__(self, dataset: Dataset, subset: str | None, streams=("cbp",), require_labels: bool = False):
        self.dataset = dataset
        self.streams = tuple(streams)
        self.classes = dataset.classes
        cidx = dataset.annotations.class_index()
        vids = dataset.videos(subset, stream=self.streams[0])
        for s in self.streams[1:]:
            st = dataset.stream(s)
            vids = [v for v in vids if st.has(v.name)]
        if require_labels:
            vids = [v for v in vids if v.labels]
        if not vids:
            raise WtalError(
                f"no {'labelled ' if require_labels else ''}videos in subset '{subset}' have all of the streams {', '.join(self.streams)}"
            )
        self.videos = vids
        self.metas: dict[str, StreamMeta] = {s: dataset.stream(s).meta for s in self.streams}
        self.labels = np.stack([multi_hot(v.labels, cidx) for v in vids])
        self.feats: dict[str, list] = {s: [] for s in self.streams}
        main = self.streams[0]
        grid = self.metas[main].grid
        for v in vids:
            x = dataset.stream(main).load(v.name)
            self.feats[main].append(x)
            for s in self.streams[1:]:
                y = dataset.stream(s).load(v.name)
                if self.metas[s].grid != grid or len(y) != len(x):
                    y = y[resample_indices(self.metas[s].grid, grid, len(x), len(y))]
                self.feats[s].append(y)

    def __len__(self) -> int:
        return len(self.videos)

    @property
    def grid(self):
        return self.metas[self.streams[0]].grid

    def dim(self, stream: str) -> int:
        return self.metas[stream].dim

    def lengths(self) -> np.ndarray:
        return np.array([len(x) for x in self.feats[self.streams[0]]])

    def crop(self, i: int, T: int, rng: np.random.Generator) -> int:
        n = len(self.feats[self.streams[0]][i])
        return int(rng.integers(0, n - T + 1)) if n > T else 0

    def make_batch(self, idx, offsets, T: int) -> dict:
        B = len(idx)
        mask = torch.zeros(B, T, dtype=torch.bool)
        x = {s: torch.zeros(B, T, self.dim(s)) for s in self.streams}
        for b, (i, o) in enumerate(zip(idx, offsets)):
            n = min(T, len(self.feats[self.streams[0]][i]) - o)
            mask[b, :n] = True
            for s in self.streams:
                x[s][b, :n] = torch.from_numpy(self.feats[s][i][o : o + n])
        return {
            "x": x,
            "mask": mask,
            "labels": torch.from_numpy(self.labels[list(idx)]),
            "idx": list(idx),
            "offsets": list(offsets),
        }

    def batches(self, rng: np.random.Generator, T: int, batch_size: int, shuffle: bool = True):
        order = rng.permutation(len(self)) if shuffle else np.arange(len(self))
        for start in range(0, len(order), batch_size):
            idx = [int(i) for i in order[start : start + batch_size]]
            offsets = [self.crop(i, T, rng) for i in idx]
            yield self.make_batch(idx, offsets, T)
