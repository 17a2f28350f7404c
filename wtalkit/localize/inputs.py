"""``wtalkit localize``: detections for a dataset split, loose feature files or raw videos, with figures."""

from __future__ import annotations

from pathlib import Path

from wtalkit import io as wio
from wtalkit.config import load_config
from wtalkit.data.features import Dataset
from wtalkit.errors import WtalError
from wtalkit.extract.video import VIDEO_EXTENSIONS
from wtalkit.localize.plot import Plotter
from wtalkit.localize.predict import Predictor, localize_dataset, localize_feature_files
from wtalkit.models.checkpoint import checkpoint_config, load_checkpoint, resolve_checkpoint


def localize_inputs(
    run,
    inputs=(),
    *,
    dataset=None,
    subset: str | None = None,
    branch: str | None = None,
    overrides=(),
    device: str | None = None,
    clip_weights=None,
    cbp_weights=None,
    plot=None,
    plot_dir=None,
    plot_label: str | None = None,
    output=None,
    overwrite: bool = False,
    console=None,
) -> tuple[dict, list]:
    """Results JSON (``{"results": {VIDEO: [...]}}``) and the figures written.

    ``inputs``: feature files (``.npy`` of the run's first stream; other streams are read from
    ``../STREAM/`` beside them) and video files (features extracted with the run's backbones);
    without inputs, the ``subset`` (default: the config's test subset) of ``dataset`` (default: the
    one the run was trained on). ``branch``: default the run's own (``default_branch``, CBP unless
    only-B stored fused). ``output``: where the results JSON is written (checked before any
    work; an existing file only with ``overwrite``).
    """
    if Path(run).suffix.lower() in {".npy", *VIDEO_EXTENSIONS}:
        raise WtalError(f"RUN comes last: '{run}' looks like an input (usage: wtalkit localize [INPUTS]... RUN)")
    ckpt_path = resolve_checkpoint(run)
    ckpt = load_checkpoint(ckpt_path)
    cfg = load_config(None, overrides, base=checkpoint_config(ckpt).to_dict())
    branch = branch or ckpt.get("default_branch", "cbp")
    for p in inputs:
        if not Path(p).is_file():
            raise WtalError(f"input not found: {p}")
    if output:
        wio.check_output_file(output, overwrite)
    videos = [p for p in inputs if Path(p).suffix.lower() in VIDEO_EXTENSIONS]
    feats = [p for p in inputs if p not in videos]
    if (clip_weights or cbp_weights) and not videos:
        raise WtalError("--clip-weights/--cbp-weights only apply to video inputs")
    predictor = Predictor(ckpt_path, branch=branch, device=device or cfg.train.device, cfg=cfg, ckpt=ckpt)
    plotter = Plotter(predictor, plot, plot_dir, plot_label) if (plot or plot_dir) else None
    if inputs:
        results = {"results": {}}
        if feats:
            results["results"].update(localize_feature_files(predictor, feats)["results"])
            if plotter:
                plotter.draw_feature_files(feats)
        if videos:
            results["results"].update(
                _localize_videos(predictor, videos, plotter, clip_weights, cbp_weights, console, results)
            )
    else:
        ds = dataset or predictor.ckpt.get("dataset")
        if not ds:
            raise WtalError("no --dataset given and the run does not record one")
        subset = subset or cfg.data.test_subset
        opened = Dataset(ds)
        results = localize_dataset(predictor, opened, subset)
        missing = opened.missing(subset, predictor.streams[0])  # recorded while localizing
        if missing and console is not None:
            console.print(
                f"[yellow]note:[/] {len(missing)} video(s) of '{subset}' have no '{predictor.streams[0]}' features and "
                f"were not localized (e.g. {missing[0]})"
            )
        if plotter:
            plotter.draw_dataset(ds, list(results["results"]))
    # which model made these detections (read by nothing in the evaluation, which only needs "results")
    results["wtalkit"] = {"branch": branch, "checkpoint": ckpt_path.name}
    if output:
        wio.write_json(output, results)
    return results, list(plotter.written) if plotter else []


def _localize_videos(predictor, videos, plotter, clip_weights, cbp_weights, console, so_far) -> dict:
    from wtalkit.localize.video import is_extractable, localize_videos, weights_for

    # figures also want the other branch's stream, when wtalkit can extract it
    extra = [s for s in (plotter.streams if plotter else ()) if s not in predictor.streams]
    streams = tuple(predictor.streams) + tuple(s for s in extra if is_extractable(predictor.metas[s]))
    weights = weights_for(predictor.metas, streams, clip_weights, cbp_weights)
    res = localize_videos(
        predictor,
        videos,
        device=str(predictor.device),
        weights=weights,
        console=console,
        streams=streams,
        on_video=plotter.on_video if plotter else None,
    )
    clash = sorted(set(res["results"]) & set(so_far["results"]))
    if clash:
        raise WtalError(f"'{clash[0]}' is both a feature file and a video; results are keyed by name")
    return res["results"]
