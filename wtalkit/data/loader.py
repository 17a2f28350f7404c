"""Training batches: T snippets per video, padded and masked.

:class:`FeatureBank` serves the features of one subset (aligned across the
requested streams on the first stream's grid) with the video-level labels;
:meth:`FeatureBank.batches` yields random crops of ``T`` consecutive snippets
(videos shorter than ``T`` are zero-padded and masked) or, with
``sampling="uniform"``, ``T`` snippets spread over the whole video (one drawn
in each of ``T`` equal bins, as UM samples; short videos repeat snippets), and
can start every batch with pairs of videos that share a class (CO2-Net's
co-activity loss needs them). It is driven by an explicit
``numpy.random.Generator`` so that training is reproducible and resumable.

By default the features stay on disk: every file is validated once, then each
batch reads only its crops through a memory map that is closed again, so
resident memory is bounded by the batch, not by the dataset (ActivityNet1.2's
I3D features are ~16 GB). ``in_memory=True`` reads everything into RAM first;
both give identical batches. With ``prefetch=True`` (training on a GPU) a
background thread reads the next batch while the current one is computed on.
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


def batch_options(data_cfg, device=None) -> dict:
    """The :meth:`FeatureBank.batches` options of a run's ``data`` config, training on ``device``.

    The next batch is prefetched only when the model computes on another device than the CPU: on the
    CPU a reading thread would take the model's cores (``benchmarks/bench_prefetch.py``).
    """
    return {
        "T": data_cfg.num_segments,
        "batch_size": data_cfg.batch_size,
        "sampling": data_cfg.sampling,
        "similar_pairs": data_cfg.similar_pairs,
        "prefetch": device is not None and device.type != "cpu",
    }


def perturbed_indices(n: int, T: int, rng: np.random.Generator) -> np.ndarray:
    """``T`` snippet indices of an ``n``-snippet video: bin ``i`` covers ``[i n / T, (i + 1) n / T]`` and one
    index is drawn in each (UM's random-perturbation sampling; with ``n < T`` indices repeat)."""
    if n == T:
        return np.arange(T)
    edges = np.arange(T + 1) * n / T
    lo = np.floor(edges[:-1]).astype(np.int64)
    hi = np.minimum(np.floor(edges[1:]).astype(np.int64), n - 1)
    hi[-1] = n - 1
    hi = np.maximum(hi, lo)
    return lo + np.floor(rng.random(T) * (hi - lo + 1)).astype(np.int64)


class FeatureBank:
    def __init__(
        self,
        dataset: Dataset,
        subset: str | None,
        streams=("cbp",),
        require_labels: bool = False,
        in_memory: bool = False,
    ):
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
        self.in_memory = in_memory
        # Per stream and video: the rows that sit on the first stream's grid (None = the same rows).
        self._rows: dict[str, list] = {s: [] for s in self.streams}
        self._lengths = []
        self.feats: dict[str, list] = {s: [] for s in self.streams}  # filled only in memory
        main = self.streams[0]
        grid = self.metas[main].grid
        for v in vids:
            # each file validated once through a memory map, dropped again at the end of the iteration
            maps = {s: dataset.stream(s).load(v.name, mmap=True) for s in self.streams}
            n = len(maps[main])
            self._lengths.append(n)
            for s, x in maps.items():
                same = s == main or (self.metas[s].grid == grid and len(x) == n)
                rows = None if same else resample_indices(self.metas[s].grid, grid, n, len(x))
                self._rows[s].append(rows)
                if in_memory:
                    self.feats[s].append(np.array(x if rows is None else x[rows], dtype=np.float32))
            del maps

    def __len__(self) -> int:
        return len(self.videos)

    @property
    def grid(self):
        return self.metas[self.streams[0]].grid

    def dim(self, stream: str) -> int:
        return self.metas[stream].dim

    def lengths(self) -> np.ndarray:
        return np.array(self._lengths)

    def moments(self, stream: str) -> tuple:
        """Per-dimension mean and standard deviation (float64 ``[D]`` each) of ``stream`` over every
        snippet of the bank's videos (on the first stream's grid).

        One video is read at a time and merged by Chan et al.'s pairwise update, so memory stays at
        one video and a large shared mean costs no precision.
        """
        D = self.dim(stream)
        n, mean, m2 = 0, np.zeros(D), np.zeros(D)
        for i, length in enumerate(self._lengths):
            if length == 0:
                continue
            x = np.asarray(self.select(stream, i, slice(0, length)), dtype=np.float64)
            k, mu = len(x), x.mean(0)
            delta = mu - mean
            total = n + k
            mean = mean + delta * (k / total)
            m2 = m2 + ((x - mu) ** 2).sum(0) + delta**2 * (n * k / total)
            n = total
        if n == 0:
            raise WtalError(f"no '{stream}' snippets to measure the standardisation statistics on")
        return mean, np.sqrt(m2 / n)

    def crop(self, i: int, T: int, rng: np.random.Generator) -> int:
        n = self._lengths[i]
        return int(rng.integers(0, n - T + 1)) if n > T else 0

    def rows(self, stream: str, i: int, lo: int, hi: int) -> np.ndarray:
        """Snippets ``lo:hi`` (on the first stream's grid) of video ``i`` in ``stream``, float32."""
        return self.select(stream, i, slice(lo, hi))

    def select(self, stream: str, i: int, which) -> np.ndarray:
        """Snippets ``which`` (a slice or a sorted index array, on the first stream's grid) of video ``i``
        in ``stream``, float32; only those rows are read."""
        if self.in_memory:
            return self.feats[stream][i][which]
        index = self._rows[stream][i]
        return self.dataset.stream(stream).read(self.videos[i].name, which if index is None else index[which])

    def make_batch(self, idx, offsets, T: int, pairs: int = 0) -> dict:
        """A batch of videos ``idx``; ``offsets[b]`` is a crop start, or an index array of ``T`` snippets."""
        B = len(idx)
        mask = torch.zeros(B, T, dtype=torch.bool)
        x = {s: torch.zeros(B, T, self.dim(s)) for s in self.streams}
        for b, (i, o) in enumerate(zip(idx, offsets)):
            which = o if isinstance(o, np.ndarray) else slice(o, min(o + T, self._lengths[i]))
            n = len(o) if isinstance(o, np.ndarray) else which.stop - o
            mask[b, :n] = True
            for s in self.streams:
                x[s][b, :n] = torch.from_numpy(self.select(s, i, which))
        return {
            "x": x,
            "mask": mask,
            "labels": torch.from_numpy(self.labels[list(idx)]),
            "idx": list(idx),
            "offsets": list(offsets),
            "pairs": pairs,
        }

    def batches(self, rng: np.random.Generator, T: int, batch_size: int, *, prefetch: bool = False, **options):
        """One epoch of batches (``ceil(N / batch_size)`` of them), see the module docstring; ``options``
        are :meth:`plan`'s ``shuffle``, ``sampling`` and ``similar_pairs``.

        With ``similar_pairs = P > 0`` each batch starts with ``P`` pairs: ``P`` distinct classes that
        have two or more videos are drawn, and two videos of each; the rest of the batch comes from the
        epoch's shuffled order (the batch's ``"pairs"`` says how many pairs it starts with).

        Every random draw of the epoch is made from ``rng`` when iteration starts, in the calling thread
        (:meth:`plan`); with ``prefetch`` a background thread then reads batch ``k + 1`` while the caller
        computes on batch ``k`` (:func:`prefetched`). The batches are the same with and without it.
        Training turns it on when it computes on a GPU (:func:`batch_options`).
        """
        plans = self.plan(rng, T, batch_size, **options)
        if not prefetch:
            for p in plans:
                yield self.make_batch(*p)
            return
        yield from prefetched(lambda p: self.make_batch(*p), plans)

    def plan(
        self,
        rng: np.random.Generator,
        T: int,
        batch_size: int,
        shuffle: bool = True,
        sampling: str = "crop",
        similar_pairs: int = 0,
    ) -> list:
        """The epoch's batches as ``(idx, offsets, T, pairs)`` arguments of :meth:`make_batch`, drawn now."""
        order = rng.permutation(len(self)) if shuffle else np.arange(len(self))
        per_class = (
            [np.flatnonzero(self.labels[:, c] > 0) for c in range(self.labels.shape[1])] if similar_pairs else []
        )
        pairable = [c for c, v in enumerate(per_class) if len(v) >= 2]
        P = min(similar_pairs, len(pairable))
        rest = batch_size - 2 * P
        n_batches = -(-len(order) // batch_size)
        plans = []
        for k in range(n_batches):
            idx = []
            if P:
                for c in rng.choice(pairable, size=P, replace=False):
                    idx += [int(i) for i in rng.choice(per_class[c], size=2, replace=False)]
            idx += (
                [int(i) for i in order[k * rest : (k + 1) * rest]]
                if P
                else [int(i) for i in order[k * batch_size : (k + 1) * batch_size]]
            )
            if sampling == "uniform":
                offsets = [perturbed_indices(self._lengths[i], T, rng) for i in idx]
            else:
                offsets = [self.crop(i, T, rng) for i in idx]
            plans.append((idx, offsets, T, P))
        return plans


def prefetched(make, items):
    """``make(item)`` for each of ``items`` in order, each computed in a background thread while the
    caller works on the previous one (one ahead). An error in ``make`` is raised in the caller at the
    item where it happened; leaving the loop early stops the thread."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def work():
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put((True, make(item)))
        except BaseException as e:  # handed to the caller, raised there
            q.put((False, e))
            return
        q.put((True, stop))  # the end marker

    worker = threading.Thread(target=work, name="wtalkit-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            ok, value = q.get()
            if not ok:
                raise value
            if value is stop:
                return
            yield value
    finally:
        stop.set()
        while worker.is_alive():  # a worker blocked on the full queue is released by taking its item
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            worker.join(timeout=0.01)
