"""Alternate training (Ju et al., CVPR 2023): the distillation-collaboration loop.

Starting from the warm-up CBP branch, each round runs

* a **B step**: the CBP branch is frozen; its confident pseudo-labels
  (mostly *background*: CBP has high true negatives) train the VLP branch
  (prompt vectors + temporal transformer) with ``L_kd + λ·L_fb``;
* an **F step**: the VLP branch is frozen; its confident pseudo-labels
  (mostly *foreground*: VLP has high true positives) train the CBP branch with
  its MIL classification loss plus ``L_kd + λ·L_fb``.

Pseudo-labels are computed on the fly, on exactly the crop being trained,
by the frozen branch in eval mode (:func:`wtalkit.train.pseudo.ternary_labels`);
since the teacher does not change during a step and has no dropout in eval mode,
this equals computing them once per step on the same crops.

Method rules that the paper leaves open (:class:`Rules`; read from ``train.<name>`` when the config
has the field, else their defaults; recorded in every checkpoint and checked on resume):

* ``conflict``: ``teacher`` (default) distils every confident entry of the teacher; ``uncertain``
  makes entries where the student, in eval mode, is confident of the opposite uncertain
  (:func:`wtalkit.train.pseudo.resolve_conflicts`).
* ``f_cls_weight``: weight of CBP's MIL classification loss in the F step (1.0; 0 = only
  ``L_kd + λ·L_fb``).
* ``select``: ``last`` (default) keeps the last round as ``alternate.pt``; ``agreement`` keeps the
  round whose two branches agree most on the *training* split (class-agnostic FG/BG IoU between
  their pseudo-labels, :class:`wtalkit.train.pseudo.Agreement`): no test label is read. The
  criterion of every round is logged (``agreement`` in the record of its last epoch) and stored in
  ``round_K.pt``; ``alternate.pt`` and the run's last log record hold ``selection``: the rule, the
  criteria and the chosen round.

Ablation schedules (the paper's Tables 4-5): ``only-f`` (raw zero-shot VLP
pseudo-labels train CBP; no B step), ``only-b`` (the warm CBP trains VLP; no F
step; inference fuses both branches). ``loss.use_kd`` / ``loss.use_fb``
switch the loss terms off.

Resumable: a checkpoint with both branches, both optimizers and all RNG
states is written after every epoch of every step, so an interrupted run
continues where it stopped and ends bit-identical to an uninterrupted one
(on CPU): weights, optimizer states and ``log.jsonl`` records alike. The
per-round evaluation runs on a forked copy of the torch RNG streams (building
models for it draws parameter inits) and before that epoch's resumable
checkpoint, so whether and where a run was interrupted changes nothing.
The checkpoint records the dataset and the warm-up it started from; resuming
on others is an error. ``RUN/round_K.pt`` holds each finished round,
``RUN/alternate.pt`` the final model.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from wtalkit import io as wio
from wtalkit.config import Config, load_config
from wtalkit.data.features import Dataset
from wtalkit.data.loader import FeatureBank, batch_options
from wtalkit.device import autocast, resolve_device, training_precision
from wtalkit.errors import WtalError
from wtalkit.models.build import build_cbp, build_vlp, load_branch
from wtalkit.models.checkpoint import check_compatible, checkpoint_config, load_checkpoint
from wtalkit.models.vlp import RawVLP
from wtalkit.train.losses import distill_loss
from wtalkit.train.optim import make_optimizer, optimizer_step
from wtalkit.train.progress import training_progress
from wtalkit.train.pseudo import Agreement, resolve_conflicts, select_round, ternary_labels
from wtalkit.train.run import (
    Run,
    check_fingerprint,
    check_finite,
    dataset_fingerprint,
    isolated_rng,
    restore_rng,
    rng_state,
    seed_everything,
    tensors_digest,
)

LOG_STAGES = ("alternate", "alternate-eval")
CONFLICT_RULES = ("teacher", "uncertain")
SELECT_RULES = ("last", "agreement")


@dataclass(frozen=True)
class Rules:
    """The alternate-training rules the paper leaves open (see the module docstring)."""

    conflict: str = "teacher"
    f_cls_weight: float = 1.0
    select: str = "last"

    def __post_init__(self):
        if self.conflict not in CONFLICT_RULES:
            raise WtalError(f"train.conflict must be one of {', '.join(CONFLICT_RULES)}, got '{self.conflict}'")
        if self.select not in SELECT_RULES:
            raise WtalError(f"train.select must be one of {', '.join(SELECT_RULES)}, got '{self.select}'")
        if not self.f_cls_weight >= 0:
            raise WtalError(f"train.f_cls_weight must be >= 0, got {self.f_cls_weight}")


def rules_of(cfg: Config, **overrides) -> Rules:
    """The rules of ``cfg`` (``train.conflict`` / ``train.f_cls_weight`` / ``train.select`` where the config
    has them), with explicit ``overrides`` (not None) on top."""
    values = {k: getattr(cfg.train, k) for k in Rules.__dataclass_fields__ if hasattr(cfg.train, k)}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Rules(**values)


def plan(cfg: Config) -> list:
    """The flat list of ``(round, step, epoch)`` the schedule runs (what resuming indexes into)."""
    steps = {"alternate": ("B", "F"), "only-b": ("B",), "only-f": ("F",)}[cfg.train.schedule]
    out = []
    for r in range(1, cfg.train.rounds + 1):
        for s in steps:
            n = cfg.train.b_epochs if s == "B" else cfg.train.f_epochs
            out += [(r, s, e) for e in range(1, n + 1)]
    return out


def default_branch(cfg: Config) -> str:
    """The branch inference reads after this schedule: CBP as in the paper, fused for only-B."""
    return "fused" if cfg.train.schedule == "only-b" else "cbp"


class Trainer:
    """Holds both branches, their optimizers and the data for one alternate run."""

    def __init__(self, dataset_dir, warm_ckpt: dict, cfg: Config, device="auto", rules: Rules | None = None):
        self.cfg = cfg
        self.rules = rules or rules_of(cfg)
        self.device = resolve_device(device)
        self.precision = training_precision(cfg.train.precision, self.device)
        self.dataset = Dataset(dataset_dir)
        self.bank = FeatureBank(self.dataset, cfg.data.train_subset, ("cbp", "vlp"), require_labels=True)
        check_compatible(warm_ckpt, self.dataset.classes, self.bank.metas, str(self.dataset.root))
        classes = self.dataset.classes
        self.cbp = build_cbp(cfg, self.bank.dim("cbp"), len(classes)).to(self.device)
        load_branch(self.cbp, warm_ckpt["models"]["cbp"], "cbp", "the warm-up checkpoint")
        from wtalkit.models.clip import load_clip

        clip_model = load_clip(cfg.vlp.clip_model, device=self.device)
        self.vlp = build_vlp(cfg, classes, self.bank.dim("vlp"), device=self.device, clip_model=clip_model).to(
            self.device
        )
        self.raw_vlp = (
            RawVLP(clip_model, classes, cfg.vlp.templates).to(self.device) if cfg.train.schedule == "only-f" else None
        )
        self.opt_cbp = make_optimizer(self.cbp.parameters(), cfg, "alternate")
        self.opt_vlp = make_optimizer([p for p in self.vlp.parameters() if p.requires_grad], cfg, "alternate")
        self.gen = torch.Generator().manual_seed(cfg.train.seed)

    # -- one epoch of one step ---------------------------------------------------------------
    def pseudo(self, teacher, x, mask, labels):
        teacher.eval()
        with torch.no_grad():
            probs = teacher(x, mask)["probs"]
        return ternary_labels(probs, labels, self.cfg.pseudo.delta_h, self.cfg.pseudo.delta_l)

    def epoch(self, step: str, np_rng) -> dict:
        cfg = self.cfg
        if step == "B":
            teacher, t_stream, student, s_stream, opt = self.cbp, "cbp", self.vlp, "vlp", self.opt_vlp
        else:
            teacher = self.raw_vlp if self.raw_vlp is not None else self.vlp
            t_stream, student, s_stream, opt = "vlp", self.cbp, "cbp", self.opt_cbp
        sums, n = {"loss": 0.0, "kd": 0.0, "fb": 0.0, "cls": 0.0}, 0
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        for batch in self.bank.batches(np_rng, **batch_options(cfg.data, self.device)):
            mask = batch["mask"].to(self.device)
            labels = batch["labels"].to(self.device)
            pseudo = self.pseudo(teacher, batch["x"][t_stream].to(self.device), mask, labels)
            x_student = batch["x"][s_stream].to(self.device)
            if self.rules.conflict == "uncertain":  # the student's own confident opinion, without dropout
                pseudo = resolve_conflicts(pseudo, self.pseudo(student, x_student, mask, labels))
            student.train()
            with autocast(self.device, self.precision):
                out = student(x_student, mask)
            out = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in out.items()}
            # complementary distillation: the B step takes CBP's confident background (0) entries, the
            # F step VLP's confident foreground (1) entries; each branch passes on what it is reliable at
            kd_keep = (0 if step == "B" else 1) if cfg.train.complementary else None
            loss, parts = distill_loss(
                out["probs"], out["features"], pseudo, mask, cfg.loss, generator=self.gen, kd_keep=kd_keep
            )
            if step == "F" and self.rules.f_cls_weight > 0:  # CBP keeps its own weakly-supervised objective
                cls, _ = self.cbp.loss(out, mask, labels, batch["pairs"])
                loss = loss + self.rules.f_cls_weight * cls
                parts["cls"] = cls.detach()
            optimizer_step(opt, loss, student.parameters(), scaler, cfg.optim.grad_clip)
            # summed on the device; read once per epoch (no host sync per step)
            sums["loss"] = sums["loss"] + loss.detach()
            for k, v in parts.items():
                sums[k] = sums[k] + v
            n += 1
        return {k: float(v) / max(n, 1) for k, v in sums.items()}

    @torch.no_grad()
    def agreement(self) -> dict:
        """Class-agnostic agreement of the two branches' pseudo-labels on whole training videos (eval mode)."""
        acc = Agreement()
        self.cbp.eval()
        self.vlp.eval()
        d = self.cfg.pseudo
        for i, n in enumerate(self.bank.lengths().tolist()):
            labels = torch.from_numpy(self.bank.labels[i])
            probs = {
                s: m(torch.from_numpy(self.bank.rows(s, i, 0, n))[None].to(self.device), None)["probs"][0].cpu()
                for s, m in (("cbp", self.cbp), ("vlp", self.vlp))
            }
            acc.update(
                ternary_labels(probs["cbp"], labels, d.delta_h, d.delta_l).numpy(),
                ternary_labels(probs["vlp"], labels, d.delta_h, d.delta_l).numpy(),
            )
        return acc.compute()

    # -- state -------------------------------------------------------------------------------
    def models_state(self) -> dict:
        return {"cbp": self.cbp.state_dict(), "vlp": self.vlp.state_dict()}

    def full_state(self, np_rng) -> dict:
        return {
            "models": self.models_state(),
            "optim": {"cbp": self.opt_cbp.state_dict(), "vlp": self.opt_vlp.state_dict()},
            "rng": {**rng_state(np_rng), "gen": self.gen.get_state()},
        }

    def load_state(self, state: dict, np_rng) -> None:
        load_branch(self.cbp, state["models"]["cbp"], "cbp", "the resume checkpoint")
        load_branch(self.vlp, state["models"]["vlp"], "vlp", "the resume checkpoint")
        self.opt_cbp.load_state_dict(state["optim"]["cbp"])
        self.opt_vlp.load_state_dict(state["optim"]["vlp"])
        restore_rng(state["rng"], np_rng)
        self.gen.set_state(state["rng"]["gen"])


def train_alternate(
    dataset_dir,
    run_dir,
    cfg: Config,
    *,
    warmup_ckpt=None,
    overwrite: bool = False,
    console=None,
    progress: bool = True,
    evaluate=None,
    stop_after_epochs: int | None = None,
    rules: Rules | None = None,
) -> Path:
    """Run (or resume) alternate training; returns ``RUN/alternate.pt``.

    ``rules``: the method rules (default :func:`rules_of` ``(cfg)``).

    ``warmup_ckpt``: the warm-up checkpoint (default ``RUN/warmup.pt``).
    ``evaluate(ckpt_path) -> dict | None``: called after every round (the CLI passes one that
    localizes the test split and returns mAP when it has ground truth).
    ``stop_after_epochs``: stop after that many epochs in this call (tests simulate interruptions).
    """
    run = Run(run_dir)
    final, last = run.file("alternate.pt"), run.last("alternate")
    if final.exists() and not overwrite:
        raise WtalError(f"{final} already exists; pass --overwrite to train again")
    if overwrite:
        final.unlink(missing_ok=True)
        last.unlink(missing_ok=True)
        for p in run.path.glob("round_*.pt"):
            p.unlink()
    warm_path = Path(warmup_ckpt) if warmup_ckpt else run.file("warmup.pt")
    if not warm_path.exists():
        raise WtalError(f"no warm-up checkpoint at {warm_path}; run 'wtalkit warmup' first (or pass --from)")
    warm = load_checkpoint(warm_path)
    state = load_checkpoint(last) if last.exists() else None
    if state is not None and state["config"] != cfg.to_dict():
        raise WtalError(
            f"{last} was started with another config; rerun with the same --config/--set or pass --overwrite"
        )

    rules = rules or rules_of(cfg)
    if state is not None and state.get("rules", asdict(Rules())) != asdict(rules):
        raise WtalError(
            f"{last} was started with other alternate rules ({state.get('rules')}); rerun with the same or pass --overwrite"
        )
    np_rng = seed_everything(cfg.train.seed)
    trainer = Trainer(dataset_dir, warm, cfg, device=cfg.train.device, rules=rules)
    fingerprint = {
        **dataset_fingerprint(trainer.dataset.classes, [v.name for v in trainer.bank.videos], trainer.bank.metas),
        "warmup": tensors_digest(warm["models"]["cbp"]),
    }
    steps = plan(cfg)
    pos = 0
    if state is not None:
        check_fingerprint(state, fingerprint, last)
        if state.get("fingerprint", {}).get("warmup", fingerprint["warmup"]) != fingerprint["warmup"]:
            raise WtalError(
                f"{last} was started from another warm-up checkpoint than {warm_path}; "
                "resume from the same one or pass --overwrite"
            )
        trainer.load_state(state, np_rng)
        pos = int(state["position"])
        if console:
            console.print(f"[yellow]resuming alternate training at epoch {pos + 1} of {len(steps)}[/]")
    # Drop what the interrupted run did after its last resumable checkpoint: it is done again below.
    run.trim_log(lambda r: r.get("stage") not in LOG_STAGES or _position(r, steps) <= pos)
    finished_rounds = {r for r, _, _ in steps[:pos]} - {r for r, _, _ in steps[pos:]}
    for p in run.path.glob("round_*.pt"):
        if not (p.stem[6:].isdigit() and int(p.stem[6:]) in finished_rounds):
            p.unlink()
    run.save_config(cfg)
    base = {
        "kind": "alternate",
        "config": cfg.to_dict(),
        "classes": list(trainer.dataset.classes),
        "streams": {s: m.to_dict() for s, m in trainer.bank.metas.items()},
        "dataset": str(Path(dataset_dir).resolve()),
        "default_branch": default_branch(cfg),
        "rules": asdict(rules),
    }
    done_now = 0
    with training_progress(console, progress and console is not None) as bar:
        task = bar.add_task(f"alternate ({cfg.train.schedule})", total=len(steps), completed=pos, status="", rate="")
        while pos < len(steps):
            rnd, step, ep = steps[pos]
            t0 = time.perf_counter()
            stats = trainer.epoch(step, np_rng)
            check_finite(stats, f"alternate round {rnd} {step} step epoch {ep}", last if pos > 0 else None)
            dt = time.perf_counter() - t0
            pos += 1
            terms = " ".join(f"{k} {v:.4f}" for k, v in stats.items() if k != "loss")
            bar.update(
                task,
                advance=1,
                status=f"round {rnd} {step} epoch {ep}: loss {stats['loss']:.4f} ({terms})",
                rate=f"{dt:.1f} s/epoch",
            )
            record = {"stage": "alternate", "position": pos, "round": rnd, "step": step, "epoch": ep}
            round_done = pos == len(steps) or steps[pos][0] != rnd
            extra = {}
            if round_done:  # the label-free criterion, logged with the round's last epoch
                with isolated_rng():
                    extra["agreement"] = trainer.agreement()
                if pos == len(steps):
                    extra["selection"] = _selection(run, rules, cfg.train.rounds, extra["agreement"])
            run.log({**record, **stats, **extra, "seconds": dt})
            if round_done:
                wio.save_torch(
                    run.file(f"round_{rnd}.pt"),
                    {**base, "models": trainer.models_state(), "round": rnd, "agreement": extra["agreement"]},
                )
                if evaluate is not None:
                    # Building models for the evaluation draws parameter inits: from a copy of the RNG
                    # streams, so that the training after it does not depend on whether it ran.
                    with isolated_rng():
                        row = evaluate(run.file(f"round_{rnd}.pt"))
                    if row is not None:
                        run.log({"stage": "alternate-eval", "position": pos, "round": rnd, **row})
            # Last: a run interrupted before this point redoes the epoch (and its round's evaluation).
            wio.save_torch(last, {**base, **trainer.full_state(np_rng), "position": pos, "fingerprint": fingerprint})
            done_now += 1
            if stop_after_epochs is not None and done_now >= stop_after_epochs and pos < len(steps):
                return last
    selection = _selection(run, rules, cfg.train.rounds)
    chosen = selection["round"]
    models = (
        trainer.models_state()
        if chosen == cfg.train.rounds
        else load_checkpoint(run.file(f"round_{chosen}.pt"))["models"]
    )
    wio.save_torch(final, {**base, "models": models, "round": chosen, "selection": selection})
    return final


def _selection(run: Run, rules: Rules, rounds: int, last_agreement: dict | None = None) -> dict:
    """Which round ``alternate.pt`` keeps: ``{"rule", "round", "agreement": {round: criterion}}``.

    The criteria of finished rounds are read from their ``round_K.pt`` files (so a resumed run chooses
    as an uninterrupted one); ``last_agreement`` is the last round's when its file is not written yet.
    """
    agreements = {}
    for r in range(1, rounds + 1):
        if r == rounds and last_agreement is not None:
            agreements[r] = last_agreement
        else:
            agreements[r] = load_checkpoint(run.file(f"round_{r}.pt"))["agreement"]
    chosen = rounds if rules.select == "last" else select_round({r: a["score"] for r, a in agreements.items()})
    return {"rule": rules.select, "round": chosen, "agreement": {str(r): a for r, a in agreements.items()}}


def _position(record: dict, steps: list) -> float:
    """The plan position (1-based) a log record belongs to; records that have none sort last."""
    p = record.get("position")
    if isinstance(p, int) and not isinstance(p, bool):
        return p
    key = (record.get("round"), record.get("step"), record.get("epoch"))
    if key in steps:  # a record of an older wtalkit, without "position"
        return steps.index(key) + 1
    if record.get("stage") == "alternate-eval":  # older eval record: the end of its round
        ends = [i + 1 for i, (r, _, _) in enumerate(steps) if r == record.get("round")]
        if ends:
            return ends[-1]
    return float("inf")


def alternate_run(
    run_dir,
    *,
    dataset=None,
    warm=None,
    config_source=None,
    overrides=(),
    rounds: int | None = None,
    schedule: str | None = None,
    fuse: str | None = None,
    use_kd: bool = True,
    use_fb: bool = True,
    device: str | None = None,
    overwrite: bool = False,
    console=None,
    progress: bool = True,
    on_config=None,
    evaluate=None,
    rules: Rules | None = None,
) -> Path:
    """``wtalkit alternate``: alternate training of a warmed-up run folder.

    The config is the warm-up's own unless ``config_source`` is given; ``overrides`` and the
    explicit options (rounds, schedule, fuse, ablations, device) are applied on top. The dataset
    defaults to the one the warm-up was trained on. ``on_config(cfg)`` is called once the config is
    resolved; ``evaluate(ckpt_path, dataset) -> dict | None`` after every round.
    """
    warm_path = Path(warm) if warm else Path(run_dir) / "warmup.pt"
    if not warm_path.exists():
        raise WtalError(f"no warm-up checkpoint at {warm_path}; run 'wtalkit warmup DATASET -o {run_dir}' first")
    warm_ckpt = load_checkpoint(warm_path)
    extra = list(overrides)
    for key, value in (("train.rounds", rounds), ("train.schedule", schedule), ("train.fuse", fuse)):
        if value is not None:
            extra.append(f"{key}={value}")
    extra += [] if use_kd else ["loss.use_kd=false"]
    extra += [] if use_fb else ["loss.use_fb=false"]
    extra += [f"train.device={device}"] if device else []
    base = None if config_source else checkpoint_config(warm_ckpt).to_dict()
    cfg = load_config(config_source, extra, base=base)
    dataset = dataset or warm_ckpt.get("dataset")
    if not dataset:
        raise WtalError(f"{warm_path} records no dataset; pass --dataset")
    if on_config:
        on_config(cfg)
    return train_alternate(
        dataset,
        run_dir,
        cfg,
        warmup_ckpt=warm_path,
        overwrite=overwrite,
        console=console,
        progress=progress,
        evaluate=(lambda ck: evaluate(ck, dataset)) if evaluate else None,
        rules=rules,
    )
