"""Rich tables for evaluation results (mAP in percent, as papers report it)."""

from __future__ import annotations

import numpy as np
from rich import box
from rich.table import Table

#: The averages THUMOS14 papers report, shown when all their thresholds were evaluated.
STANDARD_AVERAGES = (
    ("0.1–0.5", (0.1, 0.2, 0.3, 0.4, 0.5)),
    ("0.3–0.7", (0.3, 0.4, 0.5, 0.6, 0.7)),
    ("0.1–0.7", (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)),
)


def average_columns(tious, values) -> list:
    """``[(label, mean), ...]``: the standard averages whose thresholds are all present.

    When none is complete (e.g. ActivityNet's 0.5:0.05:0.95), the single
    average over the given thresholds, labelled with its range.
    """
    tious = np.asarray(tious, np.float64)
    values = np.asarray(values, np.float64)
    out = []
    for label, wanted in STANDARD_AVERAGES:
        hit = [np.flatnonzero(np.isclose(tious, w, atol=1e-9)) for w in wanted]
        if all(h.size for h in hit):
            out.append((label, float(np.mean([values[h[0]] for h in hit]))))
    if not out:
        label = f"{tious.min():g}–{tious.max():g}" if tious.size > 1 else f"{tious[0]:g}"
        out.append((label, float(values.mean())))
    return out


def _pct(x: float, digits: int = 2) -> str:
    return f"{100.0 * x:.{digits}f}"


def detection_table(result) -> Table:
    """mAP (%) per tIoU, then the averages (one row each: stays narrow for any number of thresholds)."""
    where = f"subset '{result.subset}'" if result.subset else "all videos"
    table = Table(title=f"mAP, {where}", title_justify="left")
    table.add_column("tIoU", style="bold")
    table.add_column("mAP (%)", justify="right")
    for t, m in zip(result.tiou, result.mAP):
        table.add_row(f"{t:g}", _pct(m))
    table.add_section()
    for label, value in average_columns(result.tiou, result.mAP):
        table.add_row(f"avg {label}", _pct(value), style="bold cyan")
    return table


def detection_notes(result) -> str:
    """One line saying what was averaged and which predictions did not count."""
    notes = [
        f"{len(result.classes)} classes with ground truth ({int(np.sum(result.n_gt))} segments), "
        f"{result.n_predictions} predictions"
    ]
    if result.n_outside:
        notes.append(f"{result.n_outside} of them on videos outside the evaluated set (false positives)")
    unknown = getattr(result, "unknown_videos", [])
    if unknown:
        shown = ", ".join(repr(v) for v in unknown[:3]) + (", ..." if len(unknown) > 3 else "")
        notes.append(f"{len(unknown)} result video ids are not in the annotations ({shown})")
    if result.n_ignored:
        notes.append(f"{result.n_ignored} predictions of classes without ground truth ignored")
    return "; ".join(notes)


def per_class_table(result) -> Table:
    """AP (%) of every class at every tIoU, with the class's average over the thresholds."""
    table = Table(
        title="AP per class (%)", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 0, 0, 1)
    )
    table.add_column("class", style="bold", no_wrap=True, max_width=18, overflow="ellipsis")
    for t in result.tiou:
        table.add_column(f"{t:g}", justify="right")
    table.add_column("avg", justify="right", style="cyan")
    for k, c in enumerate(result.classes):
        table.add_row(c, *[_pct(x, 1) for x in result.ap[:, k]], _pct(float(result.ap[:, k].mean()), 1))
    table.add_section()
    table.add_row("mAP", *[_pct(x, 1) for x in result.mAP], _pct(result.average, 1), style="bold")
    return table


def oad_table(result) -> Table:
    """Per-class per-frame AP and calibrated AP (%), with the means."""
    table = Table(title="Online action detection (per-frame, %)", title_justify="left")
    table.add_column("class", style="bold")
    table.add_column("positive frames", justify="right")
    table.add_column("AP", justify="right")
    table.add_column("cAP", justify="right")
    for c, n, a, ca in zip(result.classes, result.n_positive, result.ap, result.cap):
        table.add_row(c, str(int(n)), _pct(a), _pct(ca))
    table.add_section()
    table.add_row(f"mean ({len(result.classes)} classes)", "", _pct(result.mAP), _pct(result.mcAP), style="bold")
    return table


def oad_notes(result) -> str:
    """What was evaluated, what was dropped, which classes were left out of the means."""
    notes = [f"{result.n_frames} frames of {result.n_videos} videos"]
    if result.n_dropped:
        notes.append(f"{result.n_dropped} ambiguous frames dropped")
    if result.no_positives:
        notes.append("scored without positive frames (not averaged): " + ", ".join(result.no_positives))
    if result.not_scored:
        notes.append("annotated but not scored: " + ", ".join(result.not_scored))
    return "; ".join(notes)
