"""``wtalkit score``: detection mAP (ActivityNet official semantics) or online per-frame mAP/cAP.

This command never imports torch: evaluation is NumPy only, so it starts fast.
"""

from __future__ import annotations

import json

import click

from wtalkit.cli.common import err_console, out_console

HELP = """Evaluate RESULTS against ANNOTATIONS (an annotations.json or a dataset folder).

\b
--protocol detection (default): RESULTS is a results JSON
  {"results": {VIDEO: [{"label", "score", "segment": [s, e]}]}}; mAP is
  computed exactly as the ActivityNet official evaluation.
--protocol oad: RESULTS is a `wtalkit online` .jsonl file or a folder of
  them; per-frame AP and calibrated AP (TVSeries cAP) per class.

\b
Defaults (detection):
  subset  the preset's test subset with --preset; else 'test' when the
          annotations have one; else all videos ('--subset all' forces all).
  tIoU    the preset's with --preset; else THUMOS14 0.1:0.1:0.7 when the
          annotations have a 'test' subset; else (training/validation-style
          annotations, e.g. ActivityNet) 0.5:0.05:0.95.
Defaults (oad): every video in the frame files (or those of --subset);
  segments labelled 'Ambiguous' in the annotations are always dropped.
"""


@click.command("score", help=HELP, short_help="Evaluate detections (mAP) or online frame scores (mAP/cAP).")
@click.argument("annotations", type=click.Path())
@click.argument("results", type=click.Path())
@click.option("--subset", default=None, help="Subset to evaluate ('all' for every video).")
@click.option(
    "--tiou",
    "tiou_text",
    default=None,
    metavar="LIST",
    help="Comma-separated tIoU thresholds, e.g. 0.1,0.2,0.3,0.4,0.5,0.6,0.7.",
)
@click.option(
    "--preset", default=None, metavar="NAME", help="Take tIoUs and test subset from a preset (thumos14, anet12)."
)
@click.option("--protocol", type=click.Choice(["detection", "oad"]), default="detection", show_default=True)
@click.option(
    "--ambiguous",
    "ambiguous_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="oad: THUMOS Ambiguous_test.txt ('video start end' lines); those frames are dropped.",
)
@click.option("--per-class", is_flag=True, help="Also show the AP of every class.")
@click.option("--json", "as_json", is_flag=True, help="Print only JSON on stdout (notes go to stderr).")
def score(annotations, results, subset, tiou_text, preset, protocol, ambiguous_path, per_class, as_json):
    if protocol == "oad":
        from wtalkit.eval.oad import score_oad

        if tiou_text or preset:
            raise click.UsageError("--tiou and --preset apply to --protocol detection only")
        res = score_oad(_annotations_file(annotations), results, subset, ambiguous_path)
        from wtalkit.eval.report import oad_notes, oad_table

        if as_json:
            click.echo(json.dumps(res.to_json()))
        else:
            out_console().print(oad_table(res))
        _note(oad_notes(res))
        return

    from wtalkit.eval.detection import parse_tious, score_detection

    if ambiguous_path:
        raise click.UsageError("--ambiguous applies to --protocol oad only")
    tious = parse_tious(tiou_text) if tiou_text is not None else None
    res = score_detection(annotations, results, subset, tious, preset)
    from wtalkit.eval.report import detection_notes, detection_table, per_class_table

    if as_json:
        click.echo(json.dumps(res.to_json()))
    else:
        console = out_console()
        if per_class:
            console.print(per_class_table(res))
        console.print(detection_table(res))
    _note(detection_notes(res))
    if res.n_predictions == 0:
        err_console.print("[yellow]warning:[/] no prediction of a class with ground truth: every AP is 0")


def _note(text: str) -> None:
    """Notes go to stderr: stdout holds only the results (the JSON with --json), the notes are still shown."""
    err_console.print(text, style="dim", markup=False, highlight=False)


def _annotations_file(path: str) -> str:
    from pathlib import Path

    p = Path(path)
    return str(p / "annotations.json") if p.is_dir() else path
