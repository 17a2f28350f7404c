"""``wtalkit import-thumos``: turn the THUMOS14 "reduced" release into a wtalkit dataset."""

from __future__ import annotations

import click

from wtalkit.cli.common import err_console


@click.command("import-thumos")
@click.argument("features", type=click.Path(dir_okay=False))
@click.argument("annotation_dir", type=click.Path(file_okay=False))
@click.option(
    "-o",
    "--output",
    "output",
    required=True,
    type=click.Path(),
    help="Dataset folder to create (must not exist, or be empty).",
)
def import_thumos(features, annotation_dir, output):
    """Import Thumos14reduced-I3D-JOINTFeatures.npy + its annotation folder.

    \b
    FEATURES        the release's feature file: one [T, 2048] array per video
                    (I3D RGB+flow, 16-frame snippets at 25 fps).
    ANNOTATION_DIR  videoname.npy, subset.npy, duration.npy, labels.npy,
                    segments.npy, classlist.npy (labels_all.npy optional).

    Writes OUTPUT/annotations.json (THUMOS 'validation' -> 'train',
    'test' -> 'test') and OUTPUT/features/cbp/. Nothing is left behind on error.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from wtalkit.data.thumos import import_thumos as run_import

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task("reading and validating", total=None)

        def on_video(i, n, name):
            progress.update(task, description="writing features", total=n, completed=i + 1)

        s = run_import(features, annotation_dir, output, on_video=on_video)
    err_console.print(
        f"[green]imported[/] {s.n_videos} videos ({s.n_train} train, {s.n_test} test), "
        f"{s.n_segments} segments, {s.n_classes} classes, {s.n_snippets} snippets -> {s.out}"
    )
    if s.extended:
        from rich.markup import escape

        shown = escape(", ".join(s.extended[:5])) + (", ..." if len(s.extended) > 5 else "")
        err_console.print(
            f"[yellow]note:[/] {len(s.extended)} videos have actions beyond their duration.npy ({shown}): "
            "their duration was extended to the last action's end (the release's value is kept as "
            "'release_duration' in annotations.json)",
            highlight=False,
        )
