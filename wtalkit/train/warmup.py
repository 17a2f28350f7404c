"""Warm-up: train the CBP branch with video-level class labels only (MIL).

``train_warmup`` is the library function behind ``wtalkit warmup``. It is
seedable, and resumable: after every epoch the model, optimizer and RNG states
are saved to ``RUN/checkpoints/warmup_last.pt``, and a run restarted after an
interruption continues from there and ends bit-identical to an uninterrupted
one (on CPU): weights, optimizer state and the ``log.jsonl`` records alike.
The resumable checkpoint records the dataset it was started on (classes,
training videos, feature metadata); resuming on another is an error.
``--overwrite`` also removes what an earlier warm-up's alternate training left
in the run folder (``alternate.pt``, ``round_K.pt`` and its resume state).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from wtalkit import io as wio
from wtalkit.config import Config
from wtalkit.data.features import Dataset
from wtalkit.data.loader import FeatureBank, batch_options
from wtalkit.device import autocast, resolve_device, training_precision
from wtalkit.errors import WtalError
from wtalkit.models.build import build_cbp, load_branch
from wtalkit.models.checkpoint import load_checkpoint
from wtalkit.train.hide import hide_runs
from wtalkit.train.optim import make_optimizer, optimizer_step
from wtalkit.train.progress import training_progress
from wtalkit.train.run import (
    Run,
    check_fingerprint,
    check_finite,
    dataset_fingerprint,
    restore_rng,
    rng_state,
    seed_everything,
)

# what a warm-up starting over makes stale: everything alternate training derived from the old warm-up
STALE_STAGES = ("warmup", "alternate", "alternate-eval")


def cbp_epoch(
    model, opt, bank: FeatureBank, rng, cfg: Config, on_batch=None, precision: str = "fp32", hide_fill=None
) -> float:
    """One epoch of the CBP architecture's own objective (``model.loss``) over ``bank``; returns the mean loss.

    With ``cbp.hide_prob > 0`` every crop is hidden in runs (:func:`wtalkit.train.hide.hide_runs`, filled
    with ``hide_fill``, the training split's mean feature, on the model's device). The batch losses stay
    on the device and are read once at the end of the epoch (no host sync per step); ``on_batch()`` is
    called after every step. ``precision`` (resolved by
    :func:`wtalkit.device.training_precision`) runs the forward pass under autocast; fp16 scales the loss.
    """
    model.train()
    device = next(model.parameters()).device
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    total, n = torch.zeros((), device=device), 0
    for batch in bank.batches(rng, **batch_options(cfg.data, device)):
        mask = batch["mask"].to(device, non_blocking=True)
        x = batch["x"]["cbp"].to(device, non_blocking=True)
        if cfg.cbp.hide_prob > 0:
            x = hide_runs(x, mask, rng, cfg.cbp.hide_prob, cfg.cbp.hide_len, hide_fill)
        with autocast(device, precision):
            out = model(x, mask)
        out = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in out.items()}
        loss, _ = model.loss(out, mask, batch["labels"].to(device, non_blocking=True), batch["pairs"])
        optimizer_step(opt, loss, model.parameters(), scaler, cfg.optim.grad_clip)
        total += loss.detach()
        n += 1
        if on_batch:
            on_batch()
    return float(total) / n if n else 0.0


def train_warmup(
    dataset_dir,
    run_dir,
    cfg: Config,
    *,
    overwrite: bool = False,
    console=None,
    progress: bool = True,
    stop_after_epochs: int | None = None,
) -> Path:
    """Train (or resume training) the CBP branch; returns the path of ``RUN/warmup.pt``.

    ``stop_after_epochs`` stops early after that many epochs in this call (the
    resumable checkpoint is kept): it is how tests simulate an interruption.
    """
    run = Run(run_dir)
    final = run.file("warmup.pt")
    last = run.last("warmup")
    if final.exists() and not overwrite:
        raise WtalError(f"{final} already exists; pass --overwrite to train again")
    if overwrite:
        # alternate.pt / round_K.pt / their resume state derive from the old warm-up: `localize` would use them
        stale = [final, last, run.file("alternate.pt"), run.last("alternate"), *run.path.glob("round_*.pt")]
        for p in stale:
            p.unlink(missing_ok=True)
        run.trim_log(lambda r: r.get("stage") not in STALE_STAGES)

    dataset = Dataset(dataset_dir)
    bank = FeatureBank(dataset, cfg.data.train_subset, ("cbp",), require_labels=True)
    missing = dataset.missing(cfg.data.train_subset, "cbp")
    if missing and console is not None:
        console.print(
            f"[yellow]note:[/] {len(missing)} training video(s) have no 'cbp' features and are left out "
            f"(e.g. {missing[0]})"
        )
    fingerprint = dataset_fingerprint(dataset.classes, [v.name for v in bank.videos], bank.metas)
    state = None
    if last.exists():
        state = load_checkpoint(last)
        if state["config"] != cfg.to_dict():
            raise WtalError(
                f"{last} was started with another config; rerun with the same --config/--set or pass --overwrite"
            )
        check_fingerprint(state, fingerprint, last)
    np_rng = seed_everything(cfg.train.seed)
    device = resolve_device(cfg.train.device)
    precision = training_precision(cfg.train.precision, device)
    model = build_cbp(cfg, bank.dim("cbp"), len(dataset.classes)).to(device)
    fit = state is None and model.standardize is not None  # a resumed model already holds its statistics
    moments = bank.moments("cbp") if fit or cfg.cbp.hide_prob > 0 else None  # one pass over the split
    if fit:
        # cbp.input_norm: standardize -- the training split's statistics become part of the model
        model.standardize.fit(*moments)
    hide_fill = None if cfg.cbp.hide_prob == 0 else torch.as_tensor(moments[0], dtype=torch.float32, device=device)
    opt = make_optimizer(model.parameters(), cfg)
    start_epoch = 0
    if state is not None:
        load_branch(model, state["models"]["cbp"], "cbp", last)
        opt.load_state_dict(state["optim"])
        restore_rng(state["rng"], np_rng)
        start_epoch = state["epoch"]
        if console:
            console.print(f"[yellow]resuming warm-up from epoch {start_epoch}[/]")
    # records an interrupted run logged after its last resumable checkpoint are logged again below
    run.trim_log(lambda r: r.get("stage") != "warmup" or _int(r.get("epoch")) <= start_epoch)
    run.save_config(cfg)

    base = {
        "kind": "cbp",
        "config": cfg.to_dict(),
        "classes": list(dataset.classes),
        "streams": {"cbp": bank.metas["cbp"].to_dict()},
        "dataset": str(Path(dataset_dir).resolve()),
    }
    epochs = cfg.train.warmup_epochs
    done_now = 0
    with training_progress(console, progress and console is not None) as bar:
        task = bar.add_task("warm-up (CBP, MIL)", total=epochs, completed=start_epoch, status="", rate="")
        for epoch in range(start_epoch, epochs):
            t0, n = time.perf_counter(), [0]

            def on_batch(n=n):
                n[0] += 1

            loss = cbp_epoch(model, opt, bank, np_rng, cfg, on_batch, precision, hide_fill)
            check_finite({"loss": loss}, f"warm-up epoch {epoch + 1}", last if epoch > 0 else None)
            dt = time.perf_counter() - t0
            bar.update(
                task, advance=1, status=f"epoch {epoch + 1} loss {loss:.4f}", rate=f"{n[0] / max(dt, 1e-9):.1f} it/s"
            )
            run.log({"stage": "warmup", "epoch": epoch + 1, "loss": loss, "seconds": dt})
            wio.save_torch(
                last,
                {
                    **base,
                    "models": {"cbp": model.state_dict()},
                    "optim": opt.state_dict(),
                    "rng": rng_state(np_rng),
                    "epoch": epoch + 1,
                    "fingerprint": fingerprint,
                },
            )
            done_now += 1
            if stop_after_epochs is not None and done_now >= stop_after_epochs and epoch + 1 < epochs:
                return last
    wio.save_torch(final, {**base, "models": {"cbp": model.state_dict()}, "epoch": epochs})
    return final


def _int(x) -> float:
    """A log record's epoch / position (records without one sort last: a resume drops them)."""
    return x if isinstance(x, int) and not isinstance(x, bool) else float("inf")
