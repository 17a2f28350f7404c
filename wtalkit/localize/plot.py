"""Per-video figures of the two branches' frame scores (the paper's Figure 3).

For one video and one class, stacked panels on a shared time axis in
seconds: the ground-truth segments, the CBP frame scores, the VLP frame scores
(when the run has a VLP branch) and the final scores inference thresholds,
with the ``theta_loc`` thresholds and the detected segments. It shows what
the paper argues: CBP is confident on background (few false positives, but
it misses parts of actions), VLP fires on action frames (high recall, noisy
boundaries), and the collaboration gets both.

:func:`plot_video` only draws (matplotlib, Agg canvas, imported when called);
:class:`ScoreCurves` computes the curves from a checkpoint; :class:`Plotter`
is what ``wtalkit localize --plot/--plot-dir`` drives.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from wtalkit.errors import WtalError
from wtalkit.timeaxis import SnippetGrid, resample_indices

FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}
COLOURS = {"gt": "#2e7d32", "cbp": "#1f5fa8", "vlp": "#e07b00", "final": "#8e24aa"}


# --------------------------------------------------------------------------- output paths


def _nearest_existing(p: Path) -> Path:
    p = p.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_plot_path(path, option: str = "--plot") -> Path:
    """Validate a figure path before any work: a known format, and a folder that exists or can be made."""
    p = Path(path)
    if p.suffix.lower() not in FORMATS:
        raise WtalError(f"{option}: {p} must end in {', '.join(FORMATS)}")
    if p.is_dir():
        raise WtalError(f"{option}: {p} is a folder; give a file name such as {p / 'video.png'}")
    _check_folder(p.parent, option)
    return p


def check_plot_dir(path, option: str = "--plot-dir") -> Path:
    """Validate a folder for one figure per video (created when the first figure is written)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise WtalError(f"{option}: {p} exists and is not a folder")
    _check_folder(p, option)
    return p


def _check_folder(folder: Path, option: str) -> None:
    anc = _nearest_existing(folder)
    if not anc.is_dir():
        raise WtalError(f"{option}: cannot create folder {folder} ({anc} is a file)")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise WtalError(f"{option}: cannot write in {anc} (permission denied)")


# --------------------------------------------------------------------------- drawing


def _class_index(classes: list, label, detections: list, final_scores: np.ndarray) -> int:
    if label is not None:
        if label not in classes:
            raise WtalError(
                f"unknown class '{label}' for the figure (the run has {len(classes)} classes, e.g. '{classes[0]}')"
            )
        return classes.index(label)
    if detections:
        top = max(detections, key=lambda d: d["score"])
        return classes.index(top["label"])
    return int(np.argmax(final_scores.max(0)))


def _curve(x, name: str, classes: list):
    if x is None:
        return None
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(classes) or len(x) == 0:
        raise ValueError(f"{name} scores must be [T, {len(classes)}] with T > 0, got {list(x.shape)}")
    return x


def figure_video(
    *,
    duration: float,
    grid: SnippetGrid,
    classes: list,
    gt_segments,
    cbp_scores,
    vlp_scores,
    final_scores,
    detections: list,
    label: str | None = None,
    theta_loc=None,
    title: str | None = None,
    final_name: str = "final",
    max_detections: int = 5,
):
    """The matplotlib Figure of :func:`plot_video` (nothing written; for tests and notebooks)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    final_scores = _curve(final_scores, "final", classes)
    cbp_scores = _curve(cbp_scores, "CBP", classes)
    vlp_scores = _curve(vlp_scores, "VLP", classes)
    c = _class_index(classes, label, detections, final_scores)
    cname = classes[c]
    thetas = [] if theta_loc is None else [float(t) for t in np.atleast_1d(theta_loc)]

    curves = [("CBP", "cbp", cbp_scores), ("VLP", "vlp", vlp_scores), (final_name, "final", final_scores)]
    curves = [(n, k, v) for n, k, v in curves if v is not None]
    end = max([float(duration or 0.0)] + [float(grid.to_seconds(len(v))) for _, _, v in curves])

    fig = Figure(figsize=(10, 1.0 + 1.35 * (1 + len(curves))), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1 + len(curves), 1, sharex=True, height_ratios=[0.55] + [1.0] * len(curves))
    fig.suptitle(f"{title + ': ' if title else ''}{cname}", fontsize=11)

    # ground truth: this class's segments as bars; other classes' thinner, in grey, named
    ax = axes[0]
    gt = [(float(s), float(e), str(lab)) for s, e, lab in (gt_segments or [])]
    mine = [(s, e - s) for s, e, lab in gt if lab == cname]
    others = [(s, e, lab) for s, e, lab in gt if lab != cname]
    if mine:
        ax.broken_barh(mine, (0.15, 0.7), color=COLOURS["gt"])
    if others:
        ax.broken_barh([(s, e - s) for s, e, _ in others], (0.35, 0.3), color="0.75")
        for s, _, lab in others:
            ax.text(s, 0.5, f" {lab}", va="center", ha="left", fontsize=6, color="0.35", clip_on=True)
    if not mine:
        msg = f"no '{cname}' in the ground truth" if gt_segments else "no ground truth"
        ax.text(
            0.995,
            0.97 if others else 0.5,
            msg,
            transform=ax.transAxes,
            ha="right",
            va="top" if others else "center",
            color="0.45",
            fontsize=8,
        )
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_ylabel("GT", rotation=0, ha="right", va="center")

    for ax, (name, key, scores) in zip(axes[1:], curves):
        edges = grid.to_seconds(np.arange(len(scores) + 1))
        ax.stairs(scores[:, c], edges, fill=True, color=COLOURS[key], alpha=0.35)
        ax.stairs(scores[:, c], edges, color=COLOURS[key], linewidth=1.2)
        ax.set_ylim(0, 1.05)
        ax.set_yticks([0, 0.5, 1])
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
        ax.grid(axis="y", alpha=0.3)

    # final panel: the thresholds, and the detections of this class as a track of bars above the curve
    ax = axes[-1]
    for i, t in enumerate(thetas):
        ax.axhline(
            t,
            color="0.25",
            linestyle="--",
            linewidth=0.9,
            label=("θloc = " + ", ".join(f"{x:g}" for x in thetas)) if i == 0 else None,
        )
    mine = sorted((d for d in detections if d["label"] == cname), key=lambda d: -d["score"])[:max_detections]
    top = max([d["score"] for d in mine] + [1e-9])
    row = 0.3 / max(1, max_detections)
    for i, d in enumerate(mine):
        s, e = (float(v) for v in d["segment"])
        y = 1.08 + i * row
        ax.broken_barh(
            [(s, max(e - s, 1e-9))],
            (y, row * 0.8),
            color="crimson",
            alpha=0.3 + 0.7 * d["score"] / top,
            label=f"detections (top {len(mine)})" if i == 0 else None,
        )
        ax.text(e, y + row * 0.4, f" {d['score']:.2f}", va="center", ha="left", fontsize=6, color="crimson")
    ax.set_ylim(0, 1.1 + 0.3 if mine else 1.05)
    if thetas or mine:
        ax.legend(loc="lower right", fontsize=7, framealpha=0.85)
    ax.set_xlim(0, end)
    ax.set_xlabel("time (s)")
    return fig


def plot_video(
    out_png,
    *,
    duration: float,
    grid: SnippetGrid,
    classes: list,
    gt_segments,
    cbp_scores,
    vlp_scores,
    final_scores,
    detections: list,
    label: str | None = None,
    theta_loc=None,
    title: str | None = None,
    final_name: str = "final",
    dpi: int = 110,
) -> Path:
    """Draw one video's figure and write it atomically to ``out_png`` (.png, .pdf or .svg).

    ``grid``: the snippet grid of every score array (``[T, C]``, one row per
    snippet); ``gt_segments``: ``[(start, end, label), ...]`` or None when there is
    no ground truth; ``detections``: ActivityNet-style dicts; ``label``: the class
    to show (default: the top-scoring detection's); ``theta_loc``: threshold(s)
    drawn on the final panel.
    """
    from wtalkit.io import atomic_path

    out = check_plot_path(out_png)
    fig = figure_video(
        duration=duration,
        grid=grid,
        classes=classes,
        gt_segments=gt_segments,
        cbp_scores=cbp_scores,
        vlp_scores=vlp_scores,
        final_scores=final_scores,
        detections=detections,
        label=label,
        theta_loc=theta_loc,
        title=title,
        final_name=final_name,
    )
    try:
        with atomic_path(out, suffix=out.suffix) as tmp:
            fig.savefig(tmp, format=FORMATS[out.suffix.lower()], dpi=dpi)
    except OSError as e:
        raise WtalError(f"cannot write figure {out}: {e.strerror or type(e).__name__}") from None
    return out


# --------------------------------------------------------------------------- curves from a checkpoint


class ScoreCurves:
    """Frame scores of every trained branch of a checkpoint, on the predictor's main grid.

    The predictor's own branch gives the final scores and detections (exactly
    what ``localize`` reports); a branch it did not load (VLP for a CBP
    predictor, say) gets its own :class:`~wtalkit.localize.predict.Predictor`.
    """

    def __init__(self, predictor):
        from wtalkit.localize.predict import Predictor

        self.predictor = predictor
        self.by_branch = {}
        for name in ("cbp", "vlp"):
            if name in predictor.models:
                self.by_branch[name] = predictor
            elif name in predictor.ckpt["models"]:
                self.by_branch[name] = Predictor(
                    predictor.path, branch=name, device=str(predictor.device), cfg=predictor.cfg
                )

    @property
    def streams(self) -> tuple:
        """Every stream the curves read: the predictor's, then each branch's (the branch name is its stream)."""
        return tuple(dict.fromkeys(tuple(self.predictor.streams) + tuple(self.by_branch)))

    def __call__(self, feats: dict, metas: dict) -> dict:
        """``{"grid", "final", "cbp", "vlp", "detections"}``; a branch whose stream is missing gets None."""
        p = self.predictor
        main = p.streams[0]
        grid, n = metas[main].grid, len(feats[main])
        dets, final, _ = p.localize({s: feats[s] for s in p.streams}, metas)
        out = {"grid": grid, "final": final, "detections": dets, "cbp": None, "vlp": None}
        for name, pred in self.by_branch.items():
            if name not in feats:
                continue
            probs, _ = pred.branch_scores(name, feats[name])
            src = metas[name].grid
            if src != grid or len(probs) != n:
                probs = probs[resample_indices(src, grid, n, len(probs))]
            out[name] = probs
        return out


def features_span(grid: SnippetGrid, n: int) -> float:
    """Seconds covered by ``n`` snippets (the end of the last snippet's frames): the duration when none is known."""
    return float(grid.to_seconds(n - 1) + grid.window_seconds)


class Plotter:
    """Figures for ``wtalkit localize``: ``plot`` (one file: the first video) and/or ``plot_dir`` (one per video).

    Paths are checked when it is made, before any localization work.
    """

    def __init__(self, predictor, plot=None, plot_dir=None, label: str | None = None):
        self.plot = check_plot_path(plot) if plot else None
        self.plot_dir = check_plot_dir(plot_dir) if plot_dir else None
        if label is not None and label not in predictor.classes:
            raise WtalError(f"--plot-label: unknown class '{label}' (e.g. '{predictor.classes[0]}')")
        self.label = label
        self.curves = ScoreCurves(predictor)
        self.written: list = []

    @property
    def streams(self) -> tuple:
        return self.curves.streams

    def targets(self, name: str) -> list:
        out = []
        if self.plot is not None and not any(p == self.plot for p in self.written):
            out.append(self.plot)
        if self.plot_dir is not None:
            out.append(self.plot_dir / f"{name}.png")
        return out

    def draw(self, name: str, feats: dict, metas: dict, duration: float | None = None, gt_segments=None) -> list:
        """Figures of one video (none when it needs none); returns the paths written."""
        targets = self.targets(name)
        if not targets:
            return []
        cur = self.curves(feats, metas)
        p = self.curves.predictor
        duration = duration or features_span(cur["grid"], len(cur["final"]))
        branch = {"cbp": "final (CBP)", "vlp": "final (VLP)", "fused": "final (fused)"}[p.branch]
        for t in targets:
            plot_video(
                t,
                duration=duration,
                grid=cur["grid"],
                classes=p.classes,
                gt_segments=gt_segments,
                cbp_scores=cur["cbp"],
                vlp_scores=cur["vlp"],
                final_scores=cur["final"],
                detections=cur["detections"],
                label=self.label,
                theta_loc=p.cfg.infer.theta_loc,
                title=name,
                final_name=branch,
            )
            self.written.append(t)
        return targets

    def on_video(self, item) -> None:
        """Callback for :func:`wtalkit.localize.video.localize_videos`."""
        self.draw(item.name, item.feats, item.metas, item.duration)

    def draw_dataset(self, dataset_dir, names) -> None:
        """Figures for videos of a dataset folder, with their ground truth from ``annotations.json``."""
        from wtalkit.data.features import Dataset

        ds = Dataset(dataset_dir)
        for name in names:
            if not self.targets(name):
                break
            feats, metas = {}, {}
            for s in self.streams:
                try:
                    stream = ds.stream(s)
                except WtalError:
                    if s in self.curves.predictor.streams:
                        raise
                    continue  # no such stream here: that curve is left out
                if stream.has(name) or s in self.curves.predictor.streams:
                    feats[s], metas[s] = stream.load(name), stream.meta
            v = ds.annotations.videos.get(name)
            self.draw(name, feats, metas, v.duration if v else None, v.segments if v else None)

    def draw_feature_files(self, files) -> None:
        """Figures for loose feature files (the layout of :func:`wtalkit.localize.predict.localize_feature_files`; no ground truth)."""
        from wtalkit.data.annotations import read_json
        from wtalkit.data.features import StreamMeta, load_feature_file

        p = self.curves.predictor
        for f in map(Path, files):
            if not self.targets(f.stem):
                break
            feats, metas = {}, {}
            for s in self.streams:
                path = f if s == p.streams[0] else f.parent.parent / s / f.name
                if s not in p.streams and not path.exists():
                    continue
                meta_path = path.parent / "meta.json"
                metas[s] = (
                    StreamMeta.from_dict(read_json(meta_path), str(meta_path)) if meta_path.exists() else p.metas[s]
                )
                feats[s] = load_feature_file(path, p.metas[s].dim)
            self.draw(f.stem, feats, metas)
