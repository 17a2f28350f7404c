"""Training OV-OAD from text only (``wtalkit train-online``).

No frame-level class labels are used as classifier targets: every training
window (32 frames at 4 fps ending at a "current" frame) is paired with
*captions* built from the class tags of the current frame's segment filled
into prompt templates (OV-OAD's ActivityNet variant). The model never sees a
class index; it aligns videos with text, so at test time any vocabulary can
be scored.

Losses (per batch of windows):

* ``vtc``: multi-caption InfoNCE between the current frame's group embedding
  and the batch's captions (the unique captions of the batch's windows; a
  window's positives are all captions of its labels, a caption's positives
  all windows carrying its label; symmetric).
* ``frame`` (weight ``alpha`` = 0.1): the same loss on the current-frame token.
* ``mask`` (weight ``beta`` = 1.0): dice loss between the predicted
  background mask over the window and the annotated background frames.

Windows whose current frame is background have no caption; they take part in
the mask loss only.

Resumable: after every epoch, besides ``checkpoint.pt`` (the model so far),
the model, optimizer and RNG states, the step and the history are saved to
``RUN/checkpoints/online_last.pt`` with the config and a fingerprint of the
dataset; re-running the same command after an interruption continues from
there and ends bit-identical to an uninterrupted run (on CPU): weights,
optimizer state and ``history.json``. Another config or dataset is an error
(``--overwrite`` starts over); a finished run is kept unless ``--overwrite``.

Input: a dataset folder in wtalkit's format. The ``vlp`` stream (CLIP frame
embeddings) may be at any frame rate: it is resampled onto the 4 fps grid by
taking, for each 4 fps frame, the source snippet that owns its centre time
(:class:`~wtalkit.timeaxis.SnippetGrid`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wtalkit import io as wio
from wtalkit.config import is_prompt_template
from wtalkit.device import resolve_device
from wtalkit.errors import WtalError
from wtalkit.models.ovoad import FEATURE_FPS, OVOADConfig
from wtalkit.timeaxis import SnippetGrid, regrid_indices, segment_labels

DEFAULT_TEMPLATES = ["a video of a person doing {}."]
RESUME_KIND = "wtalkit-train-online-resume"


@dataclass
class OVOADTrainSection:
    subset: str = "train"  # videos of the dataset to train on ("all" for every subset)
    epochs: int = 10
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 50
    grad_clip: float = 1.0  # 0 disables
    alpha: float = 0.1  # weight of the current-frame-to-caption contrastive loss
    beta: float = 1.0  # weight of the background-mask dice loss
    templates: list[str] = field(default_factory=lambda: list(DEFAULT_TEMPLATES))  # caption templates
    seed: int = 0
    device: str = "auto"  # cpu, cuda, cuda:N or auto; --device overrides it


@dataclass
class OVOADRunConfig:
    model: OVOADConfig = field(default_factory=OVOADConfig)
    train: OVOADTrainSection = field(default_factory=OVOADTrainSection)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def validate(self) -> OVOADRunConfig:
        self.model.validate()
        t = self.train
        checks = [
            (t.epochs >= 1, "train.epochs must be >= 1"),
            (t.batch_size >= 2, "train.batch_size must be >= 2"),
            (t.lr > 0, "train.lr must be positive"),
            (
                t.weight_decay >= 0 and t.warmup_steps >= 0 and t.grad_clip >= 0,
                "train.weight_decay, train.warmup_steps and train.grad_clip must be >= 0",
            ),
            (t.alpha >= 0 and t.beta >= 0, "train.alpha and train.beta must be >= 0"),
            (
                len(t.templates) >= 1 and all(is_prompt_template(x) for x in t.templates),
                "train.templates must be a non-empty list of strings, each with exactly one '{}' placeholder and no other braces",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise WtalError(f"invalid config: {msg}")
        return self


def load_run_config(source=None, overrides=(), base: dict | None = None) -> OVOADRunConfig:
    """Resolve a training config: defaults <- ``base`` <- YAML file ``source`` <- ``--set`` overrides."""
    from wtalkit.config import resolve

    return resolve(OVOADRunConfig, source, overrides, base)


# --------------------------------------------------------------------------- data


def resample_to_grid(feats: np.ndarray, src: SnippetGrid, dst: SnippetGrid | None = None) -> np.ndarray:
    """Features on grid ``src`` -> grid ``dst`` (4 fps, 1 frame snippets by default), nearest by time
    (:func:`wtalkit.timeaxis.regrid_indices`)."""
    return feats[regrid_indices(src, dst or SnippetGrid(FEATURE_FPS, 1, 1), len(feats))]


def frame_labels(video, classes: list, n: int, grid: SnippetGrid | None = None) -> np.ndarray:
    """Multi-hot ``[n, K]`` labels of the frames of ``grid`` (a frame is labelled by its centre time)."""
    grid = grid or SnippetGrid(FEATURE_FPS, 1, 1)
    return segment_labels(grid.centres(n), video.segments, classes)


@dataclass
class FrameTable:
    """All training frames of a dataset on the 4 fps grid, ready for window sampling."""

    feats: list  # per video: float32 [T, D] torch tensors
    labels: list  # per video: bool [T, K] torch tensors
    index: np.ndarray  # [n, 2]: (video, frame) of every frame
    classes: list
    videos: list = field(default_factory=list)  # the video ids, in the order of ``feats``

    @property
    def num_frames(self) -> int:
        return len(self.index)

    def padded(self, window: int):
        """Every video left-padded with ``window - 1`` empty frames, concatenated (cached).

        Returns ``(feats [M, D], labels [M, K], real [M], offset [V])`` where
        ``offset[v]`` is the row of video ``v``'s first real frame.
        """
        import torch

        cache = getattr(self, "_padded", None)
        if cache is None or cache[0] != window:
            pad = window - 1
            D, K = self.feats[0].shape[1], self.labels[0].shape[1]
            fs, ls, rs, offs, at = [], [], [], [], 0
            for f, lab in zip(self.feats, self.labels):
                fs += [f.new_zeros(pad, D), f]
                ls += [lab.new_zeros(pad, K), lab]
                rs += [torch.zeros(pad, dtype=torch.bool), torch.ones(len(f), dtype=torch.bool)]
                offs.append(at + pad)
                at += pad + len(f)
            cache = (window, torch.cat(fs), torch.cat(ls), torch.cat(rs), torch.as_tensor(offs))
            self._padded = cache
        return cache[1:]


def load_frame_table(dataset, subset: str | None) -> FrameTable:
    import torch

    from wtalkit.data.features import Dataset

    ds = dataset if not isinstance(dataset, (str, Path)) else Dataset(dataset)
    stream = ds.stream("vlp")
    vids = ds.videos(None if subset == "all" else subset, "vlp")
    vids = [v for v in vids if v.has_ground_truth]
    if not vids:
        raise WtalError(
            f"dataset {ds.root} has no videos with temporal annotations in subset '{subset}' "
            "(train-online needs segments to build captions and background masks)"
        )
    feats, labels, index = [], [], []
    for i, v in enumerate(vids):
        x = resample_to_grid(stream.load(v.name), stream.meta.grid)
        y = frame_labels(v, ds.classes, len(x))
        feats.append(torch.from_numpy(np.ascontiguousarray(x)))
        labels.append(torch.from_numpy(y))
        index.append(np.stack([np.full(len(x), i), np.arange(len(x))], 1))
    return FrameTable(feats, labels, np.concatenate(index), list(ds.classes), [v.name for v in vids])


def batch_windows(table: FrameTable, rows: np.ndarray, window: int):
    """Windows ending at the frames ``table.index[rows]`` -> ``(x, valid, labels_cur, bg)``.

    ``x [B, W, D]`` (zeros before a video's start), ``valid [B, W]``,
    ``labels_cur [B, K]`` the classes of each window's last (current) frame,
    ``bg [B, W]`` the annotated background frames (False on padding).
    """
    import torch

    feats, labels, real, offset = table.padded(window)
    vid = torch.as_tensor(table.index[rows, 0])
    end = offset[vid] + torch.as_tensor(table.index[rows, 1])  # row of the current frame
    idx = end[:, None] - (window - 1) + torch.arange(window)[None]
    valid = real[idx]
    lab = labels[idx]
    return feats[idx], valid, lab[:, -1], valid & ~lab.any(-1)


# --------------------------------------------------------------------------- losses


def multi_positive_infonce(v, t, pos, scale):
    """Symmetric InfoNCE with several positives per row/column.

    ``v[n, D]``, ``t[m, D]`` normalised; ``pos[n, m]`` bool. Rows/columns
    without a positive are skipped.
    """
    import torch

    logits = scale * v @ t.T
    neg_inf = torch.finfo(logits.dtype).min

    def one_way(lg, p):
        keep = p.any(1)
        if not keep.any():
            return lg.new_zeros(())
        lg, p = lg[keep], p[keep]
        return (torch.logsumexp(lg, 1) - torch.logsumexp(lg.masked_fill(~p, neg_inf), 1)).mean()

    return 0.5 * (one_way(logits, pos) + one_way(logits.T, pos.T))


def dice_loss(pred, target, valid=None, eps: float = 1.0):
    """Mean over windows of ``1 - (2 sum(p g) + eps) / (sum(p) + sum(g) + eps)`` on valid frames."""
    target = target.to(pred.dtype)
    if valid is not None:
        w = valid.to(pred.dtype)
        pred, target = pred * w, target * w
    inter = (pred * target).sum(-1)
    return (1 - (2 * inter + eps) / (pred.sum(-1) + target.sum(-1) + eps)).mean()


def ovoad_losses(model, out: dict, labels, bg, caption_emb, alpha: float, beta: float) -> dict:
    """The three training losses for one batch.

    ``labels[B, K]``: classes of each window's current frame; ``bg[B, W]``:
    annotated background frames; ``caption_emb[K, P, D]``: frozen CLIP
    embeddings of the K classes x P templates.
    """
    fg = labels.any(1)
    present = labels[fg].any(0).nonzero().flatten()
    zero = out["bg_mask"].new_zeros(())
    if len(present):
        K, P, D = caption_emb.shape
        text = model.text_adapter(caption_emb[present]).reshape(-1, D)  # [Kp * P, D]
        pos = labels[fg][:, present].repeat_interleave(P, dim=1)  # [n_fg, Kp * P]
        s = model.scale()
        vtc = multi_positive_infonce(out["current_group_emb"][fg], text, pos, s)
        frame = multi_positive_infonce(out["current_emb"][fg], text, pos, s)
    else:
        vtc = frame = zero
    mask = dice_loss(out["bg_mask"], bg, out["valid"])
    total = vtc + alpha * frame + beta * mask
    return {"loss": total, "vtc": vtc, "frame": frame, "mask": mask}


# --------------------------------------------------------------------------- training


def train_ovoad(
    dataset,
    out_dir,
    clip: str = "ViT-B/16",
    config: OVOADRunConfig | None = None,
    *,
    overwrite: bool = False,
    console=None,
    progress: bool = True,
    clip_model=None,
    stop_after_epochs: int | None = None,
) -> dict:
    """Train (or resume training) OV-OAD on ``dataset``'s captions; write
    ``out_dir/{config.yaml, checkpoint.pt, history.json, checkpoints/online_last.pt}``.

    ``clip`` is the CLIP spec (name or path) recorded in the checkpoint;
    ``clip_model`` an already loaded model for it (loaded from ``clip`` when
    None). ``console`` (a Rich console) receives the resolved config, a
    progress bar (``progress``) and one line per epoch. Returns a summary
    dict (checkpoint path, steps, frames, final epoch's losses, seconds).
    ``stop_after_epochs`` stops after that many epochs in this call (the
    resumable state is kept): it is how tests simulate an interruption.
    """
    import torch

    from wtalkit.data.features import Dataset
    from wtalkit.models.build import load_branch
    from wtalkit.models.clip import class_words, clip_embed_dim, load_clip
    from wtalkit.models.ovoad import OVOAD, checkpoint_dict, clip_probe, clip_text_templates
    from wtalkit.train.run import Run, check_fingerprint, dataset_fingerprint, restore_rng, rng_state, seed_everything

    cfg = (config or OVOADRunConfig()).validate()
    out_dir = Path(out_dir)
    ckpt_path = out_dir / "checkpoint.pt"
    last = Run(out_dir).last("online")
    if overwrite:
        for p in (ckpt_path, last, out_dir / "history.json"):
            p.unlink(missing_ok=True)
    state = wio.load_torch(last, "train-online resume state") if last.exists() else None
    keys = ("config", "clip", "clip_probe", "fingerprint", "model", "optim", "rng", "epoch", "step", "history")
    if state is not None and not (
        isinstance(state, dict) and state.get("kind") == RESUME_KIND and all(k in state for k in keys)
    ):
        raise WtalError(f"{last}: not a train-online resume state; pass --overwrite to start over")
    if ckpt_path.exists() and (state is None or _finished(state)):
        raise WtalError(f"{ckpt_path} exists; pass --overwrite to replace it")
    ds = Dataset(dataset)
    meta = ds.stream("vlp").meta
    clip_model = clip_model if clip_model is not None else load_clip(clip)
    if Path(clip).is_file():  # record where the CLIP checkpoint is, whatever the working folder
        clip = str(Path(clip).resolve())
    D = clip_embed_dim(clip_model)
    if meta.dim != D:
        raise WtalError(f"the dataset's vlp features are {meta.dim}-d but CLIP '{clip}' embeds to {D}-d")
    if cfg.model.embed_dim != D:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, embed_dim=D)).validate()
    t = cfg.train
    device = resolve_device(t.device)

    if console is not None:
        from rich.syntax import Syntax

        console.rule("train-online config")
        console.print(Syntax(cfg.to_yaml(), "yaml", background_color="default"))
    table = load_frame_table(ds, t.subset)
    if table.num_frames < t.batch_size:
        raise WtalError(f"only {table.num_frames} training frames; lower train.batch_size (now {t.batch_size})")
    # Class tags become words the way the online scorers write them (CliffDiving -> cliff diving).
    captions = clip_text_templates(clip_model, [class_words(c) for c in table.classes], t.templates).to(device)
    probe = clip_probe(clip_model)
    fingerprint = dataset_fingerprint(table.classes, table.videos, {"vlp": meta})
    if state is not None:
        if state["config"] != cfg.to_dict() or state.get("clip") != clip:
            raise WtalError(
                f"{last} was started with another config or CLIP model; "
                "rerun with the same --clip/--config/--set or pass --overwrite"
            )
        if not torch.equal(state["clip_probe"], probe):
            raise WtalError(f"{last} was started with another CLIP text encoder; pass --overwrite to start over")
        check_fingerprint(state, fingerprint, last)

    rng = seed_everything(t.seed)
    model = OVOAD(cfg.model).to(device).train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and n not in ("pos", "group_tokens")]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and n not in ("pos", "group_tokens"))]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": t.weight_decay}, {"params": other, "weight_decay": 0.0}], lr=t.lr
    )
    history, step, start_epoch = [], 0, 0
    if state is not None:
        load_branch(model, state["model"], "ovoad", last)
        try:
            opt.load_state_dict(state["optim"])
        except (ValueError, KeyError, TypeError) as e:
            raise WtalError(f"{last}: its optimizer state does not fit ({e}); pass --overwrite") from None
        restore_rng(state["rng"], rng)
        history, step, start_epoch = list(state["history"]), int(state["step"]), int(state["epoch"])
        if console is not None:
            console.print(f"[yellow]resuming train-online after epoch {start_epoch} of {t.epochs}[/]")
    steps_per_epoch = table.num_frames // t.batch_size
    total_steps = steps_per_epoch * t.epochs

    def lr_at(step):
        if step < t.warmup_steps:
            return t.lr * (step + 1) / t.warmup_steps
        p = (step - t.warmup_steps) / max(1, total_steps - t.warmup_steps)
        return t.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))

    wio.write_text(out_dir / "config.yaml", cfg.to_yaml())

    def save_model(epoch):
        model.eval()
        wio.save_torch(
            ckpt_path,
            checkpoint_dict(
                model,
                clip,
                probe,
                {
                    "train_config": dataclasses.asdict(t),
                    "train_classes": table.classes,
                    "templates": list(t.templates),
                    "epoch": epoch,
                },
            ),
        )
        model.train()

    t0 = time.time()
    elapsed = history[-1]["seconds"] if history else 0.0  # of the interrupted run(s), when resuming
    done_now = 0
    prog = _progress(console) if progress and console is not None else None
    task = prog.add_task("training", total=total_steps, completed=step, info="") if prog else None
    try:
        if prog:
            prog.start()
        for epoch in range(start_epoch + 1, t.epochs + 1):
            sums = {"loss": 0.0, "vtc": 0.0, "frame": 0.0, "mask": 0.0}
            perm = rng.permutation(table.num_frames)
            for b in range(steps_per_epoch):
                rows = perm[b * t.batch_size : (b + 1) * t.batch_size]
                x, valid, labels, bg = (z.to(device) for z in batch_windows(table, rows, cfg.model.window))
                for g in opt.param_groups:
                    g["lr"] = lr_at(step)
                out = model(x, valid)
                losses = ovoad_losses(model, out, labels, bg, captions, t.alpha, t.beta)
                if not torch.isfinite(losses["loss"]):
                    raise WtalError(f"training diverged at epoch {epoch} (loss is not finite); lower train.lr")
                opt.zero_grad(set_to_none=True)
                losses["loss"].backward()
                if t.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
                opt.step()
                step += 1
                for k in sums:
                    sums[k] += float(losses[k].detach())
                if prog:
                    info = f"epoch {epoch}/{t.epochs}  loss {float(losses['loss'].detach()):.3f}"
                    prog.update(task, advance=1, info=info)
            row = {
                "epoch": epoch,
                **{k: v / steps_per_epoch for k, v in sums.items()},
                "lr": lr_at(step - 1),
                "seconds": round(elapsed + time.time() - t0, 2),
            }
            history.append(row)
            if console is not None:
                console.print(
                    f"epoch {epoch:>3}/{t.epochs}  loss {row['loss']:.4f}  vtc {row['vtc']:.4f}  "
                    f"frame {row['frame']:.4f}  mask {row['mask']:.4f}  [{row['seconds']:.1f}s]"
                )
            # A checkpoint after every epoch: an interrupted run keeps the last complete one. The
            # resumable state comes last: a run interrupted before it redoes the epoch (and rewrites
            # checkpoint.pt and history.json with the same content).
            save_model(epoch)
            wio.write_json(out_dir / "history.json", history)
            wio.save_torch(
                last,
                {
                    "kind": RESUME_KIND,
                    "config": cfg.to_dict(),
                    "clip": clip,
                    "clip_probe": probe.detach().cpu().clone(),
                    "fingerprint": fingerprint,
                    "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                    "optim": opt.state_dict(),
                    "rng": rng_state(rng),
                    "epoch": epoch,
                    "step": step,
                    "history": history,
                },
            )
            done_now += 1
            if stop_after_epochs is not None and done_now >= stop_after_epochs and epoch < t.epochs:
                break
    finally:
        if prog:
            prog.stop()
    if not ckpt_path.exists() or not (out_dir / "history.json").exists():  # resumed after the last epoch
        save_model(len(history))
        wio.write_json(out_dir / "history.json", history)
    return {
        "checkpoint": str(ckpt_path),
        "epochs": t.epochs,
        "epochs_done": len(history),
        "steps": step,
        "frames": table.num_frames,
        "classes": len(table.classes),
        "final": history[-1],
        "seconds": round(elapsed + time.time() - t0, 2),
    }


def _finished(state: dict) -> bool:
    """Whether a resume state is that of a run that trained all its epochs."""
    try:
        return int(state["epoch"]) >= int(state["config"]["train"]["epochs"])
    except (KeyError, TypeError, ValueError):
        return True


def _progress(console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
